package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The collect step of a query, the other side of the nodes' Evaluate: every
// member is asked to evaluate the query, and each partial is checked as it
// arrives (protocol.OpenPartial, the checks every decryptor runs again).

// partial is a member's checked partial.
type partial struct {
	node   string
	signed *typesv1.Signed
	cts    []*homomorphic.Ciphertext
	plain  []int64 // benchmark-only plaintext mode
	// version is the node's data version the partial was computed on.
	version string
	// commitments are the partial's range commitments, one per value: the
	// release checks the decrypted total against their sum.
	commitments []byte
	// ranges is what its range proof is checked against (checkRanges).
	ranges rangeproof.Item
	// proofs checks its proofs of encryption: nil when they were checked
	// as it arrived (a compact release, whose decryptors never see them);
	// in a full release the decryptors check them and the coordinator runs
	// proofs only for a partial a decryptor refuses (judgeRefusals).
	proofs func() error
}

// collect asks every member of e for its partial of q, waiting at most the
// query's deadline, and returns the partials that passed the checks, in
// node order. A member whose admin has not approved the query yet answers
// "pending" at once; the query then waits for it, asking again every
// ApprovalPoll, until q's approval wait ends (askApproved). It fails when
// fewer than min_nodes answered, or q was cancelled; it stops waiting for
// approvals as soon as min_nodes can no longer be reached (a denial, say).
func (c *Coordinator) collect(q *query, e *epoch, who Analyst) ([]partial, error) {
	m := int(q.st.Spec.GetMinNodes())
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_COLLECTING })
	start := time.Now()
	// Cancelled when min_nodes can no longer be reached: nothing more is
	// worth waiting for approvals. The first call to every member still
	// runs to its answer (bounded by the deadline), so that every node
	// decides, and audits, a query it was asked.
	hopeCtx, giveUp := context.WithCancel(q.ctx)
	defer giveUp()
	collectCtx, cancelCollect := context.WithTimeout(q.ctx, q.deadline)
	defer cancelCollect()
	shape := protocol.PartialShapeOf(q.st.Spec, q.plan, c.params)
	shape.Plaintext = c.cfg.BenchmarkPlaintext
	var mu sync.Mutex
	var parts []partial
	failures := map[string]string{}
	var wg sync.WaitGroup
	for _, mem := range e.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			pt, err := c.collectOne(hopeCtx, collectCtx, q, e, mem, who, shape)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ae *approvalError
				switch {
				case errors.As(err, &ae):
				case errors.Is(collectCtx.Err(), context.DeadlineExceeded) && hopeCtx.Err() == nil:
					err = fmt.Errorf("no answer within the query's deadline of %s (%v)", q.deadline, err)
				}
				c.metrics.partials.WithLabelValues("failed").Inc()
				failures[mem.ID] = err.Error()
				q.node(mem.ID, "failed", err.Error(), time.Since(t0))
				if len(e.Members)-len(failures) < m {
					giveUp()
				}
				return
			}
			c.metrics.partials.WithLabelValues("accepted").Inc()
			parts = append(parts, pt)
			q.node(mem.ID, "answered", "", time.Since(t0))
		}()
	}
	wg.Wait()
	q.phase("collect", start)
	if q.ctx.Err() != nil {
		return nil, fmt.Errorf("%w before release; nothing was decrypted", ErrQueryCanceled)
	}
	if len(parts) < m {
		return nil, fmt.Errorf("%w: %s%d of %d nodes answered, min_nodes is %d; nothing was decrypted. %s",
			ErrQueryFailed, approvalSummary(failures), len(parts), len(e.Members), m, describeFailures(failures))
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].node < parts[j].node })
	start = time.Now()
	if err := c.reveal(q, e, parts, shape); err != nil {
		return nil, err
	}
	q.phase("reveal", start)
	return parts, nil
}

// reveal fixes the partial set of q (the senders of parts, each with the
// signed header it answered) and has every sender reveal its partial in it
// (revealSet); each must pass every check of a partial (verifyPartial),
// and completes its entry of parts.
func (c *Coordinator) reveal(q *query, e *epoch, parts []partial, shape protocol.PartialShape) error {
	set := make([]*nodev1.NodeSigned, len(parts))
	for i, pt := range parts {
		set[i] = &nodev1.NodeSigned{NodeId: pt.node, Signed: pt.signed}
	}
	_, err := c.revealSet(q, e, set, func(i int, s *typesv1.Signed) error {
		full, err := c.verifyPartial(q.id, q.st.Spec, e, e.member(parts[i].node), s, shape)
		if err == nil {
			parts[i] = full
		}
		return err
	})
	if err != nil {
		return err
	}
	return checkRanges(parts, c.cfg.SkipRangeProofs)
}

// checkRanges verifies the range proofs of parts, all at once
// (rangeproof.VerifyAll), and fails the query naming every member whose
// proof fails, or who sent none unless skip (Config.SkipRangeProofs): the
// set is fixed, so it cannot be released without them.
func checkRanges(parts []partial, skip bool) error {
	var items []rangeproof.Item
	var from, failed, why []string
	for _, pt := range parts {
		if len(pt.cts) > 0 { // not a benchmark plaintext partial
			items = append(items, pt.ranges)
			from = append(from, pt.node)
		}
	}
	for i, err := range protocol.CheckRangeProofs(items, skip) {
		if err != nil {
			failed = append(failed, from[i])
			why = append(why, fmt.Sprintf("%s: partial rejected: %v", from[i], err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s revealed a partial whose values are not proven within the plan's bounds, so the set cannot be released; nothing was decrypted. %s",
			ErrQueryFailed, strings.Join(failed, ", "), strings.Join(why, "; "))
	}
	return nil
}

// revealSet asks every sender in set (signed headers, as Evaluate answered)
// for its whole partial within that set (Reveal), concurrently. Each must
// be the partial whose header is in the set and pass check; set[i] is then
// replaced by it, and the senders' commitments to the set are returned.
// The senders have recorded the set as the one their partials may be
// released in, so one that does not reveal fails the query: the set cannot
// be released or mixed without its partial under this query id.
func (c *Coordinator) revealSet(q *query, e *epoch, set []*nodev1.NodeSigned, check func(i int, s *typesv1.Signed) error) ([]*nodev1.NodeSigned, error) {
	ctx, cancel := context.WithTimeout(q.ctx, releaseTimeout)
	defer cancel()
	headers := slices.Clone(set)
	ids := make([]string, len(set))
	for i, h := range headers {
		ids[i] = h.GetNodeId()
	}
	commits := make([]*nodev1.NodeSigned, len(set))
	errs := c.fanoutEach(ctx, ids, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		resp, err := cl.Reveal(ctx, &nodev1.RevealRequest{QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Partials: headers})
		if err != nil {
			return callError(err)
		}
		q.addUpload(id, proto.Size(resp))
		s, h := resp.GetPartial(), headers[i].GetSigned()
		if !bytes.Equal(s.GetHeader(), h.GetHeader()) || !bytes.Equal(s.GetSignature(), h.GetSignature()) {
			return errors.New("partial rejected: it is not the partial whose signed header the node answered with")
		}
		if err := check(i, s); err != nil {
			return err
		}
		set[i] = &nodev1.NodeSigned{NodeId: id, Signed: s}
		commits[i] = &nodev1.NodeSigned{NodeId: id, Signed: resp.GetCommit()}
		return nil
	})
	if q.ctx.Err() != nil {
		return nil, fmt.Errorf("%w before release; nothing was decrypted", ErrQueryCanceled)
	}
	var failed, why []string
	for i, err := range errs {
		if err != nil {
			q.node(ids[i], "failed", "reveal: "+err.Error(), 0)
			failed, why = append(failed, ids[i]), append(why, ids[i]+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%w: %s did not reveal the partial committed to in the query's partial set, or revealed one that fails its checks, so the set cannot be released "+
			"(its other senders revealed for that set only); nothing was decrypted. %s", ErrQueryFailed, strings.Join(failed, ", "), strings.Join(why, "; "))
	}
	return commits, nil
}

// collectOne asks one member for its partial (askApproved: at most the
// deadline, or the approval wait while its admin decides) and checks it
// (verifyPartial).
func (c *Coordinator) collectOne(hopeCtx, collectCtx context.Context, q *query, e *epoch, mem epochMember, who Analyst, shape protocol.PartialShape) (partial, error) {
	cl, err := c.client(mem.ID)
	if err != nil {
		return partial{}, err
	}
	body := &nodev1.EvaluateBody{
		QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Analyst: who.Name, Role: who.Role,
		PlanFingerprint: q.plan.Fingerprint(), Series: q.series, AnalystSignature: q.signature,
	}
	if q.analysis != nil {
		body.Analysis = q.analysis(mem.ID)
	}
	resp, err := c.askApproved(hopeCtx, collectCtx, q, mem.ID, cl, body)
	if err != nil {
		return partial{}, err
	}
	q.addUpload(mem.ID, proto.Size(resp))
	return c.verifyCommitment(q.id, q.st.Spec, e, mem, resp.GetPartial())
}

// verifyCommitment checks the answer of a member to Evaluate: the signed
// header of its partial (protocol.OpenPartialCommitment: the signature by
// the member's certificate key, the binding to this query, epoch and node,
// and its time).
// The partial itself, and its remaining checks, come with Reveal.
func (c *Coordinator) verifyCommitment(qid string, spec *typesv1.QuerySpec, e *epoch, mem epochMember, s *typesv1.Signed) (partial, error) {
	if len(s.GetPayload()) > 0 {
		return partial{}, errors.New("partial rejected: the node sent its partial before the partial set was fixed (a node sends its signed header first)")
	}
	w := c.partialWindow(qid, spec)
	w.Seen = nil
	if err := protocol.OpenPartialCommitment(mem.Cert.PublicKey, s, qid, e.ID, mem.ID, w); err != nil {
		return partial{}, fmt.Errorf("partial rejected: %w", err)
	}
	return partial{node: mem.ID, signed: protocol.Commitment(s)}, nil
}

// approvalError is a node's admin denying a query ("denied at NODE ..."),
// or the query's approval wait ending before the admin decided ("never
// approved at NODE ..."; approvalSummary reads these openings).
type approvalError struct{ text string }

func (e *approvalError) Error() string { return e.text }

// askApproved sends node id the Evaluate request of body, signed afresh for
// every call. The first call is bounded by collectCtx (the query's
// deadline). While the node answers "pending" (its admin has not decided),
// the query waits for it: the node is listed in the status's
// awaiting_approval, and asked again every ApprovalPoll (each call bounded
// by the deadline) until it answers, refuses, or q's approval wait ends
// (the deadline when it has none) or hopeCtx ends. A denial and the end of
// the wait come back as *approvalError.
func (c *Coordinator) askApproved(hopeCtx, collectCtx context.Context, q *query, id string, cl nodev1.NodeServiceClient, body *nodev1.EvaluateBody) (*nodev1.EvaluateResponse, error) {
	call := func(ctx context.Context) (*nodev1.EvaluateResponse, error) {
		req, err := protocol.SealEvaluate(c.cfg.Identity.Key, id, body, c.cfg.Now())
		if err != nil {
			return nil, err
		}
		resp, err := cl.Evaluate(ctx, req)
		if err != nil {
			err = callError(err)
			var re *rpc.Error
			if errors.As(err, &re) && slices.Contains(re.Reasons(), "node.denied") {
				return nil, &approvalError{text: fmt.Sprintf("denied at %s (%v)", id, err)}
			}
			if errors.As(err, &re) && slices.Contains(re.Reasons(), "node.approval_expired") {
				return nil, &approvalError{text: fmt.Sprintf("never approved at %s (%v); nothing was charged there", id, err)}
			}
			return nil, err
		}
		return resp, nil
	}
	resp, err := call(collectCtx)
	if err != nil || resp.GetApprovalPending() == nil {
		return resp, err
	}
	since := time.UnixMilli(resp.GetApprovalPending().GetSinceUnixMs())
	waitCtx, stop := collectCtx, func() {}
	if !q.approvalUntil.IsZero() {
		waitCtx, stop = context.WithDeadline(hopeCtx, q.approvalUntil)
	}
	defer stop()
	q.awaiting(id, since, true)
	defer q.awaiting(id, since, false)
	if err := c.saveWaiting(q); err != nil {
		c.log.Warn("could not record that a query waits for approval; a restart of the coordinator will end it", "query_id", q.id, "node", id, "err", err)
	}
	c.log.Info("query waits for a node admin's approval", "query_id", q.id, "node", id, "since", since)
	tick := time.NewTicker(c.cfg.ApprovalPoll)
	defer tick.Stop()
	for {
		select {
		case <-waitCtx.Done():
			if hopeCtx.Err() != nil {
				return nil, fmt.Errorf("stopped waiting for approval at %s: %w", id, context.Cause(hopeCtx))
			}
			wait := time.Duration(q.st.GetSpec().GetApprovalWaitSeconds()) * time.Second
			if wait == 0 {
				wait = q.deadline
			}
			return nil, &approvalError{text: fmt.Sprintf("never approved at %s: its admin did not decide within the query's approval wait of %s "+
				"(waiting since %s); nothing was charged there", id, wait, since.UTC().Format(time.RFC3339))}
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(waitCtx, q.deadline)
		resp, err := call(ctx)
		cancel()
		if err != nil && waitCtx.Err() == nil && !isApproval(err) && transient(err) {
			continue // a node restarting or a network blip: ask again at the next tick
		}
		if err != nil || resp.GetApprovalPending() == nil {
			return resp, err
		}
	}
}

func isApproval(err error) bool {
	var ae *approvalError
	return errors.As(err, &ae)
}

// transient reports whether a failed call to a node that is waiting for
// its admin is worth repeating: the node was unreachable or slow, not
// refusing.
func transient(err error) bool {
	switch rpc.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// approvalSummary opens the error of a query that waited for approvals:
// where it was denied and where it was never approved ("" when neither).
func approvalSummary(failures map[string]string) string {
	var denied, never []string
	for id, f := range failures {
		switch {
		case strings.HasPrefix(f, "denied at "):
			denied = append(denied, id)
		case strings.HasPrefix(f, "never approved at "):
			never = append(never, id)
		}
	}
	sort.Strings(denied)
	sort.Strings(never)
	var b strings.Builder
	if len(denied) > 0 {
		fmt.Fprintf(&b, "denied at %s; ", strings.Join(denied, ", "))
	}
	if len(never) > 0 {
		fmt.Fprintf(&b, "the approval wait ended before %s approved; ", strings.Join(never, ", "))
	}
	return b.String()
}

// partialWindow is the window of the partials of query qid with spec: a
// series interval's partial is replayed to every retry
// (protocol.SeriesPartialAge), so it is neither fresh nor unseen; a query
// resumed after a restart of the coordinator gets the partials it had
// before again, as old as its approval wait (protocol.PartialAge).
func (c *Coordinator) partialWindow(qid string, spec *typesv1.QuerySpec) protocol.Window {
	if protocol.IsSeriesQuery(qid) {
		return protocol.Window{Now: c.cfg.Now(), MaxSkew: protocol.SeriesPartialAge}
	}
	w := c.window()
	w.MaxSkew = protocol.PartialAge(spec, w.MaxSkew)
	return w
}

// verifyPartial runs the checks of a partial (protocol.OpenPartial):
// signature by the member's certificate key, binding to this query, epoch
// and node, freshness, not seen before, the spec it was noised for, the
// plan's shape, and that it carries proofs of encryption. Its range proof
// is checked with the others' (checkRanges). Its proofs of encryption are
// checked here only for a compact release, whose decryptors see the sum
// and not the proofs; in a full release every decryptor checks them before
// it key-switches, and the coordinator checks a partial's only when a
// decryptor refuses it (judgeRefusals), to name its sender or, when they
// verify, the decryptor (docs/crypto.md, "Who checks the proofs of
// encryption").
func (c *Coordinator) verifyPartial(qid string, spec *typesv1.QuerySpec, e *epoch, mem epochMember, s *typesv1.Signed, shape protocol.PartialShape) (partial, error) {
	pt, err := protocol.OpenPartial(mem.Cert.PublicKey, s, qid, e.ID, mem.ID, c.partialWindow(qid, spec), shape)
	if err != nil {
		return partial{}, fmt.Errorf("partial rejected: %w", err)
	}
	proofs := func() error {
		return protocol.CheckEncryptionProofs(c.params, e.PublicKey, pt, qid, e.ID, mem.ID, shape.SpecDigest, c.cfg.CompactRelease)
	}
	switch {
	case c.cfg.CompactRelease:
		if err := proofs(); err != nil {
			return partial{}, fmt.Errorf("partial rejected: %w", err)
		}
		proofs = nil
	case len(pt.Ciphertexts) > 0 && len(pt.Proofs) == 0:
		// No decryptor of a full release takes it (unless its policy
		// accepts unproven partials, which this coordinator does not).
		return partial{}, fmt.Errorf("partial rejected: %w", protocol.ErrUnproven)
	}
	return partial{node: mem.ID, signed: s, cts: pt.Ciphertexts, plain: pt.Plaintext, version: pt.DataVersion, commitments: pt.RangeCommitments,
		ranges: protocol.RangeProofItem(pt, qid, e.ID, mem.ID, shape), proofs: proofs}, nil
}

// window is how the coordinator judges the time of the messages it
// receives: its clock, MaxSkew, and its replay cache.
func (c *Coordinator) window() protocol.Window {
	return protocol.Window{Now: c.cfg.Now(), MaxSkew: c.cfg.MaxSkew, Seen: c.replay}
}

func describeFailures(f map[string]string) string {
	if len(f) == 0 {
		return ""
	}
	ids := make([]string, 0, len(f))
	for id := range f {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	b.WriteString("Nodes that did not answer: ")
	for i, id := range ids {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", id, f[id])
	}
	return b.String()
}
