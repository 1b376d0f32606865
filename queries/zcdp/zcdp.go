// Package zcdp holds the closed-form privacy accounting of fedstat in
// zero-concentrated differential privacy (zCDP, Bun and Steinke 2016). It has
// no dependencies, so the planner and the node's budget ledger share exactly
// the same arithmetic. (The coordinator keeps no budget of its own: it asks
// the nodes' ledgers.)
//
// Facts used (Bun and Steinke, "Concentrated Differential Privacy:
// Simplifications, Extensions, and Lower Bounds", 2016):
//
//   - The Gaussian mechanism with L2 sensitivity Δ and noise standard
//     deviation σ is ρ-zCDP with ρ = Δ²/(2σ²) (Proposition 1.6).
//   - zCDP composes additively: ρ-zCDP followed by ρ'-zCDP is (ρ+ρ')-zCDP.
//   - ρ-zCDP implies (ε, δ)-DP for every δ in (0,1) with
//     ε = ρ + 2√(ρ·ln(1/δ)) (Proposition 1.3).
//   - ε-DP (pure, e.g. Laplace) implies (ε²/2)-zCDP (Proposition 1.4).
package zcdp

import "math"

// RhoFromEpsilonDelta returns the largest ρ whose (ε, δ) conversion
// ε = ρ + 2√(ρ·ln(1/δ)) does not exceed epsilon at delta. Solving the
// quadratic in √ρ: √ρ = √(ln(1/δ)+ε) − √(ln(1/δ)), so
// ρ = (√(ln(1/δ)+ε) − √(ln(1/δ)))². It returns 0 unless epsilon > 0 and
// 0 < delta < 1.
func RhoFromEpsilonDelta(epsilon, delta float64) float64 {
	if !(epsilon > 0) || !(delta > 0 && delta < 1) || math.IsInf(epsilon, 0) {
		return 0
	}
	l := math.Log(1 / delta)
	// Written as ε² / (√(l+ε) + √l)² to avoid cancellation for small ε.
	d := math.Sqrt(l+epsilon) + math.Sqrt(l)
	return epsilon * epsilon / (d * d)
}

// EpsilonFromRho returns ε = ρ + 2√(ρ·ln(1/δ)), the (ε, δ)-DP guarantee
// implied by ρ-zCDP at the given delta.
func EpsilonFromRho(rho, delta float64) float64 {
	if rho <= 0 {
		return 0
	}
	return rho + 2*math.Sqrt(rho*math.Log(1/delta))
}

// GaussianRho returns ρ = Δ²/(2σ²), the zCDP cost of one Gaussian release of
// a vector with L2 sensitivity l2 and noise standard deviation sigma per
// coordinate.
func GaussianRho(l2, sigma float64) float64 {
	return l2 * l2 / (2 * sigma * sigma)
}

// GaussianSigma returns σ = Δ/√(2ρ), the noise standard deviation at which a
// Gaussian release of L2 sensitivity l2 costs exactly rho.
func GaussianSigma(l2, rho float64) float64 {
	return l2 / math.Sqrt(2*rho)
}

// PureRho returns ε²/2, the zCDP cost of an ε-DP (pure) release.
func PureRho(epsilon float64) float64 { return epsilon * epsilon / 2 }
