package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestPendingEpochKeepsActiveOne: a key ceremony that stops after KeyGen
// (here: a coordinator that never sends InstallKey for epoch 9) leaves the
// node's active epoch in service, its readiness report names the pending
// epoch as its latest, and the next ceremony picks an id above it and
// succeeds.
func TestPendingEpochKeepsActiveOne(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coordID := identity(t, dir, "coordinator")
	members, crs := ceremonyMembers(t, dir, nw)
	n1 := dialNode(t, nw.Nodes[0].Addr(), coordID, "node-1")
	if _, err := n1.KeyGen(ctx, &nodev1.KeyGenRequest{Epoch: 9, Params: nw.Coordinator.Params().Name(), Crs: crs, Members: members, Threshold: 2}); err != nil {
		t.Fatal(err)
	}
	r, err := n1.Info(ctx, &nodev1.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.GetEpochStatus(); r.GetEpoch() != 1 || st.GetEpoch() != 1 || !st.GetReady() || st.GetLatestEpoch() != 9 {
		t.Fatalf("Info with epoch 9 pending: epoch %d, status %v; want active 1, ready, latest 9", r.GetEpoch(), st)
	}
	// Epoch 1 still answers queries.
	req, err := protocol.SignEvaluate(coordID.Key, "node-1", &nodev1.EvaluateBody{QueryId: "q-during-pending", Epoch: 1,
		Spec:    &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2024-01-01"},
		Analyst: "analyst", Role: "analyst"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Evaluate(ctx, req); err != nil {
		t.Fatalf("a query of the active epoch while another is pending: %v", err)
	}
	// A KeyGen for an id not above the pending one is refused.
	if _, err := n1.KeyGen(ctx, &nodev1.KeyGenRequest{Epoch: 5, Params: nw.Coordinator.Params().Name(), Crs: crs, Members: members, Threshold: 2}); err == nil ||
		!strings.Contains(err.Error(), "not newer than this node's epoch 9") {
		t.Fatalf("KeyGen of epoch 5 with 9 pending: %v", err)
	}
	e, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatalf("the next ceremony: %v", err)
	}
	if e != 10 {
		t.Fatalf("the next ceremony made epoch %d, want 10 (above node-1's pending 9)", e)
	}
	for _, n := range nw.Nodes {
		if err := n.EpochReady(10); err != nil {
			t.Fatalf("%s after the ceremony: %v", n.ID(), err)
		}
	}
}
