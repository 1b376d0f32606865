package rangeproof

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// answerSlots plays the proof of encryption's side of the link for
// ciphertext i: slot j of its answer is mask_j + c_j*m_j modulo t, m_j the
// (i*slots + j)-th of encoded, zero past its end (crypto/homomorphic's
// TestEncryptLinked checks that relation on real proofs).
func answerSlots(mask, c []uint64, encoded []int64, i int, t uint64) []uint64 {
	out := make([]uint64, len(mask))
	tb := new(big.Int).SetUint64(t)
	for j := range mask {
		var mj int64
		if k := i*len(mask) + j; k < len(encoded) {
			mj = encoded[k]
		}
		a := new(big.Int).Mul(new(big.Int).SetUint64(c[j]), big.NewInt(mj))
		a.Add(a, new(big.Int).SetUint64(mask[j]))
		out[j] = a.Mod(a, tb).Uint64()
	}
	return out
}

// TestLink: the link of committed values to the slots that hold them
// verifies over every ciphertext of a partial (values, limbs, padding);
// a slot that holds another value than its commitment's (minus a million
// behind a commitment), something in a padding slot, another partial's
// commitments, a changed answer or a truncated link are refused, naming the
// ciphertext and the value or the padding.
func TestLink(t *testing.T) {
	const tm = 1099511480321 // a 40-bit plaintext modulus
	const slots = 64
	values := make([]int64, 70) // ciphertext 0: values 0-63; 1: values 64-69, then limbs; 12: limbs, then padding
	for i := range values {
		values[i] = int64(i*7919%20001) - 10000
	}
	values[3], values[4] = 1<<30, -(1 << 30)
	ranges := make([]Range, len(values))
	for i := range ranges {
		ranges[i] = Range{Lo: -(1 << 31), Hi: 1 << 31}
	}
	c, err := Prove(values, ranges, []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	honest := append(append([]int64(nil), values...), c.Limbs...)
	n := numCiphertexts(len(values), slots)
	if n != 13 || paddingIn(len(values), slots, 12) != 2 || paddingIn(len(values), slots, 11) != slots {
		t.Fatalf("layout: %d ciphertexts, padding of the last from %d", n, paddingIn(len(values), slots, 12))
	}
	run := func(encoded []int64) (link []byte, chal, ans [][]uint64, bounds [][]byte) {
		l := c.Linker(slots, tm)
		for i := range n {
			mask, bound, err := l.Mask(i)
			if err != nil {
				t.Fatal(err)
			}
			ch := make([]uint64, slots)
			for j := range ch {
				ch[j] = rand.Uint64N(tm)
			}
			if err := l.Answer(i, ch); err != nil {
				t.Fatal(err)
			}
			chal, bounds = append(chal, ch), append(bounds, bound)
			ans = append(ans, answerSlots(mask, ch, encoded, i, tm))
		}
		return l.Link(), chal, ans, bounds
	}
	link, chal, ans, bounds := run(honest)
	if len(link) != LinkSize(len(values), slots) || LinkSize(len(values), slots) != 70*LinkValueSize+13*64 {
		t.Fatalf("link of %d bytes, LinkSize %d", len(link), LinkSize(len(values), slots))
	}
	for i := range n {
		if err := CheckLink(c.Commitments, link, slots, tm, i, chal[i], ans[i]); err != nil {
			t.Fatalf("ciphertext %d: %v", i, err)
		}
		// What the verifier binds into the proof of encryption is what the
		// prover bound.
		if got, err := LinkBound(c.Commitments, link, slots, i); err != nil || string(got) != string(bounds[i]) {
			t.Fatalf("ciphertext %d: LinkBound differs from the bound of Mask: %v", i, err)
		}
	}

	refused := func(name string, err error, want string) {
		t.Helper()
		if !errors.Is(err, ErrLink) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrLink saying %q", name, err, want)
		}
	}
	bad := append([]int64(nil), honest...)
	bad[65] = -1_000_000
	badLink, badChal, badAns, _ := run(bad)
	refused("minus a million behind a commitment", CheckLink(c.Commitments, badLink, slots, tm, 1, badChal[1], badAns[1]), "ciphertext 1 does not encrypt the value committed to in slot 1 (value 65)")
	if err := CheckLink(c.Commitments, badLink, slots, tm, 0, badChal[0], badAns[0]); err != nil {
		t.Errorf("the honest ciphertext of that partial: %v", err)
	}
	padded := append(append([]int64(nil), honest...), 0, 0, 7)
	padLink, padChal, padAns, _ := run(padded)
	refused("a 7 in a padding slot", CheckLink(c.Commitments, padLink, slots, tm, 12, padChal[12], padAns[12]), "ciphertext 12 has something other than zero in its slots after the values and their limbs (from slot 2)")
	// Limbs are not linked: changed limbs pass (the release's check of the
	// total against the commitments refuses them).
	limbs := append([]int64(nil), honest...)
	limbs[len(values)+5]++
	limbLink, limbChal, limbAns, _ := run(limbs)
	for i := range n {
		if err := CheckLink(c.Commitments, limbLink, slots, tm, i, limbChal[i], limbAns[i]); err != nil {
			t.Errorf("changed limbs, ciphertext %d: %v (limbs are not linked)", i, err)
		}
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
	refused("no such ciphertext", CheckLink(c.Commitments, link, slots, tm, n, chal[0], ans[0]), "no ciphertext 13")
	mangled := append([]byte(nil), link...)
	mangled[LinkValueSize+PointSize+linkZBytes+31] = 0xff // tau of value 1, not canonical
	refused("a non-canonical answer", CheckLink(c.Commitments, mangled, slots, tm, 0, chal[0], ans[0]), "not canonical")
}
