package linkage

import (
	"errors"
	"testing"

	"github.com/gtank/ristretto255"
)

// cheatFixture mixes one list with payloads honestly, keeping the witness,
// so that a test can change the output and prove the changed statement with
// the prover's own algorithm: what a stage that deviates would send.
type cheatFixture struct {
	x      Point
	k, w   Scalar
	keys   StageKeys
	wkey   Point
	in     []Ciphertext
	inP    []ValueCiphertext
	out    []Ciphertext
	outP   []ValueCiphertext
	wit    stageWitness
	kv, vv *ristretto255.Scalar
}

func newCheatFixture(t *testing.T, n int, payloads bool, w Scalar) *cheatFixture {
	t.Helper()
	d, err := Deal(1, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := AggregatePublicKey([][]Point{d.Commitments}, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	f := &cheatFixture{x: pk.X, k: RandomScalar(), w: w}
	pts := make([]Point, n)
	vals := make([]int64, n)
	for i := range pts {
		pts[i], vals[i] = RandomPoint(), int64(i)
	}
	if f.in, err = EncryptPoints(pk.X, pts); err != nil {
		t.Fatal(err)
	}
	var pays [][]ValueCiphertext
	if payloads {
		if f.inP, err = EncryptValues(pk.X, vals); err != nil {
			t.Fatal(err)
		}
		f.outP = append([]ValueCiphertext(nil), f.inP...)
		pays = [][]ValueCiphertext{f.outP}
	}
	f.out = append([]Ciphertext(nil), f.in...)
	wits, err := stage(f.k, f.w, f.x, [][]Ciphertext{f.out}, pays, true)
	if err != nil {
		t.Fatal(err)
	}
	f.wit = wits[0]
	f.kv, _ = f.k.decode()
	wv, _ := f.w.decode()
	f.vv = ristretto255.NewScalar().Multiply(f.kv, wv)
	f.keys = StageKeys{K: encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(f.kv)), V: encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(f.vv))}
	f.wkey = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(wv))
	return f
}

// proveAndVerify proves the statement (in → out) with the witness wit and
// verifies the proof.
func (f *cheatFixture) proveAndVerify(t *testing.T, out []Ciphertext, outP []ValueCiphertext, wit stageWitness) error {
	t.Helper()
	st, err := newStageStatement(f.keys, f.wkey, f.x, []byte("cheat"), 0, f.in, f.inP, out, outP)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := st.prove(f.kv, f.vv, wit)
	if err != nil {
		t.Fatal(err)
	}
	return VerifyStage(f.keys, f.wkey, f.x, []byte("cheat"), 0, f.in, f.inP, out, outP, &proof)
}

// TestStageProofSoundAgainstCheats: a stage that deviates and then runs the
// prover on what it sends (the honest permutation, exponent and payload
// randomness as its witness, the best it has) makes a proof that does not
// verify, for each way of deviating; the same run on the honest output
// verifies (the control).
func TestStageProofSoundAgainstCheats(t *testing.T) {
	f := newCheatFixture(t, 24, true, RandomScalar())
	if err := f.proveAndVerify(t, f.out, f.outP, f.wit); err != nil {
		t.Fatalf("honest (control): %v", err)
	}
	refused := func(name string, out []Ciphertext, outP []ValueCiphertext, wit stageWitness) {
		t.Helper()
		if err := f.proveAndVerify(t, out, outP, wit); !errors.Is(err, ErrInvalidStageProof) {
			t.Errorf("%s: %v, want ErrInvalidStageProof", name, err)
		}
	}
	clone := func() ([]Ciphertext, []ValueCiphertext) {
		return append([]Ciphertext(nil), f.out...), append([]ValueCiphertext(nil), f.outP...)
	}
	// A planted element in place of one output.
	out, outP := clone()
	planted, err := EncryptPoints(f.x, []Point{RandomPoint()})
	if err != nil {
		t.Fatal(err)
	}
	out[3] = planted[0]
	refused("a planted element", out, outP, f.wit)
	// Only the C1 of an element changed (its C2 as honest).
	out, outP = clone()
	copy(out[9][:PointSize], planted[0][:PointSize])
	refused("a C1 changed", out, outP, f.wit)
	// An element dropped and another duplicated, with the witness saying
	// so: the permutation commitment then commits to that matrix (rows
	// summing to one, so that only the product argument refuses it).
	out, outP = clone()
	out[5], outP[5] = out[6], outP[6]
	wit := stageWitness{perm: append([]int(nil), f.wit.perm...), rand: append([]*ristretto255.Scalar(nil), f.wit.rand...)}
	wit.perm[5], wit.rand[5] = wit.perm[6], wit.rand[6]
	refused("an element duplicated over another", out, outP, wit)
	// Two pseudonyms swapped and their payloads not (payloads moved to
	// other residents), with the permutation witness of the pseudonyms.
	out, outP = clone()
	out[0], out[1] = out[1], out[0]
	wit = stageWitness{perm: append([]int(nil), f.wit.perm...), rand: f.wit.rand}
	wit.perm[0], wit.perm[1] = wit.perm[1], wit.perm[0]
	refused("payloads left behind", out, outP, wit)
	// One element under another exponent.
	out, outP = clone()
	one := [][]Ciphertext{{out[7]}}
	if _, err := stage(RandomScalar(), Scalar{}, f.x, one, nil, false); err != nil {
		t.Fatal(err)
	}
	out[7] = one[0][0]
	refused("one element under another exponent", out, outP, f.wit)
	// A payload increased by one.
	out, outP = clone()
	extra, err := EncryptValues(f.x, []int64{1})
	if err != nil {
		t.Fatal(err)
	}
	if outP[2], err = AddValues([]ValueCiphertext{outP[2], extra[0]}); err != nil {
		t.Fatal(err)
	}
	refused("a payload increased by one", out, outP, f.wit)
	// Only the C1 of a payload changed.
	out, outP = clone()
	copy(outP[8][:PointSize], planted[0][:PointSize])
	refused("a payload's C1 changed", out, outP, f.wit)
	// Only the C2 of a payload changed: the payload moved by one.
	out, outP = clone()
	p1, p2, err := decodePair(outP[10][:])
	if err != nil {
		t.Fatal(err)
	}
	putPair(outP[10][:], p1, p2.Add(p2, ristretto255.NewGeneratorElement()))
	refused("a payload's C2 moved by B", out, outP, f.wit)
	// The key share stripped is not the stage's (v for another w).
	g := *f
	g.vv = ristretto255.NewScalar().Multiply(f.kv, ristretto255.NewScalar().Add(mustScalar(t, f.w), scalarFromUint64(1)))
	if err := g.proveAndVerify(t, f.out, f.outP, f.wit); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("proved with another v: %v, want ErrInvalidStageProof", err)
	}
	// ... and with V published for that v (V = v·B, but V ≠ k·W).
	g.keys.V = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(g.vv))
	if err := g.proveAndVerify(t, f.out, f.outP, f.wit); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("proved with another v and its V: %v, want ErrInvalidStageProof", err)
	}
}

func mustScalar(t *testing.T, s Scalar) *ristretto255.Scalar {
	t.Helper()
	x, err := s.decode()
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestStageProofProductArgument: cheats that each only one equation of the
// proof refuses (mutation-checked: with that equation taken out of prover
// and verifier, the cheat verifies). A stage that sends, instead of two
// permuted elements, two combinations of them ((2a + b)/3 and (a + 2b)/3
// of their images, which destroys both pseudonyms) can commit to a matrix
// whose rows sum to one and for which every linear equation holds; only
// the product argument (the chain) refuses it. Two pseudonyms scaled by 2
// and 1/2: only the row sums. A commitment to another permutation: only
// Σ e_i·U_i. A stage that strips another share than its own (its output
// consistent with V = v'·B for v' = k·(w+1)): only V = k·W.
func TestStageProofProductArgument(t *testing.T) {
	f := newCheatFixture(t, 6, false, RandomScalar())
	i0, i1 := f.wit.perm[0], f.wit.perm[1]
	two, minus1 := scalarFromUint64(2), ristretto255.NewScalar().Negate(scalarFromUint64(1))
	third := ristretto255.NewScalar().Invert(scalarFromUint64(3))
	out := append([]Ciphertext(nil), f.out...)
	combine := func(x, y Ciphertext) Ciphertext {
		x1, x2, _ := decodePair(x[:])
		y1, y2, _ := decodePair(y[:])
		c := func(p, q *ristretto255.Element) *ristretto255.Element {
			e := ristretto255.NewIdentityElement().MultiScalarMult([]*ristretto255.Scalar{two, scalarFromUint64(1)}, []*ristretto255.Element{p, q})
			return e.ScalarMult(third, e)
		}
		var ct Ciphertext
		putPair(ct[:], c(x1, y1), c(x2, y2))
		return ct
	}
	out[0], out[1] = combine(f.out[0], f.out[1]), combine(f.out[1], f.out[0])
	m := make([][]matrixEntry, len(out))
	for j, i := range f.wit.perm {
		m[i] = []matrixEntry{{j: j}}
	}
	m[i0] = []matrixEntry{{j: 0, c: two}, {j: 1, c: minus1}}
	m[i1] = []matrixEntry{{j: 0, c: minus1}, {j: 1, c: two}}
	if err := f.proveAndVerify(t, out, nil, stageWitness{matrix: m}); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("combinations with a matrix whose rows sum to one: %v, want ErrInvalidStageProof", err)
	}
	// The control: the same matrix machinery with the permutation itself.
	m[i0], m[i1] = []matrixEntry{{j: 0}}, []matrixEntry{{j: 1}}
	if err := f.proveAndVerify(t, f.out, nil, stageWitness{matrix: m}); err != nil {
		t.Errorf("the permutation as a matrix (control): %v", err)
	}

	// Two pseudonyms scaled by 2 and 1/2 (both destroyed): a matrix with
	// the product of the permutation's (2·1/2 = 1) whose rows do not sum
	// to one; only Σ U − Σ h = s̄·B refuses it.
	half := ristretto255.NewScalar().Invert(two)
	out = append([]Ciphertext(nil), f.out...)
	scale := func(x Ciphertext, c *ristretto255.Scalar) Ciphertext {
		x1, x2, _ := decodePair(x[:])
		var ct Ciphertext
		putPair(ct[:], x1.ScalarMult(c, x1), x2.ScalarMult(c, x2))
		return ct
	}
	out[0], out[1] = scale(f.out[0], half), scale(f.out[1], two)
	m[i0], m[i1] = []matrixEntry{{j: 0, c: two}}, []matrixEntry{{j: 1, c: half}}
	if err := f.proveAndVerify(t, out, nil, stageWitness{matrix: m}); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("two pseudonyms scaled by 2 and 1/2: %v, want ErrInvalidStageProof", err)
	}
	// A commitment to another permutation than the one the challenges are
	// permuted by: only Σ e_i·U_i = t·B + Σ e'_j·h_j refuses it.
	m[i0], m[i1] = []matrixEntry{{j: 0}}, []matrixEntry{{j: 1}}
	other := make([][]matrixEntry, len(m))
	copy(other, m)
	other[i0], other[i1] = m[i1], m[i0]
	if err := f.proveAndVerify(t, f.out, nil, stageWitness{matrix: m, commit: other}); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("a commitment to another permutation: %v, want ErrInvalidStageProof", err)
	}

	// Another share stripped, consistently.
	w := mustScalar(t, f.w)
	w1 := encodeScalar(ristretto255.NewScalar().Add(w, scalarFromUint64(1)))
	g := newCheatFixture(t, 6, false, w1)
	g.wkey = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(mustScalar(t, g.w).Subtract(mustScalar(t, g.w), scalarFromUint64(1))))
	if err := g.proveAndVerify(t, g.out, nil, g.wit); !errors.Is(err, ErrInvalidStageProof) {
		t.Errorf("another key share stripped: %v, want ErrInvalidStageProof", err)
	}
	g.wkey = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(mustScalar(t, g.w)))
	if err := g.proveAndVerify(t, g.out, nil, g.wit); err != nil {
		t.Errorf("the same stage checked against its own key (control): %v", err)
	}
}
