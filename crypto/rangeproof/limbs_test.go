package rangeproof

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// limbPartial is what a node encrypts of values proven in ranges (the
// values, then their blindings' limbs) and its commitments.
func limbPartial(t *testing.T, values []int64, ctx []byte) ([]int64, []byte) {
	t.Helper()
	ranges := make([]Range, len(values))
	for i := range ranges {
		ranges[i] = Range{-1000, 1000}
	}
	c, err := Prove(values, ranges, ctx)
	if err != nil {
		t.Fatal(err)
	}
	return append(slices.Clone(values), c.Limbs...), c.Commitments
}

// TestLimbs: the proof of the limbs of an honest partial verifies; made
// for another context, against another partial's commitments, with the
// limbs of another blinding (in range, proven, but not recomposing to the
// commitment's), or truncated, it is refused, naming the value. A prover
// refuses limbs out of range (even ones that recompose) or that do not
// open the commitments.
func TestLimbs(t *testing.T) {
	ctx := []byte("q-1/node-1")
	values := []int64{5, -3, 0}
	encoded, commitments := limbPartial(t, values, ctx)
	p, open, err := ProveLimbs(encoded, commitments, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if open == nil || len(p.Commitments) != 3*Limbs*PointSize || len(p.Recomposition) != 3*recompositionSize {
		t.Fatalf("a proof of %d limb commitments and %d recomposition bytes", len(p.Commitments)/PointSize, len(p.Recomposition))
	}
	if err := VerifyLimbs(commitments, p, ctx); err != nil {
		t.Fatalf("honest limbs: %v", err)
	}
	if err := VerifyLimbs(commitments, p, []byte("q-1/node-2")); err == nil {
		t.Error("the proof verified for another context")
	}
	_, others := limbPartial(t, values, ctx)
	if err := VerifyLimbs(others, p, ctx); !errors.Is(err, ErrLimbs) {
		t.Errorf("against another partial's commitments: %v, want ErrLimbs", err)
	}
	// The limbs of another blinding of the same values: in range, with a
	// valid range proof, but they recompose to that blinding, not to the
	// one of the commitments.
	encoded2, commitments2 := limbPartial(t, values, ctx)
	p2, _, err := ProveLimbs(encoded2, commitments2, ctx)
	if err != nil {
		t.Fatal(err)
	}
	swapped := &LimbProof{Commitments: p2.Commitments, Proof: p2.Proof, Recomposition: p.Recomposition}
	if err := VerifyLimbs(commitments, swapped, ctx); !errors.Is(err, ErrLimbs) || !strings.Contains(err.Error(), "value 0 do not recompose") {
		t.Errorf("another blinding's limbs: %v, want the recomposition of value 0 refused", err)
	}
	for name, q := range map[string]*LimbProof{
		"recomposition truncated": {Commitments: p.Commitments, Proof: p.Proof, Recomposition: p.Recomposition[:len(p.Recomposition)-1]},
		"a limb commitment less":  {Commitments: p.Commitments[PointSize:], Proof: p.Proof, Recomposition: p.Recomposition},
		"no range proof":          {Commitments: p.Commitments, Recomposition: p.Recomposition},
		"nothing":                 nil,
	} {
		if err := VerifyLimbs(commitments, q, ctx); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	// The prover's refusals: a limb off by one does not open the
	// commitment; a limb of 2^26 or more, even one that recomposes to the
	// blinding (the next limb one less), is out of range.
	off := slices.Clone(encoded)
	off[len(values)+4]++
	if _, _, err := ProveLimbs(off, commitments, ctx); !errors.Is(err, ErrLimbs) || !strings.Contains(err.Error(), "value 0 and its limbs do not open") {
		t.Errorf("a limb off by one: %v", err)
	}
	wide := slices.Clone(encoded)
	k := len(values) + Limbs // value 1's limbs
	for wide[k+1] == 0 {
		k++
	}
	wide[k] += 1 << LimbBits
	wide[k+1]--
	if fromLimbs(wide[len(values)+Limbs:len(values)+2*Limbs]).Equal(fromLimbs(encoded[len(values)+Limbs:len(values)+2*Limbs])) != 1 {
		t.Fatal("the test's limbs do not recompose to the blinding")
	}
	if _, _, err := ProveLimbs(wide, commitments, ctx); !errors.Is(err, ErrLimbs) || !strings.Contains(err.Error(), "outside [0, 2^26)") {
		t.Errorf("a limb of 2^26 or more: %v", err)
	}
}
