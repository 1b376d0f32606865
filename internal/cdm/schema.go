package cdm

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
)

// ColumnType is the type of a column as the query language sees it.
type ColumnType uint8

// Column types.
const (
	TypeString ColumnType = iota + 1 // dictionary-encoded text (codes, regions, sex)
	TypeDate                         // Date
	TypeNumber                       // float64, NaN for missing
)

func (t ColumnType) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeDate:
		return "date"
	case TypeNumber:
		return "number"
	}
	return "invalid"
}

// Column describes one column of a table.
type Column struct {
	Name string
	Type ColumnType
	Doc  string
	// Required makes importers that read columns by name (CSV, CDM rows
	// as NDJSON) refuse a record without a value: the column must be in
	// the header and its cell not empty.
	Required bool
	// Values, when set, is the column's fixed, public domain (sex): the
	// store keeps a value as its index in Values, one byte, and an index
	// out of range reads as Values[0].
	Values []string
	// Parse, when set, turns the text of a value (a CSV cell) into the
	// value, or says why it cannot; the error's text is shown with the
	// file, line and column. Without it, text columns keep the text,
	// dates go through ParseDate and numbers through strconv.ParseFloat.
	Parse func(text string) (string, error)
	// Added marks a column appended to its table after records of it were
	// stored. A stored record may end before it (it then reads as
	// missing), and the store omits it when it and every column after it
	// are missing, so records that do not use it keep their stored form.
	// Columns are only ever appended.
	Added bool
	// Secret marks a column no query may read (a direct identifier such as
	// the patients' identifiers): the planner does not know it, so it is
	// neither in the catalogue nor in suggestions. Only record linkage
	// reads it, inside the node (Tables.ResidentKey).
	Secret bool
}

// TableSchema describes one table. Every table has a patient_id column (the
// privacy unit) that is not listed in Columns: it is stored as Table.Patient.
// The tables of the common data model are declared in tables.go and listed
// in Schema; study tables (study.go) have a TableSchema of their own built
// by the query planner, with only Name and Columns.
type TableSchema struct {
	Name    string
	Columns []Column
	// Doc says what a row is.
	Doc string
	// Patients marks the table of patients: one row per patient, whose
	// record id is the patient id and whose columns are attributes of the
	// patient, visible on every table.
	Patients bool
	// Code is the table's byte in the node store's keys. It never changes
	// once records are stored with it; patients have the smallest, so that
	// a scan in key order meets every patient before the records naming it.
	Code byte
	// Coded names the table's code column and the column of its code
	// system, when it has them: node status lists the most frequent
	// codes, the warehouse reads them through a source concept.
	Coded [2]string
	// Codings names the column holding a record's other codings (when its
	// source gave several: FormatCodings), or is empty. A condition on the
	// Coded columns matches a row when any of its codings matches
	// (queries/eval); the query language does not name this column.
	Codings string

	index int       // position in Schema
	rows  rowAccess // the table's slice of Records
}

// Lookup returns the column named name.
func (s *TableSchema) Lookup(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Value is one value of a column: Str for text, Date for dates (NoDate
// missing), Num for numbers (NaN missing).
type Value struct {
	Str  string
	Date Date
	Num  float64
}

// Row is one record of a table in generic form: its record id, its
// patient's id (the record id for patients) and its values in the order of
// the table's Columns.
type Row struct {
	ID        string
	PatientID string
	Values    []Value
}

// NewRow returns a row with room for the table's values.
func (s *TableSchema) NewRow() *Row { return &Row{Values: make([]Value, len(s.Columns))} }

// Len returns the number of records of the table in r.
func (s *TableSchema) Len(r *Records) int { return s.rows.len(r) }

// Row fills row with record i of the table in r.
func (s *TableSchema) Row(r *Records, i int, row *Row) {
	if len(row.Values) != len(s.Columns) {
		row.Values = make([]Value, len(s.Columns))
	}
	s.rows.get(r, i, row)
}

// AddRow appends row to the table in r.
func (s *TableSchema) AddRow(r *Records, row *Row) { s.rows.add(r, row) }

// SetRow replaces the values of record i of the table in r by row's (its
// record and patient ids are kept).
func (s *TableSchema) SetRow(r *Records, i int, row *Row) { s.rows.set(r, i, row) }

// Key returns the record id and the patient id of record i of the table in
// r.
func (s *TableSchema) Key(r *Records, i int) (id, patientID string) {
	idp, pp := s.rows.key(r, i)
	return *idp, *pp
}

// PatientRef returns the patient id field of record i of the table in r,
// for decoders that resolve references after the record was added.
func (s *TableSchema) PatientRef(r *Records, i int) *string {
	_, pp := s.rows.key(r, i)
	return pp
}

// CSVColumns returns the table's columns as the CSV and CDM-row NDJSON
// formats name them, in order: id (except for patients, whose id is
// patient_id), patient_id, then Columns.
func (s *TableSchema) CSVColumns() []string {
	var out []string
	if !s.Patients {
		out = append(out, "id")
	}
	out = append(out, "patient_id")
	for _, c := range s.Columns {
		out = append(out, c.Name)
	}
	return out
}

// RequiredColumns returns the CSV columns a record must have a value in:
// patient_id and the Required columns.
func (s *TableSchema) RequiredColumns() []string {
	out := []string{"patient_id"}
	for _, c := range s.Columns {
		if c.Required {
			out = append(out, c.Name)
		}
	}
	return out
}

// LookupTable returns the schema of the CDM table named name.
func LookupTable(name string) (*TableSchema, bool) {
	for i := range Schema {
		if Schema[i].Name == name {
			return &Schema[i], true
		}
	}
	return nil, false
}

// TableOfCode returns the CDM table whose store code is code.
func TableOfCode(code byte) (*TableSchema, bool) {
	for i := range Schema {
		if Schema[i].Code == code {
			return &Schema[i], true
		}
	}
	return nil, false
}

// TableNames returns the names of the CDM tables, in Schema order.
func TableNames() []string {
	out := make([]string, len(Schema))
	for i := range Schema {
		out[i] = Schema[i].Name
	}
	return out
}

// TableOfFile returns the table a file of CDM rows stands for by its name:
// the base name without .gz and then .csv, .ndjson or .jsonl, in lower
// case, either a table name ("conditions.csv") or ending in "_" or "-"
// plus one ("site1_conditions.csv", "b-patients.ndjson.gz").
func TableOfFile(name string) (string, bool) {
	base := strings.ToLower(filepath.Base(name))
	base = strings.TrimSuffix(base, ".gz")
	for _, ext := range []string{".csv", ".ndjson", ".jsonl"} {
		base = strings.TrimSuffix(base, ext)
	}
	for i := range Schema {
		n := Schema[i].Name
		if base == n || strings.HasSuffix(base, "_"+n) || strings.HasSuffix(base, "-"+n) {
			return n, true
		}
	}
	return "", false
}

// register numbers the declared tables and returns them as Schema.
func register(tables ...declared) []TableSchema {
	out := make([]TableSchema, len(tables))
	for i, t := range tables {
		t.setIndex(i)
		out[i] = t.schema()
	}
	if !slices.IsSortedFunc(out, func(a, b TableSchema) int { return int(a.Code) - int(b.Code) }) || !out[0].Patients || len(out) > maxTables {
		panic("cdm: tables must be declared patients first, in store code order, at most maxTables")
	}
	return out
}

// declared is a table declaration (declare) before it is registered.
type declared interface {
	schema() TableSchema
	setIndex(i int)
}

// rowAccess is a table's slice of Records, read and written through rows.
type rowAccess interface {
	len(r *Records) int
	get(r *Records, i int, row *Row)
	add(r *Records, row *Row)
	set(r *Records, i int, row *Row)
	key(r *Records, i int) (id, patientID *string)
	truncate(r *Records, n int)
	copy(dst, src *Records, i int)
	appendAll(dst, src *Records)
}

// table is the declaration of a table whose records are of type T.
type table[T any] struct {
	s      TableSchema
	slice  func(*Records) *[]T
	keys   func(*T) (id, patientID *string)
	fields []field[T]
}

// field is one column of records of type T.
type field[T any] struct {
	Column
	get func(*T) Value
	set func(*T, Value)
}

func (f field[T]) required() field[T] { f.Required = true; return f }

// added marks a column appended to a table that had stored records
// (Column.Added).
func (f field[T]) added() field[T] { f.Added = true; return f }

func stringField[T any](name, doc string, p func(*T) *string) field[T] {
	return field[T]{Column: Column{Name: name, Type: TypeString, Doc: doc},
		get: func(x *T) Value { return Value{Str: *p(x)} },
		set: func(x *T, v Value) { *p(x) = v.Str }}
}

func dateField[T any](name, doc string, p func(*T) *Date) field[T] {
	return field[T]{Column: Column{Name: name, Type: TypeDate, Doc: doc},
		get: func(x *T) Value { return Value{Date: *p(x)} },
		set: func(x *T, v Value) { *p(x) = v.Date }}
}

// declare declares a table: its schema (without Columns, which come from
// fields), where its records are in Records, their record and patient id
// fields, and their columns.
func declare[T any](s TableSchema, slice func(*Records) *[]T, keys func(*T) (id, patientID *string), fields ...field[T]) *table[T] {
	for _, f := range fields {
		s.Columns = append(s.Columns, f.Column)
	}
	t := &table[T]{s: s, slice: slice, keys: keys, fields: fields}
	t.s.rows = t
	return t
}

func (t *table[T]) schema() TableSchema { return t.s }

func (t *table[T]) setIndex(i int) { t.s.index = i }

// registered returns the table's entry in Schema.
func (t *table[T]) registered() *TableSchema { return &Schema[t.s.index] }

func (t *table[T]) len(r *Records) int { return len(*t.slice(r)) }

func (t *table[T]) get(r *Records, i int, row *Row) { t.getT(&(*t.slice(r))[i], row) }

func (t *table[T]) getT(x *T, row *Row) {
	id, pid := t.keys(x)
	row.ID, row.PatientID = *id, *pid
	for k, f := range t.fields {
		row.Values[k] = f.get(x)
	}
}

func (t *table[T]) add(r *Records, row *Row) {
	var x T
	id, pid := t.keys(&x)
	*pid = row.PatientID
	*id = row.ID // after the patient id: for patients they are one field
	for k, f := range t.fields {
		f.set(&x, row.Values[k])
	}
	Push(t.slice(r), x)
}

func (t *table[T]) set(r *Records, i int, row *Row) {
	x := &(*t.slice(r))[i]
	for k, f := range t.fields {
		f.set(x, row.Values[k])
	}
}

func (t *table[T]) key(r *Records, i int) (*string, *string) { return t.keys(&(*t.slice(r))[i]) }

func (t *table[T]) truncate(r *Records, n int) { s := t.slice(r); *s = (*s)[:n] }

func (t *table[T]) copy(dst, src *Records, i int) {
	Push(t.slice(dst), (*t.slice(src))[i])
}

func (t *table[T]) appendAll(dst, src *Records) {
	d := t.slice(dst)
	*d = append(*d, *t.slice(src)...)
}

var nan = math.NaN()
