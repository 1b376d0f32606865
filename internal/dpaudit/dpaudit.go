// Package dpaudit estimates, from samples, a lower bound on the privacy loss
// of a randomised mechanism: an empirical privacy audit. It knows nothing of
// fedstat; the caller runs the mechanism on two neighbouring inputs D and D'
// many times and hands over one statistic per run.
//
// # What is bounded
//
// A mechanism M is (ε, δ)-DP when, for every set A of outcomes and both
// orders of every pair of neighbours, P(M(D) ∈ A) ≤ e^ε·P(M(D') ∈ A) + δ.
// One set A and the two probabilities p = P(M(D) ∈ A), p' = P(M(D') ∈ A)
// therefore show that no ε below ln((p − δ)/p') holds at this δ. Audit
// estimates p from below and p' from above with one-sided Clopper–Pearson
// bounds and reports
//
//	ε_lb = ln((p_lo − δ)/p'_hi),    δ_lb(ε) = p_lo − e^ε·p'_hi,
//
// the largest over the two directions (A more likely under D, or under D').
// If the mechanism is (ε, δ)-DP, then ε_lb > ε (equivalently δ_lb(ε) > δ)
// needs one of the four bounds to be wrong, which happens with probability at
// most 1 − Confidence (Bonferroni: each bound is taken at (1 − Confidence)/4).
// This holds whatever the mechanism is; a lower bound is evidence against a
// claimed guarantee, never a proof of one.
//
// # How the set is chosen
//
// The runs are split in two: a share of them (half by default, spread evenly
// over the indices) choose the set, the others (independent of that choice)
// measure it, so the bounds are valid for the chosen set. Candidates, in
// each direction:
//
//   - threshold sets {v ≥ t} and {v ≤ t} on the real statistic (refusals are
//     in neither), t at order statistics of the numerator's sample (where the
//     ratio is largest) on a ladder of tail sizes 1, 2, ... growing by 10%;
//   - when a run can refuse, the refusal event and its complement.
//
// Each candidate is scored by the ε_lb it would give on the selection runs
// at the same confidence; the best one per direction is measured on the
// others. For a vector-valued mechanism with Gaussian noise the caller
// projects the output on the known difference of the means, weighted by the
// inverse noise variances (the Neyman–Pearson test of the two Gaussians):
// threshold sets on that projection are then the optimal rejection sets.
//
// Runs of D and D' may share randomness that does not depend on the input
// (each bound concerns one input's runs only), but the runs of one input must
// be independent of one another.
package dpaudit

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"gonum.org/v1/gonum/mathext"
)

// ErrInput marks unusable samples or options.
var ErrInput = errors.New("dpaudit: bad input")

// Outcome is what one run of a mechanism shows: a real statistic, or a
// refusal (a distinguished outcome that carries no value).
type Outcome struct {
	Refused bool
	Value   float64 // ignored when Refused
}

// Value is the outcome of a run that answered with statistic v.
func Value(v float64) Outcome { return Outcome{Value: v} }

// Refusal is the outcome of a run that refused.
var Refusal = Outcome{Refused: true}

// Options configure Audit.
type Options struct {
	// Delta is the δ of the guarantee under audit. Required in [0, 1).
	Delta float64
	// Epsilon is the ε the mechanism claims (charges); DeltaLB is computed
	// at it and Result.Exceeds compares with it. Required >= 0.
	Epsilon float64
	// Confidence is the probability that all four bounds hold together.
	// Defaults to 0.95.
	Confidence float64
	// SelectionShare is the share of the runs that choose the rejection
	// sets; the rest measure them. A smaller share suits a mechanism whose
	// best set is evident from few runs and whose bound needs many. Defaults
	// to 1/2.
	SelectionShare float64
}

// SetKind is the shape of a rejection set.
type SetKind int

// Rejection set shapes.
const (
	AtLeast  SetKind = iota + 1 // {v ≥ Threshold}
	AtMost                      // {v ≤ Threshold}
	Refused                     // {refused}
	Answered                    // {not refused}
)

// Set is a rejection set.
type Set struct {
	Kind      SetKind
	Threshold float64 // AtLeast and AtMost only
}

// Contains reports whether outcome o is in s.
func (s Set) Contains(o Outcome) bool {
	switch s.Kind {
	case AtLeast:
		return !o.Refused && o.Value >= s.Threshold
	case AtMost:
		return !o.Refused && o.Value <= s.Threshold
	case Refused:
		return o.Refused
	case Answered:
		return !o.Refused
	}
	return false
}

func (s Set) String() string {
	switch s.Kind {
	case AtLeast:
		return fmt.Sprintf("v ≥ %.6g", s.Threshold)
	case AtMost:
		return fmt.Sprintf("v ≤ %.6g", s.Threshold)
	case Refused:
		return "refused"
	case Answered:
		return "answered"
	}
	return "none"
}

// Test is one rejection set measured on the evaluation half.
type Test struct {
	Set Set
	// Reversed is false when A is the set more likely under the first input
	// (the bound is P_x(A) against P_y(A)) and true for the other direction.
	Reversed bool
	// K of N runs of the numerator input fell in the set, and K2 of N2 runs
	// of the other input (evaluation half).
	K, N, K2, N2 int
	// PLo is the lower bound on the numerator's probability, PHi the upper
	// bound on the other's, each at confidence 1 − (1 − Confidence)/4.
	PLo, PHi float64
	// EpsilonLB = ln((PLo − δ)/PHi) (−Inf when PLo ≤ δ) and DeltaLB =
	// PLo − e^ε·PHi at the claimed ε.
	EpsilonLB, DeltaLB float64
}

// Result is the outcome of an audit.
type Result struct {
	Options
	// Runs is the number of runs of each input (both halves).
	Runs int
	// EpsilonLB and DeltaLB are the larger of the two tests' bounds.
	EpsilonLB, DeltaLB float64
	// Tests are the two directions (A more likely under x, under y).
	Tests [2]Test
}

// Exceeds reports whether the audit refutes the claim: the lower bound on ε
// is above the claimed ε (equivalently, δ_lb at the claimed ε is above δ).
// For an (ε, δ)-DP mechanism this happens with probability at most
// 1 − Confidence.
func (r Result) Exceeds() bool { return r.EpsilonLB > r.Epsilon }

// Best returns the test that gives EpsilonLB.
func (r Result) Best() Test {
	if r.Tests[1].EpsilonLB > r.Tests[0].EpsilonLB {
		return r.Tests[1]
	}
	return r.Tests[0]
}

func (r Result) String() string {
	b := r.Best()
	dir := "P_D(A) vs P_D'(A)"
	if b.Reversed {
		dir = "P_D'(A) vs P_D(A)"
	}
	return fmt.Sprintf("ε_lb %.4g at δ %.3g (confidence 1−%.3g, %d runs each; A = %s, %s: %d/%d vs %d/%d); δ_lb %.3g at ε %.4g",
		r.EpsilonLB, r.Delta, 1-r.Confidence, r.Runs, b.Set, dir, b.K, b.N, b.K2, b.N2, r.DeltaLB, r.Epsilon)
}

// Audit bounds the privacy loss of a mechanism from runs x on one input and
// runs y on its neighbour (see the package doc). x and y need not have the
// same length; each needs at least 2 runs.
func Audit(x, y []Outcome, o Options) (Result, error) {
	if o.Confidence == 0 {
		o.Confidence = 0.95
	}
	if o.SelectionShare == 0 {
		o.SelectionShare = 0.5
	}
	switch {
	case !(o.Delta >= 0 && o.Delta < 1):
		return Result{}, fmt.Errorf("%w: delta must be in [0, 1), got %v", ErrInput, o.Delta)
	case !(o.Epsilon >= 0) || math.IsInf(o.Epsilon, 0):
		return Result{}, fmt.Errorf("%w: epsilon must be a non-negative number, got %v", ErrInput, o.Epsilon)
	case !(o.Confidence > 0 && o.Confidence < 1):
		return Result{}, fmt.Errorf("%w: confidence must be in (0, 1), got %v", ErrInput, o.Confidence)
	case !(o.SelectionShare > 0 && o.SelectionShare < 1):
		return Result{}, fmt.Errorf("%w: selection share must be in (0, 1), got %v", ErrInput, o.SelectionShare)
	case len(x) < 2 || len(y) < 2:
		return Result{}, fmt.Errorf("%w: need at least 2 runs of each input, got %d and %d", ErrInput, len(x), len(y))
	}
	for _, s := range [][]Outcome{x, y} {
		for _, v := range s {
			if !v.Refused && math.IsNaN(v.Value) {
				return Result{}, fmt.Errorf("%w: a statistic is NaN", ErrInput)
			}
		}
	}
	alpha := (1 - o.Confidence) / 4
	xs, xe := split(x, o.SelectionShare)
	ys, ye := split(y, o.SelectionShare)
	r := Result{Options: o, Runs: min(len(x), len(y))}
	for i, rev := range []bool{false, true} {
		num, den, numE, denE := xs, ys, xe, ye
		if rev {
			num, den, numE, denE = ys, xs, ye, xe
		}
		set := choose(newHalf(num), newHalf(den), alpha, o.Delta)
		t := Test{Set: set, Reversed: rev, N: len(numE), N2: len(denE)}
		for _, v := range numE {
			if set.Contains(v) {
				t.K++
			}
		}
		for _, v := range denE {
			if set.Contains(v) {
				t.K2++
			}
		}
		t.PLo = LowerBound(t.K, t.N, alpha)
		t.PHi = UpperBound(t.K2, t.N2, alpha)
		t.EpsilonLB = epsilonLB(t.PLo, t.PHi, o.Delta)
		t.DeltaLB = t.PLo - math.Exp(o.Epsilon)*t.PHi
		r.Tests[i] = t
	}
	r.EpsilonLB = max(r.Tests[0].EpsilonLB, r.Tests[1].EpsilonLB)
	r.DeltaLB = max(r.Tests[0].DeltaLB, r.Tests[1].DeltaLB)
	return r, nil
}

// split returns the selection runs (a share of them, spread evenly over the
// indices: run i when ⌊(i+1)·share⌋ > ⌊i·share⌋) and the evaluation runs.
func split(s []Outcome, share float64) (sel, ev []Outcome) {
	for i, v := range s {
		if math.Floor(float64(i+1)*share) > math.Floor(float64(i)*share) {
			sel = append(sel, v)
		} else {
			ev = append(ev, v)
		}
	}
	return sel, ev
}

func epsilonLB(pLo, pHi, delta float64) float64 {
	if pLo <= delta {
		return math.Inf(-1)
	}
	return math.Log((pLo - delta) / pHi)
}

// half is one input's selection runs, prepared for counting.
type half struct {
	n       int
	refused int
	sorted  []float64 // answered values, ascending
}

func newHalf(s []Outcome) half {
	h := half{n: len(s)}
	for _, v := range s {
		if v.Refused {
			h.refused++
		} else {
			h.sorted = append(h.sorted, v.Value)
		}
	}
	slices.Sort(h.sorted)
	return h
}

func (h half) count(s Set) int {
	switch s.Kind {
	case AtLeast:
		return len(h.sorted) - sort.SearchFloat64s(h.sorted, s.Threshold)
	case AtMost:
		return sort.Search(len(h.sorted), func(i int) bool { return h.sorted[i] > s.Threshold })
	case Refused:
		return h.refused
	case Answered:
		return h.n - h.refused
	}
	return 0
}

// choose returns the candidate set with the largest ε_lb on the selection
// runs (num: the input the set should be likely under).
func choose(num, den half, alpha, delta float64) Set {
	var cands []Set
	if num.refused > 0 || den.refused > 0 {
		cands = append(cands, Set{Kind: Refused}, Set{Kind: Answered})
	}
	n := len(num.sorted)
	lastAtLeast, lastAtMost := math.NaN(), math.NaN()
	for k := 1; k <= n; k = max(k+1, int(float64(k)*1.1)) {
		// With ties (a discrete statistic) successive rungs can give the
		// same threshold, so the same set: take it once.
		if t := num.sorted[n-k]; t != lastAtLeast {
			cands = append(cands, Set{Kind: AtLeast, Threshold: t})
			lastAtLeast = t
		}
		if t := num.sorted[k-1]; t != lastAtMost {
			cands = append(cands, Set{Kind: AtMost, Threshold: t})
			lastAtMost = t
		}
	}
	// Many candidates share counts; bound each count once.
	los, his := map[int]float64{}, map[int]float64{}
	best, bestScore := Set{Kind: Answered}, math.Inf(-1)
	bestDelta := math.Inf(-1)
	for _, c := range cands {
		kn, kd := num.count(c), den.count(c)
		lo, ok := los[kn]
		if !ok {
			lo = LowerBound(kn, num.n, alpha)
			los[kn] = lo
		}
		hi, ok := his[kd]
		if !ok {
			hi = UpperBound(kd, den.n, alpha)
			his[kd] = hi
		}
		score := epsilonLB(lo, hi, delta)
		// Among sets that show nothing (lo ≤ δ), prefer the largest p_lo/p'_hi.
		d := lo / hi
		if score > bestScore || (math.IsInf(bestScore, -1) && math.IsInf(score, -1) && d > bestDelta) {
			best, bestScore, bestDelta = c, score, d
		}
	}
	return best
}

// LowerBound is the one-sided Clopper–Pearson lower confidence bound, at
// confidence 1 − alpha, on the probability p of an event seen k times in n
// independent trials: the p at which P(Binomial(n, p) ≥ k) = alpha (0 for
// k = 0).
func LowerBound(k, n int, alpha float64) float64 {
	switch {
	case k <= 0:
		return 0
	case k >= n:
		return math.Exp(math.Log(alpha) / float64(n))
	}
	// P(Bin(n, p) ≥ k) = I_p(k, n−k+1), increasing in p.
	a, b := float64(k), float64(n-k+1)
	return solve(func(p float64) float64 { return mathext.RegIncBeta(a, b, p) }, alpha, true)
}

// UpperBound is the one-sided Clopper–Pearson upper confidence bound, at
// confidence 1 − alpha, on the probability of an event seen k times in n
// trials: the p at which P(Binomial(n, p) ≤ k) = alpha (1 for k = n).
func UpperBound(k, n int, alpha float64) float64 {
	switch {
	case k >= n:
		return 1
	case k <= 0:
		return -math.Expm1(math.Log(alpha) / float64(n))
	}
	// P(Bin(n, p) ≤ k) = I_{1−p}(n−k, k+1), decreasing in p.
	a, b := float64(n-k), float64(k+1)
	return solve(func(p float64) float64 { return mathext.RegIncBeta(a, b, 1-p) }, alpha, false)
}

// solve finds p in (0, 1) with f(p) = y for a monotone f (increasing when
// up), bisecting on ln p so that tiny bounds keep their relative precision.
func solve(f func(float64) float64, y float64, up bool) float64 {
	lo, hi := -745.0, 0.0 // ln p
	for range 80 {
		mid := (lo + hi) / 2
		v := f(math.Exp(mid))
		if (v < y) == up {
			lo = mid
		} else {
			hi = mid
		}
	}
	if up {
		// The lower bound errs low, the upper bound high: conservative.
		return math.Exp(lo)
	}
	return math.Exp(hi)
}
