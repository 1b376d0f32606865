package store

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

const residentSystem = "urn:oid:2.16.156.10011.1.1"

// TestIdentifiersRoundTrip: the patients' identifiers column survives
// import, store, reopen and the columnar copy, and ResidentKey finds the
// identifier of the network's system; a patient without one keeps its
// node-local id (not shared).
func TestIdentifiersRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	ids := cdm.FormatCodings(cdm.SortCodings([]cdm.Coding{{System: residentSystem, Code: "110101199003074512"}, {System: "http://hospital.example/mrn", Code: "MRN-0042"}}))
	recs := &cdm.Records{Patients: []cdm.Patient{
		{ID: "p1", BirthDate: cdm.NoDate, DeathDate: cdm.NoDate, Identifiers: ids},
		{ID: "p2", BirthDate: cdm.NoDate, DeathDate: cdm.NoDate, Identifiers: "http://hospital.example/mrn|MRN-7"},
	}}
	if _, err := s.ImportRecords(context.Background(), recs, "t"); err != nil {
		t.Fatal(err)
	}
	// The same records again change nothing.
	if sum, err := s.ImportRecords(context.Background(), recs, "t"); err != nil || sum.Changed() {
		t.Fatalf("re-import: %+v, %v", sum, err)
	}
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	tables := s.Tables()
	check := func(pid, wantKey string, wantShared bool) {
		t.Helper()
		i, ok := tables.PatientIndex(pid)
		if !ok {
			t.Fatalf("patient %s missing", pid)
		}
		if key, shared := tables.ResidentKey(i, residentSystem); key != wantKey || shared != wantShared {
			t.Errorf("%s: ResidentKey = %q, %v; want %q, %v", pid, key, shared, wantKey, wantShared)
		}
	}
	check("p1", "110101199003074512", true)
	check("p2", "p2", false)
	tb, _ := tables.Table(cdm.TablePatients)
	i, _ := tables.PatientIndex("p1")
	col := tb.Strings["identifiers"]
	found := false
	for r := range tb.Rows {
		found = found || (col != nil && tb.Patient[r] == i && col.Dict.Value(col.IDs[r]) == ids)
	}
	if !found {
		t.Errorf("identifiers column after reopen does not hold %q", ids)
	}
}

// TestIdentifiersOldPatientRecord: a patient record stored before the
// identifiers column existed (TestCodecStable's bytes) reads it as
// missing, and one with identifiers round-trips through the codec.
func TestIdentifiersOldPatientRecord(t *testing.T) {
	tb, _ := cdm.LookupTable(cdm.TablePatients)
	k := -1
	for j, c := range tb.Columns {
		if c.Name == "identifiers" {
			k = j
			if !c.Added {
				t.Fatal("identifiers is not an added column")
			}
		}
	}
	if k < 0 {
		t.Fatal("patients has no identifiers column")
	}
	read := func(b []byte) *cdm.Row {
		t.Helper()
		d := dec{b: b[1:]}
		_ = d.uvarint()
		row := tb.NewRow()
		d.values(tb, row.Values, func(b []byte) string { return string(b) })
		if d.err != nil || len(d.b) != 0 {
			t.Fatalf("decode: err %v, %d bytes left", d.err, len(d.b))
		}
		return row
	}
	old, _ := hex.DecodeString("01074201024d41ffffffff0f")
	if v := read(old).Values[k].Str; v != "" {
		t.Errorf("old record: identifiers %q, want missing", v)
	}
	in := tb.NewRow()
	tb.Row(&cdm.Records{Patients: []cdm.Patient{{ID: "p1", BirthDate: cdm.NoDate, DeathDate: cdm.NoDate, Identifiers: residentSystem + "|42"}}}, 0, in)
	if v := read(encode(nil, tb, in, 7)).Values[k].Str; v != residentSystem+"|42" {
		t.Errorf("round trip: identifiers %q", v)
	}
}
