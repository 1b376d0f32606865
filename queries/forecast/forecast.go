package forecast

import (
	"errors"
	"fmt"
	"math"
	"slices"
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
// QuantileForecast's Values follow them.
var Quantiles = []float64{0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
	0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99}

// MaxHorizon is the largest horizon (weeks ahead) Forecast accepts.
const MaxHorizon = 4

// Week is the spacing of a series.
const Week = 7 * 24 * time.Hour

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

// The methods.
const (
	Baseline Method = "baseline"
	Seasonal Method = "seasonal"
	AR       Method = "ar"
	Ensemble Method = "ensemble"
)

// Methods lists the methods, for help texts and flag checks.
var Methods = []Method{Ensemble, Baseline, AR, Seasonal}

// QuantileForecast is the forecast of one target week.
type QuantileForecast struct {
	// Reference is the date of the last week of the history (the origin).
	Reference time.Time
	// Horizon is the number of weeks ahead, 1..MaxHorizon.
	Horizon int
	// Target is Reference + 7·Horizon days.
	Target time.Time
	// Values[i] is the quantile of level Quantiles[i]: non-negative and
	// non-decreasing in i.
	Values []float64
}

// Median is the forecast's 0.5 quantile.
func (q QuantileForecast) Median() float64 { return q.Values[medianIndex] }

const medianIndex = 11

// Forecast forecasts the weeks horizons ahead of the last point of history
// with the method. Horizons are 1..MaxHorizon, each at most once, in any
// order; the result follows them. It does not modify history.
func Forecast(history []Point, horizons []int, method Method) ([]QuantileForecast, error) {
	if err := checkHistory(history); err != nil {
		return nil, err
	}
	if err := checkHorizons(horizons); err != nil {
		return nil, err
	}
	var f quantileFunc
	switch method {
	case Baseline:
		f = baselineQuantiles
	case AR:
		f = arQuantiles
	case Seasonal:
		f = seasonalQuantiles
	case Ensemble:
		f = ensembleQuantiles
	default:
		return nil, fmt.Errorf("%w: method %q (want one of %v)", ErrInput, method, Methods)
	}
	values, err := f(history, horizons)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	for k, v := range values {
		for _, x := range v {
			if math.IsNaN(x) {
				return nil, fmt.Errorf("%w: %s gave an undefined quantile at horizon %d", ErrInput, method, horizons[k])
			}
		}
	}
	last := history[len(history)-1].Date
	out := make([]QuantileForecast, len(horizons))
	for k, h := range horizons {
		out[k] = QuantileForecast{Reference: last, Horizon: h, Target: last.AddDate(0, 0, 7*h), Values: tidy(values[k])}
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
		if h < 1 || h > MaxHorizon {
			return fmt.Errorf("%w: horizon %d (want 1..%d weeks)", ErrInput, h, MaxHorizon)
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
// each horizon.
type quantileFunc func(history []Point, horizons []int) ([][]float64, error)

// ensembleQuantiles averages the available methods level by level.
func ensembleQuantiles(history []Point, horizons []int) ([][]float64, error) {
	members := []quantileFunc{baselineQuantiles, arQuantiles, seasonalQuantiles}
	sum := make([][]float64, len(horizons))
	for k := range sum {
		sum[k] = make([]float64, len(Quantiles))
	}
	n := 0
	for _, m := range members {
		v, err := m(history, horizons)
		if errors.Is(err, ErrHistory) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for k := range sum {
			for i := range sum[k] {
				sum[k][i] += v[k][i]
			}
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: no member of the ensemble can forecast", ErrHistory)
	}
	for k := range sum {
		for i := range sum[k] {
			sum[k][i] /= float64(n)
		}
	}
	return sum, nil
}

// logScale returns y_t = log(max(x_t,0)+1) and the noise variance on that
// scale by the delta method, w_t = v_t/(max(x_t,0)+1)².
func logScale(history []Point) (y, w []float64) {
	y = make([]float64, len(history))
	w = make([]float64, len(history))
	for i, p := range history {
		x := max(p.Value, 0) + 1
		y[i] = math.Log(x)
		w[i] = p.Variance / (x * x)
	}
	return y, w
}

// fromLogNormal returns the quantiles exp(mu + z_τ·sd) − 1.
func fromLogNormal(mu, sd float64) []float64 {
	out := make([]float64, len(Quantiles))
	for i, tau := range Quantiles {
		out[i] = math.Expm1(mu + sd*normalQuantile(tau))
	}
	return out
}

// copyHistory is used by Evaluate so no method can see past the origin.
func copyHistory(h []Point) []Point { return slices.Clone(h) }

func isHistory(err error) bool { return errors.Is(err, ErrHistory) }
