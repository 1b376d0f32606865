package rangeproof

import (
	"fmt"
	"testing"
)

// BenchmarkRangeProof: proving and verifying d values in a count's range
// of the default catalogue (28 bits: [-55, 160,000,056]), with the size of
// the commitments and the proof.
func BenchmarkRangeProof(b *testing.B) {
	for _, d := range []int{1, 64, 1024} {
		ranges := rangesOf(d, -55, 160_000_056)
		values := seq(d, 0)
		b.Run(fmt.Sprintf("prove/d=%d", d), func(b *testing.B) {
			for b.Loop() {
				if _, err := Prove(values, ranges, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		com, err := Prove(values, ranges, ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("verify/d=%d", d), func(b *testing.B) {
			b.ReportMetric(float64(len(com.Proof)+len(com.Commitments)), "bytes")
			for b.Loop() {
				if err := Verify(com.Commitments, ranges, ctx, com.Proof); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyAll: one decryptor's check of the range proofs of n
// partials of d count slots each, all at once (VerifyAll).
func BenchmarkVerifyAll(b *testing.B) {
	for _, c := range []struct{ n, d int }{{10, 1}, {100, 1}, {10, 530}} {
		ranges := rangesOf(c.d, -55, 160_000_056)
		items := make([]Item, c.n)
		for i := range items {
			com, err := Prove(seq(c.d, int64(i)), ranges, ctx)
			if err != nil {
				b.Fatal(err)
			}
			items[i] = Item{Commitments: com.Commitments, Ranges: ranges, Context: ctx, Proof: com.Proof}
		}
		b.Run(fmt.Sprintf("n=%d/d=%d", c.n, c.d), func(b *testing.B) {
			for b.Loop() {
				for _, err := range VerifyAll(items) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkLink: a node's link of d values (its masks' commitments and
// answers, without the proof of encryption) and a checker's CheckLink, in
// ciphertexts of 8192 slots.
func BenchmarkLink(b *testing.B) {
	const tm, slots = 1099511480321, 8192
	for _, d := range []int{1, 530} {
		values := make([]int64, d)
		c := Commit(values)
		chal := make([]uint64, slots)
		for j := range chal {
			chal[j] = uint64(j+1) * 7919 % tm
		}
		var mask []uint64
		var link []byte
		b.Run(fmt.Sprintf("make/d=%d", d), func(b *testing.B) {
			for b.Loop() {
				l := c.Linker(slots, tm)
				var err error
				if mask, _, err = l.Mask(0); err != nil {
					b.Fatal(err)
				}
				if err := l.Answer(0, chal); err != nil {
					b.Fatal(err)
				}
				link = l.Link()
			}
		})
		ans := answerSlots(mask, chal, append(append([]int64(nil), values...), c.Limbs...), 0, tm)
		b.Run(fmt.Sprintf("check/d=%d", d), func(b *testing.B) {
			for b.Loop() {
				if err := CheckLink(c.Commitments, link, slots, tm, 0, chal, ans); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
