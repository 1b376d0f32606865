package coordinator

import (
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
)

// TestCoordinatorKeepsTheContract: the coordinator judges the time of the
// messages it receives with the window both sides share (a node's default
// is the same protocol.DefaultMaxSkew, see node's TestNodeKeepsTheContract),
// and its replay cache remembers at least twice as long.
func TestCoordinatorKeepsTheContract(t *testing.T) {
	ca, err := pki.NewCA("contract test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "coordinator", Role: pki.RoleCoordinator})
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []time.Duration{0, 40 * time.Minute} {
		c, err := New(Config{Identity: id, Nodes: []NodeEndpoint{{ID: "node-1", Addr: "127.0.0.1:1"}}, MaxSkew: set})
		if err != nil {
			t.Fatal(err)
		}
		want := set
		if set == 0 {
			want = protocol.DefaultMaxSkew
		}
		if w := c.window(); w.MaxSkew != want || w.Seen != c.replay {
			t.Errorf("MaxSkew %s: window %+v, want skew %s and the replay cache", set, w, want)
		}
		c.Close()
	}
}
