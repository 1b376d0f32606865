package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
// to what the challenge decrypts to (signed, kind key-check), and opens the
// commitment when told the seed the challenge was made from; told another
// seed (a challenge the seed does not make under its share: a crafted
// ciphertext, or a share it does not hold), it keeps the commitment closed
// and says so (protocol.ErrKeyCheck); it refuses a second challenge of the
// same epoch.
func TestKeyCheckNode(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	params := nw.Coordinator.Params()
	const epoch = 100
	clients, _, crs, commits, dealingKeys := keyGenAll(t, ctx, dir, nw, epoch, 3)
	n1 := clients["node-1"]
	challenge := func(share []byte) ([]byte, []int64, []byte) {
		t.Helper()
		// The epoch has 3 members and threshold 3.
		ct, want, seed, err := collective.KeyCheckChallenge(params, crs, share, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ct.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b, want, seed
	}
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: []byte{1}}); err == nil || !strings.Contains(err.Error(), "revealed no CKG share") {
		t.Fatalf("a challenge before the reveal: %v", err)
	}
	r, err := n1.RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: epoch, CkgCommitments: commits, DealingKeys: dealingKeys})
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
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Seed: make([]byte, 32)}); err == nil || !strings.Contains(err.Error(), "no key-check challenge to open") {
		t.Fatalf("an opening before the challenge: %v", err)
	}
	ct, want, seed := challenge(share)
	c, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: ct})
	if err != nil {
		t.Fatal(err)
	}
	digest, err := protocol.OpenKeyCheck(identity(t, dir, "node-1").Cert.PublicKey, c.GetCommitment(), epoch, "node-1", protocol.Window{Now: time.Now(), MaxSkew: time.Hour})
	if err != nil {
		t.Fatalf("the key-check commitment does not verify: %v", err)
	}
	again, _, otherSeed := challenge(share)
	if _, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: again}); err == nil || !strings.Contains(err.Error(), "one per epoch") {
		t.Fatalf("a second challenge: %v", err)
	}
	o, err := n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Seed: otherSeed})
	if !errors.Is(rpc.FromStatus(err), protocol.ErrKeyCheck) || !strings.Contains(err.Error(), "not the one its seed makes") || len(o.GetNonce()) != 0 {
		t.Fatalf("another seed: %v (nonce %x); want the commitment kept closed, saying why", err, o.GetNonce())
	}
	o, err = n1.CheckKey(ctx, &nodev1.CheckKeyRequest{Epoch: epoch, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(protocol.KeyCheckDigest(epoch, "node-1", want, o.GetNonce()), digest) {
		t.Fatal("the opening does not match the commitment")
	}
}

// TestAbandonedDealingKeyDeleted: a member keeps the dealing key it made
// in KeyGen until the epoch is installed; a new ceremony that replaces a
// pending one deletes the old one's key (it opens nothing anyone will send
// again), and keeps its own.
func TestAbandonedDealingKeyDeleted(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := func(epoch int) string {
		return filepath.Join(dir, "node-1", "keys", fmt.Sprintf("dealing-%d.secret", epoch))
	}
	keyGenAll(t, ctx, dir, nw, 100, 3)
	if _, err := os.Stat(key(100)); err != nil {
		t.Fatalf("no dealing key after KeyGen: %v", err)
	}
	keyGenAll(t, ctx, dir, nw, 101, 3)
	if _, err := os.Stat(key(100)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the abandoned ceremony's dealing key is still there: %v", err)
	}
	if _, err := os.Stat(key(101)); err != nil {
		t.Errorf("the new ceremony's dealing key: %v", err)
	}
}
