package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// ckgForger is node-3's test double in a key ceremony: with armed set it
// commits to and reveals a CKG share of a secret it does not decrypt
// with (with a valid proof of that secret, or none when unproven is set);
// with old set it answers CheckKey as a version without the key check.
type ckgForger struct {
	armed, old, unproven atomic.Bool
	serverOptions        func(nodeID string) []grpc.ServerOption
}

func newCKGForger(t *testing.T, dir string) *ckgForger {
	f := &ckgForger{}
	armed, old, unproven := &f.armed, &f.old, &f.unproven
	var mu sync.Mutex
	real := map[uint64]*typesv1.Signed{}   // node-3's own commitment, by epoch
	forged := map[uint64]*typesv1.Signed{} // the share it reveals instead
	forgedProof := map[uint64][]byte{}     // and its proof
	identity := func() *pki.Identity {
		id, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), "node-3")
		if err != nil {
			t.Error(err)
		}
		return id
	}
	evil := func(nodeID string) []grpc.ServerOption {
		if nodeID != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if old.Load() && info.FullMethod == nodev1.NodeService_CheckKey_FullMethodName {
				return nil, status.Error(codes.Unimplemented, "method CheckKey not implemented")
			}
			if !armed.Load() {
				return h(ctx, req)
			}
			switch info.FullMethod {
			case nodev1.NodeService_KeyGen_FullMethodName:
				r := req.(*nodev1.KeyGenRequest)
				resp, err := h(ctx, req)
				if err != nil {
					return resp, err
				}
				p, err := homomorphic.NewParams(r.GetParams())
				if err != nil {
					return nil, err
				}
				other, err := homomorphic.GenSecretKeyShare(p)
				if err != nil {
					return nil, err
				}
				// With a valid proof: node-3 knows the forged share's
				// secret; what it does not do is decrypt with it.
				share, proof, err := collective.CKGShareProven(p, other, r.GetCrs(), protocol.CKGProofContext(r.GetEpoch(), "node-3"))
				if err != nil {
					return nil, err
				}
				s, err := protocol.SealCKGShare(identity().Key, r.GetEpoch(), "node-3", share, time.Now())
				if err != nil {
					return nil, err
				}
				kg := resp.(*nodev1.KeyGenResponse)
				mu.Lock()
				real[r.GetEpoch()], forged[r.GetEpoch()], forgedProof[r.GetEpoch()] = kg.GetCkgShare(), s, proof
				mu.Unlock()
				kg.CkgShare = protocol.Commitment(s)
				return kg, nil
			case nodev1.NodeService_RevealKeyGen_FullMethodName:
				r := req.(*nodev1.RevealKeyGenRequest)
				mu.Lock()
				own, s, proof := real[r.GetEpoch()], forged[r.GetEpoch()], forgedProof[r.GetEpoch()]
				mu.Unlock()
				// The node itself is asked with its own commitment in the
				// set; the coordinator gets the forged share and a reveal
				// statement over the set it sent.
				honest := proto.Clone(r).(*nodev1.RevealKeyGenRequest)
				for _, c := range honest.GetCkgCommitments() {
					if c.GetNodeId() == "node-3" {
						c.Signed = own
					}
				}
				resp, err := h(ctx, honest)
				if err != nil {
					return resp, err
				}
				stmt, err := protocol.SealCKGReveal(identity().Key, r.GetEpoch(), "node-3", protocol.CKGSetDigest(r.GetEpoch(), r.GetCkgCommitments()), time.Now())
				if err != nil {
					return nil, err
				}
				if unproven.Load() {
					proof = nil
				}
				// Its threshold shares as the node dealt them.
				return &nodev1.RevealKeyGenResponse{CkgShare: s, Reveal: stmt, CkgProof: proof, Dealt: resp.(*nodev1.RevealKeyGenResponse).GetDealt()}, nil
			}
			return h(ctx, req)
		})}
	}
	f.serverOptions = evil
	return f
}

// TestMalformedCKGShareNamed: node-3 runs the real key ceremony with one
// step changed, the CKG share it commits to and reveals: a share of a
// secret it does not hold, signed with its own key, revealed within the
// committee's fixed set like an honest one. Every signature checks and the
// collective key aggregates, but no release could ever be decrypted under
// it. The key check names node-3 before any member installs the epoch:
// the ceremony fails saying so, node-3 is excluded from key epochs, and
// the next ceremony makes an epoch of node-1 and node-2 in which a query is
// released. Before the key check, the epoch was installed and every
// release in it failed, naming nobody. The coordinator's audit log keeps the
// seed of node-3's challenge, and node-3's own log its refusal with the same
// seed (so the accusation can be replayed). A node of a version without the
// key check (CheckKey unimplemented) fails a ceremony, named, and is not
// excluded.
func TestMalformedCKGShareNamed(t *testing.T) {
	dir := t.TempDir()
	forger := newCKGForger(t, dir)
	armed, old := &forger.armed, &forger.old
	nw := startFault(t, demo.Options{Dir: dir, NodeServerOptions: forger.serverOptions, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	excluded := func() *coordinatorv1.MemberProblem {
		for _, m := range nw.Coordinator.CeremonyStatus().GetMembers() {
			if m.GetNodeId() == "node-3" && m.GetExcluded() {
				return m
			}
		}
		return nil
	}

	// node-3 of a version without the key check: named, not excluded.
	old.Store(true)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err == nil || !strings.Contains(err.Error(), "node-3") || !strings.Contains(err.Error(), "without the key check") {
		t.Fatalf("ceremony with node-3 without CheckKey: %v; want it to fail naming node-3's version", err)
	}
	if m := excluded(); m != nil {
		t.Fatalf("node-3 is excluded for running an older version: %v", m)
	}
	old.Store(false)

	armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), "node-3: its CKG share of epoch") ||
		!strings.Contains(err.Error(), "does not decrypt a challenge encrypted under its CKG share") {
		t.Fatalf("ceremony with node-3's forged share: %v; want it to fail the key check, naming node-3", err)
	}
	for _, id := range []string{"node-1", "node-2"} {
		if strings.Contains(err.Error(), id) {
			t.Errorf("the key check named %s too: %v", id, err)
		}
	}
	if m := excluded(); m == nil || !strings.Contains(m.GetProblem(), "failed the key check") {
		t.Fatalf("node-3 is not excluded for its key check: %v", nw.Coordinator.CeremonyStatus().GetMembers())
	}
	// The seed of the challenge is in the coordinator's audit log, with the
	// accusation, and in node-3's, with its refusal.
	seedOf := func(path, action string) string {
		t.Helper()
		seed := ""
		for _, e := range auditLog(t, path) {
			if e.Action == action {
				seed, _ = e.Details["seed"].(string)
			}
		}
		return seed
	}
	accused := seedOf(filepath.Join(dir, "coordinator", "audit.log"), "epoch.key_check_failed")
	refused := seedOf(filepath.Join(dir, "node-3", "audit.log"), "epoch.key_check_refused")
	if len(accused) != 2*collective.KeyCheckSeedSize || accused != refused {
		t.Fatalf("the seed in the coordinator's audit log %q and in node-3's %q: want the same seed in both", accused, refused)
	}

	// The next ceremony runs without node-3, and its epoch releases.
	releasesWithoutNode3(t, ctx, nw)
}

// TestUnprovenCKGShareNamed: node-3 runs the real key ceremony but reveals
// its CKG share without the proof that it is well formed (a share whose
// secret it could not prove it knows). The coordinator verifies every
// share's proof before the key check and before any member installs:
// the ceremony fails naming node-3 alone, node-3 is excluded from key
// epochs (audit epoch.ckg_proof_failed), and the next ceremony makes an
// epoch of node-1 and node-2 in which a query is released.
func TestUnprovenCKGShareNamed(t *testing.T) {
	dir := t.TempDir()
	forger := newCKGForger(t, dir)
	nw := startFault(t, demo.Options{Dir: dir, NodeServerOptions: forger.serverOptions, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	forger.unproven.Store(true)
	forger.armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), "the CKG share of node-3 failed its proof of well-formedness") {
		t.Fatalf("ceremony with node-3's unproven share: %v; want it refused, naming node-3", err)
	}
	for _, id := range []string{"node-1", "node-2"} {
		if strings.Contains(err.Error(), id) {
			t.Errorf("the refusal named %s too: %v", id, err)
		}
	}
	var problem string
	for _, m := range nw.Coordinator.CeremonyStatus().GetMembers() {
		if m.GetNodeId() == "node-3" && m.GetExcluded() {
			problem = m.GetProblem()
		}
	}
	if !strings.Contains(problem, "failed its proof of well-formedness") {
		t.Fatalf("node-3 is not excluded for its unproven share: %v", nw.Coordinator.CeremonyStatus().GetMembers())
	}
	if auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "epoch.ckg_proof_failed", "node", "node-3") == 0 {
		t.Fatal("no epoch.ckg_proof_failed entry naming node-3 in the coordinator's audit log")
	}

	releasesWithoutNode3(t, ctx, nw)
}

// releasesWithoutNode3 runs a key ceremony, which must leave node-3 (just
// excluded) out, and a query in its epoch, which node-1 and node-2 answer.
func releasesWithoutNode3(t *testing.T, ctx context.Context, nw *demo.Network) {
	t.Helper()
	e, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatalf("ceremony without node-3: %v", err)
	}
	nw.Epoch = e
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2})
	if err != nil {
		t.Fatalf("query in epoch %d: %v", e, err)
	}
	if st.GetEpoch() != e || st.GetResult().GetNodes() != 2 {
		t.Fatalf("query ran in epoch %d with %d nodes, want epoch %d with node-1 and node-2", st.GetEpoch(), st.GetResult().GetNodes(), e)
	}
}
