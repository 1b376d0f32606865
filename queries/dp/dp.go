// Package dp is the only package of fedstat that imports Google's
// differential-privacy library. It turns a node's exact aggregates into its
// noise share (the only value that may leave a node), and at the coordinator
// decodes the decrypted sum of shares into a released Result with intervals.
//
// # Noise
//
// For the Gaussian mechanism each node adds, to every slot of measure j,
// N(0, σ_j²/(m−T+1)) in natural units (plan.Measure.NodeSigma), where σ_j is
// the standard deviation the release needs (see package plan): with at least
// m partials and at most T−1 colluders, the honest partials alone carry
// variance ≥ σ_j². The draw uses noise.Gaussian().AddNoiseFloat64, which is
// parametrised by (l0, lInf, ε, δ) rather than σ; its σ is
// SigmaForGaussian(l0, lInf, ε, δ), linear in lInf, so we fix l0 = 1,
// ε = 1, δ = 1e-5 and choose lInf = target / SigmaForGaussian(1, 1, 1, 1e-5),
// corrected upward until SigmaForGaussian(1, lInf, 1, 1e-5) ≥ target. Those
// (ε, δ) are calibration constants only, not the query's cost.
//
// For Laplace every node adds Laplace(b_j), b_j = Δ₁·k/ε, through
// noise.Laplace().AddNoiseFloat64 with l0 = 1, ε = 1, lInf = b_j·Scale.
//
// Encoding: slot = round(Scale·exact) + round(Scale·noise) as int64, on the
// plan's grid of quantum 1/Scale (plan.Plan.encode), clamped to
// plan.PartialBound (±MaxAbsPartial, or for a count from minus its noise
// tail up). Rounding each node's noise before the sum is not
// post-processing of the release; the plan's grid keeps every node's noise
// at 4 quanta or more, and TestReleasedNoiseMatchesCharge computes the exact
// (ε, δ) of the rounded sum for 2 to 300 nodes against what is charged. The
// clamp changes a slot only when the noise passes its tail (10σ, probability
// below 2e-23 per slot; Laplace 30b, below 1e-13): for Gaussian releases
// that adds at most that probability times (1 + e^ε) per slot and node to δ;
// for Laplace, each honest node's slot is ε-DP by itself and the clamp is
// post-processing of it. It makes the plaintext range check worst case.
//
// # Intervals
//
// A released slot is the sum of `nodes` partials, so its noise variance is
// v = nodes·(NodeSigma² + q²/12) with q = 1/Scale the quantum; every released
// count and sum carries it (result.Number.Variance), so that methods solving
// on released totals need not re-plan the query. Gaussian sums get ±1.96·√v. Counts are integers and so is their error D, which is close
// to round(X) with X ~ N(0, v − 1/12); their half-width is the smallest
// integer k with P(|X| < k + ½) ≥ 95%, k = ⌈1.96·√(v − 1/12) − ½⌉, so the
// coverage is at least 95% (a little more when the noise is small). For
// Laplace the interval uses the exact quantile of a sum of `nodes` Laplace(b)
// variables (continuity-corrected to an integer half-width for counts, as
// above; widened by nodes·q/2 for sums). Coverage is at least 95%. Means, variances and standard deviations are
// ratios of noisy slots; their intervals use the delta method (first-order
// propagation of the slot variances), which is accurate when the noisy count
// is large compared with its noise, and are clipped to the possible range
// [lo, hi] (means) or [0, ((hi−lo)/2)²] (variances). Intervals cover the DP
// noise only, not sampling variation.
//
// # glog
//
// The DP library imports github.com/golang/glog, which registers -v,
// -vmodule, -logtostderr, -log_dir, -stderrthreshold etc. on the standard
// flag.CommandLine at init and may write log files to the temp directory.
// This package logs nothing through glog and registers no flags; a binary
// must not define its own -v on flag.CommandLine (use its own FlagSet or
// cobra/pflag) and should set glog's -logtostderr (flag.Set("logtostderr",
// "true")) or -log_dir at start.
package dp

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/google/differential-privacy/go/v3/noise"

	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// Errors.
var (
	// ErrMismatch marks an input that does not belong to the plan (an Exact
	// of another plan, a totals vector of the wrong length).
	ErrMismatch = errors.New("dp: input does not match the plan")
	// ErrTooFewNodes marks a release attempted with fewer partials than the
	// plan's min_nodes: its noise would not reach the promised σ.
	ErrTooFewNodes = errors.New("dp: too few partials for a release")
	// ErrRange marks a value that does not fit the plan's bounds.
	ErrRange = errors.New("dp: value out of range")
	// ErrNoise wraps an error of the DP library.
	ErrNoise = errors.New("dp: noise")
)

// Calibration constants for the library's (ε, δ)-parametrised noise; see the
// package doc. They do not describe the query's privacy.
const (
	calEpsilon = 1.0
	calDelta   = 1e-5
	calL0      = 1
)

// z975 is the 97.5% quantile of the standard normal distribution.
const z975 = 1.959963984540054

// Share is one node's noisy, encoded partial result. It is the only value
// derived from a node's data that may leave the node.
type Share struct {
	slots []int64
}

// Slots returns a copy of the encoded slots (plan.VectorLen of them).
func (s *Share) Slots() []int64 { return append([]int64(nil), s.slots...) }

// gaussianLInf returns the lInf at which SigmaForGaussian(1, lInf, calε,
// calδ) is at least target (and within 0.1% of it).
func gaussianLInf(target float64) float64 {
	base := noise.SigmaForGaussian(calL0, 1, calEpsilon, calDelta)
	l := target / base
	for i := 0; i < 8; i++ {
		s := noise.SigmaForGaussian(calL0, l, calEpsilon, calDelta)
		if s >= target {
			break
		}
		l *= target / s * (1 + 1e-6)
	}
	return l
}

// calibrationCache remembers a calibration per target sigma. A
// calibration is a pure function of the target and costs about as much as a
// noise draw (several runs of the library's SigmaForGaussian bisection), and
// a node needs one for every measure of every share: a plan's targets repeat
// across queries and nodes of a simulation. It is cleared when it holds
// calibrationCacheMax targets, so it stays small in a long-running node.
type calibrationCache struct {
	mu sync.Mutex
	m  map[float64]float64
	f  func(float64) float64
}

const calibrationCacheMax = 4096

// get returns f(target), computed once per target.
func (c *calibrationCache) get(target float64) float64 {
	c.mu.Lock()
	v, ok := c.m[target]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = c.f(target)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= calibrationCacheMax {
		c.m = make(map[float64]float64)
	}
	c.m[target] = v
	c.mu.Unlock()
	return v
}

// lInfCache caches gaussianLInf.
var lInfCache = calibrationCache{f: gaussianLInf}

// calibratedLInf is gaussianLInf(target), computed once per target.
func calibratedLInf(target float64) float64 { return lInfCache.get(target) }

// NoiseShare adds this node's share of the noise to e and encodes it. Each
// call draws fresh noise (crypto/rand inside the library): a node must store
// the share it sent and resend it on a re-delivered request, never call
// NoiseShare twice for one query id.
func NoiseShare(p *plan.Plan, e *eval.Exact) (*Share, error) {
	if p == nil || e == nil || e.Plan() != p {
		return nil, fmt.Errorf("%w: exact result was evaluated for another plan", ErrMismatch)
	}
	vals := e.Values()
	if len(vals) != p.VectorLen() {
		return nil, fmt.Errorf("%w: %d values, plan has %d slots", ErrMismatch, len(vals), p.VectorLen())
	}
	ms := p.Measures()
	cells := p.Cells()
	limit := float64(p.MaxAbsPartial())
	out := make([]int64, len(vals))
	for mi := range ms {
		m := &ms[mi]
		var add func(x float64) (float64, error)
		switch p.Mechanism() {
		case plan.Gaussian:
			lInf := calibratedLInf(m.NodeSigma * m.Scale)
			g := noise.Gaussian()
			add = func(x float64) (float64, error) { return g.AddNoiseFloat64(x, calL0, lInf, calEpsilon, calDelta) }
		case plan.Laplace:
			lInf := m.LaplaceB * m.Scale * calEpsilon
			l := noise.Laplace()
			add = func(x float64) (float64, error) { return l.AddNoiseFloat64(x, calL0, lInf, calEpsilon, 0) }
		default:
			return nil, fmt.Errorf("%w: mechanism %q", ErrMismatch, p.Mechanism())
		}
		for c := 0; c < cells; c++ {
			i := mi*cells + c
			// The data go on the grid first (exact for counts), so the slot
			// is that integer plus the noise rounded to the grid.
			d := math.Round(vals[i] * m.Scale)
			if !(math.Abs(d) <= limit) {
				return nil, fmt.Errorf("%w: slot %d: the data exceed the plan's bound %g", ErrRange, i, limit)
			}
			v, err := add(d)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrNoise, err)
			}
			// Clamping to the plan's bounds makes the plaintext range check
			// worst case and the range proof always possible; it changes a
			// slot only when the noise passes its tail (10σ, or 30b for
			// Laplace): see the package doc.
			lo, hi := p.PartialBound(i)
			out[i] = int64(max(float64(lo), min(float64(hi), math.Round(v))))
		}
	}
	return &Share{slots: out}, nil
}

// Cohort is the result of a node's minimum-cohort check (NoisyCohort).
type Cohort struct {
	// Counted is false when the plan has no count measure: there is no
	// cohort to check and nothing was drawn or charged.
	Counted bool
	// Noisy is the cohort plus Gaussian noise of standard deviation Sigma.
	// It must not leave the node: only Noisy >= minimum does.
	Noisy float64
	// Sigma is the noise's standard deviation: Sensitivity/√(2ρ).
	Sigma float64
	// Sensitivity is the most one patient changes the cohort.
	Sensitivity float64
}

// NoisyCohort is the noisy count on which a node decides its minimum cohort
// (node.Policy.MinCohort): the node's cohort is the largest count measure of
// e summed over the groups, which one patient changes by at most
// PerCell·G (PerCell per group, in at most G groups); it adds Gaussian noise
// of σ = PerCell·G/√(2ρ), so the decision Noisy ≥ k, the only thing that
// leaves the node, is ρ-zCDP in the node's data (post-processing) and must be
// charged to the ledger with the query. Deciding on the exact count instead
// was a free and exact oracle: refusals at a tiny ε located the k-th oldest
// birth date in 16 probes (issue 13, finding 3). Each call draws fresh noise:
// the node keeps its decision per query id (the ledger stores it).
func NoisyCohort(p *plan.Plan, e *eval.Exact, rho float64) (Cohort, error) {
	if p == nil || e == nil || e.Plan() != p {
		return Cohort{}, fmt.Errorf("%w: exact result was evaluated for another plan", ErrMismatch)
	}
	if !(rho > 0) || math.IsInf(rho, 0) {
		return Cohort{}, fmt.Errorf("%w: the cohort check needs a positive rho, got %v", ErrMismatch, rho)
	}
	vals := e.Values()
	cells := p.Cells()
	g := float64(p.MaxGroupsPerPatient())
	var c Cohort
	best := 0.0
	for i, m := range p.Measures() {
		if m.Kind != plan.CountRows && m.Kind != plan.CountDistinct && m.Kind != plan.CountValues {
			continue
		}
		total := 0.0
		for j := 0; j < cells; j++ {
			total += vals[i*cells+j]
		}
		if !c.Counted || total > best {
			best = total
		}
		c.Counted = true
		c.Sensitivity = max(c.Sensitivity, m.PerCell*g)
	}
	if !c.Counted {
		return c, nil
	}
	c.Sigma = c.Sensitivity / math.Sqrt(2*rho)
	v, err := noise.Gaussian().AddNoiseFloat64(best, calL0, calibratedLInf(c.Sigma), calEpsilon, calDelta)
	if err != nil {
		return Cohort{}, fmt.Errorf("%w: %w", ErrNoise, err)
	}
	c.Noisy = v
	return c, nil
}

// Release decodes totals, the decrypted sum of `nodes` partials (centred, as
// int64), and post-processes it into a Result: counts and sums with 95%
// intervals from the noise of `nodes` shares and that noise's variance
// (result.Number.Variance: v of the package doc, or RoundedVariance(v) for
// a count on a grid finer than 1; it depends on the plan and `nodes` only,
// never on totals), means and variances from the noisy sums and counts
// (without a Variance), small counts displayed as "< k". It refuses fewer
// partials than the plan's min_nodes.
func Release(p *plan.Plan, totals []int64, nodes int) (*result.Result, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil plan", ErrMismatch)
	}
	if len(totals) != p.VectorLen() {
		return nil, fmt.Errorf("%w: %d totals, plan has %d slots", ErrMismatch, len(totals), p.VectorLen())
	}
	if m := p.Request().MinNodes; nodes < m {
		return nil, fmt.Errorf("%w: %d partials, the plan needs at least %d", ErrTooFewNodes, nodes, m)
	}
	if err := CheckTotals(p, totals, nodes); err != nil {
		return nil, err
	}
	ms := p.Measures()
	cells := p.Cells()
	vals := make([]float64, len(totals))
	variances := make([]float64, len(totals))
	halves := make([]float64, len(totals))
	for mi := range ms {
		m := &ms[mi]
		v, h, count := measureNoise(p, m, nodes)
		for c := 0; c < cells; c++ {
			i := mi*cells + c
			vals[i] = float64(totals[i]) / m.Scale
			variances[i] = v // RoundedVariance for a count on a grid finer than 1 (measureNoise)
			if count && m.Scale > 1 {
				// A count on a grid finer than 1 is shown as the nearest
				// integer (post-processing).
				vals[i] = math.Round(vals[i])
			}
			halves[i] = h
		}
	}
	r := build(p, vals, variances, halves, false)
	r.Nodes = nodes
	r.Epsilon, r.Delta, r.Rho, r.Mechanism = p.Epsilon(), p.Delta(), p.Rho(), p.Mechanism()
	r.SmallCountThreshold = p.SmallCountThreshold()
	return r, nil
}

// CheckTotals refuses decrypted totals that `nodes` well-formed partials
// cannot sum to: a slot beyond nodes × MaxAbsPartial (every partial is
// clamped to it), or a count below nodes times the noise tail (a count's
// data are never negative, and each node's noise passes its tail below
// with probability < 2e-23 per slot, Gaussian, or < 1e-13, Laplace; every
// node clamps its slots to plan.PartialBound). Every partial's values are
// also proven within those bounds and the total checked against their
// commitments before it gets here (crypto/rangeproof); this check is what
// `fedstat verify` has, and what a key-switch share that is not the
// decryptor's share of this sum (which makes the total random) meets. The
// error matches ErrRange and names the slot's measure and cell.
func CheckTotals(p *plan.Plan, totals []int64, nodes int) error {
	if len(totals) != p.VectorLen() {
		return fmt.Errorf("%w: %d totals, plan has %d slots", ErrMismatch, len(totals), p.VectorLen())
	}
	n := float64(max(nodes, 1))
	// nodes × MaxAbsPartial (every partial is clamped to it), as a float:
	// the plaintext range check is protocol.CheckPlaintextRange's.
	ceiling := n * float64(p.MaxAbsPartial())
	ms := p.Measures()
	cells := p.Cells()
	for mi := range ms {
		m := &ms[mi]
		// Each node's slot is in plan.PartialBound (clamped there, and
		// proven so): for a count, its count (≥ 0) plus its noise rounded
		// to the grid, above −tail − 1 quantum.
		lo, _ := p.PartialBound(mi * cells)
		floor := n * float64(lo)
		for c := 0; c < cells; c++ {
			t := float64(totals[mi*cells+c])
			if t < floor || t > ceiling {
				// The total itself stays out of the error: it was never
				// released, and with a wrong key-switch share it is a
				// function of that decryptor's key share.
				return fmt.Errorf("%w: %s, cell %d: the decrypted total is outside [%g, %g], what %d well-formed partials can sum to: "+
					"a member's partial (a value outside the plan's bounds) or key-switch share was not well formed; nothing is released", ErrRange, m.Label, c, floor/m.Scale, ceiling/m.Scale, nodes)
			}
		}
	}
	return nil
}

// isCount reports whether m counts (rows, distinct patients or values):
// its data are never negative, and its total is released as a count.
func isCount(m *plan.Measure) bool {
	return m.Kind == plan.CountRows || m.Kind == plan.CountDistinct || m.Kind == plan.CountValues
}

// measureNoise is the noise of measure m's total over `nodes` partials:
// its variance v (the sum of the nodes' shares and their grids), the 95%
// half-width h the release shows, and whether m is a count.
func measureNoise(p *plan.Plan, m *plan.Measure, nodes int) (v, h float64, count bool) {
	n := float64(nodes)
	q := 1 / m.Scale
	v = n * (m.NodeSigma*m.NodeSigma + q*q/12)
	count = isCount(m)
	switch {
	case p.Mechanism() == plan.Laplace && count:
		h = math.Max(0, math.Ceil(m.LaplaceB*laplaceSumQuantile(nodes, 0.975)-0.5))
	case p.Mechanism() == plan.Laplace:
		h = m.LaplaceB*laplaceSumQuantile(nodes, 0.975) + n*q/2
	case count && m.Scale == 1:
		// The truth and the total are integers, so the error D is
		// integer-valued, close to round(X) with X normal of variance
		// v − 1/12: P(|D| ≤ k) = P(|X| < k + ½) ≥ 95% for the k below.
		h = math.Max(0, math.Ceil(z975*math.Sqrt(v-1.0/12)-0.5))
	case count:
		// The total is on a finer grid and is rounded to an integer:
		// D = round(X) with X of variance v, P(|D| ≤ k) = P(|X| < k + ½).
		h = math.Max(0, math.Ceil(z975*math.Sqrt(v)-0.5))
	default:
		h = z975 * math.Sqrt(v)
	}
	if count && m.Scale > 1 {
		v = RoundedVariance(v)
	}
	return v, h, count
}

// Noise is what a release of a plan will add to one measure's totals,
// known before anything is evaluated (it depends on the plan and the number
// of partials only).
type Noise struct {
	// Measure names the measure (its SQL, e.g. COUNT(DISTINCT patient_id)).
	Measure string
	// Count is set for counts (their intervals stop at 0).
	Count bool
	// Variance is the noise variance of each released total of the
	// measure (result.Number.Variance), SD its square root.
	Variance, SD float64
	// HalfWidth is the half-width of the 95% interval every released total
	// of the measure gets (ratios built from them get their own).
	HalfWidth float64
}

// Expected is the noise a release of p over `nodes` partials adds to each
// measure: what Release will report as each total's variance and 95%
// half-width, for an analyst to see before spending (`fedstat query
// --explain`).
func Expected(p *plan.Plan, nodes int) ([]Noise, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil plan", ErrMismatch)
	}
	if m := p.Request().MinNodes; nodes < m {
		return nil, fmt.Errorf("%w: %d partials, the plan needs at least %d", ErrTooFewNodes, nodes, m)
	}
	var out []Noise
	for _, m := range p.Measures() {
		v, h, count := measureNoise(p, &m, nodes)
		out = append(out, Noise{Measure: m.Label, Count: count, Variance: v, SD: math.Sqrt(v), HalfWidth: h})
	}
	return out, nil
}

// RoundedVariance is the variance of the error of a count released as the
// nearest integer, round(t + X) − t for an integer truth t and X ~ N(0, v):
// close to v + 1/12 when the noise is large, and to 0 when it is much
// smaller than 1 (the rounding then removes it). Release uses it for counts
// on a grid finer than 1.
func RoundedVariance(v float64) float64 {
	sigma := math.Sqrt(v)
	if sigma > 3 {
		return v + 1.0/12
	}
	if !(sigma > 0) {
		return 0
	}
	phi := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	var r float64
	for k := 1.0; k <= 40; k++ {
		pk := phi((k+0.5)/sigma) - phi((k-0.5)/sigma)
		r += 2 * k * k * pk
	}
	return r
}

// Exact formats a node's exact local answer for its admin (`fedstat node
// query`): no noise, no intervals, no noise variances (NaN), no
// small-count suppression. The Result has Exact set and must never leave
// the node.
func Exact(p *plan.Plan, e *eval.Exact) (*result.Result, error) {
	if p == nil || e == nil || e.Plan() != p {
		return nil, fmt.Errorf("%w: exact result was evaluated for another plan", ErrMismatch)
	}
	r := build(p, e.Values(), nil, nil, true)
	r.Exact = true
	r.Mechanism = "none"
	r.Nodes = 1
	return r, nil
}

// build post-processes slot values into a Result. variances and halves are
// nil for exact answers.
func build(p *plan.Plan, vals, variances, halves []float64, exact bool) *result.Result {
	keys, outs := p.Keys(), p.Outputs()
	cells := p.Cells()
	k := float64(p.SmallCountThreshold())
	r := &result.Result{KeyColumns: len(keys)}
	for _, o := range outs {
		r.Columns = append(r.Columns, o.Name)
	}
	nan := math.NaN()
	for c := 0; c < cells; c++ {
		row := result.Row{Keys: make([]string, len(keys))}
		rem := c
		for i := len(keys) - 1; i >= 0; i-- {
			n := len(keys[i].Labels)
			row.Keys[i] = keys[i].Labels[rem%n]
			rem /= n
		}
		slot := func(m int) (v, vr, h float64) {
			i := m*cells + c
			if exact {
				return vals[i], nan, nan
			}
			return vals[i], variances[i], halves[i]
		}
		small := func(count float64) bool { return !exact && k > 0 && count < k }
		for _, o := range outs {
			var num result.Number
			switch o.Kind {
			case plan.OutKey:
				continue
			case plan.OutCount, plan.OutSum:
				mi := o.Count
				if o.Kind == plan.OutSum {
					mi = o.Sum
				}
				v, vr, h := slot(mi)
				lo := v - h
				if o.Kind == plan.OutCount {
					// A count is never negative: its interval stops at 0
					// (the value itself stays as released, unbiased).
					lo = math.Max(0, lo)
				}
				num = result.Number{Value: v, CILow: lo, CIHigh: v + h, Display: result.FormatValue(v, o.Kind == plan.OutCount), Variance: vr}
				if o.Kind == plan.OutCount && small(v) {
					num = result.Number{Value: v, CILow: lo, CIHigh: v + h, Suppressed: true, Display: fmt.Sprintf("< %d", p.SmallCountThreshold()), Variance: vr}
				}
			default:
				num = ratio(o, slot, exact)
				if cnt, _, _ := slot(o.Count); small(cnt) {
					num.Suppressed = true
					num.Display = fmt.Sprintf("n < %d", p.SmallCountThreshold())
				}
			}
			row.Values = append(row.Values, num)
		}
		r.Rows = append(r.Rows, row)
	}
	return r
}

// ratio computes a mean, variance or standard deviation with a delta-method
// interval.
func ratio(o plan.Output, slot func(int) (float64, float64, float64), exact bool) result.Number {
	nan := math.NaN()
	N, vN, _ := slot(o.Count)
	S, vS, _ := slot(o.Sum)
	if !(N > 0) {
		return result.Number{Value: nan, CILow: nan, CIHigh: nan, Display: "n/a", Variance: nan}
	}
	clamp := func(x, lo, hi float64) float64 { return math.Min(math.Max(x, lo), hi) }
	if o.Kind == plan.OutMean {
		m1 := S / N
		mean := clamp(o.Center+m1, o.Lo, o.Hi)
		num := result.Number{Value: mean, CILow: nan, CIHigh: nan, Display: result.FormatValue(mean, false), Variance: nan}
		if !exact {
			sd := math.Sqrt(vS+m1*m1*vN) / N
			num.CILow = clamp(mean-z975*sd, o.Lo, o.Hi)
			num.CIHigh = clamp(mean+z975*sd, o.Lo, o.Hi)
		}
		return num
	}
	S2, vS2, _ := slot(o.SumSq)
	m1, m2 := S/N, S2/N
	maxVar := (o.Hi - o.Lo) * (o.Hi - o.Lo) / 4
	V := clamp(m2-m1*m1, 0, maxVar)
	lo, hi := nan, nan
	if !exact {
		dN := -S2/(N*N) + 2*S*S/(N*N*N)
		sd := math.Sqrt(vS2/(N*N) + 4*S*S*vS/(N*N*N*N) + dN*dN*vN)
		lo, hi = clamp(m2-m1*m1-z975*sd, 0, maxVar), clamp(m2-m1*m1+z975*sd, 0, maxVar)
	}
	if o.Kind == plan.OutStddev {
		V, lo, hi = math.Sqrt(V), math.Sqrt(lo), math.Sqrt(hi)
	}
	return result.Number{Value: V, CILow: lo, CIHigh: hi, Display: result.FormatValue(V, false), Variance: nan}
}

// laplaceSumQuantile returns the p-quantile (p > 0.5) of the sum of n
// independent Laplace(1) variables. The tail has a closed form: the density
// is e^{-|x|}/(2^n (n-1)!) Σ_{j<n} (n-1+j)!/(j!(n-1-j)!) |x|^{n-1-j}/2^j and
// ∫_x^∞ t^k e^{-t} dt = k! e^{-x} Σ_{i≤k} x^i/i!. Above 60 terms the normal
// approximation (variance 2n) is used.
func laplaceSumQuantile(n int, p float64) float64 {
	if n > 60 {
		return z975 * math.Sqrt(2*float64(n))
	}
	lf := func(k int) float64 { v, _ := math.Lgamma(float64(k) + 1); return v }
	tail := func(x float64) float64 { // P(S > x), x >= 0
		var t float64
		for j := 0; j < n; j++ {
			k := n - 1 - j
			// coefficient c_j/2^j · k! / (2^n (n-1)!)
			lc := lf(n-1+j) - lf(j) - lf(k) - float64(j)*math.Ln2 + lf(k) - float64(n)*math.Ln2 - lf(n-1)
			// e^{-x} Σ_{i≤k} x^i/i!
			var s float64
			for i := 0; i <= k; i++ {
				s += math.Exp(float64(i)*math.Log(math.Max(x, 1e-300)) - lf(i) - x)
			}
			if x == 0 {
				s = 1
			}
			t += math.Exp(lc) * s
		}
		return t
	}
	lo, hi := 0.0, 10.0+10*math.Sqrt(float64(n))
	for i := 0; i < 100; i++ {
		mid := (lo + hi) / 2
		if tail(mid) > 1-p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
