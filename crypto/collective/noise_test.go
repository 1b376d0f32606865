package collective_test

import (
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
	t.Logf("%d parties: fresh ciphertext noise 2^%.1f, summed 2^%.1f, after key switch 2^%.1f, budget 2^%.1f, headroom %.1f bits",
		parties, fresh, sumNoise, ksNoise, budget, budget-ksNoise)
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
