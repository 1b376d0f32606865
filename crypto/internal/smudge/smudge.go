// Package smudge samples the wide Gaussian "smudging" (noise-flooding) noise
// that key-switch shares carry.
//
// Lattigo's Gaussian sampler reduces a sample modulo each RNS prime only when
// the sample is smaller than the prime; with a standard deviation close to a
// 60-bit prime its bound exceeds the prime and it silently produces wrong
// residues (FACTS.md: sigma 2^60 on 60-bit primes decrypted garbage with no
// error). This sampler keeps samples in uint64 (|x| <= TailCut*sigma < 2^64)
// and reduces them properly modulo every prime.
package smudge

import (
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TailCut is the truncation of the Gaussian in standard deviations. The mass
// beyond 10 sigma is about 2^-76 per sample, so truncation changes the
// distribution of a whole polynomial (2^13 coefficients) by less than 2^-63
// in statistical distance.
const TailCut = 10.0

// MaxSigma is the largest standard deviation the sampler supports.
var MaxSigma = math.Ldexp(1, 64) / TailCut

// AddNTT samples a polynomial with independent discrete Gaussian
// coefficients of standard deviation sigma (truncated at TailCut*sigma),
// maps it to the NTT domain at the given level and adds it to dst, which
// must be in the NTT domain. It is safe for concurrent use (all state is per
// call).
func AddNTT(ringQ *ring.Ring, level int, sigma float64, dst ring.Poly) error {
	if !(sigma > 0) || sigma > MaxSigma {
		return fmt.Errorf("smudge: sigma %g out of range (0, %g]", sigma, MaxSigma)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return fmt.Errorf("smudge: seeding: %w", err)
	}
	rng := rand.New(rand.NewChaCha8(seed))
	rQ := ringQ.AtLevel(level)
	noise := rQ.NewPoly()
	moduli := rQ.ModuliChain()[:level+1]
	n := rQ.N()
	for j := 0; j < n; j++ {
		v, neg := sample(rng, sigma)
		for i, q := range moduli {
			r := v % q
			if neg && r != 0 {
				r = q - r
			}
			noise.Coeffs[i][j] = r
		}
	}
	rQ.NTT(noise, noise)
	rQ.Add(dst, noise, dst)
	return nil
}

// sample returns |x| and the sign of x for x drawn from a Gaussian of
// standard deviation sigma truncated at TailCut*sigma and discretised to the
// integers. float64 carries 53 bits of precision; the bits of |x| below the
// float's unit in the last place are filled uniformly at random, so every
// integer in range is reachable (the same approach as Lattigo's large-sigma
// sampler).
func sample(rng *rand.Rand, sigma float64) (uint64, bool) {
	for {
		z := rng.NormFloat64()
		if math.Abs(z) > TailCut {
			continue
		}
		x := math.Abs(z) * sigma
		var v uint64
		if x < 1<<53 {
			v = uint64(x + 0.5)
		} else {
			_, exp := math.Frexp(x) // x = frac * 2^exp, frac in [0.5, 1)
			ulpBits := uint(exp - 53)
			v = uint64(x)
			mask := uint64(1)<<ulpBits - 1
			v = v&^mask | rng.Uint64()&mask
		}
		return v, z < 0
	}
}
