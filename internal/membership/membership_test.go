package membership

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, name string, key []byte, join ...string) *Pool {
	t.Helper()
	p, err := Start(Config{Name: name, Key: key, Fast: true, Join: join,
		Meta: Meta{ID: name, Role: "node", GRPCAddr: "127.0.0.1:1", Version: "t", Patients: 100}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown() })
	return p
}

func TestGossipMetaAndFailure(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 32)
	a := start(t, "a", key)
	b := start(t, "b", key, a.Addr())
	c := start(t, "c", key, a.Addr())
	waitFor(t, "three alive members", func() bool { return len(a.Alive("node")) == 3 })

	// A metadata change reaches the others.
	if err := b.SetMeta(Meta{ID: "b", Role: "node", GRPCAddr: "127.0.0.1:2", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's epoch at c", func() bool {
		for _, m := range c.Members() {
			if m.ID == "b" && m.Epoch == 7 && m.GRPCAddr == "127.0.0.1:2" {
				return true
			}
		}
		return false
	})

	// A member that dies is reported not alive, but still listed.
	c.Shutdown()
	waitFor(t, "c dead at a", func() bool {
		for _, m := range a.Members() {
			if m.ID == "c" {
				return !m.Alive
			}
		}
		return false
	})
	if got := len(a.Members()); got != 3 {
		t.Fatalf("members after a failure: %d, want 3 (dead members stay listed)", got)
	}
}

func TestWrongKeyCannotJoin(t *testing.T) {
	a := start(t, "a", bytes.Repeat([]byte{1}, 16))
	_, err := Start(Config{Name: "x", Key: bytes.Repeat([]byte{2}, 16), Fast: true, Join: []string{a.Addr()},
		Meta: Meta{ID: "x", Role: "node"}})
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("joining a pool with the wrong gossip key: %v, want ErrWrongKey", err)
	}
	if _, err := Start(Config{Name: "y", Key: []byte("short")}); err != ErrBadKey {
		t.Fatalf("short key: %v", err)
	}
}

func TestMetaTooLarge(t *testing.T) {
	_, err := Start(Config{Name: "big", Key: bytes.Repeat([]byte{1}, 16), Fast: true,
		Meta: Meta{ID: "big", Version: strings.Repeat("v", 600)}})
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized meta: %v", err)
	}
}

// TestJoinBeforePoolIsUp: a member started before the one it joins keeps
// trying and gets in once the other is up.
func TestJoinBeforePoolIsUp(t *testing.T) {
	key := bytes.Repeat([]byte{5}, 32)
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + itoa(port)
	early := start(t, "early", key, addr)
	late, err := Start(Config{Name: "late", Key: key, Fast: true, BindAddr: addr, Meta: Meta{ID: "late", Role: "coordinator"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { late.Shutdown() })
	waitFor(t, "early to join late", func() bool { return len(late.Alive("node")) == 1 && len(early.Alive("")) == 2 })
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestGossipWithCompressingMembers: members that do not compress their
// gossip and members of an older release that do (compressGossip) see each
// other and each other's metadata.
func TestGossipWithCompressingMembers(t *testing.T) {
	key := bytes.Repeat([]byte{5}, 32)
	compressGossip = true
	old := start(t, "old", key)
	compressGossip = false
	t.Cleanup(func() { compressGossip = false })
	cur := start(t, "new", key, old.Addr())
	waitFor(t, "two alive members at both", func() bool { return len(old.Alive("node")) == 2 && len(cur.Alive("node")) == 2 })
	if err := cur.SetMeta(Meta{ID: "new", Role: "node", GRPCAddr: "127.0.0.1:3", Epoch: 4}); err != nil {
		t.Fatal(err)
	}
	if err := old.SetMeta(Meta{ID: "old", Role: "node", GRPCAddr: "127.0.0.1:4", Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	epochOf := func(p *Pool, id string) uint64 {
		for _, m := range p.Members() {
			if m.ID == id {
				return m.Epoch
			}
		}
		return 0
	}
	waitFor(t, "each member's epoch at the other", func() bool { return epochOf(old, "new") == 4 && epochOf(cur, "old") == 5 })
}
