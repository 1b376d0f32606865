package node_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestKeyCheckNode: a committee member answers the key check of its
// pending epoch once it has revealed its CKG share, not before: it commits
// to what the challenge decrypts to (signed, kind key-check), opens the
// commitment when told those values, refuses other values as a failed key
// check (protocol.ErrKeyCheck) without opening, and refuses a second
// challenge of the same epoch (each answer may tell a challenger one bit
// about its key).
func TestKeyCheckNode(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coordID := identity(t, dir, "coordinator")
	params := nw.Coordinator.Params()
	members, crs := ceremonyMembers(t, dir, nw)
	clients := map[string]nodev1.NodeServiceClient{}
	for _, n := range nw.Nodes {
		clients[n.ID()] = dialNode(t, n.Addr(), coordID, n.ID())
	}
	const epoch = 100
	var commits []*nodev1.NodeSigned
	for _, n := range nw.Nodes {
		resp, err := clients[n.ID()].KeyGen(ctx, &nodev1.KeyGenRequest{Epoch: epoch, Params: params.Name(), Crs: crs, Members: members, Threshold: 3})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, &nodev1.NodeSigned{NodeId: n.ID(), Signed: resp.GetCkgShare()})
	}
	n1 := clients["node-1"]
	challenge := func(share []byte) ([]byte, []int64) {
		t.Helper()
		ct, want, err := collective.KeyCheckChallenge(params, crs, share, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ct.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b, want
	}
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: []byte{1}}); err == nil || !strings.Contains(err.Error(), "revealed no CKG share") {
		t.Fatalf("a challenge before the reveal: %v", err)
	}
	r, err := n1.RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch, CkgCommitments: commits})
	if err != nil {
		t.Fatal(err)
	}
	share, err := protocol.OpenCKGShare(identity(t, dir, "node-1").Cert.PublicKey, r.GetCkgShare(), epoch, "node-1", protocol.Window{Now: time.Now(), MaxSkew: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch + 1, Challenge: []byte{1}}); err == nil || !strings.Contains(err.Error(), "pending epoch is 100") {
		t.Fatalf("a challenge of another epoch: %v", err)
	}
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Values: []int64{1}}); err == nil || !strings.Contains(err.Error(), "no key-check challenge to open") {
		t.Fatalf("an opening before the challenge: %v", err)
	}
	ct, want := challenge(share)
	c, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: ct})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := protocol.OpenKeyCheck(identity(t, dir, "node-1").Cert.PublicKey, c.GetCommitment(), epoch, "node-1", protocol.Window{Now: time.Now(), MaxSkew: time.Hour})
	if err != nil {
		t.Fatalf("the key-check commitment does not verify: %v", err)
	}
	again, _ := challenge(share)
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: again}); err == nil || !strings.Contains(err.Error(), "one per epoch") {
		t.Fatalf("a second challenge: %v", err)
	}
	other := append([]int64(nil), want...)
	other[0]++
	if o, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Values: other}); !errors.Is(rpc.FromStatus(err), protocol.ErrKeyCheck) || len(o.GetNonce()) != 0 {
		t.Fatalf("other values: %v (nonce %x); want a failed key check and no opening", err, o.GetNonce())
	}
	o, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Values: want})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(protocol.KeyCheckDigest(epoch, "node-1", want, o.GetNonce()), digest) {
		t.Fatal("the opening does not match the commitment")
	}
}
