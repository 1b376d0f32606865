package forecast

import (
	"fmt"
	"math"
	"time"
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
	// history up to it only; Baseline the baseline's, from the same history.
	Forecast, Baseline QuantileForecast
	// Observed is the released value of the target week.
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
	// Origins is the number of origins forecast from.
	Origins int
	// Scores are every scored forecast, by origin then horizon.
	Scores []Score
	// Method and baseline summaries over Scores.
	Summary, BaselineSummary Summary
	// RelativeWIS is Summary.MeanWIS / BaselineSummary.MeanWIS (NaN when the
	// baseline's is 0).
	RelativeWIS float64
}

// Evaluate forecasts series from rolling origins and scores the forecasts
// against the released values that followed. The origins are the weeks
// with dates on or after firstOrigin (the zero time: every week) from which
// the method can forecast (shorter histories are skipped, as ErrHistory
// says) and with at least one target week in the series. Each forecast is
// computed on a copy of series up to its origin, so no method can read
// later weeks. The baseline is scored on the same targets.
func Evaluate(series []Point, method Method, horizons []int, firstOrigin time.Time) (*Evaluation, error) {
	if err := checkHistory(series); err != nil {
		return nil, err
	}
	if err := checkHorizons(horizons); err != nil {
		return nil, err
	}
	ev := &Evaluation{Method: method, Horizons: horizons}
	for o := range series {
		if series[o].Date.Before(firstOrigin) {
			continue
		}
		var hs []int
		for _, h := range horizons {
			if o+h < len(series) {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 {
			continue
		}
		past := copyHistory(series[:o+1])
		fc, err := Forecast(past, hs, method)
		if isHistory(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		base, err := Forecast(past, hs, Baseline)
		if isHistory(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ev.Origins++
		for i, h := range hs {
			y := series[o+h].Value
			ev.Scores = append(ev.Scores, Score{Forecast: fc[i], Baseline: base[i], Observed: y,
				WIS: WIS(fc[i], y), BaselineWIS: WIS(base[i], y)})
		}
	}
	if len(ev.Scores) == 0 {
		return nil, fmt.Errorf("%w: no origin from which %s can forecast a week of the series", ErrHistory, method)
	}
	ev.Summary = summarise(ev.Scores, func(s Score) (QuantileForecast, float64) { return s.Forecast, s.WIS })
	ev.BaselineSummary = summarise(ev.Scores, func(s Score) (QuantileForecast, float64) { return s.Baseline, s.BaselineWIS })
	ev.RelativeWIS = math.NaN()
	if ev.BaselineSummary.MeanWIS > 0 {
		ev.RelativeWIS = ev.Summary.MeanWIS / ev.BaselineSummary.MeanWIS
	}
	return ev, nil
}

func summarise(scores []Score, pick func(Score) (QuantileForecast, float64)) Summary {
	var s Summary
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
	s.N = len(scores)
	n := float64(s.N)
	s.MeanWIS /= n
	s.Coverage50 /= n
	s.Coverage95 /= n
	return s
}
