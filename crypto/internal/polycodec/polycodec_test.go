package polycodec

import (
	"errors"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

func testRing(t testing.TB) *ring.Ring {
	g := ring.NewNTTFriendlyPrimesGenerator(60, 1<<5)
	primes, err := g.NextDownstreamPrimes(2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ring.NewRing(16, primes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRoundTripAndRejects(t *testing.T) {
	r := testRing(t)
	a, b := r.NewPoly(), r.NewPoly()
	for i := range a.Coeffs {
		for j := range a.Coeffs[i] {
			a.Coeffs[i][j] = uint64(i*100 + j)
			b.Coeffs[i][j] = r.ModuliChain()[i] - 1 - uint64(j)
		}
	}
	id := [8]byte{1, 2, 3}
	h := Header{Kind: KindPublicKey, NumPolys: 2, Level: 1, ParamsID: id, Aux0: 7, Aux1: 9}
	enc, err := Encode(r, h, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != Size(16, 2, 1) {
		t.Fatalf("size %d", len(enc))
	}
	w := Want{Kind: KindPublicKey, NumPolys: 2, Level: 1, ParamsID: id}
	out := []ring.Poly{r.NewPoly(), r.NewPoly()}
	got, err := Decode(r, w, enc, out)
	if err != nil {
		t.Fatal(err)
	}
	if got != h || !out[0].Equal(&a) || !out[1].Equal(&b) {
		t.Fatal("round trip")
	}
	mut := func(f func([]byte) []byte) error {
		c := append([]byte(nil), enc...)
		_, err := Decode(r, w, f(c), out)
		return err
	}
	for name, f := range map[string]func([]byte) []byte{
		"magic":      func(b []byte) []byte { b[0] = 'X'; return b },
		"version":    func(b []byte) []byte { b[4] = 2; return b },
		"kind":       func(b []byte) []byte { b[5] = byte(KindCiphertext); return b },
		"count":      func(b []byte) []byte { b[6] = 3; return b },
		"level":      func(b []byte) []byte { b[7] = 0; return b },
		"level high": func(b []byte) []byte { b[7] = 200; return b },
		"params":     func(b []byte) []byte { b[8] ^= 1; return b },
		"short":      func(b []byte) []byte { return b[:len(b)-1] },
		"long":       func(b []byte) []byte { return append(b, 0) },
		"empty":      func(b []byte) []byte { return nil },
		"unreduced":  func(b []byte) []byte { copy(b[len(b)-8:], []byte{255, 255, 255, 255, 255, 255, 255, 255}); return b },
	} {
		if err := mut(f); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
