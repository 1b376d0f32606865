package synth

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Format is a file format Writer writes.
type Format string

// Formats.
const (
	// FormatCSV writes CSV files with a header row (RFC 4180: fields with
	// a comma, quote or line break are quoted, quotes doubled).
	FormatCSV Format = "csv"
	// FormatNDJSON writes one JSON object per line with the same keys as
	// the CSV columns.
	FormatNDJSON Format = "ndjson"
)

// ErrExists is returned by NewWriter when an output file exists and
// overwriting was not asked for.
var ErrExists = errors.New("synth: output file exists")

// Files and their columns, in the order written: the tables the generator
// makes, in the CSV form of the common data model that the node's CSV
// importer reads (cdm.TableSchema.CSVColumns):
//
//	patients.csv      patient_id,birth_date,sex,region,death_date
//	conditions.csv    id,patient_id,code,system,onset_date,abatement_date
//	observations.csv  id,patient_id,code,system,date,value,unit
//	encounters.csv    id,patient_id,class,type_code,type_system,start_date,end_date
//	medications.csv   id,patient_id,code,system,authored_date
//
// Dates are YYYY-MM-DD, empty when missing (death_date of the living,
// abatement_date of ongoing conditions). sex is female, male, other or
// unknown. system and type_system are code system URIs
// (http://snomed.info/sct, http://loinc.org,
// http://www.nlm.nih.gov/research/umls/rxnorm). value is a decimal number,
// empty when the observation has none. Every file has a header row. In
// NDJSON every line is an object with these keys; dates and missing values
// are then "" and value is a JSON number or null.
var Files = files(cdm.TablePatients, cdm.TableConditions, cdm.TableObservations, cdm.TableEncounters, cdm.TableMedications)

// File is one file Writer writes: a table and its columns.
type File struct {
	Name    string
	Columns []string
	table   *cdm.TableSchema
}

func files(names ...string) []File {
	out := make([]File, len(names))
	for i, n := range names {
		t, ok := cdm.LookupTable(n)
		if !ok {
			panic("synth: no table " + n)
		}
		out[i] = File{Name: n, Columns: t.CSVColumns(), table: t}
	}
	return out
}

// Writer writes records as CDM files (Files) into a directory. It is not
// safe for concurrent use.
type Writer struct {
	dir    string
	format Format
	files  []*os.File
	bufs   []*bufio.Writer
	counts []int
	row    []byte
	vals   []field
}

// field is one value of a row: text, or a number (for NDJSON).
type field struct {
	s      string
	num    float64
	isNum  bool
	isNull bool
}

// NewWriter creates dir (and parents) and the files in it in format f.
// It refuses to replace existing files (ErrExists) unless overwrite.
func NewWriter(dir string, f Format, overwrite bool) (*Writer, error) {
	if f != FormatCSV && f != FormatNDJSON {
		return nil, fmt.Errorf("synth: unknown format %q (want csv or ndjson)", f)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	n := len(Files)
	w := &Writer{dir: dir, format: f, files: make([]*os.File, n), bufs: make([]*bufio.Writer, n), counts: make([]int, n)}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	for i, file := range Files {
		p := filepath.Join(dir, file.Name+"."+string(f))
		fh, err := os.OpenFile(p, flags, 0o644)
		if err != nil {
			w.abort()
			if errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("%w: %s", ErrExists, p)
			}
			return nil, fmt.Errorf("synth: %w", err)
		}
		w.files[i] = fh
		w.bufs[i] = bufio.NewWriterSize(fh, 256<<10)
		if f == FormatCSV {
			w.bufs[i].WriteString(strings.Join(file.Columns, ",") + "\n")
		}
	}
	return w, nil
}

func (w *Writer) abort() {
	for _, f := range w.files {
		if f != nil {
			f.Close()
		}
	}
}

// Paths returns the paths of the files, in the order of Files.
func (w *Writer) Paths() []string {
	var out []string
	for _, f := range Files {
		out = append(out, filepath.Join(w.dir, f.Name+"."+string(w.format)))
	}
	return out
}

// Counts returns the number of rows written to each file, by file name
// (patients, conditions, ...).
func (w *Writer) Counts() map[string]int {
	m := map[string]int{}
	for i, f := range Files {
		m[f.Name] = w.counts[i]
	}
	return m
}

func str(s string) field { return field{s: s} }

func date(d cdm.Date) field {
	if d == cdm.NoDate {
		return field{}
	}
	return field{s: d.String()}
}

// Write appends r's records to the files.
func (w *Writer) Write(r *cdm.Records) error {
	for fi, f := range Files {
		t := f.table
		row := t.NewRow()
		for i := range t.Len(r) {
			t.Row(r, i, row)
			w.vals = w.vals[:0]
			if !t.Patients {
				w.vals = append(w.vals, str(row.ID))
			}
			w.vals = append(w.vals, str(row.PatientID))
			for k, c := range t.Columns {
				v := row.Values[k]
				switch c.Type {
				case cdm.TypeString:
					w.vals = append(w.vals, str(v.Str))
				case cdm.TypeDate:
					w.vals = append(w.vals, w.date(v.Date))
				default:
					x := field{isNull: true}
					if !math.IsNaN(v.Num) && !math.IsInf(v.Num, 0) {
						x = field{s: strconv.FormatFloat(v.Num, 'f', -1, 64), num: v.Num, isNum: true}
					}
					w.vals = append(w.vals, x)
				}
			}
			w.put(fi, len(w.vals))
		}
	}
	for _, b := range w.bufs {
		if b != nil {
			// bufio keeps the first error; report it now rather than at Close.
			if _, err := b.Write(nil); err != nil {
				return fmt.Errorf("synth: write %s: %w", w.dir, err)
			}
		}
	}
	return nil
}

// date formats d fast (the generator writes tens of millions of dates).
func (w *Writer) date(d cdm.Date) field {
	if d == cdm.NoDate {
		return field{}
	}
	y, m, dd := d.Civil()
	var b [10]byte
	b[0], b[1], b[2], b[3] = byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10)
	b[4], b[5], b[6], b[7] = '-', byte('0'+m/10), byte('0'+m%10), '-'
	b[8], b[9] = byte('0'+dd/10), byte('0'+dd%10)
	if y < 0 || y > 9999 {
		return date(d)
	}
	return field{s: string(b[:])}
}

// put writes the first n values of w.vals as one row of file i.
func (w *Writer) put(i, n int) {
	b := w.row[:0]
	cols := Files[i].Columns
	if w.format == FormatCSV {
		for k := range n {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendCSV(b, w.vals[k].s)
		}
	} else {
		b = append(b, '{')
		for k := range n {
			if k > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, cols[k])
			b = append(b, ':')
			switch v := w.vals[k]; {
			case v.isNull:
				b = append(b, "null"...)
			case v.isNum:
				b = append(b, v.s...)
			default:
				b = appendJSONString(b, v.s)
			}
		}
		b = append(b, '}')
	}
	b = append(b, '\n')
	w.bufs[i].Write(b)
	w.row = b
	w.counts[i]++
}

func appendCSV(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	b = append(b, strings.ReplaceAll(s, `"`, `""`)...)
	return append(b, '"')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, r)...)
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}

// Close flushes and syncs the files and closes them.
func (w *Writer) Close() error {
	var first error
	for i, f := range w.files {
		if f == nil {
			continue
		}
		if err := w.bufs[i].Flush(); err != nil && first == nil {
			first = err
		}
		if err := f.Sync(); err != nil && first == nil {
			first = err
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
		w.files[i] = nil
	}
	if first != nil {
		return fmt.Errorf("synth: %w", first)
	}
	return nil
}
