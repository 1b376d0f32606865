package linkage_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// FuzzParse: the decoders of wire bytes never panic, accept exactly what
// they can re-encode to the same bytes, and reject everything else with
// ErrEncoding.
func FuzzParse(f *testing.F) {
	x := linkage.HashIdentifier("seed", "x")
	c, err := linkage.EncryptPoints(x, []linkage.Point{linkage.RandomPoint()})
	if err != nil {
		f.Fatal(err)
	}
	s := linkage.RandomScalar()
	ff := bytes.Repeat([]byte{0xff}, 64)
	for _, seed := range [][]byte{
		nil, {0}, make([]byte, 32), make([]byte, 64), x[:], s[:], c[0][:], ff, ff[:32],
		append([]byte{1}, make([]byte, 31)...), // odd: not canonical as a point
		append(x[:], ff[:32]...),               // good C1, bad C2
		{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // p−1
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(name string, out []byte, err error) {
			if err != nil {
				if !errors.Is(err, linkage.ErrEncoding) {
					t.Errorf("%s: error %v is not ErrEncoding", name, err)
				}
				return
			}
			if !bytes.Equal(out, b) {
				t.Errorf("%s: accepted %x as %x", name, b, out)
			}
		}
		p, err := linkage.ParsePoint(b)
		check("point", p[:], err)
		sc, err := linkage.ParseScalar(b)
		check("scalar", sc[:], err)
		ct, err := linkage.ParseCiphertext(b)
		check("ciphertext", ct[:], err)
		vc, err := linkage.ParseValueCiphertext(b)
		check("value ciphertext", vc[:], err)
		if len(b) == 64 {
			// Stage must reject exactly what ParseCiphertext rejects, and
			// never panic.
			var c linkage.Ciphertext
			copy(c[:], b)
			lists := [][]linkage.Ciphertext{{c}}
			serr := linkage.Stage(linkage.RandomScalar(), linkage.Scalar{}, x, lists, nil)
			if (serr == nil) != (err == nil) {
				t.Errorf("Stage: %v, ParseCiphertext: %v", serr, err)
			}
		}
	})
}

// FuzzVerifyShares: verifying any bytes as a proof of any shares never
// panics, and a proof of honest shares never verifies for shares, a
// context or a proof changed by the fuzzer.
func FuzzVerifyShares(f *testing.F) {
	pk, shares := ceremony(f, 3, 2)
	set := []uint64{1, 2}
	w, err := linkage.Weighted(shares[1], set, 1)
	if err != nil {
		f.Fatal(err)
	}
	wkey, err := pk.WeightedKey(set, 1)
	if err != nil {
		f.Fatal(err)
	}
	c1s := randomPoints(3)
	ds, err := linkage.PartialDecrypt(w, c1s)
	if err != nil {
		f.Fatal(err)
	}
	ctx := []byte("fuzz")
	proof, err := linkage.ProveShares(w, ctx, c1s, ds)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ctx, proof[:], ds[0][:], uint8(0))
	f.Add([]byte("other"), proof[:], ds[0][:], uint8(1))
	f.Add(ctx, make([]byte, 64), make([]byte, 32), uint8(2))
	f.Fuzz(func(t *testing.T, c, p, share []byte, at uint8) {
		var pr linkage.ShareProof
		copy(pr[:], p)
		got := append([]linkage.Point(nil), ds...)
		copy(got[int(at)%len(got)][:], share)
		err := linkage.VerifyShares(wkey, c, c1s, got, pr)
		honest := bytes.Equal(c, ctx) && pr == proof && got[int(at)%len(got)] == ds[int(at)%len(ds)]
		if honest != (err == nil) {
			t.Errorf("context %x, proof %x, share %d = %x: %v", c, p, int(at)%len(got), share, err)
		}
		if err != nil && !errors.Is(err, linkage.ErrInvalidProof) && !errors.Is(err, linkage.ErrEncoding) {
			t.Errorf("error %v is neither ErrInvalidProof nor ErrEncoding", err)
		}
	})
}

// FuzzStageProof: any bytes parse as a stage proof only if they re-encode
// to themselves, and a parsed proof checked against an honest stage's
// lists never panics and verifies only if it is the honest proof.
func FuzzStageProof(f *testing.F) {
	fx := newStageFixture(f, 3, false)
	honest := fx.proofs[1].MarshalBinary()
	f.Add(honest)
	f.Add(honest[:len(honest)-1])
	f.Add([]byte{0, 0, 0, 0})
	f.Add(append([]byte{0, 0, 0, 2}, make([]byte, 2*64+11*32)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := linkage.ParseStageProof(b)
		if err != nil {
			if !errors.Is(err, linkage.ErrEncoding) {
				t.Errorf("error %v is not ErrEncoding", err)
			}
			return
		}
		if !bytes.Equal(p.MarshalBinary(), b) {
			t.Errorf("accepted %x as %x", b, p.MarshalBinary())
		}
		err = fx.verify(1, fx.out[1], nil, p)
		if (err == nil) != bytes.Equal(b, honest) {
			t.Errorf("proof %x: %v", b, err)
		}
	})
}
