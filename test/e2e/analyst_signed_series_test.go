package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/signedquery"
	"github.com/fedstat/fedstat/node"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
)

// TestAnalystSignedSeries: on a network whose nodes require analyst
// signatures, a standing series created through the Go client is signed by
// the analyst's certificate key once, and the coordinator forwards that
// signature with every interval: the series releases its periods end to
// end. A coordinator that changes one step (the test plays it, asking
// node-1 directly) is refused, naming what is wrong, with nothing charged:
// an interval without a signature, of a series other than the one signed
// (another condition, a larger lifetime epsilon), with a query's signature
// in place of a series', under another analyst's name, with a signature
// made for another coordinator or dated in the future. The coordinator
// itself refuses a signed series that is not the caller's or not the one
// sent.
func TestAnalystSignedSeries(t *testing.T) {
	pol := node.DefaultPolicy()
	pol.RequireAnalystSignature = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 42)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Threshold: 2, MinNodes: 2, NodePolicy: pol,
		Budget: node.Budget{TotalRho: 1000, PerAnalystRho: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	nodes := coordinatorClients(t, nw)
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

	s := &typesv1.SeriesSpec{Name: "signed", Table: "conditions", Where: "code = '44054006'", DateColumn: "onset_date",
		Every: "week", Start: "2024-01-01", Periods: 4, MaxPeriodsPerPatient: 1, Epsilon: 1, Delta: 1e-6, MinNodes: 2}
	signSeries := func(id *pki.Identity, coordinator string, spec *typesv1.SeriesSpec, at time.Time) *typesv1.AnalystSignature {
		sig, err := signedquery.SealSeries(id.Key, id.Cert.Raw, coordinator, spec, at)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	iv := continual.Interval{Level: 0, Index: 0}
	q, err := protocol.SeriesQuery(s, iv)
	if err != nil {
		t.Fatal(err)
	}
	q.Threshold, q.PartialLimit = 2, nw.Coordinator.Params().MaxAbs()/3
	ask := func(sig *typesv1.AnalystSignature, analyst string) error {
		req, err := protocol.SignEvaluate(coord.Key, "node-1", &nodev1.EvaluateBody{QueryId: protocol.SeriesQueryID(s, iv), Epoch: nw.Epoch, Spec: q,
			Analyst: analyst, Role: "analyst", Series: &nodev1.SeriesInterval{Spec: s}, AnalystSignature: sig}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = nodes["node-1"].Evaluate(ctx, req)
		return err
	}
	changed := func(f func(*typesv1.SeriesSpec)) *typesv1.SeriesSpec {
		c := proto.Clone(s).(*typesv1.SeriesSpec)
		f(c)
		return c
	}
	querySig, err := signedquery.Seal(victim.Key, victim.Cert.Raw, "coordinator", secSpec(2, 2), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		sig     *typesv1.AnalystSignature
		analyst string
		want    []string
	}{
		{"no signature", nil, "victim", []string{"require_analyst_signature"}},
		{"another condition signed", signSeries(victim, "coordinator", changed(func(c *typesv1.SeriesSpec) { c.Where = "code = '38341003'" }), time.Now()), "victim", []string{"not the one the analyst signed"}},
		{"a smaller lifetime epsilon signed", signSeries(victim, "coordinator", changed(func(c *typesv1.SeriesSpec) { c.Epsilon = 0.5 }), time.Now()), "victim", []string{"not the one the analyst signed"}},
		{"a query's signature", querySig, "victim", []string{`"analyst-request", not an analyst's series`}},
		{"another analyst's name", signSeries(other, "coordinator", s, time.Now()), "victim", []string{`runs as "victim"'s, and "other" signed it`}},
		{"another coordinator", signSeries(victim, "coordinator-2", s, time.Now()), "victim", []string{`for coordinator "coordinator-2"`}},
		{"dated in the future", signSeries(victim, "coordinator", s, time.Now().Add(time.Hour)), "victim", []string{"later than now"}},
	} {
		err := ask(c.sig, c.analyst)
		if err == nil {
			t.Fatalf("%s: node-1 answered", c.name)
		}
		wantCode(t, c.name, err, codes.PermissionDenied, append([]string{"analyst signature"}, c.want...)...)
	}
	if spent := budgetAt(t, ctx, nodes["node-1"], "victim"); spent != 0 {
		t.Fatalf("node-1 spent rho %v on refused intervals, want 0", spent)
	}

	// The coordinator refuses a signature that is not the caller's, or of
	// another series than the one sent.
	cl := dialCoordinator(t, nw, victim)
	if _, err := nw.Coordinator.CreateSeries(ctx, coordinator.Analyst{Name: "victim", Role: "analyst"}, s, nil, signSeries(other, "coordinator", s, time.Now())); err == nil {
		t.Fatal("the coordinator created a series signed by another analyst")
	}
	if _, err := nw.Coordinator.CreateSeries(ctx, coordinator.Analyst{Name: "victim", Role: "analyst"}, changed(func(c *typesv1.SeriesSpec) { c.Periods = 40 }), nil,
		signSeries(victim, "coordinator", s, time.Now())); err == nil {
		t.Fatal("the coordinator created a series other than the signed one")
	}

	// The honest series, signed by the client, runs to its end.
	if _, err := cl.CreateSeries(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the signed series to release its periods", func() bool {
		got, err := cl.Series(ctx, s.GetName())
		return err == nil && got.GetReleased() == s.GetPeriods()
	})
	got, err := cl.Series(ctx, s.GetName())
	if err != nil || got.GetError() != "" {
		t.Fatalf("series: %v %q", err, got.GetError())
	}
}
