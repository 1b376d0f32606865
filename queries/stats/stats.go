// Package stats computes research and surveillance statistics from released
// aggregates: every method asks a Querier for one or more aggregate queries
// (each a differentially private, encrypted-then-decrypted total over the
// nodes), then solves on the noisy totals. Nothing here sees a record.
//
// Each method documents its query rounds, the sensitivity of what it asks
// for and how it splits the budget (see docs/statistics.md). Every estimate
// carries an interval that includes the DP noise: the noise variance of each
// released total is known (the release carries it, see FromResult), and it
// is propagated to the estimate by simulation (Monte Carlo over the noise)
// and added to the sampling variance where the method has one. A method
// refuses (ErrBudget) when the noise would swamp the answer.
package stats

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"

	"github.com/fedstat/fedstat/queries/result"
	"github.com/fedstat/fedstat/queries/zcdp"
)

// Errors.
var (
	// ErrBudget is returned when the budget cannot buy a useful answer.
	ErrBudget = errors.New("stats: the privacy budget is too small for a useful answer")
	// ErrInput marks bad method options.
	ErrInput = errors.New("stats: bad options")
	// ErrRelease marks a release that does not have the expected shape or
	// has withheld values.
	ErrRelease = errors.New("stats: unusable release")
)

// z975 is the 97.5% standard normal quantile.
const z975 = 1.959963984540054

// Request is one aggregate query with its privacy parameters.
type Request struct {
	SQL     string
	Epsilon float64
	Delta   float64
}

// Noisy is one released number: its value and the variance of the DP noise
// in it. Missing is set for a withheld value (below the small-count
// threshold) or one without an interval.
type Noisy struct {
	Value, Var float64
	Missing    bool
}

// Row is one cell of a release.
type Row struct {
	Keys   []string
	Values []Noisy
}

// Release is a released query result.
type Release struct {
	Columns    []string
	KeyColumns int
	Rows       []Row
}

// Querier runs one aggregate query through the network and returns the
// released result. It may block; it must honour ctx.
type Querier interface {
	Query(ctx context.Context, r Request) (*Release, error)
}

// QuerierFunc adapts a function to Querier.
type QuerierFunc func(ctx context.Context, r Request) (*Release, error)

// Query calls f.
func (f QuerierFunc) Query(ctx context.Context, r Request) (*Release, error) { return f(ctx, r) }

// FromResult converts a released result. The noise variance of a number is
// the one the release computed (result.Number.Variance, exact: queries/dp
// fills it for every count and sum). A number without one (a ratio, or a
// result from a coordinator that predates the field) has it recovered from
// its 95% interval: (half-width/1.96)² for sums; counts have integer
// half-widths h = ⌈1.96·√(v − 1/12) − ½⌉ (queries/dp), so their variance is
// taken as ((h + ½)/1.96)² + 1/12, an upper bound.
func FromResult(r *result.Result) *Release {
	out := &Release{Columns: r.Columns, KeyColumns: r.KeyColumns}
	for _, row := range r.Rows {
		rr := Row{Keys: row.Keys}
		for _, n := range row.Values {
			v := Noisy{Value: n.Value}
			if n.Suppressed || math.IsNaN(n.Value) || math.IsNaN(n.CILow) || math.IsNaN(n.CIHigh) {
				v.Missing = true
			} else if !math.IsNaN(n.Variance) && n.Variance >= 0 {
				v.Var = n.Variance
			} else {
				// The upper half: a count's interval is clipped at 0 below.
				h := n.CIHigh - n.Value
				if n.Value == math.Trunc(n.Value) && h == math.Trunc(h) {
					v.Var = math.Pow((h+0.5)/z975, 2) + 1.0/12
				} else {
					v.Var = math.Pow(h/z975, 2)
				}
			}
			rr.Values = append(rr.Values, v)
		}
		out.Rows = append(out.Rows, rr)
	}
	return out
}

// Budget is the privacy budget of a whole analysis (all its rounds),
// Gaussian mechanism.
type Budget struct {
	Epsilon float64 // Required > 0
	Delta   float64 // Required in (0, 1)
}

func (b Budget) check() error {
	if !(b.Epsilon > 0) || math.IsInf(b.Epsilon, 0) || !(b.Delta > 0 && b.Delta < 1) {
		return fmt.Errorf("%w: budget needs epsilon > 0 and delta in (0, 1), got %v, %v", ErrInput, b.Epsilon, b.Delta)
	}
	return nil
}

// Split returns the (ε, δ) of each of n equal rounds whose zCDP costs add
// up to b's: ρ = ρ(ε, δ), each round ρ/n, converted back with the same δ.
// The ledgers debit ρ/n per round, n·ρ/n = ρ in all.
func (b Budget) Split(n int) Budget {
	rho := zcdp.RhoFromEpsilonDelta(b.Epsilon, b.Delta)
	return Budget{Epsilon: zcdp.EpsilonFromRho(rho/float64(n), b.Delta), Delta: b.Delta}
}

// Newton returns the budgets of n Newton-Raphson rounds: the last round,
// whose noise is what the estimate keeps, gets half of ρ; the n−1 earlier
// rounds (whose noise only moves the point where the last one is taken, and
// Newton's method corrects that) share the other half equally. The zCDP
// costs add up to b's.
func (b Budget) Newton(n int) []Budget {
	if n == 1 {
		return []Budget{b}
	}
	rho := zcdp.RhoFromEpsilonDelta(b.Epsilon, b.Delta)
	out := make([]Budget, n)
	for i := range n - 1 {
		out[i] = Budget{Epsilon: zcdp.EpsilonFromRho(rho/2/float64(n-1), b.Delta), Delta: b.Delta}
	}
	out[n-1] = Budget{Epsilon: zcdp.EpsilonFromRho(rho/2, b.Delta), Delta: b.Delta}
	return out
}

func (b Budget) request(sql string) Request {
	return Request{SQL: sql, Epsilon: b.Epsilon, Delta: b.Delta}
}

// Estimate is one statistic with its standard error and 95% interval,
// both including the DP noise.
type Estimate struct {
	Name   string
	Value  float64
	SE     float64
	CILow  float64
	CIHigh float64
}

func normalEstimate(name string, v, se float64) Estimate {
	return Estimate{Name: name, Value: v, SE: se, CILow: v - z975*se, CIHigh: v + z975*se}
}

// num formats a constant for SQL text (shortest exact form).
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// sum returns "SUM(CLAMP(expr, lo, hi))".
func sumSQL(expr string, lo, hi float64) string {
	return "SUM(CLAMP(" + expr + ", " + num(lo) + ", " + num(hi) + "))"
}

// simulate propagates the noise of released values through f: it draws
// values + N(0, var) `draws` times and returns, per output of f, the
// standard deviation and the 2.5% and 97.5% quantiles over the draws that
// f accepts (f may reject a draw, e.g. a singular matrix). ok is the share
// of accepted draws. The seed is fixed: the draws are post-processing of
// public values and need no secrecy; fixing it makes results repeatable.
func simulate(vals []Noisy, draws int, f func([]float64) ([]float64, bool)) (sd, lo, hi []float64, ok float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, len(vals))
	var outs [][]float64
	for range draws {
		for i, v := range vals {
			x[i] = v.Value + rng.NormFloat64()*math.Sqrt(v.Var)
		}
		if y, good := f(x); good {
			outs = append(outs, append([]float64(nil), y...))
		}
	}
	if len(outs) == 0 {
		return nil, nil, nil, 0
	}
	k := len(outs[0])
	sd, lo, hi = make([]float64, k), make([]float64, k), make([]float64, k)
	col := make([]float64, len(outs))
	for j := range k {
		var m, m2 float64
		for i, o := range outs {
			col[i] = o[j]
			m += o[j]
		}
		m /= float64(len(outs))
		for _, c := range col {
			m2 += (c - m) * (c - m)
		}
		sd[j] = math.Sqrt(m2 / float64(max(len(outs)-1, 1)))
		sort.Float64s(col)
		lo[j], hi[j] = quantile(col, 0.025), quantile(col, 0.975)
	}
	return sd, lo, hi, float64(len(outs)) / float64(draws)
}

func quantile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := p * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	f := pos - float64(i)
	return sorted[i]*(1-f) + sorted[i+1]*f
}

// values returns the values of vs.
func values(vs []Noisy) []float64 {
	out := make([]float64, len(vs))
	for i, v := range vs {
		out[i] = v.Value
	}
	return out
}

// single checks that a release has one row and returns its values.
func single(r *Release, n int) ([]Noisy, error) {
	if len(r.Rows) != 1 || len(r.Rows[0].Values) != n {
		return nil, fmt.Errorf("%w: want one row of %d values", ErrRelease, n)
	}
	for i, v := range r.Rows[0].Values {
		if v.Missing {
			return nil, fmt.Errorf("%w: value %d (%s) was withheld", ErrRelease, i+1, r.Columns[r.KeyColumns+i])
		}
	}
	return r.Rows[0].Values, nil
}

// invert returns the inverse of the symmetric n×n matrix a (row-major) by
// Gauss-Jordan elimination with partial pivoting, or false when it is
// singular or not positive definite on the diagonal of the result.
func invert(a []float64, n int) ([]float64, bool) {
	m := make([]float64, n*2*n)
	for i := range n {
		copy(m[i*2*n:i*2*n+n], a[i*n:i*n+n])
		m[i*2*n+n+i] = 1
	}
	w := 2 * n
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r*w+c]) > math.Abs(m[p*w+c]) {
				p = r
			}
		}
		if math.Abs(m[p*w+c]) < 1e-12 || math.IsNaN(m[p*w+c]) {
			return nil, false
		}
		if p != c {
			for k := range w {
				m[p*w+k], m[c*w+k] = m[c*w+k], m[p*w+k]
			}
		}
		d := m[c*w+c]
		for k := range w {
			m[c*w+k] /= d
		}
		for r := range n {
			if r == c {
				continue
			}
			f := m[r*w+c]
			if f == 0 {
				continue
			}
			for k := range w {
				m[r*w+k] -= f * m[c*w+k]
			}
		}
	}
	out := make([]float64, n*n)
	for i := range n {
		copy(out[i*n:i*n+n], m[i*w+n:i*w+2*n])
		if !(out[i*n+i] > 0) {
			return nil, false
		}
	}
	return out, true
}

func matVec(a []float64, x []float64) []float64 {
	n := len(x)
	out := make([]float64, n)
	for i := range n {
		for j := range n {
			out[i] += a[i*n+j] * x[j]
		}
	}
	return out
}
