package e2e

// Fault tests of issue 10 with separate OS processes of the built binary: a
// node killed with SIGKILL while it is inside a query, and the coordinator
// killed with SIGKILL while a query is collecting. To hold a node inside a
// query, node-3 runs with the policy require_approval: it has received,
// verified and planned the query and waits, inside the ledger's charge and
// before any debit, for `fedstat node approve`.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// serveFault starts a coordinator and three node processes (threshold 2,
// min_nodes 2) in which node-3 requires the admin's approval for every query.
func serveFault(t *testing.T, ctx context.Context) (*demo.Processes, []*cdm.Records) {
	t.Helper()
	data, err := demo.Synthetic(3, 300, 5)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2, ApprovalNodes: []int{2}}), data
}

// submit starts a query over HTTP/JSON and returns its id.
func submit(t *testing.T, p *demo.Processes, sql string, minNodes int, deadline time.Duration) string {
	t.Helper()
	// fresh: a fault test repeats its question and means the nodes to be asked.
	body := fmt.Sprintf(`{"spec": {"sql": %q, "min_nodes": %d}, "deadline_ms": %d, "fresh": true}`, sql, minNodes, deadline.Milliseconds())
	var st coordinatorv1.QueryStatus
	apiCall(t, p, "POST", "/v1/queries", body, &st)
	return st.QueryId
}

// queryStatus returns the coordinator's status of a query.
func queryStatus(t *testing.T, p *demo.Processes, qid string) *coordinatorv1.QueryStatus {
	t.Helper()
	var st coordinatorv1.QueryStatus
	apiCall(t, p, "GET", "/v1/queries/"+qid, "", &st)
	return &st
}

// operatorStatus is queryStatus as the network operator sees it: with each
// node's progress while partials are collected (analysts see every node
// waiting until then; coordinator.StatusFor).
func operatorStatus(t *testing.T, p *demo.Processes, qid string) *coordinatorv1.QueryStatus {
	t.Helper()
	code, b := httpJSONAs(t, p, p.OperatorToken, "GET", "/v1/queries/"+qid, "")
	var st coordinatorv1.QueryStatus
	if code != http.StatusOK || protojson.Unmarshal(b, &st) != nil {
		t.Fatalf("GET /v1/queries/%s as the operator: %d %s", qid, code, b)
	}
	return &st
}

// waitEnd waits until query qid has ended and returns its status.
func waitEnd(t *testing.T, ctx context.Context, p *demo.Processes, qid string) *coordinatorv1.QueryStatus {
	t.Helper()
	var st *coordinatorv1.QueryStatus
	waitFor(t, ctx, "the end of "+qid, func() bool { st = queryStatus(t, p, qid); return terminalState(st.State) })
	return st
}

// awaitingApproval reports whether node i lists qid in its approval queue
// (`fedstat node approvals`, through the node's admin socket).
func awaitingApproval(t *testing.T, p *demo.Processes, i int, qid string) bool {
	t.Helper()
	out, _, err := cli(t, p, "node", "approvals", "--data-dir", filepath.Join(p.Dir, demo.NodeID(i)))
	return err == nil && strings.Contains(out, qid)
}

func approve(t *testing.T, p *demo.Processes, i int, qid string) {
	t.Helper()
	if out, stderr, err := cli(t, p, "node", "approve", "--data-dir", filepath.Join(p.Dir, demo.NodeID(i)), qid); err != nil {
		t.Fatalf("fedstat node approve %s: %v\n%s%s", qid, err, out, stderr)
	}
}

// budgetsOf returns the analyst's spend per node, failing on nodes that do
// not answer.
func budgetsOf(t *testing.T, p *demo.Processes) map[string]float64 {
	t.Helper()
	b := budgets(t, p)
	if len(b) != p.NodeCount() {
		t.Fatalf("budget from %d of %d nodes: %v", len(b), p.NodeCount(), b)
	}
	return b
}

// waitReachable waits until the coordinator reaches every node again (its
// Budget call to each one succeeds), e.g. after a node restarted on a new
// port and announced it by gossip.
func waitReachable(t *testing.T, ctx context.Context, p *demo.Processes) {
	t.Helper()
	waitFor(t, ctx, "the coordinator to reach every node", func() bool { return len(budgets(t, p)) == p.NodeCount() })
}

// nodeAddr returns the gRPC address of a node as the coordinator knows it.
func nodeAddr(t *testing.T, p *demo.Processes, id string) string {
	t.Helper()
	var r coordinatorv1.NodesResponse
	apiCall(t, p, "GET", "/v1/nodes", "", &r)
	for _, n := range r.Nodes {
		if n.NodeId == id {
			return n.Address
		}
	}
	t.Fatalf("no %s in %v", id, &r)
	return ""
}

// redeliver sends query st to node id again, as the coordinator would after
// a lost answer: a freshly signed evaluate request for the same query id.
func redeliver(t *testing.T, ctx context.Context, p *demo.Processes, id string, st *coordinatorv1.QueryStatus) (*nodev1.EvaluateResponse, error) {
	t.Helper()
	coord, err := pki.LoadIdentityDir(filepath.Join(p.Dir, "pki"), "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpc.Dial(nodeAddr(t, p, id), coord, id)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := protocol.SignEvaluate(coord.Key, id, &nodev1.EvaluateBody{QueryId: st.QueryId, Epoch: st.Epoch, Spec: st.Spec,
		Analyst: st.Analyst, Role: string(pki.RoleAnalyst)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return nodev1.NewNodeServiceClient(conn).Evaluate(ctx, req)
}

// rhoOf is what a node charges for the query of st.
func rhoOf(t *testing.T, data []*cdm.Records, st *coordinatorv1.QueryStatus) float64 {
	t.Helper()
	spec := st.GetSpec()
	ref, err := cdm.ParseDate(spec.GetReferenceDate())
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.Regions = demo.RegionsOf(data)
	pl, err := plan.Build(plan.Request{SQL: spec.GetSql(), Epsilon: spec.GetEpsilon(), Delta: spec.GetDelta(), Mechanism: "gaussian",
		MinNodes: int(spec.GetMinNodes()), Threshold: int(spec.GetThreshold()), ReferenceDate: ref}, cat)
	if err != nil {
		t.Fatal(err)
	}
	return pl.Rho()
}

// auditDebits counts the budget debits per query id in the audit logs of
// the (stopped) nodes, and verifies every log's hash chain.
func auditDebits(t *testing.T, p *demo.Processes) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for i := range p.NodeCount() {
		name := demo.NodeID(i)
		f, err := os.Open(filepath.Join(p.Dir, name, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := audit.Verify(f); err != nil {
			t.Errorf("audit log of %s: %v", name, err)
		}
		f.Seek(0, 0)
		out[name] = map[string]int{}
		if err := audit.Scan(f, func(_ int, e audit.Entry) error {
			if e.Action == "budget.debited" {
				out[name][e.QueryID]++
			}
			return nil
		}); err != nil {
			t.Errorf("audit log of %s: %v", name, err)
		}
		f.Close()
	}
	return out
}

// TestFaultNodeKilledMidQuery kills node-3 with SIGKILL while it is inside a
// query (received, verified, waiting in its approval queue):
//
//   - min_nodes 2: the query completes from node-1 and node-2, and its status
//     names node-3 as failed;
//   - min_nodes 3: the query fails naming node-3, and nothing is decrypted;
//   - node-3, restarted on the same data directory, has debited nothing for
//     either query id; a re-delivery of the first one is answered (after
//     approval) and debited once, and a second re-delivery gets the stored
//     answer byte for byte, not fresh noise, and debits nothing;
//   - every node's audit log has at most one debit per query id.
func TestFaultNodeKilledMidQuery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p, data := serveFault(t, ctx)

	// killInside submits a query, waits until node-3 holds it, kills node-3,
	// and returns the query's final status.
	killInside := func(minNodes int) *coordinatorv1.QueryStatus {
		qid := submit(t, p, demo.CohortQuery, minNodes, time.Minute)
		waitFor(t, ctx, "node-3 to hold "+qid, func() bool { return awaitingApproval(t, p, 2, qid) })
		if st := queryStatus(t, p, qid); terminalState(st.State) {
			t.Fatalf("query %s ended (%v: %s) while node-3 was holding it", qid, st.State, st.Error)
		}
		p.Nodes[2].Kill()
		st := waitEnd(t, ctx, p, qid)
		if err := p.StartNode(2); err != nil {
			t.Fatal(err)
		}
		waitReachable(t, ctx, p)
		return st
	}

	a := killInside(2)
	if a.State != coordinatorv1.State_STATE_DONE || a.GetResult().GetNodes() != 2 {
		t.Fatalf("node-3 killed inside a min_nodes 2 query: %v from %d nodes (%s); want a release from 2", a.State, a.GetResult().GetNodes(), a.Error)
	}
	if np := nodeProgress(a, "node-3"); np.GetStatus() != "failed" || np.GetError() == "" || strings.Contains(np.GetError(), "deadline") {
		t.Errorf("node-3 in the released query: %q %q; want failed because it died, not by the deadline", np.GetStatus(), np.GetError())
	}

	b := killInside(3)
	if b.State != coordinatorv1.State_STATE_FAILED || b.Result != nil || !strings.Contains(b.Error, "node-3") || !strings.Contains(b.Error, "nothing was decrypted") {
		t.Fatalf("node-3 killed inside a min_nodes 3 query: %v, %q; want failed naming node-3, nothing decrypted", b.State, b.Error)
	}

	// Budgets: node-1 and node-2 answered both queries and debited each once
	// (b's partials left them, even though b was not released); node-3 was
	// killed before its debit and has spent nothing.
	ra, rb := rhoOf(t, data, a), rhoOf(t, data, b)
	if ra != a.GetResult().GetRho() {
		t.Fatalf("rho of %s: plan %v, result %v", a.QueryId, ra, a.GetResult().GetRho())
	}
	spent := budgetsOf(t, p)
	for _, id := range []string{"node-1", "node-2"} {
		if spent[id] != ra+rb {
			t.Errorf("%s spent %v, want %v (%v + %v)", id, spent[id], ra+rb, ra, rb)
		}
	}
	if spent["node-3"] != 0 {
		t.Errorf("node-3 spent %v for queries it was killed inside, want 0", spent["node-3"])
	}

	// Re-deliver a's query id to node-3: it asks its admin again, answers
	// and debits once; a second re-delivery replays the stored answer.
	type answer struct {
		resp *nodev1.EvaluateResponse
		err  error
	}
	first := make(chan answer, 1)
	go func() {
		resp, err := redeliver(t, ctx, p, "node-3", a)
		first <- answer{resp, err}
	}()
	waitFor(t, ctx, "node-3 to hold the re-delivered "+a.QueryId, func() bool { return awaitingApproval(t, p, 2, a.QueryId) })
	approve(t, p, 2, a.QueryId)
	r1 := <-first
	if r1.err != nil || r1.resp.GetReplayed() {
		t.Fatalf("first re-delivery of %s to node-3: %v (replayed %v)", a.QueryId, r1.err, r1.resp.GetReplayed())
	}
	r2, err := redeliver(t, ctx, p, "node-3", a)
	if err != nil || !r2.GetReplayed() {
		t.Fatalf("second re-delivery of %s to node-3: %v (replayed %v), want the stored answer", a.QueryId, err, r2.GetReplayed())
	}
	if !proto.Equal(r1.resp.GetPartial(), r2.GetPartial()) {
		t.Errorf("second re-delivery got a different partial (fresh noise), want the stored one")
	}
	if spent := budgetsOf(t, p); spent["node-3"] != ra {
		t.Errorf("node-3 spent %v after two re-deliveries of %s, want %v (one debit)", spent["node-3"], a.QueryId, ra)
	}

	p.Stop()
	debits := auditDebits(t, p)
	for node, per := range debits {
		for qid, n := range per {
			if n > 1 {
				t.Errorf("%s debited %s %d times", node, qid, n)
			}
		}
	}
	if debits["node-3"][a.QueryId] != 1 || debits["node-3"][b.QueryId] != 0 {
		t.Errorf("node-3 audit debits: %v; want a once (on re-delivery) and b never", debits["node-3"])
	}
}

// TestFaultCoordinatorKilledMidQuery kills the coordinator with SIGKILL while
// a query is collecting (node-1 and node-2 have answered and debited, node-3
// holds the query in its approval queue), then restarts it: the query is in
// the history, marked failed with the reason; the query released before is
// intact with its result; no node debited twice (a re-delivery of the query
// id to a node that answered it replays the stored answer); and the network
// answers new queries.
func TestFaultCoordinatorKilledMidQuery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p, data := serveFault(t, ctx)

	// A query released before the crash (approved at node-3).
	h := submit(t, p, demo.CohortQuery, 2, time.Minute)
	waitFor(t, ctx, "node-3 to hold "+h, func() bool { return awaitingApproval(t, p, 2, h) })
	approve(t, p, 2, h)
	before := waitEnd(t, ctx, p, h)
	if before.State != coordinatorv1.State_STATE_DONE || before.GetResult().GetNodes() != 3 {
		t.Fatalf("query before the crash: %v %s", before.State, before.Error)
	}

	// The query in flight at the crash.
	x := submit(t, p, "SELECT sex, COUNT(*) FROM patients GROUP BY sex", 2, time.Minute)
	waitFor(t, ctx, "node-3 to hold "+x, func() bool { return awaitingApproval(t, p, 2, x) })
	waitFor(t, ctx, "node-1 and node-2 to answer "+x, func() bool {
		st := operatorStatus(t, p, x)
		return nodeProgress(st, "node-1").GetStatus() == "answered" && nodeProgress(st, "node-2").GetStatus() == "answered"
	})
	// The analyst sees no node's progress while partials are collected.
	for _, np := range queryStatus(t, p, x).GetNodes() {
		if np.GetStatus() != "waiting" || np.GetElapsedMs() != 0 {
			t.Errorf("the analyst sees %s as %q (%v ms) while the query collects", np.GetNodeId(), np.GetStatus(), np.GetElapsedMs())
		}
	}
	if st := queryStatus(t, p, x); st.State != coordinatorv1.State_STATE_COLLECTING {
		t.Fatalf("query %s is %v, want collecting", x, st.State)
	}
	p.Coordinator.Kill()
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}

	st := queryStatus(t, p, x)
	if st.State != coordinatorv1.State_STATE_FAILED || st.Result != nil || !strings.Contains(st.Error, "coordinator stopped") || st.FinishedUnixMs == 0 {
		t.Errorf("query in flight at the crash, after the restart: %v, %q; want failed with the reason", st.State, st.Error)
	}
	after := queryStatus(t, p, h)
	if after.State != coordinatorv1.State_STATE_DONE || !proto.Equal(after.GetResult(), before.GetResult()) {
		t.Errorf("query released before the crash, after the restart: %v, result %v; want done with %v", after.State, after.GetResult(), before.GetResult())
	}
	code, body := httpJSON(t, p, "GET", "/v1/queries", "")
	if code != http.StatusOK || !strings.Contains(string(body), h) || !strings.Contains(string(body), x) {
		t.Errorf("history after the restart: %d %s", code, body)
	}

	// Debits: node-1 and node-2 paid for both queries once; node-3 for the
	// first only (the crash cancelled its wait before any debit).
	waitReachable(t, ctx, p)
	rh, rx := before.GetResult().GetRho(), rhoOf(t, data, st)
	spent := budgetsOf(t, p)
	for _, id := range []string{"node-1", "node-2"} {
		if spent[id] != rh+rx {
			t.Errorf("%s spent %v, want %v (%v + %v)", id, spent[id], rh+rx, rh, rx)
		}
	}
	if spent["node-3"] != rh {
		t.Errorf("node-3 spent %v, want %v", spent["node-3"], rh)
	}
	// A restarted coordinator that delivered the query id again would get
	// node-1's stored answer, and node-1 would not debit again.
	r, err := redeliver(t, ctx, p, "node-1", st)
	if err != nil || !r.GetReplayed() {
		t.Fatalf("re-delivery of %s to node-1: %v (replayed %v), want the stored answer", x, err, r.GetReplayed())
	}
	if again := budgetsOf(t, p); again["node-1"] != spent["node-1"] {
		t.Errorf("node-1 spent %v after a re-delivery, had %v", again["node-1"], spent["node-1"])
	}

	// node-3's queue no longer offers the abandoned query.
	if awaitingApproval(t, p, 2, x) {
		t.Errorf("node-3 still lists %s for approval after the coordinator that asked is gone", x)
	}

	// The network answers a new query.
	n := submit(t, p, demo.CohortQuery, 2, time.Minute)
	waitFor(t, ctx, "node-3 to hold "+n, func() bool { return awaitingApproval(t, p, 2, n) })
	approve(t, p, 2, n)
	if st := waitEnd(t, ctx, p, n); st.State != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Errorf("query after the restart: %v %s", st.State, st.Error)
	}

	p.Stop()
	for node, per := range auditDebits(t, p) {
		for qid, n := range per {
			if n > 1 {
				t.Errorf("%s debited %s %d times", node, qid, n)
			}
		}
		if want := map[bool]int{true: 0, false: 1}[node == "node-3"]; per[x] != want {
			t.Errorf("%s debited the interrupted query %d times, want %d", node, per[x], want)
		}
	}
	f, err := os.Open(filepath.Join(p.Dir, "coordinator", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := audit.Verify(f); err != nil {
		t.Errorf("coordinator audit log after SIGKILL: %v", err)
	}
}
