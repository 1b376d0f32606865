package continual_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fedstat/fedstat/queries/continual"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

// TestEstimateClosedForm: with leaves only, the estimates are the leaves
// and the totals their sums; with two leaves and their parent, all of
// variance 1, GLS gives x̂0 = (2y0 − y1 + y01)/3 with variance 2/3, and
// the total x̂0 + x̂1 = (y0 + y1 + 2y01)/3, also with variance 2/3.
func TestEstimateClosedForm(t *testing.T) {
	leaves := []continual.Obs{
		{continual.Interval{0, 0}, 5, 2}, {continual.Interval{0, 1}, 7, 3}, {continual.Interval{0, 2}, -1, 4},
	}
	p, tot, err := continual.Estimate(leaves, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantP := []continual.Est{{5, 2}, {7, 3}, {-1, 4}}
	wantT := []continual.Est{{5, 2}, {12, 5}, {11, 9}}
	for i := range wantP {
		if !near(p[i].Value, wantP[i].Value, 1e-12) || !near(p[i].Var, wantP[i].Var, 1e-12) ||
			!near(tot[i].Value, wantT[i].Value, 1e-12) || !near(tot[i].Var, wantT[i].Var, 1e-12) {
			t.Errorf("leaves: period %d: %v %v, want %v %v", i, p[i], tot[i], wantP[i], wantT[i])
		}
	}

	y0, y1, y01 := 10.0, 4.0, 17.0
	obs := []continual.Obs{
		{continual.Interval{0, 0}, y0, 1}, {continual.Interval{0, 1}, y1, 1}, {continual.Interval{1, 0}, y01, 1},
		// Released later: ignored at t = 1.
		{continual.Interval{0, 2}, 100, 1}, {continual.Interval{1, 1}, 100, 1},
	}
	p, tot, err = continual.Estimate(obs, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || len(tot) != 2 {
		t.Fatalf("%d periods, %d totals, want 2", len(p), len(tot))
	}
	x0, x1 := (2*y0-y1+y01)/3, (2*y1-y0+y01)/3
	for _, c := range []struct {
		got  continual.Est
		want continual.Est
	}{
		{p[0], continual.Est{x0, 2.0 / 3}}, {p[1], continual.Est{x1, 2.0 / 3}},
		{tot[0], continual.Est{x0, 2.0 / 3}}, {tot[1], continual.Est{x0 + x1, 2.0 / 3}},
	} {
		if !near(c.got.Value, c.want.Value, 1e-12) || !near(c.got.Var, c.want.Var, 1e-12) {
			t.Errorf("got %v, want %v", c.got, c.want)
		}
	}
}

// TestEstimateMonteCarlo: on simulated tree releases of a 16-period series
// (unequal variances per level), the estimates are unbiased and their
// empirical variances match the reported ones, at every t; the GLS total
// beats the naive sum of leaves.
func TestEstimateMonteCarlo(t *testing.T) {
	const T, runs = 16, 4000
	r := rand.New(rand.NewPCG(5, 7))
	truth := make([]float64, T)
	for i := range truth {
		truth[i] = float64(100 + 10*i)
	}
	variance := func(v continual.Interval) float64 { return 4 + float64(v.Level) }
	var ivs []continual.Interval
	for tt := range T {
		ivs = append(ivs, continual.Ending(tt, T)...)
	}
	for _, tt := range []int{0, 5, 7, 12, 15} {
		var reported []continual.Est
		var sum, sum2 []float64
		for range runs {
			obs := make([]continual.Obs, 0, len(ivs))
			for _, v := range ivs {
				x := 0.0
				for p := v.First(); p <= v.Last(); p++ {
					x += truth[p]
				}
				obs = append(obs, continual.Obs{Interval: v, Value: x + math.Sqrt(variance(v))*r.NormFloat64(), Var: variance(v)})
			}
			periods, totals, err := continual.Estimate(obs, tt)
			if err != nil {
				t.Fatal(err)
			}
			all := append(append([]continual.Est{}, periods...), totals...)
			if reported == nil {
				reported = all
				sum, sum2 = make([]float64, len(all)), make([]float64, len(all))
			}
			for i, e := range all {
				sum[i] += e.Value
				sum2[i] += e.Value * e.Value
			}
		}
		n := tt + 1
		for i := range reported {
			want := 0.0
			if i < n {
				want = truth[i]
			} else {
				for p := 0; p <= i-n; p++ {
					want += truth[p]
				}
			}
			mean := sum[i] / runs
			v := sum2[i]/runs - mean*mean
			if se := math.Sqrt(reported[i].Var / runs); math.Abs(mean-want) > 5*se {
				t.Errorf("t=%d, estimate %d: mean %.3f, truth %.3f (se %.3f)", tt, i, mean, want, se)
			}
			// The sample variance of 4000 normal draws is within ±10% with
			// overwhelming probability (sd of the ratio ≈ 2.2%).
			if math.Abs(v/reported[i].Var-1) > 0.1 {
				t.Errorf("t=%d, estimate %d: empirical variance %.3f, reported %.3f", tt, i, v, reported[i].Var)
			}
		}
		// The running total to tt from leaves alone has variance 4(tt+1).
		if got := reported[2*n-1].Var; tt > 0 && got >= 4*float64(n) {
			t.Errorf("t=%d: GLS total variance %.3f not below the sum of leaves %v", tt, got, 4*n)
		}
	}
}

// TestEstimateErrors: bad inputs are ErrInput; a missing leaf that nothing
// makes up for is ErrUndetermined; a missing leaf whose parent and sibling
// are released is not.
func TestEstimateErrors(t *testing.T) {
	leaf := func(i int) continual.Obs { return continual.Obs{continual.Interval{0, i}, 1, 1} }
	for _, c := range []struct {
		obs  []continual.Obs
		t    int
		want error
	}{
		{nil, -1, continual.ErrInput},
		{[]continual.Obs{{continual.Interval{-1, 0}, 1, 1}}, 0, continual.ErrInput},
		{[]continual.Obs{{continual.Interval{0, 0}, 1, 0}}, 0, continual.ErrInput},
		{[]continual.Obs{{continual.Interval{0, 0}, math.NaN(), 1}}, 0, continual.ErrInput},
		{[]continual.Obs{{continual.Interval{0, 0}, 1, math.Inf(1)}}, 0, continual.ErrInput},
		{nil, 0, continual.ErrUndetermined},
		{[]continual.Obs{leaf(0), leaf(2)}, 2, continual.ErrUndetermined},
		{[]continual.Obs{{continual.Interval{1, 0}, 1, 1}}, 1, continual.ErrUndetermined},
		{[]continual.Obs{leaf(0), {continual.Interval{1, 0}, 1, 1}}, 1, nil},
		{[]continual.Obs{leaf(0), {continual.Interval{1, 0}, 1, 1}, {continual.Interval{2, 0}, 1, 1}}, 3, continual.ErrUndetermined},
		{[]continual.Obs{leaf(0), {continual.Interval{1, 0}, 1, 1}, {continual.Interval{2, 0}, 1, 1}, leaf(3)}, 3, nil},
	} {
		_, _, err := continual.Estimate(c.obs, c.t)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%v at t=%d: %v, want %v", c.obs, c.t, err, c.want)
		}
	}
}
