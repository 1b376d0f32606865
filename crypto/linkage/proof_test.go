package linkage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gtank/ristretto255"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// proofFixture is a 3-member, threshold-2 key, the stage set {1, 3}, member
// 1's weighted share and its decryption shares of n random C1s.
type proofFixture struct {
	pk     *linkage.PublicKey
	shares map[uint64]linkage.Scalar
	set    []uint64
	w      linkage.Scalar
	c1s    []linkage.Point
	ds     []linkage.Point
}

func newProofFixture(t testing.TB, n int) proofFixture {
	t.Helper()
	pk, shares := ceremony(t, 3, 2)
	f := proofFixture{pk: pk, shares: shares, set: []uint64{1, 3}, c1s: randomPoints(n)}
	var err error
	if f.w, err = linkage.Weighted(shares[1], f.set, 1); err != nil {
		t.Fatal(err)
	}
	if f.ds, err = linkage.PartialDecrypt(f.w, f.c1s); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestShareProof: a proof of a member's decryption shares verifies against
// the weighted key the epoch's public verification keys give for that member
// and set; it fails (ErrInvalidProof) for a share off by anything, shares of
// another member or another set, shares swapped, another context, other
// ciphertexts, another member's key, or a changed proof. A member cannot
// prove shares it did not make with its own weighted share.
func TestShareProof(t *testing.T) {
	const ctx = "link-finish|q-1|epoch 3|node-1"
	f := newProofFixture(t, 300)
	wkey, err := f.pk.WeightedKey(f.set, 1)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := linkage.ProveShares(f.w, []byte(ctx), f.c1s, f.ds)
	if err != nil {
		t.Fatal(err)
	}
	if err := linkage.VerifyShares(wkey, []byte(ctx), f.c1s, f.ds, proof); err != nil {
		t.Fatalf("honest proof: %v", err)
	}

	// The weighted keys of a set sum to X: they are the public side of
	// Weighted.
	w3, err := linkage.Weighted(f.shares[3], f.set, 3)
	if err != nil {
		t.Fatal(err)
	}
	key3, err := f.pk.WeightedKey(f.set, 3)
	if err != nil {
		t.Fatal(err)
	}
	sum := ristretto255.NewIdentityElement().Add(element(t, wkey), element(t, key3))
	if point(sum) != f.pk.X {
		t.Error("the weighted keys of the set do not sum to X")
	}

	refused := func(name string, wkey linkage.Point, ctx string, c1s, ds []linkage.Point, proof linkage.ShareProof) {
		t.Helper()
		if err := linkage.VerifyShares(wkey, []byte(ctx), c1s, ds, proof); !errors.Is(err, linkage.ErrInvalidProof) {
			t.Errorf("%s: %v, want ErrInvalidProof", name, err)
		}
	}
	clone := func(ps []linkage.Point) []linkage.Point { return append([]linkage.Point(nil), ps...) }

	// One share off by B (what a decryptor shifting a payload sum by one
	// would send), at the start, in the middle and at the end.
	for _, i := range []int{0, 150, 299} {
		bad := clone(f.ds)
		bad[i] = point(ristretto255.NewIdentityElement().Add(element(t, bad[i]), ristretto255.NewGeneratorElement()))
		refused("a share off by B", wkey, ctx, f.c1s, bad, proof)
		// Its maker's own proof of it does not verify either.
		own, err := linkage.ProveShares(f.w, []byte(ctx), f.c1s, bad)
		if err != nil {
			t.Fatal(err)
		}
		refused("a share off by B, proved by its maker", wkey, ctx, f.c1s, bad, own)
	}
	// Shares made with member 3's weighted share, or member 1's weight for
	// another set, and proved by their maker: they do not verify as member
	// 1's for this set.
	other, err := linkage.PartialDecrypt(w3, f.c1s)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := linkage.ProveShares(w3, []byte(ctx), f.c1s, other)
	if err != nil {
		t.Fatal(err)
	}
	refused("member 3's shares and proof", wkey, ctx, f.c1s, other, p3)
	if err := linkage.VerifyShares(key3, []byte(ctx), f.c1s, other, p3); err != nil {
		t.Errorf("member 3's proof against its own key: %v", err)
	}
	wOther, err := linkage.Weighted(f.shares[1], []uint64{1, 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	dOther, err := linkage.PartialDecrypt(wOther, f.c1s)
	if err != nil {
		t.Fatal(err)
	}
	pOther, err := linkage.ProveShares(wOther, []byte(ctx), f.c1s, dOther)
	if err != nil {
		t.Fatal(err)
	}
	refused("member 1's shares for the set {1, 2}", wkey, ctx, f.c1s, dOther, pOther)
	// Two shares swapped.
	swapped := clone(f.ds)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	refused("two shares swapped", wkey, ctx, f.c1s, swapped, proof)
	// Another context: another query, list or member.
	refused("another context", wkey, "link-finish|q-2|epoch 3|node-1", f.c1s, f.ds, proof)
	// Other ciphertexts (and their honest shares) under the same proof.
	more := newProofFixture(t, 300)
	refused("other ciphertexts", wkey, ctx, more.c1s, more.ds, proof)
	refused("one ciphertext fewer", wkey, ctx, f.c1s[1:], f.ds[1:], proof)
	// Another member's key.
	refused("member 3's key", key3, ctx, f.c1s, f.ds, proof)
	// The proof changed: its challenge, its response.
	for _, at := range []int{0, linkage.ScalarSize} {
		bad := proof
		bad[at] ^= 1
		if err := linkage.VerifyShares(wkey, []byte(ctx), f.c1s, f.ds, bad); err == nil {
			t.Errorf("the proof with byte %d changed verifies", at)
		}
	}

	// Inputs that are not canonical are named, not proved or verified.
	bad := clone(f.ds)
	bad[7] = linkage.Point{0x01} // odd: not a canonical encoding
	if err := linkage.VerifyShares(wkey, []byte(ctx), f.c1s, bad, proof); !errors.Is(err, linkage.ErrEncoding) || !contains(err, "element 7: share") {
		t.Errorf("a non-canonical share: %v, want ErrEncoding naming element 7", err)
	}
	if err := linkage.VerifyShares(wkey, []byte(ctx), f.c1s, f.ds[:5], proof); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("mismatched lengths: %v, want ErrInvalidArgument", err)
	}
	if _, err := f.pk.WeightedKey(f.set, 2); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("WeightedKey for a member outside the set: %v, want ErrInvalidArgument", err)
	}
	if _, err := f.pk.WeightedKey([]uint64{1, 9}, 9); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("WeightedKey for a member without a key: %v, want ErrInvalidArgument", err)
	}
}

// TestShareProofDecryptsValues: the proofs of a full stage set's shares of
// a payload sum verify, and the shares decrypt it; a decryptor that shifts
// its share by v·B (to move the sum by -v) is caught by its proof.
func TestShareProofDecryptsValues(t *testing.T) {
	pk, shares := ceremony(t, 3, 2)
	set := []uint64{2, 3}
	cts, err := linkage.EncryptValues(pk.X, []int64{40, -7, 12})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := linkage.AddValues(cts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := []byte("link-decrypt|q-9")
	c1 := []linkage.Point{linkage.Point(sum[:linkage.PointSize])}
	var ds []linkage.Point
	for _, j := range set {
		w, err := linkage.Weighted(shares[j], set, j)
		if err != nil {
			t.Fatal(err)
		}
		d, err := linkage.DecryptShare(w, sum)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := linkage.ProveShares(w, ctx, c1, []linkage.Point{d})
		if err != nil {
			t.Fatal(err)
		}
		key, err := pk.WeightedKey(set, j)
		if err != nil {
			t.Fatal(err)
		}
		if err := linkage.VerifyShares(key, ctx, c1, []linkage.Point{d}, proof); err != nil {
			t.Errorf("member %d: %v", j, err)
		}
		if j == 3 {
			// Shifted by 5·B, with the honest proof: refused.
			five := ristretto255.NewIdentityElement().ScalarBaseMult(scalarOf(5))
			shifted := point(ristretto255.NewIdentityElement().Add(element(t, d), five))
			if err := linkage.VerifyShares(key, ctx, c1, []linkage.Point{shifted}, proof); !errors.Is(err, linkage.ErrInvalidProof) {
				t.Errorf("a share shifted by 5·B: %v, want ErrInvalidProof", err)
			}
		}
		ds = append(ds, d)
	}
	v, err := linkage.CombineDecryption(sum, ds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := linkage.DiscreteLog(v, 1000)
	if err != nil || got != 45 {
		t.Fatalf("decrypted %d (%v), want 45", got, err)
	}
}

// TestShareProofEmpty: a proof over no shares still proves knowledge of w
// for W, and does not verify under another key.
func TestShareProofEmpty(t *testing.T) {
	f := newProofFixture(t, 0)
	wkey, err := f.pk.WeightedKey(f.set, 1)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := linkage.ProveShares(f.w, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := linkage.VerifyShares(wkey, nil, nil, nil, proof); err != nil {
		t.Fatal(err)
	}
	key3, err := f.pk.WeightedKey(f.set, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := linkage.VerifyShares(key3, nil, nil, nil, proof); !errors.Is(err, linkage.ErrInvalidProof) {
		t.Errorf("under member 3's key: %v, want ErrInvalidProof", err)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
