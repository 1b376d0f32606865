package rangeproof

import (
	"errors"
	"testing"
)

// FuzzVerify: Verify and CheckTotal refuse, and never panic on, any bytes
// for the commitments and the proof; the seeds are a real proof and its
// truncations.
func FuzzVerify(f *testing.F) {
	ranges := []Range{{-55, 160_000_056}, {-1000, 1000}}
	com, err := Prove([]int64{7, -3}, ranges, ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(com.Commitments, com.Proof)
	f.Add(com.Commitments[:PointSize], com.Proof[:len(com.Proof)/2])
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, coms, proof []byte) {
		if err := Verify(coms, ranges, ctx, proof); err != nil && !errors.Is(err, ErrProof) {
			t.Fatalf("Verify: %v, not ErrProof", err)
		}
		encoded := make([]int64, EncodedLen(2))
		if _, err := CheckTotal([][]byte{coms, proof}, encoded, 2); err != nil && !errors.Is(err, ErrTotal) {
			t.Fatalf("CheckTotal: %v, not ErrTotal", err)
		}
	})
}

// FuzzCheckLink: LinkBound and CheckLink refuse, and never panic on, any
// bytes for the commitments and the link, any ciphertext index; the seeds
// are a real link (which passes) and its truncations.
func FuzzCheckLink(f *testing.F) {
	const tm, slots = 1099511480321, 16
	values := []int64{7, -3}
	c, err := Prove(values, []Range{{-55, 160_000_056}, {-1000, 1000}}, ctx)
	if err != nil {
		f.Fatal(err)
	}
	encoded := append(append([]int64(nil), values...), c.Limbs...)
	l := c.Linker(slots, tm)
	chal := make([][]uint64, numCiphertexts(len(values), slots))
	ans := make([][]uint64, len(chal))
	for i := range chal {
		mask, _, err := l.Mask(i)
		if err != nil {
			f.Fatal(err)
		}
		chal[i] = make([]uint64, slots)
		for j := range chal[i] {
			chal[i][j] = uint64(1+i*slots+j) * 7919
		}
		if err := l.Answer(i, chal[i]); err != nil {
			f.Fatal(err)
		}
		ans[i] = answerSlots(mask, chal[i], encoded, i, tm)
	}
	link := l.Link()
	f.Add(c.Commitments, link, 0)
	f.Add(c.Commitments, link, 1)
	f.Add(c.Commitments[:PointSize], link[:len(link)/2], 0)
	f.Add([]byte{}, []byte{}, -1)
	f.Fuzz(func(t *testing.T, coms, lk []byte, i int) {
		if _, err := LinkBound(coms, lk, slots, i); err != nil && !errors.Is(err, ErrLink) {
			t.Fatalf("LinkBound: %v, not ErrLink", err)
		}
		k := min(max(i, 0), len(chal)-1)
		err := CheckLink(coms, lk, slots, tm, i, chal[k], ans[k])
		if err != nil && !errors.Is(err, ErrLink) {
			t.Fatalf("CheckLink: %v, not ErrLink", err)
		}
		if i == k && string(coms) == string(c.Commitments) && string(lk) == string(link) && err != nil {
			t.Fatalf("the honest link of ciphertext %d: %v", i, err)
		}
	})
}

// FuzzVerifyLimbs: VerifyLimbs, LimbLinkBound and CheckLimbLink refuse,
// and never panic on, any bytes for the limbs' commitments, range proof,
// recomposition and link; the seeds are a real proof of limbs (which
// passes) and its truncations.
func FuzzVerifyLimbs(f *testing.F) {
	const tm, slots = 1099511480321, 16
	values := []int64{7, -3}
	c, err := Prove(values, []Range{{-55, 160_000_056}, {-1000, 1000}}, ctx)
	if err != nil {
		f.Fatal(err)
	}
	encoded := append(append([]int64(nil), values...), c.Limbs...)
	p, open, err := ProveLimbs(encoded, c.Commitments, ctx)
	if err != nil {
		f.Fatal(err)
	}
	l := open.Linker(slots, tm)
	mask, _, err := l.Mask(0)
	if err != nil {
		f.Fatal(err)
	}
	chal := make([]uint64, slots)
	for j := range chal {
		chal[j] = uint64(1+j) * 7919
	}
	if err := l.Answer(0, chal); err != nil {
		f.Fatal(err)
	}
	ans := answerSlots(mask, chal, encoded, 0, tm)
	link := l.Link()
	f.Add(p.Commitments, p.Proof, p.Recomposition, link)
	f.Add(p.Commitments[:PointSize], p.Proof[:len(p.Proof)/2], p.Recomposition[:recompositionSize], link[:len(link)/2])
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, coms, proof, rec, lk []byte) {
		q := &LimbProof{Commitments: coms, Proof: proof, Recomposition: rec}
		err := VerifyLimbs(c.Commitments, q, ctx)
		if err != nil && !errors.Is(err, ErrLimbs) && !errors.Is(err, ErrProof) {
			t.Fatalf("VerifyLimbs: %v, not ErrLimbs or ErrProof", err)
		}
		honest := string(coms) == string(p.Commitments) && string(proof) == string(p.Proof) && string(rec) == string(p.Recomposition)
		if honest && err != nil {
			t.Fatalf("the honest proof: %v", err)
		}
		if _, err := LimbLinkBound(c.Commitments, q, lk, slots, 0); err != nil && !errors.Is(err, ErrLink) {
			t.Fatalf("LimbLinkBound: %v, not ErrLink", err)
		}
		err = CheckLimbLink(c.Commitments, q, lk, slots, tm, 0, chal, ans)
		if err != nil && !errors.Is(err, ErrLink) {
			t.Fatalf("CheckLimbLink: %v, not ErrLink", err)
		}
		if honest && string(lk) == string(link) && err != nil {
			t.Fatalf("the honest link: %v", err)
		}
	})
}
