package protocol

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// PartialShape is what every partial of one query must be: noised for the
// query spec whose SpecDigest it carries, VectorLen values committed to
// (rangeproof), proven within Ranges and encrypted with their blindings'
// limbs under Params (Params.NumCiphertexts(rangeproof.EncodedLen(VectorLen))
// ciphertexts) or, when Plaintext is set (benchmark-only mode, see
// nodev1.PartialPayload), VectorLen slots in the clear and no ciphertext.
type PartialShape struct {
	SpecDigest []byte
	VectorLen  int
	Params     homomorphic.Params
	Plaintext  bool
	// Ranges is each slot's plan.Plan.PartialBound.
	Ranges []rangeproof.Range
}

// PartialShapeOf is the shape of the encrypted partials of the query with
// spec spec and plan p under params. The coordinator checks each partial
// against it as it arrives, every decryptor again before it releases their
// sum.
func PartialShapeOf(spec *typesv1.QuerySpec, p *plan.Plan, params homomorphic.Params) PartialShape {
	return PartialShape{SpecDigest: SpecDigest(spec), VectorLen: p.VectorLen(), Params: params, Ranges: PartialRanges(p)}
}

// PartialRanges is every slot's plan.Plan.PartialBound, what a partial's
// range proof shows.
func PartialRanges(p *plan.Plan) []rangeproof.Range {
	out := make([]rangeproof.Range, p.VectorLen())
	for i := range out {
		out[i].Lo, out[i].Hi = p.PartialBound(i)
	}
	return out
}

// EncodePartial commits to a node's noisy slots and proves them within
// ranges, one per slot (rangeproof.Prove, bound to EncryptionContext): it
// returns what the node encrypts, the slots followed by their blindings'
// limbs, and the commitments with their proof and openings (the payload
// carries Commitments and Proof; EncryptEncoded links the ciphertexts to
// them).
func EncodePartial(slots []int64, ranges []rangeproof.Range, queryID string, epoch uint64, node string, specDigest []byte) (encoded []int64, c *rangeproof.Committed, err error) {
	if len(ranges) != len(slots) {
		return nil, nil, fmt.Errorf("protocol: %d ranges for %d slots", len(ranges), len(slots))
	}
	if c, err = rangeproof.Prove(slots, ranges, EncryptionContext(queryID, epoch, node, specDigest)); err != nil {
		return nil, nil, err
	}
	return encodeCommitted(slots, c), c, nil
}

// EncodeUnproven is EncodePartial without the proof (policy
// skip_range_proofs): the commitments and the limbs, which the release
// still checks the total against.
func EncodeUnproven(slots []int64) (encoded []int64, c *rangeproof.Committed) {
	c = rangeproof.Commit(slots)
	return encodeCommitted(slots, c), c
}

func encodeCommitted(slots []int64, c *rangeproof.Committed) []int64 {
	return append(append(make([]int64, 0, rangeproof.EncodedLen(len(slots))), slots...), c.Limbs...)
}

// EncryptEncoded encrypts encoded (EncodePartial's) under pk with a proof
// of encryption per ciphertext bound to context, each linked to c's
// commitments (rangeproof.Linker): it returns the ciphertexts, the proofs
// and the link (payload fields ciphertexts, proofs, range_link).
func EncryptEncoded(params homomorphic.Params, pk *homomorphic.PublicKey, encoded []int64, c *rangeproof.Committed, context []byte) ([]*homomorphic.Ciphertext, [][]byte, []byte, error) {
	link := c.Linker(params.Slots(), params.PlaintextModulus())
	cts, proofs, err := homomorphic.EncryptLinked(params, pk, encoded, context, link)
	if err != nil {
		return nil, nil, nil, err
	}
	return cts, proofs, link.Link(), nil
}

// Partial is a partial that passed OpenPartial: its signed form (the one
// the nodes' commitments cover) and its slots, encrypted or, in benchmark
// plaintext mode, in the clear.
type Partial struct {
	Signed      *typesv1.Signed
	Ciphertexts []*homomorphic.Ciphertext
	Plaintext   []int64
	// DataVersion is the node's data version the partial was computed on
	// ("" when its back end has none).
	DataVersion string
	// Proofs are the ciphertexts' proofs of encryption, one each, or none
	// (a partial of a node before the proofs); CheckEncryptionProofs verifies
	// them.
	Proofs [][]byte
	// RangeCommitments and RangeProof are the commitments to the values
	// and the proof that they are in the plan's bounds (CheckRangeProofs
	// verifies it; the release checks the total against the commitments).
	// RangeLink links them to the ciphertexts' slots (CheckEncryptionProofs
	// verifies it with the proofs of encryption).
	RangeCommitments, RangeProof, RangeLink []byte
}

// EncryptionContext is what a partial's proofs of encryption are bound to:
// the query, the key epoch, the sender and the spec digest. A proof made
// for one sender or query does not verify for another.
func EncryptionContext(queryID string, epoch uint64, node string, specDigest []byte) []byte {
	var b []byte
	b = append(b, "fedstat/partial-encryption/v1\x00"...)
	for _, f := range [][]byte{[]byte(queryID), []byte(node), specDigest} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return binary.BigEndian.AppendUint64(b, epoch)
}

// ErrUnproven is CheckEncryptionProofs's refusal of a partial without proofs
// of encryption.
var ErrUnproven = errors.New("it carries no proofs of encryption")

// ErrNoRangeProof is the refusal of a partial without a range proof by a
// party whose policy skip_range_proofs is off.
var ErrNoRangeProof = errors.New("it carries no range proof of its values (policy skip_range_proofs is off here)")

// CheckEncryptionProofs verifies every proof of encryption of p, node's
// partial of queryID in epoch, under the epoch's collective key pk. A
// partial without proofs is refused with ErrUnproven unless allowUnproven.
func CheckEncryptionProofs(params homomorphic.Params, pk *homomorphic.PublicKey, p *Partial, queryID string, epoch uint64, node string, specDigest []byte, allowUnproven bool) error {
	if len(p.Ciphertexts) == 0 {
		return nil
	}
	if len(p.Proofs) == 0 && !allowUnproven {
		return ErrUnproven
	}
	ctx := EncryptionContext(queryID, epoch, node, specDigest)
	for i := range p.Proofs {
		// Every proof is linked to the range commitments: its ciphertext's
		// value slots hold the committed values (docs/crypto.md, "The
		// link").
		bound, err := rangeproof.LinkBound(p.RangeCommitments, p.RangeLink, params.Slots(), i)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnlinked, err)
		}
		chal, ans, err := homomorphic.VerifyEncryptionLinked(params, pk, p.Ciphertexts[i], p.Proofs[i], ctx, i, bound)
		if err != nil {
			return fmt.Errorf("ciphertext %d: %w", i, err)
		}
		if err := rangeproof.CheckLink(p.RangeCommitments, p.RangeLink, params.Slots(), params.PlaintextModulus(), i, chal, ans); err != nil {
			return fmt.Errorf("%w: %w", ErrUnlinked, err)
		}
	}
	return nil
}

// ErrUnlinked is CheckEncryptionProofs's refusal of a partial whose
// ciphertexts are not linked to its range commitments: a value slot that
// does not hold the value committed to, or no link.
var ErrUnlinked = errors.New("its ciphertexts do not encrypt the values it committed to")

// RangeProofItem is what p's range proof is checked against: its
// commitments, shape's ranges and the context of node's partial of queryID
// in epoch (rangeproof.VerifyAll checks many at once).
func RangeProofItem(p *Partial, queryID string, epoch uint64, node string, shape PartialShape) rangeproof.Item {
	return rangeproof.Item{Commitments: p.RangeCommitments, Ranges: shape.Ranges, Context: EncryptionContext(queryID, epoch, node, shape.SpecDigest), Proof: p.RangeProof}
}

// CheckRangeProofs verifies the range proofs of partials, one item each
// (RangeProofItem), all at once (rangeproof.VerifyAll): the check every
// decryptor and the coordinator run. It returns one error per item, nil
// for each that passes: a proof that fails, or an item without a proof
// unless skip (policy skip_range_proofs), which is ErrNoRangeProof. The
// errors do not name the node (the callers do).
func CheckRangeProofs(items []rangeproof.Item, skip bool) []error {
	errs := make([]error, len(items))
	var proven []rangeproof.Item
	var at []int
	for i, it := range items {
		switch {
		case len(it.Proof) > 0:
			proven, at = append(proven, it), append(at, i)
		case !skip:
			errs[i] = ErrNoRangeProof
		}
	}
	for k, err := range rangeproof.VerifyAll(proven) {
		if err != nil {
			errs[at[k]] = fmt.Errorf("its values are not proven within the plan's bounds: %w", err)
		}
	}
	return errs
}

// SealPartial signs node's partial of query queryID in key epoch epoch.
func SealPartial(signer crypto.Signer, queryID string, epoch uint64, node string, p *nodev1.PartialPayload, now time.Time) (*typesv1.Signed, error) {
	return partialKind.seal(signer, queryBinding(queryID, epoch, node), p, now)
}

// OpenPartial runs every check of a partial, the same on both sides: the
// signature under pub (node's certificate key), the binding to queryID,
// epoch and node, the timestamp in w, the payload's encoding, the spec
// digest (a partial noised for another spec cannot be released under this
// one) and the shape (want). It returns the partial with its ciphertexts
// decoded. Its errors do not name the partial or the node (the callers do):
// a bad envelope's is the envelope's, a payload that does not decode
// matches ErrMalformedPayload.
func OpenPartial(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window, want PartialShape) (*Partial, error) {
	payload, err := partialKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(payload.GetSpecDigest(), want.SpecDigest) {
		return nil, errors.New("it was planned and noised for another query spec (min_nodes, threshold, epsilon, delta or SQL differ)")
	}
	if want.Plaintext {
		if int(payload.GetVectorLen()) != want.VectorLen || len(payload.GetPlaintext()) != want.VectorLen || len(payload.GetCiphertexts()) != 0 {
			return nil, fmt.Errorf("benchmark plaintext mode needs %d plaintext slots", want.VectorLen)
		}
		return &Partial{Signed: s, Plaintext: payload.GetPlaintext(), DataVersion: payload.GetDataVersion()}, nil
	}
	if len(payload.GetPlaintext()) > 0 {
		return nil, errors.New("it is not encrypted")
	}
	cts := want.Params.NumCiphertexts(rangeproof.EncodedLen(want.VectorLen))
	if int(payload.GetVectorLen()) != want.VectorLen || len(payload.GetCiphertexts()) != cts {
		return nil, fmt.Errorf("%d slots in %d ciphertexts, the plan needs %d (and their blindings) in %d", payload.GetVectorLen(), len(payload.GetCiphertexts()), want.VectorLen, cts)
	}
	if n := len(payload.GetProofs()); n != 0 && n != cts {
		return nil, fmt.Errorf("%d proofs of encryption for %d ciphertexts", n, cts)
	}
	if n := len(payload.GetRangeCommitments()); n != rangeproof.PointSize*want.VectorLen {
		return nil, fmt.Errorf("%d bytes of range commitments: the plan's %d values need %d",
			n, want.VectorLen, rangeproof.PointSize*want.VectorLen)
	}
	out := &Partial{Signed: s, Ciphertexts: make([]*homomorphic.Ciphertext, cts), DataVersion: payload.GetDataVersion(), Proofs: payload.GetProofs(),
		RangeCommitments: payload.GetRangeCommitments(), RangeProof: payload.GetRangeProof(), RangeLink: payload.GetRangeLink()}
	for i, b := range payload.GetCiphertexts() {
		if out.Ciphertexts[i], err = homomorphic.UnmarshalCiphertext(want.Params, b); err != nil {
			return nil, fmt.Errorf("ciphertext %d: %w", i, err)
		}
	}
	return out, nil
}

// OpenPartialHeader verifies the signed header of node's partial of query
// queryID without its payload (a release record keeps the header and
// signature only): the signature under pub and the binding to queryID,
// epoch and node.
func OpenPartialHeader(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string) error {
	b := queryBinding(queryID, epoch, node)
	b.Kind = partialKind.name
	_, err := envelope.OpenHeader(pub, s.GetHeader(), s.GetSignature(), b)
	return err
}

// OpenPartialCommitment verifies node's answer to Evaluate, the signed
// header of its partial of queryID without the payload: the signature under
// pub, the binding and the timestamp in w (not the replay cache: the
// partial itself is checked against it when it is revealed).
func OpenPartialCommitment(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window) error {
	return partialKind.openCommitment(pub, s, queryBinding(queryID, epoch, node), w)
}

// CheckPartialBinding checks that header is the header of node's partial
// of query queryID in epoch, by its binding alone: it verifies no
// signature. A node asked to reveal its partial within a set of partial
// headers runs it on each (the decryptors verify the signatures later; a
// forged header only makes a set that is never released).
func CheckPartialBinding(header []byte, queryID string, epoch uint64, node string) error {
	return partialKind.checkBinding(header, queryBinding(queryID, epoch, node))
}

// PartialEpoch returns the key epoch that header, node's partial of query
// queryID, is bound to, by its binding alone (no signature is verified): a
// node reads it from a partial it stored to tell whether the partial is of
// an earlier epoch than the one it is asked in.
func PartialEpoch(header []byte, queryID, node string) (uint64, error) {
	h, err := envelope.ParseHeader(header)
	if err != nil {
		return 0, err
	}
	if h.Kind != partialKind.name || h.QueryID != queryID || h.NodeID != node {
		return 0, fmt.Errorf("%w: a %s of %q, node %q, not a %s of %q, node %q", envelope.ErrBindingMismatch,
			h.Kind, h.QueryID, h.NodeID, partialKind.name, queryID, node)
	}
	return h.Epoch, nil
}

// Commitment is s without its payload: the header (which signs the
// payload's SHA-256) and the signature. A node answers Evaluate with it and
// sends the payload only once the set of partials is fixed (Reveal).
func Commitment(s *typesv1.Signed) *typesv1.Signed {
	return &typesv1.Signed{Header: s.GetHeader(), Signature: s.GetSignature()}
}
