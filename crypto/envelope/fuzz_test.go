package envelope

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary envelope bytes to UnmarshalEnvelope and Open:
// they must never panic, every error must be one of the sentinels, and
// nothing but a correctly signed envelope opens.
func FuzzOpen(f *testing.F) {
	ss := signers(f)
	for _, s := range ss {
		e, err := Seal(s, bind, []byte("payload"), t0)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := e.MarshalBinary()
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(b[:20])
	}
	f.Add([]byte{})
	f.Add([]byte("FSEV\x01\x00\x00\x00"))
	pubs := []any{ss["ecdsa-p256"].Public(), ss["ed25519"].Public()}
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unmarshal error not ErrMalformed: %v", err)
			}
			return
		}
		if out, _ := e.MarshalBinary(); string(out) != string(b) {
			t.Fatal("envelope encoding not canonical")
		}
		for _, pub := range append(pubs, otherEd.Public()) {
			_, err := Open(pub, e, bind, t0, time.Minute, testCache())
			if err == nil {
				continue
			}
			known := false
			for _, s := range []error{ErrBadSignature, ErrBindingMismatch, ErrStale, ErrReplay, ErrMalformed} {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("unclassified error: %v", err)
			}
		}
		if _, err := Open(otherEd.Public(), e, bind, t0, time.Minute, nil); err == nil {
			t.Fatal("opened under an unrelated key")
		}
	})
}

// FuzzParseHeader checks that accepted headers re-encode identically.
func FuzzParseHeader(f *testing.F) {
	h := &Header{Binding: bind, Timestamp: t0}
	b, _ := MarshalHeader(h)
	f.Add(b)
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			return
		}
		out, err := MarshalHeader(h)
		if err != nil || string(out) != string(b) {
			t.Fatalf("header not canonical: %v", err)
		}
	})
}
