package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/signedquery"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestAnalystSignedQueries: on a network whose nodes require analyst
// signatures (policy require_analyst_signature), an analyst's query signed
// by the Go client is released end to end through the real coordinator.
// A coordinator that changes one step of the protocol (the test plays it,
// with the coordinator's certificate and key, asking the nodes directly) is
// refused by every node, the error naming what is wrong, and nothing is
// charged to the analyst whose signature it holds: it changes the signed
// query's SQL or epsilon, sends it under another analyst's name, claims a
// role the certificate does not have, runs one signature under a second
// query id, sends a query nobody signed, uses a signature made for another
// coordinator or one signed an hour ago, or signs a query with its own
// certificate; each refusal is in the nodes' audit logs. The coordinator
// itself refuses a signature that is not the caller's, a submitted spec
// that is not the signed one, and a signed spec without epsilon; a
// signature pays for one query id, and a replay under it costs nothing.
func TestAnalystSignedQueries(t *testing.T) {
	pol := node.DefaultPolicy()
	pol.RequireAnalystSignature = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 42)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Threshold: 2, MinNodes: 2, NodePolicy: pol, AuditLogs: true,
		Budget: node.Budget{TotalRho: 1000, PerAnalystRho: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	nodes := coordinatorClients(t, nw)
	ids := nodeIDs(nw)
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, role pki.Role) *pki.Identity {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	victim := issue("victim", pki.RoleAnalyst)
	other := issue("other", pki.RoleAnalyst)
	coord, err := pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), "coordinator")
	if err != nil {
		t.Fatal(err)
	}

	spec := secSpec(2, 2)
	sign := func(id *pki.Identity, coordinator string, s *typesv1.QuerySpec) *typesv1.AnalystSignature {
		sig, err := signedquery.Seal(id.Key, id.Cert.Raw, coordinator, s, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	// refused sends body to every node as the coordinator and wants each
	// to refuse it, naming texts.
	refused := func(t *testing.T, name string, body *nodev1.EvaluateBody, texts ...string) {
		t.Helper()
		for _, id := range ids {
			req, err := protocol.SealEvaluate(coord.Key, id, body, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			_, err = nodes[id].Evaluate(ctx, req)
			if err == nil {
				t.Fatalf("%s: %s answered", name, id)
			}
			wantCode(t, name+" at "+id, err, codes.PermissionDenied, texts...)
		}
	}
	signedBody := func(sig *typesv1.AnalystSignature, s *typesv1.QuerySpec, analyst, role string) *nodev1.EvaluateBody {
		return &nodev1.EvaluateBody{QueryId: signedquery.QueryID(sig), Epoch: nw.Epoch, Spec: s, Analyst: analyst, Role: role, AnalystSignature: sig}
	}

	t.Run("changed SQL", func(t *testing.T) {
		sig := sign(victim, "coordinator", spec)
		s := proto.Clone(spec).(*typesv1.QuerySpec)
		s.Sql = "SELECT COUNT(*) FROM person"
		refused(t, "changed SQL", signedBody(sig, s, "victim", "analyst"), "analyst signature", "SQL")
	})
	t.Run("larger epsilon", func(t *testing.T) {
		sig := sign(victim, "coordinator", spec)
		s := proto.Clone(spec).(*typesv1.QuerySpec)
		s.Epsilon = 8
		refused(t, "larger epsilon", signedBody(sig, s, "victim", "analyst"), "epsilon is 8, the analyst signed 1")
	})
	t.Run("another analyst's name", func(t *testing.T) {
		// other's own signed query, charged to victim.
		sig := sign(other, "coordinator", spec)
		refused(t, "another analyst's name", signedBody(sig, spec, "victim", "analyst"), `sent as "victim"'s, and "other" signed it`)
	})
	t.Run("role the certificate does not have", func(t *testing.T) {
		sig := sign(victim, "coordinator", spec)
		refused(t, "claimed role", signedBody(sig, spec, "victim", "operator"), `role "operator"`, `has role "analyst"`)
	})
	t.Run("one signature, a second query id", func(t *testing.T) {
		sig := sign(victim, "coordinator", spec)
		body := signedBody(sig, spec, "victim", "analyst")
		body.QueryId = "q-second"
		refused(t, "second query id", body, "query id is q-second", signedquery.QueryID(sig))
	})
	t.Run("unsigned", func(t *testing.T) {
		refused(t, "unsigned", &nodev1.EvaluateBody{QueryId: "q-unsigned", Epoch: nw.Epoch, Spec: spec, Analyst: "victim", Role: "analyst"},
			"require_analyst_signature")
	})
	t.Run("signed for another coordinator", func(t *testing.T) {
		sig := sign(victim, "coordinator-of-another-network", spec)
		refused(t, "another coordinator", signedBody(sig, spec, "victim", "analyst"), `for coordinator "coordinator-of-another-network", not for "coordinator"`)
	})
	t.Run("stale signature", func(t *testing.T) {
		sig, err := signedquery.Seal(victim.Key, victim.Cert.Raw, "coordinator", spec, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		refused(t, "stale", signedBody(sig, spec, "victim", "analyst"), `"victim" signed the query at`, "further than 15m0s")
	})
	t.Run("signed by the coordinator itself", func(t *testing.T) {
		sig := sign(coord, "coordinator", spec)
		refused(t, "coordinator's own signature", signedBody(sig, spec, "coordinator", "analyst"), `has role "coordinator", which may not sign a query`)
	})
	t.Run("nothing charged", func(t *testing.T) {
		b := nw.Coordinator.Budget(ctx, "victim")
		if len(b.GetNodes()) != len(ids) {
			t.Fatalf("budget of victim: %v", b)
		}
		for _, nb := range b.GetNodes() {
			if nb.GetError() != "" || nb.GetSpentRho() != 0 {
				t.Errorf("%s: victim spent rho %g (%s)", nb.GetNodeId(), nb.GetSpentRho(), nb.GetError())
			}
		}
		// Each refusal is in every node's audit log with its reason.
		for i := range ids {
			entries := auditEntries(t, nw, i)
			for _, reason := range []string{"the query's SQL is", "sent as \"victim\"'s", "require_analyst_signature", "query id is q-second"} {
				if !refusedWith(entries, reason) {
					t.Errorf("%s: no query.refused entry naming %q", ids[i], reason)
				}
			}
		}
	})

	t.Run("coordinator checks the caller's signature", func(t *testing.T) {
		raw, closeFn, err := nw.Client(victim)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		s := signedquery.WithDefaults(spec, time.Now())
		_, err = raw.Submit(ctx, &coordinatorv1.SubmitRequest{AnalystSignature: sign(other, "coordinator", s)})
		wantCode(t, "someone else's signature", err, codes.PermissionDenied, "signed by other (analyst), the caller is victim (analyst)")
		changed := proto.Clone(s).(*typesv1.QuerySpec)
		changed.Epsilon = 4
		_, err = raw.Submit(ctx, &coordinatorv1.SubmitRequest{Spec: changed, AnalystSignature: sign(victim, "coordinator", s)})
		wantCode(t, "another spec", err, codes.PermissionDenied, "the submitted spec is not the signed one")
		_, err = raw.Submit(ctx, &coordinatorv1.SubmitRequest{AnalystSignature: sign(victim, "coordinator", &typesv1.QuerySpec{Sql: demo.CohortQuery})})
		wantCode(t, "no epsilon", err, codes.PermissionDenied, "signed no epsilon")
	})

	t.Run("honest signed query", func(t *testing.T) {
		c, err := nw.Dial(victim)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1}, client.RunOptions{})
		if err != nil {
			t.Fatalf("signed query: %v (%v)", err, st)
		}
		if st.GetState() != coordinatorv1.State_STATE_DONE || len(st.GetResult().GetRows()) == 0 {
			t.Fatalf("signed query not released: %v", st)
		}
		b := nw.Coordinator.Budget(ctx, "victim")
		for _, nb := range b.GetNodes() {
			if nb.GetSpentRho() <= 0 {
				t.Errorf("%s: victim's released query charged nothing", nb.GetNodeId())
			}
		}
		// The coordinator's own copy runs under the id derived from the
		// signature; an unsigned query of a bearer-token client, or
		// one the client did not sign, is refused by these nodes.
		raw, closeFn, err := nw.Client(victim)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		ust, err := raw.Submit(ctx, &coordinatorv1.SubmitRequest{Spec: &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1}, Fresh: true})
		if err != nil {
			t.Fatal(err)
		}
		final, err := c.Watch(ctx, ust.GetQueryId(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if final.GetState() != coordinatorv1.State_STATE_FAILED || !strings.Contains(final.GetError(), "require_analyst_signature") {
			t.Fatalf("an unsigned query at nodes that require signatures: %v", final)
		}
	})

	t.Run("one signature, one charge", func(t *testing.T) {
		// Submitted with its signature over the raw API (what the client
		// does), run by the real coordinator under the derived id; then
		// the same signature sent again under that id is a replay that
		// costs nothing.
		raw, closeFn, err := nw.Client(other)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		s := signedquery.WithDefaults(&typesv1.QuerySpec{Sql: demo.CohortQuery}, time.Now())
		sig := sign(other, "coordinator", s)
		st, err := raw.Submit(ctx, &coordinatorv1.SubmitRequest{AnalystSignature: sig, Fresh: true})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetQueryId() != signedquery.QueryID(sig) {
			t.Fatalf("query id %s, want the signature's %s", st.GetQueryId(), signedquery.QueryID(sig))
		}
		c, err := nw.Dial(other)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if final, err := c.Watch(ctx, st.GetQueryId(), nil); err != nil || final.GetState() != coordinatorv1.State_STATE_DONE {
			t.Fatalf("signed query: %v %v", final, err)
		}
		spent := func() float64 {
			for _, nb := range nw.Coordinator.Budget(ctx, "other").GetNodes() {
				if nb.GetNodeId() == ids[0] {
					return nb.GetSpentRho()
				}
			}
			t.Fatalf("no budget of other at %s", ids[0])
			return 0
		}
		before := spent()
		req, err := protocol.SealEvaluate(coord.Key, ids[0], signedBody(sig, st.GetSpec(), "other", "analyst"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := nodes[ids[0]].Evaluate(ctx, req)
		if err != nil || !resp.GetReplayed() {
			t.Fatalf("the same signature under its own id again: %v, replayed %v", err, resp.GetReplayed())
		}
		if after := spent(); after != before || before <= 0 {
			t.Errorf("other spent %g, then %g after the replay", before, after)
		}
	})
}
