package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// TestNodeKeepsTheContract: a node judges an evaluate request's time with
// the window both sides share (protocol.DefaultMaxSkew by default, the
// coordinator's too: see TestCoordinatorKeepsTheContract), and refuses a
// plan that could wrap the plaintext modulus with the range check and the
// message the coordinator uses (protocol.CheckPlaintextRange). The refusal
// reaches the caller typed: errors.Is(rpc.FromStatus(err), ErrPlaintextOverrun).
func TestNodeKeepsTheContract(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coordID := identity(t, dir, "coordinator")
	n1 := dialNode(t, nw.Nodes[0].Addr(), coordID, "node-1")

	// A spec whose partials may be so large that three of them wrap (the
	// coordinator would never send it: it sets partial_limit itself).
	spec := &typesv1.QuerySpec{Sql: "SELECT SUM(CLAMP(value, 0, 1e12)) FROM observations", Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2024-01-01",
		PartialLimit: 1 << 60}
	preq, err := protocol.PlanRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(preq, nw.Catalogue)
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.CheckPlaintextRange(p, nw.Coordinator.Params(), len(nw.Nodes))
	if want == nil {
		t.Fatalf("the test's spec fits the plaintext range (%d over %d nodes)", p.MaxAbsTotal(len(nw.Nodes)), len(nw.Nodes))
	}

	evaluate := func(qid string, signed time.Time) error {
		t.Helper()
		req, err := protocol.SealEvaluate(coordID.Key, "node-1", &nodev1.EvaluateBody{QueryId: qid, Epoch: nw.Epoch, Spec: spec,
			Analyst: "analyst", Role: "analyst"}, signed)
		if err != nil {
			t.Fatal(err)
		}
		_, err = n1.Evaluate(ctx, req)
		return rpc.FromStatus(err)
	}
	// Signed just within the window: fresh, and refused by the range check.
	err = evaluate("q-range", time.Now().Add(-protocol.DefaultMaxSkew+time.Minute))
	if !errors.Is(err, node.ErrPlaintextOverrun) || !errors.Is(err, protocol.ErrPlaintextRange) || err.Error() != want.Error() ||
		rpc.Code(err) != codes.InvalidArgument {
		t.Errorf("a plan that could wrap: %v (%v), want %q, InvalidArgument", err, rpc.Code(err), want)
	}
	// Signed just beyond it: stale, in the node's words, naming the window.
	err = evaluate("q-stale", time.Now().Add(-protocol.DefaultMaxSkew-time.Minute))
	if !errors.Is(err, node.ErrReplayed) || rpc.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "max skew "+protocol.DefaultMaxSkew.String()) {
		t.Errorf("a request signed beyond the window: %v (%v)", err, rpc.Code(err))
	}
}
