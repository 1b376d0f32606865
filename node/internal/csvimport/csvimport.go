// Package csvimport reads CSV files in the columns of the common data model,
// one file per table, into cdm records, and the same rows as NDJSON objects
// (what `fedstat synth --format ndjson` writes). It is a format decoder: it
// reads one input it is given and appends to a cdm.Batch; finding inputs,
// archives and compression, and telling the format are node/internal/ingest's.
//
// The first row is a header naming the columns (any order, case-sensitive,
// surrounding spaces ignored). The columns of a table are those of its
// declaration in cdm.Schema (cdm.TableSchema.CSVColumns): id (except for
// patients), patient_id, then the table's columns. Required: patient_id in
// every table and the columns the declaration marks Required (code in
// conditions, observations and medications). Other known columns are
// optional; unknown columns are an error (to catch typos). Dates are
// YYYY-MM-DD (or YYYY-MM, YYYY, or a FHIR dateTime); empty cells are missing
// values. Columns by table (docs/data.md lists them all):
//
//	patients      patient_id, birth_date, sex, region, death_date
//	conditions    id, patient_id, code, system, onset_date, abatement_date
//	observations  id, patient_id, code, system, date, value, unit
//	encounters    id, patient_id, class, type_code, type_system, start_date, end_date
//	medications   id, patient_id, code, system, authored_date
//
// The record id of a patient is patient_id. Other tables take the id column
// when present; without one, the id is derived from the row's content, so
// importing the same rows again changes nothing, but a changed row is a new
// record rather than a replacement (give ids to replace rows).
//
// Each bad row is a *cdm.RecordError with the file, line and column.
package csvimport

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Errors, matched with errors.Is on a RecordError.
var (
	ErrTable   = errors.New("csvimport: unknown table")
	ErrHeader  = errors.New("csvimport: bad header")
	ErrColumns = errors.New("csvimport: wrong number of columns")
	ErrSyntax  = errors.New("csvimport: malformed CSV")
	ErrMissing = errors.New("csvimport: missing required value")
	ErrDate    = errors.New("csvimport: impossible date")
	ErrValue   = errors.New("csvimport: bad value")
)

type problem struct {
	kind error
	msg  string
}

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == p.kind }

// Parse reads one CSV file of table (or, when table is "", of the table
// its name stands for, cdm.TableOfFile) and appends its good rows to b,
// and its bad rows to b.Errors; a file-level problem (unknown table, bad
// header) is one error and no rows.
func Parse(name string, data io.Reader, table string, b *cdm.Batch) {
	b.Errors = append(b.Errors, parse(name, data, table, b)...)
}

func parse(name string, data io.Reader, table string, b *cdm.Batch) []*cdm.RecordError {
	fileErr := func(line int, kind error, msg string) []*cdm.RecordError {
		return []*cdm.RecordError{{Origin: cdm.Origin{File: name, Line: line, Entry: -1}, Err: &problem{kind, msg}}}
	}
	if table == "" {
		t, ok := cdm.TableOfFile(name)
		if !ok {
			return fileErr(0, ErrTable, "cannot tell the table from the file name (want "+fileNames(".csv")+", or give the table explicitly)")
		}
		table = t
	}
	t, ok := cdm.LookupTable(table)
	if !ok {
		return fileErr(0, ErrTable, fmt.Sprintf("unknown table %q", table))
	}
	cols := t.CSVColumns()
	cr := csv.NewReader(data)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return fileErr(1, ErrHeader, "empty file: want a header row naming the columns ("+strings.Join(cols, ",")+")")
	}
	if err != nil {
		return fileErr(1, ErrSyntax, err.Error())
	}
	header = append([]string(nil), header...)
	pos := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		known := false
		for _, c := range cols {
			known = known || c == h
		}
		if !known {
			return fileErr(1, ErrHeader, fmt.Sprintf("unknown column %q for table %s (want some of %s)", h, table, strings.Join(cols, ",")))
		}
		if _, dup := pos[h]; dup {
			return fileErr(1, ErrHeader, fmt.Sprintf("column %q twice", h))
		}
		pos[h] = i
	}
	for _, c := range t.RequiredColumns() {
		if _, ok := pos[c]; !ok {
			return fileErr(1, ErrHeader, fmt.Sprintf("missing required column %q for table %s (columns: %s)", c, table, strings.Join(cols, ",")))
		}
	}
	want := len(header)
	var bad []*cdm.RecordError
	rowErr := func(line int, col string, err error, row []string) {
		var raw bytes.Buffer
		w := csv.NewWriter(&raw)
		_ = w.Write(row)
		w.Flush()
		bad = append(bad, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: line, Entry: -1}, Path: col, Err: err, Raw: bytes.TrimRight(raw.Bytes(), "\n")})
	}
	for {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return bad
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			bad = append(bad, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: line, Entry: -1}, Err: &problem{ErrSyntax, err.Error()}})
			// encoding/csv cannot resynchronise after a quote error.
			return bad
		}
		if len(row) == 1 && strings.TrimSpace(row[0]) == "" && want > 1 {
			continue // blank line
		}
		if len(row) != want {
			rowErr(line, "", &problem{ErrColumns, fmt.Sprintf("want %d columns (%s), got %d", want, strings.Join(header, ","), len(row))}, row)
			continue
		}
		get := func(c string) string {
			if i, ok := pos[c]; ok {
				return strings.TrimSpace(row[i])
			}
			return ""
		}
		pcol, perr := addRow(t, get, row, cdm.Origin{File: name, Line: line, Entry: -1}, b)
		if perr != nil {
			rowErr(line, pcol, perr, row)
		}
	}
}

// idOr returns id, or one derived from the row's content.
func idOr(id, table string, row []string) string {
	if id != "" {
		return id
	}
	h := sha256.New()
	h.Write([]byte(table))
	for _, f := range row {
		h.Write([]byte{0})
		h.Write([]byte(strings.TrimSpace(f)))
	}
	return "csv:" + hex.EncodeToString(h.Sum(nil)[:16])
}

// addRow converts one row, given as a column getter, into a record of
// table t appended to b. row is the row's raw fields (for derived ids).
// It returns the column and error of the first bad value: required values
// and dates first, then numbers and values with a parser, each in column
// order.
func addRow(t *cdm.TableSchema, get func(string) string, row []string, org cdm.Origin, b *cdm.Batch) (pcol string, perr error) {
	fail := func(c string, err error) {
		if perr == nil {
			perr, pcol = err, c
		}
	}
	need := func(c string) string {
		v := get(c)
		if v == "" {
			fail(c, &problem{ErrMissing, "missing required value " + c})
		}
		return v
	}
	rec := t.NewRow()
	rec.PatientID = need("patient_id")
	rec.ID = rec.PatientID
	if !t.Patients {
		rec.ID = get("id")
	}
	for k, c := range t.Columns {
		v := &rec.Values[k]
		switch {
		case c.Required:
			v.Str = need(c.Name)
		case c.Type == cdm.TypeDate:
			text := get(c.Name)
			d, err := cdm.ParseDate(text)
			if err != nil {
				fail(c.Name, &problem{ErrDate, fmt.Sprintf("impossible date %q (want a real day as YYYY-MM-DD)", text)})
			}
			v.Date = d
		case c.Type == cdm.TypeString && c.Parse == nil:
			v.Str = get(c.Name)
		}
	}
	for k, c := range t.Columns {
		v, text := &rec.Values[k], get(c.Name)
		switch {
		case c.Parse != nil:
			x, err := c.Parse(text)
			if err != nil {
				fail(c.Name, &problem{ErrValue, err.Error()})
			}
			v.Str = x
		case c.Type == cdm.TypeNumber:
			v.Num = math.NaN()
			if text != "" {
				f, err := strconv.ParseFloat(text, 64)
				if err != nil {
					fail(c.Name, &problem{ErrValue, fmt.Sprintf("bad number %q", text)})
				} else {
					v.Num = f
				}
			}
		}
	}
	if perr == nil {
		if !t.Patients {
			rec.ID = idOr(rec.ID, t.Name, row)
		}
		b.Add(t, rec, org)
	}
	return pcol, perr
}

// fileNames lists the file names that stand for each table, as "a, b or c".
func fileNames(ext string) string {
	names := cdm.TableNames()
	for i := range names {
		names[i] += ext
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ParseNDJSON reads one NDJSON file of table (or of the table its name
// stands for: patients.ndjson, site1_conditions.jsonl, ...) whose lines are
// objects with the CSV column names as keys (what `fedstat synth --format
// ndjson` writes): text values as strings, value as a number or null,
// missing values as "" or null. Unknown keys are errors.
func ParseNDJSON(name string, data io.Reader, table string, b *cdm.Batch) {
	b.Errors = append(b.Errors, parseNDJSON(name, data, table, b)...)
}

func parseNDJSON(name string, data io.Reader, table string, b *cdm.Batch) []*cdm.RecordError {
	fileErr := func(kind error, msg string) []*cdm.RecordError {
		return []*cdm.RecordError{{Origin: cdm.Origin{File: name, Entry: -1}, Err: &problem{kind, msg}}}
	}
	if table == "" {
		t, ok := cdm.TableOfFile(name)
		if !ok {
			return fileErr(ErrTable, "cannot tell the table from the file name")
		}
		table = t
	}
	t, ok := cdm.LookupTable(table)
	if !ok {
		return fileErr(ErrTable, fmt.Sprintf("unknown table %q", table))
	}
	cols := t.CSVColumns()
	var bad []*cdm.RecordError
	br := bufio.NewReaderSize(data, 1<<16)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(text)) > 0 {
			org := cdm.Origin{File: name, Line: line, Entry: -1}
			fail := func(col string, e error) {
				bad = append(bad, &cdm.RecordError{Origin: org, Path: col, Err: e, Raw: bytes.TrimSpace(bytes.Clone(text))})
			}
			var obj map[string]any
			dec := json.NewDecoder(bytes.NewReader(text))
			dec.UseNumber()
			if err := dec.Decode(&obj); err != nil || obj == nil {
				fail("", &problem{ErrSyntax, "malformed JSON object"})
			} else if col, perr := ndjsonRow(t, cols, obj, org, b); perr != nil {
				fail(col, perr)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				bad = append(bad, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1}, Err: &problem{ErrSyntax, err.Error()}})
			}
			return bad
		}
	}
}

func ndjsonRow(t *cdm.TableSchema, cols []string, obj map[string]any, org cdm.Origin, b *cdm.Batch) (string, error) {
	vals := map[string]string{}
	for k, v := range obj {
		known := false
		for _, c := range cols {
			known = known || c == k
		}
		if !known {
			return k, &problem{ErrHeader, fmt.Sprintf("unknown key %q for table %s (want some of %s)", k, t.Name, strings.Join(cols, ","))}
		}
		switch x := v.(type) {
		case nil:
		case string:
			vals[k] = strings.TrimSpace(x)
		case json.Number:
			vals[k] = x.String()
		default:
			return k, &problem{ErrValue, "want a string, a number or null"}
		}
	}
	for _, c := range t.RequiredColumns() {
		if _, ok := obj[c]; !ok {
			return c, &problem{ErrMissing, "missing required key " + c}
		}
	}
	row := make([]string, len(cols))
	for i, c := range cols {
		row[i] = vals[c]
	}
	return addRow(t, func(c string) string { return vals[c] }, row, org, b)
}
