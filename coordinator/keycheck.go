package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// ErrKeyCheck: a key ceremony stopped because a committee member's CKG
// share failed the key check; the member is excluded from key epochs.
var ErrKeyCheck = errors.New("coordinator: a committee member failed the key check")

// checkKeys runs the key check of every committee member's revealed CKG
// share (node CheckKey; docs/crypto.md, "The key check") before any member
// installs the epoch: a challenge encrypted under the share (the noise of
// a release of one partial per member with the smudging noise of threshold
// decryptors), the member's signed commitment to what it decrypts, then the
// seed the challenge was made from (so that the member can check it was
// not crafted before it opens). A member that does not decrypt it, or whose
// commitment is unsigned or does not open to its values, is excluded from key
// epochs until it presents another certificate, and the ceremony fails
// naming it; the next ceremony runs without it. A member that cannot be
// reached fails the ceremony as any step does, and is not excluded. It
// returns the bytes each member sent and received in the check.
func (c *Coordinator) checkKeys(ctx context.Context, epoch uint64, crs []byte, sharers []string, shares [][]byte, certOf func(string) *x509.Certificate,
	clients map[string]nodev1.NodeServiceClient, members, decryptors int) ([][2]int64, error) {
	failed := make([]string, len(sharers))
	seeds := make([][]byte, len(sharers))
	traffic := make([][2]int64, len(sharers)) // sent, received by member i
	errs := c.fanoutEach(ctx, sharers, func(ctx context.Context, i int, nid string) error {
		// The shares decoded when they were aggregated: an error here is
		// the coordinator's, not the member's.
		ct, want, seed, err := collective.KeyCheckChallenge(c.params, crs, shares[i], members, decryptors)
		if err != nil {
			return err
		}
		seeds[i] = seed
		ctb, err := ct.MarshalBinary()
		if err != nil {
			return err
		}
		req := &nodev1.CheckKeyRequest{Epoch: epoch, Challenge: ctb}
		r, err := clients[nid].CheckKey(ctx, req)
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("it runs a version without the key check; upgrade it (a key epoch is not made with a member whose share is not checked)")
		}
		if err != nil {
			return callError(err)
		}
		traffic[i][0], traffic[i][1] = int64(proto.Size(r)), int64(proto.Size(req))
		digest, err := protocol.OpenKeyCheck(certOf(nid).PublicKey, r.GetCommitment(), epoch, nid, c.window())
		if err != nil {
			failed[i] = fmt.Sprintf("its key-check commitment does not verify: %v", err)
			return nil
		}
		req = &nodev1.CheckKeyRequest{Epoch: epoch, Seed: seed}
		r, err = clients[nid].CheckKey(ctx, req)
		traffic[i][0] += int64(proto.Size(r))
		traffic[i][1] += int64(proto.Size(req))
		switch {
		case errors.Is(rpc.FromStatus(err), protocol.ErrKeyCheck):
			// The challenge was made from its seed under the share the
			// member signed and revealed: whatever the member says, it
			// does not hold a key that share is a sample of.
			failed[i] = "it does not decrypt a challenge encrypted under its CKG share (the share is not a well-formed sample of a key it holds): " + rpc.FromStatus(err).Error()
			return nil
		case err != nil:
			return callError(err)
		case !bytes.Equal(protocol.KeyCheckDigest(epoch, nid, want, r.GetNonce()), digest):
			failed[i] = "what it committed to is not the values of the challenge encrypted under its CKG share (the share is not a well-formed sample of a key it holds)"
		}
		return nil
	})
	var named []string
	for i, nid := range sharers {
		if failed[i] == "" {
			continue
		}
		problem := fmt.Sprintf("its CKG share of epoch %d failed the key check: %s", epoch, failed[i])
		d := sha256.Sum256(certOf(nid).Raw)
		if err := c.exclude(ctx, lostMember{ID: nid, Problem: problem, CertSHA256: d[:]}); err != nil {
			c.log.Error("could not store the exclusion of a member that failed the key check", "node", nid, "err", err)
		}
		// The seed, with the member's signed share, replays the challenge
		// (collective.KeyCheckRecompute): the accusation can be checked.
		c.record(ctx, c.cfg.Identity.Name(), "epoch.key_check_failed", "", map[string]any{"epoch": epoch, "node": nid, "reason": failed[i],
			"seed": fmt.Sprintf("%x", seeds[i]), "members": members, "decryptors": decryptors})
		named = append(named, nid+": "+problem)
	}
	if len(named) > 0 {
		return nil, fmt.Errorf("%w: %s; excluded from key epochs until it presents a new certificate", ErrKeyCheck, strings.Join(named, "; "))
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("key check: node %s: %w", sharers[i], err)
		}
	}
	return traffic, nil
}
