package homomorphic_test

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
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

// recordingLink is a SlotLink that draws uniform slot masks, binds a
// label of them, and keeps the accepted round's mask and challenge.
type recordingLink struct {
	t      uint64
	slots  int
	rounds int
	mask   map[int][]uint64
	chal   map[int][]uint64
	bound  map[int][]byte // of the last round, the accepted one
}

func (l *recordingLink) Mask(i int) ([]uint64, []byte, error) {
	l.rounds++
	m := make([]uint64, l.slots)
	for j := range m {
		m[j] = rand.Uint64N(l.t)
	}
	l.mask[i] = m
	l.bound[i] = []byte(fmt.Sprintf("mask of %d, round %d", i, l.rounds))
	return m, l.bound[i], nil
}

func (l *recordingLink) Answer(i int, c []uint64) error {
	l.chal[i] = c
	return nil
}

// TestEncryptLinked: a linked proof verifies with the bytes its link bound
// (not with others, nor as an unlinked proof), and the slots it returns
// are those the link was given; slot j of the answer is mask_j +
// challenge_j*value_j modulo t, the relation crypto/rangeproof's link
// checks (docs/crypto.md, "The link").
func TestEncryptLinked(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	pk := rk.Public()
	tm := p.PlaintextModulus()
	values := make([]int64, p.Slots()+5)
	for i := range values {
		values[i] = int64(i%2000) - 1000
	}
	values[3] = -1_000_000
	link := &recordingLink{t: tm, slots: p.Slots(), mask: map[int][]uint64{}, chal: map[int][]uint64{}, bound: map[int][]byte{}}
	ctx := []byte("linked")
	cts, proofs, err := homomorphic.EncryptLinked(p, pk, values, ctx, link)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, cts, len(values))
	if err != nil || got[3] != -1_000_000 || got[len(values)-1] != values[len(values)-1] {
		t.Fatalf("a linked encryption decrypts to %v..., %v", got[:4], err)
	}
	for i, ct := range cts {
		c, z, err := homomorphic.VerifyEncryptionLinked(p, pk, ct, proofs[i], ctx, i, link.bound[i])
		if err != nil {
			t.Fatal(err)
		}
		for j := range c {
			if c[j] != link.chal[i][j] {
				t.Fatalf("ciphertext %d, slot %d: challenge %d, the link was given %d", i, j, c[j], link.chal[i][j])
			}
			var v uint64
			if k := i*p.Slots() + j; k < len(values) {
				if values[k] < 0 {
					v = tm - uint64(-values[k])
				} else {
					v = uint64(values[k])
				}
			}
			want := (link.mask[i][j] + mulMod(c[j], v, tm)) % tm
			if z[j] != want {
				t.Fatalf("ciphertext %d, slot %d: answer %d, mask + challenge*value %d", i, j, z[j], want)
			}
		}
		if err := homomorphic.VerifyEncryption(p, pk, ct, proofs[i], ctx, i); !errors.Is(err, homomorphic.ErrProof) {
			t.Fatalf("a linked proof verified unlinked: %v", err)
		}
		if _, _, err := homomorphic.VerifyEncryptionLinked(p, pk, ct, proofs[i], ctx, i, []byte("other bytes")); !errors.Is(err, homomorphic.ErrProof) {
			t.Fatalf("a linked proof verified with other bound bytes: %v", err)
		}
	}
}

func mulMod(a, b, m uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	_, r := bits.Div64(hi%m, lo, m)
	return r
}

// BenchmarkVerifyEncryptionLinked: VerifyEncryption with the slots of its
// challenge and answer (what a linked proof's checker adds).
func BenchmarkVerifyEncryptionLinked(b *testing.B) {
	p, pk := benchParams(b)
	link := &recordingLink{t: p.PlaintextModulus(), slots: p.Slots(), mask: map[int][]uint64{}, chal: map[int][]uint64{}, bound: map[int][]byte{}}
	cts, proofs, err := homomorphic.EncryptLinked(p, pk, []int64{42}, []byte("ctx"), link)
	if err != nil {
		b.Fatal(err)
	}
	bound := link.bound[0]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := homomorphic.VerifyEncryptionLinked(p, pk, cts[0], proofs[0], []byte("ctx"), 0, bound); err != nil {
			b.Fatal(err)
		}
	}
}
