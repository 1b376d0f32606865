package e2e

// Approvals that wait (issue 19): a node whose policy requires approval
// answers "pending" at once and keeps the query in its store; the
// coordinator waits for it past its deadline, up to the query's approval
// wait, and releases once the admin approves.

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// approvalDeadline is the coordinator's query deadline in these tests: the
// approvals arrive well after it. It bounds the first call to every node
// too (which a node that needs approval answers at once with "pending"),
// so it leaves room for a loaded CI machine: at 2 s, that first call to a
// just-restarted node-2 once missed it.
const approvalDeadline = 4 * time.Second

// startApprovalNetwork starts three nodes (threshold 2) with a short
// deadline and a fast approval poll, and restarts node-2 with a policy that
// requires the admin's approval.
func startApprovalNetwork(t *testing.T, ctx context.Context) *demo.Network {
	t.Helper()
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 300), Threshold: 2, MinNodes: 3,
		CoordinatorConfig: func(c *coordinator.Config) {
			c.Deadline = approvalDeadline
			c.ApprovalPoll = 100 * time.Millisecond
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	restartApprovalNode(t, nw, 1)
	return nw
}

// restartApprovalNode stops node i and starts it again on the same address,
// store and state directory, with a policy that requires approval.
func restartApprovalNode(t *testing.T, nw *demo.Network, i int) *node.Node {
	t.Helper()
	pol := node.DefaultPolicy()
	pol.RequireApproval = true
	return restartNode(t, nw, i, pol)
}

// restartNode stops node i and starts it again on the same address, store
// and state directory, with policy pol: a node that kept nothing in memory.
func restartNode(t *testing.T, nw *demo.Network, i int, pol *node.Policy) *node.Node {
	t.Helper()
	id, err := pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), demo.NodeID(i))
	if err != nil {
		t.Fatal(err)
	}
	old := nw.Nodes[i]
	addr := old.Addr()
	old.Close()
	n, err := node.New(node.Config{Identity: id, ListenAddr: addr, StateDir: filepath.Join(nw.Dir, demo.NodeID(i)), DB: nw.DB(i),
		Data: nw.Stores[i], Catalogue: nw.Catalogue, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	nw.Nodes[i] = n
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return n
}

// pendingAt waits until node n lists exactly one query awaiting approval
// and returns its id.
func pendingAt(t *testing.T, ctx context.Context, n *node.Node) string {
	t.Helper()
	var qid string
	waitFor(t, ctx, n.ID()+" to queue the query for its admin", func() bool {
		list, err := n.Approvals()
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			qid = list[0].QueryID
		}
		return len(list) == 1
	})
	return qid
}

// TestApprovalAfterDeadline: node-2 requires approval; its admin approves
// three deadlines after the query was submitted, after node-2 was restarted
// with the query pending. The query waits (its status lists node-2 as
// awaiting approval, to the analyst too), then releases the right total
// from all three nodes, and every node is charged exactly once.
func TestApprovalAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := startApprovalNetwork(t, ctx)
	client := dialCoordinator(t, nw, nil)

	submitted := time.Now()
	st, err := client.Submit(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, ApprovalWaitSeconds: 600}, 0)
	if err != nil {
		t.Fatal(err)
	}
	qid := st.GetQueryId()
	if got := pendingAt(t, ctx, nw.Nodes[1]); got != qid {
		t.Fatalf("node-2 queues %s, want %s", got, qid)
	}
	waitFor(t, ctx, "the analyst to see the query waiting at node-2", func() bool {
		st, err := client.Get(ctx, qid)
		if err != nil {
			t.Fatal(err)
		}
		aw := st.GetAwaitingApproval()
		return len(aw) == 1 && aw[0].GetNodeId() == "node-2" && strings.HasPrefix(coordinator.WaitingLine(st), "waiting for approval at node-2 (since ")
	})

	// node-2 restarts while the query waits: the query is still queued
	// there, and nothing was charged.
	n2 := restartApprovalNode(t, nw, 1)
	if got := pendingAt(t, ctx, n2); got != qid {
		t.Fatalf("after its restart node-2 queues %s, want %s", got, qid)
	}
	time.Sleep(time.Until(submitted.Add(3 * approvalDeadline)))
	st, err = client.Get(ctx, qid)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != coordinatorv1.State_STATE_COLLECTING {
		t.Fatalf("three deadlines on, the query is %v (%s), want still collecting", st.GetState(), st.GetError())
	}
	for _, nb := range nw.Coordinator.Budget(ctx, "analyst").GetNodes() {
		if nb.GetNodeId() == "node-2" && nb.GetSpentRho() != 0 {
			t.Fatalf("node-2 charged %v before its admin approved", nb.GetSpentRho())
		}
	}

	if err := n2.Decide(ctx, qid, true, "admin"); err != nil {
		t.Fatal(err)
	}
	if err := n2.Decide(ctx, qid, true, "admin"); err == nil {
		t.Error("a second decision on the same query was taken")
	}
	st, err = client.Watch(ctx, qid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Fatalf("approved query: %v from %d nodes (%s), want released from 3", st.GetState(), st.GetResult().GetNodes(), st.GetError())
	}
	if time.Since(submitted) < 3*approvalDeadline {
		t.Fatalf("released %s after submission, before the approval", time.Since(submitted))
	}
	if got, exact := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), exactTotal(t, nw, st.GetSpec()); math.Abs(got-exact) > 100 {
		t.Fatalf("released %v, exact %v", got, exact)
	}
	if len(st.GetAwaitingApproval()) != 0 {
		t.Errorf("released query still lists %v as awaiting approval", st.GetAwaitingApproval())
	}
	checkOneDebit(t, ctx, nw, st, "node-1", "node-2", "node-3")
	if list, err := n2.Approvals(); err != nil || len(list) != 0 {
		t.Errorf("node-2's queue after the release: %v %v", list, err)
	}
}

// TestApprovalDeniedOrExpired: a denial at node-2 ends a query that needs
// all three nodes at once, with "denied at node-2", and charges node-2
// nothing; a query whose approval wait ends before node-2's admin decides
// fails naming node-2, and the admin can no longer approve it.
func TestApprovalDeniedOrExpired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nw := startApprovalNetwork(t, ctx)
	client := dialCoordinator(t, nw, nil)
	n2 := nw.Nodes[1]

	st, err := client.Submit(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, ApprovalWaitSeconds: 600}, 0)
	if err != nil {
		t.Fatal(err)
	}
	qid := pendingAt(t, ctx, n2)
	if err := n2.Decide(ctx, qid, false, "admin"); err != nil {
		t.Fatal(err)
	}
	denied, err := client.Watch(ctx, st.GetQueryId(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if denied.GetState() != coordinatorv1.State_STATE_FAILED || !strings.Contains(denied.GetError(), "denied at node-2") {
		t.Fatalf("denied query: %v %q, want failed with \"denied at node-2\"", denied.GetState(), denied.GetError())
	}
	for _, nb := range nw.Coordinator.Budget(ctx, "analyst").GetNodes() {
		if nb.GetNodeId() == "node-2" && nb.GetSpentRho() != 0 {
			t.Errorf("node-2 charged %v for the query its admin denied", nb.GetSpentRho())
		}
	}

	if _, err := client.Submit(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, ApprovalWaitSeconds: 1e9}, 0); err == nil ||
		!strings.Contains(err.Error(), "max_approval_wait") {
		t.Errorf("an approval wait above the network's maximum: %v, want a refusal naming max_approval_wait", err)
	}

	start := time.Now()
	st, err = client.Submit(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, ApprovalWaitSeconds: 6}, 0)
	if err != nil {
		t.Fatal(err)
	}
	qid = pendingAt(t, ctx, n2)
	expired, err := client.Watch(ctx, st.GetQueryId(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if expired.GetState() != coordinatorv1.State_STATE_FAILED || !strings.Contains(expired.GetError(), "approval wait ended before node-2 approved") {
		t.Fatalf("expired query: %v %q, want failed naming node-2", expired.GetState(), expired.GetError())
	}
	if took := time.Since(start); took < 6*time.Second || took > 40*time.Second {
		t.Errorf("the query gave up after %s, want about its approval wait of 6s", took)
	}
	// node-2 counts the wait from when the query reached it, a little
	// after the submission: its queue empties at most moments later.
	waitFor(t, ctx, "node-2's queue to drop the expired query", func() bool {
		list, err := n2.Approvals()
		return err == nil && len(list) == 0
	})
	if err := n2.Decide(ctx, qid, true, "admin"); err == nil || !errors.Is(err, node.ErrApprovalExpired) {
		t.Errorf("the admin approving a query whose approval wait had ended: %v, want ErrApprovalExpired", err)
	}
}

// TestApprovalSurvivesCoordinatorRestart: a coordinator with a store is
// closed while its query waits for node-2's admin (node-1 and node-3 have
// answered and been charged); a new coordinator on the same store resumes
// the query under the same id, node-1 and node-3 replay their stored
// partials, and once node-2's admin approves the query releases the right
// total from all three nodes, each charged exactly once.
func TestApprovalSurvivesCoordinatorRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var base coordinator.Config
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 300), Threshold: 2, MinNodes: 3,
		CoordinatorConfig: func(c *coordinator.Config) {
			c.Deadline = approvalDeadline
			c.ApprovalPoll = 100 * time.Millisecond
			base = *c
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	n2 := restartApprovalNode(t, nw, 1)

	// A coordinator of our own, with a store, that we can stop and start
	// again; its key ceremony makes the epoch the nodes now use.
	db, err := kv.Open(kv.Options{Dir: filepath.Join(t.TempDir(), "kv")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	first := true
	startCoordinator := func() (*coordinator.Coordinator, *client.Client, func()) {
		cfg := base
		cfg.DB = db
		if !first {
			// New refuses a static node that its stored registry lists
			// too (coordinator/registry.go stores static nodes): start
			// from the static list, as a first start does.
			if err := db.DropPrefix([]byte("c/node/")); err != nil {
				t.Fatal(err)
			}
		}
		first = false
		c, err := coordinator.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stopRun := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(runCtx); close(done) }()
		cl, err := client.Dial(client.Config{Address: c.Addr(), Identity: nw.Analyst, ServerName: "coordinator"})
		if err != nil {
			t.Fatal(err)
		}
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cl.Close()
				stopRun()
				<-done
				c.Close()
			}
		}
		t.Cleanup(stop)
		return c, cl, stop
	}
	c1, cl1, stop1 := startCoordinator()
	if _, err := c1.KeyCeremony(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := cl1.Submit(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, ApprovalWaitSeconds: 600}, 0)
	if err != nil {
		t.Fatal(err)
	}
	qid := st.GetQueryId()
	if got := pendingAt(t, ctx, n2); got != qid {
		t.Fatalf("node-2 queues %s, want %s", got, qid)
	}
	waitFor(t, ctx, "node-1 and node-3 to answer", func() bool {
		st, err := c1.Get(qid)
		return err == nil && nodeProgress(st, "node-1").GetStatus() == "answered" && nodeProgress(st, "node-3").GetStatus() == "answered"
	})
	stop1()

	c2, cl2, _ := startCoordinator()
	st, err = c2.Get(qid)
	if err != nil {
		t.Fatal(err)
	}
	if terminal := st.GetState() == coordinatorv1.State_STATE_DONE || st.GetState() == coordinatorv1.State_STATE_FAILED ||
		st.GetState() == coordinatorv1.State_STATE_CANCELLED; terminal {
		t.Fatalf("after the restart the waiting query is %v (%s), want it resumed", st.GetState(), st.GetError())
	}
	waitFor(t, ctx, "the resumed query to wait at node-2 again", func() bool {
		st, err := cl2.Get(ctx, qid)
		return err == nil && len(st.GetAwaitingApproval()) == 1 && st.GetAwaitingApproval()[0].GetNodeId() == "node-2"
	})
	if err := n2.Decide(ctx, qid, true, "admin"); err != nil {
		t.Fatal(err)
	}
	st, err = cl2.Watch(ctx, qid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Fatalf("resumed query: %v from %d nodes (%s), want released from 3", st.GetState(), st.GetResult().GetNodes(), st.GetError())
	}
	if got, exact := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), exactTotal(t, nw, st.GetSpec()); math.Abs(got-exact) > 100 {
		t.Fatalf("released %v, exact %v", got, exact)
	}
	checkOneDebit(t, ctx, nw, st, "node-1", "node-2", "node-3")
}
