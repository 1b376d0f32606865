package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// forgedData is a node's data step changed by an attacker: while value is
// set, every slot of every plan evaluates to it.
type forgedData struct {
	node.DataSource
	value *atomic.Int64
}

func (f forgedData) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	e, err := f.DataSource.Evaluate(ctx, p)
	v := f.value.Load()
	if err != nil || v == 0 {
		return e, err
	}
	vals := e.Values()
	for i := range vals {
		vals[i] = float64(v)
	}
	return eval.FromValues(p, vals)
}

// TestForgedDataClamped: node-3 runs the real protocol on forged data, a
// count of minus a million (within what eval lets through: the plan allows
// 10 million patients a node). The real protocol cannot carry it: a node
// clamps every slot to the plan's bounds (plan.Plan.PartialBound, for a
// count minus its noise tail and one quantum) before it commits to it and
// proves it in range, so node-3's partial holds that floor and the query is
// released with a total far above minus a million. A member that skips the
// clamp cannot prove its count (TestFaultMaliciousNode, TestCopiedPartialRefused:
// refused, naming it) or, proving another, cannot get it decrypted
// (TestFaultMaliciousNode: the total is not the sum of the committed
// counts). The same query from honest data is released before and after.
func TestForgedDataClamped(t *testing.T) {
	var forged atomic.Int64
	nw := startFault(t, demo.Options{MinNodes: 3, NodeData: func(id string, own node.DataSource) node.DataSource {
		if id != "node-3" {
			return own
		}
		return forgedData{DataSource: own, value: &forged}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func() *coordinatorv1.QueryStatus {
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, time.Minute)
	}
	honest := run()
	if honest.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query: %v %s", honest.GetState(), honest.GetError())
	}
	forged.Store(-1_000_000)
	st := run()
	if st.GetState() != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Fatalf("a count of minus a million from node-3: %v %s", st.GetState(), st.GetError())
	}
	p := buildPlan(t, nw, st.GetSpec())
	lo, _ := p.PartialBound(0)
	got, was := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), honest.GetResult().GetRows()[0].GetValues()[0].GetValue()
	// node-3's count became lo (plus its noise, clamped): the total moved
	// by node-3's real count and that floor, not by a million.
	if got < float64(lo)-1000 || got > was+1000 {
		t.Errorf("released %g with node-3's count of minus a million (clamped to %d); %g from honest data", got, lo, was)
	}
	t.Logf("released %g (honest %g; node-3 clamped to %d)", got, was, lo)
	forged.Store(0)
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query after: %v %s", st.GetState(), st.GetError())
	}
}

// TestWrongKeySwitchShareRefused: node-3, a decryptor (T = 3 of 3), runs
// the real release but hands out, in place of its key-switch share of this
// sum, the share it made for the query before (a well-formed polynomial,
// freshly signed for this release, so every signature and digest checks),
// without proofs, as every share goes out, or with proofs that are not of
// it. Shares are proven on demand (docs/crypto.md, "Proofs of key-switch
// shares"): the total comes out as no total three well-formed partials sum
// to and is refused, the coordinator asks each decryptor to prove the share
// it released, node-3 proves the share it made, not the one it handed out,
// and the query fails naming node-3, nothing released. Proofs sent with a
// share (a node of a version that proved its shares as it sent them) are
// checked on arrival: node-3's are refused before any share is combined,
// naming it. A share shifted by a small amount on purpose, which the
// total's checks may let through, cannot be proven either
// (TestKeySwitchShareProof, crypto/collective).
func TestWrongKeySwitchShareRefused(t *testing.T) {
	dir := t.TempDir()
	var stale atomic.Bool
	var mu sync.Mutex
	var prev [][]byte
	var withProofs atomic.Bool
	evil := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != nodev1.NodeService_KeySwitch_FullMethodName {
				return resp, err
			}
			s := resp.(*nodev1.KeySwitchResponse).GetShare()
			if s == nil {
				return resp, nil // PREPARE
			}
			var payload nodev1.KeySwitchPayload
			if err := proto.Unmarshal(s.GetPayload(), &payload); err != nil {
				panic(err)
			}
			mu.Lock()
			defer mu.Unlock()
			own := payload.Shares
			if !stale.Load() || prev == nil {
				prev = own
				return resp, nil
			}
			payload.Shares = prev
			var proofs [][]byte
			if withProofs.Load() {
				// A proof that is not of this share.
				proofs = [][]byte{[]byte("not a proof of this share")}
			}
			prev = own
			b, _ := proto.Marshal(&payload)
			return &nodev1.KeySwitchResponse{Share: resignAs(dir, "node-3", s, b), Proofs: proofs}, nil
		})}
	}
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 3, MinNodes: 3, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func() *coordinatorv1.QueryStatus {
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, time.Minute)
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query: %v %s", st.GetState(), st.GetError())
	}
	stale.Store(true)
	for _, tc := range []struct {
		proofs     bool
		want, then string
	}{
		{false, "node-3: its key-switch share of ciphertext 0 failed its proof: collective: proof of the key-switch share refused", "nothing is released"},
		{true, "proof of the key-switch share refused", "nothing was decrypted"},
	} {
		withProofs.Store(tc.proofs)
		st := run()
		if st.GetState() != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
			t.Fatalf("node-3 handed out a stale key-switch share (with proofs: %v): %v, result %v", tc.proofs, st.GetState(), st.GetResult())
		}
		if !strings.Contains(st.GetError(), "node-3") || !strings.Contains(st.GetError(), tc.want) || !strings.Contains(st.GetError(), tc.then) {
			t.Errorf("the failure %q does not name node-3 and %q", st.GetError(), tc.want)
		}
		for _, id := range []string{"node-1", "node-2"} {
			if strings.Contains(st.GetError(), id+": its key-switch share") || strings.Contains(st.GetError(), id+": release: key-switch share") {
				t.Errorf("an honest decryptor's share was blamed: %s", st.GetError())
			}
		}
		if _, err := client.ReleaseRecord(ctx, st.GetQueryId()); err == nil {
			t.Error("a release record was kept for a query that released nothing")
		}
		t.Logf("refused: %s", st.GetError())
	}
	stale.Store(false)
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query after: %v %s", st.GetState(), st.GetError())
	}
	// The coordinator's audit log names node-3 for both refusals.
	if named := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "release.share_proof_failed", "node", "node-3"); named < 2 {
		t.Fatalf("%d release.share_proof_failed entries naming node-3 in the coordinator's audit log, want one for each refused query", named)
	}
}
