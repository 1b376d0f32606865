package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The proof of a partial's limbs (docs/crypto.md, "The proof of the
// limbs"). A node keeps what it encrypted in its partial and the seed of
// the encryptions' randomness (nodev1.StoredLimbWitness) from the moment
// it makes the partial until the partial can no longer be released: its
// release window (protocol.PartialAge) and limbWitnessGrace after it. The
// coordinator asks (ProveLimbs) when a release's total was refused and
// every key-switch share of it proven.

// limbWitnessGrace is how long past its release window a partial's
// witness is kept: the release itself and the coordinator's questions
// after a refused total (coordinator releaseTimeout, 3 minutes), with room.
const limbWitnessGrace = time.Hour

// limbWitnessDropsAtOnce bounds the witnesses one keepLimbWitness drops
// (one transaction), the rest left for the next.
const limbWitnessDropsAtOnce = 256

func limbWitnessKey(qid string) []byte { return []byte("n/limb-witness/" + qid) }

// limbWitnessUntilPrefix indexes the witnesses by the time they may be
// dropped: n/limb-witness-until/<20-digit Unix ms>/<qid>, empty.
const limbWitnessUntilPrefix = "n/limb-witness-until/"

func limbWitnessUntilKey(until int64, qid string) []byte {
	return fmt.Appendf(nil, "%s%020d/%s", limbWitnessUntilPrefix, until, qid)
}

// limbWitnessOf is the query id of an index key (limbWitnessUntilKey).
func limbWitnessOf(key []byte) string {
	return string(key[min(len(key), len(limbWitnessUntilPrefix)+20+1):])
}

// keepLimbWitness stores the witness of this node's partial of qid (spec
// fixes its release window) and drops the witnesses past their time.
func (n *Node) keepLimbWitness(qid string, spec *typesv1.QuerySpec, seed []byte, encoded []int64) error {
	now := n.cfg.Now()
	until := now.Add(protocol.PartialAge(spec, n.cfg.MaxSkew) + limbWitnessGrace).UnixMilli()
	b, err := proto.Marshal(&nodev1.StoredLimbWitness{Seed: seed, Encoded: encoded, Until: until})
	if err != nil {
		return err
	}
	cutoff := limbWitnessUntilKey(now.UnixMilli(), "")
	errDone := errors.New("done")
	return n.cfg.DB.Update(func(tx *kv.Txn) error {
		var old [][]byte
		err := tx.IterateKeys([]byte(limbWitnessUntilPrefix), func(k []byte) error {
			if string(k) >= string(cutoff) || len(old) == limbWitnessDropsAtOnce {
				return errDone // sorted by time: the rest are later (or next time)
			}
			old = append(old, append([]byte(nil), k...))
			return nil
		})
		if err != nil && !errors.Is(err, errDone) {
			return err
		}
		for _, k := range old {
			was := limbWitnessOf(k)
			if err := tx.Delete(k); err != nil {
				return err
			}
			// A witness kept again since (a series interval sent again in
			// a later epoch) has a later index key of its own.
			if v, err := tx.Get(limbWitnessKey(was)); err == nil {
				var w nodev1.StoredLimbWitness
				if proto.Unmarshal(v, &w) == nil && w.GetUntil() >= now.UnixMilli() {
					continue
				}
			}
			if err := tx.Delete(limbWitnessKey(was)); err != nil {
				return err
			}
		}
		if err := tx.Set(limbWitnessUntilKey(until, qid), nil); err != nil {
			return err
		}
		return tx.Set(limbWitnessKey(qid), b)
	})
}

// ownPartial is the partial this node sent for qid in epoch: from memory,
// or from the ledger, which stored it with its charge. It fails with
// ErrBadRequest when the node sent none.
func (n *Node) ownPartial(qid string, epoch uint64) (*typesv1.Signed, *nodev1.PartialPayload, error) {
	own, payload := n.sent.peek(qid, epoch, n.cfg.Now())
	if own != nil {
		return own, payload, nil
	}
	answer, ok, err := n.ledger.Answer(qid)
	if err != nil {
		return nil, nil, err
	}
	if _, refused := storedRefusal(answer); !ok || refused {
		return nil, nil, fmt.Errorf("%w: %s: this node sent no partial of this query", ErrBadRequest, qid)
	}
	own = new(typesv1.Signed)
	if err := proto.Unmarshal(answer, own); err != nil {
		return nil, nil, fmt.Errorf("node: stored answer of %s: %w", qid, err)
	}
	if payload, err = protocol.OwnPartial(n.cfg.Identity.Cert.PublicKey, own, qid, epoch, n.id, n.cfg.Now()); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: this node's partial is not one of epoch %d: %v", ErrBadRequest, qid, epoch, err)
	}
	return own, payload, nil
}

// proveLimbs answers ProveLimbs: the proof of the limbs of this node's
// partial of the query, made again from its kept witness, once the node
// has revealed the partial in the one set it is released in. The proof
// shows nothing the partial does not (it is zero knowledge), so the node
// answers the coordinator whenever asked after that.
func (n *Node) proveLimbs(ctx context.Context, req *nodev1.ProveLimbsRequest) (*nodev1.ProveLimbsResponse, error) {
	qid := req.GetQueryId()
	e, err := n.releaseEpoch(ctx, "proof of limbs", qid, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	_, payload, err := n.ownPartial(qid, e.Epoch)
	if err != nil {
		return nil, err
	}
	// Only once the partial is out, in the one set it is released in: a
	// proof before that would give the coordinator something of a partial
	// it has only the header of (whatever its proofs reveal of their
	// ciphertexts), and the question comes only after a release.
	switch _, err := n.cfg.DB.Get(commitKey(qid)); {
	case errors.Is(err, kv.ErrNotFound):
		return nil, fmt.Errorf("%w: %s: this node has not revealed its partial in a set yet; its limbs are proven only after a release", ErrBadRequest, qid)
	case err != nil:
		return nil, err
	}
	if len(payload.GetCiphertexts()) == 0 {
		return nil, fmt.Errorf("%w: %s: this node's partial has no ciphertexts (benchmark plaintext mode)", ErrBadRequest, qid)
	}
	var w nodev1.StoredLimbWitness
	switch b, err := n.cfg.DB.Get(limbWitnessKey(qid)); {
	case errors.Is(err, kv.ErrNotFound):
		return nil, fmt.Errorf("%w: %s: this node kept nothing to prove its limbs from (a partial made by an earlier version, or past its release window)", ErrBadRequest, qid)
	case err != nil:
		return nil, err
	default:
		if err := proto.Unmarshal(b, &w); err != nil {
			return nil, fmt.Errorf("node: limb witness of %s: %w", qid, err)
		}
	}
	cts := make([]*homomorphic.Ciphertext, len(payload.GetCiphertexts()))
	for i, b := range payload.GetCiphertexts() {
		if cts[i], err = homomorphic.UnmarshalCiphertext(e.Params, b); err != nil {
			return nil, fmt.Errorf("node: own partial of %s, ciphertext %d: %w", qid, i, err)
		}
	}
	resp, err := protocol.ProveLimbs(e.Params, e.PublicKey, cts, w.GetEncoded(), w.GetSeed(), payload.GetRangeCommitments(), qid, e.Epoch, n.id, payload.GetSpecDigest())
	if err != nil {
		// Not the coordinator's doing: the witness is this node's own.
		return nil, fmt.Errorf("node: the limbs of this node's partial of %s cannot be proven from what it kept (was the store restored from another backup?): %w", qid, err)
	}
	n.record(ctx, "coordinator", "partial.limbs_proven", qid, map[string]any{"epoch": e.Epoch, "values": len(payload.GetRangeCommitments()) / rangeproof.PointSize})
	return resp, nil
}
