package collective_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestCKGShareProof: a member's proven CKG share verifies for its CRS and
// context, aggregates like any share, and its proof is refused for
// another CRS, context, share (another member's, or the share with its
// error widened), or when changed.
func TestCKGShareProof(t *testing.T) {
	p := testParams(t)
	crs, err := collective.NewCRS()
	if err != nil {
		t.Fatal(err)
	}
	sk1, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, ctx2 := []byte("epoch 7 node-1"), []byte("epoch 7 node-2")
	share1, proof1, err := collective.CKGShareProven(p, sk1, crs, ctx1)
	if err != nil {
		t.Fatal(err)
	}
	share2, proof2, err := collective.CKGShareProven(p, sk2, crs, ctx2)
	if err != nil {
		t.Fatal(err)
	}
	if len(proof1) != collective.CKGProofSize(p) {
		t.Fatalf("proof %d bytes, CKGProofSize %d", len(proof1), collective.CKGProofSize(p))
	}
	t.Logf("%s: CKG share %d bytes, proof %d bytes", p.Name(), len(share1), len(proof1))
	for i, c := range []struct{ share, proof, ctx []byte }{{share1, proof1, ctx1}, {share2, proof2, ctx2}} {
		if err := collective.VerifyCKGShare(p, crs, c.share, c.proof, c.ctx); err != nil {
			t.Fatalf("member %d: %v", i+1, err)
		}
	}
	// The proven shares make a working key.
	pk, err := collective.CKGAggregate(p, crs, [][]byte{share1, share2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := homomorphic.Encrypt(p, pk, []int64{1}); err != nil {
		t.Fatal(err)
	}

	otherCRS, err := collective.NewCRS()
	if err != nil {
		t.Fatal(err)
	}
	changed := append([]byte(nil), proof1...)
	changed[100] ^= 4
	cases := []struct {
		name              string
		crs, share, proof []byte
		ctx               []byte
	}{
		{"another CRS", otherCRS, share1, proof1, ctx1},
		{"another context", crs, share1, proof1, ctx2},
		{"another member's share", crs, share2, proof1, ctx1},
		{"another member's proof", crs, share1, proof2, ctx1},
		{"changed proof", crs, share1, changed, ctx1},
		{"no proof", crs, share1, nil, ctx1},
	}
	for _, c := range cases {
		if err := collective.VerifyCKGShare(p, c.crs, c.share, c.proof, c.ctx); !errors.Is(err, collective.ErrCKGProof) {
			t.Fatalf("%s: got %v, want ErrCKGProof", c.name, err)
		}
	}
}

// BenchmarkCKGShareProof: a CKG share with its proof, then its check,
// production set.
func BenchmarkCKGShareProof(b *testing.B) {
	p := prodParams(b)
	crs, err := collective.NewCRS()
	if err != nil {
		b.Fatal(err)
	}
	sk, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(collective.CKGProofSize(p)), "proof-bytes")
	var share, proof []byte
	b.Run("prove", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if share, proof, err = collective.CKGShareProven(p, sk, crs, []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := collective.VerifyCKGShare(p, crs, share, proof, []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
