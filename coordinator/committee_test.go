package coordinator

import (
	"fmt"
	"slices"
	"testing"
)

// seats lists the ids given a nonzero point, and checks the points are
// 1..K in the order of ids.
func seats(t *testing.T, ids []string, points []uint64) []string {
	t.Helper()
	var out []string
	next := uint64(1)
	for i, p := range points {
		if p == 0 {
			continue
		}
		if p != next {
			t.Fatalf("points %v: want 1..K in the order of the members", points)
		}
		next++
		out = append(out, ids[i])
	}
	return out
}

// TestCommitteePoints: without a committee every member gets a point (as
// before committees); with one, the operator's choice comes first, then the
// previous committee's members that are still there, then the public rule
// (SHA-256 of the node id), which does not depend on the order of the
// members.
func TestCommitteePoints(t *testing.T) {
	var ids []string
	for i := 1; i <= 12; i++ {
		ids = append(ids, fmt.Sprintf("node-%d", i))
	}
	if got := seats(t, ids, committeePoints(ids, 0, nil, nil)); !slices.Equal(got, ids) {
		t.Fatalf("no committee: seats %v, want every member", got)
	}
	if got := seats(t, ids, committeePoints(ids, 20, nil, nil)); !slices.Equal(got, ids) {
		t.Fatalf("a committee larger than the network: seats %v, want every member", got)
	}

	byRule := seats(t, ids, committeePoints(ids, 4, nil, nil))
	if len(byRule) != 4 {
		t.Fatalf("committee of 4: seats %v", byRule)
	}
	ranked := slices.Clone(ids)
	slices.SortFunc(ranked, func(a, b string) int { return slices.Compare(committeeRank(a), committeeRank(b)) })
	want := slices.Clone(ranked[:4])
	slices.SortFunc(want, func(a, b string) int { return slices.Index(ids, a) - slices.Index(ids, b) })
	if !slices.Equal(byRule, want) {
		t.Fatalf("public rule: seats %v, want the 4 lowest SHA-256 ranks %v", byRule, want)
	}
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	got := seats(t, reversed, committeePoints(reversed, 4, nil, nil))
	slices.Sort(got)
	sorted := slices.Clone(byRule)
	slices.Sort(sorted)
	if !slices.Equal(got, sorted) {
		t.Fatalf("the public rule depends on the order of the members: %v, %v", got, sorted)
	}

	// The operator's choice first (a name that is not a member is skipped).
	prefer := []string{"node-12", "node-99", "node-7"}
	got = seats(t, ids, committeePoints(ids, 4, prefer, nil))
	if !slices.Contains(got, "node-12") || !slices.Contains(got, "node-7") || len(got) != 4 {
		t.Fatalf("operator's choice %v: seats %v", prefer, got)
	}

	// The previous committee keeps its seats; a member that left is
	// replaced by the rule.
	prev := &epoch{}
	for i, id := range ids {
		p := uint64(0)
		if slices.Contains([]string{"node-2", "node-5", "node-9", "node-11"}, id) {
			p = uint64(i + 1)
		}
		prev.Members = append(prev.Members, epochMember{ID: id, Point: p})
	}
	left := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == "node-5" })
	got = seats(t, left, committeePoints(left, 4, nil, prev))
	for _, id := range []string{"node-2", "node-9", "node-11"} {
		if !slices.Contains(got, id) {
			t.Fatalf("rotation after node-5 left: seats %v, want node-2, node-9 and node-11 kept", got)
		}
	}
	if slices.Contains(got, "node-5") || len(got) != 4 {
		t.Fatalf("rotation after node-5 left: seats %v", got)
	}
}
