package warehouse

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/test/testkit"
)

// dsn is a PostgreSQL server for the test (see test/testkit).
func dsn(t *testing.T) string { return testkit.PostgresDSN(t) }

var queries = []string{
	// DESIGN.md
	`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'`,
	`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64 AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`,
	`SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region`,
	`SELECT AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'`,
	// more shapes
	`SELECT sex, age_band(age, 10) AS band, COUNT(*) FROM patients WHERE age BETWEEN 40 AND 64 GROUP BY sex, band`,
	`SELECT age_band(age, 20) AS band, COUNT(*) FROM patients GROUP BY band`,
	`SELECT region, sex, COUNT(DISTINCT patient_id) FROM patients GROUP BY region, sex`,
	`SELECT month(onset_date) AS month, code, COUNT(*) AS cases FROM conditions WHERE code IN ('44054006', '38341003') AND onset_date BETWEEN '2020-01-01' AND '2020-12-31' GROUP BY month, code WITH max_groups = 6, max_rows = 2`,
	`SELECT year(onset_date) AS y, COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE onset_date BETWEEN '2018-01-01' AND '2023-12-31' GROUP BY y WITH max_groups = 2, max_rows = 3`,
	`SELECT week(date) AS w, COUNT(*) FROM observations WHERE date BETWEEN '2020-01-01' AND '2020-12-31' GROUP BY w WITH max_groups = 1, max_rows = 1`,
	`SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006') AND NOT patient_id IN (SELECT patient_id FROM conditions WHERE code = '38341003')`,
	`SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006') OR patient_id NOT IN (SELECT patient_id FROM observations WHERE value > 7)`,
	`SELECT sex, AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)), SUM(CLAMP(value, 0, 15)) FROM observations WHERE code = '4548-4' GROUP BY sex`,
	`SELECT region, VARIANCE(CLAMP(age, 0, 100)) FROM patients WHERE NOT (sex = 'male') OR death_date >= '2020-01-01' GROUP BY region`,
	`SELECT COUNT(*) FROM encounters WHERE class IN ('EMER', 'IMP') AND start_date >= '2020-01-01'`,
	`SELECT COUNT(DISTINCT patient_id), COUNT(*) FROM medications WHERE authored_date < '2021-06-01' AND age > 30`,
	`SELECT COUNT(*) FROM observations WHERE value / (value - 5) > 2 OR -value < -30`,
	`SELECT COUNT(*) FROM conditions WHERE system = 'http://snomed.info/sct' AND code = '38341003'`,
	`SELECT type_code, COUNT(*) FROM encounters WHERE type_system = 'http://snomed.info/sct' AND type_code IN ('185349003', '50849002') GROUP BY type_code`,
	`SELECT COUNT(*) FROM medications WHERE system <> 'http://loinc.org'`,
}

// bounded are queries whose contribution bounds must bite on the test data:
// the compare test checks that raising them changes eval's answer.
var bounded = map[string]string{
	`SELECT year(onset_date) AS y, COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE onset_date BETWEEN '2018-01-01' AND '2023-12-31' GROUP BY y WITH max_groups = 2, max_rows = 3`: `SELECT year(onset_date) AS y, COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE onset_date BETWEEN '2018-01-01' AND '2023-12-31' GROUP BY y WITH max_groups = 6, max_rows = 1000`,
	`SELECT week(date) AS w, COUNT(*) FROM observations WHERE date BETWEEN '2020-01-01' AND '2020-12-31' GROUP BY w WITH max_groups = 1, max_rows = 1`:                                       `SELECT week(date) AS w, COUNT(*) FROM observations WHERE date BETWEEN '2020-01-01' AND '2020-12-31' GROUP BY w WITH max_groups = 53, max_rows = 1000`,
}

func TestCompareWithEval(t *testing.T) { forEachDialect(t, "omop_test", testCompareWithEval) }

func testCompareWithEval(t *testing.T, ctx context.Context, b *Backend) {
	recs, err := synth.Generate(synth.Options{Patients: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	tables := cdm.NewBuilder()
	tables.AddRecords(recs)
	tabs := tables.Build()
	if err := b.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cat := &plan.Catalogue{Regions: synth.DefaultRegions}
	ref := cdm.DateFromYMD(2024, 1, 1)
	for _, sql := range queries {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		want, err := eval.Evaluate(ctx, p, tabs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Evaluate(ctx, p)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			continue
		}
		w, g := want.Values(), got.Values()
		nonzero := 0
		for i := range w {
			if w[i] != 0 {
				nonzero++
			}
			if w[i] != g[i] && !(math.IsNaN(w[i]) && math.IsNaN(g[i])) {
				t.Errorf("%s: slot %d: eval %v, warehouse %v", sql, i, w[i], g[i])
			}
		}
		if loose, ok := bounded[sql]; ok {
			lp, err := plan.Build(plan.Request{SQL: loose, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
			if err != nil {
				t.Fatal(err)
			}
			lw, err := eval.Evaluate(ctx, lp, tabs)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(lw.Values()) == fmt.Sprint(w) {
				t.Errorf("%s: the contribution bounds do not bite on the test data", sql)
			}
		}
		if nonzero == 0 {
			t.Errorf("%s: all zero: the query tests nothing", sql)
		}
	}
}

// funcQueries use EXP, LN and conditions as numbers. Indicators are exact;
// exp and ln come from the database's math library, not Go's, so their
// sums may differ in the last bits.
var funcQueries = []string{
	`SELECT SUM(CLAMP(value > 7, 0, 1)), COUNT(*) FROM observations WHERE code = '4548-4'`,
	`SELECT sex, SUM(CLAMP(age BETWEEN 40 AND 64, 0, 1)) FROM patients GROUP BY sex`,
	`SELECT SUM(CLAMP(LN(value), 0, 5)), AVG(CLAMP(EXP(value / 10), 0, 100)) FROM observations WHERE code = '4548-4'`,
	`SELECT COUNT(*) FROM observations WHERE EXP(value * 100) > 1 OR LN(value - 1000) > 0 OR EXP(-value * 100) = 0`,
}

func TestFunctionsAgainstEval(t *testing.T) {
	forEachDialect(t, "omop_funcs", testFunctionsAgainstEval)
}

func testFunctionsAgainstEval(t *testing.T, ctx context.Context, b *Backend) {
	recs, err := synth.Generate(synth.Options{Patients: 500, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	tables := cdm.NewBuilder()
	tables.AddRecords(recs)
	tabs := tables.Build()
	if err := b.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cat := &plan.Catalogue{Regions: synth.DefaultRegions}
	for _, sql := range funcQueries {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, cat)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		want, err := eval.Evaluate(ctx, p, tabs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Evaluate(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		w, g := want.Values(), got.Values()
		nonzero := false
		for i := range w {
			nonzero = nonzero || w[i] != 0
			if math.Abs(w[i]-g[i]) > 1e-9*math.Max(1, math.Abs(w[i])) {
				t.Errorf("%s: slot %d: eval %v, warehouse %v", sql, i, w[i], g[i])
			}
		}
		if !nonzero {
			t.Errorf("%s: all zero: the query tests nothing", sql)
		}
	}
}
