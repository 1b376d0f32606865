package e2e

// System-level security tests of issue 6, run against the real in-process
// network (mTLS gRPC, multiparty BGV with T-of-N threshold, signed
// envelopes). The test plays a curious coordinator: it holds the
// coordinator's certificate and key, asks nodes for partials and key-switch
// shares directly, and checks what the nodes refuse and why. See
// docs/threat-model.md for the attack each test covers.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
)

// startSecure starts an n-node network with threshold t and min_nodes m on
// small synthetic data, with a budget large enough for many test queries.
func startSecure(t *testing.T, n, threshold, minNodes int, audited bool) *demo.Network {
	t.Helper()
	return startSecureWith(t, n, threshold, minNodes, audited, nil)
}

// startSecureWith is startSecure with every node under policy pol (nil:
// node.DefaultPolicy()).
func startSecureWith(t *testing.T, n, threshold, minNodes int, audited bool, pol *node.Policy) *demo.Network {
	t.Helper()
	data, err := demo.Synthetic(n, 300, 42)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: data, Threshold: threshold, MinNodes: minNodes, AuditLogs: audited,
		Budget: node.Budget{TotalRho: 1000, PerAnalystRho: 1000}, NodePolicy: pol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	return nw
}

// startCuriousCompact is startCurious with nodes that key-switch compact
// releases (policy accept_unproven_partials): for the tests of the compact
// release's own checks, whose requests carry no partials.
func startCuriousCompact(t *testing.T, n, threshold, minNodes int) (*demo.Network, context.Context, map[string]nodev1.NodeServiceClient) {
	t.Helper()
	pol := node.DefaultPolicy()
	pol.AcceptUnprovenPartials = true
	nw := startSecureWith(t, n, threshold, minNodes, false, pol)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return nw, ctx, coordinatorClients(t, nw)
}

// startCurious starts a network like startSecure and plays its curious
// coordinator: the nodes dialled with the coordinator's certificate, and a
// context (2 minutes) for the test's calls.
func startCurious(t *testing.T, n, threshold, minNodes int, audited bool) (*demo.Network, context.Context, map[string]nodev1.NodeServiceClient) {
	t.Helper()
	nw := startSecure(t, n, threshold, minNodes, audited)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return nw, ctx, coordinatorClients(t, nw)
}

// resultKey makes a result key, as the coordinator does for a release, and
// its public half (the key-switch target).
func resultKey(t *testing.T, params homomorphic.Params) (*homomorphic.ResultKey, []byte) {
	t.Helper()
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		t.Fatal(err)
	}
	target, err := rk.Public().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return rk, target
}

func secSpec(minNodes, threshold int) *typesv1.QuerySpec {
	return &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: int32(minNodes), Threshold: int32(threshold), ReferenceDate: "2024-01-01"}
}

// collect asks each node in ids for its partial of qid (epoch nw.Epoch), as
// the coordinator does: each node answers with its partial's signed header
// (Evaluate), then sends the partial within the set of those headers
// (Reveal), which it records as the one set its partial may be released
// in. A set smaller than the spec's min_nodes is filled up with the headers
// of other nodes (asked to evaluate qid, in network order), which are not
// revealed.
func collect(t *testing.T, ctx context.Context, nw *demo.Network, nodes map[string]nodev1.NodeServiceClient, qid string, spec *typesv1.QuerySpec, ids ...string) []*nodev1.NodeSigned {
	t.Helper()
	var set []*nodev1.NodeSigned
	ask := func(id string) {
		resp, err := evaluate(t, ctx, nw, nodes, id, qid, spec)
		if err != nil {
			t.Fatalf("evaluate %s at %s: %v", qid, id, err)
		}
		set = append(set, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()})
	}
	for _, id := range ids {
		ask(id)
	}
	for _, id := range nodeIDs(nw) {
		if len(set) >= int(spec.GetMinNodes()) {
			break
		}
		if !slices.Contains(ids, id) {
			ask(id)
		}
	}
	return reveal(t, ctx, nw, nodes, qid, spec, set, ids...)
}

// reveal asks each node in ids for its partial of qid within set (Reveal).
func reveal(t *testing.T, ctx context.Context, nw *demo.Network, nodes map[string]nodev1.NodeServiceClient, qid string, spec *typesv1.QuerySpec, set []*nodev1.NodeSigned, ids ...string) []*nodev1.NodeSigned {
	t.Helper()
	var out []*nodev1.NodeSigned
	for _, id := range ids {
		resp, err := nodes[id].Reveal(ctx, &nodev1.RevealRequest{QueryId: qid, Epoch: nw.Epoch, Spec: spec, Partials: set})
		if err != nil {
			t.Fatalf("reveal %s at %s: %v", qid, id, err)
		}
		out = append(out, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()})
	}
	return out
}

func nodeIDs(nw *demo.Network) []string {
	var ids []string
	for _, n := range nw.Nodes {
		ids = append(ids, n.ID())
	}
	return ids
}

// subsets returns every k-subset of ids, in order.
func subsets(ids []string, k int) [][]string {
	if k == 0 {
		return [][]string{nil}
	}
	if len(ids) < k {
		return nil
	}
	var out [][]string
	for _, rest := range subsets(ids[1:], k-1) {
		out = append(out, append([]string{ids[0]}, rest...))
	}
	return append(out, subsets(ids[1:], k)...)
}

// sumOf adds the ciphertexts of signed partials, as the coordinator does.
func sumOf(t *testing.T, params homomorphic.Params, partials []*nodev1.NodeSigned) []*homomorphic.Ciphertext {
	t.Helper()
	var vectors [][]*homomorphic.Ciphertext
	for _, ps := range partials {
		var payload nodev1.PartialPayload
		if err := proto.Unmarshal(ps.GetSigned().GetPayload(), &payload); err != nil {
			t.Fatal(err)
		}
		var vec []*homomorphic.Ciphertext
		for _, b := range payload.GetCiphertexts() {
			ct, err := homomorphic.UnmarshalCiphertext(params, b)
			if err != nil {
				t.Fatal(err)
			}
			vec = append(vec, ct)
		}
		vectors = append(vectors, vec)
	}
	sum, err := homomorphic.Sum(params, vectors)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// shareOf extracts the key-switch shares (one per ciphertext) of a response.
func shareOf(t *testing.T, resp *nodev1.KeySwitchResponse) [][]byte {
	t.Helper()
	var payload nodev1.KeySwitchPayload
	if err := proto.Unmarshal(resp.GetShare().GetPayload(), &payload); err != nil {
		t.Fatal(err)
	}
	return payload.GetShares()
}

// releaseValue combines key-switch shares (one per decryptor, first
// ciphertext) of sum, decrypts with rk and post-processes like the
// coordinator; it returns the released count.
func releaseValue(t *testing.T, nw *demo.Network, spec *typesv1.QuerySpec, sum []*homomorphic.Ciphertext, shares [][]byte, rk *homomorphic.ResultKey, partials int) (float64, error) {
	t.Helper()
	params := nw.Coordinator.Params()
	out, err := collective.KeySwitchCombine(params, sum[0], shares)
	if err != nil {
		return 0, err
	}
	p := buildPlan(t, nw, spec)
	totals, err := homomorphic.Decrypt(params, rk, []*homomorphic.Ciphertext{out}, p.VectorLen())
	if err != nil {
		return 0, err
	}
	r, err := dp.Release(p, totals, partials)
	if err != nil {
		return 0, err
	}
	return r.Rows[0].Values[0].Value, nil
}

func wantCode(t *testing.T, what string, err error, code codes.Code, texts ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %v", what, err, code)
	}
	for _, s := range texts {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("%s: error %q does not name %q", what, err, s)
		}
	}
}

// TestReleaseWithAnyThresholdSubset shows, on 2-of-3 and 3-of-5 networks,
// that every T-subset of members can release a query's total (driving the
// key switch directly, for each subset), that a node refuses to help with
// T-1 decryptors, that the T-1 shares of a valid release combine to nothing
// like the total, and that the coordinator releases with N-T members stopped.
func TestReleaseWithAnyThresholdSubset(t *testing.T) {
	for _, tc := range []struct{ n, t int }{{3, 2}, {5, 3}} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.t, tc.n), func(t *testing.T) {
			nw, ctx, nodes := startCurious(t, tc.n, tc.t, tc.t, false)
			params := nw.Coordinator.Params()
			spec := secSpec(tc.t, tc.t)
			ids := nodeIDs(nw)
			exact := exactTotal(t, nw, spec)
			sigma := buildPlan(t, nw, spec).NodeSigmas()[0] * math.Sqrt(float64(tc.n))
			bound := 5 * sigma

			rk, target := resultKey(t, params)
			var lastShares [][]byte
			var lastSum []*homomorphic.Ciphertext
			for i, set := range subsets(ids, tc.t) {
				qid := fmt.Sprintf("q-subset-%d", i)
				partials := collect(t, ctx, nw, nodes, qid, spec, ids...)
				sum := sumOf(t, params, partials)
				var shares [][]byte
				for _, d := range set {
					resp, err := keySwitch(ctx, nodes, d, &nodev1.KeySwitchRequest{QueryId: qid, Epoch: nw.Epoch, Spec: spec,
						Partials: partials, TargetPublicKey: target, Decryptors: set})
					if err != nil {
						t.Fatalf("decryptors %v: %s refused: %v", set, d, err)
					}
					shares = append(shares, shareOf(t, resp)[0])
				}
				got, err := releaseValue(t, nw, spec, sum, shares, rk, len(partials))
				if err != nil {
					t.Fatalf("decryptors %v: %v", set, err)
				}
				if math.Abs(got-exact) > bound {
					t.Fatalf("decryptors %v released %v, exact %v: off by more than %v", set, got, exact, bound)
				}
				lastShares, lastSum = shares, sum
			}

			// T-1 of the shares of a valid release do not decrypt the total.
			if got, err := releaseValue(t, nw, spec, lastSum, lastShares[:tc.t-1], rk, tc.n); err == nil && math.Abs(got-exact) <= bound {
				t.Fatalf("T-1 key-switch shares released %v, exact %v", got, exact)
			}

			// A node refuses to key-switch for T-1 decryptors.
			partials := collect(t, ctx, nw, nodes, "q-below-threshold", spec, ids...)
			_, err := nodes[ids[0]].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-below-threshold", Epoch: nw.Epoch, Spec: spec,
				Partials: partials, TargetPublicKey: target, Decryptors: ids[:tc.t-1]})
			wantCode(t, "key switch with T-1 decryptors", err, codes.InvalidArgument, fmt.Sprintf("needs exactly %d decryptors, got %d", tc.t, tc.t-1))
			// And a node that is not among the decryptors refuses too.
			_, err = nodes[ids[tc.n-1]].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-below-threshold", Epoch: nw.Epoch, Spec: spec,
				Partials: partials, TargetPublicKey: target, Decryptors: ids[:tc.t]})
			wantCode(t, "key switch at a non-decryptor", err, codes.InvalidArgument, "not among the decryptors")

			// Through the coordinator, with N-T members stopped (not the
			// last ones, so the decryptors are not a prefix of the members).
			stopped := map[string]bool{}
			for i := 0; i < tc.n-tc.t; i++ {
				n := nw.Nodes[2*i]
				stopped[n.ID()] = true
				n.Close()
			}
			client := dialCoordinator(t, nw, nil)
			st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: int32(tc.t)})
			if err != nil {
				t.Fatalf("release with %v stopped: %v", stopped, err)
			}
			if st.GetResult().GetNodes() != int32(tc.t) {
				t.Fatalf("released from %d nodes, want %d", st.GetResult().GetNodes(), tc.t)
			}
			for _, np := range st.GetNodes() {
				if stopped[np.GetNodeId()] == (np.GetStatus() == "decrypted") {
					t.Fatalf("node %s (stopped %v) has status %q", np.GetNodeId(), stopped[np.GetNodeId()], np.GetStatus())
				}
			}
			// With one more member stopped (T-1 left), nothing is released.
			for _, n := range nw.Nodes {
				if !stopped[n.ID()] {
					n.Close()
					break
				}
			}
			st, err = runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: int32(tc.t)})
			if err == nil || !strings.Contains(st.GetError(), "nothing was decrypted") {
				t.Fatalf("release with T-1 members up: err %v, status %q", err, st.GetError())
			}
		})
	}
}

// TestReleaseRetryAfterRefusal: a release request that a node refused (here:
// T-1 decryptors) must not keep the node from helping with a correct request
// for the same query and the same signed partials (nothing was released).
func TestReleaseRetryAfterRefusal(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	spec := secSpec(2, 2)
	partials := collect(t, ctx, nw, nodes, "q-retry", spec, "node-1", "node-2", "node-3")
	_, target := resultKey(t, nw.Coordinator.Params())
	req := &nodev1.KeySwitchRequest{QueryId: "q-retry", Epoch: nw.Epoch, Spec: spec, Partials: partials, TargetPublicKey: target, Decryptors: []string{"node-1"}}
	_, err := keySwitch(ctx, nodes, "node-1", req)
	wantCode(t, "T-1 decryptors", err, codes.InvalidArgument, "decryptors")
	req.Decryptors = []string{"node-1", "node-2"}
	if _, err := keySwitch(ctx, nodes, "node-1", req); err != nil {
		t.Fatalf("a corrected release request after a refusal was refused: %v", err)
	}
}

// TestReplayedPartialsRefused presents partials bound to another query id,
// another key epoch, or another node, and checks each refusal names its
// reason; after a second key ceremony, requests of the old epoch fail with a
// clear error.
func TestReplayedPartialsRefused(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	spec := secSpec(2, 2)
	_, target := resultKey(t, nw.Coordinator.Params())
	dec := []string{"node-1", "node-2"}
	// Refused requests go without commitments (the partial checks come
	// first); committing the nodes to these sets would, rightly, keep the
	// genuine set from being released afterwards.
	release := func(at, qid string, epoch uint64, ps ...*nodev1.NodeSigned) error {
		_, err := nodes[at].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: qid, Epoch: epoch, Spec: spec,
			Partials: ps, TargetPublicKey: target, Decryptors: dec})
		return err
	}
	a := collect(t, ctx, nw, nodes, "q-a", spec, "node-1", "node-2", "node-3")
	b := collect(t, ctx, nw, nodes, "q-b", spec, "node-2")

	// Another query id: node-2's partial of q-b in the release of q-a. The
	// bad partial goes first, so no good one is consumed by the refusal.
	err := release("node-1", "q-a", nw.Epoch, b[0], a[0])
	wantCode(t, "partial of another query id", err, codes.InvalidArgument, "partial rejected", "node-2", "binding mismatch", "q-b")

	// Another node: node-2's partial presented as node-3's.
	forged := &nodev1.NodeSigned{NodeId: "node-3", Signed: a[1].GetSigned()}
	err = release("node-2", "q-a", nw.Epoch, forged, a[0])
	wantCode(t, "node-2's partial as node-3's", err, codes.InvalidArgument, "partial rejected", "node-3", "bad signature")

	// A non-member's partial.
	err = release("node-2", "q-a", nw.Epoch, &nodev1.NodeSigned{NodeId: "node-9", Signed: a[1].GetSigned()}, a[0])
	wantCode(t, "partial of a non-member", err, codes.InvalidArgument, "node-9", "not a member")

	// The genuine partials still release.
	if _, err := keySwitch(ctx, nodes, "node-1", &nodev1.KeySwitchRequest{QueryId: "q-a", Epoch: nw.Epoch, Spec: spec,
		Partials: a, TargetPublicKey: target, Decryptors: dec}); err != nil {
		t.Fatalf("genuine release after refused ones: %v", err)
	}

	// Another epoch: a second key ceremony makes epoch 2.
	old := collect(t, ctx, nw, nodes, "q-e", spec, "node-1", "node-2", "node-3")
	oldEpoch := nw.Epoch
	e2, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e2 != oldEpoch+1 {
		t.Fatalf("second ceremony made epoch %d, want %d", e2, oldEpoch+1)
	}
	// Epoch-1 partials in an epoch-2 release: the binding names epoch 1.
	err = release("node-2", "q-e", e2, old[0], old[1], old[2])
	wantCode(t, "epoch-1 partial in epoch 2", err, codes.InvalidArgument, "partial rejected", "node-1", "binding mismatch", "epoch 1")
	// The nodes serve the epoch a new one replaced for
	// node.PreviousEpochGrace (queries that started in it finish); one
	// more ceremony makes epoch 1 older than that.
	e3, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A release of the old epoch.
	err = release("node-1", "q-e", oldEpoch, old...)
	wantCode(t, "release of the old epoch", err, codes.FailedPrecondition, "another key epoch", "epoch 1", "at epoch 3")
	// An evaluate request of the old epoch.
	_, err = evaluate(t, ctx, nw, nodes, "node-1", "q-e-old", spec)
	wantCode(t, "evaluate in the old epoch", err, codes.FailedPrecondition, "another key epoch", "epoch 1", "at epoch 3")

	// The newest epoch works end to end.
	e2 = e3
	nw.Epoch = e2
	client := dialCoordinator(t, nw, nil)
	st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2})
	if err != nil {
		t.Fatalf("query in epoch 2: %v", err)
	}
	if st.GetEpoch() != e2 {
		t.Fatalf("query ran in epoch %d, want %d", st.GetEpoch(), e2)
	}
}

// TestSecondReleaseRefused: the same release request again returns the same
// stored share; any different request for that query id (another target
// key, other decryptors, fewer partials) is refused with AlreadyExists.
func TestSecondReleaseRefused(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	spec := secSpec(2, 2)
	params := nw.Coordinator.Params()
	partials := collect(t, ctx, nw, nodes, "q-once", spec, "node-1", "node-2", "node-3")
	rk, target := resultKey(t, params)
	req := &nodev1.KeySwitchRequest{QueryId: "q-once", Epoch: nw.Epoch, Spec: spec, Partials: partials, TargetPublicKey: target, Decryptors: []string{"node-1", "node-2"}}
	first, err := keySwitch(ctx, nodes, "node-1", req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := keySwitch(ctx, nodes, "node-1", req)
	if err != nil {
		t.Fatalf("the same release request again: %v", err)
	}
	if !proto.Equal(first.GetShare(), again.GetShare()) {
		t.Fatal("the same release request again returned a different share")
	}

	_, target2 := resultKey(t, params)
	for name, mod := range map[string]func(r *nodev1.KeySwitchRequest){
		"another target key":   func(r *nodev1.KeySwitchRequest) { r.TargetPublicKey = target2 },
		"other decryptors":     func(r *nodev1.KeySwitchRequest) { r.Decryptors = []string{"node-1", "node-3"} },
		"a subset of partials": func(r *nodev1.KeySwitchRequest) { r.Partials = partials[:2] },
	} {
		r := proto.Clone(req).(*nodev1.KeySwitchRequest)
		mod(r)
		_, err := keySwitch(ctx, nodes, "node-1", r)
		wantCode(t, "second release with "+name, err, codes.AlreadyExists, "already", "q-once")
	}
	// The refused second release to a key the coordinator holds gives it
	// nothing: one share of a 2-of-3 release does not decrypt.
	sum := sumOf(t, params, partials)
	if got, err := releaseValue(t, nw, spec, sum, shareOf(t, first), rk, 3); err == nil && math.Abs(got) < 1e6 {
		t.Fatalf("one key-switch share decrypted to a plausible %v", got)
	}
}

// TestFewerThanMinNodesRefusedByDecryptors: a sum of fewer partials than the
// query's min_nodes (though at least T) is refused by every decrypting
// node, and so is a query whose min_nodes is below the node's policy.
func TestFewerThanMinNodesRefusedByDecryptors(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 3, false)
	spec := secSpec(3, 2)
	partials := collect(t, ctx, nw, nodes, "q-min", spec, "node-1", "node-2", "node-3")
	_, target := resultKey(t, nw.Coordinator.Params())
	for _, d := range []string{"node-1", "node-2"} {
		_, err := keySwitch(ctx, nodes, d, &nodev1.KeySwitchRequest{QueryId: "q-min", Epoch: nw.Epoch, Spec: spec,
			Partials: partials[:2], TargetPublicKey: target, Decryptors: []string{"node-1", "node-2"}})
		wantCode(t, "two partials with min_nodes 3 at "+d, err, codes.FailedPrecondition, "fewer partials than min_nodes", "2 partials", "at least 3")
	}
	// A spec that lowers min_nodes below the node policy's minimum (2) is
	// refused already at evaluation, and its release too.
	low := secSpec(1, 1)
	_, err := evaluate(t, ctx, nw, nodes, "node-1", "q-low", low)
	wantCode(t, "evaluate with min_nodes 1", err, codes.PermissionDenied, "min_nodes 1 is below")
	_, err = keySwitch(ctx, nodes, "node-3", &nodev1.KeySwitchRequest{QueryId: "q-min", Epoch: nw.Epoch, Spec: low,
		Partials: partials[2:], TargetPublicKey: target, Decryptors: []string{"node-2", "node-3"}})
	// (min_nodes 1 needs threshold 1, and the epoch's is 2: the decryptor
	// refuses the spec before it counts the partials.)
	wantCode(t, "release of one partial with min_nodes 1", err, codes.InvalidArgument, "threshold 1", "has threshold 2")
}

// TestEvaluateRequestAuthentication: the same signed evaluate request sent
// twice is refused the second time; a request signed for node-1 is refused
// by node-2; a re-delivery of a query id with a fresh signature returns the
// stored partial without a second debit; a caller without a client
// certificate is refused with Unauthenticated and audited; a caller with the
// wrong role is refused with PermissionDenied and audited.
func TestEvaluateRequestAuthentication(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, true)
	spec := secSpec(2, 2)
	coord, err := pki.LoadIdentityDir(nw.Dir+"/pki", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	body := &nodev1.EvaluateBody{QueryId: "q-replay", Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}
	req, err := protocol.SignEvaluate(coord.Key, "node-1", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	first, err := nodes["node-1"].Evaluate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = nodes["node-1"].Evaluate(ctx, req)
	wantCode(t, "the same signed request twice", err, codes.PermissionDenied, "replayed")

	// Signed for node-1, sent to node-2.
	req1, _ := protocol.SignEvaluate(coord.Key, "node-1", &nodev1.EvaluateBody{QueryId: "q-addr", Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now())
	_, err = nodes["node-2"].Evaluate(ctx, req1)
	wantCode(t, "request for node-1 at node-2", err, codes.InvalidArgument, "addressed to node-1")

	// A stale request (signed 20 minutes ago, beyond the 15-minute skew).
	stale, _ := protocol.SignEvaluate(coord.Key, "node-1", &nodev1.EvaluateBody{QueryId: "q-stale", Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now().Add(-20*time.Minute))
	_, err = nodes["node-1"].Evaluate(ctx, stale)
	wantCode(t, "stale request", err, codes.PermissionDenied, "stale")

	// Re-delivery with a fresh signature: the stored partial, no new debit.
	spent := func() float64 {
		b, err := nodes["node-1"].Budget(ctx, &nodev1.BudgetRequest{Analyst: "analyst"})
		if err != nil {
			t.Fatal(err)
		}
		return b.GetSpentRho()
	}
	before := spent()
	again, err := evaluate(t, ctx, nw, nodes, "node-1", "q-replay", spec)
	if err != nil {
		t.Fatalf("re-delivery of q-replay: %v", err)
	}
	if !again.GetReplayed() || !proto.Equal(again.GetPartial(), first.GetPartial()) {
		t.Fatalf("re-delivery: replayed=%v, same partial=%v", again.GetReplayed(), proto.Equal(again.GetPartial(), first.GetPartial()))
	}
	if after := spent(); after != before || before <= 0 {
		t.Fatalf("budget before %v, after re-delivery %v", before, after)
	}

	// No client certificate: TLS that trusts the network CA but presents
	// nothing.
	pool := x509.NewCertPool()
	pool.AddCert(coord.CA)
	conn, err := grpc.NewClient(nw.Nodes[0].Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "node-1", MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = nodev1.NewNodeServiceClient(conn).Evaluate(ctx, req1)
	wantCode(t, "caller without a client certificate", err, codes.Unauthenticated, "no valid network certificate")
	_, err = nodev1.NewNodeServiceClient(conn).KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-x"})
	wantCode(t, "key switch without a client certificate", err, codes.Unauthenticated)

	// The analyst's certificate is valid but has the wrong role.
	aconn, err := rpc.Dial(nw.Nodes[0].Addr(), nw.Analyst, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer aconn.Close()
	areq, _ := protocol.SignEvaluate(nw.Analyst.Key, "node-1", &nodev1.EvaluateBody{QueryId: "q-analyst", Epoch: nw.Epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now())
	_, err = nodev1.NewNodeServiceClient(aconn).Evaluate(ctx, areq)
	wantCode(t, "evaluate as an analyst", err, codes.PermissionDenied, "role analyst")
	_, err = nodev1.NewNodeServiceClient(aconn).KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-analyst"})
	wantCode(t, "key switch as an analyst", err, codes.PermissionDenied, "role analyst")

	// node-1's audit log holds the refusals and still verifies.
	f, err := os.Open(filepath.Join(nw.Dir, "node-1", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var unauth, replayed, analyst int
	if err := audit.Scan(f, func(_ int, e audit.Entry) error {
		reason := fmt.Sprint(e.Details["reason"])
		switch {
		case e.Action == "call.refused" && e.Actor == "unauthenticated" && strings.Contains(fmt.Sprint(e.Details["method"]), "Evaluate"):
			unauth++
		case e.Action == "query.refused" && strings.Contains(reason, "replayed"):
			replayed++
		case e.Action == "query.refused" && e.Actor == "analyst" && strings.Contains(reason, "role analyst"):
			analyst++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if unauth == 0 || replayed == 0 || analyst == 0 {
		t.Fatalf("audit log of node-1: %d unauthenticated call(s), %d replayed request(s), %d wrong-role request(s); want each", unauth, replayed, analyst)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(f); err != nil {
		t.Fatalf("audit log of node-1 does not verify: %v", err)
	}
}

// TestMalformedInputRejected: garbage bytes as a ciphertext (validly signed
// by its node), an oversized message and a partial of another query id are
// each refused with an error that names the problem, and the network still
// answers a fresh query afterwards.
func TestMalformedInputRejected(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	spec := secSpec(2, 2)
	params := nw.Coordinator.Params()
	_, target := resultKey(t, params)
	dec := []string{"node-1", "node-2"}
	good := collect(t, ctx, nw, nodes, "q-bad", spec, "node-1", "node-3")
	p := buildPlan(t, nw, spec)

	// Requests with a bad partial go without commitments (the partial
	// checks come first): committing the honest nodes to a set with a bad
	// partial would keep the good set from release, as it should.

	// Garbage ciphertext in a partial correctly signed by node-2 (the test
	// holds node-2's key, so the bytes reach the ciphertext decoder).
	n2, err := pki.LoadIdentityDir(nw.Dir+"/pki", "node-2")
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, params.CiphertextSize())
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	// (Range commitments and a proof of the right shape, so that the bytes
	// get as far as the ciphertext decoder.)
	pb, _ := proto.Marshal(&nodev1.PartialPayload{VectorLen: int32(p.VectorLen()), Ciphertexts: [][]byte{garbage}, SpecDigest: protocol.SpecDigest(spec),
		RangeCommitments: make([]byte, rangeproof.PointSize*p.VectorLen()), RangeProof: []byte{1}})
	env, err := envelope.Seal(n2.Key, envelope.Binding{QueryID: "q-bad", Epoch: nw.Epoch, NodeID: "node-2", Kind: protocol.KindPartial}, pb, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bad := &nodev1.NodeSigned{NodeId: "node-2", Signed: protocol.ToProto(env)}
	_, err = nodes["node-1"].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-bad", Epoch: nw.Epoch, Spec: spec,
		Partials: []*nodev1.NodeSigned{bad, good[0], good[1]}, TargetPublicKey: target, Decryptors: dec})
	wantCode(t, "garbage ciphertext", err, codes.InvalidArgument, "partial rejected", "node-2", "ciphertext 0")

	// Garbage as the signed envelope itself.
	junk := &nodev1.NodeSigned{NodeId: "node-2", Signed: &typesv1.Signed{Header: []byte("junk"), Payload: []byte{1, 2, 3}, Signature: []byte{4}}}
	_, err = nodes["node-1"].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-bad", Epoch: nw.Epoch, Spec: spec,
		Partials: []*nodev1.NodeSigned{junk, good[0], good[1]}, TargetPublicKey: target, Decryptors: dec})
	wantCode(t, "garbage envelope", err, codes.InvalidArgument, "partial rejected", "node-2")

	// Garbage as the target key.
	_, err = keySwitch(ctx, nodes, "node-2", &nodev1.KeySwitchRequest{QueryId: "q-bad", Epoch: nw.Epoch, Spec: spec,
		Partials: good, TargetPublicKey: garbage[:100], Decryptors: dec})
	wantCode(t, "garbage target key", err, codes.InvalidArgument, "target key")

	// A message above rpc.MaxMessageBytes: the client is allowed to send it,
	// the node refuses it before decoding.
	big, err := rpc.Dial(nw.Nodes[0].Addr(), mustIdentity(t, nw, "coordinator"), "node-1",
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(2*rpc.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	_, err = nodev1.NewNodeServiceClient(big).KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-big", TargetPublicKey: make([]byte, rpc.MaxMessageBytes+1)})
	wantCode(t, "oversized message", err, codes.ResourceExhausted, "larger than max")

	// A partial of another query id in a release.
	other := collect(t, ctx, nw, nodes, "q-other", spec, "node-2")
	_, err = nodes["node-1"].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-bad", Epoch: nw.Epoch, Spec: spec,
		Partials: []*nodev1.NodeSigned{other[0], good[0], good[1]}, TargetPublicKey: target, Decryptors: dec})
	wantCode(t, "partial of another query", err, codes.InvalidArgument, "partial rejected", "node-2", "q-other")

	// The network still answers.
	client := dialCoordinator(t, nw, nil)
	if _, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2}); err != nil {
		t.Fatalf("fresh query after malformed input: %v", err)
	}
}

func mustIdentity(t *testing.T, nw *demo.Network, name string) *pki.Identity {
	t.Helper()
	id, err := pki.LoadIdentityDir(nw.Dir+"/pki", name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestReleaseMinNodesBoundToEvaluation: partials noised for min_nodes m = 3
// (each node adds variance sigma^2/(m-T+1) = sigma^2/2 at T = 2) must not be
// released as a sum of two under a spec that claims m = 2: with one
// colluding node removing its own noise, the other's sigma^2/2 would be all
// that is left, half the variance the release promises.
func TestReleaseMinNodesBoundToEvaluation(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	partials := collect(t, ctx, nw, nodes, "q-m3", secSpec(3, 2), "node-1", "node-2", "node-3")
	_, target := resultKey(t, nw.Coordinator.Params())
	_, err := keySwitch(ctx, nodes, "node-1", &nodev1.KeySwitchRequest{QueryId: "q-m3", Epoch: nw.Epoch, Spec: secSpec(2, 2),
		Partials: partials[:2], TargetPublicKey: target, Decryptors: []string{"node-1", "node-2"}})
	if err == nil {
		t.Fatal("partials noised for min_nodes 3 were released as a sum of 2 under a spec claiming min_nodes 2")
	}
	if !strings.Contains(err.Error(), "min_nodes") {
		t.Fatalf("release under a smaller min_nodes than evaluated: %v, want a refusal naming min_nodes", err)
	}
}

// TestDisjointDecryptorSetsCannotReleaseTwice: with N >= 2T two decryptor
// sets can be disjoint, and each node remembers only its own release of a
// query id. A second release of the same query by a disjoint set, with one
// partial left out, would give the coordinator that partial alone (the
// difference of the two totals) without any colluding node.
func TestDisjointDecryptorSetsCannotReleaseTwice(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 5, 2, 2, false)
	params := nw.Coordinator.Params()
	spec := secSpec(3, 2)
	ids := nodeIDs(nw)
	partials := collect(t, ctx, nw, nodes, "q-twice", spec, ids...)
	release := func(ps []*nodev1.NodeSigned, dec []string) (float64, error) {
		rk, target := resultKey(t, params)
		var shares [][]byte
		for _, d := range dec {
			resp, err := keySwitch(ctx, nodes, d, &nodev1.KeySwitchRequest{QueryId: "q-twice", Epoch: nw.Epoch, Spec: spec,
				Partials: ps, TargetPublicKey: target, Decryptors: dec})
			if err != nil {
				return 0, err
			}
			shares = append(shares, shareOf(t, resp)[0])
		}
		return releaseValue(t, nw, spec, sumOf(t, params, ps), shares, rk, len(ps))
	}
	all, err := release(partials, []string{"node-1", "node-2"})
	if err != nil {
		t.Fatal(err)
	}
	fewer, err := release(partials[:4], []string{"node-3", "node-4"})
	if err == nil {
		p := buildPlan(t, nw, spec)
		b := cdm.NewBuilder()
		b.AddRecords(nw.Records(4))
		exact5, err := eval.Evaluate(ctx, p, b.Build())
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("a second release by a disjoint decryptor set went through: the difference of the two totals, %v, "+
			"is node-5's partial alone (exact %v; its noise sigma is %.2f)", all-fewer, exact5.Values()[0], p.NodeSigmas()[0])
	}
	wantCode(t, "second release by a disjoint decryptor set", err, codes.InvalidArgument, "no commitment to this set of partials", "node-1")
	// The refusal comes from the commitments: every node that committed to
	// the first set refuses to commit to the second.
	digest := protocol.CommitDigest("q-twice", nw.Epoch, spec, partials[:4])
	_, err = nodes["node-1"].Commit(ctx, &nodev1.CommitRequest{QueryId: "q-twice", Epoch: nw.Epoch, Digest: digest})
	wantCode(t, "commitment to a second partial set", err, codes.AlreadyExists, "already committed to another set of partials")
}
