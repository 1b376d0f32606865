package linkage

import (
	"fmt"
	"testing"

	"github.com/gtank/ristretto255"
)

// TestUniformUnbiased: draws from [0, 6) and the 6 permutations of 3
// elements are uniform (chi-square, 5 degrees of freedom; the threshold
// 25 fails a fair source with probability about 1.4e-4).
func TestUniformUnbiased(t *testing.T) {
	const draws = 60000
	rr := newRandReader()
	chi2 := func(counts map[string]int, cells int) float64 {
		if len(counts) != cells {
			t.Fatalf("%d cells seen, want %d", len(counts), cells)
		}
		exp := float64(draws) / float64(cells)
		var x float64
		for _, c := range counts {
			d := float64(c) - exp
			x += d * d / exp
		}
		return x
	}
	counts := map[string]int{}
	for range draws {
		counts[fmt.Sprint(uniform(rr, 6))]++
	}
	if x := chi2(counts, 6); x > 25 {
		t.Errorf("uniform(6): chi-square %.1f: %v", x, counts)
	}
	perms := map[string]int{}
	cs := make([]Ciphertext, 3)
	ps := make([]ValueCiphertext, 3)
	for range draws {
		for i := range cs {
			cs[i] = Ciphertext{byte(i)}
			ps[i] = ValueCiphertext{byte(i)}
		}
		shuffle(rr, cs, ps, nil)
		for i := range cs {
			if cs[i][0] != ps[i][0] {
				t.Fatal("payloads permuted differently")
			}
		}
		perms[fmt.Sprint(cs[0][0], cs[1][0], cs[2][0])]++
	}
	if x := chi2(perms, 6); x > 25 {
		t.Errorf("shuffle of 3: chi-square %.1f: %v", x, perms)
	}
	// A bound near 2^64, where a biased method would be off most.
	for range 1000 {
		if v := uniform(rr, 1<<63+1); v > 1<<63 {
			t.Fatalf("uniform out of range: %d", v)
		}
	}
}

// TestParallelLowestError: whatever the scheduling, the error of the lowest
// index wins.
func TestParallelLowestError(t *testing.T) {
	for range 50 {
		err := parallel(1000, func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				if i%300 == 299 {
					return fmt.Errorf("at %d", i)
				}
			}
			return nil
		})
		if err == nil || err.Error() != "at 299" {
			t.Fatalf("got %v, want at 299", err)
		}
	}
	calls := 0
	if err := parallel(0, func(lo, hi int) error { calls++; return nil }); err != nil || calls != 0 {
		t.Errorf("n=0: %v, %d calls", err, calls)
	}
}

// TestScalarFromInt64: the branch-free signed encoding agrees with
// negating |v|, including at the ends of int64.
func TestScalarFromInt64(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 42, -42, 1 << 62, -(1 << 62), 9223372036854775807, -9223372036854775808} {
		var want *ristretto255.Scalar
		if v >= 0 {
			want = scalarFromUint64(uint64(v))
		} else {
			want = ristretto255.NewScalar().Negate(scalarFromUint64(uint64(-(v + 1)) + 1))
		}
		if scalarFromInt64(v).Equal(want) != 1 {
			t.Errorf("scalarFromInt64(%d) wrong", v)
		}
	}
}

// TestCombineSharesReduces: a non-canonical share is read as its integer
// modulo l (and canonical shares add as scalars).
func TestCombineSharesReduces(t *testing.T) {
	a, b := RandomScalar(), RandomScalar()
	as, _ := a.decode()
	bs, _ := b.decode()
	if CombineShares([]Scalar{a, b}) != encodeScalar(ristretto255.NewScalar().Add(as, bs)) {
		t.Error("a+b wrong")
	}
	// l + 5 spells 5 modulo l.
	l5 := Scalar{0xed + 5, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 31: 0x10}
	if CombineShares([]Scalar{l5}) != encodeScalar(scalarFromUint64(5)) {
		t.Error("l+5 is not 5")
	}
	if CombineShares(nil) != (Scalar{}) {
		t.Error("empty sum is not 0")
	}
}
