package collective_test

import (
	"bytes"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

func addSeeds(f *testing.F, bs ...[]byte) {
	for _, b := range bs {
		f.Add(b)
		f.Add(b[:32])
		f.Add(b[:len(b)-8])
		f.Add(append(bytes.Clone(b), 1))
		bad := bytes.Clone(b)
		bad[16] ^= 1 // aux field
		f.Add(bad)
	}
	f.Add([]byte{})
}

type fixture struct {
	p   homomorphic.Params
	nw  *network
	crs []byte
	ckg []byte
	rk  *homomorphic.ResultKey
	ct  *homomorphic.Ciphertext
	ks  []byte
	thr map[uint64][]byte
	ts  []byte
}

func newFixture(f *testing.F) *fixture {
	p := testParams(f)
	fx := &fixture{p: p, nw: newNetwork(f, p, 2)}
	var err error
	if fx.crs, err = collective.NewCRS(); err != nil {
		f.Fatal(err)
	}
	if fx.ckg, err = collective.CKGShare(p, fx.nw.sks[0], fx.crs); err != nil {
		f.Fatal(err)
	}
	fx.rk, _ = homomorphic.GenResultKey(p)
	cts, err := homomorphic.Encrypt(p, fx.nw.pk, []int64{1, 2, 3})
	if err != nil {
		f.Fatal(err)
	}
	fx.ct = cts[0]
	if fx.ks, err = collective.KeySwitchShare(p, fx.nw.sks[0], fx.rk.Public(), fx.ct); err != nil {
		f.Fatal(err)
	}
	if fx.thr, err = collective.ThresholdDeal(p, fx.nw.sks[0], 2, []uint64{1, 2}); err != nil {
		f.Fatal(err)
	}
	thr2, err := collective.ThresholdDeal(p, fx.nw.sks[1], 2, []uint64{1, 2})
	if err != nil {
		f.Fatal(err)
	}
	ts, err := collective.ThresholdAggregate(p, 1, [][]byte{fx.thr[1], thr2[1]})
	if err != nil {
		f.Fatal(err)
	}
	if fx.ts, err = ts.MarshalBinary(); err != nil {
		f.Fatal(err)
	}
	return fx
}

func FuzzCKGAggregate(f *testing.F) {
	fx := newFixture(f)
	addSeeds(f, fx.ckg, fx.ks)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = collective.CKGAggregate(fx.p, fx.crs, [][]byte{fx.ckg, b})
	})
}

func FuzzKeySwitchCombine(f *testing.F) {
	fx := newFixture(f)
	addSeeds(f, fx.ks, fx.ckg)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := collective.KeySwitchCombine(fx.p, fx.ct, [][]byte{fx.ks, b})
		if err == nil {
			if _, err := homomorphic.Decrypt(fx.p, fx.rk, []*homomorphic.Ciphertext{out}, 3); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzUnmarshalThresholdShare(f *testing.F) {
	fx := newFixture(f)
	addSeeds(f, fx.ts, fx.thr[1])
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := collective.UnmarshalThresholdShare(fx.p, b)
		if err != nil {
			return
		}
		out, err := ts.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("not canonical: %v", err)
		}
		_, _ = ts.Additive(fx.p, []uint64{ts.Self(), ts.Self() ^ 1 | 1<<40})
	})
}

func FuzzThresholdAggregate(f *testing.F) {
	fx := newFixture(f)
	addSeeds(f, fx.thr[1], fx.thr[2], fx.ts)
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := collective.ThresholdAggregate(fx.p, 1, [][]byte{fx.thr[1], b})
		if err == nil {
			_, _ = ts.Additive(fx.p, []uint64{1, 2})
		}
	})
}

// FuzzKeyCheck: a key-check challenge made from any share bytes and any
// seed is refused or made, never a panic; one that is made is made the same
// again (KeyCheckHonest) and its member, where the share is node 0's,
// decrypts it to its values.
func FuzzKeyCheck(f *testing.F) {
	fx := newFixture(f)
	seed := bytes.Repeat([]byte{7}, collective.KeyCheckSeedSize)
	for _, b := range [][]byte{fx.ckg, fx.ks, fx.ckg[:32], {}} {
		f.Add(b, seed)
	}
	f.Add(fx.ckg, seed[:31])
	f.Fuzz(func(t *testing.T, share, seed []byte) {
		ct, values, err := collective.KeyCheckRecompute(fx.p, fx.crs, share, seed, 3, 2)
		if err != nil {
			return
		}
		b, err := ct.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		honest, again, err := collective.KeyCheckHonest(fx.p, fx.crs, share, seed, 3, 2, b)
		if err != nil || !honest || !equal(again, values) {
			t.Fatalf("the seed does not make its challenge again: honest %v, %v", honest, err)
		}
		if bytes.Equal(share, fx.ckg) {
			got, err := collective.KeyCheckDecrypt(fx.p, fx.nw.sks[0], ct)
			if err != nil || !equal(got, values) {
				t.Fatalf("node 0 does not decrypt its own challenge: %v", err)
			}
		}
	})
}

// FuzzCheckDealtShare: a dealt share's check against its dealer's CKG
// share and images never panics on any bytes for the share or the images,
// and passes only the honest pair.
func FuzzCheckDealtShare(f *testing.F) {
	p := testParams(f)
	nw := newNetwork(f, p, 2)
	dealt, images, err := collective.ThresholdDealChecked(p, nw.sks[0], 2, []uint64{1, 2}, nw.crs, nw.ckg[0])
	if err != nil {
		f.Fatal(err)
	}
	share := dealt[2]
	f.Add(share, images)
	f.Add(share[:32], images)
	f.Add(share, images[:40])
	f.Add([]byte{}, []byte{})
	bad := bytes.Clone(share)
	bad[100] ^= 1
	f.Add(bad, images)
	f.Fuzz(func(t *testing.T, s, imgs []byte) {
		if err := collective.CheckDealtShare(p, nw.crs, nw.ckg[0], imgs, 2, s); err == nil && (!bytes.Equal(s, share) || !bytes.Equal(imgs, images)) {
			t.Fatalf("a share or images other than the dealer's passed (%d, %d bytes)", len(s), len(imgs))
		}
	})
}
