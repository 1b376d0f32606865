// Package studycsv reads a research data set from CSV into a cdm.Study, by
// its schema (cdm.StudySchema).
//
// The first row is a header. Every schema column (by its csv name) and the
// schema's id column must be in it; other CSV columns are ignored. Rows with
// the same id are one person; a schema without an id must say unit = "row"
// (each row a different person, cdm.UnitRow), or Read refuses it. Cells are
// trimmed of surrounding spaces; the schema's missing texts ("" and "NA" by
// default) are missing values. int cells must be whole numbers, float cells
// numbers, date cells YYYY-MM-DD, and a string cell of a column with listed
// values one of them. Number cells outside the column's public range are
// accepted (queries clamp them) and counted.
//
// Each bad cell is a *cdm.RecordError with the file, line and column; Read
// returns all of them (the caller refuses the whole file).
package studycsv

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Errors, matched with errors.Is on a RecordError.
var (
	ErrHeader = errors.New("studycsv: bad header")
	ErrSyntax = errors.New("studycsv: malformed CSV")
	ErrValue  = errors.New("studycsv: bad value")
	ErrID     = errors.New("studycsv: bad patient id")
)

// Result is what Read found.
type Result struct {
	Study *cdm.Study
	// Errors lists every bad cell, in input order.
	Errors []*cdm.RecordError
	// OutOfRange counts number cells outside their column's range, by column.
	OutOfRange map[string]int
}

// Read reads the CSV text r (named file in messages) as a study of schema s.
// A header problem is returned as an error; bad cells are in Result.Errors.
func Read(r io.Reader, file string, s *cdm.StudySchema) (*Result, error) {
	name := filepath.Base(file)
	if s.ID == "" && s.Unit != cdm.UnitRow {
		return nil, fmt.Errorf("%w: study %s names no person key (id) and does not say unit = %q (each row a different person)",
			cdm.ErrBadSchema, s.Name, cdm.UnitRow)
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: 1, Entry: -1}, Err: fmt.Errorf("%w: %w", ErrHeader, err)}
	}
	headerErr := func(format string, args ...any) error {
		return &cdm.RecordError{Origin: cdm.Origin{File: name, Line: 1, Entry: -1}, Err: fmt.Errorf("%w: "+format, append([]any{ErrHeader}, args...)...)}
	}
	index := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := index[h]; dup {
			return nil, headerErr("column %q appears twice", h)
		}
		index[h] = i
	}
	cols := make([]int, len(s.Columns))
	for i, c := range s.Columns {
		j, ok := index[c.CSV]
		if !ok {
			return nil, headerErr("no column %q (schema column %s); the header has %s", c.CSV, c.Name, strings.Join(header, ", "))
		}
		cols[i] = j
	}
	idCol := -1
	if s.ID != "" {
		j, ok := index[s.ID]
		if !ok {
			return nil, headerErr("no patient id column %q; the header has %s", s.ID, strings.Join(header, ", "))
		}
		idCol = j
	}
	st := &cdm.Study{Schema: *s, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	res := &Result{Study: st, OutOfRange: map[string]int{}}
	bad := func(line int, col string, raw []string, kind error, format string, args ...any) {
		res.Errors = append(res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: line, Entry: -1}, Path: col,
			Err: fmt.Errorf("%w: "+format, append([]any{kind}, args...)...), Raw: []byte(strings.Join(raw, ","))})
	}
	row := 0
	var lines []int
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				bad(0, "", nil, ErrSyntax, "%v", err)
				break
			}
			bad(pe.Line, "", nil, ErrSyntax, "%v", pe.Err)
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			bad(line, "", rec, ErrSyntax, "%d fields, the header has %d", len(rec), len(header))
			continue
		}
		row++
		id := s.Name + "-" + strconv.Itoa(row)
		if idCol >= 0 {
			id = strings.TrimSpace(rec[idCol])
			if id == "" || s.IsMissing(id) || strings.IndexByte(id, 0) >= 0 {
				bad(line, s.ID, rec, ErrID, "patient id is missing")
			}
		}
		st.PatientIDs = append(st.PatientIDs, id)
		lines = append(lines, line)
		for i, c := range s.Columns {
			text := strings.TrimSpace(rec[cols[i]])
			missing := s.IsMissing(text)
			switch c.Type {
			case cdm.StudyInt, cdm.StudyFloat:
				v := math.NaN()
				if !missing {
					f, err := strconv.ParseFloat(text, 64)
					switch {
					case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
						bad(line, c.CSV, rec, ErrValue, "%q is not a number", text)
					case c.Type == cdm.StudyInt && f != math.Trunc(f):
						bad(line, c.CSV, rec, ErrValue, "%q is not a whole number (column type int)", text)
					default:
						v = f
						if f < *c.Min || f > *c.Max {
							res.OutOfRange[c.Name]++
						}
					}
				}
				st.Numbers[c.Name] = append(st.Numbers[c.Name], v)
			case cdm.StudyString:
				v := ""
				if !missing {
					v = text
					if len(c.Values) > 0 && !slices.Contains(c.Values, v) {
						bad(line, c.CSV, rec, ErrValue, "%q is not one of the listed values (%s)", text, strings.Join(c.Values, ", "))
					}
				}
				st.Strings[c.Name] = append(st.Strings[c.Name], v)
			case cdm.StudyDate:
				d := cdm.NoDate
				if !missing {
					var err error
					if d, err = cdm.ParseDate(text); err != nil {
						bad(line, c.CSV, rec, ErrValue, "%q is not a date: want YYYY-MM-DD", text)
					}
				}
				st.Dates[c.Name] = append(st.Dates[c.Name], d)
			}
		}
	}
	// Per-patient row bound, reported at the first excess row.
	if len(res.Errors) == 0 {
		n := map[string]int{}
		for r, id := range st.PatientIDs {
			if n[id]++; n[id] > s.RowsPerPatient {
				res.Errors = append(res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: lines[r], Entry: -1}, Path: s.ID,
					Err: fmt.Errorf("%w: patient %q has more than %d row(s) (schema rows_per_patient)", ErrID, id, s.RowsPerPatient)})
			}
		}
	}
	return res, nil
}
