package e2e

// Fault tests of issue 10, in-process: a slow node past the deadline, a
// malicious node, and many concurrent queries. Each node is a real node on
// real mutual-TLS gRPC; the faults are injected by extra gRPC server options
// on one node (demo.Options.NodeServerOptions, node.Config.ServerOptions), so the
// coordinator sees exactly what it would see from a slow or hostile peer.
//
// The process-level faults (SIGKILL of a node or of the coordinator in the
// middle of a query) are in fault_process_test.go. A node killed mid-import
// is node/internal/store's TestSIGKILLMidImport (the store is unchanged).

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// startFault starts a 3-node network (threshold 2) on small data with a
// large budget and the given fault injection.
func startFault(t *testing.T, o demo.Options) *demo.Network {
	t.Helper()
	if o.Data == nil {
		data, err := demo.Synthetic(3, 200, 11)
		if err != nil {
			t.Fatal(err)
		}
		o.Data = data
	}
	if o.Threshold == 0 {
		o.Threshold = 2
	}
	if o.MinNodes == 0 {
		o.MinNodes = 2
	}
	if o.Budget.TotalRho == 0 && o.Budget.PerAnalystRho == 0 {
		o.Budget = node.Budget{TotalRho: 1e6, PerAnalystRho: 1e6}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	return nw
}

// noRace skips t under the race detector: a test that is mostly group or
// ring arithmetic (seconds without it, minutes with it), whose concurrency
// the other tests cover. scripts/test.sh runs these without the detector
// ("system tests that are mostly arithmetic"); keep its list in step.
func noRace(t *testing.T) {
	t.Helper()
	if raceEnabled {
		t.Skip("mostly arithmetic, eight times slower under the race detector: scripts/test.sh runs it without")
	}
}

// resignAs signs payload as member id of the network whose directory is dir,
// with the binding of s (its kind, query, epoch and signer): what a member
// that changes one step of the real protocol sends as its own. It panics
// on failure (it runs in a server's interceptor).
func resignAs(dir, id string, s *typesv1.Signed, payload []byte) *typesv1.Signed {
	hdr, err := envelope.ParseHeader(s.GetHeader())
	if err != nil {
		panic(err)
	}
	key, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), id)
	if err != nil {
		panic(err)
	}
	env, err := envelope.Seal(key.Key, hdr.Binding, payload, time.Now())
	if err != nil {
		panic(err)
	}
	return protocol.ToProto(env)
}

// runDeadline submits spec with a collection deadline and follows it to its
// end; it returns the final status whether the query succeeded or not.
func runDeadline(t *testing.T, ctx context.Context, c *client.Client, spec *typesv1.QuerySpec, deadline time.Duration) *coordinatorv1.QueryStatus {
	t.Helper()
	st, err := c.Run(ctx, spec, client.RunOptions{Deadline: deadline, Fresh: true}) // the nodes are asked every time
	if st == nil {
		t.Fatalf("submit: %v", err)
	}
	if !terminalState(st.State) {
		t.Fatalf("query %s did not end: %v", st.QueryId, st.State)
	}
	return st
}

// waitFor polls cond every 100 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func terminalState(s coordinatorv1.State) bool {
	return s == coordinatorv1.State_STATE_DONE || s == coordinatorv1.State_STATE_FAILED || s == coordinatorv1.State_STATE_CANCELLED
}

// nodeProgress returns the coordinator's progress entry of node id.
func nodeProgress(st *coordinatorv1.QueryStatus, id string) *coordinatorv1.NodeProgress {
	for _, n := range st.GetNodes() {
		if n.GetNodeId() == id {
			return n
		}
	}
	return &coordinatorv1.NodeProgress{}
}

// wantReleasedWithout checks that st was released from the other two nodes
// and that the coordinator names id as failed, with texts in its error.
func wantReleasedWithout(t *testing.T, what string, st *coordinatorv1.QueryStatus, id string, texts ...string) {
	t.Helper()
	if st.State != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 2 {
		t.Errorf("%s: state %v, released from %d nodes (error %q); want a release from the 2 other nodes", what, st.State, st.GetResult().GetNodes(), st.GetError())
		return
	}
	np := nodeProgress(st, id)
	if np.GetStatus() != "failed" {
		t.Errorf("%s: %s has status %q, want failed", what, id, np.GetStatus())
	}
	for _, s := range texts {
		if !strings.Contains(np.GetError(), s) {
			t.Errorf("%s: error of %s is %q, want it to mention %q", what, id, np.GetError(), s)
		}
	}
	for _, n := range st.GetNodes() {
		if n.GetNodeId() != id && n.GetStatus() == "failed" {
			t.Errorf("%s: honest %s failed: %s", what, n.GetNodeId(), n.GetError())
		}
	}
}

// wantFailedNaming checks that st failed before any decryption and that its
// error names id, with texts.
func wantFailedNaming(t *testing.T, what string, st *coordinatorv1.QueryStatus, id string, texts ...string) {
	t.Helper()
	if st.State != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
		t.Errorf("%s: state %v, result %v; want failed without a result", what, st.State, st.GetResult())
	}
	for _, s := range append([]string{id, "nothing was decrypted"}, texts...) {
		if !strings.Contains(st.GetError(), s) {
			t.Errorf("%s: error %q does not mention %q", what, st.GetError(), s)
		}
	}
	for _, ph := range st.GetPhases() {
		if ph.GetName() == "key-switch" || ph.GetName() == "decrypt+release" {
			t.Errorf("%s: a failed query reached phase %s", what, ph.GetName())
		}
	}
}

// wantRefusedAtRelease: the query got as far as decryption and failed
// there, its error saying each of texts and that nothing is released, with
// no result (the refusals of a total; texts say whom they name, if anyone).
func wantRefusedAtRelease(t *testing.T, what string, st *coordinatorv1.QueryStatus, texts ...string) {
	t.Helper()
	if st.State != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
		t.Errorf("%s: state %v, result %v; want failed without a result", what, st.State, st.GetResult())
	}
	for _, w := range append(texts, "nothing is released") {
		if !strings.Contains(st.GetError(), w) {
			t.Errorf("%s: error %q does not mention %q", what, st.GetError(), w)
		}
	}
	t.Logf("%s: %s", what, st.GetError())
}

// TestFaultSlowNodePastDeadline: node-3 holds every Evaluate call until the
// coordinator gives up on it. With min_nodes 2 the query is released from the
// other two, and its status names node-3 as having missed the deadline; with
// min_nodes 3 it fails naming node-3 and the deadline, and nothing is
// decrypted. The deadline bounds only collection: the release that follows a
// used-up deadline still runs.
func TestFaultSlowNodePastDeadline(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int32
	slow := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod == nodev1.NodeService_Evaluate_FullMethodName {
				held.Add(1)
				select {
				case <-ctx.Done():
				case <-release:
				}
			}
			return h(ctx, req)
		})}
	}
	nw := startFault(t, demo.Options{NodeServerOptions: slow, AuditLogs: true})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)

	// The deadline must leave the two honest nodes time to answer under the
	// race detector; node-3 never answers within any deadline.
	const deadline = 4 * time.Second
	st := runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2}, deadline)
	wantReleasedWithout(t, "slow node, min_nodes 2", st, "node-3", "deadline")
	st2 := runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, deadline)
	wantFailedNaming(t, "slow node, min_nodes 3", st2, "node-3", "deadline")
	if held.Load() != 2 {
		t.Errorf("node-3 held %d Evaluate calls, want 2", held.Load())
	}

	// node-3 answered nothing in time, so it debited nothing: its handler
	// ran only after the coordinator had cancelled the call.
	b := nw.Coordinator.Budget(ctx, nw.Analyst.Name())
	for _, nb := range b.GetNodes() {
		if nb.GetError() != "" {
			t.Fatalf("budget at %s: %s", nb.GetNodeId(), nb.GetError())
		}
		if nb.GetNodeId() == "node-3" && nb.GetSpentRho() != 0 {
			t.Errorf("node-3 debited %v rho for queries it never answered in time", nb.GetSpentRho())
		}
	}
	// Its audit log records both refusals, although the caller had hung up
	// by the time they were made (an audit append under the cancelled
	// request context used to be dropped).
	var refused []string
	actx, acancel := context.WithTimeout(ctx, 20*time.Second)
	defer acancel()
	waitFor(t, actx, "node-3's audit entries", func() bool {
		refused = refused[:0]
		f, err := os.Open(filepath.Join(nw.Dir, "node-3", "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// A scan error is a line still being written: look again.
		err = audit.Scan(f, func(_ int, e audit.Entry) error {
			if e.Action == "query.refused" {
				refused = append(refused, e.QueryID)
			}
			return nil
		})
		return err == nil && len(refused) >= 2
	})
	if len(refused) != 2 || refused[0] != st.QueryId || refused[1] != st2.QueryId {
		t.Errorf("node-3 audit refusals %v, want %s and %s", refused, st.QueryId, st2.QueryId)
	}
}

// faultMode is what the malicious node-3 does to its answers.
type faultMode int32

const (
	honest           faultMode = iota
	garbageWire                // the EvaluateResponse message itself is garbage bytes
	garbageSigned              // a well-formed response whose signed partial is garbage
	oversized                  // a response above rpc.MaxMessageBytes
	otherQuery                 // a real partial, validly signed by node-3, but for another query id
	wrongShape                 // validly signed for this query, but more ciphertexts than the plan
	garbageCipher              // validly signed for this query, the ciphertext bytes are garbage
	replayedAnswer             // node-3's own signed partial of an earlier query, sent again
	wrongProof                 // committed to and revealed as committed, but its proofs of encryption are another query's
	beyondPlan                 // a proven encryption of this query's plan with a value in a slot beyond the plan's vector
	outOfRange                 // a count of minus a million, committed to and proven in a range wider than the plan's
	uncommitted                // a count of 5 committed to and proven within the plan's bounds, minus a million encrypted
	sumOutOfRange              // a clamped sum a hundred times its plan's bound, committed to and proven in a range wider than the plan's
	wrongLimbs                 // the values committed to, proven and linked, one limb of a blinding off by one
	wrongLimbsLinked           // wrongLimbs, and asked to prove its limbs, the right ones linked to its ciphertexts
)

// sumQuery is TestFaultMaliciousNode's query of a clamped sum.
const sumQuery = "SELECT SUM(CLAMP(value, 0, 100)) FROM observations"

// forges reports whether node-3 answers Evaluate, Reveal (and Commit) with
// a partial it made itself (TestFaultMaliciousNode's forge).
func (m faultMode) forges() bool {
	return m == wrongProof || m == beyondPlan || m == outOfRange || m == uncommitted || m == sumOutOfRange || m == wrongLimbs || m == wrongLimbsLinked
}

// forgedWitness is what node-3 kept of a partial it forged, as an honest
// node keeps of its own (node.keepLimbWitness): what it encrypted, with
// the seed, and the encoding it committed to.
type forgedWitness struct {
	encoded, committed []int64
	seed, commitments  []byte
	digest             []byte
	cts                []*homomorphic.Ciphertext
}

// garbageCodec is the proto codec, except that it writes garbage bytes for an
// EvaluateResponse while its mode says so.
type garbageCodec struct {
	encoding.CodecV2
	mode *atomic.Int32
}

func (c garbageCodec) Marshal(v any) (mem.BufferSlice, error) {
	if _, ok := v.(*nodev1.EvaluateResponse); ok && faultMode(c.mode.Load()) == garbageWire {
		return mem.BufferSlice{mem.SliceBuffer(bytes.Repeat([]byte{0xff}, 256))}, nil
	}
	return c.CodecV2.Marshal(v)
}

// TestFaultMaliciousNode: node-3 answers Evaluate with garbage bytes on the
// wire, a garbage signed header, a message above the size limit, a header
// validly signed by itself for another query id, and a replay of its own
// earlier answer. Each time the coordinator rejects the answer, names node-3
// in the query's status, and releases from the two honest nodes (min_nodes
// 2); with min_nodes 3 the query fails naming node-3 and nothing is
// decrypted. node-3 then reveals a partial of the wrong shape, or with
// garbage ciphertexts, in place of the one it committed to, or commits to
// and reveals a partial whose proof of encryption is another query's: the
// query fails naming node-3 and nothing is decrypted. Then node-3 commits
// to a proven partial with a value in a slot beyond the plan's vector: its
// link to the padding's zeros fails, naming node-3; with one limb of a
// blinding off by one, the total is refused at decryption, nothing
// released, node-3 not named. Last, the range proofs: a count of minus a
// million and a clamped sum a hundred times its bound, each proven in a
// wider range, fail the query naming node-3, and so does minus a million
// encrypted behind a commitment to 5 (its link to the commitment fails).
func TestFaultMaliciousNode(t *testing.T) {
	var mode atomic.Int32
	dir := t.TempDir()
	var keyOnce sync.Once
	var key *pki.Identity
	nodeKey := func() *pki.Identity {
		keyOnce.Do(func() {
			id, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), "node-3")
			if err != nil {
				panic(err)
			}
			key = id
		})
		return key
	}
	var lastMu sync.Mutex
	var last *typesv1.Signed // node-3's last honest partial
	// reseal signs payload as node-3, bound to qid.
	reseal := func(s *typesv1.Signed, qid string, payload []byte) *typesv1.Signed {
		hdr, err := envelope.ParseHeader(s.GetHeader())
		if err != nil {
			panic(err)
		}
		b := hdr.Binding
		b.QueryID = qid
		env, err := envelope.Seal(nodeKey().Key, b, payload, time.Now())
		if err != nil {
			panic(err)
		}
		return protocol.ToProto(env)
	}
	// forged is node-3's partial in wrongProof mode, by query id: made at
	// Evaluate (its header is what node-3 answers) and revealed as it is.
	var forged, forgedPayload, forgedWitnesses sync.Map
	var nw *demo.Network
	// forge makes node-3's partial of the query body asks for as an honest
	// node would (its count committed to and proven within the plan's
	// bounds, then encrypted with the commitment's blinding and proven,
	// under the epoch's key, signed by node-3), with one step changed: in
	// wrongProof mode the proofs of encryption are bound to another query
	// (its range proof to this one); in beyondPlan
	// mode the slot after the plan's vector (and its blinding's limbs)
	// holds 7; in outOfRange mode the count is minus a million, proven in a
	// range that allows it; in uncommitted mode the commitment and proof
	// are of a count of 5 and the ciphertext encrypts minus a million.
	forge := func(body *nodev1.EvaluateBody) *typesv1.Signed {
		pk, epoch, err := nw.Coordinator.PublicKey()
		if err != nil {
			panic(err)
		}
		digest := protocol.SpecDigest(body.GetSpec())
		req, err := protocol.PlanRequest(body.GetSpec())
		if err != nil {
			panic(err)
		}
		p, err := plan.Build(req, nw.Catalogue)
		if err != nil {
			panic(err)
		}
		m := faultMode(mode.Load())
		qid, values, ranges := body.GetQueryId(), make([]int64, p.VectorLen()), protocol.PartialRanges(p)
		encQid := qid // the query the proofs of encryption are bound to
		switch m {
		case wrongProof:
			encQid = "q-somewhere-else"
		case outOfRange:
			values, ranges = []int64{-1_000_000}, []rangeproof.Range{{Lo: -2_000_000, Hi: 2_000_000}}
		case uncommitted:
			values = []int64{5}
		case sumOutOfRange:
			for i := range values {
				values[i] = 100 * p.MaxAbsPartial()
				ranges[i] = rangeproof.Range{Lo: -2 * values[i], Hi: 2 * values[i]}
			}
		}
		encoded, rc, err := protocol.EncodePartial(values, ranges, qid, epoch, "node-3", digest)
		if err != nil {
			panic(err)
		}
		committed := slices.Clone(encoded)
		switch m {
		case beyondPlan:
			encoded = append(encoded, 7)
		case wrongLimbs, wrongLimbsLinked:
			encoded[p.VectorLen()]++
		case uncommitted:
			encoded[0] = -1_000_000
		}
		ctx := protocol.EncryptionContext(encQid, epoch, "node-3", digest)
		seed := make([]byte, homomorphic.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			panic(err)
		}
		cts, proofs, link, err := protocol.EncryptEncodedSeeded(nw.Coordinator.Params(), pk, encoded, rc, ctx, seed)
		if err != nil {
			panic(err)
		}
		forgedWitnesses.Store(qid, forgedWitness{encoded: encoded, committed: committed, seed: seed, commitments: rc.Commitments, digest: digest, cts: cts})
		payload := &nodev1.PartialPayload{SpecDigest: digest, VectorLen: int32(p.VectorLen()), Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
		for _, ct := range cts {
			b, err := ct.MarshalBinary()
			if err != nil {
				panic(err)
			}
			payload.Ciphertexts = append(payload.Ciphertexts, b)
		}
		s, err := protocol.SealPartial(nodeKey().Key, body.GetQueryId(), epoch, "node-3", payload, time.Now())
		if err != nil {
			panic(err)
		}
		forged.Store(body.GetQueryId(), s)
		forgedPayload.Store(body.GetQueryId(), payload)
		return s
	}
	// tamper changes node-3's answer to Evaluate, its partial's signed
	// header, in the modes checked at that step.
	tamper := func(req *nodev1.EvaluateRequest, resp *nodev1.EvaluateResponse) any {
		s := resp.GetPartial()
		lastMu.Lock()
		prev := last
		last = proto.Clone(s).(*typesv1.Signed)
		lastMu.Unlock()
		switch m := faultMode(mode.Load()); {
		case m.forges():
			var body nodev1.EvaluateBody
			if err := proto.Unmarshal(req.GetRequest().GetPayload(), &body); err != nil {
				panic(err)
			}
			return &nodev1.EvaluateResponse{Partial: protocol.Commitment(forge(&body))}
		case m == garbageSigned:
			return &nodev1.EvaluateResponse{Partial: &typesv1.Signed{Header: []byte("\x00garbage header"), Signature: []byte("no signature")}}
		case m == oversized:
			return &nodev1.EvaluateResponse{Partial: &typesv1.Signed{Header: s.GetHeader(), Payload: make([]byte, rpc.MaxMessageBytes+1), Signature: s.GetSignature()}}
		case m == otherQuery:
			return &nodev1.EvaluateResponse{Partial: protocol.Commitment(reseal(s, "q-somewhere-else", nil))}
		case m == replayedAnswer:
			if prev == nil {
				panic("no earlier answer to replay")
			}
			return &nodev1.EvaluateResponse{Partial: prev}
		}
		return resp
	}
	// tamperReveal changes the partial node-3 reveals, in the modes checked
	// at that step: a partial other than the one it committed to.
	tamperReveal := func(resp *nodev1.RevealResponse) any {
		s := resp.GetPartial()
		hdr, err := envelope.ParseHeader(s.GetHeader())
		if err != nil {
			panic(err)
		}
		var payload nodev1.PartialPayload
		if err := proto.Unmarshal(s.GetPayload(), &payload); err != nil {
			panic(err)
		}
		switch faultMode(mode.Load()) {
		case wrongShape:
			payload.Ciphertexts = append(payload.Ciphertexts, payload.Ciphertexts...)
		case garbageCipher:
			for i := range payload.Ciphertexts {
				payload.Ciphertexts[i] = bytes.Repeat([]byte{0x5a}, len(payload.Ciphertexts[i]))
			}
		default:
			return resp
		}
		pb, _ := proto.Marshal(&payload)
		return &nodev1.RevealResponse{Partial: reseal(s, hdr.Binding.QueryID, pb)}
	}
	// proveLimbs answers node-3's ProveLimbs for a forged partial: in
	// wrongLimbs mode as an honest node would, from what it encrypted
	// (which does not open its commitments: it cannot prove); in
	// wrongLimbsLinked mode with a proof of the limbs it committed to,
	// linked by new proofs of encryption to its ciphertexts, which hold
	// the wrong one.
	proveLimbs := func(r *nodev1.ProveLimbsRequest) (*nodev1.ProveLimbsResponse, error) {
		v, ok := forgedWitnesses.Load(r.GetQueryId())
		if !ok {
			panic("no forged partial for " + r.GetQueryId())
		}
		w := v.(forgedWitness)
		pk, epoch, err := nw.Coordinator.PublicKey()
		if err != nil {
			panic(err)
		}
		params := nw.Coordinator.Params()
		if faultMode(mode.Load()) != wrongLimbsLinked {
			return protocol.ProveLimbs(params, pk, w.cts, w.encoded, w.seed, w.commitments, r.GetQueryId(), epoch, "node-3", w.digest)
		}
		ctx := protocol.LimbContext(r.GetQueryId(), epoch, "node-3", w.digest)
		lp, open, err := rangeproof.ProveLimbs(w.committed, w.commitments, ctx)
		if err != nil {
			panic(err)
		}
		link := open.Linker(params.Slots(), params.PlaintextModulus())
		out := &nodev1.ProveLimbsResponse{LimbCommitments: lp.Commitments, LimbRangeProof: lp.Proof, Recomposition: lp.Recomposition}
		for i, ct := range w.cts {
			proof, err := homomorphic.ProveAgainLinked(params, pk, ct, w.encoded, ctx, i, w.seed, link)
			if err != nil {
				panic(err)
			}
			out.Proofs = append(out.Proofs, proof)
		}
		out.Link = link.Link()
		return out, nil
	}
	evil := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{
			grpc.MaxSendMsgSize(2 * rpc.MaxMessageBytes), // so that the oversized answer leaves the node
			grpc.ForceServerCodecV2(garbageCodec{CodecV2: encoding.GetCodecV2("proto"), mode: &mode}),
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if m := faultMode(mode.Load()); info.FullMethod == nodev1.NodeService_Reveal_FullMethodName && m.forges() {
					// The node itself would refuse a set holding a header it
					// did not sign: node-3 reveals the forged partial, and
					// signs its commitment to the set, without it.
					r := req.(*nodev1.RevealRequest)
					f, ok := forged.Load(r.GetQueryId())
					if !ok {
						panic("no forged partial for " + r.GetQueryId())
					}
					digest := protocol.CommitDigest(r.GetQueryId(), r.GetEpoch(), r.GetSpec(), r.GetPartials())
					commit, err := protocol.SealCommit(nodeKey().Key, r.GetQueryId(), r.GetEpoch(), "node-3", digest, time.Now())
					if err != nil {
						panic(err)
					}
					return &nodev1.RevealResponse{Partial: f.(*typesv1.Signed), Commit: commit}, nil
				}
				if m := faultMode(mode.Load()); info.FullMethod == nodev1.NodeService_ProveLimbs_FullMethodName && m.forges() {
					return proveLimbs(req.(*nodev1.ProveLimbsRequest))
				}
				if m := faultMode(mode.Load()); info.FullMethod == nodev1.NodeService_Commit_FullMethodName && m.forges() && req.(*nodev1.CommitRequest).GetSumDigest() != nil {
					// Its commitment to the release: the fingerprints of the
					// forged partial, as an honest node's are of its own.
					r := req.(*nodev1.CommitRequest)
					pl, ok := forgedPayload.Load(r.GetQueryId())
					if !ok {
						panic("no forged partial for " + r.GetQueryId())
					}
					rc, err := protocol.NewReleaseCommitment(nw.Coordinator.Params(), r.GetDigest(), r.GetSumDigest(), pl.(*nodev1.PartialPayload))
					if err != nil {
						panic(err)
					}
					signed, err := protocol.SealReleaseCommitment(nodeKey().Key, r.GetQueryId(), r.GetEpoch(), "node-3", rc, time.Now())
					if err != nil {
						panic(err)
					}
					return &nodev1.CommitResponse{Commit: signed}, nil
				}
				resp, err := h(ctx, req)
				switch {
				case err != nil:
					return resp, err
				case info.FullMethod == nodev1.NodeService_Evaluate_FullMethodName:
					return tamper(req.(*nodev1.EvaluateRequest), resp.(*nodev1.EvaluateResponse)), nil
				case info.FullMethod == nodev1.NodeService_Reveal_FullMethodName:
					return tamperReveal(resp.(*nodev1.RevealResponse)), nil
				}
				return resp, err
			}),
		}
	}
	nw = startFault(t, demo.Options{Dir: dir, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func(m faultMode, minNodes int) *coordinatorv1.QueryStatus {
		mode.Store(int32(m))
		sql := demo.CohortQuery
		if m == sumOutOfRange {
			sql = sumQuery
		}
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: sql, MinNodes: int32(minNodes)}, time.Minute)
	}

	// An honest round first (it also gives node-3 an answer to replay).
	if st := run(honest, 3); st.State != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Fatalf("honest query: %v %s", st.State, st.GetError())
	}
	for _, c := range []struct {
		name  string
		mode  faultMode
		texts []string
	}{
		{"garbage bytes on the wire", garbageWire, []string{"unmarshal"}},
		{"garbage signed partial", garbageSigned, []string{"partial rejected", "malformed"}},
		{"oversized message", oversized, []string{"larger than max", "ResourceExhausted"}},
		{"partial signed for another query id", otherQuery, []string{"partial rejected", "binding mismatch", "q-somewhere-else"}},
		{"replay of an earlier answer", replayedAnswer, []string{"partial rejected"}},
	} {
		st := run(c.mode, 2)
		wantReleasedWithout(t, c.name, st, "node-3", c.texts...)
		t.Logf("%s: node-3: %s", c.name, nodeProgress(st, "node-3").GetError())
	}
	// A partial revealed that is not the one node-3 committed to (its
	// header and signature are in the fixed set): the honest nodes revealed
	// for that set only, so the query fails, naming node-3.
	for _, c := range []struct {
		name string
		mode faultMode
	}{
		{"partial of the wrong shape revealed", wrongShape},
		{"garbage ciphertexts revealed", garbageCipher},
	} {
		st := run(c.mode, 2)
		wantFailedNaming(t, c.name, st, "node-3", "did not reveal the partial committed to", "partial rejected")
		t.Logf("%s: %s", c.name, st.GetError())
	}
	// node-3 commits to a partial whose proofs of encryption are another
	// query's and reveals it as committed: the decryptors refuse it at
	// PREPARE, before any share is made, and the coordinator, checking the
	// refused partial itself (judgeRefusals), fails the query naming
	// node-3 (release.partial_refused in its audit log).
	refusedSoFar := 0
	partialRefused := func(what string) {
		t.Helper()
		refusedSoFar++
		if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "release.partial_refused", "node", "node-3"); n != refusedSoFar {
			t.Errorf("%s: %d release.partial_refused entries naming node-3 in the coordinator's audit log, want %d", what, n, refusedSoFar)
		}
	}
	{
		st := run(wrongProof, 2)
		wantFailedNaming(t, "a partial with another query's proof", st, "node-3", "partial rejected", "proof of encryption refused",
			"and by the coordinator's own check", "nothing was decrypted")
		partialRefused("a partial with another query's proof")
		t.Logf("a partial with another query's proof: %s", st.GetError())
	}
	// node-3 commits to and reveals, as an honest node would, a partial
	// whose plaintext has a value beyond the plan's vector (and its
	// limbs), in a padding slot: its proofs of encryption are linked to
	// the padding's zeros; the decryptors refuse it and the coordinator's
	// check of it fails the query naming node-3.
	{
		st := run(beyondPlan, 2)
		wantFailedNaming(t, "a value beyond the plan's vector", st, "node-3", "partial rejected", "something other than zero in its slots after the values", "nothing was decrypted")
		partialRefused("a value beyond the plan's vector")
		t.Logf("a value beyond the plan's vector: %s", st.GetError())
	}
	// node-3's values are committed to, proven and linked, but one limb of
	// a blinding is off by one (the partial's link does not cover the
	// limbs: crypto.md, "The link"): the decryptors key-switch the sum and
	// the coordinator refuses the total, which is not the sum of the
	// commitments; the decryptors prove their key-switch shares, and every
	// member of the set is asked to prove its limbs (crypto.md, "The proof
	// of the limbs"). node-1 and node-2, the real nodes, prove theirs from
	// what they kept; node-3 cannot (what it encrypted does not open its
	// commitments), or proves the limbs it committed to with a link to
	// ciphertexts that hold another: the query fails naming node-3 alone,
	// nothing released.
	limbsProven := func(node string) int {
		return auditMatches(t, filepath.Join(dir, node, "audit.log"), func(e audit.Entry) bool { return e.Action == "partial.limbs_proven" })
	}
	for k, c := range []struct {
		name  string
		mode  faultMode
		texts []string
	}{
		{"a limb off by one", wrongLimbs, []string{"did not prove its limbs", "do not open its commitment"}},
		{"a limb off by one, the right limbs linked to it", wrongLimbsLinked, []string{"its proof of its limbs failed", "do not encrypt the limbs it committed to", "(limb 0 of value 0)"}},
	} {
		st := run(c.mode, 2)
		wantRefusedAtRelease(t, c.name, st, append([]string{"not the sum of the values the members committed to", "asked to prove the limbs of their blindings", "node-3: "}, c.texts...)...)
		for _, honest := range []string{"node-1", "node-2"} {
			if strings.Contains(st.GetError(), honest+":") {
				t.Errorf("%s: the error names %s: %s", c.name, honest, st.GetError())
			}
			if n := limbsProven(honest); n != k+1 {
				t.Errorf("%s: %d partial.limbs_proven entries in %s's audit log, want %d", c.name, n, honest, k+1)
			}
		}
		if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "release.limb_proof_failed", "node", "node-3"); n != k+1 {
			t.Errorf("%s: %d release.limb_proof_failed entries naming node-3, want %d", c.name, n, k+1)
		}
	}
	// node-3 commits to a count of minus a million and proves it in a range
	// wider than the plan's: the coordinator's check of the set's range
	// proofs once revealed (checkRanges) fails the query naming node-3,
	// before any decryptor is asked; every decryptor refuses it too
	// (TestCopiedPartialRefused).
	{
		st := run(outOfRange, 2)
		wantFailedNaming(t, "a count of minus a million", st, "node-3", "partial rejected", "not proven within the plan's bounds", "nothing was decrypted")
		t.Logf("a count of minus a million: %s", st.GetError())
	}
	// The same for a clamped sum a hundred times its plan's bound (the
	// largest sum of the clamped values of the node's rows bound).
	{
		st := run(sumOutOfRange, 2)
		wantFailedNaming(t, "a sum far outside its clamps", st, "node-3", "partial rejected", "not proven within the plan's bounds", "nothing was decrypted")
		t.Logf("a sum far outside its clamps: %s", st.GetError())
	}
	// node-3 commits to and proves a count of 5, within the plan's bounds,
	// and encrypts minus a million, its proof of encryption linked to the
	// commitment to 5: the range proofs verify, the link does not (the
	// ciphertext's slot is not the committed value): the decryptors refuse
	// it (TestCopiedPartialRefused) and the coordinator's check of it fails
	// the query naming node-3, before any share is made.
	{
		st := run(uncommitted, 2)
		wantFailedNaming(t, "minus a million behind a commitment to 5", st, "node-3", "partial rejected", "do not encrypt the values it committed to", "nothing was decrypted")
		partialRefused("minus a million behind a commitment to 5")
		t.Logf("minus a million behind a commitment to 5: %s", st.GetError())
	}
	// Once with min_nodes 3: the query fails, naming node-3.
	st := run(otherQuery, 3)
	wantFailedNaming(t, "partial for another query id, min_nodes 3", st, "node-3", "partial rejected")
	// And node-3, honest again, is heard again.
	if st := run(honest, 3); st.State != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
		t.Fatalf("honest query after the attacks: %v %s", st.State, st.GetError())
	}
}

// TestFaultConcurrentQueries: 10 analysts submit 100 queries at once. Every
// query ends with a released result, and at every node each analyst's spend
// is exactly the sum of the rho of that analyst's queries (and the node total
// the sum over all analysts).
func TestFaultConcurrentQueries(t *testing.T) {
	// The smaller (insecure, test-only) parameter set halves the cost of the
	// 300 encryptions and 200 key switches; what is under test here is the
	// concurrency of the coordinator and of the ledgers, not the parameters.
	homomorphic.AllowInsecureForTests()
	nw := startFault(t, demo.Options{MinNodes: 3, Params: homomorphic.InsecureTestSet})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const analysts, perAnalyst = 10, 10
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	clients := make([]*client.Client, analysts)
	names := make([]string, analysts)
	for a := range analysts {
		names[a] = fmt.Sprintf("analyst-%02d", a+1)
		id, err := ca.Issue(pki.IssueRequest{Name: names[a], Role: pki.RoleAnalyst, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteIdentity(filepath.Join(nw.Dir, "pki"), id); err != nil {
			t.Fatal(err)
		}
		if id, err = pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), names[a]); err != nil {
			t.Fatal(err)
		}
		c := dialCoordinator(t, nw, id)
		clients[a] = c
	}
	// Each analyst has its own epsilon (so its own rho), and mixes three
	// query shapes.
	sqls := []string{demo.CohortQuery, "SELECT sex, COUNT(*) FROM patients GROUP BY sex", "SELECT COUNT(*) FROM patients"}
	type outcome struct {
		analyst int
		st      *coordinatorv1.QueryStatus
		err     error
	}
	results := make(chan outcome, analysts*perAnalyst)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for a := range analysts {
		for k := range perAnalyst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				spec := &typesv1.QuerySpec{Sql: sqls[k%len(sqls)], Epsilon: 0.1 + 0.05*float64(a), MinNodes: 3}
				// What is under test is concurrency, not latency: on a
				// loaded machine (two cores, the race detector, other
				// packages' tests) 100 queries at once can wait longer for
				// their partials than the network's default deadline of 60 s.
				st, err := clients[a].Run(ctx, spec, client.RunOptions{Deadline: 3 * time.Minute})
				results <- outcome{a, st, err}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)

	rho := make([]float64, analysts)
	var rhoOf [analysts]float64
	done := 0
	seen := map[string]bool{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", names[r.analyst], r.err)
			continue
		}
		res := r.st.GetResult()
		if r.st.State != coordinatorv1.State_STATE_DONE || res == nil || len(res.GetRows()) == 0 || res.GetNodes() != 3 {
			t.Errorf("%s: query %s ended %v without a full result", names[r.analyst], r.st.GetQueryId(), r.st.State)
			continue
		}
		if seen[r.st.QueryId] {
			t.Errorf("query id %s twice", r.st.QueryId)
		}
		seen[r.st.QueryId] = true
		if r.st.Analyst != names[r.analyst] {
			t.Errorf("query %s of %s ran as %q", r.st.QueryId, names[r.analyst], r.st.Analyst)
		}
		// All queries of an analyst have the same rho, so the node's running
		// sum and this one add the same numbers and agree to the bit.
		if rhoOf[r.analyst] != 0 && rhoOf[r.analyst] != res.GetRho() {
			t.Fatalf("%s: queries with rho %v and %v", names[r.analyst], rhoOf[r.analyst], res.GetRho())
		}
		rhoOf[r.analyst] = res.GetRho()
		rho[r.analyst] += res.GetRho()
		done++
	}
	if done != analysts*perAnalyst {
		t.Fatalf("%d of %d queries released a result", done, analysts*perAnalyst)
	}
	// The coordinator's history has every one of them, done.
	if got := len(nw.Coordinator.List(0, "")); got != analysts*perAnalyst {
		t.Errorf("coordinator history has %d queries, want %d", got, analysts*perAnalyst)
	}

	total := 0.0
	for a := range analysts {
		total += rho[a]
		b := nw.Coordinator.Budget(ctx, names[a])
		if len(b.GetNodes()) != 3 {
			t.Fatalf("budget of %s from %d nodes", names[a], len(b.GetNodes()))
		}
		for _, nb := range b.GetNodes() {
			if nb.GetError() != "" {
				t.Fatalf("budget of %s at %s: %s", names[a], nb.GetNodeId(), nb.GetError())
			}
			if nb.GetSpentRho() != rho[a] {
				t.Errorf("%s at %s spent %.17g rho, its %d queries cost %.17g", names[a], nb.GetNodeId(), nb.GetSpentRho(), perAnalyst, rho[a])
			}
		}
	}
	b := nw.Coordinator.Budget(ctx, names[0])
	for _, nb := range b.GetNodes() {
		// The node total adds the analysts' rho in commit order: equal up to
		// float rounding.
		if d := nb.GetTotalSpentRho() - total; d > 1e-9*total || d < -1e-9*total {
			t.Errorf("node total at %s is %.17g, the queries cost %.17g", nb.GetNodeId(), nb.GetTotalSpentRho(), total)
		}
	}
}
