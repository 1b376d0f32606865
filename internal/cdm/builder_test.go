package cdm

import (
	"errors"
	"math"
	"testing"
)

func TestBuilderColumns(t *testing.T) {
	b := NewBuilder()
	b.AddPatient(&Patient{ID: "p1", BirthDate: DateFromYMD(1970, 1, 2), Sex: SexFemale, Region: "N", DeathDate: NoDate})
	b.AddPatient(&Patient{ID: "p2", BirthDate: NoDate, Sex: SexMale, Region: "S", DeathDate: DateFromYMD(2020, 1, 1)})
	b.AddPatient(&Patient{ID: "p1", Region: "ignored"})
	if !b.AddCondition(&Condition{PatientID: "p2", Code: "c", System: "s", Onset: 5, Abatement: NoDate}) {
		t.Fatal("condition of a known patient refused")
	}
	if b.AddCondition(&Condition{PatientID: "nobody"}) {
		t.Fatal("condition of an unknown patient added")
	}
	i, _ := b.PatientIndex("p1")
	b.AddConditionAt(i, &Condition{Code: "d", System: "s", Onset: 6, Abatement: 7})
	b.AddObservation(&Observation{PatientID: "p1", Code: "4548-4", Date: 9, Unit: "%"})
	b.AddObservationAt(i, &Observation{Code: "4548-4", Date: 10, Value: 7.5, HasValue: true, Unit: "%"})
	b.AddEncounterAt(1, &Encounter{Class: "AMB", Start: 1, End: 2})
	b.AddMedication(&Medication{PatientID: "p2", Code: "m", Authored: 3})
	tb := b.Build()

	if tb.NumPatients() != 2 {
		t.Fatalf("patients %d", tb.NumPatients())
	}
	if j, ok := tb.PatientIndex("p2"); !ok || tb.PatientIDs[j] != "p2" {
		t.Fatal("PatientIndex")
	}
	p, _ := tb.Table(TablePatients)
	if p.Rows != 2 || p.Dates["death_date"][1] != DateFromYMD(2020, 1, 1) || p.Strings["region"].Dict.Value(p.Strings["region"].IDs[0]) != "N" {
		t.Fatalf("patients table %+v", p)
	}
	c, _ := tb.Table(TableConditions)
	if c.Rows != 2 || c.Patient[1] != i || c.Dates["abatement_date"][1] != 7 || c.Dates["onset_date"][0] != 5 {
		t.Fatalf("conditions %+v", c)
	}
	o, _ := tb.Table(TableObservations)
	if v := o.Numbers["value"]; len(v) != 2 || !math.IsNaN(v[0]) || v[1] != 7.5 {
		t.Fatalf("values %v", v)
	}
	e, _ := tb.Table(TableEncounters)
	m, _ := tb.Table(TableMedications)
	if e.Rows != 1 || len(e.Dates["end_date"]) != 1 || m.Rows != 1 || m.Dates["authored_date"][0] != 3 {
		t.Fatalf("encounters %+v medications %+v", e, m)
	}
	for _, name := range tb.Names() {
		tab, _ := tb.Table(name)
		for col, d := range tab.Dates {
			if len(d) != tab.Rows {
				t.Errorf("%s.%s: %d dates for %d rows", name, col, len(d), tab.Rows)
			}
		}
	}
}

func TestRecordErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    RecordError
		want string
	}{
		{RecordError{Origin: Origin{File: "a.ndjson", Line: 3, Entry: -1}, Path: "gender", Err: errors.New("bad")}, "a.ndjson:3: gender: bad"},
		{RecordError{Origin: Origin{File: "b.json", Entry: 12}, Path: "resource.onsetDateTime", Err: errors.New("impossible date")}, "b.json: entry[12].resource.onsetDateTime: impossible date"},
		{RecordError{Origin: Origin{File: "c.csv", Entry: -1}, Err: errors.New("empty")}, "c.csv: empty"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
