package collective_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestKeySwitchShareProof: proven key-switch shares of an epoch with T = K
// combine and decrypt like KeySwitchShare's, and each proof verifies for
// its member's CKG share, ciphertext, target and context only; a share
// shifted after it was proven, an unproven share under another's proof and
// a share made with a secret that is not the CKG share's are refused.
func TestKeySwitchShareProof(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	values := []int64{5, -7, 1 << 30}
	cts, other, rk, rk2 := switchCase(t, nw, values)
	var err error
	ctx := func(i int) []byte { return []byte{'m', byte('0' + i)} }
	shares := make([][]byte, len(nw.sks))
	proofs := make([][]byte, len(nw.sks))
	for i, sk := range nw.sks {
		if shares[i], proofs[i], err = collective.KeySwitchShareProven(p, sk, rk.Public(), cts[0], nw.crs, nw.ckg[i], ctx(i)); err != nil {
			t.Fatal(err)
		}
		if err := collective.VerifyKeySwitchShare(p, rk.Public(), cts[0], nw.crs, nw.ckg[i], shares[i], proofs[i], ctx(i)); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	if len(proofs[0]) != collective.KeySwitchProofSize(p) {
		t.Fatalf("proof %d bytes, KeySwitchProofSize %d", len(proofs[0]), collective.KeySwitchProofSize(p))
	}
	t.Logf("%s: key-switch share %d bytes, proof %d bytes", p.Name(), len(shares[0]), len(proofs[0]))
	switched, err := collective.KeySwitchCombine(p, cts[0], shares)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{switched}, len(values))
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, values) {
		t.Fatalf("proven shares decrypt to %v, want %v", got, values)
	}

	// A share shifted by a small encoded amount after it was proven (the
	// attack TestWrongKeySwitchShareRefused's margins let through).
	shift, err := homomorphic.Encrypt(p, rk.Public(), []int64{1000})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := collective.KeySwitchShare(p, nw.sks[0], rk.Public(), cts[0])
	if err != nil {
		t.Fatal(err)
	}
	shifted := collective.ShiftShareForTest(t, p, shares[0], shift[0])
	cases := []struct {
		name          string
		target        *homomorphic.PublicKey
		ct            *homomorphic.Ciphertext
		ckg, share, a []byte
		ctx           []byte
	}{
		{"another member's CKG share", rk.Public(), cts[0], nw.ckg[1], shares[0], proofs[0], ctx(0)},
		{"another member's share and proof, as member 0's", rk.Public(), cts[0], nw.ckg[0], shares[1], proofs[1], ctx(0)},
		{"another ciphertext", rk.Public(), other[0], nw.ckg[0], shares[0], proofs[0], ctx(0)},
		{"another target", rk2.Public(), cts[0], nw.ckg[0], shares[0], proofs[0], ctx(0)},
		{"another context", rk.Public(), cts[0], nw.ckg[0], shares[0], proofs[0], ctx(1)},
		{"a shifted share", rk.Public(), cts[0], nw.ckg[0], shifted, proofs[0], ctx(0)},
		{"an unproven share under a proof", rk.Public(), cts[0], nw.ckg[0], plain, proofs[0], ctx(0)},
		{"no proof", rk.Public(), cts[0], nw.ckg[0], shares[0], nil, ctx(0)},
	}
	for _, c := range cases {
		if err := collective.VerifyKeySwitchShare(p, c.target, c.ct, nw.crs, c.ckg, c.share, c.a, c.ctx); !errors.Is(err, collective.ErrKeySwitchProof) {
			t.Fatalf("%s: got %v, want ErrKeySwitchProof", c.name, err)
		}
	}
	// A member whose key-switching secret is not its CKG share's (a
	// threshold epoch's Lagrange-weighted share, or another key) cannot
	// prove its share.
	stranger, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collective.KeySwitchShareProven(p, stranger, rk.Public(), cts[0], nw.crs, nw.ckg[0], ctx(0)); err == nil {
		t.Fatal("a share proven with a secret that is not the CKG share's")
	}
}

// switchCase encrypts values under nw's key, with another ciphertext and
// two result keys: what a test of key-switch share proofs refuses a proof
// against.
func switchCase(t testing.TB, nw *network, values []int64) (cts, other []*homomorphic.Ciphertext, rk, rk2 *homomorphic.ResultKey) {
	t.Helper()
	var err error
	if cts, err = homomorphic.Encrypt(nw.p, nw.pk, values); err != nil {
		t.Fatal(err)
	}
	if other, err = homomorphic.Encrypt(nw.p, nw.pk, []int64{1}); err != nil {
		t.Fatal(err)
	}
	if rk, err = homomorphic.GenResultKey(nw.p); err != nil {
		t.Fatal(err)
	}
	if rk2, err = homomorphic.GenResultKey(nw.p); err != nil {
		t.Fatal(err)
	}
	return cts, other, rk, rk2
}

// BenchmarkKeySwitchShareProof: a key-switch share with its proof, then
// its check, production set (compare BenchmarkKeySwitchShare).
func BenchmarkKeySwitchShareProof(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 2)
	cts, err := homomorphic.Encrypt(p, nw.pk, []int64{42})
	if err != nil {
		b.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(collective.KeySwitchProofSize(p)), "proof-bytes")
	var share, proof []byte
	b.Run("prove", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if share, proof, err = collective.KeySwitchShareProven(p, nw.sks[0], rk.Public(), cts[0], nw.crs, nw.ckg[0], []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What a release pays: the share through its witness, with fresh
	// randomness and with randomness derived from a nonce (the node's).
	for name, nonce := range map[string][]byte{"share-fresh": nil, "share-derived": []byte("q/1/node-1/0")} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_, w, err := collective.KeySwitchShareWitness(p, nw.sks[0], rk.Public(), cts[0], nw.crs, nw.ckg[0], nonce)
				if err != nil {
					b.Fatal(err)
				}
				w.Wipe()
			}
		})
	}
	b.Run("verify", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := collective.VerifyKeySwitchShare(p, rk.Public(), cts[0], nw.crs, nw.ckg[0], share, proof, []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
