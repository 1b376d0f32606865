package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// A release sums a set S of signed partials. Two releases of one query id
// over different sets would let the coordinator subtract one total from the
// other and read what lies in the difference, a single node's partial at
// worst. Each decryptor remembers the one release it helped with, but with
// N >= 2T two decryptor sets can be disjoint, and a colluding decryptor can
// take part in both. So every node whose partial is in S must first commit
// to S (Commit): a node commits to one set per query id and signs its
// commitment, and a decryptor helps only when the request carries the
// commitments of every node in S to exactly S. Two releases of one query
// then share no honest node's partial: each honest partial is released at
// most once, with the full noise of its release around it.

func commitKey(queryID string) []byte { return []byte("n/commit/" + queryID) }

// commit records digest as the one partial set of queryID this node lets
// its partial be released in, and signs that commitment. The same digest
// again gets a fresh signature; another is refused.
func (n *Node) commit(ctx context.Context, req *nodev1.CommitRequest) (*nodev1.CommitResponse, error) {
	qid := req.GetQueryId()
	e, err := n.releaseEpoch(ctx, "commit", qid, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if qid == "" || len(req.GetDigest()) != 32 {
		return nil, fmt.Errorf("%w: a commit needs a query id and a 32-byte digest", ErrBadRequest)
	}
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	switch b, err := n.cfg.DB.Get(commitKey(qid)); {
	case err == nil:
		if !bytes.Equal(b, req.GetDigest()) {
			n.record(ctx, n.id, "release.commit_refused", qid, map[string]any{"reason": "committed to another partial set"})
			return nil, fmt.Errorf("%w: %s: this node already committed to another set of partials", ErrAlreadyReleased, qid)
		}
	case errors.Is(err, kv.ErrNotFound):
		if _, err := n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set(commitKey(qid), req.GetDigest()) }); err != nil {
			return nil, err
		}
		n.record(ctx, n.id, "release.committed", qid, map[string]any{"digest": fmt.Sprintf("%x", req.GetDigest())})
	default:
		return nil, err
	}
	env, err := envelope.Seal(n.cfg.Identity.Key, envelope.Binding{QueryID: qid, Epoch: e.Epoch, NodeID: n.id, Kind: protocol.KindReleaseCommit},
		req.GetDigest(), n.cfg.Now())
	if err != nil {
		return nil, err
	}
	return &nodev1.CommitResponse{Commit: protocol.ToProto(env)}, nil
}

// checkCommits verifies that every node in senders signed a commitment to
// digest for queryID in epoch e.
func (n *Node) checkCommits(e *epochState, queryID string, digest []byte, senders map[string]bool, commits []*nodev1.NodeSigned) error {
	got := map[string]bool{}
	for _, c := range commits {
		from := c.GetNodeId()
		m, ok := e.member(from)
		if !ok || got[from] {
			return fmt.Errorf("%w: commitment from %q: not a member of epoch %d, or repeated", ErrBadRequest, from, e.Epoch)
		}
		if _, err := envelope.Open(m.Cert.PublicKey, protocol.FromProto(c.GetSigned()),
			envelope.Binding{QueryID: queryID, Epoch: e.Epoch, NodeID: from, Kind: protocol.KindReleaseCommit},
			n.cfg.Now(), n.cfg.MaxSkew, nil); err != nil {
			return fmt.Errorf("%w: commitment from %s: %v", ErrBadRequest, from, err)
		}
		if !bytes.Equal(c.GetSigned().GetPayload(), digest) {
			return fmt.Errorf("%w: %s committed to another set of partials for %s", ErrAlreadyReleased, from, queryID)
		}
		got[from] = true
	}
	var missing []string
	for id := range senders {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%w: no commitment to this set of partials from %v (every node whose partial is released must commit)", ErrBadRequest, missing)
	}
	return nil
}

// releaseEpoch is the common start of the release calls (Commit,
// KeySwitch): the caller must be the coordinator, and the call must be for
// the node's current key epoch.
func (n *Node) releaseEpoch(ctx context.Context, call, queryID string, epoch uint64) (*epochState, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	e, err := n.current()
	if err != nil {
		return nil, err
	}
	if epoch != e.Epoch {
		return nil, fmt.Errorf("%w: %s for %s is for epoch %d, this node is at epoch %d", ErrWrongEpoch, call, queryID, epoch, e.Epoch)
	}
	return e, nil
}

// checkDecryptors checks the decryptor set of a release before any work is
// done for it: this node is in it, and it has the size the epoch needs (all
// members when T = N, exactly T otherwise) of distinct members. It returns
// their Shamir points, in the order given (releaseSecret's active set).
func checkDecryptors(e *epochState, self string, decryptors []string) ([]uint64, error) {
	if !slices.Contains(decryptors, self) {
		return nil, fmt.Errorf("%w: %s is not among the decryptors", ErrBadRequest, self)
	}
	if e.Threshold >= len(e.Members) && len(decryptors) != len(e.Members) {
		return nil, fmt.Errorf("%w: epoch %d needs all %d members to decrypt, got %d", ErrBadRequest, e.Epoch, len(e.Members), len(decryptors))
	}
	if e.Threshold < len(e.Members) && len(decryptors) != e.Threshold {
		return nil, fmt.Errorf("%w: epoch %d needs exactly %d decryptors, got %d", ErrBadRequest, e.Epoch, e.Threshold, len(decryptors))
	}
	points := make([]uint64, 0, len(decryptors))
	for _, id := range decryptors {
		m, ok := e.member(id)
		if !ok || slices.Contains(points, m.Point) {
			return nil, fmt.Errorf("%w: decryptor %q is not a member or repeated", ErrBadRequest, id)
		}
		points = append(points, m.Point)
	}
	return points, nil
}
