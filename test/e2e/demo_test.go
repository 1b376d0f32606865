package e2e

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/internal/synth"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

func syntheticData(t testing.TB, nodes, patients int) []*cdm.Records {
	t.Helper()
	out := make([]*cdm.Records, nodes)
	for i := range out {
		r, err := synth.Generate(synth.Options{Patients: patients, Seed: int64(100 + i), IDPrefix: demo.NodeID(i) + "-"})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func startNetwork(t *testing.T, nodes, threshold, minNodes int) *demo.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, nodes, 400), Threshold: threshold, MinNodes: minNodes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	return nw
}

// TestEndToEnd runs the cohort count through the real network (mTLS gRPC,
// multiparty BGV, DP noise) and checks the released total against the exact
// count computed in the clear: it must lie within the 99.9% bound of the
// noise that was added.
func TestEndToEnd(t *testing.T) {
	nw := startNetwork(t, 3, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)

	st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	res := st.GetResult()
	if res.GetNodes() != 3 || len(res.GetRows()) != 1 || len(res.GetRows()[0].GetValues()) != 1 {
		t.Fatalf("unexpected result shape: %v", res)
	}
	got := res.GetRows()[0].GetValues()[0]

	exact := exactTotal(t, nw, st.Spec)
	if exact < 10 {
		t.Fatalf("synthetic data has only %v diabetics; the test needs a real count", exact)
	}
	p := buildPlan(t, nw, st.Spec)
	sigma := p.NodeSigmas()[0] * math.Sqrt(3) // three partials, each with its share of the noise
	if bound := 3.291 * sigma; math.Abs(got.GetValue()-exact) > bound {
		t.Fatalf("released %v, exact %v: off by more than the 99.9%% bound %v (sigma %v)", got.GetValue(), exact, bound, sigma)
	}
	if got.GetSuppressed() || got.GetCiLow() > got.GetValue() || got.GetCiHigh() < got.GetValue() {
		t.Fatalf("released value without a sensible 95%% interval: %v", got)
	}
	if res.GetEpsilon() <= 0 || res.GetEpsilon() > 1+1e-9 || res.GetDelta() <= 0 {
		t.Fatalf("privacy cost not reported: eps=%v delta=%v", res.GetEpsilon(), res.GetDelta())
	}
	var phases []string
	for _, ph := range st.Phases {
		phases = append(phases, ph.Name)
	}
	if strings.Join(phases, ",") != "plan,collect,reveal,aggregate,key-switch,decrypt+release" {
		t.Fatalf("phases = %v", phases)
	}
}

// dialCoordinator dials the coordinator as who (nil: the analyst) until the
// test ends.
func dialCoordinator(t *testing.T, nw *demo.Network, who *pki.Identity) *client.Client {
	t.Helper()
	c, err := nw.Dial(who)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runQuery runs a query as c to its end (the network's deadline, no
// progress): an error when it ends without a release.
//
// Tests of the protocol ask the nodes every time (Fresh): a repeated
// question would otherwise be answered from its earlier release
// (TestSameQuestionCostsOnce).
func runQuery(ctx context.Context, c *client.Client, spec *typesv1.QuerySpec) (*coordinatorv1.QueryStatus, error) {
	return c.Run(ctx, spec, client.RunOptions{Fresh: true})
}

func buildPlan(t *testing.T, nw *demo.Network, spec *typesv1.QuerySpec) *plan.Plan {
	t.Helper()
	ref, _ := cdm.ParseDate(spec.GetReferenceDate())
	p, err := plan.Build(plan.Request{SQL: spec.GetSql(), Epsilon: spec.GetEpsilon(), Delta: spec.GetDelta(),
		MinNodes: int(spec.GetMinNodes()), Threshold: int(spec.GetThreshold()), ReferenceDate: ref}, nw.Catalogue)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func exactTotal(t *testing.T, nw *demo.Network, spec *typesv1.QuerySpec) float64 {
	t.Helper()
	_, e, err := nw.ExactValues(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return e.Values()[0]
}

// evaluate asks node id for its partial, signing the request as the
// coordinator.
func evaluate(t *testing.T, ctx context.Context, nw *demo.Network, nodes map[string]nodev1.NodeServiceClient, id, qid string, spec *typesv1.QuerySpec) (*nodev1.EvaluateResponse, error) {
	t.Helper()
	coord, err := pki.LoadIdentityDir(nw.Dir+"/pki", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	req, err := protocol.SignEvaluate(coord.Key, id, &nodev1.EvaluateBody{QueryId: qid, Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return nodes[id].Evaluate(ctx, req)
}

// coordinatorClients dials every node as the coordinator (the test plays a
// curious coordinator that holds the coordinator's certificate and key).
func coordinatorClients(t *testing.T, nw *demo.Network) map[string]nodev1.NodeServiceClient {
	t.Helper()
	id, err := pki.LoadIdentityDir(nw.Dir+"/pki", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]nodev1.NodeServiceClient{}
	for _, n := range nw.Nodes {
		conn, err := rpc.Dial(n.Addr(), id, n.ID())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out[n.ID()] = nodev1.NewNodeServiceClient(conn)
	}
	return out
}

// TestCoordinatorCannotDecryptOnePartial plays a curious coordinator: it gets
// real partials, then tries to have the nodes key-switch a single partial, or
// one partial twice, to a key it holds. The nodes refuse, and decrypting a
// partial with a key the coordinator holds yields nothing like the count.
func TestCoordinatorCannotDecryptOnePartial(t *testing.T) {
	nw := startNetwork(t, 3, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes := coordinatorClients(t, nw)
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2024-01-01"}
	qid := "q-curious"
	partials := collect(t, ctx, nw, nodes, qid, spec, "node-1", "node-2")
	params := nw.Coordinator.Params()
	rk, target := resultKey(t, params)

	// The coordinator's own key does not open a partial.
	var payload nodev1.PartialPayload
	if err := proto.Unmarshal(partials[0].GetSigned().GetPayload(), &payload); err != nil {
		t.Fatal(err)
	}
	ct, err := homomorphic.UnmarshalCiphertext(params, payload.GetCiphertexts()[0])
	if err != nil {
		t.Fatal(err)
	}
	vals, err := homomorphic.Decrypt(params, rk, []*homomorphic.Ciphertext{ct}, 1)
	if err == nil && math.Abs(float64(vals[0])) < 1e6 {
		t.Fatalf("a key the coordinator holds decrypted a partial to a plausible value %d", vals[0])
	}

	release := func(ps []*nodev1.NodeSigned) error {
		_, err := keySwitch(ctx, nodes, "node-1", &nodev1.KeySwitchRequest{QueryId: qid, Epoch: nw.Epoch, Spec: spec,
			Partials: ps, TargetPublicKey: target, Decryptors: []string{"node-1", "node-2"}})
		return err
	}
	// One partial alone: below min_nodes.
	if err := release(partials[:1]); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "fewer partials than min_nodes") {
		t.Fatalf("key switch of one partial: %v, want refusal for too few partials", err)
	}
	// The same partial twice does not count as two.
	if err := release([]*nodev1.NodeSigned{partials[0], partials[0]}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("key switch of a duplicated partial: %v, want InvalidArgument", err)
	}
	// A partial from another query id is refused.
	other := collect(t, ctx, nw, nodes, "q-other", spec, "node-2")[0]
	if err := release([]*nodev1.NodeSigned{partials[0], other}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "partial rejected") {
		t.Fatalf("key switch with a partial of another query: %v, want partial rejected", err)
	}
}

// TestTamperedPartialRejected flips one byte of a signed partial: the nodes
// refuse to key-switch a sum that includes it.
func TestTamperedPartialRejected(t *testing.T) {
	nw := startNetwork(t, 3, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes := coordinatorClients(t, nw)
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 3, ReferenceDate: "2024-01-01"}
	partials := collect(t, ctx, nw, nodes, "q-t", spec, nodeIDs(nw)...)
	tampered := proto.Clone(partials[1]).(*nodev1.NodeSigned)
	tampered.Signed.Payload[len(tampered.Signed.Payload)/2] ^= 1
	_, target := resultKey(t, nw.Coordinator.Params())
	_, err := keySwitch(ctx, nodes, "node-1", &nodev1.KeySwitchRequest{QueryId: "q-t", Epoch: nw.Epoch, Spec: spec,
		Partials: []*nodev1.NodeSigned{partials[0], tampered, partials[2]}, TargetPublicKey: target, Decryptors: []string{"node-1", "node-2", "node-3"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node-2") {
		t.Fatalf("tampered partial: %v, want InvalidArgument naming node-2", err)
	}
}

// TestTooFewNodes stops a node: a query needing all three fails, saying which
// node did not answer, and nothing is decrypted.
func TestTooFewNodes(t *testing.T) {
	nw := startNetwork(t, 3, 2, 2)
	nw.Nodes[2].Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3})
	if err == nil || !strings.Contains(st.GetError(), "node-3") || !strings.Contains(st.GetError(), "nothing was decrypted") {
		t.Fatalf("query with a node down and min_nodes 3: err %v, status error %q", err, st.GetError())
	}
	// With min_nodes 2 the two live nodes suffice (threshold 2 of 3).
	st, err = runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2})
	if err != nil {
		t.Fatalf("query with a node down and min_nodes 2: %v", err)
	}
	if st.GetResult().GetNodes() != 2 {
		t.Fatalf("released from %d nodes, want 2", st.GetResult().GetNodes())
	}
}

// keySwitch asks node at for its key-switch share of req after collecting,
// as the coordinator does, the commitment of every node whose partial is in
// req to this set of partials. A node that refuses to commit (it committed
// to another set) is left out, so that the decryptor's own check decides.
func keySwitch(ctx context.Context, nodes map[string]nodev1.NodeServiceClient, at string, req *nodev1.KeySwitchRequest) (*nodev1.KeySwitchResponse, error) {
	digest := protocol.CommitDigest(req.GetQueryId(), req.GetEpoch(), req.GetSpec(), req.GetPartials())
	req.Commits = nil
	for _, p := range req.GetPartials() {
		cl, ok := nodes[p.GetNodeId()]
		if !ok {
			continue
		}
		resp, err := cl.Commit(ctx, &nodev1.CommitRequest{QueryId: req.GetQueryId(), Epoch: req.GetEpoch(), Digest: digest})
		if err != nil {
			continue
		}
		req.Commits = append(req.Commits, &nodev1.NodeSigned{NodeId: p.GetNodeId(), Signed: resp.GetCommit()})
	}
	return nodes[at].KeySwitch(ctx, req)
}
