package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestBudgetComesFromTheNodes: the coordinator keeps no copy of any budget.
// Budget asks each node's ledger at the time: after a query every node
// reports the debit, and once a node is stopped it is listed with an error
// and no figure, not with one remembered from before.
func TestBudgetComesFromTheNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	homomorphic.AllowInsecureForTests()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 100, 9)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet, Threshold: 2, MinNodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	analyst, err := nw.Dial(nw.Analyst)
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close()
	if _, err := analyst.Run(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery}, client.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	budget := func() map[string]*coordinatorv1.NodeBudget {
		t.Helper()
		r, err := analyst.Budget(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*coordinatorv1.NodeBudget{}
		for _, n := range r.GetNodes() {
			out[n.GetNodeId()] = n
		}
		return out
	}
	before := budget()
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		if b := before[id]; b == nil || b.GetError() != "" || !(b.GetSpentRho() > 0) {
			t.Fatalf("%s after a query: %v, want its ledger's debit", id, b)
		}
	}
	nw.Nodes[2].Close()
	after := budget()
	if b := after["node-3"]; b == nil || b.GetError() == "" || b.GetSpentRho() != 0 || b.GetLimitRho() != 0 {
		t.Errorf("node-3 stopped: the coordinator reports %v, want an error and no figure", b)
	}
	if after["node-1"].GetSpentRho() != before["node-1"].GetSpentRho() {
		t.Errorf("node-1: %v before, %v after", before["node-1"], after["node-1"])
	}
}
