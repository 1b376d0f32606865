package homomorphic

import (
	"errors"
	"strings"
	"testing"
)

// TestProofNeedsTheWitness: the prover's answers open the ciphertext only
// with its own witness; with another (one coefficient of u, e0 or m
// changed) the proof does not verify, and with noise far beyond the
// proven bound no proof comes out at all.
func TestProofNeedsTheWitness(t *testing.T) {
	p, rk := insecureKey(t)
	pk := rk.Public()
	m := make([]uint64, p.ringQ().N())
	m[0], m[5] = 3, p.PlaintextModulus()-1
	w, err := p.sampleWitness(m, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ct := p.newCiphertext()
	p.applyEnc(pk, w.u, w.e0, w.e1, w.m, ct.Value[0], ct.Value[1])
	c := &Ciphertext{p: p, ct: ct}
	ctx := []byte("ctx")
	proof, err := p.prove(pk, c, w, ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyEncryption(p, pk, c, proof, ctx, 0); err != nil {
		t.Fatalf("honest proof: %v", err)
	}
	clone := func() *encWitness {
		return &encWitness{u: append([]int64(nil), w.u...), e0: append([]int64(nil), w.e0...),
			e1: append([]int64(nil), w.e1...), m: append([]uint64(nil), w.m...)}
	}
	for name, change := range map[string]func(*encWitness){
		"u":  func(x *encWitness) { x.u[7] = (x.u[7]+2)%3 - 1 }, // another value in {-1, 0, 1}
		"e0": func(x *encWitness) { x.e0[3]++ },
		"e1": func(x *encWitness) { x.e1[100] -= 2 },
		"m":  func(x *encWitness) { x.m[0] = 4 },
	} {
		x := clone()
		change(x)
		pr, err := p.prove(pk, c, x, ctx, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := VerifyEncryption(p, pk, c, pr, ctx, 0); !errors.Is(err, ErrProof) {
			t.Fatalf("%s changed: got %v, want ErrProof", name, err)
		}
	}
	// A witness with an error of 2^30 in one coefficient (a crafted
	// partial) is refused by the prover (shortproof's own test shows that
	// its answers would never fall in range).
	x := clone()
	x.e0[0] = 1 << 30
	p.applyEnc(pk, x.u, x.e0, x.e1, x.m, ct.Value[0], ct.Value[1])
	if _, err := p.prove(pk, c, x, ctx, 0); err == nil || !strings.Contains(err.Error(), "outside its bound") {
		t.Fatalf("large error: got %v, want the witness refused", err)
	}
}
