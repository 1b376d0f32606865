package e2e

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/node"
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
// (collective.CheckDealtShare) and refuses with its evidence, the secret
// that opens that one sealed share (DealingComplaint); the coordinator
// opens the share from node-3's signed message and checks it itself: the
// ceremony fails naming node-3 as convicted, neither honest member, node-3
// is excluded from key epochs (audit epoch.dealing_refused at the
// coordinator, at each recipient too), the active epoch keeps answering,
// and the next ceremony runs without node-3. Before the checked dealing,
// such a dealer's shares were aggregated unchecked, and a release in the
// epoch decrypted to noise, naming no one. A dealer that sends no images,
// or no dealing key (a version before either), fails the ceremony too,
// named by the coordinator, and so does one whose images are in one set
// (a version before two sets of images).
func TestBadDealingNamed(t *testing.T) {
	dir := t.TempDir()
	var armed, strip, oneSet, noKey atomic.Bool
	evil := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != nodev1.NodeService_KeyGen_FullMethodName || !(armed.Load() || strip.Load() || oneSet.Load() || noKey.Load()) {
				return resp, err
			}
			r := resp.(*nodev1.KeyGenResponse)
			if noKey.Load() {
				// A member of a version before dealing keys.
				r.DealingKey = nil
				return r, nil
			}
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
			if oneSet.Load() {
				// Images marked as one set, as a version before two sets
				// of images made them.
				images[24] = 0
				r.ShamirImages = resignAs(dir, "node-3", si, images)
				return r, nil
			}
			images[32] ^= 1 // the first image's first coefficient, still below its prime
			r.ShamirImages = resignAs(dir, "node-3", si, images)
			return r, nil
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
		t.Fatalf("honest query in the checked 2-of-3 epoch: %v %s", st.GetState(), st.GetError())
	}

	// A dealer without images (a version before checked dealing): the
	// coordinator fails the ceremony naming it, before any install.
	strip.Store(true)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err == nil || !strings.Contains(err.Error(), "node-3 dealt its threshold shares without their Shamir images") {
		t.Fatalf("ceremony with node-3 dealing without images: %v", err)
	}
	strip.Store(false)
	// Images in one set (a version before two sets of images): the
	// coordinator fails the ceremony naming the dealer, before any install.
	oneSet.Store(true)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err == nil || !strings.Contains(err.Error(), "Shamir images of node-3 (a member of a version before two sets of images?)") {
		t.Fatalf("ceremony with node-3 dealing images in one set: %v", err)
	}
	oneSet.Store(false)
	// A member without a dealing key (a version before them): the
	// coordinator fails the ceremony naming it, before any share is dealt.
	noKey.Store(true)
	if _, err := nw.Coordinator.KeyCeremony(ctx); err == nil || !strings.Contains(err.Error(), "node-3 sent no dealing key for its shares") {
		t.Fatalf("ceremony with node-3 sending no dealing key: %v", err)
	}
	noKey.Store(false)

	armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), "node-3's CKG share and Shamir images") {
		t.Fatalf("ceremony with node-3's images off: %v; want every recipient to refuse node-3's share, naming it", err)
	}
	for _, r := range []string{"node-1", "node-2"} {
		if want := "node-3 dealt " + r + " a threshold share that does not match its CKG share and Shamir images (opened and checked by the coordinator from " + r + "'s evidence)"; !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not convict node-3 on %s's evidence: %v", r, err)
		}
	}
	if strings.Contains(err.Error(), "node-1's CKG share") || strings.Contains(err.Error(), "node-2's CKG share") || strings.Contains(err.Error(), "complaint") {
		t.Errorf("an honest member was named: %v", err)
	}
	t.Logf("refused: %v", err)
	excluded := excludedMembers(nw)
	if len(excluded) != 1 || !strings.Contains(excluded["node-3"], "node-3 dealt") {
		t.Fatalf("excluded after the ceremony: %v; want node-3 alone, for its dealing", excluded)
	}
	if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "epoch.dealing_refused", "node", "node-3"); n != 2 {
		t.Errorf("%d epoch.dealing_refused entries naming node-3 in the coordinator's audit log, want one per recipient (2)", n)
	}
	for _, r := range []string{"node-1", "node-2"} {
		if n := auditCount(t, filepath.Join(dir, r, "audit.log"), "epoch.dealing_refused", "dealer", "node-3"); n != 1 {
			t.Errorf("%d epoch.dealing_refused entries naming node-3 in %s's audit log, want 1", n, r)
		}
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("query in the active epoch after the refused ceremony: %v %s", st.GetState(), st.GetError())
	}
	armed.Store(false)
	releasesWithoutNode3(t, ctx, nw)
}

// TestDealingNeighbourNamed: in a 2-of-3 epoch node-3 runs the real key
// ceremony with one step changed: the threshold share it deals node-1 is
// its honest share moved by a^-1 (collective.NeighbourShare), the slack a
// check against one set of images let through (docs/crypto.md, "What one
// set of images allowed"): node-1 would have installed it, proven its
// key-switch shares with it, and every release using node-1 would have
// been refused at its total, named by no one. Now node-1's check under the
// second set of images refuses it with its evidence; the coordinator opens
// and checks the share itself and convicts node-3 alone (audit
// epoch.dealing_refused), and the next ceremony runs without node-3. To
// move the share the test hands node-3 a dealing key of its own for
// node-1 (signed as node-1), opens what node-3 seals to it, and seals the
// moved share to node-1's own dealing key, signed as node-3, with node-1's
// linkage-key share as node-3 dealt it.
func TestDealingNeighbourNamed(t *testing.T) {
	noRace(t)
	dir := t.TempDir()
	var armed atomic.Bool
	var keygen atomic.Pointer[nodev1.KeyGenRequest] // node-3's: the parameter set and CRS
	dk, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if !armed.Load() {
				return h(ctx, req)
			}
			switch info.FullMethod {
			case nodev1.NodeService_KeyGen_FullMethodName:
				keygen.Store(req.(*nodev1.KeyGenRequest))
				return h(ctx, req)
			case nodev1.NodeService_RevealKeyGen_FullMethodName:
			default:
				return h(ctx, req)
			}
			r := proto.Clone(req.(*nodev1.RevealKeyGenRequest)).(*nodev1.RevealKeyGenRequest)
			var own *ecdh.PublicKey // node-1's own dealing key
			for _, k := range r.GetDealingKeys() {
				if k.GetNodeId() == "node-1" {
					var err error
					if own, err = ecdh.P256().NewPublicKey(k.GetSigned().GetPayload()); err != nil {
						panic(err)
					}
					k.Signed = resignAs(dir, "node-1", k.GetSigned(), dk.PublicKey().Bytes())
				}
			}
			resp, err := h(ctx, r)
			if err != nil {
				return resp, err
			}
			kg := keygen.Load()
			p, err := homomorphic.NewParams(kg.GetParams())
			if err != nil {
				panic(err)
			}
			reseal := func(s *typesv1.Signed, info []byte, change func([]byte) []byte) *typesv1.Signed {
				pt, err := protocol.OpenShare(dk, info, s.GetPayload())
				if err != nil {
					panic(err)
				}
				sealed, err := protocol.SealShare(own, info, change(pt))
				if err != nil {
					panic(err)
				}
				return resignAs(dir, "node-3", s, sealed)
			}
			for _, d := range resp.(*nodev1.RevealKeyGenResponse).GetDealt() {
				if d.GetToNodeId() != "node-1" {
					continue
				}
				d.Sealed = reseal(d.GetSealed(), protocol.ThresholdShareInfo(r.GetEpoch(), "node-3", "node-1"), func(pt []byte) []byte {
					eta := make([]int64, 1<<p.LogN())
					eta[0] = 1
					moved, err := collective.NeighbourShare(p, kg.GetCrs(), pt, eta)
					if err != nil {
						panic(err)
					}
					return moved
				})
				d.LinkSealed = reseal(d.GetLinkSealed(), protocol.LinkShareInfo(r.GetEpoch(), "node-3", "node-1"), func(pt []byte) []byte { return pt })
			}
			return resp, nil
		})}
	}
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 2, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	armed.Store(true)
	_, err = nw.Coordinator.KeyCeremony(ctx)
	want := "node-3 dealt node-1 a threshold share that does not match its CKG share and Shamir images (opened and checked by the coordinator from node-1's evidence)"
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), want) {
		t.Fatalf("ceremony with node-3's share to node-1 moved by a^-1: %v; want node-3 convicted on node-1's evidence", err)
	}
	if !strings.Contains(err.Error(), "share*a' is not within") {
		t.Errorf("node-1's refusal is not the check under the second set (the first passes a moved share): %v", err)
	}
	if strings.Contains(err.Error(), "node-2 dealt") || strings.Contains(err.Error(), "complaint") {
		t.Errorf("an honest member was named: %v", err)
	}
	t.Logf("refused: %v", err)
	if excluded := excludedMembers(nw); len(excluded) != 1 || excluded["node-3"] == "" {
		t.Fatalf("excluded: %v; want node-3 alone", excluded)
	}
	if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "epoch.dealing_refused", "node", "node-3"); n != 1 {
		t.Errorf("%d epoch.dealing_refused entries naming node-3 in the coordinator's audit log, want 1", n)
	}
	if n := auditCount(t, filepath.Join(dir, "node-1", "audit.log"), "epoch.dealing_refused", "dealer", "node-3"); n != 1 {
		t.Errorf("%d epoch.dealing_refused entries naming node-3 in node-1's audit log, want 1", n)
	}
	armed.Store(false)
	releasesWithoutNode3(t, ctx, nw)
}

// TestFalseDealingComplaintNamed: in a 2-of-3 epoch every dealer is honest,
// and node-1 runs the real key ceremony with one step changed: it refuses
// to install, complaining that node-2's share to it fails its check, with
// evidence made with its dealing key (the test holds that key: node-1's
// signed dealing key is replaced by one the test made, signed as node-1).
// With true evidence the coordinator opens node-2's share, finds it
// matches node-2's images, and convicts node-1 of an unfounded complaint;
// with a proof off by one bit the evidence does not verify and convicts
// node-1 all the same; so does true evidence about node-2's honest
// linkage-key share, which matches node-2's Feldman commitments. Either way node-2, the honest dealer, is not
// excluded; node-1 is (audit epoch.complaint_unfounded), and the next
// ceremony runs without it.
func TestFalseDealingComplaintNamed(t *testing.T) {
	noRace(t)
	for _, c := range []struct {
		name, want string
		garble     bool
		link       bool // about node-2's linkage-key share
	}{
		{"true evidence", "the share it revealed matches the dealer's CKG share and Shamir images", false, false},
		{"a proof off by one bit", "its evidence does not verify for its dealing key", true, false},
		{"true evidence about a linkage-key share", "the linkage-key share it revealed matches the dealer's commitments", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var armed atomic.Bool
			dk, err := ecdh.P256().GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			liar := func(id string) []grpc.ServerOption {
				if id != "node-1" {
					return nil
				}
				return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					if !armed.Load() {
						return h(ctx, req)
					}
					switch info.FullMethod {
					case nodev1.NodeService_KeyGen_FullMethodName:
						resp, err := h(ctx, req)
						if err != nil {
							return resp, err
						}
						r := resp.(*nodev1.KeyGenResponse)
						r.DealingKey = resignAs(dir, "node-1", r.GetDealingKey(), dk.PublicKey().Bytes())
						return r, nil
					case nodev1.NodeService_InstallKey_FullMethodName:
					default:
						return h(ctx, req)
					}
					r := req.(*nodev1.InstallKeyRequest)
					i := slices.IndexFunc(r.GetDealt(), func(d *nodev1.DealtShare) bool { return d.GetFromNodeId() == "node-2" })
					if i < 0 {
						panic("no share of node-2 dealt to node-1")
					}
					sealed, shareInfo := r.GetDealt()[i].GetSealed().GetPayload(), protocol.ThresholdShareInfo(r.GetEpoch(), "node-2", "node-1")
					if c.link {
						sealed, shareInfo = r.GetDealt()[i].GetLinkSealed().GetPayload(), protocol.LinkShareInfo(r.GetEpoch(), "node-2", "node-1")
					}
					point, proof, err := protocol.DealingEvidence(dk, sealed, shareInfo)
					if err != nil {
						panic(err)
					}
					if c.garble {
						proof[63] ^= 1
					}
					st, err := status.New(codes.InvalidArgument, "node-1: the threshold share node-2 dealt to node-1 does not match node-2's CKG share and Shamir images (a lie)").
						WithDetails(&nodev1.DealingComplaint{Dealer: "node-2", Point: point, Proof: proof, Linkage: c.link})
					if err != nil {
						panic(err)
					}
					return nil, st.Err()
				})}
			}
			nw := startFault(t, demo.Options{Dir: dir, Threshold: 2, NodeServerOptions: liar, AuditLogs: true})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			armed.Store(true)
			_, err = nw.Coordinator.KeyCeremony(ctx)
			if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), "node-1's complaint about node-2's dealing does not hold: "+c.want) {
				t.Fatalf("ceremony with node-1's false complaint: %v", err)
			}
			if strings.Contains(err.Error(), "node-2 dealt node-1 a threshold share that") {
				t.Errorf("node-2, an honest dealer, was convicted: %v", err)
			}
			t.Logf("refused: %v", err)
			if excluded := excludedMembers(nw); len(excluded) != 1 || excluded["node-1"] == "" {
				t.Fatalf("excluded: %v; want node-1 alone", excluded)
			}
			if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "epoch.complaint_unfounded", "node", "node-1"); n != 1 {
				t.Errorf("%d epoch.complaint_unfounded entries naming node-1, want 1", n)
			}
			armed.Store(false)
			e, err := nw.Coordinator.KeyCeremony(ctx)
			if err != nil {
				t.Fatalf("ceremony without node-1: %v", err)
			}
			nw.Epoch = e
			st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2})
			if err != nil || st.GetResult().GetNodes() != 2 {
				t.Fatalf("query without node-1: %v, %d nodes", err, st.GetResult().GetNodes())
			}
		})
	}
}

// TestUnopenableShareNamed: in a 2-of-3 epoch node-3 runs the real key
// ceremony with one step changed: the threshold share it seals to node-1
// does not open (one byte of its ciphertext changed after sealing, the
// message signed again as node-3). node-1 cannot open it and refuses to
// install with its evidence, the point of that share's encapsulation
// under its dealing key with a proof; it deletes its dealing key first (a
// member reveals one point per ceremony). The coordinator checks the
// proof, finds that the share does not open, and convicts node-3: the
// ceremony fails naming node-3, neither honest member, node-3 is excluded
// (audit epoch.dealing_refused), and the next ceremony runs without it.
// Before dealing keys, a share that did not open was refused without
// evidence (revealing the secret of the certificate key could open another
// dealer's share), and the ceremony failed naming no one.
func TestUnopenableShareNamed(t *testing.T) {
	dir := t.TempDir()
	var armed atomic.Bool
	evil := node3Dealing(&armed, func(_ *nodev1.RevealKeyGenRequest, d *nodev1.DealtShare) {
		sealed := slices.Clone(d.GetSealed().GetPayload())
		sealed[len(sealed)-1] ^= 1
		d.Sealed = resignAs(dir, "node-3", d.GetSealed(), sealed)
	})
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 2, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	want := "node-3 dealt node-1 a threshold share that does not open for its recipient (opened and checked by the coordinator from node-1's evidence)"
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), want) {
		t.Fatalf("ceremony with node-3's unopenable share to node-1: %v; want node-3 convicted on node-1's evidence", err)
	}
	if strings.Contains(err.Error(), "complaint") {
		t.Errorf("an honest member's complaint was found unfounded: %v", err)
	}
	t.Logf("refused: %v", err)
	if excluded := excludedMembers(nw); len(excluded) != 1 || excluded["node-3"] == "" {
		t.Fatalf("excluded: %v; want node-3 alone", excluded)
	}
	if n := auditCount(t, filepath.Join(dir, "coordinator", "audit.log"), "epoch.dealing_refused", "node", "node-3"); n != 1 {
		t.Errorf("%d epoch.dealing_refused entries naming node-3 in the coordinator's audit log, want 1", n)
	}
	// node-1 deleted the dealing key it revealed a point of (its key
	// files are there, the dealing key is not).
	if shares, _ := filepath.Glob(filepath.Join(dir, "node-1", "keys", "epoch-*.secret")); len(shares) == 0 {
		t.Fatalf("no key files of node-1 in %s", filepath.Join(dir, "node-1", "keys"))
	}
	left, err := filepath.Glob(filepath.Join(dir, "node-1", "keys", "dealing-*.secret"))
	if err != nil || len(left) != 0 {
		t.Errorf("node-1's dealing keys left after its complaint: %v (%v)", left, err)
	}
	armed.Store(false)
	releasesWithoutNode3(t, ctx, nw)
	// The members that installed an epoch deleted its dealing key.
	for _, id := range []string{"node-1", "node-2"} {
		if left, _ := filepath.Glob(filepath.Join(dir, id, "keys", "dealing-*.secret")); len(left) != 0 {
			t.Errorf("%s keeps dealing keys after installing: %v", id, left)
		}
	}
}

// TestBadLinkageShareNamed: in an epoch with every committee member
// decrypting (3 of 3: no threshold shares, the linkage key dealt all the
// same), node-3 runs the real key ceremony with one step changed: the
// linkage-key share it seals to node-1 (to node-1's dealing key, signed
// by node-3) is a random scalar, not the share its Feldman commitments
// fix. node-1 opens it, finds it does not match, and refuses with its
// evidence; the coordinator opens the share with it, checks it against
// node-3's commitments and convicts node-3 (audit epoch.dealing_refused,
// share "linkage-key share").
// Before, the linkage share was sealed to node-1's certificate key and
// its refusal was its word.
func TestBadLinkageShareNamed(t *testing.T) {
	dir := t.TempDir()
	var armed atomic.Bool
	evil := node3Dealing(&armed, func(r *nodev1.RevealKeyGenRequest, d *nodev1.DealtShare) {
		var to *ecdh.PublicKey
		for _, k := range r.GetDealingKeys() {
			if k.GetNodeId() == "node-1" {
				var err error
				if to, err = ecdh.P256().NewPublicKey(k.GetSigned().GetPayload()); err != nil {
					panic(err)
				}
			}
		}
		var share [32]byte
		share[0] = 7 // a scalar, and not node-3's share for node-1
		sealed, err := protocol.SealShare(to, protocol.LinkShareInfo(r.GetEpoch(), "node-3", "node-1"), share[:])
		if err != nil {
			panic(err)
		}
		d.LinkSealed = resignAs(dir, "node-3", d.GetLinkSealed(), sealed)
	})
	nw := startFault(t, demo.Options{Dir: dir, Threshold: 3, MinNodes: 3, NodeServerOptions: evil, AuditLogs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	armed.Store(true)
	_, err := nw.Coordinator.KeyCeremony(ctx)
	want := "node-3 dealt node-1 a linkage-key share that does not match its Feldman commitments (opened and checked by the coordinator from node-1's evidence)"
	if !errors.Is(err, coordinator.ErrKeyCheck) || !strings.Contains(err.Error(), want) {
		t.Fatalf("ceremony with node-3's bad linkage share to node-1: %v; want node-3 convicted on node-1's evidence", err)
	}
	t.Logf("refused: %v", err)
	if excluded := excludedMembers(nw); len(excluded) != 1 || excluded["node-3"] == "" {
		t.Fatalf("excluded: %v; want node-3 alone", excluded)
	}
	if n := auditMatches(t, filepath.Join(dir, "coordinator", "audit.log"), func(e audit.Entry) bool {
		return e.Action == "epoch.dealing_refused" && e.Details["node"] == "node-3" && e.Details["share"] == "linkage-key share"
	}); n != 1 {
		t.Errorf("%d epoch.dealing_refused entries naming node-3's linkage-key share, want 1", n)
	}
}

// node3Dealing is the server options of a network whose node-3 runs the
// real key ceremony with one step changed while armed: change alters the
// shares it deals node-1 in RevealKeyGen (req is the request it answers).
func node3Dealing(armed *atomic.Bool, change func(req *nodev1.RevealKeyGenRequest, d *nodev1.DealtShare)) func(string) []grpc.ServerOption {
	return func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err != nil || info.FullMethod != nodev1.NodeService_RevealKeyGen_FullMethodName || !armed.Load() {
				return resp, err
			}
			for _, d := range resp.(*nodev1.RevealKeyGenResponse).GetDealt() {
				if d.GetToNodeId() == "node-1" {
					change(req.(*nodev1.RevealKeyGenRequest), d)
				}
			}
			return resp, nil
		})}
	}
}

// excludedMembers is the members the coordinator excludes from key
// epochs, with the problem it records for each.
func excludedMembers(nw *demo.Network) map[string]string {
	out := map[string]string{}
	for _, m := range nw.Coordinator.CeremonyStatus().GetMembers() {
		if m.GetExcluded() {
			out[m.GetNodeId()] = m.GetProblem()
		}
	}
	return out
}

// auditCount counts the entries of the audit log at path with action
// whose detail key is value.
func auditCount(t *testing.T, path, action, key, value string) int {
	t.Helper()
	return auditMatches(t, path, func(e audit.Entry) bool { return e.Action == action && e.Details[key] == value })
}

// auditMatches counts the entries of the audit log at path that match.
func auditMatches(t *testing.T, path string, match func(audit.Entry) bool) int {
	t.Helper()
	n := 0
	for _, e := range auditLog(t, path) {
		if match(e) {
			n++
		}
	}
	return n
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
// that node-3 is among the two decryptors. Decryptors keep nothing in
// memory to prove with: node-2, restarted after a release, proves its
// share when asked directly, and refuses a sum or target key that is not
// what it switched.
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
	named := auditMatches(t, filepath.Join(dir, "coordinator", "audit.log"), func(e audit.Entry) bool {
		return e.Action == "release.share_proof_failed" && e.Details["node"] == "node-3" && e.QueryID == st.GetQueryId()
	}) > 0
	if !named {
		t.Error("no release.share_proof_failed entry naming node-3 in the coordinator's audit log")
	}
	armed.Store(false)
	after := run()
	if after.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query after: %v %s", after.GetState(), after.GetError())
	}
	// Asked directly, a decryptor restarted since its release makes its
	// share again from the sum and target key and proves it (it checks
	// itself that the share made again is the one it released); it
	// refuses another sum, another target key, a request without them and
	// a query it released nothing for.
	rec, err := client.ReleaseRecord(ctx, after.GetQueryId())
	if err != nil {
		t.Fatal(err)
	}
	second := run()
	if second.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("second honest query after: %v %s", second.GetState(), second.GetError())
	}
	other, err := client.ReleaseRecord(ctx, second.GetQueryId())
	if err != nil {
		t.Fatal(err)
	}
	restartNode(t, nw, 1, node.DefaultPolicy())
	nodes := coordinatorClients(t, nw)
	ask := func(qid string, sum [][]byte, target []byte) (*nodev1.ProveKeySwitchResponse, error) {
		return nodes["node-2"].ProveKeySwitch(ctx, &nodev1.ProveKeySwitchRequest{QueryId: qid, Epoch: 1, Sum: sum, TargetPublicKey: target})
	}
	resp, err := ask(after.GetQueryId(), rec.GetSum(), rec.GetTargetPublicKey())
	if err != nil || len(resp.GetProofs()) != 1 {
		t.Fatalf("node-2, restarted, asked to prove its share of %s: %v, %d proofs", after.GetQueryId(), err, len(resp.GetProofs()))
	}
	for _, c := range []struct {
		name, qid string
		sum       [][]byte
		target    []byte
		want      string
	}{
		{"another query's sum", after.GetQueryId(), other.GetSum(), rec.GetTargetPublicKey(), "not the ciphertexts this node switched"},
		{"another query's target key", after.GetQueryId(), rec.GetSum(), other.GetTargetPublicKey(), "not the key this node switched"},
		{"no sum", after.GetQueryId(), nil, rec.GetTargetPublicKey(), "0 ciphertexts in sum"},
		{"a query never released", "q-never-released", rec.GetSum(), rec.GetTargetPublicKey(), "no key-switch share of q-never-released was released here"},
	} {
		if _, err := ask(c.qid, c.sum, c.target); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", c.name, err, c.want)
		}
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

// TestLargeCommitteeFallbacks: committees too large for what the checked
// dealing bounds (crypto.md, "Checked dealing"). The bounds grow with the
// member's point: with K = 15 and T = 10 the threshold images of the larger
// points pass the 2^40 a proof of a threshold key-switch share handles,
// and with K = 21 and T = 14 an honest dealer's errors at the larger points
// pass 2^58, so that no share dealt to them can be told from a wrong one
// (they install unchecked). Each epoch installs and releases; asked to
// prove their shares, the decryptors at small points do, and those past
// the bound say they have nothing to prove them against. The coordinator
// keeps the images that fit (ThresholdImagesWithin): a garbled share from
// a decryptor at a small point fails the query naming it; one from a
// decryptor past the bound (K = 21) is refused at the total, unnamed.
func TestLargeCommitteeFallbacks(t *testing.T) {
	noRace(t)
	for _, c := range []struct{ k, threshold int }{{15, 10}, {21, 14}} {
		t.Run(fmt.Sprintf("K=%d,T=%d", c.k, c.threshold), func(t *testing.T) {
			data, err := demo.Synthetic(c.k, 60, 11)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var garble atomic.Value // the node whose released shares are garbled ("" for none)
			garble.Store("")
			evil := func(id string) []grpc.ServerOption {
				return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					resp, err := h(ctx, req)
					if err != nil || info.FullMethod != nodev1.NodeService_KeySwitch_FullMethodName || garble.Load() != id {
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
					share[32+6] ^= 1
					payload.Shares[0] = share
					b, _ := proto.Marshal(&payload)
					return &nodev1.KeySwitchResponse{Share: resignAs(dir, id, s, b)}, nil
				})}
			}
			nw := startFault(t, demo.Options{Dir: dir, Data: data, Threshold: c.threshold, MinNodes: c.threshold, NodeServerOptions: evil})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			client := dialCoordinator(t, nw, nil)
			st := runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: int32(c.threshold)}, time.Minute)
			if st.GetState() != coordinatorv1.State_STATE_DONE {
				t.Fatalf("query in a %d-of-%d epoch: %v %s", c.threshold, c.k, st.GetState(), st.GetError())
			}
			rec, err := client.ReleaseRecord(ctx, st.GetQueryId())
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.GetDecryptors()) != c.threshold {
				t.Fatalf("%d decryptors, want %d", len(rec.GetDecryptors()), c.threshold)
			}
			nodes := coordinatorClients(t, nw)
			var proven, unprovable []string
			for _, d := range rec.GetDecryptors() {
				id := d.GetNodeId()
				resp, err := nodes[id].ProveKeySwitch(ctx, &nodev1.ProveKeySwitchRequest{QueryId: st.GetQueryId(), Epoch: rec.GetEpoch(), Sum: rec.GetSum(), TargetPublicKey: rec.GetTargetPublicKey()})
				switch {
				case err == nil && len(resp.GetProofs()) == len(rec.GetSum()):
					proven = append(proven, id)
				case status.Code(err) == codes.InvalidArgument && strings.Contains(err.Error(), "no CKG share or threshold image of this node to prove its key-switch shares against"):
					unprovable = append(unprovable, id)
				default:
					t.Errorf("%s asked to prove its share: %v", id, err)
				}
			}
			t.Logf("proven: %v; nothing to prove against: %v", proven, unprovable)
			if len(proven) == 0 || (c.k == 21 && len(unprovable) == 0) {
				t.Fatalf("%d decryptors proved and %d had nothing to prove against; want the small points to prove (and, at K = 21, the large ones not to)", len(proven), len(unprovable))
			}
			// The coordinator keeps the images that fit: a garbled share
			// from a decryptor at a small point is named; one from a
			// decryptor past the bound is refused at the total, unnamed.
			cases := []string{proven[0]}
			if len(unprovable) > 0 {
				cases = append(cases, unprovable[0])
			}
			for i, id := range cases {
				garble.Store(id)
				st := runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: int32(c.threshold)}, time.Minute)
				garble.Store("")
				if st.GetState() != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
					t.Fatalf("%s garbled its share: %v, result %v", id, st.GetState(), st.GetResult())
				}
				named := strings.Contains(st.GetError(), id+": its key-switch share of ciphertext 0 failed its proof")
				if named != (i == 0) {
					t.Errorf("%s garbled its share (provable: %v): named %v: %s", id, i == 0, named, st.GetError())
				}
			}
		})
	}
}

// TestOffCommitteeWaitsForCommittee: a member off the decryption committee
// (4 nodes, committee 3, threshold 2) installs an epoch only with the
// statements of at least threshold committee members that they installed
// it with the same key: a complaint about a dealing opens one share of its
// ceremony and its member never installs, so an epoch no honest committee
// member holds a share of could be one whose secret is known (crypto.md,
// "Checked dealing", Complaints). The coordinator's one change here: it
// sends the member off the committee none of the statements, or one. The
// member refuses, the ceremony fails; sent all three, it installs.
func TestOffCommitteeWaitsForCommittee(t *testing.T) {
	data, err := demo.Synthetic(4, 100, 7)
	if err != nil {
		t.Fatal(err)
	}
	var keep atomic.Int32
	keep.Store(-1) // -1: as sent
	strip := func(id string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if r, ok := req.(*nodev1.InstallKeyRequest); ok && len(r.GetInstalled()) > 0 && keep.Load() >= 0 {
				r = proto.Clone(r).(*nodev1.InstallKeyRequest)
				r.Installed = r.Installed[:keep.Load()]
				return h(ctx, r)
			}
			return h(ctx, req)
		})}
	}
	nw := startFault(t, demo.Options{Data: data, Threshold: 2, Committee: 3, MinNodes: 3, NodeServerOptions: strip})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, committee := committeeOf(t, nw)
	if len(committee) != 3 {
		t.Fatalf("committee %v, want 3 members", committee)
	}
	for _, n := range []int32{0, 1} {
		keep.Store(n)
		_, err := nw.Coordinator.KeyCeremony(ctx)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d committee members state they installed it with this key, 2 (its threshold) are needed", n)) {
			t.Fatalf("ceremony with %d statements sent to the member off the committee: %v; want it refused", n, err)
		}
	}
	keep.Store(-1)
	e, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatalf("ceremony with every statement: %v", err)
	}
	nw.Epoch = e
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 4})
	if err != nil || st.GetResult().GetNodes() != 4 {
		t.Fatalf("query of all four in the new epoch: %v, %d nodes", err, st.GetResult().GetNodes())
	}
}
