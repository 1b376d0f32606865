package cdm

import "fmt"

// Len returns the number of records of all tables.
func (r *Records) Len() int {
	n := 0
	for i := range Schema {
		n += Schema[i].Len(r)
	}
	return n
}

// Append adds all records of o to r.
func (r *Records) Append(o *Records) {
	for i := range Schema {
		Schema[i].rows.appendAll(r, o)
	}
}

// TableCounts returns the number of records per CDM table name.
func (r *Records) TableCounts() map[string]int {
	out := make(map[string]int, len(Schema))
	for i := range Schema {
		out[Schema[i].Name] = Schema[i].Len(r)
	}
	return out
}

// FilterPatients returns the records whose patient satisfies keep (patients
// by their id, other records by their patient id), with their origins when
// o is not nil. Neither input is modified.
func (r *Records) FilterPatients(o *Origins, keep func(patientID string) bool) (*Records, *Origins) {
	out, oo := &Records{}, &Origins{}
	for ti := range Schema {
		t := &Schema[ti]
		for i := range t.Len(r) {
			if _, pid := t.rows.key(r, i); keep(*pid) {
				t.rows.copy(out, r, i)
				if o != nil {
					oo.add(ti, o.at(ti, i))
				}
			}
		}
	}
	return out, oo
}

// PatientKnown returns the test of whether a patient id is known to an
// import of r: a patient of r, or of stored (nil: nothing stored).
func (r *Records) PatientKnown(stored *Tables) func(id string) bool {
	ids := make(map[string]struct{}, len(r.Patients))
	for i := range r.Patients {
		ids[r.Patients[i].ID] = struct{}{}
	}
	return func(id string) bool {
		if _, ok := ids[id]; ok {
			return true
		}
		if stored == nil {
			return false
		}
		_, ok := stored.PatientIndex(id)
		return ok
	}
}

// RecordRef names record Index of table Table in a Records.
type RecordRef struct {
	Table *TableSchema
	Index int
}

// UnknownPatients is the patient check of an import, the one place it is
// written: the records of r, other than patients, whose patient is not
// known (PatientKnown), by table in Schema order, then in input order.
// Importers report them as bad records naming where they came from; the
// store refuses an import that has any (ErrUnknownPatient).
func (r *Records) UnknownPatients(known func(id string) bool) []RecordRef {
	var out []RecordRef
	for ti := range Schema {
		t := &Schema[ti]
		if t.Patients {
			continue
		}
		for i := range t.Len(r) {
			if _, pid := t.rows.key(r, i); !known(*pid) {
				out = append(out, RecordRef{Table: t, Index: i})
			}
		}
	}
	return out
}

// Origins holds where each record of a Records came from: Of(table)[i] is
// the origin of record i of that table. Importers fill both in step so that
// errors found later (an unknown patient) can still name the file and line.
type Origins struct {
	byTable [][]Origin // by Schema index
}

// Add records the origin of the next record of table (a Schema name).
func (g *Origins) Add(table string, o Origin) { g.add(indexOf(table), o) }

// Of returns the origins of the records of table, in record order.
func (g *Origins) Of(table string) []Origin {
	if i := indexOf(table); i < len(g.byTable) {
		return g.byTable[i]
	}
	return nil
}

// Append adds all origins of o.
func (g *Origins) Append(o *Origins) {
	for i, os := range o.byTable {
		for _, x := range os {
			g.add(i, x)
		}
	}
}

func (g *Origins) add(ti int, o Origin) {
	for len(g.byTable) <= ti {
		g.byTable = append(g.byTable, nil)
	}
	Push(&g.byTable[ti], o)
}

// Push appends x to *s, doubling the capacity when it is full. Decoders
// append records one at a time to slices that reach hundreds of thousands
// of elements: append's growth of a quarter past 256 elements allocates
// (and clears) about five times the final size in all, doubling about
// twice.
func Push[T any](s *[]T, x T) {
	if len(*s) == cap(*s) {
		n := make([]T, len(*s), max(2*cap(*s), 64))
		copy(n, *s)
		*s = n
	}
	*s = append(*s, x)
}

func (g *Origins) at(ti, i int) Origin {
	if ti < len(g.byTable) && i < len(g.byTable[ti]) {
		return g.byTable[ti][i]
	}
	return Origin{Entry: -1}
}

func (g *Origins) truncate(ti, n int) {
	if ti < len(g.byTable) && n < len(g.byTable[ti]) {
		g.byTable[ti] = g.byTable[ti][:n]
	}
}

// indexOf returns the Schema index of a CDM table; it panics on another
// name, which is a programming error of a decoder.
func indexOf(table string) int {
	for i := range Schema {
		if Schema[i].Name == table {
			return i
		}
	}
	panic(fmt.Sprintf("cdm: no CDM table %q", table))
}

// Batch is what an import has read so far: records of every table, where
// each came from, and the bad records, in input order. Format decoders
// append to it (records and origins in step); node/internal/ingest owns
// it. It is not safe for concurrent use.
type Batch struct {
	Records Records
	Origins Origins
	Errors  []*RecordError
}

// Add appends row to table t (an entry of Schema) with its origin.
func (b *Batch) Add(t *TableSchema, row *Row, o Origin) {
	t.AddRow(&b.Records, row)
	b.Origins.add(t.index, o)
}

// maxTables bounds len(Schema), so that a Mark needs no allocation (a
// decoder marks every NDJSON line).
const maxTables = 32

// Mark is a point of a Batch to roll back to.
type Mark struct {
	lens [maxTables]int
	errs int
}

// Mark returns the current point of b.
func (b *Batch) Mark() Mark {
	m := Mark{errs: len(b.Errors)}
	for i := range Schema {
		m.lens[i] = Schema[i].Len(&b.Records)
	}
	return m
}

// Rollback removes the records, origins and errors added since m: a
// decoder's undo of an input it could not read to the end.
func (b *Batch) Rollback(m Mark) {
	for i := range Schema {
		Schema[i].rows.truncate(&b.Records, m.lens[i])
		b.Origins.truncate(i, m.lens[i])
	}
	b.Errors = b.Errors[:m.errs]
}
