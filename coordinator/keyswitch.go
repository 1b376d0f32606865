package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The commit and key-switch steps of a query, the other side of the nodes'
// Commit and KeySwitch (node/release.go).

// commit has every node whose partial is in signed commit to exactly this
// set of partials (once per query id), and returns their signed
// commitments in the order of signed. Decryptors require all of these
// commitments, so a query id can never be released over two sets.
//
// With sum (the sum of the partials) it asks for a compact
// release: every sender signs, with its commitment, the fingerprint of its
// own partial at the challenge points of this set and this sum, and the
// coordinator checks that they add up to the sum's fingerprint before any
// decryptor is asked (checkCompact), so that a node whose fingerprint is
// wrong is named here.
func (c *Coordinator) commit(ctx context.Context, q *query, e *epoch, spec *typesv1.QuerySpec, signed []*nodev1.NodeSigned, sum *compactSum) ([]*nodev1.NodeSigned, error) {
	digest := protocol.CommitDigest(q.id, e.ID, spec, signed)
	var sumDigest []byte
	if sum != nil {
		sumDigest = protocol.SumDigest(sum.bytes)
	}
	senders := make([]string, len(signed))
	for i, s := range signed {
		senders[i] = s.GetNodeId()
	}
	commits := make([]*nodev1.NodeSigned, len(signed))
	opened := make([]*nodev1.ReleaseCommitment, len(signed))
	err := c.fanout(ctx, senders, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		resp, err := cl.Commit(ctx, &nodev1.CommitRequest{QueryId: q.id, Epoch: e.ID, Digest: digest, SumDigest: sumDigest})
		if err != nil {
			return callError(err)
		}
		q.addUpload(id, proto.Size(resp))
		if sum != nil {
			rc, err := c.openCompactCommit(q.id, e, id, resp.GetCommit())
			if err != nil {
				return err
			}
			opened[i] = rc
		} else if err := c.checkCommit(q.id, e, id, resp.GetCommit(), digest); err != nil {
			return err
		}
		commits[i] = &nodev1.NodeSigned{NodeId: id, Signed: resp.GetCommit()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if sum != nil {
		if err := c.checkCompact(spec, signed, sum, digest, opened); err != nil {
			return nil, err
		}
		if err := checkRangeCommitments(signed, sum, opened); err != nil {
			return nil, err
		}
	}
	return commits, nil
}

// checkRangeCommitments: the range commitments a sender signs into its
// commitment go into the release record, which a verifier checks the
// total against, so they must be its partial's (sum.commitments[i] is
// signed[i]'s); it names the first sender whose are not.
func checkRangeCommitments(signed []*nodev1.NodeSigned, sum *compactSum, opened []*nodev1.ReleaseCommitment) error {
	for i, s := range signed {
		if i < len(sum.commitments) && !bytes.Equal(opened[i].GetRangeCommitments(), sum.commitments[i]) {
			return fmt.Errorf("%w: the commitment of %s repeats other range commitments than its partial's", protocol.ErrSumMismatch, s.GetNodeId())
		}
	}
	return nil
}

// openCompactCommit verifies node id's commitment to a compact release.
func (c *Coordinator) openCompactCommit(qid string, e *epoch, id string, s *typesv1.Signed) (*nodev1.ReleaseCommitment, error) {
	m := e.member(id)
	if m.Cert == nil {
		return nil, fmt.Errorf("not a member of epoch %d", e.ID)
	}
	rc, err := protocol.OpenReleaseCommitment(m.Cert.PublicKey, s, qid, e.ID, id, protocol.Window{Now: c.cfg.Now(), MaxSkew: c.cfg.MaxSkew})
	if err != nil {
		return nil, fmt.Errorf("commitment rejected: %w", err)
	}
	return rc, nil
}

// compactSum is the sum of a compact release: its ciphertexts, their
// encodings (what the decryptors get) and the verified partials it adds
// (parts[i] is signed[i]'s), which name a sender whose fingerprint is wrong.
type compactSum struct {
	cts   []*homomorphic.Ciphertext
	bytes [][]byte
	parts [][]*homomorphic.Ciphertext
	// commitments are the partials' range commitments (parts[i]'s), which
	// each sender's commitment must repeat.
	commitments [][]byte
}

// checkCompact runs the decryptors' check of a compact release
// (protocol.CheckCompactSum) on the coordinator's side first; when it
// fails, it compares each sender's fingerprint with the fingerprint of the
// partial the coordinator holds, to name the node whose commitment is
// wrong.
func (c *Coordinator) checkCompact(spec *typesv1.QuerySpec, signed []*nodev1.NodeSigned, sum *compactSum, digest []byte, opened []*nodev1.ReleaseCommitment) error {
	byNode := map[string]*nodev1.ReleaseCommitment{}
	for i, s := range signed {
		byNode[s.GetNodeId()] = opened[i]
	}
	err := protocol.CheckCompactSum(c.params, sum.cts, sum.bytes, digest, protocol.SpecDigest(spec), byNode)
	if err == nil {
		return nil
	}
	seed := protocol.ChallengeSeed(digest, protocol.SumDigest(sum.bytes))
	for i, s := range signed {
		fps := opened[i].GetFingerprints()
		if len(fps) != len(sum.parts[i]) {
			return fmt.Errorf("%w: the commitment of %s has %d fingerprints for %d ciphertexts", protocol.ErrSumMismatch, s.GetNodeId(), len(fps), len(sum.parts[i]))
		}
		for j, ct := range sum.parts[i] {
			fp, ferr := homomorphic.Fingerprint(c.params, ct, seed)
			if ferr != nil || !slices.Equal(fp, fps[j].GetValues()) {
				return fmt.Errorf("%w: the commitment of %s does not match its partial (ciphertext %d)", protocol.ErrSumMismatch, s.GetNodeId(), j)
			}
		}
	}
	return err
}

// checkCommit checks node id's commitment as it arrives
// (protocol.OpenCommit, the check every decryptor runs again, then the
// digest): a commitment that does not verify, or commits to another set, is
// id's failure, found here, rather than every decryptor's refusal to
// PREPARE, which would spend the decryptor sets one after the other.
func (c *Coordinator) checkCommit(qid string, e *epoch, id string, s *typesv1.Signed, digest []byte) error {
	m := e.member(id)
	if m.Cert == nil {
		return fmt.Errorf("not a member of epoch %d", e.ID)
	}
	// No replay cache: the decryptors check the same commitment again.
	got, err := protocol.OpenCommit(m.Cert.PublicKey, s, qid, e.ID, id, protocol.Window{Now: c.cfg.Now(), MaxSkew: c.cfg.MaxSkew})
	if err != nil {
		return fmt.Errorf("commitment rejected: %w", err)
	}
	if !bytes.Equal(got, digest) {
		return errors.New("commitment rejected: it commits to another set of partials")
	}
	return nil
}

// keySwitch has T members switch sum, the sum of the committed partials in
// base (query id, epoch, spec, partials, target key and commitments are
// set), to the target key (keySwitchShares), and combines their shares.
// It also returns the decryptors' signed shares (for the release record).
//
// judge checks the partials a decryptor refuses (judgeRefusals); nil for
// a compact release, whose partials were checked as they arrived.
func (c *Coordinator) keySwitch(ctx context.Context, q *query, e *epoch, base *nodev1.KeySwitchRequest, sum []*homomorphic.Ciphertext, senders []string, judge *partialJudge) ([]*homomorphic.Ciphertext, []*nodev1.NodeSigned, [][][]byte, error) {
	shares, signed, err := c.keySwitchShares(ctx, q, e, base, sum, senders, judge)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: release: %v; nothing was decrypted", ErrQueryFailed, err)
	}
	out, err := collective.KeySwitchCombineAll(c.params, sum, shares)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: combine key-switch shares: %v", ErrQueryFailed, err)
	}
	return out, signed, shares, nil
}

// keySwitchShares has T members make their key-switch shares of the sum of
// the committed partials in base (the decryptors are chosen here) and
// returns their shares ([decryptor][ciphertext]) and their signed shares
// (which name them).
//
// Decryptors are taken among the members in this order: those whose last
// readiness report says they can decrypt in this epoch, then those that did
// not report; senders of partials before other members; a member that
// reported it cannot is not asked. Each attempt is two steps (node/release.go):
// every decryptor of the set first PREPAREs its share, and only when all of
// them have does the coordinator ask them to RELEASE it. A decryptor that
// fails, for any reason, is replaced and the next T-subset tried, over the
// very same request: the same partials, commitments, spec and target key, so
// a retry can never release another partial set (the nodes' commitments
// would refuse it anyway). A member that was asked to release for a set that
// did not complete may have handed out its share and helps with no other
// set, so it is not asked again. The attempts stop when fewer than T members
// are left or ctx ends; nothing is decrypted then.
//
// A decryptor that refuses a partial (a PartialRefusal) has the partial
// checked by the coordinator (judgeRefusals): a partial that fails ends the
// attempts naming its sender, as every honest decryptor would refuse it.
func (c *Coordinator) keySwitchShares(ctx context.Context, q *query, e *epoch, base *nodev1.KeySwitchRequest, sum []*homomorphic.Ciphertext, senders []string, judge *partialJudge) ([][][]byte, []*nodev1.NodeSigned, error) {
	committee := e.committee()
	target, err := homomorphic.UnmarshalPublicKey(c.params, base.GetTargetPublicKey())
	if err != nil {
		return nil, nil, err
	}
	need := min(e.Threshold, len(committee))
	candidates := c.decryptorCandidates(e, senders)
	failed := map[string]string{}
	spent := map[string]bool{}
	want := sharesOf(q.id, e.ID, base)
	for attempt := 1; ; attempt++ {
		var set []string
		for _, id := range candidates {
			if failed[id] == "" && !spent[id] && len(set) < need {
				set = append(set, id)
			}
		}
		if len(set) < need || ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%d decryptors needed, %d of the %d committee members were left after %d attempt(s). %s",
				need, len(set), len(committee), attempt-1, describeDecryptorFailures(e, candidates, failed, spent))
		}
		sort.Strings(set)

		errs := c.prepare(ctx, set, base)
		if err := c.judgeRefusals(ctx, q, set, errs, judge); err != nil {
			c.metrics.releaseAttempts.WithLabelValues("partial_refused").Inc()
			return nil, nil, err
		}
		if c.noteDecryptorFailures(q, attempt, set, errs, failed, "prepare") {
			c.metrics.releaseAttempts.WithLabelValues("prepare_failed").Inc()
			continue
		}

		shares, signed, errs := c.releaseShares(ctx, q, e, set, base, sum, target, want)
		for _, id := range set {
			spent[id] = true
		}
		if c.noteDecryptorFailures(q, attempt, set, errs, failed, "release") {
			c.metrics.releaseAttempts.WithLabelValues("release_failed").Inc()
			continue
		}
		c.metrics.releaseAttempts.WithLabelValues("released").Inc()
		for _, id := range set {
			q.node(id, "decrypted", "", 0)
		}
		return shares, signed, nil
	}
}

// prepare asks every decryptor of set to PREPARE its key-switch share of
// base (the node checks everything and keeps its share) and returns each
// one's error, in the order of set.
func (c *Coordinator) prepare(ctx context.Context, set []string, base *nodev1.KeySwitchRequest) []error {
	// A shallow copy: the sum, the partials' headers and the commitments
	// are shared with base, which nothing writes once built.
	prep := &nodev1.KeySwitchRequest{QueryId: base.GetQueryId(), Epoch: base.GetEpoch(), Spec: base.GetSpec(), Partials: base.GetPartials(), Sum: base.GetSum(),
		TargetPublicKey: base.GetTargetPublicKey(), Commits: base.GetCommits(),
		Decryptors: set, Phase: nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE}
	return c.fanoutEach(ctx, set, func(ctx context.Context, _ int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, decryptorTimeout)
		defer cancel()
		if _, err := cl.KeySwitch(cctx, prep); err != nil {
			return callError(err)
		}
		return nil
	})
}

// releaseShares asks every decryptor of set, which all prepared, to RELEASE
// its key-switch share of base, and opens each share
// (protocol.OpenKeySwitchRelease: one share per ciphertext of the sum, cts,
// made for this partial set, sum and target key).
// It returns the shares ([decryptor][ciphertext]), the signed shares and
// each decryptor's error, in the order of set.
func (c *Coordinator) releaseShares(ctx context.Context, q *query, e *epoch, set []string, base *nodev1.KeySwitchRequest, sum []*homomorphic.Ciphertext, target *homomorphic.PublicKey, want shareDigests) ([][][]byte, []*nodev1.NodeSigned, []error) {
	cts := len(sum)
	rel := &nodev1.KeySwitchRequest{QueryId: base.GetQueryId(), Epoch: base.GetEpoch(), TargetPublicKey: base.GetTargetPublicKey(),
		Decryptors: set, Phase: nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE}
	shares := make([][][]byte, len(set))
	signed := make([]*nodev1.NodeSigned, len(set))
	errs := c.fanoutEach(ctx, set, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, decryptorTimeout)
		defer cancel()
		resp, err := cl.KeySwitch(cctx, rel)
		if err != nil {
			return callError(err)
		}
		sh, err := protocol.OpenKeySwitchRelease(e.member(id).Cert.PublicKey, resp.GetShare(), q.id, e.ID, id, c.window(), cts, want.commit, want.sum, want.target)
		if err != nil {
			return fmt.Errorf("key-switch share: %w", err)
		}
		if err := c.checkShareProofs(e, q.id, id, want, sum, target, sh, resp.GetProofs()); err != nil {
			c.record(ctx, c.cfg.Identity.Name(), "release.share_proof_failed", q.id, map[string]any{"node": id, "reason": err.Error()})
			return err
		}
		shares[i] = sh
		signed[i] = &nodev1.NodeSigned{NodeId: id, Signed: resp.GetShare()}
		q.addUpload(id, proto.Size(resp))
		return nil
	})
	return shares, signed, errs
}

// checkShareProofs verifies the proofs that came with the shares of
// decryptor id, against its CKG share, in an epoch whose decryptors
// key-switch with their additive CKG secrets (threshold = committee) and
// whose ceremony inputs are stored: a node of a version that proved its
// shares as it sent them. Shares sent without proofs are proven on demand
// when the release's total is refused (nameUnprovenShares).
func (c *Coordinator) checkShareProofs(e *epoch, qid, id string, want shareDigests, sum []*homomorphic.Ciphertext, target *homomorphic.PublicKey, shares, proofs [][]byte) error {
	if e.Threshold < len(e.committee()) || e.CKGShares == nil || len(proofs) == 0 {
		return nil
	}
	ckg := e.CKGShares[id]
	if ckg == nil {
		return fmt.Errorf("key-switch share: no CKG share of %s in epoch %d to check its proofs against", id, e.ID)
	}
	if len(proofs) != len(shares) {
		return fmt.Errorf("key-switch share: %d proofs for %d shares", len(proofs), len(shares))
	}
	for j, ct := range sum {
		ctx := protocol.KeySwitchProofContext(qid, e.ID, id, want.commit, want.target, j)
		if err := collective.VerifyKeySwitchShare(c.params, target, ct, e.CRS, ckg, shares[j], proofs[j], ctx); err != nil {
			return fmt.Errorf("key-switch share of ciphertext %d: %w", j, err)
		}
	}
	return nil
}

// shareDigests are what a decryptor's share of a release must say it was
// made for (protocol.OpenKeySwitchRelease): the partial set, the sum (a
// compact release) and the target key, computed once per release.
type shareDigests struct{ commit, sum, target []byte }

func sharesOf(qid string, epoch uint64, base *nodev1.KeySwitchRequest) shareDigests {
	d := shareDigests{commit: protocol.CommitDigest(qid, epoch, base.GetSpec(), base.GetPartials()), target: protocol.TargetKeyDigest(base.GetTargetPublicKey())}
	if len(base.GetSum()) > 0 {
		d.sum = protocol.SumDigest(base.GetSum())
	}
	return d
}

// decryptorCandidates orders the committee members for release (see
// keySwitchShares). Members that reported they cannot decrypt in e are left
// out.
func (c *Coordinator) decryptorCandidates(e *epoch, senders []string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	type cand struct {
		id         string
		rank, sent int
	}
	var cs []cand
	for _, m := range e.committee() {
		rank := 1 // no trusted report
		if n, ok := c.reg[m.ID]; ok && c.fresh(n.Health) {
			_, problem := c.memberProblemLocked(e, m.ID)
			switch {
			case problem == "":
				rank = 0
			case n.Health.Epoch > e.ID:
				// A query of the epoch a new one replaced: the member
				// still decrypts in it for node.PreviousEpochGrace, and
				// its report is about the new one.
			default:
				continue
			}
		} else if ok && n.Excluded != nil {
			continue
		}
		cs = append(cs, cand{m.ID, rank, 1 - btoi(slices.Contains(senders, m.ID))})
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if a.sent != b.sent {
			return a.sent < b.sent
		}
		return a.id < b.id
	})
	out := make([]string, len(cs))
	for i, x := range cs {
		out[i] = x.id
	}
	return out
}

// noteDecryptorFailures records the decryptors of set whose step failed and
// reports whether any did.
func (c *Coordinator) noteDecryptorFailures(q *query, attempt int, set []string, errs []error, failed map[string]string, step string) bool {
	some := false
	for i, err := range errs {
		if err == nil {
			continue
		}
		some = true
		failed[set[i]] = fmt.Sprintf("%s: %v", step, err)
		q.note(set[i], fmt.Sprintf("release attempt %d (%s): %v", attempt, step, err))
		c.recheck(set[i])
		c.log.Warn("decryptor failed; trying another set", "query_id", q.id, "attempt", attempt, "node", set[i], "step", step, "err", err)
	}
	return some
}

func describeDecryptorFailures(e *epoch, candidates []string, failed map[string]string, spent map[string]bool) string {
	var b strings.Builder
	b.WriteString("Decryptors that failed: ")
	n := 0
	for _, m := range e.committee() {
		why, ok := failed[m.ID]
		switch {
		case ok:
		case spent[m.ID]:
			why, ok = "released its share for a decryptor set that did not complete", true
		case !slices.Contains(candidates, m.ID):
			why, ok = "reported it cannot decrypt in this key epoch", true
		}
		if !ok {
			continue
		}
		if n > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", m.ID, why)
		n++
	}
	if n == 0 {
		return ""
	}
	return b.String()
}

// nameUnprovenShares runs when the total of a release is refused
// (release). The decryptors' key-switch shares go out unproven: it asks
// every decryptor of the release to prove the shares it released
// (ProveKeySwitch: it makes them again from the sum and target key sent
// back, which it checks against its release record) and checks each proof
// against the decryptor's CKG share (threshold = committee) or threshold
// image (threshold below the committee; docs/crypto.md, "Proofs of
// key-switch shares", "Checked dealing"). It returns an error naming the
// decryptors whose shares fail or that cannot prove them, nil when every
// share is proven (the fault is then a member's limbs, as the refusal
// says) or the epoch has nothing to prove shares against (stored by a
// version before the proofs, a committee too large for the images). In a
// committee too large for some members' images (the larger points), those
// decryptors are not asked and cannot be named.
func (c *Coordinator) nameUnprovenShares(ctx context.Context, q *query, e *epoch, base *nodev1.KeySwitchRequest, sum []*homomorphic.Ciphertext, signed []*nodev1.NodeSigned, opened [][][]byte) error {
	threshold := e.Threshold < len(e.committee())
	if (threshold && e.ThresholdImages == nil) || (!threshold && e.CKGShares == nil) || len(signed) == 0 || len(opened) != len(signed) {
		return nil
	}
	target, err := homomorphic.UnmarshalPublicKey(c.params, base.GetTargetPublicKey())
	if err != nil {
		return nil
	}
	want := sharesOf(q.id, e.ID, base)
	// The decryptors make their shares again from the sum and the target
	// key, which they check against their release records.
	ask := &nodev1.ProveKeySwitchRequest{QueryId: q.id, Epoch: e.ID, TargetPublicKey: base.GetTargetPublicKey()}
	for _, ct := range sum {
		b, err := ct.MarshalBinary()
		if err != nil {
			return nil
		}
		ask.Sum = append(ask.Sum, b)
	}
	ids := make([]string, len(signed))
	active := make([]uint64, len(signed))
	for i, s := range signed {
		ids[i] = s.GetNodeId()
		active[i] = e.member(ids[i]).Point
	}
	problems := make([]string, len(signed))
	unprovable := make([]bool, len(signed))
	c.fanoutEach(ctx, ids, func(ctx context.Context, i int, id string) error {
		shares := opened[i] // as opened and checked on arrival (OpenKeySwitchRelease)
		if threshold && e.ThresholdImages[id] == nil {
			unprovable[i] = true // a point too large for its proofs (ThresholdImagesWithin)
			return nil
		}
		cl, err := c.client(id)
		if err != nil {
			problems[i] = "could not be asked to prove its key-switch share: " + err.Error()
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, decryptorTimeout)
		defer cancel()
		resp, err := cl.ProveKeySwitch(cctx, ask)
		if err != nil {
			problems[i] = "did not prove its key-switch share: " + callError(err).Error()
			return nil
		}
		if len(resp.GetProofs()) != len(shares) || len(shares) != len(sum) {
			problems[i] = fmt.Sprintf("sent %d proofs for %d shares", len(resp.GetProofs()), len(shares))
			return nil
		}
		for j, ct := range sum {
			pctx := protocol.KeySwitchProofContext(q.id, e.ID, id, want.commit, want.target, j)
			var err error
			if threshold {
				err = collective.VerifyThresholdKeySwitchShare(c.params, target, ct, e.CRS, e.ThresholdImages[id], e.member(id).Point, active, shares[j], resp.GetProofs()[j], pctx)
			} else {
				err = collective.VerifyKeySwitchShare(c.params, target, ct, e.CRS, e.CKGShares[id], shares[j], resp.GetProofs()[j], pctx)
			}
			if err != nil {
				problems[i] = fmt.Sprintf("its key-switch share of ciphertext %d failed its proof: %v", j, err)
				return nil
			}
		}
		return nil
	})
	var named []string
	for i, p := range problems {
		if p == "" {
			continue
		}
		named = append(named, ids[i]+": "+p)
		c.record(ctx, c.cfg.Identity.Name(), "release.share_proof_failed", q.id, map[string]any{"node": ids[i], "reason": p, "asked_after_refused_total": true})
	}
	if len(named) == 0 {
		var proven, unchecked []string
		for i, id := range ids {
			if unprovable[i] {
				unchecked = append(unchecked, id)
			} else {
				proven = append(proven, id)
			}
		}
		c.record(ctx, c.cfg.Identity.Name(), "release.shares_proven", q.id, map[string]any{"decryptors": proven, "unprovable": unchecked})
		return nil
	}
	return fmt.Errorf("%w: release: the total was refused, and asked to prove their key-switch shares: %s; nothing is released", ErrQueryFailed, strings.Join(named, "; "))
}
