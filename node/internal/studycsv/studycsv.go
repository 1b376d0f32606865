// Package studycsv reads a research data set from CSV into a cdm.Study, by
// its schema (cdm.StudySchema).
//
// The first row is a header. Every schema column (by its csv name) and the
// schema's id column must be in it; other CSV columns are ignored. Rows with
// the same id are one person; a schema without an id must say unit = "row"
// (each row a different person, cdm.UnitRow), or the reader refuses it.
// Cells are trimmed of surrounding spaces; the schema's missing texts (""
// and "NA" by default) are missing values. int cells must be whole numbers,
// float cells numbers, date cells YYYY-MM-DD, and a string cell of a column
// with listed values one of them. Number cells outside the column's public
// range are accepted (queries clamp them) and counted. Id cells are kept
// as written (trimmed): in a linked network they are the shared resident
// identifier.
//
// Reader streams a file of any size in chunks of rows (the store stages
// them, node/internal/store.ImportStudyFrom); Read reads a whole file into
// memory. Each bad cell is a *cdm.RecordError with the file, line and
// column. The per-person row bound (rows_per_patient) needs every row of a
// person: Read checks it, and with Reader the store does.
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

// Chunk is a run of rows read by Reader.Next. It is reused by the next
// call: its contents are valid until then.
type Chunk struct {
	// Rows holds the good rows (schema of the reader).
	Rows *cdm.Study
	// Origins gives each row of Rows its file and line.
	Origins []cdm.Origin
	// Bad lists the bad rows met while reading the chunk (not in Rows),
	// one error per bad cell.
	Bad []*cdm.RecordError
}

// Reader reads a study CSV a chunk of rows at a time; memory stays bounded
// by the chunk size whatever the size of the file. Not safe for concurrent
// use.
type Reader struct {
	cr     *csv.Reader
	name   string
	s      *cdm.StudySchema
	header []string
	cols   []int // CSV column of each schema column
	idCol  int   // CSV column of the id, or -1 (unit row)
	row    int   // rows read, good or bad
	chunk  Chunk
	eof    bool
	// OutOfRange counts number cells outside their column's range, by
	// column name, so far.
	OutOfRange map[string]int
}

// NewReader reads the header of the CSV text r (named file in messages)
// for a study of schema s. A header problem is a *cdm.RecordError at line
// 1 (ErrHeader); a schema with neither id nor unit = "row" is
// cdm.ErrBadSchema.
func NewReader(r io.Reader, file string, s *cdm.StudySchema) (*Reader, error) {
	name := filepath.Base(file)
	if s.ID == "" && s.Unit != cdm.UnitRow {
		return nil, fmt.Errorf("%w: study %s names no person key (id) and does not say unit = %q (each row a different person)",
			cdm.ErrBadSchema, s.Name, cdm.UnitRow)
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, &cdm.RecordError{Origin: cdm.Origin{File: name, Line: 1, Entry: -1}, Err: fmt.Errorf("%w: %w", ErrHeader, err)}
	}
	header = slices.Clone(header)
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
	rd := &Reader{cr: cr, name: name, s: s, header: header, idCol: -1, OutOfRange: map[string]int{}}
	rd.cols = make([]int, len(s.Columns))
	for i, c := range s.Columns {
		j, ok := index[c.CSV]
		if !ok {
			return nil, headerErr("no column %q (schema column %s); the header has %s", c.CSV, c.Name, strings.Join(header, ", "))
		}
		rd.cols[i] = j
	}
	if s.ID != "" {
		j, ok := index[s.ID]
		if !ok {
			return nil, headerErr("no patient id column %q; the header has %s", s.ID, strings.Join(header, ", "))
		}
		rd.idCol = j
	}
	rd.chunk.Rows = &cdm.Study{Schema: *s, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	return rd, nil
}

// Next reads up to max rows (good or bad) and returns them; io.EOF when the
// file has no more rows. Strings in the chunk may share memory with the
// reader's buffers: a caller that keeps them clones them. Other errors are
// the input's (reading failed).
func (rd *Reader) Next(max int) (*Chunk, error) {
	if rd.eof {
		return nil, io.EOF
	}
	s, c := rd.s, &rd.chunk
	st := c.Rows
	st.PatientIDs = st.PatientIDs[:0]
	for _, col := range s.Columns {
		switch col.Type {
		case cdm.StudyInt, cdm.StudyFloat:
			st.Numbers[col.Name] = st.Numbers[col.Name][:0]
		case cdm.StudyString:
			st.Strings[col.Name] = st.Strings[col.Name][:0]
		case cdm.StudyDate:
			st.Dates[col.Name] = st.Dates[col.Name][:0]
		}
	}
	c.Origins, c.Bad = c.Origins[:0], c.Bad[:0]
	// Values of the row being read, committed to st only when it is good.
	var (
		nums  = make([]float64, len(s.Columns))
		strs  = make([]string, len(s.Columns))
		dates = make([]cdm.Date, len(s.Columns))
	)
	for n := 0; n < max; n++ {
		rec, err := rd.cr.Read()
		if err == io.EOF {
			rd.eof = true
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, fmt.Errorf("studycsv: %s: %w", rd.name, err)
			}
			rd.bad(pe.Line, "", nil, ErrSyntax, "%v", pe.Err)
			continue
		}
		line, _ := rd.cr.FieldPos(0)
		if len(rec) != len(rd.header) {
			rd.bad(line, "", rec, ErrSyntax, "%d fields, the header has %d", len(rec), len(rd.header))
			continue
		}
		rd.row++
		nbad := len(c.Bad)
		var id string
		if rd.idCol >= 0 {
			id = strings.TrimSpace(rec[rd.idCol])
			if id == "" || s.IsMissing(id) || strings.IndexByte(id, 0) >= 0 {
				rd.bad(line, s.ID, rec, ErrID, "patient id is missing")
			}
		} else {
			id = s.Name + "-" + strconv.Itoa(rd.row)
		}
		for i, col := range s.Columns {
			text := strings.TrimSpace(rec[rd.cols[i]])
			missing := s.IsMissing(text)
			switch col.Type {
			case cdm.StudyInt, cdm.StudyFloat:
				v := math.NaN()
				if !missing {
					f, err := strconv.ParseFloat(text, 64)
					switch {
					case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
						rd.bad(line, col.CSV, rec, ErrValue, "%q is not a number", text)
					case col.Type == cdm.StudyInt && f != math.Trunc(f):
						rd.bad(line, col.CSV, rec, ErrValue, "%q is not a whole number (column type int)", text)
					default:
						v = f
						if f < *col.Min || f > *col.Max {
							rd.OutOfRange[col.Name]++
						}
					}
				}
				nums[i] = v
			case cdm.StudyString:
				v := ""
				if !missing {
					v = text
					if len(col.Values) > 0 && !slices.Contains(col.Values, v) {
						rd.bad(line, col.CSV, rec, ErrValue, "%q is not one of the listed values (%s)", text, strings.Join(col.Values, ", "))
					}
				}
				strs[i] = v
			case cdm.StudyDate:
				d := cdm.NoDate
				if !missing {
					var err error
					if d, err = cdm.ParseDate(text); err != nil {
						rd.bad(line, col.CSV, rec, ErrValue, "%q is not a date: want YYYY-MM-DD", text)
					}
				}
				dates[i] = d
			}
		}
		if len(c.Bad) > nbad {
			continue
		}
		st.PatientIDs = append(st.PatientIDs, id)
		c.Origins = append(c.Origins, cdm.Origin{File: rd.name, Line: line, Entry: -1})
		for i, col := range s.Columns {
			switch col.Type {
			case cdm.StudyInt, cdm.StudyFloat:
				st.Numbers[col.Name] = append(st.Numbers[col.Name], nums[i])
			case cdm.StudyString:
				st.Strings[col.Name] = append(st.Strings[col.Name], strs[i])
			case cdm.StudyDate:
				st.Dates[col.Name] = append(st.Dates[col.Name], dates[i])
			}
		}
	}
	if rd.eof && len(st.PatientIDs) == 0 && len(c.Bad) == 0 {
		return nil, io.EOF
	}
	return c, nil
}

// Offset is how many bytes of the input the reader has consumed, for
// estimating the rows of a file from its size.
func (rd *Reader) Offset() int64 { return rd.cr.InputOffset() }

// bad records a bad cell of the chunk being read. raw is copied (the CSV
// reader reuses its record).
func (rd *Reader) bad(line int, col string, raw []string, kind error, format string, args ...any) {
	rd.chunk.Bad = append(rd.chunk.Bad, &cdm.RecordError{Origin: cdm.Origin{File: rd.name, Line: line, Entry: -1}, Path: col,
		Err: fmt.Errorf("%w: "+format, append([]any{kind}, args...)...), Raw: []byte(strings.Join(raw, ","))})
}

// Read reads the whole CSV text r (named file in messages) as a study of
// schema s, into memory (use Reader for large files). A header problem is
// returned as an error; bad cells, and rows beyond a person's
// rows_per_patient, are in Result.Errors.
func Read(r io.Reader, file string, s *cdm.StudySchema) (*Result, error) {
	rd, err := NewReader(r, file, s)
	if err != nil {
		return nil, err
	}
	st := &cdm.Study{Schema: *s, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	res := &Result{Study: st, OutOfRange: rd.OutOfRange}
	var lines []int
	for {
		c, err := rd.Next(4096)
		if err == io.EOF {
			break
		}
		if err != nil {
			res.Errors = append(res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: rd.name, Entry: -1}, Err: fmt.Errorf("%w: %w", ErrSyntax, err)})
			break
		}
		res.Errors = append(res.Errors, c.Bad...)
		for _, id := range c.Rows.PatientIDs {
			st.PatientIDs = append(st.PatientIDs, strings.Clone(id))
		}
		for _, o := range c.Origins {
			lines = append(lines, o.Line)
		}
		for _, col := range s.Columns {
			switch col.Type {
			case cdm.StudyInt, cdm.StudyFloat:
				st.Numbers[col.Name] = append(st.Numbers[col.Name], c.Rows.Numbers[col.Name]...)
			case cdm.StudyString:
				for _, v := range c.Rows.Strings[col.Name] {
					st.Strings[col.Name] = append(st.Strings[col.Name], strings.Clone(v))
				}
			case cdm.StudyDate:
				st.Dates[col.Name] = append(st.Dates[col.Name], c.Rows.Dates[col.Name]...)
			}
		}
	}
	// Per-patient row bound, reported at the first excess row.
	if len(res.Errors) == 0 {
		n := map[string]int{}
		for r, id := range st.PatientIDs {
			if n[id]++; n[id] > s.RowsPerPatient {
				res.Errors = append(res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: rd.name, Line: lines[r], Entry: -1}, Path: s.ID,
					Err: fmt.Errorf("%w: patient %q has more than %d row(s) (schema rows_per_patient)", ErrID, id, s.RowsPerPatient)})
			}
		}
	}
	return res, nil
}
