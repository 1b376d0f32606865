// Package csvimport reads CSV files in the columns of the common data model,
// one file per table, into cdm records.
//
// The first row is a header naming the columns (any order, case-sensitive,
// surrounding spaces ignored). Required: patient_id in every table; code in
// conditions, observations and medications. Other known columns are
// optional; unknown columns are an error (to catch typos). Dates are
// YYYY-MM-DD (or YYYY-MM, YYYY, or a FHIR dateTime); empty cells are missing
// values. Columns by table:
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
	"path/filepath"
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

// TableFromName returns the table a file name stands for: its base name
// without .csv, .ndjson or .jsonl (and .gz), either equal to a table name ("conditions.csv") or
// ending in "_" or "-" plus one ("site1_conditions.csv").
func TableFromName(name string) (string, bool) {
	base := strings.ToLower(filepath.Base(name))
	base = strings.TrimSuffix(base, ".gz")
	for _, ext := range []string{".csv", ".ndjson", ".jsonl"} {
		base = strings.TrimSuffix(base, ext)
	}
	for _, s := range cdm.Schema {
		if base == s.Name || strings.HasSuffix(base, "_"+s.Name) || strings.HasSuffix(base, "-"+s.Name) {
			return s.Name, true
		}
	}
	return "", false
}

// columns of each table, in canonical order (patient_id and id included).
var columns = map[string][]string{
	cdm.TablePatients:     {"patient_id", "birth_date", "sex", "region", "death_date"},
	cdm.TableConditions:   {"id", "patient_id", "code", "system", "onset_date", "abatement_date"},
	cdm.TableObservations: {"id", "patient_id", "code", "system", "date", "value", "unit"},
	cdm.TableEncounters:   {"id", "patient_id", "class", "type_code", "type_system", "start_date", "end_date"},
	cdm.TableMedications:  {"id", "patient_id", "code", "system", "authored_date"},
}

var required = map[string][]string{
	cdm.TablePatients:     {"patient_id"},
	cdm.TableConditions:   {"patient_id", "code"},
	cdm.TableObservations: {"patient_id", "code"},
	cdm.TableEncounters:   {"patient_id"},
	cdm.TableMedications:  {"patient_id", "code"},
}

// Parse reads one CSV file of table (or, when table is "", of the table
// its name stands for) and appends its good rows to r and o. It returns the
// bad rows; a file-level problem (unknown table, bad header) is one error
// and no rows.
func Parse(name string, data io.Reader, table string, r *cdm.Records, o *cdm.Origins) []*cdm.RecordError {
	fileErr := func(line int, kind error, msg string) []*cdm.RecordError {
		return []*cdm.RecordError{{Origin: cdm.Origin{File: name, Line: line, Entry: -1}, Err: &problem{kind, msg}}}
	}
	if table == "" {
		t, ok := TableFromName(name)
		if !ok {
			return fileErr(0, ErrTable, "cannot tell the table from the file name (want patients.csv, conditions.csv, observations.csv, encounters.csv or medications.csv, or give the table explicitly)")
		}
		table = t
	}
	cols, ok := columns[table]
	if !ok {
		return fileErr(0, ErrTable, fmt.Sprintf("unknown table %q", table))
	}
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
	for _, c := range required[table] {
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
		pcol, perr := addRow(table, get, row, cdm.Origin{File: name, Line: line, Entry: -1}, r, o)
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
// table appended to r and o. row is the row's raw fields (for derived ids).
// It returns the column and error of the first bad value.
func addRow(table string, get func(string) string, row []string, org cdm.Origin, r *cdm.Records, o *cdm.Origins) (pcol string, perr error) {
	date := func(c string) cdm.Date {
		v := get(c)
		d, err := cdm.ParseDate(v)
		if err != nil && perr == nil {
			perr, pcol = &problem{ErrDate, fmt.Sprintf("impossible date %q (want a real day as YYYY-MM-DD)", v)}, c
		}
		return d
	}
	need := func(c string) string {
		v := get(c)
		if v == "" && perr == nil {
			perr, pcol = &problem{ErrMissing, "missing required value " + c}, c
		}
		return v
	}
	switch table {
	case cdm.TablePatients:
		p := cdm.Patient{ID: need("patient_id"), BirthDate: date("birth_date"), Region: get("region"), DeathDate: date("death_date")}
		sex, err := cdm.ParseSex(get("sex"))
		if err != nil && perr == nil {
			perr, pcol = &problem{ErrValue, fmt.Sprintf("bad sex %q (want female, male, other or unknown)", get("sex"))}, "sex"
		}
		p.Sex = sex
		if perr == nil {
			r.Patients = append(r.Patients, p)
			o.Patients = append(o.Patients, org)
		}
	case cdm.TableConditions:
		c := cdm.Condition{ID: get("id"), PatientID: need("patient_id"), Code: need("code"), System: get("system"), Onset: date("onset_date"), Abatement: date("abatement_date")}
		if perr == nil {
			c.ID = idOr(c.ID, table, row)
			r.Conditions = append(r.Conditions, c)
			o.Conditions = append(o.Conditions, org)
		}
	case cdm.TableObservations:
		ob := cdm.Observation{ID: get("id"), PatientID: need("patient_id"), Code: need("code"), System: get("system"), Date: date("date"), Unit: get("unit")}
		if v := get("value"); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil && perr == nil {
				perr, pcol = &problem{ErrValue, fmt.Sprintf("bad number %q", v)}, "value"
			}
			ob.Value, ob.HasValue = f, err == nil
		}
		if perr == nil {
			ob.ID = idOr(ob.ID, table, row)
			r.Observations = append(r.Observations, ob)
			o.Observations = append(o.Observations, org)
		}
	case cdm.TableEncounters:
		e := cdm.Encounter{ID: get("id"), PatientID: need("patient_id"), Class: get("class"), TypeCode: get("type_code"), TypeSystem: get("type_system"), Start: date("start_date"), End: date("end_date")}
		if perr == nil {
			e.ID = idOr(e.ID, table, row)
			r.Encounters = append(r.Encounters, e)
			o.Encounters = append(o.Encounters, org)
		}
	case cdm.TableMedications:
		m := cdm.Medication{ID: get("id"), PatientID: need("patient_id"), Code: need("code"), System: get("system"), Authored: date("authored_date")}
		if perr == nil {
			m.ID = idOr(m.ID, table, row)
			r.Medications = append(r.Medications, m)
			o.Medications = append(o.Medications, org)
		}
	}
	return pcol, perr
}

// ParseNDJSON reads one NDJSON file of table (or of the table its name
// stands for: patients.ndjson, site1_conditions.jsonl, ...) whose lines are
// objects with the CSV column names as keys (what `fedstat synth --format
// ndjson` writes): text values as strings, value as a number or null,
// missing values as "" or null. Unknown keys are errors.
func ParseNDJSON(name string, data io.Reader, table string, r *cdm.Records, o *cdm.Origins) []*cdm.RecordError {
	fileErr := func(kind error, msg string) []*cdm.RecordError {
		return []*cdm.RecordError{{Origin: cdm.Origin{File: name, Entry: -1}, Err: &problem{kind, msg}}}
	}
	if table == "" {
		t, ok := TableFromName(name)
		if !ok {
			return fileErr(ErrTable, "cannot tell the table from the file name")
		}
		table = t
	}
	cols, ok := columns[table]
	if !ok {
		return fileErr(ErrTable, fmt.Sprintf("unknown table %q", table))
	}
	var bad []*cdm.RecordError
	br := bufio.NewReaderSize(data, 1<<16)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			org := cdm.Origin{File: name, Line: line, Entry: -1}
			fail := func(col string, e error) {
				bad = append(bad, &cdm.RecordError{Origin: org, Path: col, Err: e, Raw: bytes.TrimSpace(bytes.Clone(b))})
			}
			var obj map[string]any
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&obj); err != nil || obj == nil {
				fail("", &problem{ErrSyntax, "malformed JSON object"})
			} else if col, perr := ndjsonRow(table, cols, obj, org, r, o); perr != nil {
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

func ndjsonRow(table string, cols []string, obj map[string]any, org cdm.Origin, r *cdm.Records, o *cdm.Origins) (string, error) {
	vals := map[string]string{}
	for k, v := range obj {
		known := false
		for _, c := range cols {
			known = known || c == k
		}
		if !known {
			return k, &problem{ErrHeader, fmt.Sprintf("unknown key %q for table %s (want some of %s)", k, table, strings.Join(cols, ","))}
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
	for _, c := range required[table] {
		if _, ok := obj[c]; !ok {
			return c, &problem{ErrMissing, "missing required key " + c}
		}
	}
	row := make([]string, len(cols))
	for i, c := range cols {
		row[i] = vals[c]
	}
	return addRow(table, func(c string) string { return vals[c] }, row, org, r, o)
}
