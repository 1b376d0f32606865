package node_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// evaluateAt asks the first n nodes of nw (started in dir) for their
// partials of query qid with spec, as the coordinator does, and returns a
// client of each (by id, as the coordinator) and their signed headers.
func evaluateAt(t *testing.T, ctx context.Context, nw *demo.Network, dir, qid string, spec *typesv1.QuerySpec, n int) (map[string]nodev1.NodeServiceClient, []*nodev1.NodeSigned) {
	t.Helper()
	coordID := identity(t, dir, "coordinator")
	clients := map[string]nodev1.NodeServiceClient{}
	var set []*nodev1.NodeSigned
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		clients[id] = dialNode(t, nw.Nodes[i].Addr(), coordID, id)
		req, err := protocol.SignEvaluate(coordID.Key, id, &nodev1.EvaluateBody{QueryId: qid, Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := clients[id].Evaluate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()})
	}
	return clients, set
}

// TestRevealFromTheLedger: a node that no longer holds its partial in
// memory (a restart) reveals the partial its ledger stored with the charge,
// the one whose header it answered with; the set it revealed in is on disk,
// and another set is refused.
func TestRevealFromTheLedger(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2024-01-01"}
	clients, set := evaluateAt(t, ctx, nw, dir, "q-ledger", spec, 3)
	nw.Nodes[0].ForgetSentPartials()
	resp, err := clients["node-1"].Reveal(ctx, &nodev1.RevealRequest{QueryId: "q-ledger", Epoch: nw.Epoch, Spec: spec, Partials: set[:2]})
	if err != nil {
		t.Fatalf("reveal from the ledger: %v", err)
	}
	got := resp.GetPartial()
	if !bytes.Equal(got.GetHeader(), set[0].GetSigned().GetHeader()) || !bytes.Equal(got.GetSignature(), set[0].GetSigned().GetSignature()) {
		t.Fatal("the partial revealed is not the one whose header node-1 answered with")
	}
	// The whole partial verifies under node-1's key: its payload is the
	// one the header signed.
	payload, err := protocol.OwnPartial(identity(t, dir, "node-1").Cert.PublicKey, got, "q-ledger", nw.Epoch, "node-1", time.Now())
	if err != nil {
		t.Fatalf("the revealed partial: %v", err)
	}
	if !bytes.Equal(payload.GetSpecDigest(), protocol.SpecDigest(spec)) || len(payload.GetCiphertexts()) == 0 {
		t.Fatal("the revealed partial is not an encrypted partial of this spec")
	}
	nw.Nodes[0].ForgetSentPartials()
	_, err = clients["node-1"].Reveal(ctx, &nodev1.RevealRequest{QueryId: "q-ledger", Epoch: nw.Epoch, Spec: spec, Partials: []*nodev1.NodeSigned{set[0], set[2]}})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("node-1 asked to reveal in another set: %v, want AlreadyExists", err)
	}
}
