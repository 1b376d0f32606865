package membership

import (
	"bytes"
	"testing"
	"time"
)

// TestRejoinSeedThatLostItsState: nodes joined the pool through a seed (the
// coordinator). The seed stops; once the nodes have declared it gone, it
// starts again at the same address with no knowledge of anyone (its state
// was lost) and joins nobody. The nodes, not restarted, join it again by
// themselves, and it sees them all.
func TestRejoinSeedThatLostItsState(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	seed := start(t, "coordinator", key)
	addr := seed.Addr()
	a := start(t, "a", key, addr)
	b := start(t, "b", key, addr)
	waitFor(t, "the seed to see both nodes", func() bool { return len(seed.Alive("")) == 3 })

	seed.Shutdown()
	gone := func(p *Pool) bool {
		for _, m := range p.Members() {
			if m.ID == "coordinator" {
				return !m.Alive
			}
		}
		return false
	}
	waitFor(t, "both nodes to declare the seed gone", func() bool { return gone(a) && gone(b) })
	// The outage outlasts the time memberlist keeps gossiping to a dead
	// member: after it, nothing of the pool ever reaches the seed's
	// address again on memberlist's own initiative. (This models the
	// length of the outage; it synchronises nothing.)
	time.Sleep(3 * fastGossipToTheDead)

	fresh, err := Start(Config{Name: "coordinator", Key: key, Fast: true, BindAddr: addr, Meta: Meta{ID: "coordinator", Role: "coordinator"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Shutdown() })
	waitFor(t, "the restarted seed to see both nodes", func() bool { return len(fresh.Alive("node")) == 2 })
	waitFor(t, "the nodes to see the seed alive again", func() bool { return !gone(a) && !gone(b) })
}
