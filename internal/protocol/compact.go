package protocol

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// A compact release: the decryptors check the coordinator's sum of the
// partials without downloading the partials. Every node whose partial is in
// the set signs, at commitment time, the fingerprint of its own partial at
// challenge points drawn from the set and the sum (ChallengeSeed); a
// decryptor receives the sum, the partials' headers and signatures (which
// make the commit digest) and the commitments, and checks that the
// fingerprint of the sum is the sum of the signed fingerprints
// (CheckCompactSum). docs/crypto.md, "Checking a sum without its partials",
// has the soundness argument.

var releaseCommitmentKind = protoKind[nodev1.ReleaseCommitment](KindReleaseCommitment)

// SumDigest identifies the sum of a release: SHA-256 over its ciphertexts'
// encodings, in order.
func SumDigest(sum [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte("fedstat/release-sum/v1\x00"))
	for _, ct := range sum {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(ct))))
		h.Write(ct)
	}
	return h.Sum(nil)
}

// ChallengeSeed is the seed of the challenge points of a compact release:
// a hash of the partial set (CommitDigest) and of the sum (SumDigest), so
// that the points are fixed only once both are.
func ChallengeSeed(commitDigest, sumDigest []byte) []byte {
	h := sha256.New()
	h.Write([]byte("fedstat/release-challenge/v1\x00"))
	h.Write(commitDigest)
	h.Write(sumDigest)
	return h.Sum(nil)
}

// OwnPartial opens a partial a node reads back from its own store: its
// signature under the node's own key pub and its binding to queryID, epoch
// and node; not its age (a partial may wait for approvals) nor its shape.
func OwnPartial(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, now time.Time) (*nodev1.PartialPayload, error) {
	return partialKind.open(pub, s, queryBinding(queryID, epoch, node), Window{Now: now, MaxSkew: 100 * 365 * 24 * time.Hour})
}

// NewReleaseCommitment is a node's commitment to the compact release of the
// partial set commitDigest as the sum sumDigest: the spec digest and plan
// fingerprint of its own partial (payload) and the fingerprints of its
// ciphertexts.
func NewReleaseCommitment(p homomorphic.Params, commitDigest, sumDigest []byte, payload *nodev1.PartialPayload) (*nodev1.ReleaseCommitment, error) {
	seed := ChallengeSeed(commitDigest, sumDigest)
	rc := &nodev1.ReleaseCommitment{Digest: commitDigest, SumDigest: sumDigest, SpecDigest: payload.GetSpecDigest(), PlanFingerprint: payload.GetPlanFingerprint(),
		RangeCommitments: payload.GetRangeCommitments()}
	for i, b := range payload.GetCiphertexts() {
		ct, err := homomorphic.UnmarshalCiphertext(p, b)
		if err != nil {
			return nil, fmt.Errorf("protocol: own partial, ciphertext %d: %w", i, err)
		}
		fp, err := homomorphic.Fingerprint(p, ct, seed)
		if err != nil {
			return nil, err
		}
		rc.Fingerprints = append(rc.Fingerprints, &nodev1.Fingerprint{Values: fp})
	}
	return rc, nil
}

// SealReleaseCommitment signs node's commitment to a compact release of
// query queryID.
func SealReleaseCommitment(signer crypto.Signer, queryID string, epoch uint64, node string, rc *nodev1.ReleaseCommitment, now time.Time) (*typesv1.Signed, error) {
	return releaseCommitmentKind.seal(signer, queryBinding(queryID, epoch, node), rc, now)
}

// OpenReleaseCommitment verifies node's commitment to a compact release of
// query queryID.
func OpenReleaseCommitment(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window) (*nodev1.ReleaseCommitment, error) {
	return releaseCommitmentKind.open(pub, s, queryBinding(queryID, epoch, node), w)
}

// ErrSumMismatch: the sum of a compact release is not the sum of the
// committed partials.
var ErrSumMismatch = errors.New("protocol: the sum is not the sum of the committed partials")

// CheckCompactSum checks the sum of a compact release against the opened
// commitments of every sender (commits, one per partial, in any order):
// each commits to commitDigest and to this sum, was noised for the spec
// whose digest is specDigest, and has one fingerprint per ciphertext; and
// the fingerprint of every ciphertext of the sum at the challenge points
// equals the sum of theirs. Decryptors run it before key-switching; a false
// sum passes with probability at most about 2^-94 per try.
func CheckCompactSum(p homomorphic.Params, sum []*homomorphic.Ciphertext, sumBytes [][]byte, commitDigest, specDigest []byte, commits map[string]*nodev1.ReleaseCommitment) error {
	sumDigest := SumDigest(sumBytes)
	seed := ChallengeSeed(commitDigest, sumDigest)
	total := make([][]uint64, len(sum))
	for i := range total {
		total[i] = p.ZeroFingerprint()
	}
	for node, rc := range commits {
		switch {
		case !bytes.Equal(rc.GetDigest(), commitDigest):
			return fmt.Errorf("%w: %s committed to another set of partials", ErrSumMismatch, node)
		case !bytes.Equal(rc.GetSumDigest(), sumDigest):
			return fmt.Errorf("%w: %s committed to another sum", ErrSumMismatch, node)
		case !bytes.Equal(rc.GetSpecDigest(), specDigest):
			return fmt.Errorf("the partial of %s was planned and noised for another query spec (min_nodes, threshold, epsilon, delta or SQL differ)", node)
		case len(rc.GetFingerprints()) != len(sum):
			return fmt.Errorf("%w: %s has %d ciphertexts, the sum %d", ErrSumMismatch, node, len(rc.GetFingerprints()), len(sum))
		}
		for i, f := range rc.GetFingerprints() {
			var err error
			if total[i], err = homomorphic.FingerprintAdd(p, total[i], f.GetValues()); err != nil {
				return fmt.Errorf("%w: fingerprint of %s: %v", ErrSumMismatch, node, err)
			}
		}
	}
	for i, ct := range sum {
		got, err := homomorphic.Fingerprint(p, ct, seed)
		if err != nil {
			return err
		}
		for j := range got {
			if got[j] != total[i][j] {
				return fmt.Errorf("%w: ciphertext %d", ErrSumMismatch, i)
			}
		}
	}
	return nil
}

// TargetKeyDigest identifies the target public key of a release (its
// encoding): a decryptor signs it with its key-switch share
// (KeySwitchPayload.target_key_digest), so that the share can be checked
// against a revealed result key.
func TargetKeyDigest(pub []byte) []byte {
	h := sha256.New()
	h.Write([]byte("fedstat/release-target/v1\x00"))
	h.Write(pub)
	return h.Sum(nil)
}
