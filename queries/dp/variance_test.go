package dp

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// wantVariance is the noise variance of measure m summed over `nodes`
// partials, from the plan alone (the package doc's v, rounded for counts
// on a grid finer than 1).
func wantVariance(m plan.Measure, nodes int) float64 {
	q := 1 / m.Scale
	v := float64(nodes) * (m.NodeSigma*m.NodeSigma + q*q/12)
	if count := m.Kind == plan.CountRows || m.Kind == plan.CountDistinct || m.Kind == plan.CountValues; count && m.Scale > 1 {
		return RoundedVariance(v)
	}
	return v
}

// TestReleaseVariance: every released count and sum carries the noise
// variance of its slot as the plan gives it, whatever the totals (it is a
// property of the noise, never of the data); ratios and exact answers carry
// none (NaN).
func TestReleaseVariance(t *testing.T) {
	for _, c := range []struct {
		name  string
		sql   string
		nodes int
		req   func(*plan.Request)
	}{
		{"grouped counts", "SELECT region, COUNT(*) FROM patients GROUP BY region", 3, nil},
		{"count and sum and mean", "SELECT COUNT(*), SUM(CLAMP(value, 3, 20)), AVG(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4' WITH max_rows = 1", 4, nil},
		{"count on a fine grid", "SELECT COUNT(*) FROM patients", 3, func(r *plan.Request) { r.Epsilon = 1e5 }},
		{"laplace", "SELECT COUNT(*), SUM(CLAMP(value, 3, 20)) FROM observations WITH max_rows = 1", 3, func(r *plan.Request) { r.Mechanism = plan.Laplace; r.Delta = 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustPlan(t, c.sql, c.req)
			ms := p.Measures()
			var outs []plan.Output
			for _, o := range p.Outputs() {
				if o.Kind != plan.OutKey {
					outs = append(outs, o)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var first [][]float64
			for trial := range 3 {
				totals := make([]int64, p.VectorLen())
				if trial > 0 {
					for i := range totals {
						totals[i] = rng.Int64N(1 << 20)
					}
				}
				r, err := Release(p, totals, c.nodes)
				if err != nil {
					t.Fatal(err)
				}
				var got [][]float64
				for _, row := range r.Rows {
					var vs []float64
					for i, n := range row.Values {
						o := outs[i]
						switch o.Kind {
						case plan.OutCount, plan.OutSum:
							mi := o.Count
							if o.Kind == plan.OutSum {
								mi = o.Sum
							}
							if want := wantVariance(ms[mi], c.nodes); n.Variance != want {
								t.Errorf("%s: variance %v, want %v", o.Name, n.Variance, want)
							}
						default:
							if !math.IsNaN(n.Variance) {
								t.Errorf("%s (a ratio): variance %v, want none", o.Name, n.Variance)
							}
						}
						vs = append(vs, n.Variance)
					}
					got = append(got, vs)
				}
				if trial == 0 {
					first = got
					continue
				}
				for i := range got {
					for j := range got[i] {
						if a, b := got[i][j], first[i][j]; a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
							t.Errorf("row %d value %d: variance %v with other totals, %v with zeros", i, j, a, b)
						}
					}
				}
			}
			ex, err := Exact(p, evaluate(t, p, node(30)))
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range ex.Rows {
				for _, n := range row.Values {
					if !math.IsNaN(n.Variance) {
						t.Errorf("exact answer with a noise variance %v", n.Variance)
					}
				}
			}
		})
	}
}

// TestReleaseVarianceIsTheNoise: over many releases of the same data, the
// mean squared error of a released count and sum is the variance they carry
// (within sampling error: 2,000 releases give a relative standard error of
// about √(2/2000) ≈ 3%).
func TestReleaseVarianceIsTheNoise(t *testing.T) {
	if testing.Short() {
		t.Skip("draws 6,000 shares")
	}
	p := mustPlan(t, "SELECT COUNT(*), SUM(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4' WITH max_rows = 1", nil)
	tb := node(40)
	e := evaluate(t, p, tb)
	exact, err := Exact(p, e)
	if err != nil {
		t.Fatal(err)
	}
	const nodes, runs = 3, 2000
	es := []*eval.Exact{e, e, e}
	var se [2]float64
	var variance [2]float64
	for range runs {
		r, err := Release(p, release(t, p, es), nodes)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 2 {
			n := r.Rows[0].Values[j]
			d := n.Value - nodes*exact.Rows[0].Values[j].Value
			se[j] += d * d
			variance[j] = n.Variance
		}
	}
	for j, name := range []string{"count", "sum"} {
		mse := se[j] / runs
		if rel := mse/variance[j] - 1; math.Abs(rel) > 0.12 {
			t.Errorf("%s: mean squared error %.4g, carried variance %.4g (%.1f%% off)", name, mse, variance[j], 100*rel)
		} else {
			t.Logf("%s: mean squared error %.4g, carried variance %.4g", name, mse, variance[j])
		}
	}
}
