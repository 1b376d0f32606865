package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/audit"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestBadDealingNamed: in a 2-of-3 epoch, node-3 runs the real key
// ceremony with one step changed: the Shamir images it signs are not those
// of the polynomial it dealt its shares from (one coefficient of its first
// image off by one), so its shares, honest as they are, match no
// polynomial its images fix. Every recipient checks the share node-3 dealt
// it against node-3's CKG share and images before it installs the epoch
// (collective.CheckDealtShare): the ceremony fails naming node-3, the
// active epoch keeps answering, and the next honest ceremony installs.
// Before the checked dealing, such a dealer's shares were aggregated
// unchecked, and a release in the epoch decrypted to noise, naming no one.
// A dealer that sends no images (a version before) fails the ceremony too,
// named by the coordinator.
func TestBadDealingNamed(t *testing.T) {
	dir := t.TempDir()
	var armed, strip atomic.Bool
	evil := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != nodev1.NodeService_KeyGen_FullMethodName || !(armed.Load() || strip.Load()) {
				return resp, err
			}
			r := resp.(*nodev1.KeyGenResponse)
			if strip.Load() {
				// A member of a version before checked dealing.
				r.ShamirImages = nil
				return r, nil
			}
			si := r.GetShamirImages()
			if si == nil {
				panic("node-3 dealt without Shamir images")
			}
			images := append([]byte(nil), si.GetPayload()...)
			images[32] ^= 1 // the first image's first coefficient, still below its prime
			r.ShamirImages = resignAs(dir, "node-3", si, images)
			return r, nil
		})}
	}
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 2, NodeServerOptions: evil})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func() *coordinatorv1.QueryStatus {
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, time.Minute)
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query in the checked 2-of-3 epoch: %v %s", st.GetState(), st.GetError())
	}

	armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	if err == nil || !strings.Contains(err.Error(), "node-3's CKG share and Shamir images") {
		t.Fatalf("ceremony with node-3's images off: %v; want every recipient to refuse node-3's share, naming it", err)
	}
	if strings.Contains(err.Error(), "node-1's CKG share") || strings.Contains(err.Error(), "node-2's CKG share") {
		t.Errorf("an honest dealer was named: %v", err)
	}
	t.Logf("refused: %v", err)
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("query in the active epoch after the refused ceremony: %v %s", st.GetState(), st.GetError())
	}

	armed.Store(false)
	// A dealer without images (a version before checked dealing): the
	// coordinator fails the ceremony naming it, before any install.
	strip.Store(true)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err == nil || !strings.Contains(err.Error(), "node-3 dealt its threshold shares without their Shamir images") {
		t.Fatalf("ceremony with node-3 dealing without images: %v", err)
	}
	strip.Store(false)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err != nil {
		t.Fatalf("honest ceremony after: %v", err)
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("query in the new epoch: %v %s", st.GetState(), st.GetError())
	}
}

// TestThresholdShareNamedOnDemand: in a 2-of-3 epoch (checked dealing),
// node-3 runs the real release with one step changed: the key-switch share
// it hands out has one coefficient of its first polynomial changed (in the
// NTT domain: garbage in every coefficient), signed as its own. The shares
// of such an epoch go out unproven; the total comes out wrong and is
// refused, and the coordinator then asks both decryptors to prove the
// shares they released (ProveKeySwitch): node-2 proves its share, node-3
// proves the share it made, which is not the one it handed out. The query
// fails naming node-3 (audit release.share_proof_failed), nothing is
// released; before, it failed naming no one. node-1 refuses to prepare, so
// that node-3 is among the two decryptors.
func TestThresholdShareNamedOnDemand(t *testing.T) {
	dir := t.TempDir()
	var armed atomic.Bool
	evil := func(id string) []grpc.ServerOption {
		switch id {
		case "node-1":
			return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if armed.Load() && info.FullMethod == nodev1.NodeService_KeySwitch_FullMethodName {
					return nil, status.Error(codes.Unavailable, "node-1 sits this release out (test)")
				}
				return h(ctx, req)
			})}
		case "node-3":
		default:
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != nodev1.NodeService_KeySwitch_FullMethodName || !armed.Load() {
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
			share := append([]byte(nil), payload.Shares[0]...)
			share[32+6] ^= 1 // bit 48 of the first coefficient, still below its prime
			payload.Shares[0] = share
			b, _ := proto.Marshal(&payload)
			return &nodev1.KeySwitchResponse{Share: resignAs(dir, "node-3", s, b)}, nil
		})}
	}
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 2, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func() *coordinatorv1.QueryStatus {
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, time.Minute)
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query: %v %s", st.GetState(), st.GetError())
	}
	armed.Store(true)
	st := run()
	if st.GetState() != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
		t.Fatalf("node-3 handed out a garbled key-switch share: %v, result %v", st.GetState(), st.GetResult())
	}
	if !strings.Contains(st.GetError(), "node-3: its key-switch share of ciphertext 0 failed its proof") || !strings.Contains(st.GetError(), "nothing is released") {
		t.Fatalf("the failure %q does not name node-3's share", st.GetError())
	}
	if strings.Contains(st.GetError(), "node-2:") {
		t.Errorf("node-2, whose share was honest, was named: %s", st.GetError())
	}
	t.Logf("refused: %s", st.GetError())
	if _, err := client.ReleaseRecord(ctx, st.GetQueryId()); err == nil {
		t.Error("a release record was kept for a query that released nothing")
	}
	f, err := os.Open(filepath.Join(dir, "coordinator", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	named := false
	if err := audit.Scan(f, func(_ int, e audit.Entry) error {
		named = named || (e.Action == "release.share_proof_failed" && e.Details["node"] == "node-3" && e.QueryID == st.GetQueryId())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !named {
		t.Error("no release.share_proof_failed entry naming node-3 in the coordinator's audit log")
	}
	armed.Store(false)
	after := run()
	if after.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query after: %v %s", after.GetState(), after.GetError())
	}
	// A decryptor proves the shares it released, on request, and says so
	// when it kept none for a query.
	nodes := coordinatorClients(t, nw)
	resp, err := nodes["node-2"].ProveKeySwitch(ctx, &nodev1.ProveKeySwitchRequest{QueryId: after.GetQueryId(), Epoch: 1})
	if err != nil || len(resp.GetProofs()) != 1 {
		t.Fatalf("node-2 asked to prove its share of %s: %v, %d proofs", after.GetQueryId(), err, len(resp.GetProofs()))
	}
	if _, err := nodes["node-2"].ProveKeySwitch(ctx, &nodev1.ProveKeySwitchRequest{QueryId: "q-never-released", Epoch: 1}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "is kept to prove") {
		t.Fatalf("node-2 asked to prove a share it never made: %v", err)
	}
}

// TestThresholdOneDealsWithoutImages: with T = 1 below a committee of 3,
// the dealt polynomial is its constant, which the CKG share fixes; the
// dealers send no images, the members install, and a query is released.
func TestThresholdOneDealsWithoutImages(t *testing.T) {
	nw := startFault(t, demo.Options{Dir: t.TempDir(), Threshold: 1, MinNodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	st := runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2}, time.Minute)
	if st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("a query in a 1-of-3 epoch: %v %s", st.GetState(), st.GetError())
	}
}
