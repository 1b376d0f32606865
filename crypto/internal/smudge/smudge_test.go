package smudge

import (
	"errors"
	"flag"
	"math"
	"math/big"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

var long = flag.Bool("smudge.long", false, "run the statistical tests of the smudging sampler with 10 times more samples")

// scale returns n, or 10n with -smudge.long.
func scale(n int) int {
	if *long {
		return 10 * n
	}
	return n
}

func seeded(seed byte) *source { return newSource([32]byte{seed}) }

// production is the smudging distribution of the production parameter set:
// sigma^2 = 2^61 * 2^60 = 2^121, sigma = 2^60.5.
func production(t testing.TB) Gaussian {
	t.Helper()
	g, err := NewGaussian(1<<61, 1<<60)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustGaussian(t testing.TB, tt, h, tailCut uint64) Gaussian {
	t.Helper()
	g, err := newGaussian(tt, h, tailCut)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// chiSquareCritical returns an upper critical value of the chi-square
// distribution with df degrees of freedom at z standard deviations
// (Wilson-Hilferty; z = 5 is a tail probability of about 3e-7, and the
// approximation errs on the high side for small df).
func chiSquareCritical(df int, z float64) float64 {
	k := float64(df)
	c := 1 - 2/(9*k) + z*math.Sqrt(2/(9*k))
	return k * c * c * c
}

// chiSquare bins consecutive outcomes until each bin expects at least 10
// counts, then returns Pearson's statistic and its degrees of freedom.
// counts[i] and probs[i] belong to the same outcome; probs sums to 1.
func chiSquare(counts []int, probs []float64, n int) (stat float64, df int) {
	var obs, exp []float64
	var o, e float64
	for i := range counts {
		o += float64(counts[i])
		e += probs[i] * float64(n)
		if e >= 10 {
			obs, exp = append(obs, o), append(exp, e)
			o, e = 0, 0
		}
	}
	if len(exp) == 0 {
		return 0, 0
	}
	obs[len(obs)-1] += o // the remainder joins the last bin
	exp[len(exp)-1] += e
	for i := range obs {
		d := obs[i] - exp[i]
		stat += d * d / exp[i]
	}
	return stat, len(obs) - 1
}

// exactProbs returns the probabilities of x = -cut..cut (index x+cut) of the
// distribution proportional to weight(x) on that range.
func exactProbs(cut uint64, weight func(x float64) float64) []float64 {
	p := make([]float64, 2*cut+1)
	var sum float64
	for i := range p {
		p[i] = weight(float64(i) - float64(cut))
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

func signed(v uint64, neg bool) int64 {
	if neg {
		return -int64(v)
	}
	return int64(v)
}

// TestShiftDistinguisher is the audit's attack on the smudging noise (issue
// 13) as a regression test. The distinguisher sees y = x + c for a smudging
// sample x and a shift c of 0 or 1024, and answers "shift 0" when y is on
// the support of the old float sampler (onOldSupport). Against the old
// sampler (positive control) it is right almost always; against the exact
// sampler the on-support rates for both shifts are equal within sampling
// error (and tiny).
func TestShiftDistinguisher(t *testing.T) {
	g := production(t)
	sigma := g.Sigma()
	w := zigguratWidths()
	n := scale(20000)
	const shift = 1024
	rate := func(draw func() (uint64, bool), c uint64) float64 {
		hits := 0
		for range n {
			v, neg := draw()
			// y = x + c as a magnitude (the support is symmetric).
			switch {
			case !neg:
				v += c
			case v >= c:
				v -= c
			default:
				v = c - v
			}
			if onOldSupport(&w, sigma, v) {
				hits++
			}
		}
		return float64(hits) / float64(n)
	}
	oldRNG, newRNG := rand.New(rand.NewChaCha8([32]byte{1})), seeded(2)
	oldDraw := func() (uint64, bool) { return oldSample(oldRNG, sigma) }
	newDraw := func() (uint64, bool) { return g.sample(newRNG) }

	old0, old1 := rate(oldDraw, 0), rate(oldDraw, shift)
	new0, new1 := rate(newDraw, 0), rate(newDraw, shift)
	t.Logf("on the old sampler's support, %d samples each: old sampler %.2f%% (shift 0) vs %.2f%% (shift %d); exact sampler %.4f%% vs %.4f%%",
		n, 100*old0, 100*old1, shift, 100*new0, 100*new1)

	// Positive control: the distinguisher works on the old sampler.
	if old0 < 0.99 || old1 > 0.01 {
		t.Fatalf("positive control failed: old sampler on-support %.4f (shift 0) vs %.4f (shift %d)", old0, old1, shift)
	}
	// The exact sampler: the two rates agree within 5 standard errors of
	// their difference (plus one count), and neither is more than a
	// fraction of a percent (the support covers about 2^-15 of the integers).
	p := (new0 + new1) / 2
	se := math.Sqrt(2 * p * (1 - p) / float64(n))
	if math.Abs(new0-new1) > 5*se+1/float64(n) {
		t.Errorf("exact sampler: on-support rates %.5f (shift 0) vs %.5f (shift %d) differ beyond sampling error %.5f", new0, new1, shift, se)
	}
	if new0 > 0.001 || new1 > 0.001 {
		t.Errorf("exact sampler lands on the old sampler's support: %.5f, %.5f", new0, new1)
	}
}

// TestUniform checks the bounded uniform integers and Bernoulli(1/k) that
// the building blocks use, including a bound where Lemire's method rejects
// half of the words (n = 2^63 + 1) and bounds drawn bit by bit.
func TestUniform(t *testing.T) {
	src := seeded(3)
	n := scale(60000)
	for _, bound := range []uint64{3, 6, 1 << 61, 1<<63 + 1, math.MaxUint64} {
		// Chi-square of floor(4v/bound) against its exact probabilities.
		counts := make([]int, 4)
		for range n {
			v := src.uint64n(bound)
			if v >= bound {
				t.Fatalf("uint64n(%d) = %d", bound, v)
			}
			hi, lo := bits.Mul64(v, 4)
			q, _ := bits.Div64(hi, lo, bound)
			counts[q]++
		}
		probs := make([]float64, 4)
		b := new(big.Int).SetUint64(bound)
		ceilQuarter := func(i int64) *big.Int { // ceil(i*bound/4)
			x := new(big.Int).Mul(b, big.NewInt(i))
			x.Add(x, big.NewInt(3))
			return x.Div(x, big.NewInt(4))
		}
		for i := range probs {
			c := new(big.Int).Sub(ceilQuarter(int64(i+1)), ceilQuarter(int64(i)))
			probs[i], _ = new(big.Rat).SetFrac(c, b).Float64()
		}
		stat, df := chiSquare(counts, probs, n)
		if crit := chiSquareCritical(df, 5); stat > crit {
			t.Errorf("uint64n(%d): chi-square %.1f > %.1f (df %d)", bound, stat, crit, df)
		}
	}
	for _, k := range []uint64{1, 2, 3, 5, 7, 1 << 20, 1<<33 + 1} {
		hits := 0
		for range n {
			if src.oneIn(k) {
				hits++
			}
		}
		if k == 1 {
			if hits != n {
				t.Errorf("oneIn(1) false %d times", n-hits)
			}
			continue
		}
		checkRate(t, "oneIn", hits, n, 1/float64(k))
	}
}

// TestBernoulli checks the Bernoulli(n/d) building block against its exact
// probability: the lazy 16-bit-chunk comparison for powers of two (d from
// 2^1 to 2^127, with n needing one or several chunks) and the generic path
// for other d up to 128 bits, which is also run on the powers of two.
func TestBernoulli(t *testing.T) {
	src := seeded(3)
	n := scale(100000)
	cases := []struct {
		name string
		n, d u128
	}{
		{"1/2", u128{0, 1}, u128{0, 2}},
		{"1/3", u128{0, 1}, u128{0, 3}},
		{"5/7", u128{0, 5}, u128{0, 7}},
		{"(2^60+1)/2^61", u128{0, 1<<60 + 1}, u128{0, 1 << 61}},
		{"(2^61-1)/2^61", u128{0, 1<<61 - 1}, u128{0, 1 << 61}},
		{"(2^63+2^62+1)/2^64", u128{0, 1<<63 | 1<<62 | 1}, u128{1, 0}},
		{"2^121/2^122", u128{1 << 57, 0}, u128{1 << 58, 0}},
		{"(3*2^120+2^70+9)/2^122", u128{3<<56 | 1<<6, 9}, u128{1 << 58, 0}},
		{"(2^127-1)/2^127", u128{1<<63 - 1, math.MaxUint64}, u128{1 << 63, 0}},
		{"(2^120+5)/(3*2^100+7)", u128{1 << 56, 5}, u128{3 << 36, 7}},
		{"(2^128-2)/(2^128-1)", u128{math.MaxUint64, math.MaxUint64 - 1}, u128{math.MaxUint64, math.MaxUint64}},
		{"2^64/(2^64+1)", u128{1, 0}, u128{1, 1}},
	}
	for _, c := range cases {
		num, _ := new(big.Float).SetInt(c.n.big()).Float64()
		den, _ := new(big.Float).SetInt(c.d.big()).Float64()
		p := num / den
		d := newDenom(c.d)
		hits, generic := 0, 0
		for range n {
			if src.bernoulli(c.n, d) {
				hits++
			}
			if src.below(c.n, c.d) {
				generic++
			}
		}
		checkRate(t, c.name, hits, n, p)
		checkRate(t, c.name+" (generic)", generic, n, p)
	}
	// The edges are deterministic.
	for _, d := range []u128{{0, 1}, {0, 3}, {0, 1 << 61}, {1 << 58, 0}, {3 << 36, 7}} {
		dn := newDenom(d)
		for range 1000 {
			if src.bernoulli(u128{}, dn) || !src.bernoulli(d, dn) {
				t.Fatalf("Bernoulli(0) or Bernoulli(1) wrong for d = %v", d)
			}
		}
	}
}

// TestBelowPow2Chunks feeds belowPow2 chosen random bits (through the bit
// pool) and checks its answer against r < n for r equal to n, next to n, and
// differing from n only in the last chunk, for bit lengths m up to 64 that
// need one to four chunks.
func TestBelowPow2Chunks(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{7}))
	for _, m := range []uint{1, 16, 17, 33, 48, 61, 64} {
		for range 200 {
			mask := uint64(math.MaxUint64) >> (64 - m)
			n := rng.Uint64()&mask | 1
			for _, r := range []uint64{n, n - 1, n + 1, n ^ 1, n ^ 0x10000, 0, mask} {
				r &= mask
				// The chunks of r from the top, as take(16) returns them: the
				// first from the lowest 16 bits of the pool.
				aligned := r << (64 - m)
				pool := aligned>>48 | (aligned>>32&0xffff)<<16 | (aligned>>16&0xffff)<<32 | (aligned&0xffff)<<48
				src := &source{c: rand.NewChaCha8([32]byte{}), pool: pool, nbits: 64}
				if got := src.belowPow2(u128{0, n}, m); got != (r < n) {
					t.Fatalf("m=%d n=%#x r=%#x: belowPow2 = %v", m, n, r, got)
				}
			}
		}
	}
}

func TestNewDenom(t *testing.T) {
	for _, c := range []struct {
		d   u128
		log int
	}{
		{u128{0, 1}, 0}, {u128{0, 2}, 1}, {u128{0, 3}, -1}, {u128{0, 1 << 63}, 63},
		{u128{1, 0}, 64}, {u128{1 << 58, 0}, 122}, {u128{1, 1}, -1}, {u128{3, 0}, -1},
	} {
		if got := newDenom(c.d).log; got != c.log {
			t.Errorf("newDenom(%v).log = %d, want %d", c.d, got, c.log)
		}
	}
}

func (a u128) big() *big.Int {
	x := new(big.Int).SetUint64(a.hi)
	x.Lsh(x, 64)
	return x.Add(x, new(big.Int).SetUint64(a.lo))
}

// checkRate fails the test if hits out of n is more than 5 standard errors
// from p.
func checkRate(t *testing.T, name string, hits, n int, p float64) {
	t.Helper()
	got := float64(hits) / float64(n)
	se := math.Sqrt(p * (1 - p) / float64(n))
	if math.Abs(got-p) > 5*se {
		t.Errorf("%s: rate %.5f, want %.5f (standard error %.5f)", name, got, p, se)
	}
}

// TestBernoulliExp checks Bernoulli(exp(-gamma)) for rational gamma below,
// at and above 1, with 64-bit and 128-bit numerators and denominators, power
// of two or not.
func TestBernoulliExp(t *testing.T) {
	src := seeded(4)
	n := scale(100000)
	cases := []struct {
		name string
		n, d u128
	}{
		{"0", u128{}, u128{0, 1}},
		{"1/3", u128{0, 1}, u128{0, 3}},
		{"1", u128{0, 7}, u128{0, 7}},
		{"7/3", u128{0, 7}, u128{0, 3}},
		{"5", u128{0, 5}, u128{0, 1}},
		{"(2^61-1)/2^61", u128{0, 1<<61 - 1}, u128{0, 1 << 61}},
		{"2^121/2^122", u128{1 << 57, 0}, u128{1 << 58, 0}},
		{"(3*2^122+2^120+1)/2^122", u128{3<<58 | 1<<56, 1}, u128{1 << 58, 0}},
		{"(2^127+3)/(3*2^100+7)", u128{1 << 63, 3}, u128{3 << 36, 7}},
	}
	for _, c := range cases {
		gamma, _ := new(big.Rat).SetFrac(c.n.big(), c.d.big()).Float64()
		p := math.Exp(-gamma)
		d := newDenom(c.d)
		hits := 0
		for range n {
			if src.bernoulliExp(c.n, d) {
				hits++
			}
		}
		if p == 1 {
			if hits != n {
				t.Errorf("%s: Bernoulli(exp(0)) failed %d times", c.name, n-hits)
			}
			continue
		}
		checkRate(t, c.name, hits, n, p)
	}
	hits := 0
	for range n {
		if src.bernoulliExp1() {
			hits++
		}
	}
	checkRate(t, "exp(-1)", hits, n, math.Exp(-1))
}

// TestLaplaceExact checks the discrete Laplace step against its exact
// probabilities, P(y) proportional to exp(-|y|/t) for |y| <= cut, with the
// cut far out (negligible) and close in (where both the early rejection of
// large geometric counts and the final comparison with the cut act).
func TestLaplaceExact(t *testing.T) {
	cases := []struct{ t, h, tailCut uint64 }{
		{1, 1, 10},
		{3, 4, 10},
		{4, 4, 1}, // cut 4 = t: counts V >= 2 rejected early, V = 1 only for u = 0
		{5, 3, 2}, // cut 7
	}
	for i, c := range cases {
		g := mustGaussian(t, c.t, c.h, c.tailCut)
		rng := seeded(byte(10 + i))
		n := scale(100000)
		counts := make([]int, 2*g.cut+1)
		for range n {
			v, neg := g.laplace(rng)
			if v > g.cut {
				t.Fatalf("t=%d: Laplace sample %d beyond the cut %d", c.t, v, g.cut)
			}
			counts[signed(v, neg)+int64(g.cut)]++
		}
		tf := float64(c.t)
		probs := exactProbs(g.cut, func(x float64) float64 { return math.Exp(-math.Abs(x) / tf) })
		stat, df := chiSquare(counts, probs, n)
		if crit := chiSquareCritical(df, 5); stat > crit {
			t.Errorf("Laplace t=%d cut=%d: chi-square %.1f > %.1f (df %d)", c.t, g.cut, stat, crit, df)
		}
	}
}

// TestGaussianExact is the exactness test at small sigma: a chi-square test
// of the sampler against the exact probabilities of D_{Z,sigma} restricted to
// |x| <= cut, for several (t, h) and cuts. As a check of the test's power,
// the same counts must fail against sigma^2 off by 25%.
func TestGaussianExact(t *testing.T) {
	cases := []struct{ t, h, tailCut uint64 }{
		{1, 1, 10},   // sigma 1
		{2, 1, 10},   // sigma^2 2
		{1, 2, 10},   // sigma^2 2, other split
		{3, 5, 10},   // sigma^2 15, nothing a power of two
		{4, 2, 10},   // sigma^2 8
		{16, 16, 10}, // sigma 16
		{4, 2, 1},    // cut at 1 sigma (x in [-2, 2])
		{4, 4, 2},    // cut at 2 sigma (x in [-8, 8])
	}
	for i, c := range cases {
		g := mustGaussian(t, c.t, c.h, c.tailCut)
		rng := seeded(byte(20 + i))
		n := scale(100000)
		counts := make([]int, 2*g.cut+1)
		for range n {
			v, neg := g.sample(rng)
			if v > g.cut {
				t.Fatalf("sample %d beyond the cut %d", v, g.cut)
			}
			counts[signed(v, neg)+int64(g.cut)]++
		}
		s2 := float64(c.t * c.h)
		probs := exactProbs(g.cut, func(x float64) float64 { return math.Exp(-x * x / (2 * s2)) })
		stat, df := chiSquare(counts, probs, n)
		crit := chiSquareCritical(df, 5)
		if stat > crit {
			t.Errorf("t=%d h=%d cut=%d: chi-square %.1f > %.1f (df %d)", c.t, c.h, g.cut, stat, crit, df)
		}
		wrong := exactProbs(g.cut, func(x float64) float64 { return math.Exp(-x * x / (2 * 1.25 * s2)) })
		if ws, wdf := chiSquare(counts, wrong, n); ws <= chiSquareCritical(wdf, 5) {
			t.Errorf("t=%d h=%d cut=%d: the test does not reject sigma^2 off by 25%% (chi-square %.1f, df %d)", c.t, c.h, g.cut, ws, wdf)
		}
	}
}

// TestProductionMoments samples the production distribution (sigma =
// 2^60.5): mean and standard deviation within sampling error, nothing beyond
// the cut, every bit of |x| below bit 63 seen both set and clear, and the
// empirical distribution function within the Kolmogorov-Smirnov bound of the
// normal one (at this sigma the discrete Gaussian's distribution function
// differs from the normal one by about 1/sigma = 2^-60.5).
func TestProductionMoments(t *testing.T) {
	g := production(t)
	sigma := g.Sigma()
	if math.Abs(math.Log2(sigma)-60.5) > 1e-12 {
		t.Fatalf("sigma = 2^%.15f", math.Log2(sigma))
	}
	rng := seeded(5)
	n := scale(100000)
	xs := make([]float64, n)
	var sum, sumSq float64
	var set, clear uint64
	for i := range n {
		v, neg := g.sample(rng)
		if v > g.Bound() {
			t.Fatalf("sample %d beyond the cut %d", v, g.Bound())
		}
		set |= v
		clear |= ^v
		x := float64(v) / sigma
		if neg {
			x = -x
		}
		xs[i] = x
		sum += x
		sumSq += x * x
	}
	mean := sum / float64(n)
	sd := math.Sqrt(sumSq/float64(n) - mean*mean)
	t.Logf("%d samples: mean %.4f sigma, sd %.4f sigma", n, mean, sd)
	// Standard errors: 1/sqrt(n) for the mean, 1/sqrt(2n) for the sd.
	if math.Abs(mean) > 5/math.Sqrt(float64(n)) {
		t.Errorf("mean %.4f sigma", mean)
	}
	if math.Abs(sd-1) > 5/math.Sqrt(2*float64(n)) {
		t.Errorf("sd %.4f sigma", sd)
	}
	const below63 = 1<<63 - 1
	if set&below63 != below63 || clear&below63 != below63 {
		t.Errorf("bits of |x| never set %#x or never clear %#x", ^set&below63, ^clear&below63)
	}
	// Kolmogorov-Smirnov against the normal CDF; the critical value
	// sqrt(ln(2/alpha)/(2n)) at alpha = 1e-6.
	slices.Sort(xs)
	var d float64
	for i, x := range xs {
		f := 0.5 * math.Erfc(-x/math.Sqrt2)
		d = math.Max(d, math.Max(f-float64(i)/float64(n), float64(i+1)/float64(n)-f))
	}
	if crit := math.Sqrt(math.Log(2/1e-6) / (2 * float64(n))); d > crit {
		t.Errorf("Kolmogorov-Smirnov distance %.5f > %.5f", d, crit)
	}
}

// TestProductionLowBits checks at the production sigma that the low 16 bits
// of x (two's complement) are uniform, and that shifting x by c = 1 or 1024
// does not change the distribution of its low 12 bits (two-sample
// chi-square between independent samples of x and of x + c).
func TestProductionLowBits(t *testing.T) {
	g := production(t)
	rng := seeded(6)
	low := func(v uint64, neg bool, c uint64) uint64 {
		if neg {
			v = -v
		}
		return v + c
	}
	n := scale(1 << 19)
	counts := make([]int, 1<<16)
	for range n {
		v, neg := g.sample(rng)
		counts[low(v, neg, 0)&0xffff]++
	}
	probs := make([]float64, len(counts))
	for i := range probs {
		probs[i] = 1 / float64(len(probs))
	}
	stat, df := chiSquare(counts, probs, n)
	if crit := chiSquareCritical(df, 5); stat > crit {
		t.Errorf("low 16 bits: chi-square %.0f > %.0f (df %d)", stat, crit, df)
	}
	m := scale(1 << 17)
	for _, c := range []uint64{1, 1024} {
		a := make([]int, 1<<12)
		b := make([]int, 1<<12)
		for range m {
			v, neg := g.sample(rng)
			a[low(v, neg, 0)&0xfff]++
			v, neg = g.sample(rng)
			b[low(v, neg, c)&0xfff]++
		}
		var stat float64
		for i := range a {
			if s := a[i] + b[i]; s > 0 {
				d := float64(a[i] - b[i])
				stat += d * d / float64(s)
			}
		}
		if crit := chiSquareCritical(len(a)-1, 5); stat > crit {
			t.Errorf("shift %d: low 12 bits of x and x+c differ: chi-square %.0f > %.0f", c, stat, crit)
		}
	}
}

// TestTailMass bounds the mass of D_{Z,sigma} beyond the production cut:
// sum_{|x| > C} rho(x) <= 2 * integral_C^inf rho, and sum_x rho(x) >=
// integral rho - 1 = sigma sqrt(2 pi) - 1, with rho(x) = exp(-x^2/(2 sigma^2))
// decreasing in |x| and C = Bound().
func TestTailMass(t *testing.T) {
	g := production(t)
	sigma := g.Sigma()
	c := float64(g.Bound())
	tail := 2 * sigma * math.Sqrt(math.Pi/2) * math.Erfc(c/(sigma*math.Sqrt2))
	mass := tail / (sigma*math.Sqrt(2*math.Pi) - 1)
	t.Logf("cut %d = %.6f sigma; tail mass <= 2^%.2f per sample, 2^%.2f per 8192 coefficients", g.Bound(), c/sigma, math.Log2(mass), math.Log2(8192*mass))
	if math.Log2(mass) > -75 {
		t.Errorf("tail mass 2^%.2f above 2^-75", math.Log2(mass))
	}
	// Bound() = floor(10 sigma) exactly: 100 * 2^121 lies between Bound()^2
	// and (Bound()+1)^2.
	c2 := new(big.Int).Lsh(big.NewInt(100), 121)
	b := new(big.Int).SetUint64(g.Bound())
	b1 := new(big.Int).Add(b, big.NewInt(1))
	if new(big.Int).Mul(b, b).Cmp(c2) > 0 || new(big.Int).Mul(b1, b1).Cmp(c2) <= 0 {
		t.Errorf("Bound() = %d is not floor(10 * 2^60.5)", g.Bound())
	}
}

func TestNewGaussian(t *testing.T) {
	g := production(t)
	if tt, h := g.Params(); tt != 1<<61 || h != 1<<60 {
		t.Fatalf("params %d %d", tt, h)
	}
	for _, c := range []struct{ t, h uint64 }{
		{0, 1}, {1, 0}, // zero
		{1, 5}, {5, 1}, // t not within a factor 2 of sigma
		{1 << 62, 1 << 62}, // 10 sigma beyond 2^64
		{math.MaxUint64, math.MaxUint64},
	} {
		if _, err := NewGaussian(c.t, c.h); !errors.Is(err, ErrParams) {
			t.Errorf("NewGaussian(%d, %d): err = %v", c.t, c.h, err)
		}
	}
	for _, c := range []struct{ t, h uint64 }{{1, 4}, {4, 1}, {3, 12}} {
		if _, err := NewGaussian(c.t, c.h); err != nil {
			t.Errorf("NewGaussian(%d, %d): %v", c.t, c.h, err)
		}
	}
	// 10 sigma must stay below 2^64: sigma^2 = 2^121 is admissible, 2^122
	// is not.
	if _, err := NewGaussian(1<<61, 1<<61); !errors.Is(err, ErrParams) {
		t.Errorf("sigma = 2^61 accepted: err = %v", err)
	}
}

// TestAddNTTResidues checks that the residues modulo every prime represent
// the same signed integer (the bug in Lattigo's sampler for sigma near the
// primes), within the cut, and that the spread is as expected.
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
	gs := production(t)
	sigma := gs.Sigma()
	p := r.NewPoly()
	if err := AddNTT(r, r.Level(), gs, p); err != nil {
		t.Fatal(err)
	}
	r.INTT(p, p)
	coeffs := make([]*big.Int, r.N())
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	r.PolyToBigintCentered(p, 1, coeffs)
	bound := new(big.Int).SetUint64(gs.Bound())
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
	if err := AddNTT(r, r.Level(), Gaussian{}, p); !errors.Is(err, ErrParams) {
		t.Fatalf("zero Gaussian: err = %v", err)
	}
	if err := AddNTT(r, r.Level()+1, gs, p); err == nil {
		t.Fatal("level out of range accepted")
	}
}
