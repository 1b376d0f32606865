package collective_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestShareMadeAgain: a key-switch share made with a nonce is made again,
// bit for bit, from the same secret and inputs, and the witness made the
// second time proves the share handed out the first time, in an epoch with
// T = K and in a threshold epoch. Its randomness changes with every input:
// another nonce, ciphertext, target or active set gives another mask h1
// (the part of a share that depends on its randomness and target only), so
// no two shares ever share their noise; without a nonce every share draws
// fresh randomness.
func TestShareMadeAgain(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	values := []int64{5, -7, 1 << 30}
	cts, other, rk, rk2 := switchCase(t, nw, values)
	nonce := []byte("q-1/epoch-1/node-1/0")
	mask := func(share []byte) []uint64 { return collective.ShareMaskForTest(t, p, share) }

	t.Run("threshold = committee", func(t *testing.T) {
		switchShare := func(target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, nonce []byte) ([]byte, *collective.ShareWitness) {
			t.Helper()
			share, w, err := collective.KeySwitchShareWitness(p, nw.sks[0], target, ct, nw.crs, nw.ckg[0], nonce)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Wipe)
			return share, w
		}
		first, _ := switchShare(rk.Public(), cts[0], nonce)
		again, w := switchShare(rk.Public(), cts[0], nonce)
		if !bytes.Equal(first, again) {
			t.Fatal("the same inputs made another share")
		}
		proof, err := w.Prove([]byte("ctx"))
		if err != nil {
			t.Fatal(err)
		}
		if err := collective.VerifyKeySwitchShare(p, rk.Public(), cts[0], nw.crs, nw.ckg[0], first, proof, []byte("ctx")); err != nil {
			t.Fatalf("the witness made again does not prove the first share: %v", err)
		}
		for name, share := range map[string][]byte{
			"another nonce":      first2(switchShare(rk.Public(), cts[0], []byte("q-2/epoch-1/node-1/0"))),
			"another ciphertext": first2(switchShare(rk.Public(), other[0], nonce)),
			"no nonce":           first2(switchShare(rk.Public(), cts[0], nil)),
		} {
			if slices.Equal(mask(share), mask(first)) {
				t.Errorf("%s: the same randomness", name)
			}
		}
		a, _ := switchShare(rk.Public(), cts[0], nil)
		b, _ := switchShare(rk.Public(), cts[0], nil)
		if slices.Equal(mask(a), mask(b)) {
			t.Error("two shares without a nonce drew the same randomness")
		}
		o, _ := switchShare(rk2.Public(), cts[0], nonce)
		o2, _ := switchShare(rk2.Public(), cts[0], nonce)
		if !bytes.Equal(o, o2) || bytes.Equal(o, first) {
			t.Error("towards another target: not made again, or the same share")
		}
	})

	t.Run("threshold", func(t *testing.T) {
		nw := newNetwork(t, p, 5)
		cts, other, rk, _ := switchCase(t, nw, values)
		ts, pub, _ := checkedDealing(t, nw, 3, []uint64{1, 2, 3, 4, 5})
		active := []uint64{2, 4, 5}
		switchShare := func(ct *homomorphic.Ciphertext, active []uint64, nonce []byte) ([]byte, *collective.ShareWitness) {
			t.Helper()
			share, w, err := collective.ThresholdKeySwitchShareWitness(p, ts[4], active, rk.Public(), ct, nw.crs, pub[4], nonce)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Wipe)
			return share, w
		}
		first, _ := switchShare(cts[0], active, nonce)
		again, w := switchShare(cts[0], active, nonce)
		if !bytes.Equal(first, again) {
			t.Fatal("the same inputs made another share")
		}
		proof, err := w.Prove([]byte("ctx"))
		if err != nil {
			t.Fatal(err)
		}
		if err := collective.VerifyThresholdKeySwitchShare(p, rk.Public(), cts[0], nw.crs, pub[4], 4, active, first, proof, []byte("ctx")); err != nil {
			t.Fatalf("the witness made again does not prove the first share: %v", err)
		}
		for name, share := range map[string][]byte{
			"another nonce":      first2(switchShare(cts[0], active, []byte("q-2"))),
			"another ciphertext": first2(switchShare(other[0], active, nonce)),
			"another active set": first2(switchShare(cts[0], []uint64{1, 4, 5}, nonce)),
			"no nonce":           first2(switchShare(cts[0], active, nil)),
		} {
			if slices.Equal(mask(share), mask(first)) {
				t.Errorf("%s: the same randomness", name)
			}
		}
	})
}

func first2(share []byte, _ *collective.ShareWitness) []byte { return share }
