package homomorphic_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestEncryptProven: a proven encryption decrypts as Encrypt's does, alone
// and in sums with ordinary ciphertexts, and its proofs verify for their
// context and index only.
func TestEncryptProven(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	pk := rk.Public()
	values := make([]int64, p.Slots()+3)
	for i := range values {
		values[i] = int64(i%1000) - 500
	}
	values[0], values[1] = p.MaxAbs(), -p.MaxAbs()
	ctx := []byte("query q1 epoch 3 node-2")
	cts, proofs, err := homomorphic.EncryptProven(p, pk, values, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 2 || len(proofs) != 2 {
		t.Fatalf("%d ciphertexts, %d proofs", len(cts), len(proofs))
	}
	got, err := homomorphic.Decrypt(p, rk, cts, len(values))
	if err != nil {
		t.Fatal(err)
	}
	for i := range values {
		if got[i] != values[i] {
			t.Fatalf("slot %d: %d, want %d", i, got[i], values[i])
		}
	}
	for i, pr := range proofs {
		if len(pr) != p.ProofSize() {
			t.Fatalf("proof %d: %d bytes, ProofSize %d", i, len(pr), p.ProofSize())
		}
		if err := homomorphic.VerifyEncryption(p, pk, cts[i], pr, ctx, i); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	t.Logf("%s: proof %d bytes, ciphertext %d bytes", p.Name(), p.ProofSize(), p.CiphertextSize())

	// Summed with ordinary encryptions, it adds as they do.
	plain, err := homomorphic.Encrypt(p, pk, values)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := homomorphic.Sum(p, [][]*homomorphic.Ciphertext{cts, plain, cts})
	if err != nil {
		t.Fatal(err)
	}
	got, err = homomorphic.Decrypt(p, rk, sum, len(values))
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < len(values); i++ {
		if got[i] != 3*values[i] {
			t.Fatalf("sum slot %d: %d, want %d", i, got[i], 3*values[i])
		}
	}
}

// TestEncryptionProofRefused: what a member that did not encrypt a
// ciphertext itself could send with it is refused (ErrProof).
func TestEncryptionProofRefused(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	pk := rk.Public()
	ctx := []byte("query q1 epoch 3 node-2")
	cts, proofs, err := homomorphic.EncryptProven(p, pk, []int64{7, 0, 12}, ctx)
	if err != nil {
		t.Fatal(err)
	}
	ct, proof := cts[0], proofs[0]
	zero, err := homomorphic.Encrypt(p, pk, []int64{0})
	if err != nil {
		t.Fatal(err)
	}
	rerandomised := ct.Clone()
	if err := homomorphic.Add(p, rerandomised, zero[0]); err != nil {
		t.Fatal(err)
	}
	shifted := ct.Clone()
	one, err := homomorphic.Encrypt(p, pk, []int64{-1000000})
	if err != nil {
		t.Fatal(err)
	}
	if err := homomorphic.Add(p, shifted, one[0]); err != nil {
		t.Fatal(err)
	}
	negated := zero[0].Clone()
	if err := homomorphic.Sub(p, negated, ct); err != nil {
		t.Fatal(err)
	}
	doubled := ct.Clone()
	if err := homomorphic.Add(p, doubled, ct); err != nil {
		t.Fatal(err)
	}
	other, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	otherCts, otherProofs, err := homomorphic.EncryptProven(p, other.Public(), []int64{7, 0, 12}, ctx)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), proof...)
		b[i] ^= 1
		return b
	}
	cases := []struct {
		name  string
		pk    *homomorphic.PublicKey
		ct    *homomorphic.Ciphertext
		proof []byte
		ctx   string
		index int
	}{
		{"another context (sender, query)", pk, ct, proof, "query q1 epoch 3 node-5", 0},
		{"another index", pk, ct, proof, string(ctx), 1},
		{"re-randomised ciphertext", pk, rerandomised, proof, string(ctx), 0},
		{"shifted ciphertext", pk, shifted, proof, string(ctx), 0},
		{"negated ciphertext", pk, negated, proof, string(ctx), 0},
		{"doubled ciphertext", pk, doubled, proof, string(ctx), 0},
		{"an ordinary encryption", pk, zero[0], proof, string(ctx), 0},
		{"proof under another key", pk, otherCts[0], otherProofs[0], string(ctx), 0},
		{"the right proof, another key's check", other.Public(), ct, proof, string(ctx), 0},
		{"challenge hash changed", pk, ct, flip(0), string(ctx), 0},
		{"answer changed", pk, ct, flip(40), string(ctx), 0},
		{"last answer bit changed", pk, ct, flip(len(proof) - 1), string(ctx), 0},
		{"truncated", pk, ct, proof[:len(proof)-1], string(ctx), 0},
		{"empty", pk, ct, nil, string(ctx), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := homomorphic.VerifyEncryption(p, tc.pk, tc.ct, tc.proof, []byte(tc.ctx), tc.index)
			if !errors.Is(err, homomorphic.ErrProof) {
				t.Fatalf("got %v, want ErrProof", err)
			}
		})
	}
	if err := homomorphic.VerifyEncryption(p, pk, ct, proof, ctx, 0); err != nil {
		t.Fatalf("the original no longer verifies: %v", err)
	}
}

// TestEncryptionProofAnswersHideTheWitness: the answers of proofs of two
// very different plaintexts span the same ranges (the rejection step makes
// them uniform over a range independent of the witness); a crude check
// that no coefficient range carries the plaintext.
func TestEncryptionProofAnswersHideTheWitness(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{0, p.MaxAbs()} {
		_, proofs, err := homomorphic.EncryptProven(p, rk.Public(), []int64{v}, []byte("ctx"))
		if err != nil {
			t.Fatal(err)
		}
		lo, hi, mean := homomorphic.ProofAnswerStats(p, proofs[0])
		// z_u is uniform in [-lim, lim]: its extremes are near the ends
		// and its mean near 0 (|mean| < 5 standard errors).
		lim := float64(homomorphic.ProofLimitU(p))
		if lo > -0.99*lim || hi < 0.99*lim {
			t.Fatalf("v=%d: z_u spans [%g, %g], want about +-%g", v, lo, hi, lim)
		}
		if se := lim / 1.732 / 64; mean > 5*se || mean < -5*se {
			t.Fatalf("v=%d: z_u mean %g, standard error %g", v, mean, se)
		}
	}
}

func benchParams(b *testing.B) (homomorphic.Params, *homomorphic.PublicKey) {
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		b.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		b.Fatal(err)
	}
	return p, rk.Public()
}

// BenchmarkEncryptProven: one ciphertext with its proof, production set
// (compare BenchmarkEncryptPlain).
func BenchmarkEncryptProven(b *testing.B) {
	p, pk := benchParams(b)
	b.ReportMetric(float64(p.ProofSize()), "proof-bytes")
	for i := 0; i < b.N; i++ {
		if _, _, err := homomorphic.EncryptProven(p, pk, []int64{42}, []byte("ctx")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncryptPlain: one ciphertext without a proof, production set.
func BenchmarkEncryptPlain(b *testing.B) {
	p, pk := benchParams(b)
	for i := 0; i < b.N; i++ {
		if _, err := homomorphic.Encrypt(p, pk, []int64{42}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyEncryption: one proof checked, production set.
func BenchmarkVerifyEncryption(b *testing.B) {
	p, pk := benchParams(b)
	cts, proofs, err := homomorphic.EncryptProven(p, pk, []int64{42}, []byte("ctx"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := homomorphic.VerifyEncryption(p, pk, cts[0], proofs[0], []byte("ctx"), 0); err != nil {
			b.Fatal(err)
		}
	}
}
