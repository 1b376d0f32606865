package collective_test

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestCheckKeySwitchableHonest: no false positives on honest sums of 1 to 10
// partials under a collective key (100 sums of random vectors, each prefix
// of 10 fresh partials in 10 rounds).
func TestCheckKeySwitchableHonest(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 10)
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	v := make([]int64, p.Slots())
	for round := range 10 {
		var sum *homomorphic.Ciphertext
		for k := 1; k <= 10; k++ {
			for i := range v {
				v[i] = rng.Int64N(2001) - 1000
			}
			cts, err := homomorphic.Encrypt(p, nw.pk, v)
			if err != nil {
				t.Fatal(err)
			}
			if sum == nil {
				sum = cts[0]
			} else if err := homomorphic.Add(p, sum, cts[0]); err != nil {
				t.Fatal(err)
			}
			if err := homomorphic.CheckKeySwitchable(p, sum); err != nil {
				t.Fatalf("round %d, sum of %d honest partials refused: %v", round, k, err)
			}
		}
	}
}

// TestDegenerateSumLeaksSecretShare shows why CheckKeySwitchable exists: if
// the sum a decryptor key-switches is (0, 2^100), its share alone lets the
// result-key holder round out the decryptor's secret share exactly; and
// CheckKeySwitchable refuses that sum.
func TestDegenerateSumLeaksSecretShare(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	bp := p.BGV(tok)
	rQ := bp.RingQ()
	level := bp.MaxLevel()

	// The attack ciphertext: c0 = 0, c1 = 2^100 (a constant polynomial).
	two100 := new(big.Int).Lsh(big.NewInt(1), 100)
	ct := rlwe.NewCiphertext(bp, 1, level)
	*ct.MetaData = p.CiphertextMetaData(tok)
	for i, q := range rQ.ModuliChain() {
		ct.Value[1].Coeffs[i][0] = new(big.Int).Mod(two100, new(big.Int).SetUint64(q)).Uint64()
	}
	rQ.NTT(ct.Value[1], ct.Value[1])
	attack := homomorphic.WrapCiphertext(tok, p, ct)

	if err := homomorphic.CheckKeySwitchable(p, attack); !errors.Is(err, homomorphic.ErrDegenerate) {
		t.Fatalf("CheckKeySwitchable(0, 2^100) = %v, want ErrDegenerate", err)
	}

	// Without the check, member 0's share of it...
	skT, pkT := rlwe.NewKeyGenerator(bp).GenKeyPairNew()
	rk := homomorphic.WrapResultKey(tok, p, skT, pkT)
	share, err := collective.KeySwitchShare(p, nw.sks[0], rk.Public(), attack)
	if err != nil {
		t.Fatal(err)
	}
	out, err := collective.KeySwitchCombine(p, attack, [][]byte{share})
	if err != nil {
		t.Fatal(err)
	}
	// ...decrypts under the result key to 2^100 * s_0 + noise below 2^64.
	phase := bgv.NewPlaintext(bp, level)
	bgv.NewDecryptor(bp, skT).Decrypt(out.RLWE(tok), phase)
	rQ.INTT(phase.Value, phase.Value)
	got := centred(rQ, phase.Value)

	s0 := rQ.NewPoly()
	rQ.IMForm(nw.sks[0].RLWE(tok).Value.Q, s0)
	rQ.INTT(s0, s0)
	want := centred(rQ, s0)

	half := new(big.Int).Lsh(big.NewInt(1), 99)
	for j := range got {
		r := new(big.Int).Add(got[j], half)
		r.Rsh(r, 100) // round(phase / 2^100), floor division
		if r.Cmp(want[j]) != 0 {
			t.Fatalf("coefficient %d: rounded %s, secret %s", j, r, want[j])
		}
	}
}

func centred(rQ *ring.Ring, p ring.Poly) []*big.Int {
	c := make([]*big.Int, rQ.N())
	for i := range c {
		c[i] = new(big.Int)
	}
	rQ.PolyToBigintCentered(p, 1, c)
	return c
}
