package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// nameRefusal runs when the total of a release is refused (refused, from
// release): it asks for the proofs that name whoever made it fail, the
// decryptors' of their key-switch shares first (nameUnprovenShares), then,
// when those all prove and the total is not the sum of the commitments,
// the members' of their limbs (nameUnprovenLimbs, on a deadline of its
// own: the proofs take time with the vector's length, and the release's
// may be mostly spent). It returns the error naming them, or refused as
// it is, and counts the refusal by whom it names
// (fedstat_coordinator_totals_refused_total).
func (c *Coordinator) nameRefusal(ctx context.Context, q *query, e *epoch, base *nodev1.KeySwitchRequest, sum []*homomorphic.Ciphertext, signed []*nodev1.NodeSigned, opened [][][]byte, parts []partial, refused error) error {
	if named := c.nameUnprovenShares(ctx, q, e, base, sum, signed, opened); named != nil {
		c.metrics.totalsRefused.WithLabelValues("decryptor").Inc()
		return named
	}
	if errors.Is(refused, rangeproof.ErrTotal) {
		lctx, cancel := context.WithTimeout(q.ctx, limbTimeout(q.plan.VectorLen()))
		defer cancel()
		if named := c.nameUnprovenLimbs(lctx, q, e, parts); named != nil {
			c.metrics.totalsRefused.WithLabelValues("member").Inc()
			return named
		}
	}
	c.metrics.totalsRefused.WithLabelValues("none").Inc()
	return refused
}

// limbTimeout is how long a member has to prove the limbs of a partial of
// d values: decryptorTimeout, and 40 ms a value (twice what a proof takes
// on 2 cores: 10 s for 530 values, docs/performance.md).
func limbTimeout(d int) time.Duration {
	return decryptorTimeout + time.Duration(d)*40*time.Millisecond
}

// nameUnprovenLimbs runs when the total of a release failed its check
// against the members' commitments and every decryptor proved its
// key-switch shares (nameUnprovenShares): what is left is a member's limbs
// of its blindings, which its partial's link does not cover. It asks every
// member whose partial is in the set to prove its limbs (ProveLimbs: limb
// commitments with their range proof, their recomposition to the blindings
// of its range commitments, and new proofs of encryption of its
// ciphertexts linked to values and limbs; docs/crypto.md, "The proof of
// the limbs") and checks each against the partial as it received it. It
// returns an error naming the members whose proof fails or that cannot
// prove, nil when every member proves (the refusal then stands unnamed).
func (c *Coordinator) nameUnprovenLimbs(ctx context.Context, q *query, e *epoch, parts []partial) error {
	digest := protocol.SpecDigest(q.st.Spec)
	ids := make([]string, len(parts))
	for i, pt := range parts {
		ids[i] = pt.node
	}
	ask := &nodev1.ProveLimbsRequest{QueryId: q.id, Epoch: e.ID}
	problems := make([]string, len(parts))
	c.fanoutEach(ctx, ids, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			problems[i] = "could not be asked to prove its limbs: " + err.Error()
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, limbTimeout(q.plan.VectorLen()))
		defer cancel()
		resp, err := cl.ProveLimbs(cctx, ask)
		if err != nil {
			problems[i] = "did not prove its limbs: " + callError(err).Error()
			return nil
		}
		pt := &protocol.Partial{Ciphertexts: parts[i].cts, RangeCommitments: parts[i].commitments}
		if err := protocol.CheckLimbProof(c.params, e.PublicKey, pt, resp, q.id, e.ID, id, digest); err != nil {
			problems[i] = "its proof of its limbs failed: " + err.Error()
		}
		return nil
	})
	var named, proven []string
	for i, p := range problems {
		if p == "" {
			proven = append(proven, ids[i])
			continue
		}
		named = append(named, ids[i]+": "+p)
		c.record(ctx, c.cfg.Identity.Name(), "release.limb_proof_failed", q.id, map[string]any{"node": ids[i], "reason": p})
	}
	if len(named) == 0 {
		c.record(ctx, c.cfg.Identity.Name(), "release.limbs_proven", q.id, map[string]any{"members": proven})
		return nil
	}
	return fmt.Errorf("%w: release: the decrypted total is not the sum of the values the members committed to; every key-switch share was proven, and asked to prove the limbs of their blindings: %s; nothing is released", ErrQueryFailed, strings.Join(named, "; "))
}
