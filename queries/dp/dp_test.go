package dp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/differential-privacy/go/v3/noise"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

var ref = cdm.DateFromYMD(2024, 1, 1)

func mustPlan(t testing.TB, sql string, mutate func(*plan.Request)) *plan.Plan {
	t.Helper()
	req := plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref}
	if mutate != nil {
		mutate(&req)
	}
	p, err := plan.Build(req, &plan.Catalogue{Regions: []string{"north", "south"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// node builds a node with n patients, each with one condition 38341003 and
// one HbA1c value, values cycling through 4, 6, 8, ..., 18.
func node(n int) *cdm.Tables {
	b := cdm.NewBuilder()
	for i := 0; i < n; i++ {
		id := fmt.Sprint("p", i)
		region := "north"
		if i%3 == 0 {
			region = "south"
		}
		b.AddPatient(&cdm.Patient{ID: id, BirthDate: cdm.DateFromYMD(1960+i%40, 1, 1), Sex: cdm.SexFemale, Region: region})
		b.AddCondition(&cdm.Condition{ID: id, PatientID: id, Code: "38341003", Onset: cdm.DateFromYMD(2020, 3, 1)})
		b.AddObservation(&cdm.Observation{ID: id, PatientID: id, Code: "4548-4", Value: float64(4 + 2*(i%8)), HasValue: true})
	}
	return b.Build()
}

func evaluate(t testing.TB, p *plan.Plan, tb *cdm.Tables) *eval.Exact {
	t.Helper()
	e, err := eval.Evaluate(context.Background(), p, tb)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// release sums `nodes` shares of e (every node holding the same data) and
// releases the total.
func release(t testing.TB, p *plan.Plan, es []*eval.Exact) []int64 {
	t.Helper()
	total := make([]int64, p.VectorLen())
	for _, e := range es {
		s, err := NoiseShare(p, e)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range s.Slots() {
			total[i] += v
		}
	}
	return total
}

// TestNodeNoiseVariance: 10,000 draws of a node's share have the promised
// variance σ_node²·Scale² (+1/12 for rounding) within sampling error: the
// relative standard error of a sample variance is √(2/n) ≈ 1.4% (Gaussian).
func TestNodeNoiseVariance(t *testing.T) {
	for _, mech := range []string{plan.Gaussian, plan.Laplace} {
		p := mustPlan(t, `SELECT week(onset_date), COUNT(*) FROM conditions WHERE onset_date BETWEEN '2020-01-06' AND '2020-12-27' GROUP BY week(onset_date)`,
			func(r *plan.Request) { r.Mechanism = mech; r.Epsilon = 0.5 })
		e := evaluate(t, p, cdm.NewBuilder().Build()) // all zero
		want := p.NodeSigmas()[0]
		want = want*want + 1.0/12
		var n, sum, sumsq float64
		for n < 10000 {
			s, err := NoiseShare(p, e)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range s.Slots() {
				x := float64(v)
				n++
				sum += x
				sumsq += x * x
			}
		}
		mean := sum / n
		v := sumsq/n - mean*mean
		t.Logf("%s: %v draws, mean %.3f, variance %.2f, promised %.2f", mech, n, mean, v, want)
		// Relative standard error of a sample variance: √(2/n) ≈ 1.4% for
		// Gaussian, √(5/n) ≈ 2.2% for Laplace (kurtosis 6); allow ~4 of them.
		tol := 0.06
		if mech == plan.Laplace {
			tol = 0.09
		}
		if math.Abs(v/want-1) > tol {
			t.Errorf("%s: variance %.2f, promised %.2f", mech, v, want)
		}
		if math.Abs(mean) > 5*math.Sqrt(want/n) {
			t.Errorf("%s: mean %.3f not near 0", mech, mean)
		}
	}
}

// TestCoverage: over 1,000 releases (sum of m = 3 node shares), the 95%
// interval of a count covers the true value 93-97% of the time. (At ε = 0.3
// the release σ is about 21, so the integer rounding of the interval moves
// the coverage by about 0.1%; see Release.)
func TestCoverage(t *testing.T) {
	p := mustPlan(t, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'", func(r *plan.Request) { r.Epsilon = 0.3 })
	e := evaluate(t, p, node(40))
	es := []*eval.Exact{e, e, e}
	const truth = 120
	covered := 0
	for i := 0; i < 1000; i++ {
		r, err := Release(p, release(t, p, es), 3)
		if err != nil {
			t.Fatal(err)
		}
		n := r.Rows[0].Values[0]
		if n.CILow <= truth && truth <= n.CIHigh {
			covered++
		}
	}
	t.Logf("coverage %d/1000", covered)
	if covered < 930 || covered > 970 {
		t.Errorf("95%% intervals covered the truth %d/1000 times, want 930-970", covered)
	}
}

// TestCoverageDerived checks the delta-method intervals of AVG and STDDEV
// (wider tolerance: 400 releases, 90-99%).
func TestCoverageDerived(t *testing.T) {
	p := mustPlan(t, "SELECT AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4' WITH max_rows = 1",
		func(r *plan.Request) { r.Epsilon = 2 })
	tb := node(2000)
	e := evaluate(t, p, tb)
	ex, _ := Exact(p, e)
	meanTrue, sdTrue := ex.Rows[0].Values[0].Value, ex.Rows[0].Values[1].Value
	es := []*eval.Exact{e, e, e}
	var cm, cs int
	const runs = 400
	for i := 0; i < runs; i++ {
		r, err := Release(p, release(t, p, es), 3)
		if err != nil {
			t.Fatal(err)
		}
		m, s := r.Rows[0].Values[0], r.Rows[0].Values[1]
		if m.CILow <= meanTrue && meanTrue <= m.CIHigh {
			cm++
		}
		if s.CILow <= sdTrue && sdTrue <= s.CIHigh {
			cs++
		}
	}
	t.Logf("mean %.3f covered %d/%d; stddev %.3f covered %d/%d", meanTrue, cm, runs, sdTrue, cs, runs)
	for name, c := range map[string]int{"mean": cm, "stddev": cs} {
		if f := float64(c) / runs; f < 0.90 || f > 0.99 {
			t.Errorf("%s coverage %.3f", name, f)
		}
	}
}

func TestReleaseChecks(t *testing.T) {
	p := mustPlan(t, "SELECT COUNT(*) FROM patients", nil)
	if _, err := Release(p, []int64{5}, 2); !errors.Is(err, ErrTooFewNodes) {
		t.Errorf("2 of 3 nodes: %v", err)
	}
	if _, err := Release(p, []int64{5, 6}, 3); !errors.Is(err, ErrMismatch) {
		t.Errorf("wrong length: %v", err)
	}
	q := mustPlan(t, "SELECT COUNT(*) FROM patients", nil)
	e := evaluate(t, q, node(3))
	if _, err := NoiseShare(p, e); !errors.Is(err, ErrMismatch) {
		t.Errorf("exact of another plan: %v", err)
	}
}

func TestSmallCounts(t *testing.T) {
	p := mustPlan(t, "SELECT region, COUNT(*), AVG(CLAMP(value, 3, 20)) FROM observations GROUP BY region", nil)
	// Totals as decoded: north 3 rows (small), south 500 rows.
	ms := p.Measures()
	totals := make([]int64, p.VectorLen())
	totals[0], totals[1] = 3, 500 // COUNT(*)
	totals[2], totals[3] = 3, 500 // count of values
	_ = ms
	r, err := Release(p, totals, 3)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Rows[0].Values[0]; !d.Suppressed || d.Display != "< 10" {
		t.Errorf("north count: %+v", d)
	}
	if d := r.Rows[0].Values[1]; !d.Suppressed || d.Display != "n < 10" {
		t.Errorf("north mean: %+v", d)
	}
	if d := r.Rows[1].Values[0]; d.Suppressed || d.Display != "500" {
		t.Errorf("south count: %+v", d)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "< 10") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestLaplaceSumQuantile(t *testing.T) {
	if q := laplaceSumQuantile(1, 0.975); math.Abs(q-math.Log(20)) > 1e-6 {
		t.Errorf("n=1: %v, want ln 20", q)
	}
	prev := 0.0
	for n := 1; n <= 60; n++ {
		q := laplaceSumQuantile(n, 0.975)
		norm := z975 * math.Sqrt(2*float64(n))
		if q <= prev || q < norm*0.95 || q > norm*1.2 {
			t.Errorf("n=%d: quantile %v (normal %v, previous %v)", n, q, norm, prev)
		}
		prev = q
	}
}

func TestGaussianCalibration(t *testing.T) {
	for _, target := range []float64{0.01, 1, 3.78, 1000, 1e9} {
		l := gaussianLInf(target)
		got := noiseSigma(l)
		if got < target || got > target*1.002 {
			t.Errorf("target %v: sigma %v", target, got)
		}
	}
}

// TestCalibrationCache: the cached calibration is the calibration, for
// first and repeated look-ups, and the cache stays bounded.
func TestCalibrationCache(t *testing.T) {
	for range 2 {
		for _, target := range []float64{0.01, 1, 3.78, 6.4, 1000, 1e9} {
			if got, want := calibratedLInf(target), gaussianLInf(target); got != want {
				t.Errorf("target %v: cached %v, computed %v", target, got, want)
			}
		}
	}
	for i := range calibrationCacheMax + 10 {
		calibratedLInf(1 + float64(i)/1e4)
	}
	lInfCache.mu.Lock()
	n := len(lInfCache.m)
	lInfCache.mu.Unlock()
	if n > calibrationCacheMax {
		t.Errorf("cache holds %d targets, bound %d", n, calibrationCacheMax)
	}
	// The integer mechanism's calibration: the library's sigma at the
	// cached ε is at least the target and within 0.1% of it (the library's
	// own sigma is a bisection of that precision).
	for _, sigma := range []float64{0.7, 3.1, 25} {
		eps := intCalibration(sigma)
		if got := noise.SigmaForGaussian(calL0, 1, eps, calDelta); got < sigma || got > sigma*(1+1e-3) {
			t.Errorf("integer noise for sigma %v: the library's sigma at ε %v is %v", sigma, eps, got)
		}
	}
}

func BenchmarkNoiseShare56Cells(b *testing.B) {
	p := mustPlan(b, `SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region`, nil)
	e := evaluate(b, p, node(100))
	for b.Loop() {
		if _, err := NoiseShare(p, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoiseShare measures a node's noise share for a one-slot count
// and for ten one-slot measures (a linear regression round's shape): one
// calibration of the library's noise per measure, one draw (crypto/rand
// inside the library, about 6 µs) per slot.
func BenchmarkNoiseShare(b *testing.B) {
	for _, c := range []struct{ name, sql string }{
		{"count", "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'"},
		{"ten-measures", "SELECT COUNT(*), SUM(CLAMP(value, 0, 1)), SUM(CLAMP(value, 0, 2)), SUM(CLAMP(value, 0, 3)), " +
			"SUM(CLAMP(value, 0, 4)), SUM(CLAMP(value, 0, 5)), SUM(CLAMP(value, 0, 6)), SUM(CLAMP(value, 0, 7)), " +
			"SUM(CLAMP(value, 0, 8)), SUM(CLAMP(value, 0, 9)) FROM observations WHERE code = '4548-4'"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := mustPlan(b, c.sql, nil)
			e := evaluate(b, p, node(20))
			for b.Loop() {
				if _, err := NoiseShare(p, e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCoverageLaplace: the exact quantile of a sum of Laplace variables
// gives 95% intervals (slightly more with the rounding allowance).
func TestCoverageLaplace(t *testing.T) {
	p := mustPlan(t, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'",
		func(r *plan.Request) { r.Mechanism = plan.Laplace; r.Delta = 0; r.Epsilon = 0.1 })
	e := evaluate(t, p, node(40))
	es := []*eval.Exact{e, e, e}
	covered := 0
	const runs = 1000
	for i := 0; i < runs; i++ {
		r, err := Release(p, release(t, p, es), 3)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.Rows[0].Values[0]; n.CILow <= 120 && 120 <= n.CIHigh {
			covered++
		}
	}
	t.Logf("laplace coverage %d/%d", covered, runs)
	// Expected about 95.5% at this ε (integer half-widths are conservative).
	if covered < 930 || covered > 980 {
		t.Errorf("coverage %d/%d", covered, runs)
	}
}

// TestDesignQueriesEndToEnd runs every DESIGN.md query through three nodes
// with different data: plan, evaluate, noise shares, sum, release, format.
func TestDesignQueriesEndToEnd(t *testing.T) {
	queries := []string{
		`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003';`,
		`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64 AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006');`,
		`SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region;`,
		`SELECT AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4';`,
	}
	nodes := []*cdm.Tables{node(100), node(250), node(30)}
	for _, q := range queries {
		p := mustPlan(t, q, nil)
		var es []*eval.Exact
		for _, tb := range nodes {
			es = append(es, evaluate(t, p, tb))
		}
		r, err := Release(p, release(t, p, es), len(nodes))
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if len(r.Rows) != p.Cells() || len(r.Columns) != len(p.Outputs()) {
			t.Errorf("%s: %d rows, %d columns", q, len(r.Rows), len(r.Columns))
		}
		var b strings.Builder
		if err := r.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteCSV(&b); err != nil {
			t.Fatal(err)
		}
		if p.MaxAbsTotal(len(nodes)) < p.MaxAbsPartial() {
			t.Errorf("%s: MaxAbsTotal < MaxAbsPartial", q)
		}
	}
}

// TestExpectedMatchesRelease: the noise Expected announces before a query
// runs is the noise its release reports, measure by measure: the variance
// of every total and the half-width of its 95% interval (from above: a
// count's interval stops at 0 below).
func TestExpectedMatchesRelease(t *testing.T) {
	for _, c := range []struct {
		sql     string
		laplace bool
		nodes   int
	}{
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'x'", false, 3},
		{"SELECT region, COUNT(*), SUM(CLAMP(value, 0, 10)) FROM observations GROUP BY region", false, 5},
		{"SELECT region, AVG(CLAMP(value, 0, 10)) FROM observations GROUP BY region", false, 4},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", true, 3},
	} {
		p := mustPlan(t, c.sql, func(r *plan.Request) {
			if c.laplace {
				r.Mechanism = plan.Laplace
				r.Delta = 0
			}
		})
		exp, err := Expected(p, c.nodes)
		if err != nil {
			t.Fatal(err)
		}
		if len(exp) != len(p.Measures()) {
			t.Fatalf("%s: %d noises for %d measures", c.sql, len(exp), len(p.Measures()))
		}
		totals := make([]int64, p.VectorLen())
		for i := range totals {
			totals[i] = 1000 * int64(p.Measures()[i/p.Cells()].Scale)
		}
		r, err := Release(p, totals, c.nodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Outputs() {
			if o.Kind != plan.OutCount && o.Kind != plan.OutSum {
				continue
			}
			mi := o.Count
			if o.Kind == plan.OutSum {
				mi = o.Sum
			}
			col := slices.Index(r.Columns, o.Name)
			for _, row := range r.Rows {
				n := row.Values[col-r.KeyColumns]
				if math.Abs(n.Variance-exp[mi].Variance) > 1e-9*exp[mi].Variance || math.Abs((n.CIHigh-n.Value)-exp[mi].HalfWidth) > 1e-9*(1+exp[mi].HalfWidth) {
					t.Errorf("%s, %s: released variance %v half-width %v; expected %v, %v", c.sql, o.Name, n.Variance, n.CIHigh-n.Value, exp[mi].Variance, exp[mi].HalfWidth)
				}
			}
		}
	}
	if _, err := Expected(mustPlan(t, "SELECT COUNT(*) FROM patients", func(r *plan.Request) { r.MinNodes = 3 }), 2); err == nil {
		t.Error("expected noise for fewer partials than min_nodes")
	}
}

// TestCheckTotals: a count total below what well-formed partials can sum
// to (every node's count is at least 0, its noise above its tail), or any
// total beyond nodes × MaxAbsPartial, is refused naming the measure and
// cell; totals at the bounds, and honest releases, pass.
func TestCheckTotals(t *testing.T) {
	p := mustPlan(t, "SELECT region, COUNT(DISTINCT patient_id) AS n, SUM(CLAMP(value, 0, 20)) AS s FROM observations GROUP BY region", nil)
	ms := p.Measures()
	cells := p.Cells()
	const nodes = 3
	count := &ms[0]
	// Each partial's count is at least plan.PartialBound's lo: minus its
	// noise tail on the grid and one quantum.
	lo, _ := p.PartialBound(0)
	if want := -int64(math.Ceil(p.NoiseTail(count)*count.Scale + 1)); lo != want {
		t.Fatalf("a count's lower bound %d, want %d", lo, want)
	}
	floor := nodes * lo
	ceiling := p.MaxAbsTotal(nodes)
	ok := make([]int64, p.VectorLen())
	ok[0], ok[1] = floor+1, ceiling
	if err := CheckTotals(p, ok, nodes); err != nil {
		t.Fatalf("totals within the bounds: %v", err)
	}
	for _, c := range []struct {
		name string
		slot int
		v    int64
		want string
	}{
		{"a count of minus a million", 1, -1_000_000 * int64(count.Scale), "COUNT(DISTINCT patient_id), cell 1"},
		{"a count just below the floor", 0, floor - 1, "cell 0"},
		{"a count above the ceiling", 0, ceiling + 1, "cell 0"},
		{"a sum below minus the ceiling", cells, -ceiling - 1, "SUM("},
	} {
		bad := slices.Clone(ok)
		bad[c.slot] = c.v
		err := CheckTotals(p, bad, nodes)
		if !errors.Is(err, ErrRange) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing is released") {
			t.Errorf("%s: %v", c.name, err)
		}
		if err != nil && strings.Contains(err.Error(), fmt.Sprintf("%g", float64(c.v)/ms[c.slot/cells].Scale)) {
			t.Errorf("%s: the refusal shows the decrypted total: %v", c.name, err)
		}
		if _, err := Release(p, bad, nodes); !errors.Is(err, ErrRange) {
			t.Errorf("%s: Release: %v", c.name, err)
		}
	}
	// A sum may be negative down to minus the ceiling: its data are.
	neg := make([]int64, p.VectorLen())
	neg[cells] = -ceiling
	if err := CheckTotals(p, neg, nodes); err != nil {
		t.Errorf("a sum at minus the ceiling: %v", err)
	}
}
