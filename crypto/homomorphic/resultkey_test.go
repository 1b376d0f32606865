package homomorphic_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestCheckResultKey: a generated key pair passes; a pair whose secret
// half is another key's does not.
func TestCheckResultKey(t *testing.T) {
	p := testParams(t)
	a, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := homomorphic.CheckResultKey(p, a); err != nil {
		t.Fatal(err)
	}
	b, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	// The secret of a with the public half of b, spliced through the
	// encoding (secret first, then the public polynomials).
	ab, _ := a.MarshalBinary()
	bb, _ := b.MarshalBinary()
	if len(ab) != len(bb) {
		t.Fatal("encodings of different lengths")
	}
	mixed := append(append([]byte{}, ab[:len(ab)/3+4]...), bb[len(ab)/3+4:]...)
	k, err := homomorphic.UnmarshalResultKey(p, mixed)
	if err != nil {
		t.Fatalf("the spliced encoding does not decode (%v): the encoding's layout changed, and this test must splice it anew", err)
	}
	if err := homomorphic.CheckResultKey(p, k); !errors.Is(err, homomorphic.ErrMismatch) {
		t.Fatalf("a mismatched pair: %v", err)
	}
}
