package protocol

import (
	"fmt"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// The proof of a partial's limbs, made when the coordinator asks after a
// release's total was refused (docs/crypto.md, "The proof of the limbs";
// rangeproof.ProveLimbs).

// LimbContext is what the proof of the limbs of node's partial of queryID
// in epoch is bound to: the partial's EncryptionContext under its own
// label, so that a new proof of encryption made for it is not one of the
// partial's.
func LimbContext(queryID string, epoch uint64, node string, specDigest []byte) []byte {
	return append([]byte("fedstat/partial-limbs/v1\x00"), EncryptionContext(queryID, epoch, node, specDigest)...)
}

// EncryptEncodedSeeded is EncryptEncoded with the ciphertexts' randomness
// derived from seed (homomorphic.EncryptLinkedSeeded): a node that keeps
// seed and encoded can prove its limbs when asked (ProveLimbs).
func EncryptEncodedSeeded(params homomorphic.Params, pk *homomorphic.PublicKey, encoded []int64, c *rangeproof.Committed, context, seed []byte) ([]*homomorphic.Ciphertext, [][]byte, []byte, error) {
	link := c.Linker(params.Slots(), params.PlaintextModulus())
	cts, proofs, err := homomorphic.EncryptLinkedSeeded(params, pk, encoded, context, link, seed)
	if err != nil {
		return nil, nil, nil, err
	}
	return cts, proofs, link.Link(), nil
}

// ProveLimbs proves the limbs of node's partial of queryID in epoch: cts
// are its ciphertexts, encoded and seed what EncryptEncodedSeeded made
// them from, commitments its range commitments. It fails, and the node
// cannot prove, when encoded does not open the commitments or does not
// make cts with seed.
func ProveLimbs(params homomorphic.Params, pk *homomorphic.PublicKey, cts []*homomorphic.Ciphertext, encoded []int64, seed, commitments []byte, queryID string, epoch uint64, node string, specDigest []byte) (*nodev1.ProveLimbsResponse, error) {
	ctx := LimbContext(queryID, epoch, node, specDigest)
	lp, open, err := rangeproof.ProveLimbs(encoded, commitments, ctx)
	if err != nil {
		return nil, err
	}
	if want := params.NumCiphertexts(len(encoded)); len(cts) != want {
		return nil, fmt.Errorf("protocol: %d ciphertexts, %d encoded slots take %d", len(cts), len(encoded), want)
	}
	link := open.Linker(params.Slots(), params.PlaintextModulus())
	out := &nodev1.ProveLimbsResponse{LimbCommitments: lp.Commitments, LimbRangeProof: lp.Proof, Recomposition: lp.Recomposition}
	for i, ct := range cts {
		proof, err := homomorphic.ProveAgainLinked(params, pk, ct, encoded, ctx, i, seed, link)
		if err != nil {
			return nil, fmt.Errorf("ciphertext %d: %w", i, err)
		}
		out.Proofs = append(out.Proofs, proof)
	}
	out.Link = link.Link()
	return out, nil
}

// CheckLimbProof checks resp, the proof of the limbs of p, node's partial
// of queryID in epoch under the epoch's key pk: the limbs' range proof,
// their recomposition to the blindings of p's range commitments, and the
// new proofs of encryption of p's ciphertexts with their link to the
// values and the limbs. The error does not name the node (the caller
// does).
func CheckLimbProof(params homomorphic.Params, pk *homomorphic.PublicKey, p *Partial, resp *nodev1.ProveLimbsResponse, queryID string, epoch uint64, node string, specDigest []byte) error {
	ctx := LimbContext(queryID, epoch, node, specDigest)
	lp := &rangeproof.LimbProof{Commitments: resp.GetLimbCommitments(), Proof: resp.GetLimbRangeProof(), Recomposition: resp.GetRecomposition()}
	// The count first: it costs nothing, the range proof does.
	if len(resp.GetProofs()) != len(p.Ciphertexts) {
		return fmt.Errorf("%w: %d proofs of encryption for %d ciphertexts", rangeproof.ErrLimbs, len(resp.GetProofs()), len(p.Ciphertexts))
	}
	if err := rangeproof.VerifyLimbs(p.RangeCommitments, lp, ctx); err != nil {
		return err
	}
	for i, ct := range p.Ciphertexts {
		bound, err := rangeproof.LimbLinkBound(p.RangeCommitments, lp, resp.GetLink(), params.Slots(), i)
		if err != nil {
			return err
		}
		chal, ans, err := homomorphic.VerifyEncryptionLinked(params, pk, ct, resp.GetProofs()[i], ctx, i, bound)
		if err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
		if err := rangeproof.CheckLimbLink(p.RangeCommitments, lp, resp.GetLink(), params.Slots(), params.PlaintextModulus(), i, chal, ans); err != nil {
			return fmt.Errorf("its ciphertexts do not encrypt the limbs it committed to: %w", err)
		}
	}
	return nil
}
