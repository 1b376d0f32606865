package node

import (
	"testing"
	"time"

	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestSentCache: the shortcut from a stored partial to its reveal and commit
// steps shows the partial to the reveal step, gives the payload to the
// commit step once, only for its epoch, never after its time, and never
// holds more than its bound (a miss falls back to the ledger).
func TestSentCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ct := func(n int) *nodev1.PartialPayload {
		return &nodev1.PartialPayload{Ciphertexts: [][]byte{make([]byte, n)}}
	}
	var c sentCache
	p := ct(10)
	sp := &typesv1.Signed{Header: []byte("h"), Payload: make([]byte, 12), Signature: []byte("s")}
	c.keep("q1", 3, p, sp, now)
	if got := c.take("q1", 4, now); got != nil {
		t.Fatal("a payload of epoch 3 was given for epoch 4")
	}
	if got := c.take("q1", 3, now); got != nil {
		t.Fatal("an entry asked for with the wrong epoch was not dropped")
	}
	c.keep("q1", 3, p, sp, now)
	if s, got := c.peek("q1", 3, now); s != sp || got != p {
		t.Fatal("the kept partial was not shown to the reveal step")
	}
	if s, _ := c.peek("q1", 2, now); s != nil {
		t.Fatal("a partial of epoch 3 was shown for epoch 2")
	}
	if got := c.take("q1", 3, now); got != p {
		t.Fatal("the kept payload was not given after a peek")
	}
	if got := c.take("q1", 3, now); got != nil {
		t.Fatal("a payload was given twice")
	}
	c.keep("q2", 3, p, sp, now)
	if got := c.take("q2", 3, now.Add(sentCacheTTL+time.Second)); got != nil {
		t.Fatal("a payload older than sentCacheTTL was given")
	}
	half := sentCacheBytes / 2
	c.keep("a", 1, ct(half), nil, now)
	c.keep("b", 1, ct(half), nil, now)
	c.keep("c", 1, ct(half), nil, now)
	if c.bytes > sentCacheBytes {
		t.Fatalf("the cache holds %d bytes, more than its bound %d", c.bytes, sentCacheBytes)
	}
	if c.take("c", 1, now) == nil {
		t.Fatal("the newest entry was dropped to make room")
	}
	c.keep("huge", 1, ct(sentCacheBytes+1), nil, now)
	if c.take("huge", 1, now) != nil {
		t.Fatal("a payload larger than the whole bound was kept")
	}
	if c.bytes < 0 || c.bytes > sentCacheBytes {
		t.Fatalf("byte count %d out of range", c.bytes)
	}
}
