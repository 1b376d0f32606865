package smudge

import (
	crand "crypto/rand"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// oldAddNTT is AddNTT as it was with oldSample, for the comparison in
// BenchmarkAddNTT.
func oldAddNTT(ringQ *ring.Ring, level int, sigma float64, dst ring.Poly) error {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return err
	}
	rng := rand.New(rand.NewChaCha8(seed))
	rQ := ringQ.AtLevel(level)
	noise := rQ.NewPoly()
	moduli := rQ.ModuliChain()[:level+1]
	for j := 0; j < rQ.N(); j++ {
		v, neg := oldSample(rng, sigma)
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

// BenchmarkAddNTT samples one smudging polynomial at the production set
// (N = 8192, the two 60-bit primes, sigma = 2^60.5) with the exact sampler
// and with the former float sampler.
func BenchmarkAddNTT(b *testing.B) {
	r, err := ring.NewRing(1<<13, []uint64{0xfffffffffffc001, 0xffffffffffe8001})
	if err != nil {
		b.Fatal(err)
	}
	g := production(b)
	p := r.NewPoly()
	b.Run("exact", func(b *testing.B) {
		for b.Loop() {
			if err := AddNTT(r, r.Level(), g, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("old-float", func(b *testing.B) {
		for b.Loop() {
			if err := oldAddNTT(r, r.Level(), g.Sigma(), p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSample is one smudging sample at the production sigma.
func BenchmarkSample(b *testing.B) {
	g := production(b)
	b.Run("exact", func(b *testing.B) {
		src := seeded(1)
		for b.Loop() {
			g.sample(src)
		}
	})
	b.Run("old-float", func(b *testing.B) {
		rng := rand.New(rand.NewChaCha8([32]byte{1}))
		sigma := g.Sigma()
		for b.Loop() {
			oldSample(rng, sigma)
		}
	})
}
