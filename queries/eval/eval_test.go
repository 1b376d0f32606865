package eval_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

const (
	diabetes = "44054006"
	covid    = "840539006"
	other    = "38341003"
	hba1c    = "4548-4"
)

var ref = cdm.DateFromYMD(2024, 1, 1)

func d(s string) cdm.Date {
	v, err := cdm.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return v
}

// fixture is a tiny node with known answers (reference date 2024-01-01):
//
//	p1 female 1970-06-15 (53) north: diabetes 2020-02-03, covid 2020-02-05, covid 2020-03-10; HbA1c 7, 9
//	p2 male   1980-01-01 (44) south: diabetes 2019-01-01, covid 2020-02-04; HbA1c 25
//	p3 female 1960-12-31 (63) north: other 2018-01-01, covid 2020-04-30; HbA1c missing, 5
//	p4 female 2000-05-05 (23) east:  covid 2020-05-01; HbA1c 1
//	p5 other  no birth date   west:  -
//	p6 female 1975-01-02 (48) atlantis (not in the catalogue): covid 2020-02-10, diabetes 2019-06-01
func fixture() *cdm.Tables {
	b := cdm.NewBuilder()
	pats := []cdm.Patient{
		{ID: "p1", BirthDate: d("1970-06-15"), Sex: cdm.SexFemale, Region: "north", DeathDate: cdm.NoDate},
		{ID: "p2", BirthDate: d("1980-01-01"), Sex: cdm.SexMale, Region: "south", DeathDate: cdm.NoDate},
		{ID: "p3", BirthDate: d("1960-12-31"), Sex: cdm.SexFemale, Region: "north", DeathDate: cdm.NoDate},
		{ID: "p4", BirthDate: d("2000-05-05"), Sex: cdm.SexFemale, Region: "east", DeathDate: cdm.NoDate},
		{ID: "p5", BirthDate: cdm.NoDate, Sex: cdm.SexOther, Region: "west", DeathDate: cdm.NoDate},
		{ID: "p6", BirthDate: d("1975-01-02"), Sex: cdm.SexFemale, Region: "atlantis", DeathDate: cdm.NoDate},
	}
	for i := range pats {
		b.AddPatient(&pats[i])
	}
	conds := []struct{ p, code, onset string }{
		{"p1", diabetes, "2020-02-03"}, {"p1", covid, "2020-02-05"}, {"p1", covid, "2020-03-10"},
		{"p2", diabetes, "2019-01-01"}, {"p2", covid, "2020-02-04"},
		{"p3", other, "2018-01-01"}, {"p3", covid, "2020-04-30"},
		{"p4", covid, "2020-05-01"},
		{"p6", covid, "2020-02-10"}, {"p6", diabetes, "2019-06-01"},
	}
	for i, c := range conds {
		b.AddCondition(&cdm.Condition{ID: string(rune('a' + i)), PatientID: c.p, Code: c.code, Onset: d(c.onset), Abatement: cdm.NoDate})
	}
	obs := []struct {
		p   string
		v   float64
		has bool
	}{{"p1", 7, true}, {"p1", 9, true}, {"p2", 25, true}, {"p3", 0, false}, {"p3", 5, true}, {"p4", 1, true}}
	for i, o := range obs {
		b.AddObservation(&cdm.Observation{ID: string(rune('A' + i)), PatientID: o.p, Code: hba1c, Date: d("2021-01-01"), Value: o.v, HasValue: o.has})
	}
	return b.Build()
}

func catalogue() *plan.Catalogue {
	return &plan.Catalogue{Regions: []string{"north", "south", "east", "west", "nowhere"}}
}

func build(t testing.TB, sql string) *plan.Plan {
	t.Helper()
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref}, catalogue())
	if err != nil {
		t.Fatalf("%s:\n%v", sql, err)
	}
	return p
}

func exact(t *testing.T, sql string) []float64 {
	t.Helper()
	p := build(t, sql)
	e, err := eval.Evaluate(context.Background(), p, fixture())
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return e.Values()
}

func TestScalarCounts(t *testing.T) {
	cases := []struct {
		sql  string
		want float64
	}{
		{"SELECT COUNT(*) FROM patients", 6},
		{"SELECT COUNT(*) FROM patients WHERE sex = 'female'", 4},
		{"SELECT COUNT(*) FROM patients WHERE sex = 'F'", 4},
		{"SELECT COUNT(*) FROM patients WHERE sex <> 'female'", 2},
		{"SELECT COUNT(*) FROM patients WHERE sex != 'female'", 2},
		{"SELECT COUNT(*) FROM patients WHERE age BETWEEN 40 AND 64", 4},
		{"SELECT COUNT(*) FROM patients WHERE age NOT BETWEEN 40 AND 64", 2}, // p4 and p5 (missing age: comparison false, NOT true)
		{"SELECT COUNT(*) FROM patients WHERE age >= 48", 3},
		{"SELECT COUNT(*) FROM patients WHERE age > 48", 2},
		{"SELECT COUNT(*) FROM patients WHERE age < 44", 1},
		{"SELECT COUNT(*) FROM patients WHERE age <= 44", 2},
		{"SELECT COUNT(*) FROM patients WHERE age = 63", 1},
		{"SELECT COUNT(*) FROM patients WHERE 50 < age", 2},
		{"SELECT COUNT(*) FROM patients WHERE age IN (23, 44, 99)", 2},
		{"SELECT COUNT(*) FROM patients WHERE age + 1 = 54", 1},
		{"SELECT COUNT(*) FROM patients WHERE birth_date < '1970-01-01'", 1},
		{"SELECT COUNT(*) FROM patients WHERE region IN ('north', 'south')", 3},
		{"SELECT COUNT(*) FROM patients WHERE region NOT IN ('north', 'south')", 3},
		// DESIGN.md query 2: p1 and p6.
		{`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64
		   AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`, 2},
		{`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND NOT patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`, 2},
		{`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND patient_id NOT IN (SELECT patient_id FROM conditions WHERE code = '44054006')`, 2},
		{`SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006') OR patient_id IN (SELECT patient_id FROM observations WHERE value < 4)`, 4},
		// Nested cohorts: covid patients with an HbA1c above 8 (p1, p2).
		{`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006'
		   AND patient_id IN (SELECT patient_id FROM conditions WHERE patient_id IN (SELECT patient_id FROM observations WHERE value > 8))`, 2},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'", 1},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'no-such-code'", 0},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('38341003', '44054006')", 4},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003' OR code = '44054006'", 4},
		{"SELECT COUNT(*) FROM conditions WHERE code <> '840539006'", 4},
		{"SELECT COUNT(*) FROM conditions WHERE NOT (code = '840539006' OR code = '44054006')", 1},
		{"SELECT COUNT(*) FROM conditions WHERE onset_date >= '2020-01-01'", 7},
		{"SELECT COUNT(*) FROM conditions WHERE onset_date BETWEEN '2020-02-01' AND '2020-04-30' AND code = '840539006'", 5},
		// Patient attributes through the patient.
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE age < 50", 3},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE region = 'north' AND sex = 'female'", 2},
		{"SELECT COUNT(*) FROM observations WHERE value > 8", 2},
		{"SELECT COUNT(*) FROM observations WHERE value * 2 >= 18", 2},
		// Contribution bound: at most R rows per patient per cell.
		{"SELECT COUNT(*) FROM conditions WHERE code = '840539006' WITH max_rows = 1", 5},
		{"SELECT COUNT(*) FROM conditions WHERE code = '840539006'", 6},
	}
	for _, c := range cases {
		got := exact(t, c.sql)
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s\n  = %v, want %v", c.sql, got, c.want)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestStatistics(t *testing.T) {
	// Clamped values 7, 9, 20, 5, 3 (p3's missing value skipped): mean 8.8,
	// population variance 35.36.
	p := build(t, "SELECT AVG(CLAMP(value, 3, 20)) AS mean, VARIANCE(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)), SUM(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'")
	e, err := eval.Evaluate(context.Background(), p, fixture())
	if err != nil {
		t.Fatal(err)
	}
	r, err := dp.Exact(p, e)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Rows[0].Values
	want := []float64{8.8, 35.36, math.Sqrt(35.36), 44}
	for i, w := range want {
		if !near(v[i].Value, w) {
			t.Errorf("%s = %v, want %v", r.Columns[i], v[i].Value, w)
		}
	}
	if r.Columns[0] != "mean" {
		t.Errorf("alias: columns %v", r.Columns)
	}
	// With one row per patient: p1 7, p2 20, p3's first row is missing (it
	// still uses the row), p4 3: mean 10.
	p = build(t, "SELECT AVG(CLAMP(value, 3, 20)) FROM observations WITH max_rows = 1")
	e, _ = eval.Evaluate(context.Background(), p, fixture())
	r, _ = dp.Exact(p, e)
	if got := r.Rows[0].Values[0].Value; !near(got, 10) {
		t.Errorf("max_rows = 1: mean %v, want 10", got)
	}
	// Age as a value on the patients table: ages 53, 44, 63, 23, 48.
	p = build(t, "SELECT AVG(CLAMP(age, 0, 100)) FROM patients")
	e, _ = eval.Evaluate(context.Background(), p, fixture())
	r, _ = dp.Exact(p, e)
	if got := r.Rows[0].Values[0].Value; !near(got, (53+44+63+23+48)/5.0) {
		t.Errorf("mean age %v", got)
	}
}

// cells maps "key1|key2" to the value of the first measure.
func cells(t *testing.T, sql string) map[string]float64 {
	t.Helper()
	p := build(t, sql)
	e, err := eval.Evaluate(context.Background(), p, fixture())
	if err != nil {
		t.Fatal(err)
	}
	r, err := dp.Exact(p, e)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, row := range r.Rows {
		out[strings.Join(row.Keys, "|")] = row.Values[0].Value
	}
	if len(r.Rows) != p.Cells() {
		t.Fatalf("%d rows for %d cells", len(r.Rows), p.Cells())
	}
	return out
}

func checkCells(t *testing.T, sql string, want map[string]float64) {
	t.Helper()
	got := cells(t, sql)
	for k, v := range got {
		if v != want[k] {
			t.Errorf("%s\n  cell %q = %v, want %v", sql, k, v, want[k])
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("%s\n  cell %q missing from the domain", sql, k)
		}
	}
}

func TestGroupDomainIsPublic(t *testing.T) {
	// DESIGN.md query 3. p6's covid row is in region "atlantis", which the
	// catalogue does not list: it is not released. "nowhere" has no data but
	// every week has its cell.
	sql := `SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions
	  WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region`
	got := cells(t, sql)
	if len(got) != 14*5 {
		t.Fatalf("%d cells, want 14 weeks × 5 regions", len(got))
	}
	want := map[string]float64{"2020-W06|north": 1, "2020-W06|south": 1, "2020-W11|north": 1, "2020-W18|north": 1}
	var sum float64
	for k, v := range got {
		sum += v
		if v != want[k] {
			t.Errorf("cell %s = %v, want %v", k, v, want[k])
		}
		if strings.Contains(k, "atlantis") {
			t.Errorf("region outside the catalogue released: %s", k)
		}
	}
	if _, ok := got["2020-W05|nowhere"]; !ok {
		t.Error("catalogue region without data has no cell")
	}
	if sum != 4 {
		t.Errorf("total %v, want 4", sum)
	}
	// The domain is the same on a node with no data at all.
	p := build(t, sql)
	e, err := eval.Evaluate(context.Background(), p, cdm.NewBuilder().Build())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.Values()); n != 70 {
		t.Errorf("empty node: %d slots", n)
	}
}

func TestGroupBys(t *testing.T) {
	checkCells(t, "SELECT sex, COUNT(*) FROM patients GROUP BY sex",
		map[string]float64{"female": 4, "male": 1, "other": 1, "unknown": 0})
	checkCells(t, "SELECT age_band(age, 20) AS band, COUNT(*) FROM patients GROUP BY band",
		map[string]float64{"0-19": 0, "20-39": 1, "40-59": 3, "60-79": 1, "80-99": 0, "100-109": 0, "110+": 0, "unknown": 1})
	// An age range in WHERE narrows the bands and drops "unknown".
	checkCells(t, "SELECT age_band(age, 10), COUNT(*) FROM patients WHERE age BETWEEN 40 AND 64 GROUP BY age_band(age, 10)",
		map[string]float64{"40-49": 2, "50-59": 1, "60-69": 1})
	checkCells(t, "SELECT month(onset_date), COUNT(*) FROM conditions WHERE onset_date BETWEEN '2020-01-15' AND '2020-05-31' GROUP BY month(onset_date)",
		map[string]float64{"2020-01": 0, "2020-02": 4, "2020-03": 1, "2020-04": 1, "2020-05": 1})
	checkCells(t, "SELECT year(onset_date) AS y, COUNT(DISTINCT patient_id) FROM conditions WHERE onset_date >= '2018-01-01' AND onset_date < '2021-01-01' GROUP BY y",
		map[string]float64{"2018": 1, "2019": 2, "2020": 5})
	checkCells(t, "SELECT code, COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('44054006', '38341003', 'zzz') GROUP BY code",
		map[string]float64{diabetes: 3, other: 1, "zzz": 0})
	checkCells(t, "SELECT region, sex, COUNT(*) FROM conditions WHERE code = '840539006' AND sex IN ('female', 'male') GROUP BY region, sex",
		map[string]float64{"north|female": 3, "south|male": 1, "east|female": 1, "north|male": 0, "south|female": 0, "east|male": 0, "west|female": 0, "west|male": 0, "nowhere|female": 0, "nowhere|male": 0})
	// Patient-level key on a non-patient table with a value statistic.
	checkCells(t, "SELECT region, AVG(CLAMP(value, 3, 20)) FROM observations WHERE region IN ('north', 'south') GROUP BY region",
		map[string]float64{"north": 7, "south": 20})
}

func TestContributionBounds(t *testing.T) {
	// p1 has covid in W06 and W11; with max_groups = 1 only the first (row
	// order) counts.
	base := `SELECT week(onset_date), COUNT(*) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-03-31' GROUP BY week(onset_date)`
	if got := cells(t, base)["2020-W11"]; got != 1 {
		t.Errorf("W11 = %v, want 1", got)
	}
	if got := cells(t, base+" WITH max_groups = 1")["2020-W11"]; got != 0 {
		t.Errorf("W11 with max_groups = 1 = %v, want 0", got)
	}
	p := build(t, base+" WITH max_groups = 2, max_rows = 3")
	if p.MaxGroupsPerPatient() != 2 || p.MaxRowsPerPatient() != 3 {
		t.Errorf("bounds G=%d R=%d", p.MaxGroupsPerPatient(), p.MaxRowsPerPatient())
	}
}

func TestExactRedacts(t *testing.T) {
	p := build(t, "SELECT COUNT(*) FROM patients")
	e, err := eval.Evaluate(context.Background(), p, fixture())
	if err != nil {
		t.Fatal(err)
	}
	if s := e.String(); strings.Contains(s, "6") && !strings.Contains(s, "redacted") {
		t.Errorf("String leaks: %s", s)
	}
	if s := e.LogValue().String(); !strings.Contains(s, "redacted") {
		t.Errorf("LogValue: %s", s)
	}
}

func TestTooManyPatients(t *testing.T) {
	p, err := plan.Build(plan.Request{SQL: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, &plan.Catalogue{MaxPatientsPerNode: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eval.Evaluate(context.Background(), p, fixture()); !errors.Is(err, eval.ErrData) {
		t.Errorf("err = %v, want ErrData", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := build(t, "SELECT COUNT(*) FROM patients WHERE sex = 'female'")
	if _, err := eval.Evaluate(ctx, p, fixture()); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}
