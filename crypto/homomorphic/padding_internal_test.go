package homomorphic

import (
	"errors"
	"math/big"
	"slices"
	"testing"
)

// addHalfAllOnes adds H = (Q+1)/2 * (1 + X + ... + X^(N-1)) to component
// i of ct: the shift a proof of encryption does not exclude
// (shortproof.TestHalfModulusAllOnesProves; docs/crypto.md, "What the
// relaxation allows").
func addHalfAllOnes(p Params, ct *Ciphertext, i int) {
	r := p.ringQ()
	q := big.NewInt(1)
	for _, s := range r.SubRings[:r.Level()+1] {
		q.Mul(q, new(big.Int).SetUint64(s.Modulus))
	}
	half := new(big.Int).Rsh(q.Add(q, big.NewInt(1)), 1)
	h := r.NewPoly()
	for j, s := range r.SubRings[:r.Level()+1] {
		v := new(big.Int).Mod(half, new(big.Int).SetUint64(s.Modulus)).Uint64()
		for k := range h.Coeffs[j] {
			h.Coeffs[j][k] = v
		}
	}
	if ct.ct.IsNTT {
		r.NTT(h, h)
	}
	r.Add(ct.ct.Value[i], h, ct.ct.Value[i])
}

// TestDecryptTotalRefusesPadding: DecryptTotal returns an honest total,
// and refuses (ErrPadding) one whose slots after the plan's values are not
// zero: a partial shifted by the half-modulus all-ones polynomial in c0
// (every slot changes), a partial with a value beyond the plan's vector,
// and a sum that includes either. Shifted in c1, the partial decrypts
// either exactly (when the secret's coefficient sum is even, the shift is
// a small error) or not at all: a wrong total is never returned.
func TestDecryptTotalRefusesPadding(t *testing.T) {
	p, rk := insecureKey(t)
	pk := rk.Public()
	values := []int64{5, -2, 0, 1000}
	enc := func(v []int64) []*Ciphertext {
		t.Helper()
		cts, err := Encrypt(p, pk, v)
		if err != nil {
			t.Fatal(err)
		}
		return cts
	}
	honest := enc(values)
	got, err := DecryptTotal(p, rk, honest, len(values))
	if err != nil || !slices.Equal(got, values) {
		t.Fatalf("honest total: %v, %v", got, err)
	}
	if _, err := DecryptTotal(p, rk, append(honest, honest...), len(values)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("two ciphertexts for one's values: %v", err)
	}

	shifted := enc(values)
	addHalfAllOnes(p, shifted[0], 0)
	if got, err := Decrypt(p, rk, shifted, len(values)); err != nil || slices.Equal(got, values) {
		t.Fatalf("the shift in c0 left the values as they were (%v, %v): the test no longer shifts", got, err)
	}
	beyond := enc(append(slices.Clone(values), 7))
	for name, cts := range map[string][]*Ciphertext{"shifted in c0": shifted, "a value beyond the plan's": beyond} {
		if got, err := DecryptTotal(p, rk, cts, len(values)); !errors.Is(err, ErrPadding) || got != nil {
			t.Fatalf("%s: %v, %v", name, got, err)
		}
		sum, err := Sum(p, [][]*Ciphertext{honest, cts, honest})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecryptTotal(p, rk, sum, len(values)); !errors.Is(err, ErrPadding) || got != nil {
			t.Fatalf("%s, in a sum: %v, %v", name, got, err)
		}
	}

	c1 := enc(values)
	addHalfAllOnes(p, c1[0], 1)
	got, err = DecryptTotal(p, rk, c1, len(values))
	switch {
	case errors.Is(err, ErrPadding):
		t.Log("shifted in c1: refused (the secret's coefficient sum is odd)")
	case err == nil && slices.Equal(got, values):
		t.Log("shifted in c1: exact (the secret's coefficient sum is even)")
	default:
		t.Fatalf("shifted in c1: %v, %v", got, err)
	}
}
