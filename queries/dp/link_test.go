package dp

import (
	"math"
	"testing"

	"github.com/fedstat/fedstat/queries/plan"
)

// TestIntGaussian: the integer noise of the dummies and the padding has
// mean 0 and the standard deviation asked for (the library's integer
// mechanism; its variance is σ² plus at most the rounding's 1/12).
func TestIntGaussian(t *testing.T) {
	const n = 20000
	for _, sigma := range []float64{0.7, 3.1, 25} {
		v, err := IntGaussian(sigma, n)
		if err != nil {
			t.Fatal(err)
		}
		var m, q float64
		for _, x := range v {
			m += float64(x)
		}
		m /= n
		for _, x := range v {
			q += (float64(x) - m) * (float64(x) - m)
		}
		sd := math.Sqrt(q / (n - 1))
		want := math.Sqrt(sigma*sigma + 1.0/12)
		// 6 standard errors of each estimate.
		if math.Abs(m) > 6*want/math.Sqrt(n) || math.Abs(sd-want) > 6*want/math.Sqrt(2*n)+0.02 {
			t.Errorf("sigma %v: mean %.4f, sd %.4f (want about %.4f)", sigma, m, sd, want)
		}
	}
	if _, err := IntGaussian(0, 1); err == nil {
		t.Error("sigma 0 accepted")
	}
}

// TestReleaseLinked: a linked count carries the dummies' noise of every
// matching pattern from every participant, and its interval is built from
// that variance; too few participants are refused.
func TestReleaseLinked(t *testing.T) {
	p, err := plan.Build(plan.Request{SQL: "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' GROUP BY region",
		Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref, LinkHolders: 2},
		&plan.Catalogue{Regions: []string{"north", "south"}, MaxNodesPerPatient: 2, Linkage: &plan.Linkage{IdentifierSystem: "urn:x"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReleaseLinked(p, LinkTotals{Counts: []int64{120, 7}, Participants: 4, Patterns: 2})
	if err != nil {
		t.Fatal(err)
	}
	sn := p.Measures()[0].NodeSigma
	want := 2 * 4 * (sn*sn + 1.0/12)
	for i, row := range r.Rows {
		n := row.Values[0]
		if math.Abs(n.Variance-want) > 1e-9*want {
			t.Errorf("row %d: variance %v, want %v", i, n.Variance, want)
		}
		if h := math.Ceil(z975*math.Sqrt(want-1.0/12) - 0.5); n.CIHigh-n.Value != h {
			t.Errorf("row %d: half-width %v, want %v", i, n.CIHigh-n.Value, h)
		}
	}
	if r.Rows[0].Values[0].Value != 120 || !r.Rows[1].Values[0].Suppressed {
		t.Errorf("rows %+v", r.Rows)
	}
	if _, err := ReleaseLinked(p, LinkTotals{Counts: []int64{1, 2}, Participants: 2, Patterns: 2}); err == nil {
		t.Error("two participants accepted for min_nodes 3")
	}
}
