package zcdp

import (
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, eps := range []float64{1e-4, 0.1, 0.5, 1, 3, 10} {
		for _, delta := range []float64{1e-12, 1e-9, 1e-6, 1e-3, 0.5} {
			rho := RhoFromEpsilonDelta(eps, delta)
			if got := EpsilonFromRho(rho, delta); math.Abs(got-eps) > 1e-9*math.Max(1, eps) {
				t.Errorf("eps %v delta %v: rho %v converts back to %v", eps, delta, rho, got)
			}
		}
	}
	// A known value: ε = 1, δ = 1e-6.
	if rho := RhoFromEpsilonDelta(1, 1e-6); math.Abs(rho-0.0174689) > 1e-6 {
		t.Errorf("rho(1, 1e-6) = %v", rho)
	}
	if RhoFromEpsilonDelta(0, 1e-6) != 0 || RhoFromEpsilonDelta(1, 0) != 0 || RhoFromEpsilonDelta(1, 1) != 0 {
		t.Error("invalid inputs must give 0")
	}
}

func TestGaussian(t *testing.T) {
	sigma := GaussianSigma(2, 0.5)
	if got := GaussianRho(2, sigma); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("rho %v", got)
	}
	if PureRho(2) != 2 {
		t.Error("PureRho")
	}
}
