package homomorphic

import (
	"slices"
	"testing"
)

// TestFingerprint: the fingerprint is linear (the fingerprint of a sum is
// the sum of the fingerprints), depends on the seed, and changes when one
// residue of one component of the sum changes, or when a partial is counted
// twice; FingerprintAdd refuses entries that are not reduced.
func TestFingerprint(t *testing.T) {
	p, rk := insecureKey(t)
	var parts []*Ciphertext
	for j := range 3 {
		cts, err := Encrypt(p, rk.Public(), []int64{int64(j), 7, -3})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, cts[0])
	}
	sum, err := Sum(p, [][]*Ciphertext{{parts[0]}, {parts[1]}, {parts[2]}})
	if err != nil {
		t.Fatal(err)
	}
	seed := []byte("release digest")
	fp := func(ct *Ciphertext, seed []byte) []uint64 {
		t.Helper()
		f, err := Fingerprint(p, ct, seed)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != p.FingerprintLen() {
			t.Fatalf("fingerprint of %d entries, want %d", len(f), p.FingerprintLen())
		}
		return f
	}
	acc := p.ZeroFingerprint()
	for _, ct := range parts {
		if acc, err = FingerprintAdd(p, acc, fp(ct, seed)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fp(sum[0], seed); !slices.Equal(got, acc) {
		t.Fatalf("fingerprint of the sum %v, sum of the fingerprints %v", got, acc)
	}
	if slices.Equal(fp(sum[0], []byte("another seed")), acc) {
		t.Fatal("the fingerprint does not depend on the seed")
	}
	// One residue of c1 changed: what a crafted sum (c1 + 2^k X^i) does.
	for c := range 2 {
		for k := range len(p.ringQ().ModuliChain()) {
			bad := sum[0].Clone()
			q := p.ringQ().ModuliChain()[k]
			bad.ct.Value[c].Coeffs[k][p.Slots()/2] = (bad.ct.Value[c].Coeffs[k][p.Slots()/2] + 1) % q
			if slices.Equal(fp(bad, seed), acc) {
				t.Fatalf("a sum with one residue changed (component %d, prime %d) has the honest sum's fingerprint", c, k)
			}
		}
	}
	twice, err := Sum(p, [][]*Ciphertext{{sum[0]}, {parts[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(fp(twice[0], seed), acc) {
		t.Fatal("a sum with a partial counted twice has the honest sum's fingerprint")
	}
	big := p.ZeroFingerprint()
	big[0] = p.ringQ().ModuliChain()[0]
	if _, err := FingerprintAdd(p, acc, big); err == nil {
		t.Fatal("FingerprintAdd took an entry that is not reduced")
	}
	if _, err := FingerprintAdd(p, acc, acc[1:]); err == nil {
		t.Fatal("FingerprintAdd took a fingerprint of the wrong length")
	}
}

func BenchmarkFingerprint(b *testing.B) {
	p, err := NewParams(ProductionSet)
	if err != nil {
		b.Fatal(err)
	}
	rk, err := GenResultKey(p)
	if err != nil {
		b.Fatal(err)
	}
	cts, err := Encrypt(p, rk.Public(), []int64{1})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Fingerprint(p, cts[0], []byte("seed")); err != nil {
			b.Fatal(err)
		}
	}
}
