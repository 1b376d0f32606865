package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/signedquery"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestAnalystSignedAnalysis: on a network whose nodes require analyst
// signatures, a statistical model fit run by the coordinator (POST
// /v1/stats, here over gRPC through the Go client) is signed by the
// analyst's client once, for the whole analysis, and each of its rounds is
// released: every node checks the release records of the rounds before
// and recomputes each round's query from the signed analysis and their
// results. The same analysis signed by the test runs under the ids derived
// from its signature. A coordinator that changes one step (the test plays
// it, asking node-1 directly) is refused, naming what is wrong, with
// nothing charged: another SQL or a larger epsilon in a round, a round
// under another round's id, round 1's record with other totals than those
// released, a result for round 1 other than its record's, a changed
// result for round 1 without its record (node-1 checked the record
// before), a record of another query, a round without the record of a
// round node-1 never checked, round 2 with round 1's SQL, a round past the
// analysis' last, no signature, a query's signature in place of an
// analysis', another analyst's name, a signature for another coordinator,
// and another outcome signed. The unchanged rounds are answered as
// replays, also without the records node-1 checked before. The coordinator itself refuses an analysis signed by another
// analyst, or other than the one sent.
func TestAnalystSignedAnalysis(t *testing.T) {
	pol := node.DefaultPolicy()
	pol.RequireAnalystSignature = true
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	schema, err := cdm.ParseStudySchema(demo.SurvivalSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	data := []*cdm.Records{{}, {}, {}}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Studies: []cdm.StudySchema{*schema}, Threshold: 2, MinNodes: 2, NodePolicy: pol,
		Budget: node.Budget{TotalRho: 1e5, PerAnalystRho: 1e5}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	if err := nw.ImportSurvival(200); err != nil {
		t.Fatal(err)
	}
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

	// The honest analysis, signed by the client: three Newton-Raphson
	// rounds, each a query the nodes check against the signed analysis.
	cl := dialCoordinator(t, nw, victim)
	req := &coordinatorv1.StatsRequest{Method: "logit", Table: "survival", Outcome: "status = 2", Covariates: []string{"age"}, Factors: []string{"sex"},
		Epsilon: 200, Rounds: 3}
	res, err := cl.RunStats(ctx, req)
	if err != nil {
		t.Fatalf("the signed analysis: %v", err)
	}
	if len(res.GetQueries()) != 3 || len(res.GetEstimates()) != 3 {
		t.Fatalf("the signed analysis: %d queries, estimates %v", len(res.GetQueries()), res.GetEstimates())
	}

	// The same analysis signed by the test, run again through the
	// coordinator (its rounds' ids are the test's signature's), and the
	// malicious coordinator's rounds.
	signed := signedquery.StatsAnalysis(req)
	signed.Delta, signed.ReferenceDate = signedquery.DefaultDelta, res.GetReferenceDate()
	signAnalysis := func(id *pki.Identity, coordinator string, spec *typesv1.AnalysisSpec) *typesv1.AnalystSignature {
		sig, err := signedquery.SealAnalysis(id.Key, id.Cert.Raw, coordinator, spec, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	sig := signAnalysis(victim, "coordinator", signed)
	again, err := cl.RunStats(ctx, withSig(req, signed, sig))
	if err != nil {
		t.Fatalf("the analysis signed by the test: %v", err)
	}
	var specs []*typesv1.QuerySpec
	var records []*coordinatorv1.ReleaseRecord
	var results []*typesv1.Result
	for i, id := range again.GetQueries() {
		if id != signedquery.AnalysisQueryID(sig, i+1) {
			t.Fatalf("round %d ran as %s, not under the id derived from the signature", i+1, id)
		}
		st, err := cl.Get(ctx, id)
		if err != nil || st.GetState() != coordinatorv1.State_STATE_DONE {
			t.Fatalf("round %s: %v %v", id, err, st.GetState())
		}
		rec, err := cl.ReleaseRecord(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		specs, records, results = append(specs, st.GetSpec()), append(records, rec), append(results, rec.GetResult())
	}
	type round struct {
		id      string
		n       int
		spec    *typesv1.QuerySpec
		records []*coordinatorv1.ReleaseRecord
		results []*typesv1.Result
		sig     *typesv1.AnalystSignature
		analyst string
	}
	honest := func(n int) round {
		return round{id: signedquery.AnalysisQueryID(sig, n), n: n, spec: proto.CloneOf(specs[n-1]), records: slices.Clone(records[:n-1]), results: slices.Clone(results[:n-1]), sig: sig, analyst: "victim"}
	}
	ask := func(r round) error {
		body := &nodev1.EvaluateBody{QueryId: r.id, Epoch: nw.Epoch, Spec: r.spec, Analyst: r.analyst, Role: "analyst",
			Analysis: &nodev1.AnalysisRound{Round: int32(r.n), Records: r.records, Results: r.results}, AnalystSignature: r.sig}
		sreq, err := protocol.SignEvaluate(coord.Key, "node-1", body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = nodes["node-1"].Evaluate(ctx, sreq)
		return err
	}
	edit := func(r round, f func(*round)) round { f(&r); return r }
	clientRecord, err := cl.ReleaseRecord(ctx, res.GetQueries()[0])
	if err != nil {
		t.Fatal(err)
	}
	fresh := signAnalysis(victim, "coordinator", signed)
	// Round 1's record with other totals than those released.
	moved := proto.CloneOf(records[0])
	for _, row := range moved.GetResult().GetRows() {
		for _, v := range row.GetValues() {
			v.Value = v.GetValue()*1.5 + 7
		}
	}
	querySig, err := signedquery.Seal(victim.Key, victim.Cert.Raw, "coordinator", specs[0], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherOutcome := proto.CloneOf(signed)
	otherOutcome.Outcome = "status = 1"
	spent := budgetAt(t, ctx, nodes["node-1"], "victim")
	for _, c := range []struct {
		name string
		r    round
		want []string
	}{
		{"another SQL in round 1", edit(honest(1), func(r *round) { r.spec.Sql = "SELECT COUNT(*) FROM survival" }), []string{"is not the signed analysis'"}},
		{"a larger epsilon in round 1", edit(honest(1), func(r *round) { r.spec.Epsilon *= 2 }), []string{"the round's budget is epsilon"}},
		{"round 2 under round 1's id", edit(honest(2), func(r *round) { r.id = signedquery.AnalysisQueryID(sig, 1) }), []string{"is not round 2 of"}},
		{"round 2 with round 1's totals changed in its record", edit(honest(2), func(r *round) {
			r.records, r.results = []*coordinatorv1.ReleaseRecord{moved}, []*typesv1.Result{moved.GetResult()}
		}), []string{"the release record of round 1", "releasecheck"}},
		{"round 2 with a result for round 1 other than its record's", edit(honest(2), func(r *round) { r.results = []*typesv1.Result{moved.GetResult()} }),
			[]string{"holds another result than the one sent"}},
		{"round 2 with round 1's result changed, without its record", edit(honest(2), func(r *round) { r.records, r.results = nil, []*typesv1.Result{moved.GetResult()} }),
			[]string{"not the one this node checked"}},
		{"a record of another query", edit(honest(2), func(r *round) { r.records = append(r.records, clientRecord) }), []string{"is not of a round before round 2"}},
		{"round 2 of an analysis whose round 1 node-1 never checked, without its record", round{id: signedquery.AnalysisQueryID(fresh, 2), n: 2, spec: specs[1],
			results: results[:1], sig: fresh, analyst: "victim"}, []string{"was not sent, and this node has not checked it"}},
		{"another SQL in round 2", edit(honest(2), func(r *round) { r.spec.Sql = specs[0].GetSql() }), []string{"is not the signed analysis'"}},
		{"a round 4 of three", round{id: signedquery.AnalysisQueryID(sig, 4), n: 4, spec: specs[2], records: records, results: results, sig: sig, analyst: "victim"}, []string{"the analysis has 3 rounds"}},
		{"no signature", edit(honest(1), func(r *round) { r.sig = nil }), []string{"without the analyst's signed analysis"}},
		{"a query's signature", edit(honest(1), func(r *round) { r.sig = querySig }), []string{`"analyst-request", not an analyst's analysis`}},
		{"another analyst's name", edit(honest(1), func(r *round) {
			r.sig = signAnalysis(other, "coordinator", signed)
			r.id = signedquery.AnalysisQueryID(r.sig, 1)
		}), []string{`runs as "victim"'s, and "other" signed it`}},
		{"another coordinator", edit(honest(1), func(r *round) { r.sig = signAnalysis(victim, "coordinator-2", signed) }), []string{`for coordinator "coordinator-2"`}},
		{"another outcome signed", edit(honest(1), func(r *round) {
			r.sig = signAnalysis(victim, "coordinator", otherOutcome)
			r.id = signedquery.AnalysisQueryID(r.sig, 1)
		}), []string{"is not the signed analysis'"}},
	} {
		err := ask(c.r)
		if err == nil {
			t.Fatalf("%s: node-1 answered", c.name)
		}
		wantCode(t, c.name, err, codes.PermissionDenied, append([]string{"analyst signature"}, c.want...)...)
	}
	if now := budgetAt(t, ctx, nodes["node-1"], "victim"); now != spent {
		t.Fatalf("node-1 spent rho %v on refused rounds", now-spent)
	}
	// The control: the same double with nothing changed is answered (the
	// rounds were released: replays, charged nothing more), also without
	// the records node-1 checked before.
	for n := 1; n <= 3; n++ {
		if err := ask(honest(n)); err != nil {
			t.Fatalf("round %d as signed: %v", n, err)
		}
		if err := ask(edit(honest(n), func(r *round) { r.records = nil })); err != nil {
			t.Fatalf("round %d without the records node-1 checked: %v", n, err)
		}
	}
	if now := budgetAt(t, ctx, nodes["node-1"], "victim"); now != spent {
		t.Fatalf("node-1 charged %v for replays of released rounds", now-spent)
	}

	// The coordinator refuses an analysis signed by another analyst, and
	// one other than the analysis sent.
	for _, c := range []struct {
		name string
		req  *coordinatorv1.StatsRequest
		want string
	}{
		{"signed by another analyst", withSig(req, signed, signAnalysis(other, "coordinator", signed)), `signed by other (analyst), the caller is victim`},
		{"another number of rounds sent", edit2(withSig(req, signed, sig), func(r *coordinatorv1.StatsRequest) { r.Rounds = 4 }), "not the one \"victim\" signed"},
	} {
		_, err := cl.RunStats(ctx, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}

// withSig is req with the privacy parameters of spec and the signature sig.
func withSig(req *coordinatorv1.StatsRequest, spec *typesv1.AnalysisSpec, sig *typesv1.AnalystSignature) *coordinatorv1.StatsRequest {
	r := proto.CloneOf(req)
	r.Epsilon, r.Delta, r.ReferenceDate, r.AnalystSignature = spec.GetEpsilon(), spec.GetDelta(), spec.GetReferenceDate(), sig
	return r
}

func edit2(r *coordinatorv1.StatsRequest, f func(*coordinatorv1.StatsRequest)) *coordinatorv1.StatsRequest {
	f(r)
	return r
}
