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
