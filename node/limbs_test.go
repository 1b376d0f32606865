package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestProveLimbsFromWhatItKept: a node that no longer holds its partial in
// memory (a restart) proves the limbs of the partial it sent, from the
// witness it kept on disk; the proof verifies against the partial as
// revealed, under the epoch's key, and not as another node's. A node asked
// before it revealed its partial in a set, or about a query it sent no
// partial of, says so and proves nothing.
func TestProveLimbsFromWhatItKept(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2024-01-01"}
	clients, set := evaluateAt(t, ctx, nw, dir, "q-limbs", spec, 2)
	revealed, err := clients["node-1"].Reveal(ctx, &nodev1.RevealRequest{QueryId: "q-limbs", Epoch: nw.Epoch, Spec: spec, Partials: set})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := protocol.OwnPartial(identity(t, dir, "node-1").Cert.PublicKey, revealed.GetPartial(), "q-limbs", nw.Epoch, "node-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	params := nw.Coordinator.Params()
	pk, _, err := nw.Coordinator.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pt := &protocol.Partial{RangeCommitments: payload.GetRangeCommitments()}
	for _, b := range payload.GetCiphertexts() {
		ct, err := homomorphic.UnmarshalCiphertext(params, b)
		if err != nil {
			t.Fatal(err)
		}
		pt.Ciphertexts = append(pt.Ciphertexts, ct)
	}
	nw.Nodes[0].ForgetSentPartials()
	proof, err := clients["node-1"].ProveLimbs(ctx, &nodev1.ProveLimbsRequest{QueryId: "q-limbs", Epoch: nw.Epoch})
	if err != nil {
		t.Fatalf("node-1 proving its limbs: %v", err)
	}
	digest := protocol.SpecDigest(spec)
	if err := protocol.CheckLimbProof(params, pk, pt, proof, "q-limbs", nw.Epoch, "node-1", digest); err != nil {
		t.Fatalf("node-1's proof of its limbs: %v", err)
	}
	if err := protocol.CheckLimbProof(params, pk, pt, proof, "q-limbs", nw.Epoch, "node-2", digest); err == nil {
		t.Error("node-1's proof verified as node-2's")
	}
	// node-2 answered but has not revealed its partial: nothing yet.
	_, err = clients["node-2"].ProveLimbs(ctx, &nodev1.ProveLimbsRequest{QueryId: "q-limbs", Epoch: nw.Epoch})
	if err == nil || !strings.Contains(err.Error(), "has not revealed its partial") {
		t.Errorf("asked before it revealed: %v", err)
	}
	_, err = clients["node-1"].ProveLimbs(ctx, &nodev1.ProveLimbsRequest{QueryId: "q-never", Epoch: nw.Epoch})
	if err == nil || !strings.Contains(err.Error(), "sent no partial") {
		t.Errorf("asked about a query it did not answer: %v", err)
	}
}
