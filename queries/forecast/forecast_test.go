package forecast

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var day0 = time.Date(2022, 10, 1, 0, 0, 0, 0, time.UTC)

// weekly builds a series from values with the same noise variance each.
func weekly(values []float64, variance float64) []Point {
	out := make([]Point, len(values))
	for i, v := range values {
		out[i] = Point{Date: day0.AddDate(0, 0, 7*i), Value: v, Variance: variance}
	}
	return out
}

// seasonalSeries is a noisy epidemic-like series: a yearly wave on the
// log scale with released DP noise of the given variance.
func seasonalSeries(r *rand.Rand, weeks int, variance float64) []Point {
	v := make([]float64, weeks)
	z := 0.0
	for t := range v {
		z = 0.7*z + 0.15*r.NormFloat64()
		level := 4 + 2*math.Cos(2*math.Pi*float64(t)/52) + z
		v[t] = math.Round(math.Exp(level)) + math.Sqrt(variance)*r.NormFloat64()
	}
	return weekly(v, variance)
}

func TestQuantilesMonotoneAndNonNegative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	series := []struct {
		name string
		s    []Point
	}{
		{"seasonal", seasonalSeries(r, 160, 90)},
		{"near zero, noise makes values negative", weekly([]float64{3, -2, 0, 5, 1, -4, 2, 0, 1, 6, 2, -1, 0, 3, 1, 2, 0, -3, 1, 4}, 9)},
	}
	for _, tc := range series {
		for _, m := range Methods {
			fc, err := Forecast(tc.s, []int{1, 2, 3, 4}, m)
			if errors.Is(err, ErrHistory) && m == Seasonal && len(tc.s) < 60 {
				continue
			}
			if err != nil {
				t.Fatalf("%s, %s: %v", tc.name, m, err)
			}
			for _, q := range fc {
				if len(q.Values) != len(Quantiles) {
					t.Fatalf("%s %s h%d: %d values", tc.name, m, q.Horizon, len(q.Values))
				}
				for i, v := range q.Values {
					if v < 0 || math.IsNaN(v) || (i > 0 && v < q.Values[i-1]) {
						t.Errorf("%s %s h%d: quantile %v = %v after %v", tc.name, m, q.Horizon, Quantiles[i], v, q.Values[max(i-1, 0)])
					}
				}
				if want := q.Reference.AddDate(0, 0, 7*q.Horizon); !q.Target.Equal(want) {
					t.Errorf("target %v, want %v", q.Target, want)
				}
			}
		}
	}
}

func TestForecastRejectsBadInput(t *testing.T) {
	good := weekly([]float64{1, 2, 3, 4, 5}, 1)
	gap := weekly([]float64{1, 2, 3, 4, 5}, 1)
	gap[3].Date = gap[3].Date.AddDate(0, 0, 7)
	neg := weekly([]float64{1, 2, 3, 4, 5}, 1)
	neg[2].Variance = -1
	for name, tc := range map[string]struct {
		s []Point
		h []int
		m Method
	}{
		"gap": {gap, []int{1}, Baseline}, "negative variance": {neg, []int{1}, Baseline},
		"horizon 5": {good, []int{5}, Baseline}, "horizon 0": {good, []int{0}, Baseline},
		"twice": {good, []int{1, 1}, Baseline}, "method": {good, []int{1}, "arima"},
	} {
		if _, err := Forecast(tc.s, tc.h, tc.m); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err %v, want ErrInput", name, err)
		}
	}
}

// pinball is the quantile loss ρ_τ(y − q).
func pinball(tau, q, y float64) float64 {
	if y >= q {
		return tau * (y - q)
	}
	return (1 - tau) * (q - y)
}

func TestWISHandComputed(t *testing.T) {
	point := QuantileForecast{Values: make([]float64, len(Quantiles))}
	uniform := QuantileForecast{Values: make([]float64, len(Quantiles))}
	for i, tau := range Quantiles {
		point.Values[i] = 10
		uniform.Values[i] = 100 * tau
	}
	for _, tc := range []struct {
		name string
		q    QuantileForecast
		y    float64
		want float64
	}{
		// A point forecast scores its absolute error.
		{"point", point, 12, 2},
		// Median exact; interval widths 100(1−α): Σ α(1−α)/2·100 / 11.5
		// = 50·1.7171/11.5.
		{"uniform, y at the median", uniform, 50, 50 * 1.7171 / 11.5},
		// ½·50 + Σ (α/2)(100(1−α) + (2/α)·50α) = 25 + 50·Σα(2−α)
		// = 25 + 50·(2·4.57 − 2.8529) = 339.355, over 11.5.
		{"uniform, y = 0 below every interval", uniform, 0, 339.355 / 11.5},
	} {
		if got := WIS(tc.q, tc.y); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: WIS %v, want %v", tc.name, got, tc.want)
		}
	}
	// And it equals the mean quantile loss form (Bracher et al. 2021,
	// eq. 4): Σ_τ ρ_τ(y − q_τ)/(K + ½), for any forecast.
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		q := QuantileForecast{Values: make([]float64, len(Quantiles))}
		x := 0.0
		for i := range q.Values {
			x += r.ExpFloat64()
			q.Values[i] = x
		}
		y := r.Float64() * 30
		var want float64
		for i, tau := range Quantiles {
			want += pinball(tau, q.Values[i], y)
		}
		want /= 11.5
		if got := WIS(q, y); math.Abs(got-want) > 1e-9 {
			t.Fatalf("WIS %v, quantile-loss form %v", got, want)
		}
	}
	if !Covers(uniform, 0.5, 25) || !Covers(uniform, 0.5, 75) || Covers(uniform, 0.5, 24.9) || Covers(uniform, 0.95, 97.6) || !Covers(uniform, 0.95, 97.5) {
		t.Error("Covers reads the wrong interval ends")
	}
}

func TestBaselineDefinition(t *testing.T) {
	// Changes 2, −1, 4; symmetrised {−4, −2, −1, 1, 2, 4}; last value 15.
	s := weekly([]float64{10, 12, 11, 15}, 4)
	fc, err := Forecast(s, []int{1, 2}, Baseline)
	if err != nil {
		t.Fatal(err)
	}
	at := func(q QuantileForecast, tau float64) float64 { return q.Values[levelIndex(tau)] }
	// R type 7 on the 6 changes: position 5τ.
	for tau, want := range map[float64]float64{0.5: 15, 0.75: 16.75, 0.25: 13.25, 0.99: 18.9, 0.01: 11.1, 0.1: 12} {
		if got := at(fc[0], tau); math.Abs(got-want) > 1e-9 {
			t.Errorf("h1 q%v = %v, want %v", tau, got, want)
		}
	}
	// Two weeks: the sum of two draws, 36 equally likely sums; flat median,
	// symmetric, within ±8, wider than one week.
	h2 := fc[1]
	if h2.Median() != 15 {
		t.Errorf("h2 median %v, want 15", h2.Median())
	}
	for i := range Quantiles {
		if j := len(Quantiles) - 1 - i; math.Abs(h2.Values[i]+h2.Values[j]-30) > 1e-9 {
			t.Errorf("h2 not symmetric: q%v %v, q%v %v", Quantiles[i], h2.Values[i], Quantiles[j], h2.Values[j])
		}
	}
	if at(h2, 0.99) > 23 || at(h2, 0.99) <= at(fc[0], 0.99) {
		t.Errorf("h2 q0.99 %v: want in (%v, 23]", at(h2, 0.99), at(fc[0], 0.99))
	}
	// Near zero the lower quantiles are clipped at 0.
	low, err := Forecast(weekly([]float64{20, 2, 18, 1}, 0), []int{1}, Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if low[0].Values[0] != 0 || low[0].Median() != 1 {
		t.Errorf("clipped baseline %v", low[0].Values)
	}
}

// TestARCoverageWithKnownNoise: on a simulated log-scale AR(1) whose
// released values carry Gaussian noise of known variance, the AR method's
// 50% and 95% intervals (for the released value) cover near nominal, and
// dropping the noise from the fit and intervals would cover less.
func TestARCoverageWithKnownNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const weeks, variance = 700, 400.0 // σ = 20 on counts near 150: noise ≈ innovation
	x := make([]float64, weeks)
	z := 5.0
	for t := range x {
		z = 1.0 + 0.8*z + 0.1*r.NormFloat64() // mean log level 5
		x[t] = math.Expm1(z) + math.Sqrt(variance)*r.NormFloat64()
	}
	s := weekly(x, variance)
	ev, err := Evaluate(s, AR, []int{1, 4}, s[200].Date)
	if err != nil {
		t.Fatal(err)
	}
	sum := ev.Summary
	t.Logf("AR on AR(1)+noise: %d forecasts, coverage 50%% %.3f, 95%% %.3f, relative WIS %.3f", sum.N, sum.Coverage50, sum.Coverage95, ev.RelativeWIS)
	if math.Abs(sum.Coverage50-0.5) > 0.06 || math.Abs(sum.Coverage95-0.95) > 0.03 {
		t.Errorf("coverage 50%% %.3f, 95%% %.3f: want near 0.5 and 0.95", sum.Coverage50, sum.Coverage95)
	}
	exact := weekly(x, 0) // the same values, the noise not declared
	evExact, err := Evaluate(exact, AR, []int{1, 4}, s[200].Date)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("noise ignored: coverage 50%% %.3f, 95%% %.3f", evExact.Summary.Coverage50, evExact.Summary.Coverage95)
	if evExact.Summary.Coverage95 >= sum.Coverage95 {
		t.Errorf("ignoring the noise covers %.3f ≥ %.3f: the noise terms do nothing", evExact.Summary.Coverage95, sum.Coverage95)
	}
}

// TestEvaluateSeesOnlyThePast: changing the last week of a series changes
// no forecast made from an earlier origin, only the scores of forecasts of
// that week; changing week k changes the forecasts from origins ≥ k.
func TestEvaluateSeesOnlyThePast(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a := seasonalSeries(r, 120, 25)
	const k = 100
	b := append([]Point(nil), a...)
	b[k].Value *= 3
	for _, m := range Methods {
		ea, err := Evaluate(a, m, []int{1, 2, 3, 4}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		eb, err := Evaluate(b, m, []int{1, 2, 3, 4}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ea.Scores) != len(eb.Scores) {
			t.Fatalf("%s: %d and %d scores", m, len(ea.Scores), len(eb.Scores))
		}
		changed := 0
		for i, sa := range ea.Scores {
			sb := eb.Scores[i]
			before := sa.Forecast.Reference.Before(a[k].Date)
			same := equal(sa.Forecast.Values, sb.Forecast.Values) && equal(sa.Baseline.Values, sb.Baseline.Values)
			if before && !same {
				t.Errorf("%s: the forecast from %s (h%d) changed when week %s did", m, sa.Forecast.Reference.Format(time.DateOnly), sa.Forecast.Horizon, a[k].Date.Format(time.DateOnly))
			}
			if !before && !same {
				changed++
			}
			if before && sa.Forecast.Target.Equal(a[k].Date) == (sa.WIS == sb.WIS) {
				t.Errorf("%s: score of the forecast of %s from %s", m, sa.Forecast.Target.Format(time.DateOnly), sa.Forecast.Reference.Format(time.DateOnly))
			}
		}
		if changed == 0 {
			t.Errorf("%s: no forecast from origin ≥ week %d changed: the test is vacuous", m, k)
		}
	}
}

func equal(a, b []float64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}
