package rangeproof

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// answerSlots plays the proof of encryption's side of the link: slot j
// of its answer is mask_j + c_j*m_j modulo t (crypto/homomorphic's
// TestEncryptLinked checks that relation on real proofs).
func answerSlots(mask, c []uint64, m []int64, t uint64) []uint64 {
	out := make([]uint64, len(mask))
	tb := new(big.Int).SetUint64(t)
	for j := range mask {
		var mj int64
		if j < len(m) {
			mj = m[j]
		}
		a := new(big.Int).Mul(new(big.Int).SetUint64(c[j]), big.NewInt(mj))
		a.Add(a, new(big.Int).SetUint64(mask[j]))
		out[j] = a.Mod(a, tb).Uint64()
	}
	return out
}

// TestLink: the link of committed values to the slots that hold them
// verifies, over several ciphertexts; a slot that holds another value than
// its commitment's (minus a million behind a commitment to 5), another
// partial's commitments, a changed answer or a truncated link are refused,
// naming the ciphertext and the value.
func TestLink(t *testing.T) {
	const tm = 1099511480321 // a 40-bit plaintext modulus
	const slots = 8
	values := []int64{5, -3, 0, 1 << 30, -(1 << 30), 7, 8, 9, 10, 11, 12}
	ranges := make([]Range, len(values))
	for i := range ranges {
		ranges[i] = Range{Lo: -(1 << 31), Hi: 1 << 31}
	}
	c, err := Prove(values, ranges, []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(encrypted []int64) (link []byte, chal, ans [][]uint64) {
		l := c.Linker(slots, tm)
		for i := range 2 {
			mask, bound, err := l.Mask(i)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := LinkBound(c.Commitments, make([]byte, LinkSize(len(values))), slots, i); err != nil || len(got) != len(bound) {
				t.Fatalf("LinkBound: %d bytes, Mask bound %d: %v", len(got), len(bound), err)
			}
			ch := make([]uint64, slots)
			for j := range ch {
				ch[j] = rand.Uint64N(tm)
			}
			lo, hi := i*slots, min(len(encrypted), (i+1)*slots)
			if err := l.Answer(i, ch); err != nil {
				t.Fatal(err)
			}
			chal = append(chal, ch)
			ans = append(ans, answerSlots(mask, ch, encrypted[lo:hi], tm))
		}
		return l.Link(), chal, ans
	}
	link, chal, ans := run(values)
	if len(link) != LinkSize(len(values)) {
		t.Fatalf("link of %d bytes, LinkSize %d", len(link), LinkSize(len(values)))
	}
	for i := range 2 {
		if err := CheckLink(c.Commitments, link, slots, tm, i, chal[i], ans[i]); err != nil {
			t.Fatalf("ciphertext %d: %v", i, err)
		}
		// Its bound bytes are what Mask bound.
		if _, err := LinkBound(c.Commitments, link, slots, i); err != nil {
			t.Fatal(err)
		}
	}

	refused := func(name string, err error, want string) {
		t.Helper()
		if !errors.Is(err, ErrLink) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrLink saying %q", name, err, want)
		}
	}
	bad := append([]int64(nil), values...)
	bad[9] = -1_000_000
	badLink, badChal, badAns := run(bad)
	refused("minus a million behind a commitment to 11", CheckLink(c.Commitments, badLink, slots, tm, 1, badChal[1], badAns[1]), "ciphertext 1 does not encrypt the value committed to in slot 1 (value 9)")
	if err := CheckLink(c.Commitments, badLink, slots, tm, 0, badChal[0], badAns[0]); err != nil {
		t.Errorf("the honest ciphertext of that partial: %v", err)
	}
	other, err := Prove(values, ranges, []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	refused("another partial's commitments", CheckLink(other.Commitments, link, slots, tm, 0, chal[0], ans[0]), "does not encrypt the value committed to")
	changed := append([]uint64(nil), ans[0]...)
	changed[2] = (changed[2] + 1) % tm
	refused("a changed answer", CheckLink(c.Commitments, link, slots, tm, 0, chal[0], changed), "slot 2 (value 2)")
	refused("a truncated link", CheckLink(c.Commitments, link[:len(link)-1], slots, tm, 0, chal[0], ans[0]), "a link of")
	mangled := append([]byte(nil), link...)
	mangled[LinkValueSize+PointSize+linkZBytes+31] = 0xff // tau of value 1, not canonical
	refused("a non-canonical answer", CheckLink(c.Commitments, mangled, slots, tm, 0, chal[0], ans[0]), "not canonical")
}
