package dp

import (
	"fmt"
	"math"

	"github.com/google/differential-privacy/go/v3/noise"

	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// The noise of a query across linked agencies (plan.LinkPlan,
// docs/linkage.md). The coordinator sees how many distinct pseudonyms have
// each multiplicity pattern; every node hides those counts by adding, per
// pattern and cell, a public shift plus an integer Gaussian number of
// dummies (LinkDummies), and hides the length of each of its lists with
// identity padding (LinkPadding). Payload sums get a noise share on the
// payload measure's grid (LinkPayloadNoise), as partials do.

// IntGaussian draws n integers of Gaussian noise of standard deviation
// sigma from the library's integer mechanism (a symmetric binomial on a
// power-of-two grid, rounded to integers when the grid is finer than 1).
// Its variance is at most sigma² + 1/12.
func IntGaussian(sigma float64, n int) ([]int64, error) {
	if !(sigma > 0) || math.IsInf(sigma, 0) {
		return nil, fmt.Errorf("%w: integer noise of sigma %v", ErrNoise, sigma)
	}
	g := noise.Gaussian()
	eps := intCalibration(sigma)
	out := make([]int64, n)
	for i := range out {
		v, err := g.AddNoiseInt64(0, calL0, 1, eps, calDelta)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoise, err)
		}
		out[i] = v
	}
	return out, nil
}

// LinkDummies draws the noisy part of n dummy counts of p's match histogram:
// integers of σ = Measures()[0].NodeSigma, this node's share of the
// histogram's noise.
func LinkDummies(p *plan.Plan, n int) ([]int64, error) {
	if p.Link == nil {
		return nil, fmt.Errorf("%w: not a linked plan", ErrMismatch)
	}
	return IntGaussian(p.Measures()[0].NodeSigma, n)
}

// LinkPadding draws the noisy part of n identity paddings (σ =
// LinkPlan.PadSigma, this node's own noise on the length of each list).
func LinkPadding(p *plan.Plan, n int) ([]int64, error) {
	if p.Link == nil {
		return nil, fmt.Errorf("%w: not a linked plan", ErrMismatch)
	}
	return IntGaussian(p.Link.PadSigma, n)
}

// LinkPayloadNoise is this node's noise share of every cell's payload sum
// of p, on the payload measure's grid (an integer multiple of 1/Scale,
// returned as the integer): NoiseShare's draw for measure 1.
func LinkPayloadNoise(p *plan.Plan) ([]int64, error) {
	if p.Link == nil || !p.Link.Payload {
		return nil, fmt.Errorf("%w: not a linked plan with a payload", ErrMismatch)
	}
	zero, err := eval.FromValues(p, make([]float64, p.VectorLen()))
	if err != nil {
		return nil, err
	}
	s, err := NoiseShare(p, zero)
	if err != nil {
		return nil, err
	}
	return s.slots[p.Cells() : 2*p.Cells()], nil
}

// LinkTotals are the tallies of a linked query, per cell: the count of
// matching residents after the dummies' shift is taken off, and, for a
// payload query, the decrypted sum (an integer on the payload measure's
// grid, the nodes' noise included).
type LinkTotals struct {
	Counts []int64
	Sums   []int64
	// Participants is the number of nodes that added dummies and noise.
	Participants int
	// Patterns is how many dummy patterns each count sums (the
	// multiplicity patterns whose residents are in the answer).
	Patterns int
}

// ReleaseLinked releases a linked query from its totals: counts carry the
// dummies' noise of Patterns patterns from each participant (variance
// Patterns·Participants·(σ² + 1/12)), sums the participants' noise shares
// (Participants·(σ² + q²/12)), as Release computes them for partials.
func ReleaseLinked(p *plan.Plan, t LinkTotals) (*result.Result, error) {
	if p == nil || p.Link == nil {
		return nil, fmt.Errorf("%w: not a linked plan", ErrMismatch)
	}
	cells := p.Cells()
	ms := p.Measures()
	if len(t.Counts) != cells || (p.Link.Payload && len(t.Sums) != cells) {
		return nil, fmt.Errorf("%w: %d counts and %d sums for %d cells", ErrMismatch, len(t.Counts), len(t.Sums), cells)
	}
	if m := p.Request().MinNodes; t.Participants < m {
		return nil, fmt.Errorf("%w: %d participants, the plan needs at least %d", ErrTooFewNodes, t.Participants, m)
	}
	vals := make([]float64, p.VectorLen())
	variances := make([]float64, p.VectorLen())
	halves := make([]float64, p.VectorLen())
	n := float64(t.Participants)
	m0 := ms[0]
	v0 := float64(t.Patterns) * n * (m0.NodeSigma*m0.NodeSigma + 1.0/12)
	h0 := math.Max(0, math.Ceil(z975*math.Sqrt(math.Max(v0-1.0/12, 0))-0.5))
	for c := 0; c < cells; c++ {
		vals[c], variances[c], halves[c] = float64(t.Counts[c]), v0, h0
	}
	if p.Link.Payload {
		m := ms[1]
		q := 1 / m.Scale
		v := n * (m.NodeSigma*m.NodeSigma + q*q/12)
		count := m.Kind == plan.CountRows
		h := z975 * math.Sqrt(v)
		for c := 0; c < cells; c++ {
			i := cells + c
			vals[i], variances[i], halves[i] = float64(t.Sums[c])/m.Scale, v, h
			if count {
				vals[i] = math.Round(vals[i])
				variances[i] = RoundedVariance(v)
				halves[i] = math.Max(0, math.Ceil(z975*math.Sqrt(v)-0.5))
			}
		}
	}
	r := build(p, vals, variances, halves, false)
	r.Nodes = t.Participants
	r.Epsilon, r.Delta, r.Rho, r.Mechanism = p.Epsilon(), p.Delta(), p.Rho(), p.Mechanism()
	r.SmallCountThreshold = p.SmallCountThreshold()
	return r, nil
}

// intCalibration returns the ε at which the library's Gaussian of l0 1,
// lInf 1 and δ calDelta has standard deviation sigma (within 1e-9 relative,
// never below): the integer mechanism takes an integral lInf, so ε carries
// the calibration.
func intCalibration(sigma float64) float64 { return intCal.get(sigma) }

// intCal caches intCalibrate per sigma.
var intCal = calibrationCache{f: intCalibrate}

func intCalibrate(sigma float64) float64 {
	sigmaAt := func(eps float64) float64 { return noise.SigmaForGaussian(calL0, 1, eps, calDelta) }
	lo, hi := 1e-6, 1e4 // sigma decreases in ε
	for i := 0; i < 80 && hi/lo > 1+1e-9; i++ {
		mid := math.Sqrt(lo * hi)
		if sigmaAt(mid) >= sigma {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
