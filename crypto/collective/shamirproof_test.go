package collective_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// checkedDealing deals threshold shares among nw's members at points with
// images, checks every share against its dealer's images and aggregates
// them; it returns the members' shares and images (P(x), by point).
func checkedDealing(t testing.TB, nw *network, threshold int, points []uint64) (map[uint64]*collective.ThresholdShare, map[uint64][]byte, [][]byte) {
	t.Helper()
	inbox := map[uint64][][]byte{}
	var images [][]byte
	for i, sk := range nw.sks {
		dealt, imgs, err := collective.ThresholdDealChecked(nw.p, sk, threshold, points, nw.crs, nw.ckg[i])
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, imgs)
		for x, b := range dealt {
			if err := collective.CheckDealtShare(nw.p, nw.crs, nw.ckg[i], imgs, x, b); err != nil {
				t.Fatalf("dealer %d to point %d: %v", i, x, err)
			}
			inbox[x] = append(inbox[x], b)
		}
	}
	shares := map[uint64]*collective.ThresholdShare{}
	pub := map[uint64][]byte{}
	for _, x := range points {
		ts, err := collective.ThresholdAggregate(nw.p, x, inbox[x])
		if err != nil {
			t.Fatal(err)
		}
		shares[x] = ts
		if pub[x], err = collective.ThresholdImage(nw.p, nw.ckg, images, x); err != nil {
			t.Fatal(err)
		}
	}
	return shares, pub, images
}

// TestCheckedDealing: every honest share passes its recipient's check
// against the dealer's CKG share and images; a share of another dealer, a
// share for another point, a share shifted by one, and a share checked
// against another dealer's images are refused with ErrDealing.
func TestCheckedDealing(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 4)
	points := []uint64{1, 2, 3, 4}
	dealt, imgs, err := collective.ThresholdDealChecked(p, nw.sks[0], 3, points, nw.crs, nw.ckg[0])
	if err != nil {
		t.Fatal(err)
	}
	dealt1, imgs1, err := collective.ThresholdDealChecked(p, nw.sks[1], 3, points, nw.crs, nw.ckg[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range points {
		if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], imgs, x, dealt[x]); err != nil {
			t.Fatalf("point %d: %v", x, err)
		}
	}
	cases := []struct {
		name       string
		ckg, imgs  []byte
		x          uint64
		share      []byte
		wantDealer bool
	}{
		{"another dealer's share", nw.ckg[0], imgs, 2, dealt1[2], true},
		{"the share of point 3 for point 2", nw.ckg[0], imgs, 2, collective.RelabelShamirShareForTest(t, p, dealt[3], 2), true},
		{"a share plus one", nw.ckg[0], imgs, 2, collective.ShiftShamirShareForTest(t, p, dealt[2], 1), true},
		{"another dealer's images", nw.ckg[1], imgs1, 2, dealt[2], true},
		{"the dealer's CKG share with another's images", nw.ckg[0], imgs1, 2, dealt[2], true},
	}
	for _, c := range cases {
		err := collective.CheckDealtShare(p, nw.crs, c.ckg, c.imgs, c.x, c.share)
		if !errors.Is(err, collective.ErrDealing) {
			t.Fatalf("%s: got %v, want ErrDealing", c.name, err)
		}
	}
	if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], imgs, 3, dealt[2]); !errors.Is(err, collective.ErrDealing) {
		t.Fatalf("point 2's share checked as point 3's: %v", err)
	}
	auxed := bytes.Clone(imgs)
	auxed[24] ^= 1 // the header's second aux field: 2, two sets
	if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], auxed, 2, dealt[2]); !errors.Is(err, collective.ErrMalformed) {
		t.Fatalf("images of another version: %v", err)
	}
	// The second set: one coefficient off in A'_1 fails the check under a';
	// in A'_0, the proof that ties it to the CKG share; another dealer's
	// proof, and the first set alone (a dealer of the version before), are
	// refused with ErrDealing too. Each names the dealer.
	off := func(k int) []byte {
		b := bytes.Clone(imgs)
		b[collective.ImageCoefficientOffsetForTest(p, 3, k)] ^= 1 // still below its prime
		return b
	}
	proofOf := func(b []byte) []byte { return b[collective.ImageCoefficientOffsetForTest(p, 3, 3):] }
	swapped := append(bytes.Clone(imgs[:collective.ImageCoefficientOffsetForTest(p, 3, 3)]), proofOf(imgs1)...)
	for name, b := range map[string][]byte{
		"A'_1 off by one":    off(1),
		"A'_0 off by one":    off(0),
		"another's proof":    swapped,
		"the first set only": collective.OneSetImagesForTest(t, p, imgs),
	} {
		if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], b, 2, dealt[2]); !errors.Is(err, collective.ErrDealing) {
			t.Fatalf("%s: got %v, want ErrDealing", name, err)
		}
	}
	// The coordinator's check of the images' shape when they arrive.
	if err := collective.CheckImagesShape(p, imgs, 3); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		b []byte
		t int
	}{
		"the first set only": {collective.OneSetImagesForTest(t, p, imgs), 3},
		"another threshold":  {imgs, 2},
		"a truncated proof":  {imgs[:len(imgs)-1], 3},
		"no proof":           {imgs[:collective.ImageCoefficientOffsetForTest(p, 3, 3)], 3},
	} {
		if err := collective.CheckImagesShape(p, c.b, c.t); !errors.Is(err, collective.ErrMalformed) {
			t.Fatalf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	if _, _, err := collective.ThresholdDealChecked(p, nw.sks[0], 1, points, nw.crs, nw.ckg[0]); err == nil {
		t.Fatal("a checked dealing with threshold 1")
	}
}

// TestThresholdKeySwitchShareProof: in a 3-of-5 epoch with a checked
// dealing, proven key-switch shares of the three decryptors verify against
// their images, combine and decrypt (also beside a share made by
// KeySwitchShare with Additive's secret: the same Lagrange coefficient);
// a shifted share, another member's image, another active set, another
// ciphertext, target or context, an unproven share and no proof are
// refused; a member whose share is not the one its image fixes cannot
// prove.
func TestThresholdKeySwitchShareProof(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 5)
	points := []uint64{1, 2, 3, 4, 5}
	ts, pub, _ := checkedDealing(t, nw, 3, points)
	values := []int64{5, -7, 1 << 30}
	cts, other, rk, rk2 := switchCase(t, nw, values)
	var err error
	active := []uint64{2, 4, 5}
	ctx := func(x uint64) []byte { return []byte{'m', byte('0' + x)} }
	shares := make([][]byte, len(active))
	proofs := make([][]byte, len(active))
	for i, x := range active {
		if shares[i], proofs[i], err = collective.ThresholdKeySwitchShareProven(p, ts[x], active, rk.Public(), cts[0], nw.crs, pub[x], ctx(x)); err != nil {
			t.Fatal(err)
		}
		if err := collective.VerifyThresholdKeySwitchShare(p, rk.Public(), cts[0], nw.crs, pub[x], x, active, shares[i], proofs[i], ctx(x)); err != nil {
			t.Fatalf("point %d: %v", x, err)
		}
	}
	t.Logf("%s: threshold key-switch proof %d bytes", p.Name(), len(proofs[0]))
	decrypt := func(shares [][]byte) []int64 {
		t.Helper()
		switched, err := collective.KeySwitchCombine(p, cts[0], shares)
		if err != nil {
			t.Fatal(err)
		}
		got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{switched}, len(values))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := decrypt(shares); !equal(got, values) {
		t.Fatalf("proven shares decrypt to %v, want %v", got, values)
	}
	sk4, err := ts[4].Additive(p, active)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := collective.KeySwitchShare(p, sk4, rk.Public(), cts[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := decrypt([][]byte{shares[0], plain, shares[2]}); !equal(got, values) {
		t.Fatalf("beside Additive's share: %v, want %v", got, values)
	}

	// A share made now and proven later (ShareWitness, the on-demand
	// proof of a release whose total was refused) verifies the same way.
	later, w, err := collective.ThresholdKeySwitchShareWitness(p, ts[5], active, rk.Public(), cts[0], nw.crs, pub[5], nil)
	if err != nil {
		t.Fatal(err)
	}
	proofLater, err := w.Prove(ctx(5))
	if err != nil {
		t.Fatal(err)
	}
	if err := collective.VerifyThresholdKeySwitchShare(p, rk.Public(), cts[0], nw.crs, pub[5], 5, active, later, proofLater, ctx(5)); err != nil {
		t.Fatalf("a share proven later: %v", err)
	}
	if got := decrypt([][]byte{shares[0], shares[1], later}); !equal(got, values) {
		t.Fatalf("with the share proven later: %v, want %v", got, values)
	}
	w.Wipe()
	if _, err := w.Prove(ctx(5)); err == nil {
		t.Fatal("a wiped witness proved")
	}

	shift, err := homomorphic.Encrypt(p, rk.Public(), []int64{1000})
	if err != nil {
		t.Fatal(err)
	}
	shifted := collective.ShiftShareForTest(t, p, shares[1], shift[0])
	cases := []struct {
		name         string
		target       *homomorphic.PublicKey
		ct           *homomorphic.Ciphertext
		image        []byte
		active       []uint64
		share, proof []byte
		ctx          []byte
	}{
		{"a shifted share", rk.Public(), cts[0], pub[4], active, shifted, proofs[1], ctx(4)},
		{"an unproven share under a proof", rk.Public(), cts[0], pub[4], active, plain, proofs[1], ctx(4)},
		{"another member's image", rk.Public(), cts[0], collective.RelabelImageForTest(t, p, pub[2], 4), active, shares[1], proofs[1], ctx(4)},
		{"another active set", rk.Public(), cts[0], pub[4], []uint64{1, 4, 5}, shares[1], proofs[1], ctx(4)},
		{"another ciphertext", rk.Public(), other[0], pub[4], active, shares[1], proofs[1], ctx(4)},
		{"another target", rk2.Public(), cts[0], pub[4], active, shares[1], proofs[1], ctx(4)},
		{"another context", rk.Public(), cts[0], pub[4], active, shares[1], proofs[1], ctx(2)},
		{"no proof", rk.Public(), cts[0], pub[4], active, shares[1], nil, ctx(4)},
	}
	for _, c := range cases {
		err := collective.VerifyThresholdKeySwitchShare(p, c.target, c.ct, nw.crs, c.image, 4, c.active, c.share, c.proof, c.ctx)
		if !errors.Is(err, collective.ErrThresholdProof) {
			t.Fatalf("%s: got %v, want ErrThresholdProof", c.name, err)
		}
	}
	// A share from an unchecked dealing (a dealer that sent point 4 a share
	// one off): the member's aggregate is not the one the images fix, and
	// no proof can be made.
	inbox := map[uint64][][]byte{}
	var images [][]byte
	for i, sk := range nw.sks {
		dealt, imgs, err := collective.ThresholdDealChecked(p, sk, 3, points, nw.crs, nw.ckg[i])
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			dealt[4] = collective.ShiftShamirShareForTest(t, p, dealt[4], 1)
		}
		images = append(images, imgs)
		for x, b := range dealt {
			inbox[x] = append(inbox[x], b)
		}
	}
	bad, err := collective.ThresholdAggregate(p, 4, inbox[4])
	if err != nil {
		t.Fatal(err)
	}
	img4, err := collective.ThresholdImage(p, nw.ckg, images, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collective.ThresholdKeySwitchShareProven(p, bad, active, rk.Public(), cts[0], nw.crs, img4, ctx(4)); err == nil {
		t.Fatal("a share proven with an aggregate its image does not fix")
	}
}

// TestThresholdImageBound: the image's error bound grows as K*19*sum x^k;
// a committee of 10 with T = 6 fits a proof, 30 with T = 20 does not, and
// an image whose bound does not is refused with ErrThresholdProof;
// ThresholdImagesWithin leaves such points out and keeps the others.
func TestThresholdImageBound(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 2)
	points := []uint64{1, 2}
	_, imgs, err := collective.ThresholdDealChecked(p, nw.sks[0], 2, points, nw.crs, nw.ckg[0])
	if err != nil {
		t.Fatal(err)
	}
	_, imgs1, err := collective.ThresholdDealChecked(p, nw.sks[1], 2, points, nw.crs, nw.ckg[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collective.ThresholdImage(p, nw.ckg, [][]byte{imgs, imgs1}, 2); err != nil {
		t.Fatal(err)
	}
	if b := collective.DealBoundForTest(10, 6); b != 19*111111 {
		t.Fatalf("x = 10, T = 6: bound %d, want 19*111111 = 2,111,109", b)
	}
	if b := collective.DealBoundForTest(10, 6) * 10; b >= 1<<40 {
		t.Fatalf("K = 10, T = 6: bound %d", b)
	}
	// Every member's image at once is each member's alone.
	all, err := collective.ThresholdImages(p, nw.ckg, [][]byte{imgs, imgs1}, points)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range points {
		one, err := collective.ThresholdImage(p, nw.ckg, [][]byte{imgs, imgs1}, x)
		if err != nil || !bytes.Equal(one, all[i]) {
			t.Fatalf("point %d: ThresholdImages differs from ThresholdImage (%v)", x, err)
		}
	}
	if b := collective.DealBoundForTest(30, 20); b != 0 && b*30 < 1<<40 {
		t.Fatalf("K = 30, T = 20: bound %d fits", b*30)
	}
	if _, err := collective.ThresholdImage(p, nw.ckg, [][]byte{imgs, imgs1}, 1<<40); !errors.Is(err, collective.ErrThresholdProof) {
		t.Fatalf("a point far out: %v", err)
	}
	// With such a point among others, ThresholdImages refuses them all;
	// ThresholdImagesWithin keeps the images of the points that fit, each
	// ThresholdImage's, and leaves the far one out.
	mixed := []uint64{1, 1 << 40, 2}
	if _, err := collective.ThresholdImages(p, nw.ckg, [][]byte{imgs, imgs1}, mixed); !errors.Is(err, collective.ErrThresholdProof) {
		t.Fatalf("ThresholdImages with a point far out: %v", err)
	}
	within, err := collective.ThresholdImagesWithin(p, nw.ckg, [][]byte{imgs, imgs1}, mixed)
	if err != nil || len(within) != 3 || within[1] != nil || !bytes.Equal(within[0], all[0]) || !bytes.Equal(within[2], all[1]) {
		t.Fatalf("ThresholdImagesWithin: %d images, the far one %v, %v", len(within), within[1] != nil, err)
	}
	// Past 2^58 a share cannot be told from a wrong one: the check says so
	// (the node then installs the share unchecked) rather than refuse.
	dealt, imgs30, err := collective.ThresholdDealChecked(p, nw.sks[0], 2, []uint64{1, 1 << 58}, nw.crs, nw.ckg[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], imgs30, 1<<58, dealt[1<<58]); !errors.Is(err, collective.ErrDealingUncheckable) {
		t.Fatalf("a point whose bound passes 2^58: %v", err)
	}
}

// BenchmarkThresholdKeySwitchShareProof: a threshold key-switch share with
// its proof, then its check (10 members, T = 6, production set).
func BenchmarkThresholdKeySwitchShareProof(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 10)
	points := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	ts, pub, _ := checkedDealing(b, nw, 6, points)
	cts, err := homomorphic.Encrypt(p, nw.pk, []int64{1})
	if err != nil {
		b.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		b.Fatal(err)
	}
	active := []uint64{1, 3, 5, 7, 9, 10}
	share, proof, err := collective.ThresholdKeySwitchShareProven(p, ts[10], active, rk.Public(), cts[0], nw.crs, pub[10], []byte("ctx"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("prove", func(b *testing.B) {
		for b.Loop() {
			if share, proof, err = collective.ThresholdKeySwitchShareProven(p, ts[10], active, rk.Public(), cts[0], nw.crs, pub[10], []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(proof)), "proof-bytes")
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if err := collective.VerifyThresholdKeySwitchShare(p, rk.Public(), cts[0], nw.crs, pub[10], 10, active, share, proof, []byte("ctx")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckedDealing: a dealer's checked dealing to 10 members with
// T = 6 (its images in two sets, with their proof), and a recipient's
// check of one share (production set).
func BenchmarkCheckedDealing(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 10)
	points := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	dealt, imgs, err := collective.ThresholdDealChecked(p, nw.sks[0], 6, points, nw.crs, nw.ckg[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("deal", func(b *testing.B) {
		for b.Loop() {
			if dealt, imgs, err = collective.ThresholdDealChecked(p, nw.sks[0], 6, points, nw.crs, nw.ckg[0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(imgs)), "image-bytes")
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], imgs, 10, dealt[10]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDealingSlackRefused: the slack one set of images allowed is gone
// (docs/crypto.md, "Two sets of images"). A dealer that hands the member at
// point 2 its share moved by a^-1*eta, eta short, passes the check under a
// but not under a': the member refuses it with ErrDealing. A member that
// aggregates such a share anyway (a decryptor that makes its key-switch
// share with a neighbour of its own) cannot prove it against its image in
// two sets; against the one-set image of an epoch of the version before, it
// still proves, and the release decrypts to something else than the values
// (the slack as it was, which is what the second set removes).
func TestDealingSlackRefused(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	points := []uint64{1, 2, 3}
	inbox := map[uint64][][]byte{}
	var images [][]byte
	for i, sk := range nw.sks {
		dealt, imgs, err := collective.ThresholdDealChecked(p, sk, 2, points, nw.crs, nw.ckg[i])
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			eta := make([]int64, collective.RingNForTest(p))
			eta[0] = 1
			if dealt[2], err = collective.NeighbourShare(p, nw.crs, dealt[2], eta); err != nil {
				t.Fatal(err)
			}
		}
		for x, b := range dealt {
			err := collective.CheckDealtShare(p, nw.crs, nw.ckg[i], imgs, x, b)
			switch {
			case i == 0 && x == 2:
				if !errors.Is(err, collective.ErrDealing) || !strings.Contains(err.Error(), "share*a'") {
					t.Fatalf("a share moved by a^-1 passed its check under a': %v", err)
				}
			case err != nil:
				t.Fatalf("dealer %d to point %d: %v", i, x, err)
			}
			inbox[x] = append(inbox[x], b)
		}
		images = append(images, imgs)
	}
	values := []int64{5, -7, 1 << 30}
	cts, _, rk, _ := switchCase(t, nw, values)
	active := []uint64{1, 2}
	var shares [][]byte
	for _, x := range active {
		ts, err := collective.ThresholdAggregate(p, x, inbox[x])
		if err != nil {
			t.Fatal(err)
		}
		img, err := collective.ThresholdImage(p, nw.ckg, images, x)
		if err != nil {
			t.Fatal(err)
		}
		if x == 2 {
			if _, _, err := collective.ThresholdKeySwitchShareProven(p, ts, active, rk.Public(), cts[0], nw.crs, img, []byte("ctx")); !errors.Is(err, collective.ErrThresholdProof) {
				t.Fatalf("the moved share proven against both images: %v", err)
			}
			img = collective.FirstImageOnlyForTest(t, p, img)
		}
		share, proof, err := collective.ThresholdKeySwitchShareProven(p, ts, active, rk.Public(), cts[0], nw.crs, img, []byte("ctx"))
		if err != nil {
			t.Fatalf("point %d cannot prove its share: %v", x, err)
		}
		if err := collective.VerifyThresholdKeySwitchShare(p, rk.Public(), cts[0], nw.crs, img, x, active, share, proof, []byte("ctx")); err != nil {
			t.Fatalf("point %d: %v", x, err)
		}
		shares = append(shares, share)
	}
	switched, err := collective.KeySwitchCombine(p, cts[0], shares)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{switched}, len(values))
	if err == nil && equal(got, values) {
		t.Fatal("a release using the moved share decrypted right: the one-set image's slack is not what the docs say")
	}
}
