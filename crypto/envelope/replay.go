package envelope

import (
	"container/heap"
	"sync"
	"time"
)

// ReplayCache remembers which envelopes were accepted.
type ReplayCache interface {
	// Seen reports whether nonce was already recorded; if not, it records it
	// with its signed timestamp ts and returns false. Implementations must be
	// safe for concurrent use and must report true for a timestamp older than
	// their memory (they can no longer tell).
	Seen(nonce [16]byte, ts time.Time) bool
}

// NewMemoryReplayCache returns an in-memory ReplayCache that forgets entries
// whose timestamp is older than window (by the local clock). Use a window of
// at least 2*maxSkew of Open. It is safe for concurrent use; memory is
// proportional to the number of envelopes accepted within one window.
func NewMemoryReplayCache(window time.Duration) ReplayCache {
	return &memoryCache{window: window, now: time.Now, seen: map[[16]byte]time.Time{}}
}

type memoryCache struct {
	mu     sync.Mutex
	window time.Duration
	now    func() time.Time
	seen   map[[16]byte]time.Time
	byTime entryHeap
}

func (c *memoryCache) Seen(nonce [16]byte, ts time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	horizon := c.now().Add(-c.window)
	for len(c.byTime) > 0 && c.byTime[0].ts.Before(horizon) {
		e := heap.Pop(&c.byTime).(entry)
		delete(c.seen, e.nonce)
	}
	if ts.Before(horizon) {
		return true // older than our memory: cannot prove it is new
	}
	if _, ok := c.seen[nonce]; ok {
		return true
	}
	c.seen[nonce] = ts
	heap.Push(&c.byTime, entry{nonce: nonce, ts: ts})
	return false
}

type entry struct {
	nonce [16]byte
	ts    time.Time
}

type entryHeap []entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].ts.Before(h[j].ts) }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
