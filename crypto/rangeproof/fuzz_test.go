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
