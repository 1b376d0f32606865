package stats

import (
	"context"
	"fmt"
	"math"
	"strconv"
)

// QuantileOptions configure Quantiles.
type QuantileOptions struct {
	Table, Where string
	// Column is a study number column with a public range; Width its bin
	// width (defaults to 1). Required.
	Column string
	Width  float64
	// Probs are the probabilities, e.g. 0.25, 0.5, 0.75. Required.
	Probs  []float64
	Budget Budget
}

// Histogram is a released histogram.
type Histogram struct {
	Lower  []float64 // bin lower bounds
	Width  float64
	Counts []Noisy
}

// Quantiles releases a histogram in one round (`SELECT bin(x, w), COUNT(*)
// ... GROUP BY bin`, one count measure, sensitivity 1 with one row per
// patient, the whole budget) and reads the quantiles off its cumulative
// counts (negative noisy counts taken as 0; linear within a bin). The
// intervals come from the noise (simulated) and, for sampling, from the
// binomial order-statistic ranks n·p ± 1.96·√(n·p(1−p)). It refuses when
// the noise of the total exceeds a tenth of it.
func Quantiles(ctx context.Context, q Querier, o QuantileOptions) (*Histogram, []Estimate, error) {
	if err := o.Budget.check(); err != nil {
		return nil, nil, err
	}
	if o.Width == 0 {
		o.Width = 1
	}
	if o.Table == "" || o.Column == "" || len(o.Probs) == 0 || !(o.Width > 0) {
		return nil, nil, fmt.Errorf("%w: table, column and probabilities are required", ErrInput)
	}
	for _, p := range o.Probs {
		if !(p > 0 && p < 1) {
			return nil, nil, fmt.Errorf("%w: probability %v is not in (0, 1)", ErrInput, p)
		}
	}
	rel, err := q.Query(ctx, o.Budget.request("SELECT bin("+o.Column+", "+num(o.Width)+") AS b, COUNT(*)"+from(o.Table, o.Where)+" GROUP BY b"))
	if err != nil {
		return nil, nil, err
	}
	h := &Histogram{Width: o.Width}
	var totalVar, total float64
	for _, row := range rel.Rows {
		lo, err := strconv.ParseFloat(row.Keys[0], 64)
		if err != nil || row.Values[0].Missing {
			return nil, nil, fmt.Errorf("%w: bin %q", ErrRelease, row.Keys[0])
		}
		h.Lower = append(h.Lower, lo)
		h.Counts = append(h.Counts, row.Values[0])
		total += row.Values[0].Value
		totalVar += row.Values[0].Var
	}
	if math.Sqrt(totalVar) > total/10 {
		return nil, nil, fmt.Errorf("%w: the noise of the histogram's total (σ = %.1f over %d bins) exceeds a tenth of it (%.0f); raise epsilon or widen the bins", ErrBudget, math.Sqrt(totalVar), len(h.Counts), total)
	}
	at := func(v []float64, p float64) float64 {
		var n float64
		for _, c := range v {
			n += math.Max(c, 0)
		}
		target, cum := p*n, 0.0
		for i, c := range v {
			c = math.Max(c, 0)
			if cum+c >= target && c > 0 {
				return h.Lower[i] + o.Width*(target-cum)/c
			}
			cum += c
		}
		return h.Lower[len(h.Lower)-1] + o.Width
	}
	vals := values(h.Counts)
	_, lo, hi, _ := simulate(h.Counts, 400, func(v []float64) ([]float64, bool) {
		out := make([]float64, 0, 3*len(o.Probs))
		var n float64
		for _, c := range v {
			n += math.Max(c, 0)
		}
		for _, p := range o.Probs {
			d := z975 * math.Sqrt(n*p*(1-p))
			out = append(out, at(v, p), at(v, math.Max(p-d/n, 1e-9)), at(v, math.Min(p+d/n, 1-1e-9)))
		}
		return out, true
	})
	var ests []Estimate
	for i, p := range o.Probs {
		e := Estimate{Name: "quantile." + strconv.FormatFloat(p, 'g', -1, 64), Value: at(vals, p), CILow: lo[3*i+1], CIHigh: hi[3*i+2]}
		e.SE = (e.CIHigh - e.CILow) / (2 * z975)
		ests = append(ests, e)
	}
	return h, ests, nil
}
