package coordinator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// limbClient is a node that answers ProveLimbs with answer (a fake of
// the transport only: the proofs are real, made by protocol.ProveLimbs;
// TestFaultMaliciousNode runs the same path over real nodes).
type limbClient struct {
	nodev1.NodeServiceClient
	answer func() (*nodev1.ProveLimbsResponse, error)
}

func (l limbClient) ProveLimbs(context.Context, *nodev1.ProveLimbsRequest, ...grpc.CallOption) (*nodev1.ProveLimbsResponse, error) {
	return l.answer()
}

// TestNameUnprovenLimbs: asked after a total refused as not the sum of
// the commitments (nameRefusal), members whose proofs of their limbs
// verify are not named (and when all do, the refusal stands as it was,
// audited release.limbs_proven); a member that does not prove, or sends a
// proof of another partial's limbs, is named, and only it
// (release.limb_proof_failed). The refusals are counted by whom they name
// (fedstat_coordinator_totals_refused_total).
func TestNameUnprovenLimbs(t *testing.T) {
	homomorphic.AllowInsecureForTests()
	params, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		t.Fatal(err)
	}
	pk := rk.Public()
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2026-01-01"}
	preq, err := protocol.PlanRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(preq, plan.DefaultCatalogue())
	if err != nil {
		t.Fatal(err)
	}
	digest := protocol.SpecDigest(spec)
	e := &epoch{ID: 3, PublicKey: pk}
	q := &query{id: "q-1", plan: p, st: &coordinatorv1.QueryStatus{Spec: spec}, ctx: context.Background()}
	// Each member's real partial and the proof of its limbs.
	members := []string{"node-1", "node-2", "node-3"}
	parts := make([]partial, len(members))
	proofs := map[string]*nodev1.ProveLimbsResponse{}
	for i, m := range members {
		encoded, rc, err := protocol.EncodePartial([]int64{int64(10 * i)}, protocol.PartialRanges(p), q.id, e.ID, m, digest)
		if err != nil {
			t.Fatal(err)
		}
		seed := make([]byte, homomorphic.SeedSize)
		rand.Read(seed)
		cts, _, _, err := protocol.EncryptEncodedSeeded(params, pk, encoded, rc, protocol.EncryptionContext(q.id, e.ID, m, digest), seed)
		if err != nil {
			t.Fatal(err)
		}
		parts[i] = partial{node: m, cts: cts, commitments: rc.Commitments}
		if proofs[m], err = protocol.ProveLimbs(params, pk, cts, encoded, seed, rc.Commitments, q.id, e.ID, m, digest); err != nil {
			t.Fatal(err)
		}
	}
	// One coordinator for every case, so that its metric counts them all.
	c, path := auditedCoordinator(t)
	c.params, c.reg, c.metrics = params, map[string]*regNode{}, newMetrics(nil)
	refused := fmt.Errorf("%w: %w: slot 0", ErrQueryFailed, rangeproof.ErrTotal)
	run := func(node3 func() (*nodev1.ProveLimbsResponse, error)) error {
		for _, m := range members {
			answer := func() (*nodev1.ProveLimbsResponse, error) { return proofs[m], nil }
			if m == "node-3" {
				answer = node3
			}
			c.reg[m] = &regNode{ID: m, client: limbClient{answer: answer}}
		}
		// As after a release refused at the total: the epoch keeps nothing
		// to prove key-switch shares against (nameUnprovenShares names no
		// one), so the members are asked.
		return c.nameRefusal(context.Background(), q, e, nil, nil, nil, nil, parts, refused)
	}
	if err := run(func() (*nodev1.ProveLimbsResponse, error) { return proofs["node-3"], nil }); err != refused {
		t.Fatalf("every member proves: %v, want the refusal as it was", err)
	}
	for _, c := range []struct {
		name   string
		answer func() (*nodev1.ProveLimbsResponse, error)
		text   string
	}{
		{"does not prove", func() (*nodev1.ProveLimbsResponse, error) { return nil, errors.New("injected") }, "node-3: did not prove its limbs"},
		{"another partial's proof", func() (*nodev1.ProveLimbsResponse, error) { return proofs["node-2"], nil }, "node-3: its proof of its limbs failed"},
	} {
		err := run(c.answer)
		if !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), c.text) || strings.Contains(err.Error(), "node-1") || strings.Contains(err.Error(), "node-2:") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	for named, want := range map[string]float64{"member": 2, "none": 1, "decryptor": 0} {
		var m dto.Metric
		if err := c.metrics.totalsRefused.WithLabelValues(named).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("fedstat_coordinator_totals_refused_total{named=%q} = %v, want %v", named, got, want)
		}
	}
	var proven, failed int
	for _, en := range auditEntries(t, path) {
		switch en.Action {
		case "release.limbs_proven":
			proven++
		case "release.limb_proof_failed":
			failed++
			if en.Details["node"] != "node-3" {
				t.Errorf("release.limb_proof_failed names %v", en.Details["node"])
			}
		}
	}
	if proven != 1 || failed != 2 {
		t.Errorf("%d release.limbs_proven and %d release.limb_proof_failed entries, want 1 and 2", proven, failed)
	}
}
