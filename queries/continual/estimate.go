package continual

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Errors.
var (
	// ErrInput marks unusable arguments (a bad interval, a non-positive
	// variance, a bad schedule).
	ErrInput = errors.New("continual: bad input")
	// ErrUndetermined marks observations that do not determine every
	// period value up to t (a release is missing).
	ErrUndetermined = errors.New("continual: the releases do not determine every period")
)

// Obs is a released interval: its noisy count and the exact variance of its
// noise (result.Number.Variance of the release).
type Obs struct {
	Interval Interval
	Value    float64
	Var      float64
}

// Est is an estimate and its variance, which comes from the known noise
// variances alone (it is not a sampling variance).
type Est struct{ Value, Var float64 }

// Estimate returns the generalised least-squares estimates of the period
// values x_0 .. x_t and of the running totals x_0 + .. + x_s (s ≤ t) from
// the observations whose interval ends at or before t (the others are
// ignored): each observation is y_v = Σ_{p∈v} x_p + e_v with independent
// noise e_v of variance Var. With A the design (one row per observation, 1
// on the periods of its interval) and Ω = diag(1/Var),
//
//	x̂ = (AᵀΩA)⁻¹ AᵀΩ y,   Cov(x̂) = (AᵀΩA)⁻¹,
//
// the best linear unbiased estimator (Gauss–Markov); a running total is the
// sum of the period estimates and its variance 1ᵀ Cov 1 over its periods.
// It is post-processing of released numbers: it costs no budget. Estimates
// are not clipped (a small count may come out negative) so that they stay
// unbiased. A series grouped by a key calls Estimate per cell.
//
// It returns ErrUndetermined when the observations do not determine every
// period value (a release of level 0 is missing and no other combination
// makes up for it), and ErrInput for t < 0, an invalid interval, or a value
// or variance that is not a finite number (variances must be positive).
// The cost is O(t³) (a dense Cholesky factorisation of t+1 unknowns).
func Estimate(obs []Obs, t int) (periods, totals []Est, err error) {
	if t < 0 {
		return nil, nil, fmt.Errorf("%w: period %d: want t >= 0", ErrInput, t)
	}
	n := t + 1
	info := mat.NewSymDense(n, nil) // AᵀΩA
	rhs := mat.NewVecDense(n, nil)  // AᵀΩy
	covered := make([]bool, n)
	used := 0
	for _, o := range obs {
		v := o.Interval
		if !v.valid() {
			return nil, nil, fmt.Errorf("%w: interval level %d index %d", ErrInput, v.Level, v.Index)
		}
		if !(o.Var > 0) || math.IsInf(o.Var, 0) || math.IsNaN(o.Value) || math.IsInf(o.Value, 0) {
			return nil, nil, fmt.Errorf("%w: %v: value %v, variance %v: want a number and a positive variance", ErrInput, v, o.Value, o.Var)
		}
		if v.Last() > t {
			continue
		}
		used++
		w := 1 / o.Var
		a, b := v.First(), v.Last()
		for p := a; p <= b; p++ {
			covered[p] = true
			rhs.SetVec(p, rhs.AtVec(p)+w*o.Value)
			for q := p; q <= b; q++ {
				info.SetSym(p, q, info.At(p, q)+w)
			}
		}
	}
	for p, ok := range covered {
		if !ok {
			return nil, nil, fmt.Errorf("%w: no release covers period %d (of 0..%d)", ErrUndetermined, p, t)
		}
	}
	var chol mat.Cholesky
	// A singular system can leave a tiny rounding pivot instead of a zero
	// one: a condition number no sum of counts produces counts as singular.
	if !chol.Factorize(info) || chol.Cond() > 1e12 {
		return nil, nil, fmt.Errorf("%w: the %d releases up to period %d leave some period values undetermined (a release of level 0 is missing)", ErrUndetermined, used, t)
	}
	var x mat.VecDense
	if err := chol.SolveVecTo(&x, rhs); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUndetermined, err)
	}
	var cov mat.SymDense
	if err := chol.InverseTo(&cov); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUndetermined, err)
	}
	periods = make([]Est, n)
	totals = make([]Est, n)
	var sum, sumVar float64
	for s := range n {
		xs := x.AtVec(s)
		periods[s] = Est{Value: xs, Var: cov.At(s, s)}
		// 1ᵀC1 over 0..s grows by C_ss plus twice the covariances of s
		// with the earlier periods.
		cross := 0.0
		for a := range s {
			cross += cov.At(a, s)
		}
		sum += xs
		sumVar += cov.At(s, s) + 2*cross
		totals[s] = Est{Value: sum, Var: sumVar}
	}
	return periods, totals, nil
}
