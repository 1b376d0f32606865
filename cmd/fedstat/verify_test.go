package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestSameRelease: a reused answer is that release only for the same
// question and the same result, and only when that release has one.
func TestSameRelease(t *testing.T) {
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6}
	res := &typesv1.Result{Columns: []string{"n"}, Nodes: 3}
	orig := &coordinatorv1.QueryStatus{QueryId: "q-a", Spec: spec, Result: res}
	reused := &coordinatorv1.QueryStatus{QueryId: "q-b", Spec: proto.Clone(spec).(*typesv1.QuerySpec), Result: proto.Clone(res).(*typesv1.Result), ReusedFrom: "q-a"}
	if why := sameRelease(reused, orig); why != "" {
		t.Fatalf("the same release: %s", why)
	}
	for name, c := range map[string]struct {
		mod  func(r, o *coordinatorv1.QueryStatus)
		want string
	}{
		"another epsilon":    {func(r, o *coordinatorv1.QueryStatus) { r.Spec.Epsilon = 2 }, "another question"},
		"another SQL":        {func(r, o *coordinatorv1.QueryStatus) { r.Spec.Sql = "SELECT 1" }, "another question"},
		"another result":     {func(r, o *coordinatorv1.QueryStatus) { r.Result.Nodes = 2 }, "not the result of q-a"},
		"no earlier release": {func(r, o *coordinatorv1.QueryStatus) { o.Result = nil }, "no released result"},
	} {
		r, o := proto.Clone(reused).(*coordinatorv1.QueryStatus), proto.Clone(orig).(*coordinatorv1.QueryStatus)
		c.mod(r, o)
		if why := sameRelease(r, o); !strings.Contains(why, c.want) {
			t.Errorf("%s: %q, want it to say %q", name, why, c.want)
		}
	}
}
