package continual

import (
	"fmt"
	"math"
)

// Saving compares the tree mechanism with independent per-period releases
// at equal error, for a lifetime of T periods and at most K periods per
// patient. Variances are in units of the variance of one query charged the
// whole lifetime budget (Δ²/(2ρ_lifetime)); budgets are in multiples of
// the tree's lifetime budget ρ_lifetime. Both are independent of ρ and of
// the per-query sensitivity Δ.
//
// Error means the worst variance over everything the series publishes: the
// value of period t and the running total up to t, each as estimated when
// period t is over (Estimate with the intervals released by then), for
// t = 0 .. T−1. Later estimates only get better (more releases), so this is
// also the worst over every estimate ever published.
type Saving struct {
	T, K int
	// Weight is W(T, K): each interval's variance is Weight units.
	Weight float64
	// TreePeriod and TreeTotal are the tree's worst variances of a period
	// value and of a running total, as published when their period closes.
	TreePeriod, TreeTotal float64
	// FinalPeriod and FinalTotal are the same worst variances in the
	// estimates made at the end of the lifetime (all releases known).
	FinalPeriod, FinalTotal float64
	// Fresh* are the budgets that independent releases need when each
	// period is a fresh query charged in full (T queries of ρ each, fedstat's
	// charging of ordinary queries) to match the tree on period values, on
	// running totals, and on both. A running total of t+1 independent
	// values has t+1 times their variance.
	FreshPeriod, FreshTotal, FreshBoth float64
	// Bounded* are the same with the K bound (each patient in at most K
	// periods, so the T releases together cost K·ρ).
	BoundedPeriod, BoundedTotal, BoundedBoth float64
}

// Compare computes the Saving of the tree over independent releases for a
// lifetime of T periods and at most K periods per patient.
func Compare(T, K int) (Saving, error) {
	if T < 1 || K < 1 {
		return Saving{}, fmt.Errorf("%w: lifetime %d periods, %d periods per patient: both must be at least 1", ErrInput, T, K)
	}
	w := Weight(T, K)
	s := Saving{T: T, K: K, Weight: w}
	// Units: ρ_lifetime = 1/2 and Δ = 1, so one query at the whole budget
	// has variance Δ²/(2ρ) = 1 and each interval Weight.
	var obs []Obs
	for t := range T {
		for _, v := range Ending(t, T) {
			obs = append(obs, Obs{Interval: v, Var: w})
		}
		periods, totals, err := Estimate(obs, t)
		if err != nil {
			return Saving{}, err
		}
		s.TreePeriod = math.Max(s.TreePeriod, periods[t].Var)
		s.TreeTotal = math.Max(s.TreeTotal, totals[t].Var)
		if t == T-1 {
			for i := range periods {
				s.FinalPeriod = math.Max(s.FinalPeriod, periods[i].Var)
				s.FinalTotal = math.Max(s.FinalTotal, totals[i].Var)
			}
		}
	}
	// Independent releases of variance v each cost 1/v units of budget per
	// patient-period (one query at budget b has variance 1/b); the worst
	// running total has T·v.
	perPeriod := 1 / s.TreePeriod        // budget per release to match period values
	perTotal := float64(T) / s.TreeTotal // ... to match running totals
	both := math.Max(perPeriod, perTotal)
	k := float64(min(K, T))
	s.FreshPeriod, s.FreshTotal, s.FreshBoth = float64(T)*perPeriod, float64(T)*perTotal, float64(T)*both
	s.BoundedPeriod, s.BoundedTotal, s.BoundedBoth = k*perPeriod, k*perTotal, k*both
	return s, nil
}
