// Package smudge samples the wide "smudging" (noise-flooding) noise that
// key-switch shares carry: an exact discrete Gaussian over the integers,
// truncated at TailCut standard deviations.
//
// # Distribution
//
// A Gaussian g with parameters (T, H) has sigma^2 = T*H and puts on every
// integer x with |x| <= Bound() = floor(TailCut*sigma) the probability
//
//	P(x) = exp(-x^2 / (2 sigma^2)) / S,   S = sum over |y| <= Bound() of exp(-y^2 / (2 sigma^2)),
//
// and nothing elsewhere: the discrete Gaussian D_{Z,sigma} conditioned on
// |x| <= TailCut*sigma. The sampler is exact: it uses only integer arithmetic
// and uniform random integers, so the only deviation from P is the
// randomness source (a ChaCha8 stream keyed from crypto/rand per call).
//
// # Algorithm
//
// Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
// Privacy" (NeurIPS 2020), Algorithms 1-3:
//
//  1. Bernoulli(exp(-gamma)) for a rational gamma = n/d >= 0: one
//     Bernoulli(exp(-1)) per unit of floor(gamma), then von Neumann's
//     alternating series for the fractional part, which needs only
//     Bernoulli(frac/k) = [uniform in [0,k) is 0] and [uniform in [0,d) < n].
//  2. Discrete Laplace with integer scale T, P(y) proportional to
//     exp(-|y|/T): U uniform in [0,T) kept with probability exp(-U/T), plus
//     T times a geometric count of Bernoulli(exp(-1)) successes, with a
//     random sign (-0 rejected).
//  3. The Laplace sample Y is accepted with probability
//     exp(-(|Y| - sigma^2/T)^2 / (2 sigma^2)) = exp(-(|Y| - H)^2 / (2 T H)),
//     which turns the Laplace into D_{Z,sigma} for any T >= 1.
//
// Because sigma^2/T = H is an integer, the acceptance exponent is a ratio of
// integers, (|Y|-H)^2 / (2TH): the numerator fits in 128 bits
// (math/bits.Mul64) and so does the denominator. At the production
// parameters (T = 2^61, H = 2^60, sigma^2 = 2^121) the denominators are 2^61
// and 2^122, so every Bernoulli trial compares a uniform 61- or 122-bit
// integer with a numerator, high word first.
//
// # Truncation
//
// A Laplace proposal with |Y| > Bound() is rejected before the acceptance
// test, and so is any partial proposal that would exceed the bound: a
// geometric count V with T*V > Bound(), or U + T*V overflowing uint64 (then
// U + T*V >= 2^64 > Bound()). Rejecting a proposal and starting afresh only
// removes values beyond the bound from the proposal distribution, so the
// output is P above, exactly: D_{Z,sigma} conditioned on |x| <= Bound().
// Every sample therefore fits in a uint64 magnitude with a separate sign.
//
// The running time varies with the samples drawn (rejection sampling); it is
// not constant-time.
package smudge

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TailCut is the truncation of the Gaussian in standard deviations. At the
// production sigma (2^60.5) the mass of D_{Z,sigma} beyond the cut is below
// 2^-75.8 per sample (TestTailMass), so truncation changes the distribution
// of a whole polynomial (2^13 coefficients) by less than 2^-62.8 in
// statistical distance.
const TailCut = 10

// ErrParams reports (T, H) that the sampler does not accept.
var ErrParams = errors.New("smudge: invalid Gaussian parameters")

// Gaussian is a validated truncated discrete Gaussian with sigma^2 = T*H (see
// the package documentation). The zero value is not usable; get one from
// NewGaussian. A Gaussian is an immutable value, safe for concurrent use.
type Gaussian struct {
	t, h uint64
	cut  uint64 // Bound(): floor(tailCut * sigma)
	vmax uint64 // cut / t: a geometric count above it puts U + t*V beyond the cut
	tden denom  // t, the denominator of the Laplace step's exponent U/t
	den  denom  // 2*t*h, the denominator of the acceptance exponent
}

// NewGaussian returns the discrete Gaussian with sigma^2 = t*h (so that
// sigma^2/t = h is an integer) truncated at TailCut*sigma. It requires
// t, h >= 1, h <= 4t and t <= 4h (t within a factor 2 of sigma, which keeps
// the acceptance rate of the final step above 0.3), and TailCut*sigma < 2^64.
func NewGaussian(t, h uint64) (Gaussian, error) { return newGaussian(t, h, TailCut) }

// newGaussian is NewGaussian with another truncation, for tests at small
// sigma where the cut must be visible.
func newGaussian(t, h, tailCut uint64) (Gaussian, error) {
	if t == 0 || h == 0 || tailCut == 0 {
		return Gaussian{}, fmt.Errorf("%w: t=%d h=%d tail cut %d", ErrParams, t, h, tailCut)
	}
	if moreThan4x(h, t) || moreThan4x(t, h) {
		return Gaussian{}, fmt.Errorf("%w: t=%d h=%d: t must be within a factor 2 of sigma (h <= 4t, t <= 4h)", ErrParams, t, h)
	}
	th := new(big.Int).Mul(new(big.Int).SetUint64(t), new(big.Int).SetUint64(h))
	c2 := new(big.Int).Mul(th, new(big.Int).SetUint64(tailCut*tailCut))
	cut := new(big.Int).Sqrt(c2) // floor(tailCut*sigma): |x| <= cut iff x^2 <= tailCut^2 * sigma^2
	if !cut.IsUint64() {
		return Gaussian{}, fmt.Errorf("%w: t=%d h=%d: %d sigma exceeds 2^64", ErrParams, t, h, tailCut)
	}
	den := new(big.Int).Lsh(th, 1)
	if den.BitLen() > 128 {
		return Gaussian{}, fmt.Errorf("%w: t=%d h=%d: 2*sigma^2 exceeds 2^128", ErrParams, t, h)
	}
	lo := new(big.Int).And(den, new(big.Int).SetUint64(math.MaxUint64))
	hi := new(big.Int).Rsh(den, 64)
	g := Gaussian{t: t, h: h, cut: cut.Uint64(), tden: newDenom(u128{0, t}), den: newDenom(u128{hi.Uint64(), lo.Uint64()})}
	g.vmax = g.cut / t
	return g, nil
}

// moreThan4x reports whether a > 4b.
func moreThan4x(a, b uint64) bool {
	hi, lo := bits.Mul64(b, 4)
	return hi == 0 && a > lo
}

// Sigma returns sqrt(T*H) rounded to a float64. By Poisson summation the
// variance of the untruncated D_{Z,sigma} is sigma^2 times
// 1 - 8 pi^2 sigma^2 exp(-2 pi^2 sigma^2) (1 + o(1)): for sigma >= 2 the
// standard deviation is sigma to within a relative 2^-100.
func (g Gaussian) Sigma() float64 { return math.Sqrt(float64(g.t) * float64(g.h)) }

// Params returns T and H (sigma^2 = T*H).
func (g Gaussian) Params() (t, h uint64) { return g.t, g.h }

// Bound returns floor(TailCut*sigma), the largest |x| the sampler returns.
func (g Gaussian) Bound() uint64 { return g.cut }

// AddNTT samples a polynomial with independent coefficients from g, maps it
// to the NTT domain at the given level and adds it to dst, which must be in
// the NTT domain at that level. Each coefficient's integer sample x is reduced
// modulo every prime of the level (as x mod q, or q - (|x| mod q) for a
// negative x), so the residues always represent the same signed integer. It
// is safe for concurrent use (all state is per call).
func AddNTT(ringQ *ring.Ring, level int, g Gaussian, dst ring.Poly) error {
	if g.t == 0 {
		return fmt.Errorf("%w: zero Gaussian", ErrParams)
	}
	if level < 0 || level > ringQ.Level() {
		return fmt.Errorf("smudge: level %d out of range [0, %d]", level, ringQ.Level())
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return fmt.Errorf("smudge: seeding: %w", err)
	}
	src := newSource(seed)
	rQ := ringQ.AtLevel(level)
	noise := rQ.NewPoly()
	moduli := rQ.ModuliChain()[:level+1]
	n := rQ.N()
	for j := 0; j < n; j++ {
		v, neg := g.sample(src)
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

// sample returns |x| and the sign of x for x drawn from g (CKS Algorithm 3
// with the truncation described in the package documentation).
func (g *Gaussian) sample(src *source) (uint64, bool) {
	for {
		y, neg := g.laplace(src)
		// Accept with probability exp(-(|y| - h)^2 / (2 t h)).
		a := y - g.h
		if y < g.h {
			a = g.h - y
		}
		hi, lo := bits.Mul64(a, a)
		if src.bernoulliExp(u128{hi, lo}, g.den) {
			return y, neg
		}
	}
}

// laplace returns |y| and the sign of y for y drawn from the discrete Laplace
// distribution with scale t, P(y) proportional to exp(-|y|/t), conditioned
// on |y| <= g.cut (CKS Algorithm 2 with s = 1; values beyond the cut are
// rejected as early as they are known to be beyond it).
func (g *Gaussian) laplace(src *source) (uint64, bool) {
	for {
		u := src.uint64n(g.t)
		if !src.bernoulliExpFrac(u128{0, u}, g.tden) {
			continue
		}
		v := uint64(0)
		for v <= g.vmax && src.bernoulliExp1() {
			v++
		}
		if v > g.vmax { // t*v > cut, so u + t*v is beyond the cut
			continue
		}
		x, carry := bits.Add64(g.t*v, u, 0) // t*v <= cut < 2^64
		if carry != 0 || x > g.cut {
			continue
		}
		neg := src.bit()
		if neg && x == 0 {
			continue
		}
		return x, neg
	}
}

// u128 is an unsigned 128-bit integer.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) sub(b u128) u128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, borrow)
	return u128{hi, lo}
}

// shl returns a << k for k < 128 (Go defines shifts by 64 or more as 0).
func (a u128) shl(k uint) u128 {
	if k >= 64 {
		return u128{a.lo << (k - 64), 0}
	}
	return u128{a.hi<<k | a.lo>>(64-k), a.lo << k}
}

func (a u128) isZero() bool { return a.hi == 0 && a.lo == 0 }

// denom is the positive denominator d of a probability n/d, with
// log = log2(d) when d is a power of two and -1 otherwise.
type denom struct {
	d   u128
	log int
}

func newDenom(d u128) denom {
	dn := denom{d: d, log: -1}
	switch {
	case d.hi == 0 && d.lo != 0 && d.lo&(d.lo-1) == 0:
		dn.log = bits.TrailingZeros64(d.lo)
	case d.lo == 0 && d.hi != 0 && d.hi&(d.hi-1) == 0:
		dn.log = 64 + bits.TrailingZeros64(d.hi)
	}
	return dn
}

// bernoulli returns true with probability n/d, for 0 <= n <= d, by comparing
// a uniform integer r in [0, d) with n.
func (s *source) bernoulli(n u128, d denom) bool {
	switch {
	case !n.less(d.d): // n = d
		return true
	case n.isZero():
		return false
	case d.log >= 0:
		return s.belowPow2(n, uint(d.log))
	}
	return s.below(n, d.d)
}

// belowPow2 reports whether a uniform integer r of m bits is below n, for
// 0 < n < 2^m. It compares 16 bits of r at a time with n's bits, from the
// top, and stops at the first difference (after one chunk but for a chance of
// 2^-16). The last chunk may extend past bit 0 of n: comparing extra random
// bits with zero bits of n keeps the probability n/2^m exactly.
func (s *source) belowPow2(n u128, m uint) bool {
	n = n.shl(128 - m) // n's bit m-1 at bit 127
	for {
		c := n.hi >> 48
		r := s.take(16)
		if r != c {
			return r < c
		}
		n = n.shl(16)
		if n.isZero() { // r agrees with n so far and n has no bits left: r >= n
			return false
		}
	}
}

// below reports whether a uniform integer r in [0, d) is below n, for any
// d > 0. For d >= 2^64 it draws r's high word first and the low word only
// when the high word does not decide.
func (s *source) below(n, d u128) bool {
	if d.hi == 0 {
		return s.uint64n(d.lo) < n.lo
	}
	m := d.sub(u128{0, 1}) // largest admissible r
	for {
		var hi uint64
		if m.hi == math.MaxUint64 {
			hi = s.uint64()
		} else {
			hi = s.uint64n(m.hi + 1)
		}
		if hi < n.hi { // r < (n.hi, 0) <= n, and r <= m
			return true
		}
		if hi > n.hi && hi < m.hi { // n < r < m
			return false
		}
		r := u128{hi, s.uint64()}
		if m.less(r) { // r >= d: draw again
			continue
		}
		return r.less(n)
	}
}

// bernoulliExpFrac returns true with probability exp(-n/d), for
// 0 <= n <= d (CKS Algorithm 1 for gamma in [0, 1]): the first k with a
// failed Bernoulli(gamma/k) trial is odd with probability exp(-gamma). A
// Bernoulli(gamma/k) trial is the conjunction of the independent events
// "uniform in [0, k) is 0" and "Bernoulli(n/d)".
func (s *source) bernoulliExpFrac(n u128, d denom) bool {
	k := uint64(1)
	for {
		if k > 1 && !s.oneIn(k) {
			break
		}
		if !s.bernoulli(n, d) {
			break
		}
		k++
	}
	return k&1 == 1
}

// bernoulliExp1 returns true with probability exp(-1): bernoulliExpFrac with
// gamma = 1, whose first trial always succeeds.
func (s *source) bernoulliExp1() bool {
	k := uint64(2)
	for s.oneIn(k) {
		k++
	}
	return k&1 == 1
}

// bernoulliExp returns true with probability exp(-n/d) for any n >= 0: one
// Bernoulli(exp(-1)) per unit of floor(n/d), then Bernoulli(exp(-frac));
// the trials are independent, so the probabilities multiply. It stops at the
// first failure.
func (s *source) bernoulliExp(n u128, d denom) bool {
	for !n.less(d.d) {
		if !s.bernoulliExp1() {
			return false
		}
		n = n.sub(d.d)
	}
	return s.bernoulliExpFrac(n, d)
}

// source is the sampler's randomness: a ChaCha8 stream. Decisions that need
// only a few bits (a sign, Bernoulli(1/k) for small k) take them from a
// buffered word instead of spending a whole word each. The buffered bits are
// independent and uniform, and a word's leftover bits are discarded according
// to their number only, never their values, so every draw stays uniform.
type source struct {
	c     *rand.ChaCha8
	pool  uint64 // unused random bits, lowest first
	nbits uint   // how many bits of pool are unused
}

func newSource(seed [32]byte) *source { return &source{c: rand.NewChaCha8(seed)} }

func (s *source) uint64() uint64 { return s.c.Uint64() }

// uint64n returns a uniform integer in [0, n) for n > 0: a mask for a power
// of two, otherwise Lemire's multiply-and-reject (the high word of x*n for a
// uniform 64-bit x, rejecting the 2^64 mod n values of the low word that
// would make some outcomes more likely than others).
func (s *source) uint64n(n uint64) uint64 {
	if n&(n-1) == 0 {
		return s.c.Uint64() & (n - 1)
	}
	hi, lo := bits.Mul64(s.c.Uint64(), n)
	if lo < n {
		reject := -n % n // 2^64 mod n
		for lo < reject {
			hi, lo = bits.Mul64(s.c.Uint64(), n)
		}
	}
	return hi
}

// take returns b uniform bits, 1 <= b <= 32, from the pool, refilling it
// with a fresh word when it holds fewer than b.
func (s *source) take(b uint) uint64 {
	if s.nbits < b {
		s.pool, s.nbits = s.c.Uint64(), 64
	}
	r := s.pool & (1<<b - 1)
	s.pool >>= b
	s.nbits -= b
	return r
}

func (s *source) bit() bool { return s.take(1) == 1 }

// oneIn returns true with probability 1/k for k >= 1: whether a uniform
// integer in [0, k) is zero, drawn as bitlen(k-1) bits at a time with values
// of k or more rejected.
func (s *source) oneIn(k uint64) bool {
	if k == 1 {
		return true
	}
	b := uint(bits.Len64(k - 1))
	if b > 32 {
		return s.uint64n(k) == 0
	}
	for {
		if r := s.take(b); r < k {
			return r == 0
		}
	}
}

// Sample draws n independent integers from g: their magnitudes and signs
// (the samples AddNTT adds, for a caller that must know them, such as the
// prover of a key-switch share).
func Sample(g Gaussian, n int) (mag []uint64, neg []bool, err error) {
	if g.t == 0 {
		return nil, nil, fmt.Errorf("%w: zero Gaussian", ErrParams)
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, nil, fmt.Errorf("smudge: seeding: %w", err)
	}
	return SampleSeeded(g, n, seed)
}

// SampleSeeded is Sample with its randomness drawn from seed (ChaCha8): the
// same seed gives the same samples. The seed must be secret and used for
// nothing else (a key-switch share drawn again from the same inputs,
// collective.KeySwitchShareWitness).
func SampleSeeded(g Gaussian, n int, seed [32]byte) (mag []uint64, neg []bool, err error) {
	if g.t == 0 {
		return nil, nil, fmt.Errorf("%w: zero Gaussian", ErrParams)
	}
	src := newSource(seed)
	mag, neg = make([]uint64, n), make([]bool, n)
	for j := range mag {
		mag[j], neg[j] = g.sample(src)
	}
	return mag, neg, nil
}
