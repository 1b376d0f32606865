package forecast

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// intervalAlphas are the α of FluSight's 11 central intervals (levels
// 1 − α): 98%, 95%, 90%, 80%, ..., 10%.
var intervalAlphas = []float64{0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}

// interval returns the central (1 − α) interval of q, read from the levels
// α/2 and 1 − α/2 (which Quantiles holds for every intervalAlphas).
func (q QuantileForecast) interval(alpha float64) (lo, hi float64) {
	return q.Values[levelIndex(alpha/2)], q.Values[levelIndex(1-alpha/2)]
}

func levelIndex(tau float64) int {
	for i, l := range Quantiles {
		if math.Abs(l-tau) < 1e-9 {
			return i
		}
	}
	panic(fmt.Sprintf("forecast: no quantile level %v", tau))
}

// WIS is the weighted interval score of q against the observed value
// (Bracher et al. 2021; see the package documentation). Lower is better; it
// is in the units of the series.
func WIS(q QuantileForecast, observed float64) float64 {
	s := 0.5 * math.Abs(observed-q.Median())
	for _, a := range intervalAlphas {
		lo, hi := q.interval(a)
		is := hi - lo
		if observed < lo {
			is += 2 / a * (lo - observed)
		}
		if observed > hi {
			is += 2 / a * (observed - hi)
		}
		s += a / 2 * is
	}
	return s / (float64(len(intervalAlphas)) + 0.5)
}

// Covers reports whether the central interval of the given level (0.5 or
// 0.95, or any 1 − α of intervalAlphas) contains observed, ends included.
func Covers(q QuantileForecast, level, observed float64) bool {
	lo, hi := q.interval(1 - level)
	return lo <= observed && observed <= hi
}

// Score is one scored forecast of Evaluate.
type Score struct {
	// Forecast is the method's forecast, made at Forecast.Reference from the
	// history up to the week before it only; Baseline the baseline's, from
	// the same history.
	Forecast, Baseline QuantileForecast
	// Observed is the observed value of the target week (EvalOptions.Truth).
	Observed float64
	// WIS and BaselineWIS score the two forecasts.
	WIS, BaselineWIS float64
}

// Summary is the mean score of a method over forecasts.
type Summary struct {
	N int // scored forecasts
	// MeanWIS is the mean WIS; Coverage50 and Coverage95 the fractions of
	// forecasts whose 50% and 95% central intervals contained the value.
	MeanWIS, Coverage50, Coverage95 float64
}

// Evaluation is the result of Evaluate.
type Evaluation struct {
	Method   Method
	Horizons []int
	// Origins is the number of reference dates forecast from.
	Origins int
	// Scores are every scored forecast, by reference date then horizon.
	Scores []Score
	// Summary and BaselineSummary summarise Scores for the method and the
	// baseline, RelativeWIS is the ratio of their mean WIS (Summarise).
	Summary, BaselineSummary Summary
	RelativeWIS              float64
}

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// Method is the method scored beside the baseline. Defaults to
	// Ensemble.
	Method Method
	// Horizons are the FluSight horizons forecast from every reference
	// date. Defaults to Horizons (0..3).
	Horizons []int
	// From and To bound the reference dates (inclusive). Each defaults (the
	// zero time) to no bound.
	From, To time.Time
	// Truth returns the observed value of a target week, or false when
	// there is none (the forecast is then not scored). Defaults to the
	// series' own values: the releases, each with its noise. The method
	// forecasts the true value, so against a release its forecast is first
	// widened by that release's known noise variance (WithNoise); the
	// baseline already forecasts the noisy series (it resamples its
	// changes) and is scored as it is.
	Truth func(week time.Time) (float64, bool)
}

// WithNoise is the forecast of a release of the target week: the forecast
// of its true value plus independent Gaussian noise of variance v (the
// release's, known exactly). The forecast's quantile function (linear
// between the 23 levels, constant beyond the outer ones) is convolved with
// the noise on a fixed grid of 200 × 100 points, so the result is
// deterministic. Quantiles may be negative (a release can be).
func WithNoise(q QuantileForecast, v float64) QuantileForecast {
	if !(v > 0) {
		return q
	}
	const nu, nz = 200, 100
	at := func(u float64) float64 {
		if u <= Quantiles[0] {
			return q.Values[0]
		}
		for i := 1; i < len(Quantiles); i++ {
			if u <= Quantiles[i] {
				f := (u - Quantiles[i-1]) / (Quantiles[i] - Quantiles[i-1])
				return q.Values[i-1] + f*(q.Values[i]-q.Values[i-1])
			}
		}
		return q.Values[len(q.Values)-1]
	}
	sd := math.Sqrt(v)
	std := distuv.Normal{Mu: 0, Sigma: 1}
	sums := make([]float64, 0, nu*nz)
	for j := range nu {
		x := at((float64(j) + 0.5) / nu)
		for l := range nz {
			sums = append(sums, x+sd*std.Quantile((float64(l)+0.5)/nz))
		}
	}
	slices.Sort(sums)
	out := q
	out.Values = make([]float64, len(Quantiles))
	for i, tau := range Quantiles {
		out.Values[i] = stat.Quantile(tau, stat.LinInterp, sums, nil)
	}
	return out
}

// Evaluate forecasts series from rolling origins and scores the forecasts
// against the values that followed. Every week of series whose next week
// (the reference date) is within [From, To] is an origin, if the method
// and the baseline can forecast from it (shorter histories are skipped, as
// ErrHistory says) and at least one target week has a truth. Each forecast
// is computed on a copy of series up to its origin, so no method can read
// later weeks; the baseline is scored on the same targets.
func Evaluate(series []Point, o EvalOptions) (*Evaluation, error) {
	if o.Method == "" {
		o.Method = Ensemble
	}
	if o.Horizons == nil {
		o.Horizons = Horizons
	}
	// Against the releases themselves, the method's forecast of each
	// target is widened by that release's noise (see EvalOptions.Truth).
	var noiseOf map[time.Time]float64
	if o.Truth == nil {
		index := make(map[time.Time]float64, len(series))
		noiseOf = make(map[time.Time]float64, len(series))
		for _, p := range series {
			index[p.Date] = p.Value
			noiseOf[p.Date] = p.Variance
		}
		o.Truth = func(week time.Time) (float64, bool) { v, ok := index[week]; return v, ok }
	}
	if err := checkHistory(series); err != nil {
		return nil, err
	}
	if err := checkHorizons(o.Horizons); err != nil {
		return nil, err
	}
	ev := &Evaluation{Method: o.Method, Horizons: o.Horizons}
	for i := range series {
		ref := series[i].Date.AddDate(0, 0, 7)
		if (!o.From.IsZero() && ref.Before(o.From)) || (!o.To.IsZero() && ref.After(o.To)) {
			continue
		}
		var hs []int
		var observed []float64
		for _, h := range o.Horizons {
			if y, ok := o.Truth(ref.AddDate(0, 0, 7*h)); ok {
				hs = append(hs, h)
				observed = append(observed, y)
			}
		}
		if len(hs) == 0 {
			continue
		}
		past := slices.Clone(series[:i+1])
		fc, err := Forecast(past, hs, o.Method)
		if errors.Is(err, ErrHistory) {
			continue
		}
		if err != nil {
			return nil, err
		}
		base, err := Forecast(past, hs, Baseline)
		if errors.Is(err, ErrHistory) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ev.Origins++
		for k, y := range observed {
			if noiseOf != nil && o.Method != Baseline {
				fc[k] = WithNoise(fc[k], noiseOf[fc[k].Target])
			}
			ev.Scores = append(ev.Scores, Score{Forecast: fc[k], Baseline: base[k], Observed: y,
				WIS: WIS(fc[k], y), BaselineWIS: WIS(base[k], y)})
		}
	}
	if len(ev.Scores) == 0 {
		return nil, fmt.Errorf("%w: no reference date from which %s can forecast a week with a truth", ErrHistory, o.Method)
	}
	ev.Summary, ev.BaselineSummary, ev.RelativeWIS = Summarise(ev.Scores)
	return ev, nil
}

// Summarise summarises scores (of one series or pooled over several) for
// the method and for the baseline, and returns the relative WIS, the ratio
// of their mean WIS (FluSight's headline: below 1 the method beats the
// baseline; NaN when the baseline's mean WIS is 0 or there are no scores).
func Summarise(scores []Score) (method, baseline Summary, relativeWIS float64) {
	method = summarise(scores, func(s Score) (QuantileForecast, float64) { return s.Forecast, s.WIS })
	baseline = summarise(scores, func(s Score) (QuantileForecast, float64) { return s.Baseline, s.BaselineWIS })
	relativeWIS = math.NaN()
	if baseline.MeanWIS > 0 {
		relativeWIS = method.MeanWIS / baseline.MeanWIS
	}
	return method, baseline, relativeWIS
}

func summarise(scores []Score, pick func(Score) (QuantileForecast, float64)) Summary {
	s := Summary{N: len(scores)}
	if s.N == 0 {
		return Summary{MeanWIS: math.NaN(), Coverage50: math.NaN(), Coverage95: math.NaN()}
	}
	for _, sc := range scores {
		q, wis := pick(sc)
		s.MeanWIS += wis
		if Covers(q, 0.5, sc.Observed) {
			s.Coverage50++
		}
		if Covers(q, 0.95, sc.Observed) {
			s.Coverage95++
		}
	}
	n := float64(s.N)
	s.MeanWIS /= n
	s.Coverage50 /= n
	s.Coverage95 /= n
	return s
}
