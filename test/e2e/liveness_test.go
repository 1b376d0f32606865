package e2e

// Liveness tests of issue 14, in-process: the two-step release at a node,
// the coordinator's retry of a release with another decryptor set over the
// same committed partials, decryptors chosen by readiness, and the
// lost-member policies. The same scenarios against separate processes are in
// liveness_process_test.go.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// keySwitchCall is a KeySwitch request as a node received it.
type keySwitchCall struct {
	node       string
	phase      nodev1.KeySwitchPhase
	decryptors []string
	commit     []byte // CommitDigest of its partial set (nil without partials)
}

// keySwitchSpy records the KeySwitch calls every node receives and can make
// one node fail one phase of them (as if it were unreachable then), or
// refuse at PREPARE the partial of another node as a decryptor that found
// it bad would (a false refusal: refuse maps the decryptor to the sender).
type keySwitchSpy struct {
	mu     sync.Mutex
	calls  []keySwitchCall
	fail   map[string]nodev1.KeySwitchPhase
	refuse map[string]string
}

func (s *keySwitchSpy) options(id string) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ks, ok := req.(*nodev1.KeySwitchRequest)
		if !ok {
			return h(ctx, req)
		}
		c := keySwitchCall{node: id, phase: ks.GetPhase(), decryptors: slices.Clone(ks.GetDecryptors())}
		if len(ks.GetPartials()) > 0 {
			c.commit = protocol.CommitDigest(ks.GetQueryId(), ks.GetEpoch(), ks.GetSpec(), ks.GetPartials())
		}
		s.mu.Lock()
		s.calls = append(s.calls, c)
		phase, fail := s.fail[id]
		from, refuse := s.refuse[id]
		s.mu.Unlock()
		if fail && phase == ks.GetPhase() {
			return nil, status.Error(codes.Unavailable, "injected: node unreachable")
		}
		if refuse && ks.GetPhase() == nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE {
			st, err := status.New(codes.InvalidArgument, "node: partial rejected: partial from "+from+": injected: its proof of encryption refused").
				WithDetails(&nodev1.PartialRefusal{NodeId: from})
			if err != nil {
				return nil, err
			}
			return nil, st.Err()
		}
		return h(ctx, req)
	})}
}

func (s *keySwitchSpy) snapshot() []keySwitchCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (c keySwitchCall) String() string {
	return fmt.Sprintf("%s %s %v", c.node, strings.TrimPrefix(c.phase.String(), "KEY_SWITCH_PHASE_"), c.decryptors)
}

// commitAll has every sender of req's partials commit to them and returns
// req with the commitments.
func commitAll(t *testing.T, ctx context.Context, nodes map[string]nodev1.NodeServiceClient, req *nodev1.KeySwitchRequest) *nodev1.KeySwitchRequest {
	t.Helper()
	digest := protocol.CommitDigest(req.GetQueryId(), req.GetEpoch(), req.GetSpec(), req.GetPartials())
	for _, p := range req.GetPartials() {
		resp, err := nodes[p.GetNodeId()].Commit(ctx, &nodev1.CommitRequest{QueryId: req.GetQueryId(), Epoch: req.GetEpoch(), Digest: digest})
		if err != nil {
			t.Fatalf("commit at %s: %v", p.GetNodeId(), err)
		}
		req.Commits = append(req.Commits, &nodev1.NodeSigned{NodeId: p.GetNodeId(), Signed: resp.GetCommit()})
	}
	return req
}

// TestTwoStepRelease drives a node's two-step release as a curious
// coordinator would: a share prepared for one decryptor set never leaves the
// node and is replaced by one prepared for another; RELEASE hands out only
// the share prepared for exactly its decryptors and target key; once it has,
// the node helps with no other release of the query id (PREPARE, RELEASE or
// one step), while the same RELEASE again returns the same share; and a
// PREPARE over another partial set is refused by the commitments.
func TestTwoStepRelease(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	params := nw.Coordinator.Params()
	spec := secSpec(2, 2)
	partials := collect(t, ctx, nw, nodes, "q-two-step", spec, "node-1", "node-2", "node-3")
	rk, target := resultKey(t, params)
	base := commitAll(t, ctx, nodes, &nodev1.KeySwitchRequest{QueryId: "q-two-step", Epoch: nw.Epoch, Spec: spec, Partials: partials, TargetPublicKey: target})
	step := func(at string, phase nodev1.KeySwitchPhase, dec ...string) (*nodev1.KeySwitchResponse, error) {
		r := proto.Clone(base).(*nodev1.KeySwitchRequest)
		r.Decryptors, r.Phase = dec, phase
		if phase == nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE {
			r.Spec, r.Partials, r.Commits = nil, nil, nil // RELEASE needs none of them
		}
		return nodes[at].KeySwitch(ctx, r)
	}
	const prepare, release = nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE, nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE

	for _, dec := range [][]string{{"node-1", "node-2"}, {"node-1", "node-3"}} {
		resp, err := step("node-1", prepare, dec...)
		if err != nil || resp.GetShare() != nil {
			t.Fatalf("PREPARE %v at node-1: %v, share %v; want no share", dec, err, resp.GetShare() != nil)
		}
	}
	_, err := step("node-1", release, "node-1", "node-2")
	wantCode(t, "RELEASE for a set whose share was replaced", err, codes.FailedPrecondition, "prepared for other decryptors")
	_, err = step("node-3", release, "node-1", "node-3")
	wantCode(t, "RELEASE without PREPARE", err, codes.FailedPrecondition, "nothing was prepared")

	if _, err := step("node-3", prepare, "node-1", "node-3"); err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	var first *nodev1.KeySwitchResponse
	for _, at := range []string{"node-1", "node-3"} {
		resp, err := step(at, release, "node-1", "node-3")
		if err != nil {
			t.Fatalf("RELEASE at %s: %v", at, err)
		}
		if at == "node-1" {
			first = resp
		}
		shares = append(shares, shareOf(t, resp)[0])
	}
	exact := exactTotal(t, nw, spec)
	got, err := releaseValue(t, nw, spec, sumOf(t, params, partials), shares, rk, len(partials))
	if err != nil || math.Abs(got-exact) > 100 {
		t.Fatalf("two-step release: %v (%v), exact %v", got, err, exact)
	}

	// node-1's share has left: no other release of q-two-step.
	for _, tc := range []struct {
		phase nodev1.KeySwitchPhase
		dec   []string
	}{{prepare, []string{"node-1", "node-2"}}, {release, []string{"node-1", "node-2"}}, {nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_UNSPECIFIED, []string{"node-1", "node-2"}}} {
		_, err := step("node-1", tc.phase, tc.dec...)
		wantCode(t, fmt.Sprintf("%v %v after node-1 released for [node-1 node-3]", tc.phase, tc.dec), err, codes.AlreadyExists, "already", "q-two-step")
	}
	again, err := step("node-1", release, "node-1", "node-3")
	if err != nil || !proto.Equal(again.GetShare(), first.GetShare()) {
		t.Fatalf("the same RELEASE again: %v (same share: %v)", err, err == nil && proto.Equal(again.GetShare(), first.GetShare()))
	}

	// A PREPARE over a subset of the committed partials is refused: every
	// sender committed to the whole set.
	sub := proto.Clone(base).(*nodev1.KeySwitchRequest)
	sub.Partials, sub.Decryptors, sub.Phase = partials[:2], []string{"node-2", "node-3"}, prepare
	_, err = nodes["node-2"].KeySwitch(ctx, sub)
	wantCode(t, "PREPARE over another partial set", err, codes.AlreadyExists, "committed to another set of partials")
}

// startSpied starts an n-node network (threshold 2, min_nodes m, audit logs) whose
// nodes report every KeySwitch call to spy; the coordinator takes readiness
// reports only at its start (so that the decryptors are chosen by id order,
// and a release failure is found by the release itself).
func startSpied(t *testing.T, n, m int, spy *keySwitchSpy) *demo.Network {
	t.Helper()
	data, err := demo.Synthetic(n, 200, 13)
	if err != nil {
		t.Fatal(err)
	}
	return startFault(t, demo.Options{Data: data, MinNodes: m, NodeServerOptions: spy.options, AuditLogs: true,
		CoordinatorConfig: func(c *coordinator.Config) { c.HealthInterval = time.Hour }})
}

// checkOneDebit checks that every node in ids was charged exactly the rho of
// st (one debit for the query, whatever the release attempts).
func checkOneDebit(t *testing.T, ctx context.Context, nw *demo.Network, st *coordinatorv1.QueryStatus, ids ...string) {
	t.Helper()
	b := nw.Coordinator.Budget(ctx, "analyst")
	for _, nb := range b.GetNodes() {
		if slices.Contains(ids, nb.GetNodeId()) && (nb.GetError() != "" || nb.GetSpentRho() != st.GetResult().GetRho()) {
			t.Errorf("%s spent %v (%s), want %v: one debit for %s", nb.GetNodeId(), nb.GetSpentRho(), nb.GetError(), st.GetResult().GetRho(), st.GetQueryId())
		}
	}
}

// TestReleaseRetriesAnotherDecryptorSet: node-2 fails the PREPARE step of
// every release. The coordinator's first decryptor set, {node-1, node-2},
// fails before any share has left a node; it tries {node-1, node-3} over the
// very same partials, commitments and target key, and releases the right
// total. node-2 never got a RELEASE, the query's status says why node-2 was
// replaced, and every node was charged once.
func TestReleaseRetriesAnotherDecryptorSet(t *testing.T) {
	spy := &keySwitchSpy{fail: map[string]nodev1.KeySwitchPhase{"node-2": nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE}}
	nw := startSpied(t, 3, 3, spy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery}
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), spec)
	if err != nil {
		t.Fatalf("query with node-2 failing its PREPARE: %v", err)
	}
	if st.GetResult().GetNodes() != 3 {
		t.Fatalf("released from %d partials, want 3", st.GetResult().GetNodes())
	}
	if got, exact := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), exactTotal(t, nw, st.GetSpec()); math.Abs(got-exact) > 100 {
		t.Fatalf("released %v, exact %v: the retried release did not decrypt the total", got, exact)
	}
	for _, id := range []string{"node-1", "node-3"} {
		if s := nodeProgress(st, id).GetStatus(); s != "decrypted" {
			t.Errorf("%s: status %q, want decrypted", id, s)
		}
	}
	if np := nodeProgress(st, "node-2"); np.GetStatus() != "answered" || !strings.Contains(np.GetError(), "release attempt 1 (prepare)") ||
		!strings.Contains(np.GetError(), "injected") {
		t.Errorf("node-2: %q %q; want answered, naming the failed release attempt", np.GetStatus(), np.GetError())
	}
	calls := spy.snapshot()
	want := "[node-1 PREPARE [node-1 node-2] node-2 PREPARE [node-1 node-2] node-1 PREPARE [node-1 node-3] node-3 PREPARE [node-1 node-3] node-1 RELEASE [node-1 node-3] node-3 RELEASE [node-1 node-3]]"
	if got := fmt.Sprint(sortedCalls(calls)); got != want {
		t.Errorf("KeySwitch calls:\n got %s\nwant %s", got, want)
	}
	var digest []byte
	for _, c := range calls {
		if c.commit == nil {
			continue
		}
		if digest == nil {
			digest = c.commit
		}
		if !bytes.Equal(c.commit, digest) {
			t.Errorf("%v carried another partial set than the first attempt", c)
		}
	}
	checkOneDebit(t, ctx, nw, st, "node-1", "node-2", "node-3")
}

// TestFalsePartialRefusal: node-2, a decryptor, refuses node-1's honest
// partial at PREPARE as if its proof of encryption failed (a
// PartialRefusal, the real protocol with one step changed). The
// coordinator, which leaves the proofs of a full release to the
// decryptors, checks node-1's partial itself, finds it good, and takes the
// refusal as node-2's failure: the release goes on with {node-1, node-3},
// node-2's status and the coordinator's audit log
// (release.refusal_unfounded) say why, and no partial is named.
func TestFalsePartialRefusal(t *testing.T) {
	spy := &keySwitchSpy{refuse: map[string]string{"node-2": "node-1"}}
	nw := startSpied(t, 3, 3, spy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery})
	if err != nil {
		t.Fatalf("query with node-2 refusing node-1's partial: %v", err)
	}
	if got, exact := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), exactTotal(t, nw, st.GetSpec()); st.GetResult().GetNodes() != 3 || math.Abs(got-exact) > 100 {
		t.Fatalf("released %v from %d partials, exact %v from 3", got, st.GetResult().GetNodes(), exact)
	}
	if np := nodeProgress(st, "node-2"); !strings.Contains(np.GetError(), "it refused node-1's partial, whose proofs of encryption the coordinator checked and found good") {
		t.Errorf("node-2: %q %q; want its refusal found unfounded", np.GetStatus(), np.GetError())
	}
	if np := nodeProgress(st, "node-1"); np.GetStatus() != "decrypted" {
		t.Errorf("node-1: %q %q, want decrypted", np.GetStatus(), np.GetError())
	}
	log := filepath.Join(nw.Dir, "coordinator", "audit.log")
	if n := auditCount(t, log, "release.refusal_unfounded", "node", "node-2"); n != 1 {
		t.Errorf("%d release.refusal_unfounded entries naming node-2, want 1", n)
	}
	if n := auditMatches(t, log, func(e audit.Entry) bool { return e.Action == "release.partial_refused" }); n != 0 {
		t.Errorf("%d release.partial_refused entries, want none: no partial is bad", n)
	}
	want := "[node-1 PREPARE [node-1 node-2] node-2 PREPARE [node-1 node-2] node-1 PREPARE [node-1 node-3] node-3 PREPARE [node-1 node-3] node-1 RELEASE [node-1 node-3] node-3 RELEASE [node-1 node-3]]"
	if got := fmt.Sprint(sortedCalls(spy.snapshot())); got != want {
		t.Errorf("KeySwitch calls:\n got %s\nwant %s", got, want)
	}
}

// sortedCalls orders calls by step (PREPAREs of an attempt, then its
// RELEASEs) and node, keeping the order of the attempts: the calls of one
// step of one attempt are concurrent.
func sortedCalls(calls []keySwitchCall) []keySwitchCall {
	out := slices.Clone(calls)
	slices.SortStableFunc(out, func(a, b keySwitchCall) int {
		if c := strings.Compare(fmt.Sprint(a.decryptors), fmt.Sprint(b.decryptors)); c != 0 {
			return c
		}
		if a.phase != b.phase {
			return int(a.phase) - int(b.phase)
		}
		return strings.Compare(a.node, b.node)
	})
	return out
}

// TestReleaseRetryAfterAFailedReleaseStep: with 4 nodes, node-2 fails the
// RELEASE step. node-1 has handed out its share for {node-1, node-2} by
// then, so the coordinator asks neither again and releases with
// {node-3, node-4}; node-1 refuses any other release of the query id.
func TestReleaseRetryAfterAFailedReleaseStep(t *testing.T) {
	spy := &keySwitchSpy{fail: map[string]nodev1.KeySwitchPhase{"node-2": nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE}}
	nw := startSpied(t, 4, 2, spy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery})
	if err != nil {
		t.Fatalf("query with node-2 failing its RELEASE: %v", err)
	}
	if st.GetResult().GetNodes() != 4 {
		t.Fatalf("released from %d partials, want 4", st.GetResult().GetNodes())
	}
	if got, exact := st.GetResult().GetRows()[0].GetValues()[0].GetValue(), exactTotal(t, nw, st.GetSpec()); math.Abs(got-exact) > 100 {
		t.Fatalf("released %v, exact %v", got, exact)
	}
	want := "[node-1 PREPARE [node-1 node-2] node-2 PREPARE [node-1 node-2] node-1 RELEASE [node-1 node-2] node-2 RELEASE [node-1 node-2] node-3 PREPARE [node-3 node-4] node-4 PREPARE [node-3 node-4] node-3 RELEASE [node-3 node-4] node-4 RELEASE [node-3 node-4]]"
	if got := fmt.Sprint(sortedCalls(spy.snapshot())); got != want {
		t.Errorf("KeySwitch calls:\n got %s\nwant %s", got, want)
	}
	nodes := coordinatorClients(t, nw)
	_, err = nodes["node-1"].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: st.GetQueryId(), Epoch: st.GetEpoch(),
		Decryptors: []string{"node-1", "node-3"}, Phase: nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE})
	wantCode(t, "node-1, after its share left for [node-1 node-2]", err, codes.AlreadyExists, "already")
	checkOneDebit(t, ctx, nw, st, "node-1", "node-2", "node-3", "node-4")
}

// startAuto starts a 3-node network (threshold 2, min_nodes 2) whose
// coordinator keeps its key epoch by itself, with fast timings.
func startAuto(t *testing.T, policy coordinator.LostMemberPolicy, minMembers int, spy *keySwitchSpy) *demo.Network {
	t.Helper()
	o := demo.Options{Threshold: 2, MinNodes: 2, CoordinatorConfig: func(c *coordinator.Config) {
		c.AutoEpoch, c.LostMember, c.MinMembers = true, policy, minMembers
		c.HealthInterval, c.EpochDebounce = 100*time.Millisecond, 200*time.Millisecond
		c.CeremonyRetry = coordinator.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}
	}}
	if spy != nil {
		o.NodeServerOptions = spy.options
	}
	return startFault(t, o)
}

// coordinatorEpoch is the coordinator's key epoch (0 if none).
func coordinatorEpoch(nw *demo.Network) uint64 {
	return nw.Coordinator.NodesStatus(context.Background()).GetEpoch()
}

// loseThresholdShare deletes node i's threshold share of epoch e.
func loseThresholdShare(t *testing.T, nw *demo.Network, i int, e uint64) {
	t.Helper()
	if err := os.Remove(filepath.Join(nw.Dir, demo.NodeID(i), "keys", fmt.Sprintf("epoch-%d-threshold.secret", e))); err != nil {
		t.Fatal(err)
	}
}

// TestLostMemberRejoin: node-2 loses its threshold share; under the default
// policy the coordinator notices from node-2's readiness report and re-keys
// with it, and node-2 can decrypt in the new epoch.
func TestLostMemberRejoin(t *testing.T) {
	nw := startAuto(t, coordinator.LostMemberRejoin, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	loseThresholdShare(t, nw, 1, 1)
	waitFor(t, ctx, "a new key epoch with node-2", func() bool {
		return coordinatorEpoch(nw) > 1 && nw.Nodes[1].EpochReady(coordinatorEpoch(nw)) == nil
	})
	for _, n := range nw.Nodes {
		if err := n.EpochReady(coordinatorEpoch(nw)); err != nil {
			t.Errorf("%s in the new epoch: %v", n.ID(), err)
		}
	}
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3})
	if err != nil || st.GetResult().GetNodes() != 3 {
		t.Fatalf("query after the re-key: %v", err)
	}
}

// TestLostMemberExcludeWaits: under the exclude policy with min_members 3, a
// re-key without the lost node-2 would leave too few members, so the
// coordinator keeps the epoch and says so; queries go on, node-2 still
// answers (it has the public key) but is never asked to decrypt.
func TestLostMemberExcludeWaits(t *testing.T) {
	spy := &keySwitchSpy{}
	nw := startAuto(t, coordinator.LostMemberExclude, 3, spy)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	loseThresholdShare(t, nw, 1, 1)
	var cs *coordinatorv1.KeyCeremonyStatus
	waitFor(t, ctx, "the coordinator to report node-2 and wait", func() bool {
		cs = nw.Coordinator.CeremonyStatus()
		return cs.GetState() == "waiting" && len(cs.GetMembers()) == 1
	})
	if m := cs.GetMembers()[0]; m.GetNodeId() != "node-2" || m.GetExcluded() || !strings.Contains(m.GetProblem(), "threshold share of epoch 1: missing") {
		t.Errorf("member problem: %v", m)
	}
	if !strings.Contains(cs.GetReason(), "re-key without node-2") || !strings.Contains(cs.GetReason(), "waiting for 3 nodes") {
		t.Errorf("ceremony reason: %q", cs.GetReason())
	}
	if err := nw.Coordinator.Ready(); err != nil {
		t.Errorf("Ready with 2 of 3 members able to decrypt (T = 2): %v", err)
	}
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3})
	if err != nil || st.GetResult().GetNodes() != 3 {
		t.Fatalf("query while node-2 cannot decrypt: %v", err)
	}
	for _, c := range spy.snapshot() {
		if c.node == "node-2" || slices.Contains(c.decryptors, "node-2") {
			t.Errorf("node-2 reported it cannot decrypt, yet: %v", c)
		}
	}
	if e := coordinatorEpoch(nw); e != 1 {
		t.Errorf("epoch %d, want 1 (no re-key below min_members)", e)
	}
	checkOneDebit(t, ctx, nw, st, "node-1", "node-2", "node-3")
}

// TestLostMemberExclude: under the exclude policy with min_members 2,
// node-2, which lost its threshold share, is excluded and the network
// re-keys without it; it stays out until it presents a new certificate
// (restarted with one, at the same address), and then the network re-keys
// with it.
func TestLostMemberExclude(t *testing.T) {
	nw := startAuto(t, coordinator.LostMemberExclude, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	loseThresholdShare(t, nw, 1, 1)
	waitFor(t, ctx, "a key epoch without node-2", func() bool { return coordinatorEpoch(nw) > 1 })
	e2 := coordinatorEpoch(nw)
	cs := nw.Coordinator.CeremonyStatus()
	if len(cs.GetMembers()) != 1 || cs.GetMembers()[0].GetNodeId() != "node-2" || !cs.GetMembers()[0].GetExcluded() {
		t.Fatalf("ceremony status after the exclusion: %v", cs)
	}
	if nw.Nodes[1].Epoch() != 1 || nw.Nodes[0].Epoch() != e2 || nw.Nodes[2].Epoch() != e2 {
		t.Fatalf("epochs: %d %d %d, want %d 1 %d", nw.Nodes[0].Epoch(), nw.Nodes[1].Epoch(), nw.Nodes[2].Epoch(), e2, e2)
	}
	client := dialCoordinator(t, nw, nil)
	st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery})
	if err != nil || st.GetResult().GetNodes() != 2 || len(st.GetNodes()) != 2 {
		t.Fatalf("query in the epoch without node-2: %v (%d partials of %d members)", err, st.GetResult().GetNodes(), len(st.GetNodes()))
	}

	// node-2 comes back with a new certificate (the operator re-issued it).
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "node-2", Role: pki.RoleNode, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	old := nw.Nodes[1]
	addr := old.Addr()
	old.Close()
	n2, err := node.New(node.Config{Identity: id, ListenAddr: addr, StateDir: filepath.Join(nw.Dir, "node-2"), DB: nw.DB(1), Data: nw.Stores[1],
		Catalogue: nw.Catalogue, Budget: node.Budget{TotalRho: 1e6, PerAnalystRho: 1e6}})
	if err != nil {
		t.Fatal(err)
	}
	nw.Nodes[1] = n2
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n2.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	waitFor(t, ctx, "a key epoch with node-2 again", func() bool {
		return coordinatorEpoch(nw) > e2 && n2.EpochReady(coordinatorEpoch(nw)) == nil
	})
	if cs := nw.Coordinator.CeremonyStatus(); len(cs.GetMembers()) != 0 {
		t.Errorf("ceremony status after the re-admission: %v", cs)
	}
	st, err = runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3})
	if err != nil || st.GetResult().GetNodes() != 3 {
		t.Fatalf("query after node-2's re-admission: %v", err)
	}
}

// TestConcurrentReleasesHandOutOneShare: a node checks and computes a
// release outside its release lock, and decides under it. Eight concurrent
// one-step requests for one query id at node-1, half for {node-1, node-2}
// and half for {node-1, node-3}: the node hands out shares for one set only
// (the same share each time), and refuses the other set.
func TestConcurrentReleasesHandOutOneShare(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 3, 2, 2, false)
	spec := secSpec(2, 2)
	partials := collect(t, ctx, nw, nodes, "q-race", spec, "node-1", "node-2", "node-3")
	_, target := resultKey(t, nw.Coordinator.Params())
	base := commitAll(t, ctx, nodes, &nodev1.KeySwitchRequest{QueryId: "q-race", Epoch: nw.Epoch, Spec: spec, Partials: partials, TargetPublicKey: target})
	sets := [][]string{{"node-1", "node-2"}, {"node-1", "node-3"}}
	type answer struct {
		set  int
		resp *nodev1.KeySwitchResponse
		err  error
	}
	answers := make(chan answer, 8)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := proto.Clone(base).(*nodev1.KeySwitchRequest)
			r.Decryptors = sets[i%2]
			resp, err := nodes["node-1"].KeySwitch(ctx, r)
			answers <- answer{i % 2, resp, err}
		}()
	}
	wg.Wait()
	close(answers)
	won := -1
	var share *typesv1.Signed
	for a := range answers {
		if a.err != nil {
			wantCode(t, "a concurrent release for another set", a.err, codes.AlreadyExists, "already")
			continue
		}
		if won == -1 {
			won, share = a.set, a.resp.GetShare()
		}
		if a.set != won || !proto.Equal(a.resp.GetShare(), share) {
			t.Fatalf("node-1 handed out shares for %v and %v", sets[won], sets[a.set])
		}
	}
	if won == -1 {
		t.Fatal("no release succeeded")
	}
}
