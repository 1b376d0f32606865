package cdm

import (
	"maps"
	"sort"
	"sync"
)

// Dict is a string dictionary: each distinct value gets a dense uint32 id in
// order of first appearance. Dicts are built single-threaded and then read
// concurrently.
type Dict struct {
	values []string
	index  map[string]uint32
	// The value Put last and its id: a column often holds one value for
	// many rows in a row (a status, a code system, the empty string).
	last    string
	lastID  uint32
	hasLast bool
}

// NewDict returns an empty dictionary.
func NewDict() *Dict { return &Dict{index: make(map[string]uint32)} }

// Put returns the id of s, adding it if new.
func (d *Dict) Put(s string) uint32 {
	if d.hasLast && s == d.last {
		return d.lastID
	}
	id, ok := d.index[s]
	if !ok {
		id = uint32(len(d.values))
		d.values = append(d.values, s)
		d.index[s] = id
	}
	d.last, d.lastID, d.hasLast = s, id, true
	return id
}

// Lookup returns the id of s.
func (d *Dict) Lookup(s string) (uint32, bool) {
	id, ok := d.index[s]
	return id, ok
}

// Value returns the string of id.
func (d *Dict) Value(id uint32) string { return d.values[id] }

// Len returns the number of distinct values.
func (d *Dict) Len() int { return len(d.values) }

// Values returns all values in id order. The slice must not be modified.
func (d *Dict) Values() []string { return d.values }

// StringColumn is a dictionary-encoded text column.
type StringColumn struct {
	IDs  []uint32
	Dict *Dict
}

// Table is one table in columnar form. Row i belongs to the patient with index
// Patient[i] (an index into Tables.PatientIDs). Columns are held by name in
// the map of their type; a table has each column in exactly one map.
// Missing values: dates are NoDate, numbers NaN, strings the empty string.
type Table struct {
	Name    string
	Rows    int
	Patient []uint32
	Strings map[string]*StringColumn
	Dates   map[string][]Date
	Numbers map[string][]float64
	// Codings holds, for a CDM table with a codings column
	// (TableSchema.Codings), the codings of each of that column's
	// dictionary entries, by id (ParseCodings), so that matching a code
	// against every coding of a row costs one lookup per row.
	Codings [][]Coding
}

func newTable(name string) *Table {
	return &Table{Name: name, Strings: map[string]*StringColumn{}, Dates: map[string][]Date{}, Numbers: map[string][]float64{}}
}

// Tables is an immutable, in-memory columnar copy of a node's data, built at
// start and rebuilt (or extended) on import. It is safe for concurrent reads.
type Tables struct {
	// PatientIDs maps a patient index to the patient's id.
	PatientIDs []string
	byName     map[string]*Table
	// patientIndex maps a patient id to its index (nil for Tables not made
	// by a Builder).
	patientIndex map[string]uint32
	// residentOnce guards hasPatientRow and identifiers, built on the
	// first ResidentKey.
	residentOnce  sync.Once
	hasPatientRow []bool
	identifiers   [][]Coding
}

// PatientIndex returns the index of the patient with the given id.
func (t *Tables) PatientIndex(id string) (uint32, bool) {
	if t.patientIndex == nil {
		for i, p := range t.PatientIDs {
			if p == id {
				return uint32(i), true
			}
		}
		return 0, false
	}
	i, ok := t.patientIndex[id]
	return i, ok
}

// Table returns the table named name (a CDM table or a study table).
func (t *Tables) Table(name string) (*Table, bool) {
	tb, ok := t.byName[name]
	return tb, ok
}

// Names returns the table names, sorted.
func (t *Tables) Names() []string {
	out := make([]string, 0, len(t.byName))
	for n := range t.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NumPatients returns the number of patients.
func (t *Tables) NumPatients() int { return len(t.PatientIDs) }

// RowCounts returns the number of rows of every table (CDM and study), by
// name: with NumPatients, a data source's exact summary.
func (t *Tables) RowCounts() map[string]int64 {
	out := make(map[string]int64, len(t.byName))
	for name, tb := range t.byName {
		out[name] = int64(tb.Rows)
	}
	return out
}

// Builder accumulates records into columnar tables, one per table of
// Schema. Records of other tables must name a patient added before; a
// record of an unknown patient is not added (AddRow reports false; the
// importers reported it as a bad record earlier).
type Builder struct {
	patientIndex map[string]uint32
	ids          []string
	tables       map[string]*Table
	// Column buffers of the CDM tables by Schema index, resolved once so
	// that adding a row costs no lookups by column name. Build moves them
	// into the tables.
	bufs []*tableBuf
}

// tableBuf holds one CDM table's columns while it is built, in schema order
// per type.
type tableBuf struct {
	s     *TableSchema
	t     *Table
	slot  []int // column i of s is strs, dates or nums[slot[i]], by its type
	strs  []*StringColumn
	dates [][]Date
	nums  [][]float64
	names struct{ dates, nums []string }
}

// NewBuilder returns a builder with the CDM tables of Schema, empty.
func NewBuilder() *Builder {
	b := &Builder{patientIndex: map[string]uint32{}, tables: map[string]*Table{}}
	for i := range Schema {
		s := &Schema[i]
		t := newTable(s.Name)
		tb := &tableBuf{s: s, t: t}
		for _, c := range s.Columns {
			switch c.Type {
			case TypeString:
				col := &StringColumn{Dict: NewDict()}
				t.Strings[c.Name] = col
				tb.slot = append(tb.slot, len(tb.strs))
				tb.strs = append(tb.strs, col)
			case TypeDate:
				t.Dates[c.Name] = nil
				tb.slot = append(tb.slot, len(tb.dates))
				tb.dates = append(tb.dates, nil)
				tb.names.dates = append(tb.names.dates, c.Name)
			case TypeNumber:
				t.Numbers[c.Name] = nil
				tb.slot = append(tb.slot, len(tb.nums))
				tb.nums = append(tb.nums, nil)
				tb.names.nums = append(tb.names.nums, c.Name)
			}
		}
		b.tables[s.Name] = t
		b.bufs = append(b.bufs, tb)
	}
	return b
}

// patient returns the index of id, adding a patient row placeholder if new.
func (b *Builder) patient(id string) uint32 {
	if i, ok := b.patientIndex[id]; ok {
		return i
	}
	i := uint32(len(b.ids))
	b.ids = append(b.ids, id)
	b.patientIndex[id] = i
	return i
}

// values appends one row of vals (in schema order) to the columns.
func (tb *tableBuf) values(patient uint32, vals []Value) {
	tb.t.Patient = append(tb.t.Patient, patient)
	tb.t.Rows++
	for k, c := range tb.s.Columns {
		j := tb.slot[k]
		switch c.Type {
		case TypeString:
			col := tb.strs[j]
			col.IDs = append(col.IDs, col.Dict.Put(vals[k].Str))
		case TypeDate:
			tb.dates[j] = append(tb.dates[j], vals[k].Date)
		case TypeNumber:
			tb.nums[j] = append(tb.nums[j], vals[k].Num)
		}
	}
}

// AddRow adds a record of table t (an entry of Schema). A patient (the
// patients table) added twice keeps its first row (importers deduplicate);
// a record of another table is added only if its patient was added before,
// else AddRow reports false.
func (b *Builder) AddRow(t *TableSchema, row *Row) bool {
	if t.Patients {
		if _, ok := b.patientIndex[row.ID]; ok {
			return true
		}
		b.bufs[t.index].values(b.patient(row.ID), row.Values)
		return true
	}
	i, ok := b.patientIndex[row.PatientID]
	if ok {
		b.bufs[t.index].values(i, row.Values)
	}
	return ok
}

// AddRowAt adds a record of table t (not the patients table) of the
// patient with index i (as PatientIndex returns it), with its values in
// schema order. Loaders that know patient indices use it to skip the
// lookup by id.
func (b *Builder) AddRowAt(t *TableSchema, i uint32, vals []Value) {
	b.bufs[t.index].values(i, vals)
}

// PatientIndex returns the index of a patient added earlier.
func (b *Builder) PatientIndex(id string) (uint32, bool) {
	i, ok := b.patientIndex[id]
	return i, ok
}

// AddRecords adds all records of r, patients first. It returns the number of
// non-patient records whose patient is unknown (they are not added; importers
// report them as errors before they get here).
func (b *Builder) AddRecords(r *Records) (unknown int) {
	for ti := range Schema {
		t := &Schema[ti]
		row := t.NewRow()
		for i := range t.Len(r) {
			t.Row(r, i, row)
			if !b.AddRow(t, row) {
				unknown++
			}
		}
	}
	return unknown
}

// addTyped adds one typed record of table t.
func addTyped[T any](b *Builder, t *table[T], x *T, i uint32, at bool) bool {
	s := t.registered()
	row := s.NewRow()
	t.getT(x, row)
	if at {
		b.AddRowAt(s, i, row.Values)
		return true
	}
	return b.AddRow(s, row)
}

// AddPatient adds a patient; a patient added twice keeps the first row.
// AddPatient, AddCondition and the like are AddRow for one table, for tests
// and tools that build tables by hand.
func (b *Builder) AddPatient(p *Patient) { addTyped(b, patients, p, 0, false) }

// AddCondition adds a condition of a known patient; it reports false if the
// patient is unknown (nothing is added).
func (b *Builder) AddCondition(c *Condition) bool { return addTyped(b, conditions, c, 0, false) }

// AddConditionAt adds a condition of the patient with index i (c.PatientID
// is not looked at).
func (b *Builder) AddConditionAt(i uint32, c *Condition) { addTyped(b, conditions, c, i, true) }

// AddObservation adds an observation of a known patient.
func (b *Builder) AddObservation(o *Observation) bool { return addTyped(b, observations, o, 0, false) }

// AddObservationAt adds an observation of the patient with index i.
func (b *Builder) AddObservationAt(i uint32, o *Observation) { addTyped(b, observations, o, i, true) }

// AddEncounter adds an encounter of a known patient.
func (b *Builder) AddEncounter(e *Encounter) bool { return addTyped(b, encounters, e, 0, false) }

// AddEncounterAt adds an encounter of the patient with index i.
func (b *Builder) AddEncounterAt(i uint32, e *Encounter) { addTyped(b, encounters, e, i, true) }

// AddMedication adds a medication of a known patient.
func (b *Builder) AddMedication(m *Medication) bool { return addTyped(b, medications, m, 0, false) }

// AddMedicationAt adds a medication of the patient with index i.
func (b *Builder) AddMedicationAt(i uint32, m *Medication) { addTyped(b, medications, m, i, true) }

// AddTable adds a finished non-CDM table (a study table). Its Patient column
// must hold indices of patients added to this builder.
func (b *Builder) AddTable(t *Table) { b.tables[t.Name] = t }

// buf returns the column buffers of the CDM table named name (nil for
// other names).
func (b *Builder) buf(name string) *tableBuf {
	if s, ok := LookupTable(name); ok {
		return b.bufs[s.index]
	}
	return nil
}

// Build returns the finished tables. The builder must not be used afterwards.
func (b *Builder) Build() *Tables {
	for _, tb := range b.bufs {
		if b.tables[tb.t.Name] != tb.t {
			continue // replaced by AddTable
		}
		for i, name := range tb.names.dates {
			tb.t.Dates[name] = tb.dates[i]
		}
		for i, name := range tb.names.nums {
			tb.t.Numbers[name] = tb.nums[i]
		}
		if name := tb.s.Codings; name != "" {
			vals := tb.t.Strings[name].Dict.Values()
			sets := make([][]Coding, len(vals))
			for id, v := range vals {
				// A value that does not parse (it was checked on import)
				// matches through its primary coding only.
				sets[id], _ = ParseCodings(v)
			}
			tb.t.Codings = sets
		}
	}
	return &Tables{PatientIDs: b.ids, byName: b.tables, patientIndex: b.patientIndex}
}

// clone returns a Dict with the same values and ids that can grow without
// affecting d.
func (d *Dict) clone() *Dict {
	return &Dict{values: append(make([]string, 0, len(d.values)+16), d.values...), index: maps.Clone(d.index)}
}

// NewBuilderFrom returns a builder that starts with a copy of the CDM tables
// and patients of t, so that records can be appended without rebuilding
// from scratch (t itself is not modified and stays valid for its readers).
// Non-CDM tables of t are carried over as they are.
func NewBuilderFrom(t *Tables) *Builder {
	b := NewBuilder()
	b.ids = append(make([]string, 0, len(t.PatientIDs)+1024), t.PatientIDs...)
	if t.patientIndex != nil {
		b.patientIndex = maps.Clone(t.patientIndex)
	} else {
		b.patientIndex = make(map[string]uint32, len(t.PatientIDs)+1024)
		for i, id := range b.ids {
			b.patientIndex[id] = uint32(i)
		}
	}
	for name, old := range t.byName {
		tb := b.buf(name)
		if tb == nil {
			b.tables[name] = old
			continue
		}
		sch := tb.s
		tb.t.Rows = old.Rows
		tb.t.Patient = append([]uint32(nil), old.Patient...)
		si, di, ni := 0, 0, 0
		for _, c := range sch.Columns {
			switch c.Type {
			case TypeString:
				oc := old.Strings[c.Name]
				nc := tb.strs[si]
				nc.IDs = append([]uint32(nil), oc.IDs...)
				nc.Dict = oc.Dict.clone()
				tb.t.Strings[c.Name] = nc
				si++
			case TypeDate:
				tb.dates[di] = append([]Date(nil), old.Dates[c.Name]...)
				di++
			case TypeNumber:
				tb.nums[ni] = append([]float64(nil), old.Numbers[c.Name]...)
				ni++
			}
		}
	}
	return b
}

// Grow makes room for n more rows of the CDM table named name, so that a
// loader that knows its row counts allocates each column once. Unknown
// names are ignored.
func (b *Builder) Grow(name string, n int) {
	tb := b.buf(name)
	if tb == nil || n <= 0 {
		return
	}
	tb.t.Patient = growU32(tb.t.Patient, n)
	for _, c := range tb.strs {
		c.IDs = growU32(c.IDs, n)
	}
	for i := range tb.dates {
		tb.dates[i] = append(make([]Date, 0, len(tb.dates[i])+n), tb.dates[i]...)
	}
	for i := range tb.nums {
		tb.nums[i] = append(make([]float64, 0, len(tb.nums[i])+n), tb.nums[i]...)
	}
	if tb.s.Patients {
		b.ids = append(make([]string, 0, len(b.ids)+n), b.ids...)
		if len(b.patientIndex) == 0 {
			b.patientIndex = make(map[string]uint32, n)
		}
	}
}

func growU32(s []uint32, n int) []uint32 { return append(make([]uint32, 0, len(s)+n), s...) }

// ResidentKey returns the record-linkage key of patient i: the value of the
// patient's identifier in the network's identifier system (the identifiers
// column of the patients table), or, for a person known to the node only
// through study (agency) tables, the person id itself, which the agency
// table's id column holds in the same identifier system. shared is false,
// and key the node-local patient id, for a patient with a patients row but
// no identifier in that system: such a patient cannot be linked to another
// node and counts as a resident of its own.
func (t *Tables) ResidentKey(i uint32, system string) (key string, shared bool) {
	t.residentOnce.Do(func() { t.buildResidents() })
	if int(i) >= len(t.PatientIDs) {
		return "", false
	}
	if !t.hasPatientRow[i] {
		return t.PatientIDs[i], true
	}
	if system != "" {
		for _, c := range t.identifiers[i] {
			if c.System == system && c.Code != "" {
				return c.Code, true
			}
		}
	}
	return t.PatientIDs[i], false
}

// buildResidents indexes, per patient, whether it has a patients row and
// its parsed identifiers (for ResidentKey).
func (t *Tables) buildResidents() {
	t.hasPatientRow = make([]bool, len(t.PatientIDs))
	t.identifiers = make([][]Coding, len(t.PatientIDs))
	tb, ok := t.byName[TablePatients]
	if !ok {
		return
	}
	col := tb.Strings["identifiers"]
	var parsed [][]Coding
	if col != nil {
		parsed = make([][]Coding, col.Dict.Len())
		for id, s := range col.Dict.Values() {
			parsed[id], _ = ParseCodings(s)
		}
	}
	for r := 0; r < tb.Rows; r++ {
		p := tb.Patient[r]
		if int(p) >= len(t.hasPatientRow) {
			continue
		}
		t.hasPatientRow[p] = true
		if col != nil && r < len(col.IDs) {
			t.identifiers[p] = parsed[col.IDs[r]]
		}
	}
}

// WithTables returns tables that hold everything of t with the given
// tables added or, by name, replaced; patients are shared with t. The
// store uses it for tables whose columns are mapped from disk. t is not
// modified.
func (t *Tables) WithTables(tabs ...*Table) *Tables {
	if len(tabs) == 0 {
		return t
	}
	out := &Tables{PatientIDs: t.PatientIDs, byName: maps.Clone(t.byName), patientIndex: t.patientIndex}
	for _, tb := range tabs {
		out.byName[tb.Name] = tb
	}
	return out
}
