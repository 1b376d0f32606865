package coordinator

import (
	"strings"
	"testing"

	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestComplaintAboutNothingDealt: a complaint about a share that was never
// dealt convicts the complainer before any share is opened: from a member
// off the committee, about a node that deals no shares, about a dealer
// whose share to the complainer the coordinator never relayed. (The
// verdicts on opened shares are TestBadDealingNamed's and
// TestFalseDealingComplaintNamed's, test/e2e.)
func TestComplaintAboutNothingDealt(t *testing.T) {
	c := &Coordinator{}
	d := dealing{
		epoch:   3,
		ids:     []string{"node-1", "node-2", "node-3"},
		points:  []uint64{1, 2, 0},
		sharers: []string{"node-1", "node-2"},
		dealt:   map[string][]*nodev1.DealtShare{"node-1": {{FromNodeId: "node-2", ToNodeId: "node-1"}}},
	}
	for _, tc := range []struct{ recipient, dealer, want string }{
		{"node-3", "node-1", "not on the committee"},
		{"node-1", "node-3", `"node-3" deals no shares`},
		{"node-2", "node-1", "no share of that dealer was relayed to it"},
	} {
		v := c.judgeComplaint(d, tc.recipient, &nodev1.DealingComplaint{Dealer: tc.dealer, Point: make([]byte, 65), Proof: make([]byte, 64)})
		if v.guilty != tc.recipient || !strings.Contains(v.reason, tc.want) {
			t.Errorf("%s about %s: guilty %q (%s), want %s: %q", tc.recipient, tc.dealer, v.guilty, v.reason, tc.recipient, tc.want)
		}
	}
}
