package coordinator

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// registryWith is a coordinator with only what assess, Ready and
// decryptorCandidates read: a key epoch of members with threshold t, the
// registry, and gen 7.
func registryWith(t int, members []string, nodes map[string]*regNode, policy LostMemberPolicy, minMembers int) *Coordinator {
	c := &Coordinator{cfg: Config{Threshold: t, MinMembers: minMembers, LostMember: policy, Now: time.Now}, reg: nodes, gen: 7}
	if members != nil {
		c.epoch = &epoch{ID: 4, Threshold: t}
		for i, m := range members {
			c.epoch.Members = append(c.epoch.Members, epochMember{ID: m, Point: uint64(i + 1)})
		}
	}
	return c
}

// up is an alive node whose last trusted report says epoch e, ready or not.
func up(id string, e uint64, ready bool, problem string) *regNode {
	return &regNode{ID: id, Alive: true, Health: nodeHealth{At: time.Now(), Gen: 7, Epoch: e, Latest: e, Ready: ready, Problem: problem}}
}

func TestAssess(t *testing.T) {
	three := []string{"node-1", "node-2", "node-3"}
	ok := func(id string) *regNode { return up(id, 4, true, "") }
	for _, tc := range []struct {
		name       string
		members    []string
		nodes      []*regNode
		policy     LostMemberPolicy
		minMembers int
		need       bool
		reason     []string // substrings of the reason
		waiting    string
		lost       []string
		ready      string // "" or a substring of Ready's error
	}{
		{name: "steady", members: three, nodes: []*regNode{ok("node-1"), ok("node-2"), ok("node-3")}},
		{name: "no epoch, enough nodes", nodes: []*regNode{ok("node-1"), ok("node-2"), ok("node-3")}, minMembers: 3,
			need: true, reason: []string{"no key epoch"}, ready: "no key epoch"},
		{name: "no epoch, too few nodes", nodes: []*regNode{ok("node-1"), ok("node-2"), {ID: "node-3"}}, minMembers: 3,
			need: true, waiting: "waiting for 3 nodes that can take part in a key epoch (2 now)", ready: "no key epoch"},
		{name: "a member is down: no re-key (liveness is not membership)", members: three,
			nodes: []*regNode{ok("node-1"), ok("node-2"), {ID: "node-3", Health: nodeHealth{At: time.Now(), Gen: 7, Err: "connection refused"}}}},
		{name: "a stale report is not trusted", members: three,
			nodes: []*regNode{ok("node-1"), ok("node-2"), {ID: "node-3", Alive: true, Health: nodeHealth{At: time.Now(), Gen: 6}}}},
		{name: "new node admitted", members: three, nodes: []*regNode{ok("node-1"), ok("node-2"), ok("node-3"), up("node-4", 0, false, "no key epoch")},
			need: true, reason: []string{"node-4 is not a member of key epoch 4"}},
		{name: "member with an empty data dir, rejoin", members: three, policy: LostMemberRejoin, minMembers: 3,
			nodes: []*regNode{ok("node-1"), ok("node-2"), up("node-3", 0, false, "no key epoch")},
			need:  true, reason: []string{"re-key with node-3, which lost its keys of key epoch 4 (it has no key epoch)"}, lost: []string{"node-3"}},
		{name: "member with a missing threshold share, exclude", members: three, policy: LostMemberExclude, minMembers: 2,
			nodes: []*regNode{ok("node-1"), up("node-2", 4, false, "node: this node cannot use its key shares: threshold share of epoch 4: missing"), ok("node-3")},
			need:  true, reason: []string{"re-key without node-2, which cannot use its keys of key epoch 4", "missing"}, lost: []string{"node-2"}},
		{name: "exclude below min_members waits", members: three, policy: LostMemberExclude, minMembers: 3,
			nodes: []*regNode{ok("node-1"), up("node-2", 4, false, "malformed"), ok("node-3")},
			need:  true, waiting: "waiting for 3 nodes", lost: []string{"node-2"}},
		{name: "two members lost: below T", members: three, policy: LostMemberRejoin,
			nodes: []*regNode{ok("node-1"), up("node-2", 3, true, ""), up("node-3", 4, false, "malformed")},
			need:  true, reason: []string{"node-2, which lost its keys of key epoch 4 (it is at epoch 3)", "node-3"}, lost: []string{"node-2", "node-3"},
			ready: "1 of the 3 members of key epoch 4 can decrypt, the threshold is 2"},
		{name: "members at a newer epoch than the stored one", members: three,
			nodes: []*regNode{up("node-1", 5, true, ""), up("node-2", 5, true, ""), up("node-3", 5, true, "")},
			need:  true, reason: []string{"node-1 is at key epoch 5, newer than the stored 4"}, ready: "0 of the 3 members"},
		{name: "an excluded member", members: three,
			nodes: []*regNode{ok("node-1"), ok("node-2"), {ID: "node-3", Alive: true, Excluded: &exclusion{Reason: "lost its keys"}}},
			need:  true, reason: []string{"node-3 is excluded (lost its keys)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := map[string]*regNode{}
			for _, n := range tc.nodes {
				reg[n.ID] = n
			}
			c := registryWith(2, tc.members, reg, tc.policy, tc.minMembers)
			a := c.assess()
			if a.need != tc.need {
				t.Fatalf("need %v (%q), want %v", a.need, a.reason, tc.need)
			}
			for _, r := range tc.reason {
				if !strings.Contains(a.reason, r) {
					t.Errorf("reason %q does not say %q", a.reason, r)
				}
			}
			if (tc.waiting == "") != (a.waiting == "") || !strings.Contains(a.waiting, tc.waiting) {
				t.Errorf("waiting %q, want %q", a.waiting, tc.waiting)
			}
			var lost []string
			for _, l := range a.lost {
				lost = append(lost, l.ID)
			}
			if fmt.Sprint(lost) != fmt.Sprint(tc.lost) && (lost != nil || tc.lost != nil) {
				t.Errorf("lost %v, want %v", lost, tc.lost)
			}
			err := c.Ready()
			if (tc.ready == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.ready)) {
				t.Errorf("Ready: %v, want %q", err, tc.ready)
			}
			if tc.members == nil && err != nil && !errors.Is(err, ErrNoEpoch) {
				t.Errorf("Ready without an epoch: %v, want ErrNoEpoch", err)
			}
		})
	}
}

// TestDecryptorCandidates: members that reported ready first, then those
// without a trusted report; senders before other members; members that
// reported they cannot decrypt, and excluded ones, not at all.
func TestDecryptorCandidates(t *testing.T) {
	reg := map[string]*regNode{
		"node-1": {ID: "node-1", Alive: true},                // no report
		"node-2": up("node-2", 4, false, "missing"),          // cannot
		"node-3": up("node-3", 4, true, ""),                  // ready, sender
		"node-4": up("node-4", 4, true, ""),                  // ready, did not answer
		"node-5": {ID: "node-5", Excluded: &exclusion{}},     // excluded
		"node-6": {ID: "node-6", Health: nodeHealth{Gen: 6}}, // stale report: unknown
	}
	c := registryWith(2, []string{"node-1", "node-2", "node-3", "node-4", "node-5", "node-6"}, reg, LostMemberRejoin, 2)
	got := c.decryptorCandidates(c.epoch, []string{"node-1", "node-2", "node-3", "node-6"})
	if want := "[node-3 node-4 node-1 node-6]"; fmt.Sprint(got) != want {
		t.Fatalf("candidates %v, want %s", got, want)
	}
}
