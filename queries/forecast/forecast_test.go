package forecast

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
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
		{"constant", weekly(slices.Repeat([]float64{7}, 20), 0)},
	}
	for _, tc := range series {
		for _, m := range Methods {
			fc, err := Forecast(tc.s, []int{3, 0, 1, 2}, m)
			if errors.Is(err, ErrHistory) && m == Seasonal && len(tc.s) < 60 {
				continue
			}
			if err != nil {
				t.Fatalf("%s, %s: %v", tc.name, m, err)
			}
			for k, q := range fc {
				if q.Horizon != []int{3, 0, 1, 2}[k] {
					t.Fatalf("%s %s: forecast %d has horizon %d", tc.name, m, k, q.Horizon)
				}
				if len(q.Values) != len(Quantiles) {
					t.Fatalf("%s %s h%d: %d values", tc.name, m, q.Horizon, len(q.Values))
				}
				for i, v := range q.Values {
					if v < 0 || math.IsNaN(v) || (i > 0 && v < q.Values[i-1]) {
						t.Errorf("%s %s h%d: quantile %v = %v after %v", tc.name, m, q.Horizon, Quantiles[i], v, q.Values[max(i-1, 0)])
					}
				}
				last := tc.s[len(tc.s)-1].Date
				if !q.Reference.Equal(last.AddDate(0, 0, 7)) || !q.Target.Equal(last.AddDate(0, 0, 7*(q.Horizon+1))) {
					t.Errorf("reference %v target %v after the last week %v at horizon %d", q.Reference, q.Target, last, q.Horizon)
				}
			}
		}
	}
}

func TestQuantileLevels(t *testing.T) {
	if len(Quantiles) != 23 || Quantiles[0] != 0.01 || Quantiles[1] != 0.025 || Quantiles[11] != 0.5 || Quantiles[22] != 0.99 {
		t.Fatalf("levels %v", Quantiles)
	}
	for i := 3; i <= 19; i++ { // 0.1, 0.15, ..., 0.9
		if want := 0.05 * float64(i-1); math.Abs(Quantiles[i]-want) > 1e-12 {
			t.Errorf("level %d is %v, want %v", i, Quantiles[i], want)
		}
	}
}

func TestForecastRejectsBadInput(t *testing.T) {
	good := weekly([]float64{1, 2, 3, 4, 5}, 1)
	gap := weekly([]float64{1, 2, 3, 4, 5}, 1)
	gap[3].Date = gap[3].Date.AddDate(0, 0, 7)
	neg := weekly([]float64{1, 2, 3, 4, 5}, 1)
	neg[2].Variance = -1
	nan := weekly([]float64{1, 2, math.NaN(), 4, 5}, 1)
	for name, tc := range map[string]struct {
		s []Point
		h []int
		m Method
	}{
		"gap": {gap, []int{0}, Baseline}, "negative variance": {neg, []int{0}, Baseline}, "NaN": {nan, []int{0}, Baseline},
		"horizon 4": {good, []int{4}, Baseline}, "horizon -1": {good, []int{-1}, Baseline}, "no horizon": {good, nil, Baseline},
		"twice": {good, []int{1, 1}, Baseline}, "method": {good, []int{1}, "arima"},
	} {
		if _, err := Forecast(tc.s, tc.h, tc.m); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err %v, want ErrInput", name, err)
		}
	}
	if _, err := Forecast(good, []int{0}, AR); !errors.Is(err, ErrHistory) {
		t.Errorf("AR on 5 weeks: err %v, want ErrHistory", err)
	}
	if _, err := Forecast(weekly(make([]float64, SeasonalMinWeeks-1), 0), []int{0}, Seasonal); !errors.Is(err, ErrHistory) {
		t.Errorf("seasonal on %d weeks: err %v, want ErrHistory", SeasonalMinWeeks-1, err)
	}
	if _, err := Forecast(weekly(make([]float64, SeasonalMinWeeks), 0), []int{3}, Seasonal); err != nil {
		t.Errorf("seasonal on %d weeks: %v", SeasonalMinWeeks, err)
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
	fc, err := Forecast(s, []int{0, 1, 3}, Baseline)
	if err != nil {
		t.Fatal(err)
	}
	at := func(q QuantileForecast, tau float64) float64 { return q.Values[levelIndex(tau)] }
	// R type 7 on the 6 changes: position 5τ.
	for tau, want := range map[float64]float64{0.5: 15, 0.75: 16.75, 0.25: 13.25, 0.99: 18.9, 0.01: 11.1, 0.1: 12} {
		if got := at(fc[0], tau); math.Abs(got-want) > 1e-9 {
			t.Errorf("h0 q%v = %v, want %v", tau, got, want)
		}
	}
	// Two weeks: the sum of two draws, 36 equally likely sums: flat
	// median, symmetric, within ±8 (and the lattice's half step), wider than
	// one week; P(sum ≤ −8) = 1/36 and P(sum ≤ −6) = 3/36, so the 5%
	// quantile of the change is −6.
	h1 := fc[1]
	if math.Abs(h1.Median()-15) > 1e-6 {
		t.Errorf("h1 median %v, want 15", h1.Median())
	}
	for _, q := range fc[1:] {
		for i := range Quantiles {
			if j := len(Quantiles) - 1 - i; math.Abs(q.Values[i]+q.Values[j]-30) > 1e-6 {
				t.Errorf("h%d not symmetric: q%v %v, q%v %v", q.Horizon, Quantiles[i], q.Values[i], Quantiles[j], q.Values[j])
			}
		}
	}
	if got := at(h1, 0.05) - 15; math.Abs(got+6) > 0.01 {
		t.Errorf("h1 q0.05 change %v, want −6", got)
	}
	if at(h1, 0.99) > 23.01 || at(h1, 0.99) <= at(fc[0], 0.99) {
		t.Errorf("h1 q0.99 %v: want in (%v, 23]", at(h1, 0.99), at(fc[0], 0.99))
	}
	// Four weeks: the variance of the sum is 4 times that of a draw
	// (41/6), so the interquartile range is near 2·0.674·√(4·41/6).
	if iqr, want := at(fc[2], 0.75)-at(fc[2], 0.25), 2*0.674*math.Sqrt(4*41.0/6); math.Abs(iqr-want) > 0.15*want {
		t.Errorf("h3 interquartile range %v, want about %v", iqr, want)
	}
	// Near zero the lower quantiles are clipped at 0.
	low, err := Forecast(weekly([]float64{20, 2, 18, 1}, 0), []int{0}, Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if low[0].Values[0] != 0 || low[0].Median() != 1 {
		t.Errorf("clipped baseline %v", low[0].Values)
	}
}

// TestARCoverageWithKnownNoise: on simulated log-scale AR(1) series (three
// years of history before each origin, the fit window) whose
// released values carry Gaussian noise of known variance (as large as the
// innovations on the log scale), the AR method's 50% and 95% intervals for
// the true values cover near nominal. Declaring no noise (variance 0) makes
// the model read the noise as dynamics: its intervals are then far too wide
// and its WIS worse, so the test fails if the noise terms do nothing.
func TestARCoverageWithKnownNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const series, weeks, variance = 8, 260, 400.0 // σ = 20 on counts near 150
	var declared, ignored []Score
	for range series {
		x := make([]float64, weeks)
		truth := make([]float64, weeks)
		z := 5.0
		for t := range x {
			z = 1.0 + 0.8*z + 0.1*r.NormFloat64() // mean log level 5
			truth[t] = math.Expm1(z)
			x[t] = truth[t] + math.Sqrt(variance)*r.NormFloat64()
		}
		for origin := 160; origin+4 < weeks; origin += 3 {
			for _, v := range []float64{variance, 0} {
				fc, err := Forecast(weekly(x[:origin+1], v), Horizons, AR)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range fc {
					y := truth[origin+1+q.Horizon]
					s := Score{Forecast: q, Observed: y, WIS: WIS(q, y), Baseline: q}
					if v > 0 {
						declared = append(declared, s)
					} else {
						ignored = append(ignored, s)
					}
				}
			}
		}
	}
	d, _, _ := Summarise(declared)
	i, _, _ := Summarise(ignored)
	t.Logf("noise declared: %d forecasts, coverage 50%% %.3f, 95%% %.3f, WIS %.2f", d.N, d.Coverage50, d.Coverage95, d.MeanWIS)
	t.Logf("noise ignored: coverage 50%% %.3f, 95%% %.3f, WIS %.2f", i.Coverage50, i.Coverage95, i.MeanWIS)
	if math.Abs(d.Coverage50-0.5) > 0.06 || math.Abs(d.Coverage95-0.95) > 0.03 {
		t.Errorf("coverage 50%% %.3f, 95%% %.3f: want near 0.5 and 0.95", d.Coverage50, d.Coverage95)
	}
	if i.MeanWIS <= d.MeanWIS || math.Abs(i.Coverage50-0.5) < math.Abs(d.Coverage50-0.5)+0.05 {
		t.Errorf("ignoring the noise: WIS %.2f (declared %.2f), 50%% coverage %.3f (declared %.3f): the noise terms do nothing",
			i.MeanWIS, d.MeanWIS, i.Coverage50, d.Coverage50)
	}
}

// TestEvaluateSeesOnlyThePast: changing week k of a series changes no
// forecast made from an earlier origin, only the scores of forecasts of that
// week, and does change the forecasts from origins at or after it.
func TestEvaluateSeesOnlyThePast(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a := seasonalSeries(r, 80, 25)
	const k = 70
	b := slices.Clone(a)
	b[k].Value *= 3
	from := a[k-6].Date // origins k−7 .. the end: some before week k, some after
	for _, m := range Methods {
		if m == Seasonal {
			continue // needs more than a year (TestEvaluateSeasonal)
		}
		ea, err := Evaluate(a, EvalOptions{Method: m, From: from})
		if err != nil {
			t.Fatal(err)
		}
		eb, err := Evaluate(b, EvalOptions{Method: m, From: from})
		if err != nil {
			t.Fatal(err)
		}
		if len(ea.Scores) != len(eb.Scores) {
			t.Fatalf("%s: %d and %d scores", m, len(ea.Scores), len(eb.Scores))
		}
		changed := 0
		for i, sa := range ea.Scores {
			sb := eb.Scores[i]
			before := !sa.Forecast.Reference.After(a[k].Date) // the origin, Reference − 7 days, is before week k
			same := slices.Equal(sa.Forecast.Values, sb.Forecast.Values) && slices.Equal(sa.Baseline.Values, sb.Baseline.Values)
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
			t.Errorf("%s: no forecast from an origin ≥ week %d changed: the test is vacuous", m, k)
		}
	}
}

// TestEvaluateSeasonal: the seasonal method forecasts only with more than a
// year of history; Evaluate skips the origins before that and the ensemble
// never needs it.
func TestEvaluateSeasonal(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := seasonalSeries(r, 70, 25)
	ev, err := Evaluate(s, EvalOptions{Method: Seasonal})
	if err != nil {
		t.Fatal(err)
	}
	first := ev.Scores[0].Forecast.Reference
	if want := s[SeasonalMinWeeks-1].Date.AddDate(0, 0, 7); !first.Equal(want) {
		t.Errorf("first seasonal forecast from %s, want %s (the first with %d weeks of history)", first.Format(time.DateOnly), want.Format(time.DateOnly), SeasonalMinWeeks)
	}
	if _, err := Forecast(s[:40], Horizons, Ensemble); err != nil {
		t.Errorf("the ensemble on 40 weeks: %v", err)
	}
}

// TestEvaluateWindowAndTruth: From and To bound the reference dates, the
// truth replaces the series' values as the target and a week without a
// truth is not scored.
func TestEvaluateWindowAndTruth(t *testing.T) {
	s := weekly([]float64{10, 12, 11, 15, 14, 18, 17, 20, 22, 21}, 0)
	truth := map[time.Time]float64{}
	for i, p := range s {
		if i != 7 {
			truth[p.Date] = p.Value + 100
		}
	}
	from, to := s[4].Date, s[6].Date
	ev, err := Evaluate(s, EvalOptions{Method: Baseline, From: from, To: to,
		Truth: func(w time.Time) (float64, bool) { v, ok := truth[w]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Origins != 3 {
		t.Errorf("%d origins, want 3 (reference dates weeks 4, 5, 6)", ev.Origins)
	}
	for _, sc := range ev.Scores {
		if sc.Forecast.Reference.Before(from) || sc.Forecast.Reference.After(to) {
			t.Errorf("reference %s outside the window", sc.Forecast.Reference.Format(time.DateOnly))
		}
		if sc.Forecast.Target.Equal(s[7].Date) {
			t.Errorf("week 7 has no truth but was scored")
		}
		if want := truth[sc.Forecast.Target]; sc.Observed != want {
			t.Errorf("observed %v, want the truth %v", sc.Observed, want)
		}
	}
	// References 4, 5, 6 with horizons 0..3 reach targets 4..9 (weeks that
	// exist), less week 7: 3 + 2 + 2 targets... counted directly:
	n := 0
	for ref := 4; ref <= 6; ref++ {
		for h := range 4 {
			if w := ref + h; w < len(s) && w != 7 {
				n++
			}
		}
	}
	if len(ev.Scores) != n {
		t.Errorf("%d scores, want %d", len(ev.Scores), n)
	}
	if ev.RelativeWIS != 1 {
		t.Errorf("the baseline against itself: relative WIS %v", ev.RelativeWIS)
	}
}

// TestEvaluateAgainstReleasesCountsTheirNoise: scored against the noisy
// releases themselves (no truth), the method's intervals are widened by
// each target release's known noise, so that they cover the release at
// their level; forecasts of the true value alone would not (their
// intervals leave out the target's own noise, here as large as the
// signal's week-to-week changes).
func TestEvaluateAgainstReleasesCountsTheirNoise(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 18))
	day0 := time.Date(2023, 1, 7, 0, 0, 0, 0, time.UTC)
	const weeks, noise = 90, 15.0
	level := 60.0
	series := make([]Point, weeks)
	for i := range series {
		level = math.Max(5, level*math.Exp(0.08*r.NormFloat64()))
		series[i] = Point{Date: day0.AddDate(0, 0, 7*i), Value: level + noise*r.NormFloat64(), Variance: noise * noise}
	}
	ev, err := Evaluate(series, EvalOptions{Method: Ensemble, From: series[40].Date})
	if err != nil {
		t.Fatal(err)
	}
	c50, c95 := ev.Summary.Coverage50, ev.Summary.Coverage95
	t.Logf("against the releases: coverage 50%% %.3f, 95%% %.3f over %d scores", c50, c95, len(ev.Scores))
	if c95 < 0.88 || c50 < 0.38 || c50 > 0.65 {
		t.Errorf("coverage 50%% %.3f, 95%% %.3f against the releases; want near 0.5 and 0.95", c50, c95)
	}
	// The widening is what does it: the unwidened forecasts cover less.
	var in95 int
	for _, s := range ev.Scores {
		fc, err := Forecast(pointsBefore(series, s.Forecast.Reference), []int{s.Forecast.Horizon}, Ensemble)
		if err != nil {
			t.Fatal(err)
		}
		if Covers(fc[0], 0.95, s.Observed) {
			in95++
		}
	}
	if raw := float64(in95) / float64(len(ev.Scores)); raw >= c95-0.05 {
		t.Errorf("the forecasts of the true value cover %.3f of the releases, the widened %.3f: the test does not show the widening", raw, c95)
	}
}

func pointsBefore(s []Point, ref time.Time) []Point {
	var out []Point
	for _, p := range s {
		if p.Date.Before(ref) {
			out = append(out, p)
		}
	}
	return out
}
