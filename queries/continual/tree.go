// Package continual is the continual-release (standing series) arithmetic
// of fedstat: the dyadic intervals of the binary-tree mechanism, its
// sensitivity and per-interval budget, the estimator that turns released
// intervals into period values and running totals, and the calendar of a
// series. It holds no data and draws no noise: each interval is released by
// an ordinary fedstat query (the node evaluates it with
// eval.PeriodCounts, queries/dp adds the Gaussian noise), and everything
// here is either public planning arithmetic or post-processing of released
// numbers.
//
// # Mechanism
//
// A series releases, for T periods (its lifetime), a count per period of
// SELECT [key,] COUNT(DISTINCT patient_id) FROM table WHERE <where>, the
// period of a row being the period of its date column. At each node a
// patient counts in at most K periods of the series: the first K periods,
// from the series start, in which the patient has a matching row.
//
// The periods are the leaves of a binary tree: level j, index i is the
// dyadic interval [i·2^j, (i+1)·2^j − 1] (Interval). Every interval that
// lies within the lifetime (its Last is at most T − 1) is released once,
// when its last period is over (Ending), as the sum of the period counts
// over the interval plus Gaussian noise. The levels that hold such an
// interval are j = 0 .. ⌊log₂ T⌋ (Levels).
//
// # Sensitivity (the proof of Weight)
//
// Fix a node and a patient. Let S be the set of periods in which the patient
// counts, |S| ≤ k = min(K, T). The patient adds c_v = |S ∩ v| to the count
// of interval v (and nothing else), in one cell (the key is a patient
// attribute). At level j the intervals are disjoint, so Σ_v c_v ≤ k, and
// each holds 2^j periods, so c_v ≤ min(k, 2^j) =: m_j. Hence
//
//	Σ_v c_v² ≤ m_j · Σ_v c_v ≤ k · min(k, 2^j)
//
// and over all levels the patient moves the vector of all released
// intervals by at most, in squared L2 norm,
//
//	W(T, K) = Σ_{j=0}^{L−1} k · min(k, 2^j),   L = ⌊log₂ T⌋ + 1.
//
// The bound is attained when K is a power of two at most T (S = the first
// K periods: at level j the intervals [0, 2^j−1], ... hold min(K, 2^j)
// each); for other K it is an upper bound. If a patient's key changes
// between releases (the patient moves region), its c_v are split over
// cells, which only lowers Σ c². A patient's records at up to
// N = max_nodes_per_patient nodes add up (triangle inequality): the L2
// sensitivity of the whole release is N·√W, that is √W times the per-query
// L2 sensitivity Δ = N·1·√1 of the plan of one interval.
//
// # Accounting
//
// Each interval is released by a plan of per-query sensitivity Δ = N
// (COUNT(DISTINCT), G = 1) at zCDP cost ρ_node = ρ_lifetime / W(T, K)
// (NodeRho), so its Gaussian noise is σ = Δ/√(2ρ_node). The whole release
// is one Gaussian mechanism of L2 sensitivity N·√W and noise σ per
// coordinate, so it is N²W/(2σ²) = W·ρ_node = ρ_lifetime-zCDP (Bun and
// Steinke 2016, Proposition 1.6), whatever the number of intervals; the
// nodes charge ρ_lifetime once, when the series is registered. (As for
// ordinary queries, whose costs the ledger adds in zCDP, the noise is
// treated as Gaussian; each node's share is rounded to the plan's grid,
// at least 4 quanta per node σ, see queries/dp.)
//
// The first-K rule needs append-only data: between the evaluations of a
// series, the (patient, period) pairs its filter admits at a node may only
// grow. Records may arrive late, in any order: a patient's matching periods
// then only grow, so the number of its first-K periods before any period
// only grows, and the counts of a level's intervals, evaluated left to
// right, telescope to at most K (TestLateRecordsKeepWeight). The pairs
// shrink when a row is deleted or its date or a filtered field changes,
// when the filter reads data that can change against a row (a patient
// attribute such as region or death date, a NOT IN cohort that a later
// record fills, age at a reference date that is not the same for every
// interval), or when a patient leaves the public group domain. Then a
// patient's first K periods can shift between releases and the patient
// may count in more than K periods over the series; each single evaluation
// still counts at most min(k, 2^j) in a level-j interval, so the release is
// then only W_any(T, K)·ρ_node-zCDP with W_any = Σ_j ⌊T/2^j⌋·min(k, 2^j)²
// (AnyWeight).
package continual

import (
	"fmt"
	"math/bits"
)

// Interval is a dyadic interval of periods: level j, index i covers periods
// [i<<j, (i+1)<<j - 1].
type Interval struct{ Level, Index int }

// First is the first period of v.
func (v Interval) First() int { return v.Index << v.Level }

// Last is the last period of v.
func (v Interval) Last() int { return (v.Index+1)<<v.Level - 1 }

// Len is the number of periods of v, 2^Level.
func (v Interval) Len() int { return 1 << v.Level }

// String is "L<level>.<index>", e.g. "L2.3" (periods 12-15). It is stable:
// query ids are made of it.
func (v Interval) String() string { return fmt.Sprintf("L%d.%d", v.Level, v.Index) }

// valid reports whether v is a dyadic interval of non-negative periods
// whose bounds fit an int.
func (v Interval) valid() bool {
	return v.Level >= 0 && v.Level < 62 && v.Index >= 0 && v.Index <= (1<<(62-v.Level))-1
}

// Within reports whether v is a valid interval inside a lifetime of T
// periods (0 .. T−1): one that the series releases.
func (v Interval) Within(T int) bool { return v.valid() && v.Last() < T }

// Levels is the number of tree levels that hold at least one interval
// within a lifetime of T periods: ⌊log₂ T⌋ + 1 (0 for T < 1). It equals
// ⌈log₂ T⌉ + 1 when T is a power of two; otherwise the level ⌈log₂ T⌉
// would hold no interval inside the lifetime and is not counted.
func Levels(T int) int {
	if T < 1 {
		return 0
	}
	return bits.Len(uint(T))
}

// Ending returns the intervals within a lifetime of T periods whose last
// period is t, lowest level first: the intervals released when period t is
// over. It is nil for t outside 0 .. T−1. Every interval within the
// lifetime ends at exactly one t.
func Ending(t, T int) []Interval {
	if t < 0 || t >= T {
		return nil
	}
	var out []Interval
	for j := 0; ; j++ {
		n := 1 << j
		if (t+1)%n != 0 {
			break
		}
		out = append(out, Interval{Level: j, Index: (t+1)/n - 1})
	}
	return out
}

// Weight is W(T, K) = Σ_{j=0}^{L−1} k·min(k, 2^j), L = Levels(T),
// k = min(K, T): the largest squared L2 norm by which one patient at one
// node moves the vector of all intervals released over a lifetime of T
// periods, when each patient counts in at most K periods (see the package
// doc for the proof). It is 0 unless T ≥ 1 and K ≥ 1.
func Weight(T, K int) float64 {
	if T < 1 || K < 1 {
		return 0
	}
	k := min(K, T)
	var w float64
	for j := range Levels(T) {
		w += float64(k) * float64(min(k, 1<<j))
	}
	return w
}

// AnyWeight is W_any(T, K) = Σ_j ⌊T/2^j⌋·min(k, 2^j)², k = min(K, T): the
// bound on the squared L2 norm of one patient's contribution when the
// first-K rule cannot be relied on across releases (rows deleted, dates
// corrected, records arriving after their period was released), because
// each evaluation alone still counts the patient in at most min(k, 2^j)
// periods of a level-j interval. A series charged ρ_lifetime is then only
// ρ_lifetime·AnyWeight/Weight-zCDP. It is 0 unless T ≥ 1 and K ≥ 1.
func AnyWeight(T, K int) float64 {
	if T < 1 || K < 1 {
		return 0
	}
	k := min(K, T)
	var w float64
	for j := range Levels(T) {
		m := float64(min(k, 1<<j))
		w += float64(T>>j) * m * m
	}
	return w
}

// NodeRho is the zCDP cost at which each interval of the series is
// released: ρ_lifetime / W(T, K), so that all intervals of the lifetime
// together cost ρ_lifetime. It is 0 unless lifetimeRho > 0, T ≥ 1 and
// K ≥ 1 (plan.Build then refuses the zero budget).
func NodeRho(lifetimeRho float64, T, K int) float64 {
	w := Weight(T, K)
	if !(lifetimeRho > 0) || w == 0 {
		return 0
	}
	return lifetimeRho / w
}
