package store

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

func testStudy(t *testing.T, ids ...string) *cdm.Study {
	t.Helper()
	sc, err := cdm.ParseStudySchema(`
name = "trial"
id = "pid"
[[columns]]
name = "x"
type = "float"
min = 0
max = 10
`, "")
	if err != nil {
		t.Fatal(err)
	}
	xs := make([]float64, len(ids))
	for i := range xs {
		xs[i] = float64(i)
	}
	if len(xs) > 0 {
		xs[0] = math.NaN()
	}
	return &cdm.Study{Schema: *sc, PatientIDs: ids, Numbers: map[string][]float64{"x": xs}}
}

func TestStudyImportPersistsAndReplaces(t *testing.T) {
	dir := t.TempDir()
	s, db := openStore(t, dir)
	if _, err := s.ImportRecords(context.Background(), &cdm.Records{Patients: []cdm.Patient{{ID: "p1"}}}, "t"); err != nil {
		t.Fatal(err)
	}
	sum, err := s.ImportStudy(testStudy(t, "p1", "p2", "p3"), "a.csv")
	if err != nil || !sum.Changed || sum.Replaced {
		t.Fatalf("first import: %+v, %v", sum, err)
	}
	if sum, err = s.ImportStudy(testStudy(t, "p1", "p2", "p3"), "a.csv"); err != nil || sum.Changed {
		t.Fatalf("same study again: %+v, %v (want unchanged)", sum, err)
	}
	tb, ok := s.Tables().Table("trial")
	if !ok || tb.Rows != 3 || s.Tables().NumPatients() != 3 {
		t.Fatalf("study table: ok=%v, patients %d", ok, s.Tables().NumPatients())
	}
	if tb.Patient[0] != 0 {
		t.Errorf("study row of p1 belongs to patient %d, want the CDM patient 0", tb.Patient[0])
	}
	// A CDM import keeps the study visible.
	if _, err := s.ImportRecords(context.Background(), &cdm.Records{Patients: []cdm.Patient{{ID: "p9"}}}, "t"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Tables().Table("trial"); !ok {
		t.Fatal("study lost after a CDM import")
	}
	// Bad: two rows of one patient with rows_per_patient 1; nothing changes.
	if _, err := s.ImportStudy(testStudy(t, "q1", "q1"), "b.csv"); !errors.Is(err, ErrBadStudy) {
		t.Fatalf("duplicate patient: got %v, want ErrBadStudy", err)
	}
	if sum, err = s.ImportStudy(testStudy(t, "p1", "p2"), "c.csv"); err != nil || !sum.Replaced {
		t.Fatalf("replace: %+v, %v", sum, err)
	}
	db.Close()
	s, db = openStore(t, dir)
	defer db.Close()
	tb, ok = s.Tables().Table("trial")
	if !ok || tb.Rows != 2 || !math.IsNaN(tb.Numbers["x"][0]) || tb.Numbers["x"][1] != 1 {
		t.Fatalf("after reopen: ok=%v rows=%v", ok, tb)
	}
	if got := s.Studies(); len(got) != 1 || got[0].Name != "trial" {
		t.Errorf("Studies() = %v", got)
	}
}
