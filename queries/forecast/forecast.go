package forecast

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Sentinel errors, wrapped with detail; match them with errors.Is.
var (
	// ErrInput marks an invalid history, horizon or method.
	ErrInput = errors.New("forecast: invalid input")
	// ErrHistory marks a history too short for the method.
	ErrHistory = errors.New("forecast: history too short")
)

// Quantiles are the 23 FluSight quantile levels, in increasing order. A
// QuantileForecast's Values follow them. Callers must not modify it.
var Quantiles = []float64{0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
	0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99}

// MaxHorizon is the largest horizon Forecast accepts. Horizons follow
// FluSight: horizon h targets the week ending Reference + 7h days, that is
// h + 1 weeks after the last week of the history (0..3: 1 to 4 weeks ahead).
const MaxHorizon = 3

// Horizons are the FluSight horizons 0..MaxHorizon, the default of
// Evaluate and of the CLI. Callers must not modify it.
var Horizons = []int{0, 1, 2, 3}

// Point is one released weekly value.
type Point struct {
	// Date is the week's date (FluSight: the Saturday ending the week).
	// Consecutive points are exactly 7 days apart.
	Date time.Time
	// Value is the released value (a count with DP noise; may be negative).
	Value float64
	// Variance is the exact variance of the DP noise of Value, ≥ 0 (0 for an
	// exact value).
	Variance float64
}

// Method names a forecasting method (see the package documentation).
type Method string

// The methods (see the package documentation for their definitions).
const (
	// Baseline is FluSight's baseline: flat from the last value, its spread
	// from the past week-to-week changes, symmetrised. It needs 3 weeks.
	Baseline Method = "baseline"
	// Seasonal follows the change over the same weeks of earlier years. It
	// needs SeasonalMinWeeks weeks.
	Seasonal Method = "seasonal"
	// AR is the log-scale AR(2) whose fit and intervals include the known
	// noise of every release. It needs ARMinWeeks weeks.
	AR Method = "ar"
	// Ensemble, the default, averages two fits of the AR model, without and
	// with an estimated reporting error. It needs ARMinWeeks weeks.
	Ensemble Method = "ensemble"
)

// Methods lists the methods, the default first, for help texts and flag
// checks. Callers must not modify it.
var Methods = []Method{Ensemble, Baseline, AR, Seasonal}

// QuantileForecast is the forecast of one target week.
type QuantileForecast struct {
	// Reference is FluSight's reference date: the week after the last week
	// of the history (its date + 7 days), the week a forecast is made in.
	Reference time.Time
	// Horizon is FluSight's horizon, 0..MaxHorizon: the target is the week
	// Horizon + 1 weeks after the last week of the history.
	Horizon int
	// Target is the target week's date, Reference + 7·Horizon days.
	Target time.Time
	// Values[i] is the quantile of level Quantiles[i]: non-negative and
	// non-decreasing in i.
	Values []float64
}

// Median is the forecast's 0.5 quantile.
func (q QuantileForecast) Median() float64 { return q.Values[medianIndex] }

const medianIndex = 11

// Forecast forecasts the weeks of the FluSight horizons (0..MaxHorizon,
// each at most once, in any order) after the last point of history with the
// method; the result follows horizons. Forecasts of a horizon h are for the
// week h + 1 weeks after the last point. It does not modify history. It
// fails with ErrInput for an invalid history, horizon or method, and with
// ErrHistory when the history is too short for the method (Baseline needs 3
// weeks, AR and Ensemble ARMinWeeks, Seasonal SeasonalMinWeeks).
func Forecast(history []Point, horizons []int, method Method) ([]QuantileForecast, error) {
	if err := checkHistory(history); err != nil {
		return nil, err
	}
	if err := checkHorizons(horizons); err != nil {
		return nil, err
	}
	f, ok := methodFuncs[method]
	if !ok {
		return nil, fmt.Errorf("%w: method %q (want one of %v)", ErrInput, method, Methods)
	}
	steps := make([]int, len(horizons)) // weeks after the last point
	for k, h := range horizons {
		steps[k] = h + 1
	}
	values, err := f(history, steps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	for k, v := range values {
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%w: %s gave an undefined quantile at horizon %d", ErrInput, method, horizons[k])
			}
		}
	}
	ref := history[len(history)-1].Date.AddDate(0, 0, 7)
	out := make([]QuantileForecast, len(horizons))
	for k, h := range horizons {
		out[k] = QuantileForecast{Reference: ref, Horizon: h, Target: ref.AddDate(0, 0, 7*h), Values: tidy(values[k])}
	}
	return out, nil
}

func checkHistory(history []Point) error {
	if len(history) == 0 {
		return fmt.Errorf("%w: empty history", ErrHistory)
	}
	for i, p := range history {
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			return fmt.Errorf("%w: week %s: value %v", ErrInput, p.Date.Format(time.DateOnly), p.Value)
		}
		if !(p.Variance >= 0) || math.IsInf(p.Variance, 0) {
			return fmt.Errorf("%w: week %s: variance %v (want a finite number ≥ 0)", ErrInput, p.Date.Format(time.DateOnly), p.Variance)
		}
		if i > 0 && !p.Date.Equal(history[i-1].Date.AddDate(0, 0, 7)) {
			return fmt.Errorf("%w: week %s follows %s: weeks must be exactly 7 days apart, with none missing", ErrInput,
				p.Date.Format(time.DateOnly), history[i-1].Date.Format(time.DateOnly))
		}
	}
	return nil
}

func checkHorizons(horizons []int) error {
	if len(horizons) == 0 {
		return fmt.Errorf("%w: no horizons", ErrInput)
	}
	seen := map[int]bool{}
	for _, h := range horizons {
		if h < 0 || h > MaxHorizon {
			return fmt.Errorf("%w: horizon %d (want 0..%d, FluSight's: 1 to %d weeks after the last week)", ErrInput, h, MaxHorizon, MaxHorizon+1)
		}
		if seen[h] {
			return fmt.Errorf("%w: horizon %d given twice", ErrInput, h)
		}
		seen[h] = true
	}
	return nil
}

// tidy makes quantiles non-negative and non-decreasing (a running maximum;
// the methods are monotone already, this guards rounding).
func tidy(v []float64) []float64 {
	for i := range v {
		v[i] = max(v[i], 0)
		if i > 0 {
			v[i] = max(v[i], v[i-1])
		}
	}
	return v
}

// quantileFunc computes a method's quantiles (following Quantiles) for
// the weeks steps[k] ≥ 1 weeks after the last point of history.
type quantileFunc func(history []Point, steps []int) ([][]float64, error)

// methodFuncs implements the methods.
var methodFuncs = map[Method]quantileFunc{
	Baseline: baselineQuantiles,
	AR:       arQuantiles,
	Seasonal: seasonalQuantiles,
}

func init() { methodFuncs[Ensemble] = ensembleQuantiles }

// ensembleMembers are the members of Ensemble and their weights, chosen on
// the 2022-23 FluSight season (see the package documentation).
var ensembleMembers = []struct {
	name   string
	f      quantileFunc
	weight float64
}{{"ar", arQuantiles, 1}, {"ar with reporting error", arReportingQuantiles, 1}}

// ensembleQuantiles is the weighted average of the members' quantiles,
// level by level, over the members that can forecast the history.
func ensembleQuantiles(history []Point, steps []int) ([][]float64, error) {
	sum := make([][]float64, len(steps))
	for k := range sum {
		sum[k] = make([]float64, len(Quantiles))
	}
	var total float64
	var short error
	for _, m := range ensembleMembers {
		v, err := m.f(history, steps)
		if errors.Is(err, ErrHistory) {
			short = err
			continue
		}
		if err != nil {
			return nil, err
		}
		for k := range sum {
			for i := range sum[k] {
				sum[k][i] += m.weight * v[k][i]
			}
		}
		total += m.weight
	}
	if total == 0 {
		return nil, fmt.Errorf("no member of the ensemble can forecast: %w", short)
	}
	for k := range sum {
		for i := range sum[k] {
			sum[k][i] /= total
		}
	}
	return sum, nil
}
