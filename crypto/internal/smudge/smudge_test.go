package smudge

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TestSampleDistribution checks the spread of the sampler at the production
// sigma: mean about 0, standard deviation about sigma, nothing beyond the
// tail cut, and low bits filled (not multiples of the float ulp).
func TestSampleDistribution(t *testing.T) {
	const sigma = math.Sqrt2 * (1 << 60) // production
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	const n = 200000
	var sum, sumSq float64
	var lowBits uint64
	for range n {
		v, neg := sample(rng, sigma)
		if float64(v) > TailCut*sigma+1 {
			t.Fatalf("sample %d beyond the tail cut", v)
		}
		lowBits |= v & 0x7ff
		x := float64(v)
		if neg {
			x = -x
		}
		sum += x / sigma
		sumSq += (x / sigma) * (x / sigma)
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	// Standard error of the mean is 1/sqrt(n) ~ 0.0022; of the sd ~ 0.0016.
	if math.Abs(mean) > 0.01 || math.Abs(sd-1) > 0.01 {
		t.Fatalf("mean %.4f sd %.4f (in units of sigma)", mean, sd)
	}
	if lowBits != 0x7ff {
		t.Fatalf("low bits never set: %#x", lowBits)
	}
}

// TestAddNTTResidues checks that the residues modulo every prime represent
// the same signed integer (the bug in Lattigo's sampler for sigma near the
// primes) and that the spread is as expected.
func TestAddNTTResidues(t *testing.T) {
	g := ring.NewNTTFriendlyPrimesGenerator(60, 1<<13)
	primes, err := g.NextDownstreamPrimes(2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.NewRing(1<<12, primes)
	if err != nil {
		t.Fatal(err)
	}
	const sigma = math.Sqrt2 * (1 << 60) // production
	p := r.NewPoly()
	if err := AddNTT(r, r.Level(), sigma, p); err != nil {
		t.Fatal(err)
	}
	r.INTT(p, p)
	coeffs := make([]*big.Int, r.N())
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	r.PolyToBigintCentered(p, 1, coeffs)
	limit := TailCut * sigma
	bound := new(big.Int).SetUint64(uint64(limit))
	var sumSq float64
	for _, c := range coeffs {
		if c.CmpAbs(bound) > 0 {
			t.Fatalf("coefficient %s beyond the bound: residues inconsistent", c)
		}
		f, _ := new(big.Float).SetInt(c).Float64()
		sumSq += (f / sigma) * (f / sigma)
	}
	if sd := math.Sqrt(sumSq / float64(r.N())); math.Abs(sd-1) > 0.05 {
		t.Fatalf("sd %.3f sigma", sd)
	}
	if err := AddNTT(r, r.Level(), 0, p); err == nil {
		t.Fatal("sigma 0 accepted")
	}
	if err := AddNTT(r, r.Level(), MaxSigma*2, p); err == nil {
		t.Fatal("sigma too large accepted")
	}
}
