package eval

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

const trialSchema = `
name = "trial"
id = "pid"
small_count_threshold = -1
[[columns]]
name = "arm"
type = "string"
values = ["a", "b"]
[[columns]]
name = "x"
type = "float"
min = 0
max = 10
[[columns]]
name = "t"
type = "int"
min = 0
max = 5
`

func trialTables(t *testing.T) (*cdm.Tables, *plan.Catalogue) {
	t.Helper()
	sc, err := cdm.ParseStudySchema(trialSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	st := &cdm.Study{Schema: *sc, PatientIDs: []string{"p1", "p2", "p3", "p4"},
		Strings: map[string][]string{"arm": {"a", "a", "b", ""}},
		Numbers: map[string][]float64{"x": {1, 12, 3, math.NaN()}, "t": {0, 2, 2, 9}}}
	b := cdm.NewBuilder()
	b.AddPatient(&cdm.Patient{ID: "p1", Sex: cdm.SexFemale})
	tables := b.Build().WithStudies([]*cdm.Study{st})
	cat := plan.DefaultCatalogue()
	cat.Studies = []cdm.StudySchema{*sc}
	return tables, cat
}

func evalSQL(t *testing.T, tables *cdm.Tables, cat *plan.Catalogue, sql string) []float64 {
	t.Helper()
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, cat)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	e, err := Evaluate(context.Background(), p, tables)
	if err != nil {
		t.Fatal(err)
	}
	return e.Values()
}

func TestStudyTable(t *testing.T) {
	tables, cat := trialTables(t)
	cases := []struct {
		sql  string
		want []float64
	}{
		{"SELECT COUNT(*) FROM trial", []float64{4}},
		{"SELECT arm, COUNT(*) FROM trial GROUP BY arm", []float64{2, 1}},
		// Study number columns read clamped to their range: 12 -> 10.
		{"SELECT SUM(x) FROM trial", []float64{14}},
		{"SELECT SUM(CLAMP(x * (arm = 'a'), 0, 100)) FROM trial", []float64{11}},
		// WHERE reads the clamped value too: 12 is 10.
		{"SELECT COUNT(*) FROM trial WHERE x > 10", []float64{0}},
		{"SELECT COUNT(*) FROM trial WHERE x >= 10", []float64{1}},
		{"SELECT SUM(CLAMP(EXP(LN(x)), 0, 100)) FROM trial WHERE arm = 'b'", []float64{3}},
		// Int column: domain 0..5; 9 clamps into the last bin.
		{"SELECT t, COUNT(*) FROM trial GROUP BY t", []float64{1, 0, 2, 0, 0, 1}},
		{"SELECT bin(t, 2) AS b, COUNT(*) FROM trial GROUP BY b", []float64{1, 2, 1}},
		{"SELECT COUNT(*) FROM trial WHERE patient_id IN (SELECT patient_id FROM patients WHERE sex = 'female')", []float64{1}},
	}
	for _, c := range cases {
		got := evalSQL(t, tables, cat, c.sql)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.sql, got, c.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-c.want[i]) > 1e-9 {
				t.Errorf("%s: got %v, want %v", c.sql, got, c.want)
				break
			}
		}
	}
}

func TestStudyPlanBounds(t *testing.T) {
	_, cat := trialTables(t)
	p, err := plan.Build(plan.Request{SQL: "SELECT arm, bin(t, 1) AS b, COUNT(*) FROM trial GROUP BY arm, b", Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: 1}, cat)
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxGroupsPerPatient() != 1 || p.MaxRowsPerPatient() != 1 || p.SmallCountThreshold() != 0 {
		t.Errorf("G=%d R=%d k=%d, want 1, 1, 0 (one row per patient, threshold off)", p.MaxGroupsPerPatient(), p.MaxRowsPerPatient(), p.SmallCountThreshold())
	}
	for _, bad := range []struct{ sql, want string }{
		{"SELECT COUNT(*) FROM trial WHERE age > 3", "unknown column `age`"},
		{"SELECT x, COUNT(*) FROM trial GROUP BY x", "bin(x, width)"},
		{"SELECT COUNT(*) FROM trail", "did you mean `trial`"},
	} {
		_, err := plan.Build(plan.Request{SQL: bad.sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: 1}, cat)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want an error containing %q", bad.sql, err, bad.want)
		}
	}
}

func TestConditionAsValueOnCDM(t *testing.T) {
	b := cdm.NewBuilder()
	b.AddPatient(&cdm.Patient{ID: "p1"})
	b.AddObservation(&cdm.Observation{ID: "o1", PatientID: "p1", Code: "x", Value: 100, HasValue: true, Unit: "mg/dL"})
	b.AddObservation(&cdm.Observation{ID: "o2", PatientID: "p1", Code: "x", Value: 7, HasValue: true, Unit: "mmol/L"})
	got := evalSQL(t, b.Build(), plan.DefaultCatalogue(), "SELECT SUM(CLAMP(value * (unit = 'mg/dL'), 0, 500)) FROM observations")
	if len(got) != 1 || got[0] != 100 {
		t.Fatalf("got %v, want [100]", got)
	}
}

func TestStudyDescribe(t *testing.T) {
	_, cat := trialTables(t)
	p, err := plan.Build(plan.Request{SQL: "SELECT arm, bin(t, 2) AS b, COUNT(*) FROM trial GROUP BY arm, b", Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: 1}, cat)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Describe()
	for _, want := range []string{"the study schema's values", "bins of 2 over the study column's public range", "study rows_per_patient"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
}
