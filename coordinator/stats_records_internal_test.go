package coordinator

import (
	"testing"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestCheckedRecords: a signed analysis' round is sent to a node with only
// the release records it has not checked, those since the last round whose
// release holds its partial, so that each record crosses to a node once; a
// node in no release so far gets them all.
func TestCheckedRecords(t *testing.T) {
	rec := func(senders ...string) *coordinatorv1.ReleaseRecord {
		r := &coordinatorv1.ReleaseRecord{}
		for _, s := range senders {
			r.Senders = append(r.Senders, &coordinatorv1.ReleaseSender{NodeId: s})
		}
		return r
	}
	// Rounds 1 to 3 released; node-3 missed round 2, node-4 every round.
	records := []*coordinatorv1.ReleaseRecord{rec("node-1", "node-2", "node-3"), rec("node-1", "node-2"), rec("node-1", "node-2", "node-3")}
	for _, c := range []struct {
		node string
		want int
	}{{"node-1", 2}, {"node-3", 2}, {"node-4", 0}} {
		if got := checkedRecords(records, c.node); got != c.want {
			t.Errorf("%s has checked %d records, want %d", c.node, got, c.want)
		}
	}
	if got := checkedRecords(records[:2], "node-3"); got != 0 {
		t.Errorf("round 3: node-3, which answered round 1 only, has checked %d records, want 0 (it was sent none)", got)
	}
	if got := checkedRecords(nil, "node-1"); got != 0 {
		t.Errorf("round 1: %d records checked", got)
	}
}
