package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// The key check (docs/crypto.md, "The key check"). Once this committee
// member has revealed its CKG share of a pending epoch, the coordinator
// encrypts random values under that share and asks the member what they
// are. An honest member decrypts them with its secret; one whose share is
// not a well-formed sample of a key it holds cannot, and so is named before
// the epoch is installed, instead of every release of the epoch failing.
// The member commits to what it decrypted (a hash with a nonce, signed)
// before it is told anything about the challenge. It is then told the seed
// the challenge was made from, recomputes the challenge under its own share
// (collective.KeyCheckHonest) and opens the commitment only if the
// challenge was that one and encrypts what it decrypted: it never shows the
// decryption of a ciphertext the coordinator crafted. One challenge per
// epoch (a second is refused; a restart loses the revealed share, so the
// epoch cannot be challenged again either).

// keyCheck is a member's answer to its epoch's key-check challenge.
type keyCheck struct {
	challenge []byte
	values    []int64
	nonce     []byte
}

func (n *Node) checkKey(ctx context.Context, req *nodev1.CheckKeyRequest) (*nodev1.CheckKeyResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e, err := n.pendingLocked("key check", req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if e.ckgSet == nil || e.secret == nil {
		return nil, fmt.Errorf("%w: this node revealed no CKG share of epoch %d since it started, so there is nothing to check", ErrBadRequest, e.Epoch)
	}
	if len(req.GetChallenge()) > 0 {
		if e.keyCheck != nil {
			return nil, fmt.Errorf("%w: epoch %d: this node answered its key-check challenge already (one per epoch)", ErrAlreadyReleased, e.Epoch)
		}
		ct, err := homomorphic.UnmarshalCiphertext(e.Params, req.GetChallenge())
		if err != nil {
			return nil, fmt.Errorf("%w: key-check challenge of epoch %d: %v", ErrBadRequest, e.Epoch, err)
		}
		values, err := collective.KeyCheckDecrypt(e.Params, e.secret, ct)
		if err != nil {
			return nil, fmt.Errorf("%w: key-check challenge of epoch %d: %v", ErrBadRequest, e.Epoch, err)
		}
		nonce := make([]byte, 32)
		if _, err := rand.Read(nonce); err != nil {
			return nil, err
		}
		signed, err := protocol.SealKeyCheck(n.cfg.Identity.Key, e.Epoch, n.id, protocol.KeyCheckDigest(e.Epoch, n.id, values, nonce), n.cfg.Now())
		if err != nil {
			return nil, err
		}
		e.keyCheck = &keyCheck{challenge: req.GetChallenge(), values: values, nonce: nonce}
		return &nodev1.CheckKeyResponse{Commitment: signed}, nil
	}
	kc := e.keyCheck
	if kc == nil {
		return nil, fmt.Errorf("%w: epoch %d: no key-check challenge to open", ErrBadRequest, e.Epoch)
	}
	honest, values, err := collective.KeyCheckHonest(e.Params, e.CRS, e.ckgShare.GetPayload(), req.GetSeed(), len(e.Members), e.Threshold, kc.challenge)
	if err != nil {
		return nil, fmt.Errorf("%w: key check of epoch %d: %v", ErrBadRequest, e.Epoch, err)
	}
	if !honest {
		// Either the coordinator crafted the challenge, or the share it
		// challenged is not the one this node holds. The commitment stays
		// closed; the record (with the seed, which anyone can replay
		// against this node's signed share) says which.
		n.record(ctx, "coordinator", "epoch.key_check_refused", "", map[string]any{"epoch": e.Epoch, "seed": fmt.Sprintf("%x", req.GetSeed()),
			"reason": "the challenge is not the one its seed makes under this node's signed CKG share"})
		return nil, fmt.Errorf("%w: epoch %d: the challenge is not the one its seed makes under the CKG share %s signed; the commitment stays closed", protocol.ErrKeyCheck, e.Epoch, n.id)
	}
	if !slices.Equal(values, kc.values) {
		n.record(ctx, "coordinator", "epoch.key_check_failed", "", map[string]any{"epoch": e.Epoch})
		n.log.Warn("this node does not decrypt an honest key-check challenge under its own CKG share: its secret key file or its share is broken", "epoch", e.Epoch)
		return nil, fmt.Errorf("%w: epoch %d: %s's secret does not decrypt the challenge made under its CKG share", protocol.ErrKeyCheck, e.Epoch, n.id)
	}
	return &nodev1.CheckKeyResponse{Nonce: kc.nonce}, nil
}
