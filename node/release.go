package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
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
	if qid == "" || len(req.GetDigest()) != 32 || (req.GetSumDigest() != nil && len(req.GetSumDigest()) != 32) {
		return nil, fmt.Errorf("%w: a commit needs a query id, a 32-byte digest and, for a compact release, a 32-byte sum digest", ErrBadRequest)
	}
	var rc *nodev1.ReleaseCommitment
	if req.GetSumDigest() != nil {
		// A compact release: the decryptors check the sum against the
		// fingerprint of this node's own partial (the one it signed for
		// this query id, kept with its charge).
		if rc, err = n.releaseCommitment(e, qid, req.GetDigest(), req.GetSumDigest()); err != nil {
			return nil, err
		}
	}
	if err := n.fixSet(ctx, qid, req.GetDigest(), req.GetSumDigest(), "commit"); err != nil {
		return nil, err
	}
	var signed *typesv1.Signed
	if rc != nil {
		signed, err = protocol.SealReleaseCommitment(n.cfg.Identity.Key, qid, e.Epoch, n.id, rc, n.cfg.Now())
	} else {
		signed, err = protocol.SealCommit(n.cfg.Identity.Key, qid, e.Epoch, n.id, req.GetDigest(), n.cfg.Now())
	}
	if err != nil {
		return nil, err
	}
	return &nodev1.CommitResponse{Commit: signed}, nil
}

// fixSet records digest (and, for a compact release, sumDigest) as the one
// partial set of qid, and its sum, that this node's partial may be released
// in: n/commit/<qid> holds the set's digest, then the sum's. The same set
// again passes (a sum is added to a set recorded without one); another set,
// or another sum, is refused and audited. step names the call ("reveal",
// "commit") in the audit log.
func (n *Node) fixSet(ctx context.Context, qid string, digest, sumDigest []byte, step string) error {
	record := slices.Concat(digest, sumDigest)
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	switch b, err := n.cfg.DB.Get(commitKey(qid)); {
	case err == nil:
		if !bytes.Equal(b[:min(len(b), 32)], digest) {
			n.record(ctx, n.id, "release.commit_refused", qid, map[string]any{"step": step, "reason": "committed to another partial set"})
			return fmt.Errorf("%w: %s: this node already committed to another set of partials", ErrAlreadyReleased, qid)
		}
		if len(b) > 32 && sumDigest != nil && !bytes.Equal(b[32:], sumDigest) {
			n.record(ctx, n.id, "release.commit_refused", qid, map[string]any{"step": step, "reason": "committed to another sum of the partial set"})
			return fmt.Errorf("%w: %s: this node already committed to another sum of these partials", ErrAlreadyReleased, qid)
		}
		if len(b) == 32 && sumDigest != nil {
			if _, err := n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set(commitKey(qid), record) }); err != nil {
				return err
			}
		}
		return nil
	case errors.Is(err, kv.ErrNotFound):
		if _, err := n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error {
			// A series interval's kept share is of no more use: its
			// partial is fixed in this set for good (reencryptInterval).
			if err := tx.Delete(seriesShareKey(qid)); err != nil {
				return err
			}
			return tx.Set(commitKey(qid), record)
		}); err != nil {
			return err
		}
		n.record(ctx, n.id, "release.committed", qid, map[string]any{"step": step, "digest": fmt.Sprintf("%x", digest), "sum_digest": fmt.Sprintf("%x", sumDigest)})
		return nil
	default:
		return err
	}
}

// reveal sends this node's partial of a query, once the set of partials it
// is released in is fixed. Evaluate gave the coordinator only the partial's
// signed header, which commits to the payload by its SHA-256; the payload
// leaves the node here, for the set of headers in req, which must hold this
// node's own header and signature exactly, and only for the one set this
// node records for the query id (fixSet, the record Commit keeps). So every
// partial of a release was fixed before any other partial of it was seen:
// a member working with the coordinator cannot send the negation of
// another's partial, or one that makes the sum's c1 a value of its choice
// (threat-model.md, "Members are semi-honest").
func (n *Node) reveal(ctx context.Context, req *nodev1.RevealRequest) (*nodev1.RevealResponse, error) {
	qid := req.GetQueryId()
	e, err := n.releaseEpoch(ctx, "reveal", qid, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if qid == "" || req.GetSpec() == nil {
		return nil, fmt.Errorf("%w: a reveal needs a query id and the query's spec", ErrBadRequest)
	}
	own, payload, err := n.ownPartial(qid, e.Epoch)
	if err != nil {
		return nil, fmt.Errorf("%w, so it has nothing to reveal", err)
	}
	if !bytes.Equal(payload.GetSpecDigest(), protocol.SpecDigest(req.GetSpec())) {
		return nil, fmt.Errorf("%w: %s: the spec sent is not the one this node's partial was noised for", ErrBadRequest, qid)
	}
	if err := checkRevealSet(e, n.id, qid, req.GetSpec(), req.GetPartials(), own); err != nil {
		n.record(ctx, n.id, "partial.reveal_refused", qid, map[string]any{"reason": err.Error()})
		return nil, err
	}
	// The set is recorded (synced, and audited as release.committed with
	// step "reveal") before the partial leaves the node.
	digest := protocol.CommitDigest(qid, e.Epoch, req.GetSpec(), req.GetPartials())
	if err := n.fixSet(ctx, qid, digest, nil, "reveal"); err != nil {
		return nil, err
	}
	commit, err := protocol.SealCommit(n.cfg.Identity.Key, qid, e.Epoch, n.id, digest, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	return &nodev1.RevealResponse{Partial: own, Commit: commit}, nil
}

// checkRevealSet checks the set of partial headers a reveal is asked for:
// every entry is a distinct member of epoch e with a header bound to its
// partial of qid (protocol.CheckPartialBinding; the signatures are the
// decryptors' to verify), there are at least the spec's min_nodes, and
// self's entry is own's header and signature exactly.
func checkRevealSet(e *epochState, self, qid string, spec *typesv1.QuerySpec, set []*nodev1.NodeSigned, own *typesv1.Signed) error {
	member := func(id string) bool { _, ok := e.member(id); return ok }
	bound := func(header []byte, id string) error { return protocol.CheckPartialBinding(header, qid, e.Epoch, id) }
	if err := checkHeaderSet("partial", set, member, bound, self, own); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadRequest, qid, err)
	}
	if m := int(spec.GetMinNodes()); len(set) < m {
		return fmt.Errorf("%w: %s: a set of %d partials, min_nodes is %d", ErrBadRequest, qid, len(set), m)
	}
	return nil
}

// checkHeaderSet checks a set of signed headers a node is asked to reveal
// its own message (what) in: every entry names a distinct node for which
// member holds, its header is bound to that node's message (bound), and
// self's entry is own's header and signature exactly.
func checkHeaderSet(what string, set []*nodev1.NodeSigned, member func(string) bool, bound func([]byte, string) error, self string, own *typesv1.Signed) error {
	seen := map[string]bool{}
	for i, p := range set {
		id := p.GetNodeId()
		if !member(id) || seen[id] {
			return fmt.Errorf("%s %d of the set: %q may not be in it, or is repeated", what, i, id)
		}
		seen[id] = true
		if err := bound(p.GetSigned().GetHeader(), id); err != nil {
			return fmt.Errorf("%s %d of the set (%s): %v", what, i, id, err)
		}
		if id == self && (!bytes.Equal(p.GetSigned().GetHeader(), own.GetHeader()) || !bytes.Equal(p.GetSigned().GetSignature(), own.GetSignature())) {
			return fmt.Errorf("the set holds a %s of %s that is not the one this node signed", what, self)
		}
	}
	if !seen[self] {
		return fmt.Errorf("the set does not hold this node's %s", what)
	}
	return nil
}

// releaseCommitment is this node's commitment to a compact release of
// queryID: the fingerprints of its own partial of queryID.
func (n *Node) releaseCommitment(e *epochState, qid string, digest, sumDigest []byte) (*nodev1.ReleaseCommitment, error) {
	if payload := n.sent.take(qid, e.Epoch, n.cfg.Now()); payload != nil {
		return protocol.NewReleaseCommitment(e.Params, digest, sumDigest, payload)
	}
	answer, ok, err := n.ledger.Answer(qid)
	if err != nil {
		return nil, err
	}
	if _, refused := storedRefusal(answer); !ok || refused {
		return nil, fmt.Errorf("%w: %s: this node sent no partial of this query, so it has nothing to commit", ErrBadRequest, qid)
	}
	var signed typesv1.Signed
	if err := proto.Unmarshal(answer, &signed); err != nil {
		return nil, fmt.Errorf("node: stored answer of %s: %w", qid, err)
	}
	payload, err := protocol.OwnPartial(n.cfg.Identity.Cert.PublicKey, &signed, qid, e.Epoch, n.id, n.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: this node's partial is not one of epoch %d: %v", ErrBadRequest, qid, e.Epoch, err)
	}
	return protocol.NewReleaseCommitment(e.Params, digest, sumDigest, payload)
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
		committed, err := protocol.OpenCommit(m.Cert.PublicKey, c.GetSigned(), queryID, e.Epoch, from, n.window(nil))
		if err != nil {
			return fmt.Errorf("%w: commitment from %s: %v", ErrBadRequest, from, err)
		}
		if !bytes.Equal(committed, digest) {
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
// the node's current key epoch, or the one it replaced within
// PreviousEpochGrace.
func (n *Node) releaseEpoch(ctx context.Context, call, queryID string, epoch uint64) (*epochState, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	e, err := n.epochFor(epoch)
	if err != nil {
		return nil, err
	}
	if epoch != e.Epoch {
		return nil, fmt.Errorf("%w: %s for %s is for epoch %d, this node is at epoch %d", ErrWrongEpoch, call, queryID, epoch, e.Epoch)
	}
	return e, nil
}

// checkDecryptors checks the decryptor set of a release before any work is
// done for it: this node is in it, and it has the size the epoch needs (the
// whole committee when T = K, exactly T otherwise) of distinct committee
// members. It returns
// their Shamir points, in the order given (releaseSecret's active set).
func checkDecryptors(e *epochState, self string, decryptors []string) ([]uint64, error) {
	if !slices.Contains(decryptors, self) {
		return nil, fmt.Errorf("%w: %s is not among the decryptors", ErrBadRequest, self)
	}
	if !e.onCommittee(self) {
		return nil, fmt.Errorf("%w: %s holds no share of epoch %d's key and cannot decrypt", ErrNotOnCommittee, self, e.Epoch)
	}
	k := len(e.committee())
	if !e.thresholdShared() && len(decryptors) != k {
		return nil, fmt.Errorf("%w: epoch %d needs all %d committee members to decrypt, got %d", ErrBadRequest, e.Epoch, k, len(decryptors))
	}
	if e.thresholdShared() && len(decryptors) != e.Threshold {
		return nil, fmt.Errorf("%w: epoch %d needs exactly %d decryptors, got %d", ErrBadRequest, e.Epoch, e.Threshold, len(decryptors))
	}
	points := make([]uint64, 0, len(decryptors))
	for _, id := range decryptors {
		m, ok := e.member(id)
		if !ok || m.Point == 0 || slices.Contains(points, m.Point) {
			return nil, fmt.Errorf("%w: decryptor %q is not on the decryption committee or repeated", ErrBadRequest, id)
		}
		points = append(points, m.Point)
	}
	return points, nil
}

// A release in two steps. A decryptor that cannot do its part (keys lost or
// damaged, a clock that refuses the partials, a crash) must be found before
// any key-switch share leaves a node: a node that has handed out its share
// for one decryptor set helps with no other release of that query id (its
// share for another set would be a second, independently smudged sample of
// the same sum), so a retry with another decryptor set is only possible
// among nodes that have not handed theirs out.
//
//   - PREPARE: the node does every check of a release (partials, spec,
//     commitments of every sender to exactly this set, its own keys), makes
//     its share and keeps it in memory (Node.prepared). It returns no share.
//     A share prepared for another request of the same query id never left
//     the node and is replaced. A prepared share is not stored: it never
//     left the node, so losing it (a restart) only makes the RELEASE step
//     fail, and the coordinator tries another decryptor set.
//   - RELEASE: the node hands out the share it prepared for this query id,
//     decryptors and target key, and records it as its one release
//     (n/release/<qid>), exactly as a one-step release does.
//
// The coordinator retries a failed PREPARE with another T-subset of the
// committed members over the same partials; the commitments (above) keep
// every attempt on the one committed partial set.

// shareRecord is a key-switch share this node made for a query id: the
// release digest of the request (releaseDigest), the commit digest of its
// partial set, the senders of those partials, and the signed share.
type shareRecord struct {
	Digest []byte   `json:"digest"`
	Share  []byte   `json:"share"`
	Commit []byte   `json:"commit,omitempty"`
	From   []string `json:"from,omitempty"`
	// Proofs are the share's proofs (KeySwitchResponse.proofs).
	Proofs [][]byte `json:"-"`
	// Points are the release's active points and SumDigest the digest of
	// the ciphertexts switched (digestOfSum): what the shares are made
	// again from (ksproof.go).
	Points    []uint64 `json:"-"`
	SumDigest []byte   `json:"-"`
	// made is when a prepared share was made (not stored).
	made time.Time
}

// preparedTTL is how long a prepared share waits for its RELEASE step
// before it is dropped (longer than any release: the coordinator's release
// timeout is a minute).
const preparedTTL = time.Hour

// getShareRecord reads the release record of queryID (nil when there is
// none): a StoredRelease, or the JSON of older versions.
func (n *Node) getShareRecord(qid string) (*shareRecord, error) {
	key := releaseKey(qid)
	b, err := n.cfg.DB.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec shareRecord
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("node: release record %s: %w", key, err)
		}
		return &rec, nil
	}
	var sr nodev1.StoredRelease
	if err := proto.Unmarshal(b, &sr); err != nil {
		return nil, fmt.Errorf("node: release record %s: %w", key, err)
	}
	return &shareRecord{Digest: sr.GetDigest(), Share: sr.GetShare(), Commit: sr.GetCommit(), From: sr.GetFrom(), Proofs: sr.GetProofs(), Points: sr.GetPoints(), SumDigest: sr.GetSumDigest()}, nil
}

// preparedShare is the share prepared for queryID (nil when there is none).
// Callers hold releaseMu.
func (n *Node) preparedShare(qid string) *shareRecord {
	rec := n.prepared[qid]
	if rec != nil && n.cfg.Now().Sub(rec.made) > preparedTTL {
		delete(n.prepared, qid)
		return nil
	}
	return rec
}

// keepPrepared keeps rec as the share prepared for queryID, dropping
// prepared shares whose RELEASE never came. Callers hold releaseMu.
func (n *Node) keepPrepared(qid string, rec *shareRecord) {
	now := n.cfg.Now()
	for q, r := range n.prepared {
		if now.Sub(r.made) > preparedTTL {
			delete(n.prepared, q)
		}
	}
	rec.made = now
	if n.prepared == nil {
		n.prepared = map[string]*shareRecord{}
	}
	n.prepared[qid] = rec
}

func (rec *shareRecord) response() (*nodev1.KeySwitchResponse, error) {
	var s typesv1.Signed
	if err := proto.Unmarshal(rec.Share, &s); err != nil {
		return nil, err
	}
	return &nodev1.KeySwitchResponse{Share: &s, Proofs: rec.Proofs}, nil
}

// storedShare answers a one-step or PREPARE request from what the node
// already did for queryID, if it can (done): the same request again gets the
// stored share (or, for PREPARE, nothing more to do); another request after
// the share left is refused. A one-step request that matches the prepared
// share hands it out.
//
// The checks and the work of a release run outside releaseMu (a release of
// one query does not wait for another's); what the node decides to hand out
// is decided under it, by storedShare and again by storeShare.
func (n *Node) storedShare(qid string, digest []byte, prepare bool) (resp *nodev1.KeySwitchResponse, done bool, err error) {
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	return n.storedShareLocked(qid, digest, prepare)
}

func (n *Node) storedShareLocked(qid string, digest []byte, prepare bool) (resp *nodev1.KeySwitchResponse, done bool, err error) {
	rec, err := n.getShareRecord(qid)
	if err != nil {
		return nil, true, err
	}
	if rec != nil {
		if !bytes.Equal(rec.Digest, digest) {
			return nil, true, fmt.Errorf("%w: %s", ErrAlreadyReleased, qid)
		}
		if prepare {
			return &nodev1.KeySwitchResponse{}, true, nil
		}
		resp, err := rec.response()
		return resp, true, err
	}
	prep := n.preparedShare(qid)
	if prep == nil || !bytes.Equal(prep.Digest, digest) {
		return nil, false, nil
	}
	if prepare {
		return &nodev1.KeySwitchResponse{}, true, nil
	}
	resp, err = prep.response()
	if err != nil {
		return nil, true, err
	}
	return resp, true, n.handOut(qid, prep)
}

// storeShare records a share the node just made, as prepared or as its one
// release of queryID, unless what was stored for queryID meanwhile decides
// the request (then it returns that answer, and stored is false: the share
// just made is dropped, it never left).
func (n *Node) storeShare(qid string, rec *shareRecord, prepare bool) (resp *nodev1.KeySwitchResponse, stored bool, err error) {
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	if resp, done, err := n.storedShareLocked(qid, rec.Digest, prepare); done {
		return resp, false, err
	}
	if !prepare {
		return nil, true, n.handOut(qid, rec)
	}
	n.keepPrepared(qid, rec)
	return nil, true, nil
}

// handOut records rec as this node's one release of queryID (before the
// share is returned) and drops a prepared share. Callers hold releaseMu.
func (n *Node) handOut(qid string, rec *shareRecord) error {
	b, err := proto.Marshal(&nodev1.StoredRelease{Digest: rec.Digest, Share: rec.Share, Commit: rec.Commit, From: rec.From, Proofs: rec.Proofs, Points: rec.Points, SumDigest: rec.SumDigest})
	if err != nil {
		return err
	}
	// Watermarked like the ledger: a release record lost to a damaged
	// write-ahead log would let this node hand out a second share for the
	// query id; kv refuses to open a store that lost one.
	if _, err = n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set(releaseKey(qid), b) }); err != nil {
		return err
	}
	delete(n.prepared, qid)
	return nil
}

// releasePrepared is the RELEASE step: it hands out the share prepared for
// this query id, decryptors and target key (the request need not carry the
// partials again: the prepared record holds the digest of the partial set it
// was checked against).
func (n *Node) releasePrepared(ctx context.Context, e *epochState, req *nodev1.KeySwitchRequest) (*nodev1.KeySwitchResponse, error) {
	qid := req.GetQueryId()
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	rec, err := n.getShareRecord(qid)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if rec.Commit == nil || !bytes.Equal(rec.Digest, releaseDigest(rec.Commit, req)) {
			return nil, fmt.Errorf("%w: %s", ErrAlreadyReleased, qid)
		}
		return rec.response()
	}
	prep := n.preparedShare(qid)
	if prep == nil {
		return nil, fmt.Errorf("%w: nothing was prepared for a release of %s at this node", ErrNotPrepared, qid)
	}
	if !bytes.Equal(prep.Digest, releaseDigest(prep.Commit, req)) {
		return nil, fmt.Errorf("%w: the share of %s was prepared for other decryptors or another target key", ErrNotPrepared, qid)
	}
	resp, err := prep.response()
	if err != nil {
		return nil, err
	}
	if err := n.handOut(qid, prep); err != nil {
		return nil, err
	}
	n.record(ctx, n.id, "release.keyswitch_share", qid, map[string]any{"partials_from": prep.From, "decryptors": req.GetDecryptors(), "epoch": e.Epoch})
	n.log.Info("released key-switch share", "query_id", qid, "partials", len(prep.From), "decryptors", len(req.GetDecryptors()))
	return resp, nil
}

// ErrNotPrepared: a RELEASE step without a matching PREPARE at this node.
var ErrNotPrepared = errors.New("node: no share prepared for this release")

// sentCache keeps the payloads of the partials a node stored last, by query
// id, so that the commit step that follows within seconds fingerprints the
// ciphertexts in memory instead of reading the signed partial back from the
// ledger, checking its own signature and parsing it again. It is only a
// shortcut: an entry is made after the ledger stored exactly these bytes,
// taken once, and a miss (a restart, an old or evicted entry, a second
// commit) reads the ledger as before. It holds at most sentCacheBytes of
// ciphertexts and nothing older than sentCacheTTL.
type sentCache struct {
	mu      sync.Mutex
	entries map[string]sentEntry
	bytes   int
}

type sentEntry struct {
	epoch   uint64
	payload *nodev1.PartialPayload
	signed  *typesv1.Signed // the partial as stored and signed (Reveal sends it)
	at      time.Time
	size    int
}

const (
	sentCacheBytes = 64 << 20
	sentCacheTTL   = 10 * time.Minute
)

func (c *sentCache) keep(qid string, epoch uint64, payload *nodev1.PartialPayload, signed *typesv1.Signed, now time.Time) {
	size := len(signed.GetPayload())
	for _, b := range payload.GetCiphertexts() {
		size += len(b)
	}
	if size > sentCacheBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]sentEntry{}
	}
	c.dropLocked(qid)
	for q, e := range c.entries {
		if now.Sub(e.at) > sentCacheTTL || c.bytes+size > sentCacheBytes {
			c.dropLocked(q)
		}
	}
	c.entries[qid] = sentEntry{epoch: epoch, payload: payload, signed: signed, at: now, size: size}
	c.bytes += size
}

// take returns and forgets the payload kept for qid in epoch (nil if none).
func (c *sentCache) take(qid string, epoch uint64, now time.Time) *nodev1.PartialPayload {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[qid]
	if !ok {
		return nil
	}
	c.dropLocked(qid)
	if e.epoch != epoch || now.Sub(e.at) > sentCacheTTL {
		return nil
	}
	return e.payload
}

// peek returns the signed partial and payload kept for qid in epoch, and
// keeps them for the commit step (nil if none).
func (c *sentCache) peek(qid string, epoch uint64, now time.Time) (*typesv1.Signed, *nodev1.PartialPayload) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[qid]
	if !ok || e.epoch != epoch || now.Sub(e.at) > sentCacheTTL || e.signed == nil {
		return nil, nil
	}
	return e.signed, e.payload
}

func (c *sentCache) dropLocked(qid string) {
	if e, ok := c.entries[qid]; ok {
		c.bytes -= e.size
		delete(c.entries, qid)
	}
}
