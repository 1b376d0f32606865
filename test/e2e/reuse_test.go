package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/synth"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestSameQuestionCostsOnce: an analyst's question identical to one she had
// released (same SQL, epsilon, delta, mechanism, reference date) while no
// node's data changed is answered from that release: the same numbers, no
// node charged, reused_from naming the release. --fresh asks again at full
// price; another epsilon, another analyst, or one node's new import asks
// anew too.
func TestSameQuestionCostsOnce(t *testing.T) {
	nw := startNetwork(t, 3, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := dialCoordinator(t, nw, nil)
	spent := func(c *client.Client) map[string]float64 { return spentRho(t, ctx, c) }
	run := func(c *client.Client, spec *typesv1.QuerySpec, fresh bool) *coordinatorv1.QueryStatus {
		t.Helper()
		st, err := c.Run(ctx, proto.Clone(spec).(*typesv1.QuerySpec), client.RunOptions{Fresh: fresh})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	charged := func(before, after map[string]float64) bool {
		for id, r := range after {
			if r == before[id] {
				return false
			}
		}
		return len(after) == 3
	}

	spec := &typesv1.QuerySpec{Sql: "SELECT region, COUNT(*) FROM conditions GROUP BY region", Epsilon: 0.5, Delta: 1e-6}
	b0 := spent(c)
	first := run(c, spec, false)
	b1 := spent(c)
	if first.GetReusedFrom() != "" || !charged(b0, b1) {
		t.Fatalf("first ask: reused_from %q, spend %v -> %v", first.GetReusedFrom(), b0, b1)
	}

	again := run(c, spec, false)
	if b := spent(c); !equalSpend(b1, b) {
		t.Fatalf("the same question was charged again: %v -> %v", b1, b)
	}
	if again.GetReusedFrom() != first.GetQueryId() || again.GetQueryId() == first.GetQueryId() {
		t.Fatalf("the same question: query %s reused_from %q; want a new query reusing %s", again.GetQueryId(), again.GetReusedFrom(), first.GetQueryId())
	}
	if !proto.Equal(again.GetResult(), first.GetResult()) {
		t.Fatalf("the reused answer differs from the release:\n%v\n%v", again.GetResult(), first.GetResult())
	}
	if got, err := c.Get(ctx, again.GetQueryId()); err != nil || got.GetReusedFrom() != first.GetQueryId() {
		t.Fatalf("Get of the reused query: %v, %v", got.GetReusedFrom(), err)
	}

	fresh := run(c, spec, true)
	b2 := spent(c)
	if fresh.GetReusedFrom() != "" || !charged(b1, b2) {
		t.Fatalf("--fresh: reused_from %q, spend %v -> %v", fresh.GetReusedFrom(), b1, b2)
	}

	other := proto.Clone(spec).(*typesv1.QuerySpec)
	other.Epsilon = 0.4
	if st := run(c, other, false); st.GetReusedFrom() != "" {
		t.Fatalf("another epsilon reused %s", st.GetReusedFrom())
	}
	b3 := spent(c)

	// Another analyst asks her own question: releases belong to whoever asked.
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "bea", Role: pki.RoleAnalyst, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteIdentity(filepath.Join(nw.Dir, "pki"), id); err != nil {
		t.Fatal(err)
	}
	if id, err = pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), "bea"); err != nil {
		t.Fatal(err)
	}
	bea := dialCoordinator(t, nw, id)
	if st := run(bea, spec, false); st.GetReusedFrom() != "" {
		t.Fatalf("another analyst's question reused %s", st.GetReusedFrom())
	}

	// A new import at one node: the same question is asked anew, and the
	// new release is what a later same question reuses.
	recs, err := synth.Generate(synth.Options{Patients: 30, Seed: 999, IDPrefix: "late-"})
	if err != nil {
		t.Fatal(err)
	}
	if err := nw.Import(ctx, 1, recs); err != nil {
		t.Fatal(err)
	}
	after := run(c, spec, false)
	b4 := spent(c)
	if after.GetReusedFrom() != "" || !charged(b3, b4) {
		t.Fatalf("after %s's import: reused_from %q, spend %v -> %v", demo.NodeID(1), after.GetReusedFrom(), b3, b4)
	}
	if st := run(c, spec, false); st.GetReusedFrom() != after.GetQueryId() {
		t.Fatalf("after the new release: reused_from %q, want %s", st.GetReusedFrom(), after.GetQueryId())
	}
}
