package envelope

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)

func signers(t testing.TB) map[string]crypto.Signer {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"ecdsa-p256": ec, "ed25519": ed}
}

var bind = Binding{QueryID: "q-42", Epoch: 7, NodeID: "hospital-a", Kind: KindPartial}

func TestSealOpen(t *testing.T) {
	for name, s := range signers(t) {
		t.Run(name, func(t *testing.T) {
			payload := []byte("encrypted partial")
			e, err := Seal(s, bind, payload, t0)
			if err != nil {
				t.Fatal(err)
			}
			cache := testCache()
			h, err := Open(s.Public(), e, bind, t0.Add(time.Second), time.Minute, cache)
			if err != nil {
				t.Fatal(err)
			}
			if h.Binding != bind || !h.Timestamp.Equal(t0) || h.Nonce == [16]byte{} {
				t.Fatalf("header %+v", h)
			}
			// Round trip through bytes.
			b, _ := e.MarshalBinary()
			e2, err := UnmarshalEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Open(s.Public(), e2, bind, t0, time.Minute, testCache()); err != nil {
				t.Fatal(err)
			}
			// Replay into the first cache.
			if _, err := Open(s.Public(), e2, bind, t0, time.Minute, cache); !errors.Is(err, ErrReplay) {
				t.Fatalf("replay: %v", err)
			}
			// Two seals of the same payload differ (fresh nonce) and both open.
			e3, _ := Seal(s, bind, payload, t0)
			if bytes.Equal(e3.Header, e.Header) {
				t.Fatal("same header twice")
			}
			if _, err := Open(s.Public(), e3, bind, t0, time.Minute, cache); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	ss := signers(t)
	other := signers(t)
	for name, s := range ss {
		t.Run(name, func(t *testing.T) {
			fresh := func() *Envelope {
				e, err := Seal(s, bind, []byte("payload"), t0)
				if err != nil {
					t.Fatal(err)
				}
				return e
			}
			open := func(e *Envelope, want Binding, now time.Time) error {
				_, err := Open(s.Public(), e, want, now, time.Minute, testCache())
				return err
			}
			cases := []struct {
				name string
				err  error
				run  func() error
			}{
				{"payload", ErrBadSignature, func() error {
					e := fresh()
					e.Payload[0] ^= 1
					return open(e, bind, t0)
				}},
				{"header byte", ErrBadSignature, func() error {
					e := fresh()
					e.Header[len(e.Header)-1] ^= 1 // inside the nonce
					return open(e, bind, t0)
				}},
				{"header truncated", ErrMalformed, func() error {
					e := fresh()
					e.Header = e.Header[:len(e.Header)-1]
					return open(e, bind, t0)
				}},
				{"signature", ErrBadSignature, func() error {
					e := fresh()
					e.Signature[len(e.Signature)/2] ^= 1
					return open(e, bind, t0)
				}},
				{"wrong key", ErrBadSignature, func() error {
					_, err := Open(other[name].Public(), fresh(), bind, t0, time.Minute, nil)
					return err
				}},
				{"other query", ErrBindingMismatch, func() error {
					w := bind
					w.QueryID = "q-43"
					return open(fresh(), w, t0)
				}},
				{"other epoch", ErrBindingMismatch, func() error {
					w := bind
					w.Epoch++
					return open(fresh(), w, t0)
				}},
				{"other node", ErrBindingMismatch, func() error {
					w := bind
					w.NodeID = "hospital-b"
					return open(fresh(), w, t0)
				}},
				{"other kind", ErrBindingMismatch, func() error {
					w := bind
					w.Kind = KindKeySwitchShare
					return open(fresh(), w, t0)
				}},
				{"stale", ErrStale, func() error { return open(fresh(), bind, t0.Add(2*time.Minute)) }},
				{"future", ErrStale, func() error { return open(fresh(), bind, t0.Add(-2*time.Minute)) }},
				{"unsupported key", ErrMalformed, func() error {
					_, err := Open("not a key", fresh(), bind, t0, time.Minute, nil)
					return err
				}},
				{"nil envelope", ErrMalformed, func() error { return open(nil, bind, t0) }},
			}
			for _, c := range cases {
				if err := c.run(); !errors.Is(err, c.err) {
					t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
				}
			}
		})
	}
}

func TestSealRejectsUnsupportedKeys(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Seal(p384, bind, nil, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("P-384: %v", err)
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := Seal(rk, bind, nil, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("RSA: %v", err)
	}
	long := bind
	long.QueryID = string(make([]byte, MaxFieldLen+1))
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Seal(ed, long, nil, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("long field: %v", err)
	}
}

func TestHeaderCanonical(t *testing.T) {
	h := &Header{Binding: bind, Timestamp: t0}
	h.Digest[0], h.Nonce[15] = 1, 2
	b, err := MarshalHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := MarshalHeader(h2)
	if !bytes.Equal(b, b2) || h2.Binding != bind || !h2.Timestamp.Equal(t0) || h2.Digest != h.Digest || h2.Nonce != h.Nonce {
		t.Fatalf("round trip: %+v", h2)
	}
	if _, err := ParseHeader(append(b, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestMemoryReplayCache(t *testing.T) {
	now := t0
	c := NewMemoryReplayCache(time.Minute).(*memoryCache)
	c.now = func() time.Time { return now }
	n1, n2 := [16]byte{1}, [16]byte{2}
	if c.Seen(n1, now) || !c.Seen(n1, now) {
		t.Fatal("first/second sighting")
	}
	if !c.Seen(n2, now.Add(-2*time.Minute)) {
		t.Fatal("entry older than the window accepted")
	}
	now = now.Add(2 * time.Minute)
	if c.Seen(n2, now) {
		t.Fatal("new nonce reported seen")
	}
	if len(c.seen) != 1 {
		t.Fatalf("old entries not forgotten: %d", len(c.seen))
	}
	// Concurrency: exactly one of many goroutines wins each nonce.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[byte]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := [16]byte{9, byte(i)}
				if !c.Seen(n, now) {
					mu.Lock()
					wins[byte(i)]++
					mu.Unlock()
				}
			}
			_ = g
		}()
	}
	wg.Wait()
	for i := range 50 {
		if wins[byte(i)] != 1 {
			t.Fatalf("nonce %d won %d times", i, wins[byte(i)])
		}
	}
}

// testCache is a replay cache whose clock stands at t0, so that tests with
// fixed timestamps do not depend on the wall clock.
func testCache() ReplayCache {
	c := NewMemoryReplayCache(time.Hour).(*memoryCache)
	c.now = func() time.Time { return t0 }
	return c
}
