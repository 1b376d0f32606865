package coordinator

import (
	"strings"
	"testing"

	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
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

// TestCheckDealt: what a dealer returns from RevealKeyGen is checked before
// anything is relayed: one entry per committee member, with exactly the
// shares the epoch has (a threshold share when its threshold is below the
// committee, a linkage-key share when it has a linkage key), labelled with
// the dealer, and none twice; an epoch with neither takes none.
func TestCheckDealt(t *testing.T) {
	both := func(to string) *nodev1.DealtShare {
		return &nodev1.DealtShare{FromNodeId: "node-1", ToNodeId: to, Sealed: &typesv1.Signed{}, LinkSealed: &typesv1.Signed{}}
	}
	two := []*nodev1.DealtShare{both("node-1"), both("node-2")}
	if err := checkDealt(map[string][]*nodev1.DealtShare{}, "node-1", two, true, true, 2); err != nil {
		t.Fatalf("an honest dealing: %v", err)
	}
	linkOnly := []*nodev1.DealtShare{{FromNodeId: "node-1", ToNodeId: "node-1", LinkSealed: &typesv1.Signed{}}, {FromNodeId: "node-1", ToNodeId: "node-2", LinkSealed: &typesv1.Signed{}}}
	for _, tc := range []struct {
		name            string
		shares          []*nodev1.DealtShare
		threshold, link bool
		want            string
	}{
		{"one share short", two[:1], true, true, "dealt 1 shares for a committee of 2"},
		{"shares in an epoch with neither", two, false, false, "without threshold sharing or a linkage key"},
		{"labelled from another dealer", []*nodev1.DealtShare{both("node-1"), {FromNodeId: "node-2", ToNodeId: "node-2", Sealed: &typesv1.Signed{}, LinkSealed: &typesv1.Signed{}}}, true, true, `labelled from "node-2"`},
		{"a threshold share in an epoch without", two, false, true, "a threshold share where the epoch has none"},
		{"no linkage share in an epoch with a linkage key", linkOnly[:0:0], true, true, "dealt 0 shares"},
		{"no threshold share where the epoch has them", linkOnly, true, true, "a threshold share where the epoch has none, or none where it has"},
		{"a member dealt twice", []*nodev1.DealtShare{both("node-1"), both("node-1")}, true, true, "dealt node-1 twice"},
	} {
		if err := checkDealt(map[string][]*nodev1.DealtShare{}, "node-1", tc.shares, tc.threshold, tc.link, 2); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
