package node

import (
	"bytes"
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// On-demand proofs of key-switch shares (docs/crypto.md, "Proofs of
// key-switch shares", "On demand"). A decryptor's key-switch shares go out
// unproven: a proof costs about 7 ms more than the share, and the
// coordinator's check of it 3 ms, which every release would pay for each
// of its decryptors. The coordinator asks for the proofs when the
// release's total is refused, and the decryptor whose share was not well
// formed cannot prove it, and is named.
//
// The decryptor keeps nothing secret for that: it draws each share's
// randomness from its secret share and the share's inputs (the nonce is
// the proof's context: query, epoch, node, partial set, target key and the
// ciphertext's index; collective.KeySwitchShareWitness), so it makes the
// same shares again when asked, from the ciphertexts and target key the
// coordinator sends back, after checking them against its release record
// (the sum's digest, the target key's digest, the active points). A
// decryptor restarted since its release proves as well as one that was
// not. Proofs are against the member's CKG share (threshold = committee)
// or its threshold image (threshold below the committee).

// switchShares makes this member's key-switch shares of sum towards target
// for the release of qid by the decryptors at points, each with its
// randomness derived from the member's secret and the share's inputs, and,
// when proofs is not nil, their proofs. Epochs stored without a CKG share
// or threshold image to prove against (a version before the proofs, a
// committee too large for the images) make shares with fresh randomness,
// which cannot be proven.
func (n *Node) switchShares(e *epochState, sk *homomorphic.SecretKeyShare, ts *collective.ThresholdShare, points []uint64, target *homomorphic.PublicKey, sum []*homomorphic.Ciphertext, qid string, commit, targetDigest []byte, proofs *[][]byte) ([][]byte, error) {
	thresholdProvable := ts != nil && len(e.ThresholdImage) > 0
	provable := ts == nil && len(e.CKGShare) > 0
	if proofs != nil && !thresholdProvable && !provable {
		return nil, fmt.Errorf("%w: epoch %d has no CKG share or threshold image of this node to prove its key-switch shares against", ErrBadRequest, e.Epoch)
	}
	shares := make([][]byte, 0, len(sum))
	for i, ct := range sum {
		nonce := protocol.KeySwitchProofContext(qid, e.Epoch, n.id, commit, targetDigest, i)
		var s []byte
		var w *collective.ShareWitness
		var err error
		switch {
		case thresholdProvable:
			s, w, err = collective.ThresholdKeySwitchShareWitness(e.Params, ts, points, target, ct, e.CRS, e.ThresholdImage, nonce)
		case provable:
			s, w, err = collective.KeySwitchShareWitness(e.Params, sk, target, ct, e.CRS, e.CKGShare, nonce)
		default:
			s, err = collective.KeySwitchShare(e.Params, sk, target, ct)
		}
		if err != nil {
			return nil, err
		}
		if proofs != nil {
			proof, err := w.Prove(nonce)
			w.Wipe()
			if err != nil {
				return nil, err
			}
			*proofs = append(*proofs, proof)
		} else {
			w.Wipe()
		}
		shares = append(shares, s)
	}
	return shares, nil
}

// digestOfSum is the protocol.SumDigest of the ciphertexts a member
// switched, as it encodes them.
func digestOfSum(sum []*homomorphic.Ciphertext) ([]byte, error) {
	enc := make([][]byte, len(sum))
	for i, ct := range sum {
		b, err := ct.MarshalBinary()
		if err != nil {
			return nil, err
		}
		enc[i] = b
	}
	return protocol.SumDigest(enc), nil
}

// proveKeySwitch answers ProveKeySwitch: the proofs of the shares this
// node released for the query, made again from the ciphertexts and target
// key of the request once they match the node's release record.
func (n *Node) proveKeySwitch(ctx context.Context, req *nodev1.ProveKeySwitchRequest) (*nodev1.ProveKeySwitchResponse, error) {
	qid := req.GetQueryId()
	e, err := n.releaseEpoch(ctx, "proof of key-switch shares", qid, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	rec, err := n.getShareRecord(qid)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no key-switch share of %s was released here", ErrBadRequest, qid)
	}
	if len(rec.SumDigest) == 0 {
		return nil, fmt.Errorf("%w: the share of %s was released by an earlier version, which kept no record to make it again from", ErrBadRequest, qid)
	}
	var signed typesv1.Signed
	if err := proto.Unmarshal(rec.Share, &signed); err != nil {
		return nil, fmt.Errorf("node: release record of %s: %w", qid, err)
	}
	payload, err := protocol.KeySwitchPayloadOf(&signed, qid, e.Epoch, n.id)
	if err != nil {
		return nil, fmt.Errorf("%w: the share of %s released here is not of epoch %d: %v", ErrBadRequest, qid, e.Epoch, err)
	}
	if !bytes.Equal(protocol.TargetKeyDigest(req.GetTargetPublicKey()), payload.GetTargetKeyDigest()) {
		return nil, fmt.Errorf("%w: target_public_key is not the key this node switched %s towards", ErrBadRequest, qid)
	}
	target, err := homomorphic.UnmarshalPublicKey(e.Params, req.GetTargetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("%w: target_public_key: %v", ErrBadRequest, err)
	}
	if len(req.GetSum()) != len(payload.GetShares()) {
		return nil, fmt.Errorf("%w: %d ciphertexts in sum, this node switched %d for %s", ErrBadRequest, len(req.GetSum()), len(payload.GetShares()), qid)
	}
	// Checked against the record before it is decoded: the coordinator
	// encodes the sum as this node did (homomorphic.Ciphertext's encoding).
	if !bytes.Equal(protocol.SumDigest(req.GetSum()), rec.SumDigest) {
		return nil, fmt.Errorf("%w: sum: not the ciphertexts this node switched for %s", ErrBadRequest, qid)
	}
	sum := make([]*homomorphic.Ciphertext, len(req.GetSum()))
	for i, b := range req.GetSum() {
		if sum[i], err = homomorphic.UnmarshalCiphertext(e.Params, b); err != nil {
			return nil, fmt.Errorf("%w: sum ciphertext %d: %v", ErrBadRequest, i, err)
		}
	}
	sk, ts, err := n.releaseSecret(e, rec.Points)
	if err != nil {
		return nil, err
	}
	var proofs [][]byte
	shares, err := n.switchShares(e, sk, ts, rec.Points, target, sum, qid, rec.Commit, payload.GetTargetKeyDigest(), &proofs)
	if err != nil {
		return nil, err
	}
	for i, s := range shares {
		if !bytes.Equal(s, payload.GetShares()[i]) {
			// Not the coordinator's doing: the inputs matched the record.
			return nil, fmt.Errorf("node: the key-switch share of ciphertext %d of %s made again is not the one released (were the keys restored from another backup?)", i, qid)
		}
	}
	n.record(ctx, "coordinator", "release.share_proven", qid, map[string]any{"epoch": e.Epoch, "shares": len(shares)})
	return &nodev1.ProveKeySwitchResponse{Proofs: proofs}, nil
}
