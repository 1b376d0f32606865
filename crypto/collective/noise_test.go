package collective_test

import (
	"math"
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
)

var tok lowlevel.Token

// collectiveKey returns the sum of the parties' secret shares as a result
// key, to measure the noise of ciphertexts under the collective key. Only a
// test can do this: in the protocol no one ever holds the sum.
func collectiveKey(p homomorphic.Params, sks []*homomorphic.SecretKeyShare) *homomorphic.ResultKey {
	s := rlwe.NewSecretKey(p.BGV(tok))
	rQ := p.BGV(tok).RingQ()
	for _, sk := range sks {
		rQ.Add(s.Value.Q, sk.RLWE(tok).Value.Q, s.Value.Q)
	}
	return homomorphic.WrapResultKey(tok, p, s, nil)
}

// TestProductionHeadroom runs a release at the production parameter set
// with 30 parties that all encrypt values of the largest magnitude that
// keeps the sum in range, checks that the total is exact, and measures the
// noise at each stage against the decryption budget log2(Q/2t).
func TestProductionHeadroom(t *testing.T) {
	if testing.Short() {
		t.Skip("production parameters")
	}
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		t.Fatal(err)
	}
	const parties = 30
	nw := newNetwork(t, p, parties)
	rk, _ := homomorphic.GenResultKey(p)
	per := p.MaxAbs() / parties
	n := p.Slots()
	want := make([]int64, n)
	var partials [][]*homomorphic.Ciphertext
	var first []int64
	for j := range parties {
		v := make([]int64, n)
		for i := range v {
			switch i % 3 {
			case 0:
				v[i] = per
			case 1:
				v[i] = -per
			default:
				v[i] = int64(i*31+j*17)%(2*per+1) - per
			}
			want[i] += v[i]
		}
		cts, err := homomorphic.Encrypt(p, nw.pk, v)
		if err != nil {
			t.Fatal(err)
		}
		partials = append(partials, cts)
		if j == 0 {
			first = v
		}
	}
	ck := collectiveKey(p, nw.sks)
	fresh, err := homomorphic.NoiseLog2(tok, p, ck, partials[0][0], first)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := homomorphic.Sum(p, partials)
	if err != nil {
		t.Fatal(err)
	}
	sumNoise, err := homomorphic.NoiseLog2(tok, p, ck, sum[0], want)
	if err != nil {
		t.Fatal(err)
	}
	// The Euclidean norm that the statistical-distance bound uses: about
	// sqrt(N * m * V_fresh), within the factor 2 margin on its square.
	sumL2, err := homomorphic.NoiseL2Log2(tok, p, ck, sum[0], want)
	if err != nil {
		t.Fatal(err)
	}
	if wantL2 := math.Log2(float64(n)*parties*vFresh(n, parties)) / 2; math.Abs(sumL2-wantL2) > 0.5 {
		t.Errorf("||e_sum||_2 = 2^%.2f, want 2^(%.2f +- 0.5)", sumL2, wantL2)
	}
	var shares [][]byte
	for _, sk := range nw.sks {
		sh, err := collective.KeySwitchShare(p, sk, rk.Public(), sum[0])
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	switched, err := collective.KeySwitchCombine(p, sum[0], shares)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{switched}, n)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, want) {
		t.Fatal("30-party release at the production set is not exact")
	}
	ksNoise, err := homomorphic.NoiseLog2(tok, p, rk, switched, want)
	if err != nil {
		t.Fatal(err)
	}
	budget := p.NoiseBudgetBits()
	t.Logf("%d parties: fresh ciphertext noise 2^%.1f, summed 2^%.1f (||e_sum||_2 2^%.2f), after key switch 2^%.1f, budget 2^%.1f, headroom %.1f bits",
		parties, fresh, sumNoise, sumL2, ksNoise, budget, budget-ksNoise)
	// Smudging must dominate the ciphertext noise by far (that is its job)...
	if ksNoise-sumNoise < 40 {
		t.Errorf("smudging only %.1f bits above the ciphertext noise", ksNoise-sumNoise)
	}
	// ...and still leave a wide margin to the decryption bound. Expected:
	// sqrt(30)*2^60.5 sigma, about 4.3 sigma max over 8192 coefficients: 2^65.1.
	if budget-ksNoise < 12 {
		t.Errorf("only %.1f bits of decryption headroom", budget-ksNoise)
	}
}

// Noise constants of docs/crypto.md: the error distribution's sigma and
// bound (Lattigo's default, 6 sigma), the variance of a ternary secret
// coefficient (P(+-1) = 2/3), and the bound on the tail mass of the smudging
// beyond its cut (crypto/internal/smudge TestTailMass: 2^-75.8).
const (
	sigmaE    = 3.2
	boundE    = 19.2
	varSecret = 2.0 / 3
	tailMass  = 0x1p-75
)

// vFresh is the variance of one noise coefficient of a fresh encryption
// under the collective key of n members (docs/crypto.md):
// sigma_e^2 * (1 + 2 * N * n * 2/3).
func vFresh(N, n int) float64 {
	return sigmaE * sigmaE * (1 + 2*float64(N)*float64(n)*varSecret)
}

// sumBound is the deterministic bound on every noise coefficient of a sum of
// m fresh encryptions under the key of n members: m * (2 N n 19.2 + 19.2).
func sumBound(N, n, m int) float64 {
	return float64(m) * (2*float64(N)*float64(n)*boundE + boundE)
}

// TestSumNoiseL2 measures the Euclidean norm of the noise of sums of m = n
// partials at the test set and checks it against the figure the
// statistical-distance bound of the smudging uses: ||e_sum||_2^2 about
// N * m * V_fresh, at most twice that (the margin in docs/crypto.md).
func TestSumNoiseL2(t *testing.T) {
	p := testParams(t)
	N := p.Slots()
	for _, n := range []int{3, 10} {
		nw := newNetwork(t, p, n)
		ck := collectiveKey(p, nw.sks)
		zero := make([]int64, 1)
		var partials [][]*homomorphic.Ciphertext
		for range n {
			cts, err := homomorphic.Encrypt(p, nw.pk, zero)
			if err != nil {
				t.Fatal(err)
			}
			partials = append(partials, cts)
		}
		sum, err := homomorphic.Sum(p, partials)
		if err != nil {
			t.Fatal(err)
		}
		got, err := homomorphic.NoiseL2Log2(tok, p, ck, sum[0], zero)
		if err != nil {
			t.Fatal(err)
		}
		want := math.Log2(float64(N)*float64(n)*vFresh(N, n)) / 2
		t.Logf("N=%d n=m=%d: ||e_sum||_2 = 2^%.2f, expected 2^%.2f", N, n, got, want)
		// A factor 2 on the squared norm is half a bit on the norm.
		if got > want+0.5 || got < want-0.5 {
			t.Errorf("n=m=%d: ||e_sum||_2 = 2^%.2f, outside 2^(%.2f +- 0.5)", n, got, want)
		}
	}
}

// TestSmudgingBudget recomputes, from the production parameters, the two
// tables of docs/crypto.md: the statistical distance per released
// ciphertext and the worst-case decryption headroom, and checks that the
// documented figures hold.
func TestSmudgingBudget(t *testing.T) {
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		t.Fatal(err)
	}
	N := p.Slots()
	sigma := p.SmudgingSigma()
	cut := p.SmudgingBound()
	bgv := p.BGV(tok)
	Q := bgv.RingQ().Modulus()
	twoT := new(big.Int).SetUint64(2 * p.PlaintextModulus())
	// Decryption is exact while every noise coefficient is below
	// Q/(2t) - 1.
	budget, _ := new(big.Rat).SetFrac(Q, twoT).Float64()
	budget--
	// Per key-switching party, besides its smudging: u*e_t + e0 + e1*s_t.
	ks := 2*float64(N)*boundE + boundE
	truncation := 2 * float64(N) * tailMass

	for _, c := range []struct {
		n                         int
		sdExpected, sdWorst, head float64 // documented: log2 SD bounds, worst-case headroom bits
	}{
		{3, -44.5, -33.5, 13.5},
		{10, -42.7, -30.0, 11.8},
		{30, -41.2, -26.9, 10.2},
		{64, -40.1, -24.7, 9.1},
		{300, -37.8, -20.2, 6.9},
	} {
		n, m := c.n, c.n
		// ||c||_2 with the factor 2 margin on its expected square, and the
		// deterministic ||c||_2 <= sqrt(N) ||c||_inf.
		l2 := math.Sqrt(2 * float64(N) * float64(m) * vFresh(N, n))
		l2Worst := math.Sqrt(float64(N)) * sumBound(N, n, m)
		sd := math.Log2(l2/(2*sigma) + truncation)
		sdWorst := math.Log2(l2Worst/(2*sigma) + truncation)
		// Worst case: every smudging sample at the cut.
		worst := float64(n)*(float64(cut)+ks) + sumBound(N, n, m)
		head := math.Log2(budget) - math.Log2(worst)
		t.Logf("n=m=|R|=%3d: ||c||_2 2^%.2f (2 x expected), SD <= 2^%.2f; deterministic ||c||_2 2^%.2f, SD <= 2^%.2f; worst |e_out| 2^%.2f, headroom %.2f bits",
			n, math.Log2(l2), sd, math.Log2(l2Worst), sdWorst, math.Log2(worst), head)
		if sd > c.sdExpected || sdWorst > c.sdWorst {
			t.Errorf("n=%d: SD 2^%.2f / 2^%.2f above the documented 2^%.1f / 2^%.1f", n, sd, sdWorst, c.sdExpected, c.sdWorst)
		}
		if head < c.head {
			t.Errorf("n=%d: worst-case headroom %.2f bits below the documented %.1f", n, head, c.head)
		}
		// KL adds over releases: k ciphertexts under one epoch give
		// sqrt(k) times the first term plus k times the truncation term;
		// docs/crypto.md quotes 2^-35.1 for 1,000 ciphertexts at 64 members.
		if n == 64 {
			const k = 1000
			if sdK := math.Log2(math.Sqrt(k)*l2/(2*sigma) + k*truncation); sdK > -35.1 {
				t.Errorf("n=64, %d ciphertexts: SD 2^%.2f above the documented 2^-35.1", k, sdK)
			}
		}
	}
	// Exact decryption with certainty for up to 37,000 key-switching
	// parties (and as many members and partials).
	const parties = 37000
	if worst := parties*(float64(cut)+ks) + sumBound(N, parties, parties); worst >= budget {
		t.Errorf("%d parties: worst case 2^%.2f beyond the budget 2^%.2f", parties, math.Log2(worst), math.Log2(budget))
	}
}
