package node_test

// Node-level security tests of issue 6 that need the node's own files: secret
// shares at rest, and what a curious coordinator holds (its persisted state,
// its key, the sealed threshold shares it relays) measured against the
// nodes' secrets. See docs/threat-model.md.

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/internal/keystore"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// startKept starts an n-node network with threshold t in dir (kept after
// Close, so the test can read and modify the nodes' files).
func startKept(t *testing.T, dir string, n, threshold int) *demo.Network {
	t.Helper()
	return startKeptWith(t, dir, n, threshold, false)
}

// startKeptWith is startKept, with audit logs when audited.
func startKeptWith(t *testing.T, dir string, n, threshold int, audited bool) *demo.Network {
	t.Helper()
	data, err := demo.Synthetic(n, 300, 11)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Dir: dir, Data: data, Threshold: threshold, MinNodes: threshold, AuditLogs: audited})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	return nw
}

func identity(t *testing.T, dir, name string) *pki.Identity {
	t.Helper()
	id, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func dialNode(t *testing.T, addr string, as *pki.Identity, nodeID string) nodev1.NodeServiceClient {
	t.Helper()
	conn, err := rpc.Dial(addr, as, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return nodev1.NewNodeServiceClient(conn)
}

// ceremonyMembers is what a coordinator sends to start a key ceremony of
// nw: the members (Shamir points 1..N) and a fresh common reference string.
func ceremonyMembers(t *testing.T, dir string, nw *demo.Network) ([]*nodev1.Member, []byte) {
	t.Helper()
	var members []*nodev1.Member
	for i, n := range nw.Nodes {
		members = append(members, &nodev1.Member{NodeId: n.ID(), CertificateDer: identity(t, dir, n.ID()).Cert.Raw, ShamirPoint: uint64(i + 1)})
	}
	crs, err := collective.NewCRS()
	if err != nil {
		t.Fatal(err)
	}
	return members, crs
}

// keyGenAll plays a coordinator that starts key epoch epoch, with threshold
// t and every node of nw a member (ceremonyMembers): it returns its clients
// of the nodes, the members, the CRS and each node's answer to KeyGen (its
// CKG share's commitment), in node order.
func keyGenAll(t *testing.T, ctx context.Context, dir string, nw *demo.Network, epoch uint64, threshold int32) (clients map[string]nodev1.NodeServiceClient, members []*nodev1.Member, crs []byte, commits, dealingKeys []*nodev1.NodeSigned) {
	t.Helper()
	coordID := identity(t, dir, "coordinator")
	members, crs = ceremonyMembers(t, dir, nw)
	clients = map[string]nodev1.NodeServiceClient{}
	for _, n := range nw.Nodes {
		clients[n.ID()] = dialNode(t, n.Addr(), coordID, n.ID())
		resp, err := clients[n.ID()].KeyGen(ctx, &nodev1.KeyGenRequest{Epoch: epoch, Params: nw.Coordinator.Params().Name(), Crs: crs, Members: members, Threshold: threshold})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetCkgShare()})
		dealingKeys = append(dealingKeys, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetDealingKey()})
	}
	return clients, members, crs, commits, dealingKeys
}

// TestShareFileReadableByOthersStopsNode runs the key ceremony of a 2-of-3
// network, stops it, makes one of node-1's secret files readable by others
// (its CKG secret, then its threshold share) and checks that node.New
// refuses to start, naming the file; with mode 0600 restored it starts and
// is back in epoch 1.
func TestShareFileReadableByOthersStopsNode(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	epoch := nw.Epoch
	nw.Close()

	nodeDir := filepath.Join(dir, "node-1")
	id := identity(t, dir, "node-1")
	// start opens node-1's store and starts it; a node that fails to start
	// leaves the store closed again.
	start := func() (*node.Node, error) {
		st, db, err := admin.OpenStore(context.Background(), admin.OpenOptions{DataDir: nodeDir})
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.New(node.Config{Identity: id, StateDir: nodeDir, DB: db, Data: st})
		if err != nil {
			db.Close()
			return nil, err
		}
		t.Cleanup(func() { db.Close() })
		return n, nil
	}
	for _, name := range []string{fmt.Sprintf("epoch-%d.secret", epoch), fmt.Sprintf("epoch-%d-threshold.secret", epoch)} {
		path := filepath.Join(nodeDir, "keys", name)
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		n, err := start()
		if err == nil {
			n.Close()
			t.Fatalf("node started with %s readable by others", name)
		}
		if !errors.Is(err, keystore.ErrInsecure) || !strings.Contains(err.Error(), path) {
			t.Fatalf("node.New with %s mode 0644: %v, want keystore.ErrInsecure naming the file", name, err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The keys directory itself must be private too.
	keys := filepath.Join(nodeDir, "keys")
	if err := os.Chmod(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	if n, err := start(); err == nil || !errors.Is(err, keystore.ErrInsecure) || !strings.Contains(err.Error(), keys) {
		if n != nil {
			n.Close()
		}
		t.Fatalf("node.New with the keys directory mode 0755: %v, want keystore.ErrInsecure naming it", err)
	}
	if err := os.Chmod(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := start()
	if err != nil {
		t.Fatalf("node.New with private secrets: %v", err)
	}
	defer n.Close()
	if n.Epoch() != epoch {
		t.Fatalf("restarted node is at epoch %d, want %d", n.Epoch(), epoch)
	}
}

// TestCoordinatorStateCannotDecryptPartial runs a coordinator that persists
// its state (query history, results, key epochs) in a kv store, makes a new
// key epoch and releases a query through it, then takes one node's partial
// and checks that nothing the coordinator holds opens it: not its persisted
// state (no value is or contains a node's secret, none parses as a secret
// key share or a result key), not its PKI key, not a result key it made. As
// a control, the nodes' own secrets (all of them together) do decrypt it.
func TestCoordinatorStateCannotDecryptPartial(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	coordID := identity(t, dir, "coordinator")
	db, err := kv.Open(kv.Options{Dir: filepath.Join(dir, "coordinator-state")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var endpoints []coordinator.NodeEndpoint
	for _, n := range nw.Nodes {
		endpoints = append(endpoints, coordinator.NodeEndpoint{ID: n.ID(), Addr: n.Addr()})
	}
	c, err := coordinator.New(coordinator.Config{Identity: coordID, Nodes: endpoints, Threshold: 2, MinNodes: 2, Catalogue: nw.Catalogue, DB: db})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(runCtx) }()
	defer func() { stop(); <-done; c.Close() }()
	epoch, err := c.KeyCeremony(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2}
	st, err := c.Submit(ctx, coordinator.Analyst{Name: "analyst", Role: "analyst"}, spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Watch(ctx, st.GetQueryId(), func(s *coordinatorv1.QueryStatus) error { st = s; return nil }); err != nil {
		t.Fatal(err)
	}
	if st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("query through the persisting coordinator: %v %s", st.GetState(), st.GetError())
	}

	// One partial of node-1, asked for as the coordinator.
	params := c.Params()
	spec = st.GetSpec()
	// Each node answers with its partial's signed header; node-1 sends its
	// partial within the set of both headers.
	var set []*nodev1.NodeSigned
	for i, id := range []string{"node-1", "node-2"} {
		req, err := protocol.SignEvaluate(coordID.Key, id, &nodev1.EvaluateBody{QueryId: "q-one", Epoch: epoch, Spec: spec, Analyst: "analyst", Role: "analyst"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := dialNode(t, nw.Nodes[i].Addr(), coordID, id).Evaluate(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPartial().GetPayload()) != 0 {
			t.Fatalf("%s sent its partial with its header, before the partial set was fixed", id)
		}
		set = append(set, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()})
	}
	resp, err := dialNode(t, nw.Nodes[0].Addr(), coordID, "node-1").Reveal(ctx, &nodev1.RevealRequest{QueryId: "q-one", Epoch: epoch, Spec: spec, Partials: set})
	if err != nil {
		t.Fatal(err)
	}
	var payload nodev1.PartialPayload
	if err := proto.Unmarshal(resp.GetPartial().GetPayload(), &payload); err != nil {
		t.Fatal(err)
	}
	ct, err := homomorphic.UnmarshalCiphertext(params, payload.GetCiphertexts()[0])
	if err != nil {
		t.Fatal(err)
	}
	plausible := func(rk *homomorphic.ResultKey, c *homomorphic.Ciphertext) bool {
		v, err := homomorphic.Decrypt(params, rk, []*homomorphic.Ciphertext{c}, 1)
		return err == nil && math.Abs(float64(v[0])) < 1e4
	}

	// Control: the nodes' secrets of this epoch, all together, key-switch
	// the partial to a result key, which then decrypts it to a count.
	var secrets [][]byte
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		t.Fatal(err)
	}
	var shares [][]byte
	for _, n := range nw.Nodes {
		ks, err := keystore.Open(filepath.Join(dir, n.ID(), "keys"), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []uint64{epoch - 1, epoch} {
			for _, name := range []string{fmt.Sprintf("epoch-%d", e), fmt.Sprintf("epoch-%d-threshold", e)} {
				b, err := ks.Get(name)
				if err != nil {
					t.Fatalf("%s: %s: %v", n.ID(), name, err)
				}
				secrets = append(secrets, b)
			}
		}
		b, _ := ks.Get(fmt.Sprintf("epoch-%d", epoch))
		sk, err := homomorphic.UnmarshalSecretKeyShare(params, b)
		if err != nil {
			t.Fatal(err)
		}
		s, err := collective.KeySwitchShare(params, sk, rk.Public(), ct)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	switched, err := collective.KeySwitchCombine(params, ct, shares)
	if err != nil {
		t.Fatal(err)
	}
	if !plausible(rk, switched) {
		t.Fatal("control failed: the nodes' secrets together do not decrypt the partial")
	}

	// What the coordinator holds: every value of its persisted state, its
	// PKI files (certificate and key), and result keys it made.
	var held [][]byte
	if err := db.View(func(tx *kv.Txn) error {
		return tx.Iterate(nil, func(_, v []byte) error { held = append(held, bytes.Clone(v)); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if len(held) < 2 {
		t.Fatalf("the coordinator persisted %d values; expected its epoch and query records", len(held))
	}
	pkiFiles, _ := filepath.Glob(filepath.Join(dir, "pki", "coordinator*"))
	if len(pkiFiles) == 0 {
		t.Fatal("no coordinator PKI files found")
	}
	for _, f := range pkiFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	own, _ := homomorphic.GenResultKey(params)
	ownb, _ := own.MarshalBinary()
	held = append(held, ownb)

	if plausible(own, ct) {
		t.Fatal("a result key the coordinator made decrypts a partial")
	}
	for i, b := range held {
		for _, s := range secrets {
			if bytes.Contains(b, s) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(s))) {
				t.Fatalf("coordinator-held value %d contains a node's secret", i)
			}
		}
		if sk, err := homomorphic.UnmarshalSecretKeyShare(params, b); err == nil {
			if s, err := collective.KeySwitchShare(params, sk, own.Public(), ct); err == nil {
				if out, err := collective.KeySwitchCombine(params, ct, [][]byte{s}); err == nil && plausible(own, out) {
					t.Fatalf("coordinator-held value %d decrypts a partial as a secret key share", i)
				}
			}
		}
		if k, err := homomorphic.UnmarshalResultKey(params, b); err == nil && plausible(k, ct) {
			t.Fatalf("coordinator-held value %d decrypts a partial as a result key", i)
		}
	}
}

// TestCoordinatorCannotOpenDealtShares plays a coordinator that runs a key
// ceremony (epoch 100, 2 of 3) up to the dealing and keeps the Shamir
// shares node-1 deals to the other members: they are sealed with HPKE to
// each recipient's dealing key of the ceremony, so neither the
// coordinator's key, another member's dealing key nor the recipient's own
// certificate key opens them; the recipient's dealing key does.
func TestCoordinatorCannotOpenDealtShares(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coordID := identity(t, dir, "coordinator")
	members, crs := ceremonyMembers(t, dir, nw)
	const epoch = 100
	var commitments, dealingKeys []*nodev1.NodeSigned
	clients := map[string]nodev1.NodeServiceClient{}
	for _, n := range nw.Nodes {
		clients[n.ID()] = dialNode(t, n.Addr(), coordID, n.ID())
		resp, err := clients[n.ID()].KeyGen(ctx, &nodev1.KeyGenRequest{
			Epoch: epoch, Params: nw.Coordinator.Params().Name(), Crs: crs, Members: members, Threshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDealingKey() == nil {
			t.Fatalf("%s sent no dealing key in a 2-of-3 ceremony", n.ID())
		}
		commitments = append(commitments, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetCkgShare()})
		dealingKeys = append(dealingKeys, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetDealingKey()})
	}
	resp, err := clients["node-1"].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch, CkgCommitments: commitments, DealingKeys: dealingKeys})
	if err != nil {
		t.Fatal(err)
	}
	dealingKey := func(id string) *ecdh.PrivateKey {
		t.Helper()
		ks, err := keystore.Open(filepath.Join(dir, id, "keys"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ks.Get(fmt.Sprintf("dealing-%d", epoch))
		if err != nil {
			t.Fatal(err)
		}
		k, err := ecdh.P256().NewPrivateKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	certKey := func(id *pki.Identity) *ecdh.PrivateKey {
		t.Helper()
		k, ok := id.Key.(*ecdsa.PrivateKey)
		if !ok {
			t.Fatalf("%s key is %T", id.Name(), id.Key)
		}
		ek, err := k.ECDH()
		if err != nil {
			t.Fatal(err)
		}
		return ek
	}
	open := func(k *ecdh.PrivateKey, info string, ct []byte) error {
		sk, err := hpke.NewDHKEMPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info), ct)
		return err
	}
	var checked int
	for _, d := range resp.GetDealt() {
		if d.GetToNodeId() != "node-2" {
			continue
		}
		info := fmt.Sprintf("fedstat threshold share epoch=%d from=%s to=%s", epoch, d.GetFromNodeId(), d.GetToNodeId())
		ct := d.GetSealed().GetPayload()
		if err := open(dealingKey("node-2"), info, ct); err != nil {
			t.Fatalf("control: node-2's dealing key does not open the share dealt to it: %v", err)
		}
		if open(certKey(coordID), info, ct) == nil {
			t.Fatal("the coordinator's key opens a dealt threshold share")
		}
		if open(dealingKey("node-3"), info, ct) == nil {
			t.Fatal("node-3's dealing key opens the share dealt to node-2")
		}
		if open(certKey(identity(t, dir, "node-2")), info, ct) == nil {
			t.Fatal("node-2's certificate key opens the share sealed to its dealing key")
		}
		checked++
	}
	if checked != 1 {
		t.Fatalf("%d shares dealt to node-2, want 1", checked)
	}
}

// TestForgedKeyCeremonyRefused plays a coordinator that runs a key ceremony
// (epoch 100, T = N = 3) honestly up to InstallKey and then tries to have
// node-1 install a public key of its own, a tampered CKG share, another
// member's share under a third member's name, or a non-member's: node-1
// refuses each, naming the reason, and answers no query while its new epoch
// has no verified key.
func TestForgedKeyCeremonyRefused(t *testing.T) {
	dir := t.TempDir()
	nw := startKeptWith(t, dir, 3, 3, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	params := nw.Coordinator.Params()
	const epoch = 100
	clients, members, crs, commits, dealingKeys := keyGenAll(t, ctx, dir, nw, epoch, 3)
	for _, c := range commits {
		if len(c.GetSigned().GetPayload()) != 0 {
			t.Fatalf("%s answered KeyGen with its CKG share; it must send only the signed header until every share is fixed", c.GetNodeId())
		}
	}
	// revealAll asks each member in ids for its share within set.
	revealAll := func(e uint64, set, keys []*nodev1.NodeSigned, ids ...string) (shares, stmts []*nodev1.NodeSigned, proofs map[string][]byte) {
		t.Helper()
		proofs = map[string][]byte{}
		for _, id := range ids {
			r, err := clients[id].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: e, CkgCommitments: set, DealingKeys: keys})
			if err != nil {
				t.Fatalf("reveal of epoch %d at %s: %v", e, id, err)
			}
			shares = append(shares, &nodev1.NodeSigned{NodeId: id, Signed: r.GetCkgShare()})
			stmts = append(stmts, &nodev1.NodeSigned{NodeId: id, Signed: r.GetReveal()})
			proofs[id] = r.GetCkgProof()
		}
		return shares, stmts, proofs
	}
	// Sets a member does not reveal in.
	for _, tc := range []struct {
		name string
		set  []*nodev1.NodeSigned
		want string
	}{
		{"a set without node-3's commitment", commits[:2], "2 commitments for a committee of 3"},
		{"a set naming node-2 twice", []*nodev1.NodeSigned{commits[0], commits[1], commits[1]}, "repeated"},
		{"a set with node-1's header under node-2's signature", []*nodev1.NodeSigned{{NodeId: "node-1", Signed: &typesv1.Signed{Header: commits[0].GetSigned().GetHeader(), Signature: commits[1].GetSigned().GetSignature()}}, commits[1], commits[2]}, "not the one this node signed"},
	} {
		if _, err := clients["node-1"].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch, CkgCommitments: tc.set}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("reveal in %s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	signed, reveals, proofs := revealAll(epoch, commits, dealingKeys, "node-1", "node-2", "node-3")
	with := func(id string, proof []byte) map[string][]byte {
		out := map[string][]byte{}
		for k, v := range proofs {
			out[k] = v
		}
		if proof == nil {
			delete(out, id)
		} else {
			out[id] = proof
		}
		return out
	}

	// A rogue key: node-3, working with the coordinator, signs another
	// share after node-1's and node-2's were revealed (a share chosen from
	// theirs would make the collective key one whose secret it knows). The
	// honest members revealed in the first set and in no other.
	n3 := identity(t, dir, "node-3")
	rogueSK, err := homomorphic.GenSecretKeyShare(params)
	if err != nil {
		t.Fatal(err)
	}
	// With a valid proof of its own secret: the proof shows a well-formed
	// share, not one fixed before the others were seen.
	rogueShare, rogueProof, err := collective.CKGShareProven(params, rogueSK, crs, protocol.CKGProofContext(epoch, "node-3"))
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := protocol.SealCKGShare(n3.Key, epoch, "node-3", rogueShare, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogueSet := []*nodev1.NodeSigned{commits[0], commits[1], {NodeId: "node-3", Signed: protocol.Commitment(rogue)}}
	for _, id := range []string{"node-1", "node-2"} {
		_, err := clients[id].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch, CkgCommitments: rogueSet})
		if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "another set of commitments") {
			t.Fatalf("%s asked to reveal in the set with node-3's later share: %v, want a refusal", id, err)
		}
	}
	rogueStmt, err := protocol.SealCKGReveal(n3.Key, epoch, "node-3", protocol.CKGSetDigest(epoch, rogueSet), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogueShares := []*nodev1.NodeSigned{signed[0], signed[1], {NodeId: "node-3", Signed: rogue}}
	rogueStmts := []*nodev1.NodeSigned{reveals[0], reveals[1], {NodeId: "node-3", Signed: rogueStmt}}

	own, _ := homomorphic.GenResultKey(params)
	ownPK, _ := own.Public().MarshalBinary()
	tampered := proto.Clone(signed[1]).(*nodev1.NodeSigned)
	tampered.Signed.Payload[len(tampered.Signed.Payload)/2] ^= 1
	relabelled := &nodev1.NodeSigned{NodeId: "node-3", Signed: signed[1].GetSigned()}
	for _, tc := range []struct {
		name    string
		shares  []*nodev1.NodeSigned
		reveals []*nodev1.NodeSigned
		pk      []byte
		proofs  map[string][]byte
		want    []string
	}{
		// Forged shares go first, so that no genuine share is spent by the
		// refusal (as in test/e2e's TestReplayedPartialsRefused).
		{"a tampered CKG share", []*nodev1.NodeSigned{tampered, signed[0], signed[2]}, reveals, nil, proofs, []string{"CKG share from node-2", "bad signature"}},
		{"node-2's share as node-3's", []*nodev1.NodeSigned{relabelled, signed[0], signed[1]}, reveals, nil, proofs, []string{"CKG share from node-3", "bad signature"}},
		{"a share of a non-member", []*nodev1.NodeSigned{{NodeId: "node-9", Signed: signed[1].GetSigned()}}, reveals, nil, proofs, []string{"node-9", "not a member"}},
		{"node-3's share without its proof", signed, reveals, nil, with("node-3", nil), []string{"CKG share from node-3", "proof of the CKG share refused"}},
		{"node-2's proof for node-3's share", signed, reveals, nil, with("node-3", proofs["node-2"]), []string{"CKG share from node-3", "proof of the CKG share refused"}},
		{"the shares without the reveal statements", signed, nil, nil, proofs, []string{"no CKG reveal statement from [node-1 node-2 node-3]"}},
		{"node-3's share chosen after the others were revealed", rogueShares, rogueStmts, nil, with("node-3", rogueProof), []string{"node-1 revealed its CKG share in another set of commitments"}},
		{"node-3's later share without node-1's and node-2's statements", rogueShares, rogueStmts[2:], nil, with("node-3", rogueProof), []string{"no CKG reveal statement from [node-1 node-2]"}},
		{"the coordinator's own public key", signed, reveals, ownPK, proofs, []string{"differs from the aggregate"}},
	} {
		_, err := clients["node-1"].InstallKey(ctx, &nodev1.InstallKeyRequest{Epoch: epoch, CkgShares: tc.shares, PublicKey: tc.pk, CkgReveals: tc.reveals, CkgProofs: tc.proofs})
		if err == nil {
			t.Fatalf("node-1 installed %s", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("install with %s: %v, want it to name %q", tc.name, err, w)
			}
		}
	}
	// node-1's audit log names node-3 for both refused proofs.
	f, err := os.Open(filepath.Join(dir, "node-1", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	refusedProofs := 0
	err = audit.Scan(f, func(_ int, e audit.Entry) error {
		if e.Action == "epoch.ckg_proof_refused" && e.Details["node"] == "node-3" {
			refusedProofs++
		}
		return nil
	})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if refusedProofs != 2 {
		t.Fatalf("%d epoch.ckg_proof_refused entries naming node-3 in node-1's audit log, want 2", refusedProofs)
	}
	// Epoch 101 with a decryption committee of node-2 and node-3: node-1
	// (Shamir point 0) makes no key material and checks the committee's
	// public key exactly as a committee member does.
	var committee []*nodev1.Member
	for _, m := range members {
		m = proto.Clone(m).(*nodev1.Member)
		if m.GetNodeId() == "node-1" {
			m.ShamirPoint = 0
		}
		committee = append(committee, m)
	}
	var csigned, cdealing []*nodev1.NodeSigned
	for _, n := range nw.Nodes {
		resp, err := clients[n.ID()].KeyGen(ctx, &nodev1.KeyGenRequest{Epoch: epoch + 1, Params: params.Name(), Crs: crs, Members: committee, Threshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		if n.ID() == "node-1" {
			if proto.Size(resp) != 0 {
				t.Fatalf("node-1, off the committee, answered KeyGen with %d bytes of key material", proto.Size(resp))
			}
			continue
		}
		csigned = append(csigned, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetCkgShare()})
		cdealing = append(cdealing, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetDealingKey()})
	}
	if _, err := clients["node-1"].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch + 1, CkgCommitments: csigned}); err == nil || !strings.Contains(err.Error(), "not on the committee") {
		t.Fatalf("reveal at node-1, off the committee: %v, want a refusal", err)
	}
	csigned, creveals, cproofs := revealAll(epoch+1, csigned, cdealing, "node-2", "node-3")
	for _, tc := range []struct {
		name   string
		shares []*nodev1.NodeSigned
		pk     []byte
		want   []string
	}{
		{"the committee's key without node-3's share", csigned[:1], nil, []string{"1 CKG shares for a committee of 2"}},
		{"a share of node-1, which is off the committee", append(csigned, &nodev1.NodeSigned{NodeId: "node-1", Signed: signed[0].GetSigned()}), nil, []string{"node-1", "not a member of the committee"}},
		{"the coordinator's own public key for the committee's", csigned, ownPK, []string{"differs from the aggregate"}},
		// A node off the committee checks the committee's reveal
		// statements as a member does.
		{"the committee's shares without node-3's reveal statement", csigned, nil, []string{"no CKG reveal statement from [node-3]"}},
	} {
		reveals := creveals
		if strings.Contains(tc.name, "reveal statement") {
			reveals = creveals[:1]
		}
		_, err := clients["node-1"].InstallKey(ctx, &nodev1.InstallKeyRequest{Epoch: epoch + 1, CkgShares: tc.shares, PublicKey: tc.pk, CkgReveals: reveals, CkgProofs: cproofs})
		if err == nil {
			t.Fatalf("node-1 (off the committee) installed %s", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("install at a node off the committee with %s: %v, want it to name %q", tc.name, err, w)
			}
		}
	}
	// node-1's pending epoch 100 has no key: it answers no query of it until
	// a valid InstallKey (it never encrypts under an unverified key). Its
	// active epoch stays in service meanwhile.
	req, err := protocol.SignEvaluate(identity(t, dir, "coordinator").Key, "node-1", &nodev1.EvaluateBody{QueryId: "q-pending", Epoch: epoch,
		Spec:    &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 3, ReferenceDate: "2024-01-01"},
		Analyst: "analyst", Role: "analyst"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients["node-1"].Evaluate(ctx, req); err == nil || !strings.Contains(err.Error(), "is for epoch 100, this node is at epoch 1") {
		t.Fatalf("evaluate at a node whose new epoch has no verified key: %v, want a refusal", err)
	}
}
