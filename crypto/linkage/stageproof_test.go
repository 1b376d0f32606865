package linkage_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// stageFixture is one group of a stage: two lists (the outer list with
// payloads, a filter list without) encrypted under a 3-member key, mixed by
// member 2 of the stage set {2, 3} with its weighted share (or by a first
// stage, with w = 0), with proofs.
type stageFixture struct {
	pk     *linkage.PublicKey
	wkey   linkage.Point
	in     [][]linkage.Ciphertext
	inP    [][]linkage.ValueCiphertext
	out    [][]linkage.Ciphertext
	outP   [][]linkage.ValueCiphertext
	keys   linkage.StageKeys
	proofs []linkage.StageProof
}

const stageCtx = "link-stage|q-1|epoch 3|cell 0|node-2"

func newStageFixture(t testing.TB, n int, first bool) stageFixture {
	t.Helper()
	pk, shares := ceremony(t, 3, 2)
	set := []uint64{2, 3}
	var w linkage.Scalar // zero: a first stage strips nothing
	wkey := linkage.Point{}
	if !first {
		var err error
		if w, err = linkage.Weighted(shares[2], set, 2); err != nil {
			t.Fatal(err)
		}
		if wkey, err = pk.WeightedKey(set, 2); err != nil {
			t.Fatal(err)
		}
	}
	f := stageFixture{pk: pk, wkey: wkey}
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(i % 7)
	}
	outer, err := linkage.EncryptPoints(pk.X, randomPoints(n))
	if err != nil {
		t.Fatal(err)
	}
	filter, err := linkage.EncryptPoints(pk.X, randomPoints(n/2+1))
	if err != nil {
		t.Fatal(err)
	}
	pays, err := linkage.EncryptValues(pk.X, vals)
	if err != nil {
		t.Fatal(err)
	}
	f.in = [][]linkage.Ciphertext{outer, filter}
	f.inP = [][]linkage.ValueCiphertext{pays, nil}
	f.out = [][]linkage.Ciphertext{append([]linkage.Ciphertext(nil), outer...), append([]linkage.Ciphertext(nil), filter...)}
	f.outP = [][]linkage.ValueCiphertext{append([]linkage.ValueCiphertext(nil), pays...), nil}
	if f.keys, f.proofs, err = linkage.StageProved(linkage.RandomScalar(), w, pk.X, f.out, f.outP, []byte(stageCtx)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f stageFixture) verify(l int, out []linkage.Ciphertext, outP []linkage.ValueCiphertext, proof *linkage.StageProof) error {
	return linkage.VerifyStage(f.keys, f.wkey, f.pk.X, []byte(stageCtx), l, f.in[l], f.inP[l], out, outP, proof)
}

// TestStageProof: the proof of each list of an honest stage (with
// payloads and without; a mixing stage and a first stage, which strips
// nothing) verifies, and the mixed lists are what Stage computes (they
// still decrypt to the same multiset; TestStageLinks covers the map). A
// stage that deviates in any way is refused with ErrInvalidStageProof:
// an element replaced, dropped and another duplicated, one element raised
// to another exponent, payloads swapped between pseudonyms, a payload
// changed, another member's key stripped (checked against its own key),
// the proof of another list or context, or its keys changed.
func TestStageProof(t *testing.T) {
	for _, first := range []bool{false, true} {
		f := newStageFixture(t, 40, first)
		for l := range f.out {
			if err := f.verify(l, f.out[l], f.outP[l], &f.proofs[l]); err != nil {
				t.Fatalf("first=%v list %d: honest proof: %v", first, l, err)
			}
		}
		if first {
			if f.keys.V != (linkage.Point{}) {
				t.Error("a first stage published V other than the identity")
			}
			continue
		}
		refused := func(name string, l int, out []linkage.Ciphertext, outP []linkage.ValueCiphertext, proof *linkage.StageProof) {
			t.Helper()
			if err := f.verify(l, out, outP, proof); !errors.Is(err, linkage.ErrInvalidStageProof) {
				t.Errorf("%s: %v, want ErrInvalidStageProof", name, err)
			}
		}
		cloneC := func(cs []linkage.Ciphertext) []linkage.Ciphertext { return append([]linkage.Ciphertext(nil), cs...) }
		cloneP := func(cs []linkage.ValueCiphertext) []linkage.ValueCiphertext {
			return append([]linkage.ValueCiphertext(nil), cs...)
		}

		// An element replaced by a fresh encryption (a planted candidate).
		planted, err := linkage.EncryptPoints(f.pk.X, randomPoints(1))
		if err != nil {
			t.Fatal(err)
		}
		out := cloneC(f.out[1])
		out[3] = planted[0]
		refused("an element replaced", 1, out, nil, &f.proofs[1])
		// One dropped, another duplicated.
		out = cloneC(f.out[1])
		out[5] = out[6]
		refused("an element duplicated over another", 1, out, nil, &f.proofs[1])
		// One element raised to another exponent (mixed again alone).
		out = cloneC(f.out[1])
		one := []linkage.Ciphertext{out[2]}
		if err := linkage.Stage(linkage.RandomScalar(), linkage.Scalar{}, f.pk.X, [][]linkage.Ciphertext{one}, nil); err != nil {
			t.Fatal(err)
		}
		out[2] = one[0]
		refused("one element under another exponent", 1, out, nil, &f.proofs[1])
		// Payloads swapped between two pseudonyms, or one changed.
		outP := cloneP(f.outP[0])
		outP[0], outP[1] = outP[1], outP[0]
		refused("payloads swapped", 0, f.out[0], outP, &f.proofs[0])
		outP = cloneP(f.outP[0])
		extra, err := linkage.EncryptValues(f.pk.X, []int64{1})
		if err != nil {
			t.Fatal(err)
		}
		if outP[4], err = linkage.AddValues([]linkage.ValueCiphertext{outP[4], extra[0]}); err != nil {
			t.Fatal(err)
		}
		refused("a payload increased by one", 0, f.out[0], outP, &f.proofs[0])
		// The proof of list 0 for list 1, of another context, other keys.
		if err := f.verify(1, f.out[1], nil, &f.proofs[0]); err == nil {
			t.Error("list 0's proof verifies for list 1")
		}
		if err := linkage.VerifyStage(f.keys, f.wkey, f.pk.X, []byte("another query"), 1, f.in[1], nil, f.out[1], nil, &f.proofs[1]); !errors.Is(err, linkage.ErrInvalidStageProof) {
			t.Errorf("another context: %v", err)
		}
		other := f.keys
		other.V = f.keys.K
		if err := linkage.VerifyStage(other, f.wkey, f.pk.X, []byte(stageCtx), 1, f.in[1], nil, f.out[1], nil, &f.proofs[1]); !errors.Is(err, linkage.ErrInvalidStageProof) {
			t.Errorf("another V: %v", err)
		}
		key3, err := f.pk.WeightedKey([]uint64{2, 3}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := linkage.VerifyStage(f.keys, key3, f.pk.X, []byte(stageCtx), 1, f.in[1], nil, f.out[1], nil, &f.proofs[1]); !errors.Is(err, linkage.ErrInvalidStageProof) {
			t.Errorf("checked against member 3's weighted key: %v", err)
		}
		zero := f.keys
		zero.K = linkage.Point{}
		if err := linkage.VerifyStage(zero, f.wkey, f.pk.X, []byte(stageCtx), 1, f.in[1], nil, f.out[1], nil, &f.proofs[1]); !errors.Is(err, linkage.ErrInvalidStageProof) {
			t.Errorf("K the identity: %v", err)
		}
		// The proof changed: a commitment, a chain link, a response.
		for name, change := range map[string]func(p *linkage.StageProof){
			"commitment": func(p *linkage.StageProof) { p.U[0], p.U[1] = p.U[1], p.U[0] },
			"chain":      func(p *linkage.StageProof) { p.Chain[2], p.Chain[3] = p.Chain[3], p.Chain[2] },
			"response":   func(p *linkage.StageProof) { p.Z[0], p.Z[1] = p.Z[1], p.Z[0] },
		} {
			p := f.proofs[1]
			p.U, p.Chain, p.Z = append([]linkage.Point(nil), p.U...), append([]linkage.Point(nil), p.Chain...), append([]linkage.Scalar(nil), p.Z...)
			change(&p)
			refused("a changed "+name, 1, f.out[1], nil, &p)
		}
	}
}

// TestStageProofWireForm: a proof survives its wire form, and the decoder
// refuses bytes of the wrong length or non-canonical elements.
func TestStageProofWireForm(t *testing.T) {
	f := newStageFixture(t, 9, false)
	b := f.proofs[0].MarshalBinary()
	p, err := linkage.ParseStageProof(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.verify(0, f.out[0], f.outP[0], p); err != nil {
		t.Fatalf("the parsed proof: %v", err)
	}
	if _, err := linkage.ParseStageProof(b[:len(b)-1]); !errors.Is(err, linkage.ErrEncoding) {
		t.Errorf("a truncated proof: %v, want ErrEncoding", err)
	}
	bad := append([]byte(nil), b...)
	bad[4] = 1 // the first commitment, odd: not canonical
	if _, err := linkage.ParseStageProof(bad); !errors.Is(err, linkage.ErrEncoding) {
		t.Errorf("a non-canonical commitment: %v, want ErrEncoding", err)
	}
}
