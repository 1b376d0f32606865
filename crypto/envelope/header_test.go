package envelope

import (
	"errors"
	"testing"
)

// TestOpenHeader: a header signed with its payload verifies without the
// payload, for its own binding only; a forged signature or another binding
// is refused.
func TestOpenHeader(t *testing.T) {
	for name, s := range signers(t) {
		t.Run(name, func(t *testing.T) {
			e, err := Seal(s, bind, []byte("payload"), t0)
			if err != nil {
				t.Fatal(err)
			}
			h, err := OpenHeader(s.Public(), e.Header, e.Signature, bind)
			if err != nil || h.Binding != bind {
				t.Fatalf("OpenHeader = %v, %v", h, err)
			}
			other := bind
			other.QueryID = "q-43"
			if _, err := OpenHeader(s.Public(), e.Header, e.Signature, other); !errors.Is(err, ErrBindingMismatch) {
				t.Fatalf("another binding: %v", err)
			}
			sig := append([]byte{}, e.Signature...)
			sig[len(sig)-1] ^= 1
			if _, err := OpenHeader(s.Public(), e.Header, sig, bind); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("forged signature: %v", err)
			}
		})
	}
}
