package cdm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnknownPatient marks a record that names a patient who is neither in the
// same import nor already stored.
var ErrUnknownPatient = errors.New("cdm: unknown patient")

// Origin says where in an import a record came from, for error messages and
// quarantine files. Line is 1-based for line-oriented inputs (NDJSON, CSV)
// and 0 otherwise; Entry is the 0-based index of a Bundle entry, or -1.
type Origin struct {
	File  string
	Line  int
	Entry int
}

// String formats o as "file:line", "file: entry[N]" or "file".
func (o Origin) String() string {
	switch {
	case o.Line > 0:
		return o.File + ":" + strconv.Itoa(o.Line)
	case o.Entry >= 0:
		return o.File + ": entry[" + strconv.Itoa(o.Entry) + "]"
	}
	return o.File
}

// RecordError is one bad record of an import: where it is, which field
// (a path such as "resource.onsetDateTime" or a CSV column name), and what
// is wrong. Raw, when set, holds the record's source text (an NDJSON line, a
// CSV row, a Bundle entry) for the quarantine file; it never appears in
// Error() and must not be logged.
type RecordError struct {
	Origin
	Path string
	Err  error
	Raw  []byte
}

// Error formats the error as "file:line: path: message" (line-oriented
// inputs) or "file: entry[N].path: message" (Bundles).
func (e *RecordError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Line > 0:
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
		if e.Path != "" {
			b.WriteString(e.Path)
			b.WriteString(": ")
		}
	case e.Entry >= 0:
		b.WriteString(": entry[")
		b.WriteString(strconv.Itoa(e.Entry))
		b.WriteByte(']')
		if e.Path != "" {
			b.WriteByte('.')
			b.WriteString(e.Path)
		}
		b.WriteString(": ")
	default:
		b.WriteString(": ")
		if e.Path != "" {
			b.WriteString(e.Path)
			b.WriteString(": ")
		}
	}
	b.WriteString(fmt.Sprint(e.Err))
	return b.String()
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }
