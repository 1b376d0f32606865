package rangeproof

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/gtank/ristretto255"
)

var ctx = []byte("query q1, epoch 3, node-1")

// TestRangeProof: values anywhere in their ranges, ends included, prove and
// verify, in one chunk and across several, with negative lower ends and
// every bit width; another context, other commitments, a changed or
// truncated proof do not verify.
func TestRangeProof(t *testing.T) {
	cases := []struct {
		name   string
		values []int64
		ranges []Range
	}{
		{"count", []int64{1234}, []Range{{-301, 50_000_302}}},
		{"ends", []int64{-301, 50_000_302, 0}, []Range{{-301, 50_000_302}, {-301, 50_000_302}, {0, 0}}},
		{"8 bits", []int64{3, 200}, []Range{{0, 255}, {-10, 200}}},
		{"64 bits", []int64{math.MaxInt64 / 2, -math.MaxInt64 / 2}, []Range{{-math.MaxInt64 / 2, math.MaxInt64 / 2}, {-math.MaxInt64 / 2, math.MaxInt64 / 2}}},
		{"chunks", seq(150, -5), rangesOf(150, -300, 40_000)},
		// Three chunks proven at once, two of 64 values and one of 20 (a
		// proof of the small one once wrote into the generators the large
		// ones used).
		{"chunks of two sizes", seq(148, -9), rangesOf(148, -55, 160_000_056)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			com, err := Prove(c.values, c.ranges, ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(com.Commitments) != PointSize*len(c.values) || len(com.Limbs) != Limbs*len(c.values) {
				t.Fatalf("%d bytes of commitments, %d limbs", len(com.Commitments), len(com.Limbs))
			}
			if err := Verify(com.Commitments, c.ranges, ctx, com.Proof); err != nil {
				t.Fatal(err)
			}
			refused := map[string]error{
				"other context": Verify(com.Commitments, c.ranges, []byte("query q2, epoch 3, node-1"), com.Proof),
				"truncated":     Verify(com.Commitments, c.ranges, ctx, com.Proof[:len(com.Proof)-1]),
				"other ranges":  Verify(com.Commitments, shifted(c.ranges, 1), ctx, com.Proof),
			}
			bad := bytes.Clone(com.Proof)
			bad[len(bad)-40] ^= 1 // in a, the final scalar of the inner-product argument
			refused["changed proof"] = Verify(com.Commitments, c.ranges, ctx, bad)
			other, err := Prove(c.values, c.ranges, ctx)
			if err != nil {
				t.Fatal(err)
			}
			refused["other commitments"] = Verify(other.Commitments, c.ranges, ctx, com.Proof)
			for what, err := range refused {
				if !errors.Is(err, ErrProof) {
					t.Errorf("%s: %v, want ErrProof", what, err)
				}
			}
		})
	}
}

// TestOutOfRangeDoesNotProve: Prove refuses a value outside its range,
// and a prover that goes on anyway (the proof made from the value's bits,
// as a cheating node would) does not verify below Lo, nor at or above
// Lo + 2^w (w = Width): minus a million for a count, one below the lower
// end, a 64-bit range whose difference wraps modulo 2^64. Between Hi and
// Lo + 2^w − 1 the proof verifies: that is what it proves, less than twice
// the range's width above Lo.
func TestOutOfRangeDoesNotProve(t *testing.T) {
	count := Range{-301, 50_000_302}
	w := Width(count)
	if w != 26 {
		t.Fatalf("width of %v: %d, want 26", count, w)
	}
	top := count.Lo + 1<<w - 1
	cases := []struct {
		v      int64
		r      Range
		proves bool
	}{
		{-1_000_000, count, false},
		{-302, count, false},
		{top + 1, count, false},
		{math.MaxInt64 / 4, count, false},
		{-1, Range{0, math.MaxInt64 / 2}, false},
		{math.MinInt64 + 5, Range{math.MinInt64 + 10, math.MaxInt64}, false},
		{count.Hi + 1, count, true},
		{top, count, true},
	}
	for _, c := range cases {
		if _, err := Prove([]int64{c.v}, []Range{c.r}, ctx); !errors.Is(err, ErrProof) {
			t.Errorf("Prove(%d in %v): %v, want ErrProof", c.v, c.r, err)
		}
		var gamma ristretto255.Scalar
		randomScalar(&gamma)
		com := commit(c.v, &gamma).Bytes()
		st, err := newStatement(ctx, 0, com, []Range{c.r})
		if err != nil {
			t.Fatal(err)
		}
		proof := st.prove([]int64{c.v}, []ristretto255.Scalar{gamma})
		err = Verify(com, []Range{c.r}, ctx, proof)
		if c.proves && err != nil {
			t.Errorf("a proof of %d in %v, within [Lo, Lo + 2^w − 1]: %v", c.v, c.r, err)
		}
		if !c.proves && !errors.Is(err, ErrProof) {
			t.Errorf("a proof of %d in %v: %v, want ErrProof", c.v, c.r, err)
		}
	}
}

// TestOutOfRangeDoesNotProveAggregated: the same in a proof of 20 values
// (560 bits, proven with the inner-product argument rather than l and r
// in the clear): one count of minus a million among honest ones does not
// verify, wherever it is.
func TestOutOfRangeDoesNotProveAggregated(t *testing.T) {
	ranges := rangesOf(20, -55, 160_000_056)
	if n := proofBits(ranges); n <= directBits {
		t.Fatalf("%d bits: the inner-product argument is not used", n)
	}
	for _, at := range []int{0, 7, 19} {
		values := seq(20, 0)
		values[at] = -1_000_000
		gammas := make([]ristretto255.Scalar, len(values))
		var coms []byte
		for j, v := range values {
			randomScalar(&gammas[j])
			coms = append(coms, commit(v, &gammas[j]).Bytes()...)
		}
		st, err := newStatement(ctx, 0, coms, ranges)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(coms, ranges, ctx, st.prove(values, gammas)); !errors.Is(err, ErrProof) {
			t.Errorf("minus a million at %d: %v, want ErrProof", at, err)
		}
		values[at] = 5 // the control: the same proof made honestly verifies
		coms = coms[:0]
		for j, v := range values {
			coms = append(coms, commit(v, &gammas[j]).Bytes()...)
		}
		st, err = newStatement(ctx, 0, coms, ranges)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(coms, ranges, ctx, st.prove(values, gammas)); err != nil {
			t.Errorf("the control at %d: %v", at, err)
		}
	}
}

// TestVerifyAll: a batch of honest proofs verifies at once; with one bad
// proof among them (another context, another partial's commitments, a
// count of minus a million proven in a wider range) exactly that one is
// refused.
func TestVerifyAll(t *testing.T) {
	ranges := rangesOf(3, -55, 160_000_056)
	var items []Item
	for i := range 6 {
		n := 3
		if i == 5 {
			n = 150 // several chunks, the inner-product argument
		}
		rs := rangesOf(n, -55, 160_000_056)
		com, err := Prove(seq(n, int64(i)), rs, ctx)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, Item{Commitments: com.Commitments, Ranges: rs, Context: ctx, Proof: com.Proof})
	}
	for i, err := range VerifyAll(items) {
		if err != nil {
			t.Fatalf("honest item %d: %v", i, err)
		}
	}
	wide, err := Prove([]int64{-1_000_000, 3, 4}, rangesOf(3, -2_000_000, 2_000_000), ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]Item{
		"another context":               {Commitments: items[1].Commitments, Ranges: ranges, Context: []byte("other"), Proof: items[1].Proof},
		"another partial's commitments": {Commitments: items[2].Commitments, Ranges: ranges, Context: ctx, Proof: items[1].Proof},
		"minus a million":               {Commitments: wide.Commitments, Ranges: ranges, Context: ctx, Proof: wide.Proof},
		"truncated":                     {Commitments: items[1].Commitments, Ranges: ranges, Context: ctx, Proof: items[1].Proof[:10]},
	} {
		batch := append([]Item{}, items...)
		batch[3] = bad
		for i, err := range VerifyAll(batch) {
			if (i == 3) != errors.Is(err, ErrProof) {
				t.Errorf("%s at 3: item %d: %v", name, i, err)
			}
		}
	}
}

// TestCheckTotal: the sum of three partials' values and limbs passes and
// gives the value totals; a total off by one in one slot or wrapped modulo
// t, changed limbs, a partial left out or counted twice fail, naming the
// slot.
func TestCheckTotal(t *testing.T) {
	ranges := rangesOf(4, -300, 1_000_000)
	parts := [][]int64{{10, 0, -300, 999_999}, {7, 5, 1, 0}, {0, 100, 2, 3}}
	var coms [][]byte
	encoded := make([]int64, EncodedLen(4))
	for _, vs := range parts {
		com, err := Prove(vs, ranges, ctx)
		if err != nil {
			t.Fatal(err)
		}
		coms = append(coms, com.Commitments)
		for j, v := range append(append([]int64{}, vs...), com.Limbs...) {
			encoded[j] += v
		}
	}
	got, err := CheckTotal(coms, encoded, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{17, 105, -297, 1_000_002}; !slices.Equal(got, want) {
		t.Errorf("totals %v, want %v", got, want)
	}
	offByOne := append([]int64{}, encoded...)
	offByOne[2]--
	limbs := append([]int64{}, encoded...)
	limbs[4+Limbs+3]++
	// A sum that wrapped modulo the plaintext modulus t decrypts to the
	// true sum minus t: not the committed values' sum either.
	wrapped := append([]int64{}, encoded...)
	wrapped[0] -= 1099512938497
	for what, c := range map[string]struct {
		coms    [][]byte
		encoded []int64
	}{
		"off by one":  {coms, offByOne},
		"wrapped":     {coms, wrapped},
		"limbs":       {coms, limbs},
		"left out":    {coms[:2], encoded},
		"twice":       {append(append([][]byte{}, coms...), coms[0]), encoded},
		"short total": {coms, encoded[:len(encoded)-1]},
	} {
		if _, err := CheckTotal(c.coms, c.encoded, 4); !errors.Is(err, ErrTotal) {
			t.Errorf("%s: %v, want ErrTotal", what, err)
		}
	}
	if _, err := CheckTotal(coms, offByOne, 4); err == nil || !bytes.Contains([]byte(err.Error()), []byte("slot 2")) {
		t.Errorf("off by one: %v, want slot 2 named", err)
	}
}

// TestBlindingLimbs: the limbs of a blinding are in range and give it back.
func TestBlindingLimbs(t *testing.T) {
	for range 20 {
		var g ristretto255.Scalar
		randomScalar(&g)
		limbs := BlindingLimbs(&g)
		for _, v := range limbs {
			if v < 0 || v >= 1<<LimbBits {
				t.Fatalf("limb %d out of range", v)
			}
		}
		if fromLimbs(limbs).Equal(&g) != 1 {
			t.Fatal("limbs do not give the blinding back")
		}
	}
}

func seq(n int, from int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)*37
	}
	return out
}

func rangesOf(n int, lo, hi int64) []Range {
	out := make([]Range, n)
	for i := range out {
		out[i] = Range{lo, hi}
	}
	return out
}

func shifted(rs []Range, d int64) []Range {
	out := make([]Range, len(rs))
	for i, r := range rs {
		out[i] = Range{r.Lo + d, r.Hi + d}
	}
	return out
}
