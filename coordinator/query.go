package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// Network defaults for the privacy parameters of a query (an analyst's
// client states them in the query it signs: signedquery.WithDefaults).
const (
	DefaultEpsilon = signedquery.DefaultEpsilon
	DefaultDelta   = signedquery.DefaultDelta
)

// query is one analyst query and its progress.
type query struct {
	id   string
	plan *plan.Plan
	// link is set for a query across linked agencies (executeLinked).
	link *nodev1.LinkSpec
	// series is set for a query of a standing series.
	series *nodev1.SeriesInterval
	// analysis is set for a round of an analyst-signed analysis: what
	// each node is sent of it (runAs.round).
	analysis func(nodeID string) *nodev1.AnalysisRound
	ctx      context.Context
	cancel   context.CancelFunc

	mu       sync.Mutex
	st       *coordinatorv1.QueryStatus
	changed  chan struct{} // closed at every change, then replaced
	started  time.Time
	deadline time.Duration // bounds the wait for partials
	// versions is each partial's data version, set once partials are in
	// (nil when a node could not say): the release is kept for reuse.
	versions map[string]string
	// approvalUntil bounds the wait for the admins of nodes that require
	// approval (zero: the deadline bounds it too). See collect.go.
	approvalUntil time.Time
	// role is the analyst's; resumable says the query may resume after a
	// restart of the coordinator; waited, that it has waited for an
	// approval (under mu). See waiting.go.
	role      string
	resumable bool
	waited    bool
	// signature is the analyst's signed request the query runs under (its
	// id is derived from it), sent to every node; nil for a query no
	// analyst's client signed.
	signature *typesv1.AnalystSignature
}

// releaseTimeout bounds the commitment and key-switch rounds of a release,
// decryptorTimeout one decryptor's answer to one step of one attempt (what
// a whole one-step key switch had before releases were retried: a node
// under load answers as late as it did then).
const (
	releaseTimeout   = 3 * time.Minute
	decryptorTimeout = 60 * time.Second
)

// snapshot returns a copy of the status and a channel closed at the next change.
func (q *query) snapshot() (*coordinatorv1.QueryStatus, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return proto.Clone(q.st).(*coordinatorv1.QueryStatus), q.changed
}

func (q *query) update(fn func(st *coordinatorv1.QueryStatus)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fn(q.st)
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *query) phase(name string, start time.Time) {
	q.update(func(st *coordinatorv1.QueryStatus) {
		st.Phases = append(st.Phases, &coordinatorv1.Phase{Name: name, ElapsedMs: ms(time.Since(start))})
	})
}

// node sets a node's progress; elapsed (how long its partial or failure
// took; operators only, see StatusFor) is kept when 0 is given, so that a
// decryptor's "decrypted" keeps the time of its partial.
func (q *query) node(id, status, errText string, elapsed time.Duration) {
	q.update(func(st *coordinatorv1.QueryStatus) {
		for _, n := range st.Nodes {
			if n.NodeId == id {
				n.Status, n.Error = status, errText
				if elapsed > 0 {
					n.ElapsedMs = ms(elapsed)
				}
			}
		}
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func newQueryID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "q-" + hex.EncodeToString(b)
}

// Analyst is the authenticated person a query runs for.
type Analyst struct {
	Name string
	Role string
}

// Submit plans a query for analyst and starts it. It returns as soon as the
// query is planned; errors in the query (syntax, privacy parameters, a sum
// that could overflow) are returned here.
//
// A question the analyst already had released, while no node's data changed
// since, is answered from that release and charged nothing
// (QueryStatus.reused_from); SubmitWith with Fresh asks the nodes again.
func (c *Coordinator) Submit(ctx context.Context, who Analyst, spec *typesv1.QuerySpec, deadline time.Duration) (*coordinatorv1.QueryStatus, error) {
	return c.SubmitWith(ctx, who, spec, SubmitOptions{Deadline: deadline})
}

// SubmitOptions are a caller's choices for one query.
type SubmitOptions struct {
	// Deadline bounds the wait for partials. Defaults to the coordinator's.
	Deadline time.Duration
	// Fresh asks the nodes again, at full price, even when the same
	// question was released before.
	Fresh bool
	// Signature is the query as the analyst's client signed it
	// (signedquery), optional. It must verify, be by the caller (the name
	// and role of who), made for this coordinator and, when spec is given,
	// be for spec (nil spec: the signed one); the query runs under the id
	// derived from it and every node verifies it again.
	Signature *typesv1.AnalystSignature
}

// SubmitWith is Submit with options.
func (c *Coordinator) SubmitWith(ctx context.Context, who Analyst, spec *typesv1.QuerySpec, o SubmitOptions) (*coordinatorv1.QueryStatus, error) {
	if o.Signature == nil {
		return c.submit(ctx, who, spec, o.Deadline, runAs{reuse: !o.Fresh})
	}
	signed, err := c.openSignature(who, spec, o.Signature)
	if err != nil {
		return nil, err
	}
	return c.submit(ctx, who, signed.Spec, o.Deadline, runAs{fixedID: signed.QueryID, reuse: !o.Fresh, sig: o.Signature})
}

// openSignature verifies an analyst's signed request at submission (the
// nodes verify it again): by the network CA's certificate of the caller
// who, for this coordinator, fresh, and for spec when spec is given.
func (c *Coordinator) openSignature(who Analyst, spec *typesv1.QuerySpec, sig *typesv1.AnalystSignature) (*signedquery.Request, error) {
	r, err := signedquery.Open(c.cfg.Identity.CA, sig, c.cfg.Identity.Name(), c.cfg.Now(), c.cfg.MaxSkew)
	if err != nil {
		return nil, err
	}
	if r.Name != who.Name || string(r.Role) != who.Role {
		return nil, fmt.Errorf("%w: the query is signed by %s (%s), the caller is %s (%s)", signedquery.ErrInvalid, r.Name, r.Role, who.Name, who.Role)
	}
	if spec != nil && !proto.Equal(spec, r.Spec) {
		return nil, fmt.Errorf("%w: the submitted spec is not the signed one", signedquery.ErrInvalid)
	}
	return r, nil
}

// settle settles a query's spec in epoch e (defaults, the epoch's
// threshold, the encoding range) and plans it, as Submit and Explain do:
// the spec as it will run, its plan and, for a query across linked
// agencies, who takes part.
func (c *Coordinator) settle(spec *typesv1.QuerySpec, e *epoch, series *nodev1.SeriesInterval) (*typesv1.QuerySpec, *plan.Plan, *nodev1.LinkSpec, error) {
	spec = proto.Clone(spec).(*typesv1.QuerySpec)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 && spec.Mechanism != typesv1.Mechanism_MECHANISM_LAPLACE {
		spec.Delta = DefaultDelta
	}
	if spec.MinNodes == 0 {
		spec.MinNodes = int32(max(c.cfg.MinNodes, e.Threshold))
	}
	if int(spec.MinNodes) > len(e.Members) {
		return nil, nil, nil, fmt.Errorf("%w: min_nodes %d exceeds the %d members of key epoch %d", ErrBadRequest, spec.MinNodes, len(e.Members), e.ID)
	}
	if spec.Threshold != 0 && int(spec.Threshold) != e.Threshold {
		return nil, nil, nil, fmt.Errorf("%w: threshold is %d for key epoch %d; it is not set per query", ErrBadRequest, e.Threshold, e.ID)
	}
	spec.Threshold = int32(e.Threshold)
	if int(spec.MinNodes) < e.Threshold {
		return nil, nil, nil, fmt.Errorf("%w: min_nodes %d is below the decryption threshold %d", ErrBadRequest, spec.MinNodes, e.Threshold)
	}
	if err := c.settleApprovalWait(spec, series); err != nil {
		return nil, nil, nil, err
	}
	if spec.ReferenceDate == "" {
		spec.ReferenceDate = cdm.DateOf(c.cfg.Now()).String()
	}
	// The encoding range of one partial: what the epoch's members can sum
	// without wrapping. It is the network's, not the analyst's, to set.
	spec.PartialLimit = c.params.MaxAbs() / int64(len(e.Members))
	preq, err := planRequest(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := plan.Build(preq, c.cfg.Catalogue)
	if err != nil {
		return nil, nil, nil, err
	}
	var link *nodev1.LinkSpec
	if p.Link != nil && series != nil {
		return nil, nil, nil, fmt.Errorf("%w: a standing series cannot be a query across linked agencies", ErrBadRequest)
	}
	if p.Link != nil {
		// A query across linked agencies: who takes part and who holds
		// what, from the tables the nodes announce. The sensitivities
		// count the outer table's holders.
		if link, err = c.linkSpec(e, p); err != nil {
			return nil, nil, nil, err
		}
		holders := make([][]string, len(link.FilterHolders))
		for i, h := range link.FilterHolders {
			holders[i] = h.NodeIds
		}
		c.log.Info("linked query planned", "outer", p.Link.Outer, "outer_holders", link.OuterHolders,
			"filter_holders", holders, "participants", link.Participants, "stages", link.Stages)
		spec.LinkHolders = int32(len(link.OuterHolders))
		if preq, err = planRequest(spec); err != nil {
			return nil, nil, nil, err
		}
		if p, err = plan.Build(preq, c.cfg.Catalogue); err != nil {
			return nil, nil, nil, err
		}
	} else if err := protocol.CheckPlaintextRange(p, c.params, len(e.Members)); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return spec, p, link, nil
}

// runAs is how submit runs a query.
type runAs struct {
	// fixedID is the query id (empty: a fresh one).
	fixedID string
	// series is a standing series' interval the query releases, round
	// (for a round of a signed analysis) what each node is sent of the
	// analysis (each nil otherwise).
	series *nodev1.SeriesInterval
	round  func(nodeID string) *nodev1.AnalysisRound
	// reuse lets an earlier release of the same question answer it.
	reuse bool
	// sig is the analyst's signature the query runs under (nil: none;
	// otherwise fixedID is the id derived from it): the signed query, the
	// signed series of series or the signed analysis of round.
	sig *typesv1.AnalystSignature
}

// submit is Submit run as r says. A fixed id whose earlier run ended is
// run again under the same id (the nodes replay what they answered); one
// still running is refused.
func (c *Coordinator) submit(ctx context.Context, who Analyst, spec *typesv1.QuerySpec, deadline time.Duration, r runAs) (*coordinatorv1.QueryStatus, error) {
	fixedID, series, reuse, sig := r.fixedID, r.series, r.reuse, r.sig
	e, err := c.currentEpoch()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	signed := spec
	spec, p, link, err := c.settle(spec, e, series)
	if err != nil {
		return nil, err
	}
	if sig != nil && series == nil && r.round == nil {
		// What the nodes will check: refused here already, with the same
		// words, rather than at every node. (A series interval's signature
		// is the series', checked when it was created; an analysis round's
		// the analysis', checked when it started.)
		if err := signedquery.CheckSettled(signed, spec); err != nil {
			return nil, err
		}
	}
	if reuse && series == nil && r.round == nil && link == nil && !c.cfg.BenchmarkPlaintext {
		if from, why := c.earlierRelease(ctx, who, e, spec); from != nil {
			return c.reuseRelease(ctx, who, e, spec, from, start)
		} else if why != "" {
			c.log.Info("same question asked anew", "analyst", who.Name, "reason", why)
		}
	}
	if deadline <= 0 {
		deadline = c.cfg.Deadline
	}
	// ctx lives until the query ends (Cancel ends it early); the deadline
	// bounds only the wait for partials, so that a release can still run
	// after a slow node has used up the deadline.
	qctx, cancel := context.WithCancel(context.Background())
	id := fixedID
	if id == "" {
		id = newQueryID()
	}
	q := &query{
		id: id, plan: p, link: link, series: series, analysis: r.round, ctx: qctx, cancel: cancel, changed: make(chan struct{}), started: start, deadline: deadline,
		role: who.Role, resumable: series == nil && r.round == nil && link == nil, signature: sig,
		st: &coordinatorv1.QueryStatus{
			State: coordinatorv1.State_STATE_PLANNED, Spec: spec, Analyst: who.Name,
			Plan: p.Describe(), SubmittedUnixMs: c.cfg.Now().UnixMilli(), Epoch: e.ID,
		},
	}
	q.st.QueryId = q.id
	if w := time.Duration(spec.GetApprovalWaitSeconds()) * time.Second; w > 0 {
		q.approvalUntil = start.Add(w)
		q.st.ApprovalDeadlineUnixMs = c.cfg.Now().Add(w).UnixMilli()
	}
	for _, m := range e.Members {
		q.st.Nodes = append(q.st.Nodes, &coordinatorv1.NodeProgress{NodeId: m.ID, Status: "waiting"})
	}
	q.st.Phases = append(q.st.Phases, &coordinatorv1.Phase{Name: "plan", ElapsedMs: ms(time.Since(start))})
	if err := c.saveQuery(q.st); err != nil {
		cancel()
		return nil, err
	}
	c.record(ctx, who.Name, "query.submitted", q.id, map[string]any{"sql": spec.Sql, "epsilon": spec.Epsilon, "delta": spec.Delta, "min_nodes": spec.MinNodes, "role": who.Role})
	c.mu.Lock()
	if old, ok := c.queries[q.id]; ok {
		if st, _ := old.snapshot(); !terminal(st.State) {
			c.mu.Unlock()
			cancel()
			return nil, fmt.Errorf("%w: query %s is still running", ErrBadRequest, q.id)
		}
		c.order = slices.DeleteFunc(c.order, func(id string) bool { return id == q.id })
	}
	c.queries[q.id] = q
	c.order = append(c.order, q.id)
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.run(q, e, who)
	}()
	st, _ := q.snapshot()
	return st, nil
}

// settleApprovalWait fills in the network's default approval wait
// (Config.ApprovalWait) and refuses one above Config.MaxApprovalWait. A
// standing series' interval (series set) keeps the wait its spec derives
// (none: nodes check that spec field for field).
func (c *Coordinator) settleApprovalWait(spec *typesv1.QuerySpec, series *nodev1.SeriesInterval) error {
	if series != nil {
		return nil
	}
	secs := spec.GetApprovalWaitSeconds()
	if secs == 0 {
		spec.ApprovalWaitSeconds = int64(c.cfg.ApprovalWait / time.Second)
		return nil
	}
	maxSecs := int64(c.cfg.MaxApprovalWait / time.Second)
	if secs < 0 || secs > maxSecs {
		return fmt.Errorf("%w: approval wait of %ds: this network allows from 1s to %s (max_approval_wait)", ErrBadRequest, secs, c.cfg.MaxApprovalWait)
	}
	return nil
}

// planRequest is protocol.PlanRequest with the coordinator's error.
func planRequest(spec *typesv1.QuerySpec) (plan.Request, error) {
	r, err := protocol.PlanRequest(spec)
	if err != nil {
		return plan.Request{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return r, nil
}

// run drives a query to its end.
func (c *Coordinator) run(q *query, e *epoch, who Analyst) {
	res, err := c.execute(q, e, who)
	if c.leftWaiting(q, err) {
		c.log.Info("query waiting for approval left in the store; it resumes at the next start", "query_id", q.id)
		return
	}
	defer c.dropWaiting(q.id)
	if err == nil {
		// Before the release is visible: whoever sees it may ask again.
		c.rememberRelease(q, who, e.ID, q.versions)
	}
	q.update(func(st *coordinatorv1.QueryStatus) {
		st.FinishedUnixMs = c.cfg.Now().UnixMilli()
		switch {
		case err == nil:
			st.State = coordinatorv1.State_STATE_DONE
			st.Result = res
		case errors.Is(err, ErrQueryCanceled):
			st.State = coordinatorv1.State_STATE_CANCELLED
			st.Error = err.Error()
		default:
			st.State = coordinatorv1.State_STATE_FAILED
			st.Error = err.Error()
		}
	})
	st, _ := q.snapshot()
	c.metrics.queries.WithLabelValues(strings.ToLower(strings.TrimPrefix(st.State.String(), "STATE_"))).Inc()
	if err == nil {
		c.metrics.duration.Observe(time.Since(q.started).Seconds())
		c.record(context.Background(), c.cfg.Identity.Name(), "query.released", q.id, map[string]any{"analyst": who.Name, "nodes": st.GetResult().GetNodes(), "rho": st.GetResult().GetRho()})
	} else {
		c.record(context.Background(), c.cfg.Identity.Name(), "query.failed", q.id, map[string]any{"analyst": who.Name, "error": err.Error()})
	}
	if serr := c.saveQuery(st); serr != nil {
		c.log.Error("could not record the end of a query", "query_id", q.id, "err", serr)
	}
	if err != nil {
		c.log.Info("query ended without a release", "query_id", q.id, "err", err)
	} else {
		c.log.Info("query released", "query_id", q.id, "analyst", who.Name)
	}
}

// execute runs the protocol of a query with the members of e, one step per
// handler of the nodes: collect (Evaluate), then the sum of the partials,
// commit (Commit), keySwitch (KeySwitch, PREPARE then RELEASE) and release
// (decrypt the total and release it under differential privacy).
func (c *Coordinator) execute(q *query, e *epoch, who Analyst) (*typesv1.Result, error) {
	if q.link != nil {
		return c.executeLinked(q, e, who)
	}
	spec := q.st.Spec
	parts, err := c.collect(q, e, who)
	if err != nil {
		return nil, err
	}
	q.versions = partialVersions(parts)
	if c.cfg.BenchmarkPlaintext {
		return c.releasePlaintext(q, parts)
	}

	// Aggregate: add the ciphertexts (the coordinator cannot read them).
	start := time.Now()
	vectors := make([][]*homomorphic.Ciphertext, len(parts))
	commitments := make([][]byte, len(parts))
	signed := make([]*nodev1.NodeSigned, len(parts))
	senders := make([]string, len(parts))
	for i, pt := range parts {
		vectors[i], commitments[i] = pt.cts, pt.commitments
		signed[i] = &nodev1.NodeSigned{NodeId: pt.node, Signed: pt.signed}
		senders[i] = pt.node
	}
	sum, err := homomorphic.Sum(c.params, vectors)
	if err != nil {
		return nil, fmt.Errorf("%w: aggregate: %v", ErrQueryFailed, err)
	}
	q.phase("aggregate", start)

	// Key switch: the senders commit to this partial set, then T decryptors
	// switch the sum to a fresh result key.
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_DECRYPTING })
	start = time.Now()
	rk, err := homomorphic.GenResultKey(c.params)
	if err != nil {
		return nil, err
	}
	target, err := rk.Public().MarshalBinary()
	if err != nil {
		return nil, err
	}
	releaseCtx, cancelRelease := context.WithTimeout(q.ctx, releaseTimeout)
	defer cancelRelease()
	// The decryptors get the sum, the partials' headers and signatures and
	// the senders' commitments with fingerprints (protocol.CheckCompactSum),
	// and, unless the release is compact, every partial with its proofs of
	// encryption, which they verify and add up themselves.
	sumBytes := make([][]byte, len(sum))
	for i, ct := range sum {
		if sumBytes[i], err = ct.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	commits, err := c.commit(releaseCtx, q, e, spec, signed, &compactSum{cts: sum, bytes: sumBytes, parts: vectors, commitments: commitments})
	if err != nil {
		return nil, fmt.Errorf("%w: release: commitment to the partial set: %v; nothing was decrypted", ErrQueryFailed, err)
	}
	refs := make([]*nodev1.NodeSigned, len(signed))
	for i, s := range signed {
		refs[i] = &nodev1.NodeSigned{NodeId: s.GetNodeId(), Signed: &typesv1.Signed{Header: s.GetSigned().GetHeader(), Signature: s.GetSigned().GetSignature()}}
	}
	ksReq := &nodev1.KeySwitchRequest{QueryId: q.id, Epoch: e.ID, Spec: spec, Partials: refs, Sum: sumBytes, TargetPublicKey: target, Commits: commits}
	sendReq := ksReq
	if !c.cfg.CompactRelease {
		// A shallow copy with the whole partials (the record keeps ksReq's
		// headers only); nothing writes either once built.
		sendReq = &nodev1.KeySwitchRequest{QueryId: q.id, Epoch: e.ID, Spec: spec, Partials: signed, Sum: sumBytes, TargetPublicKey: target, Commits: commits}
	}
	var judge *partialJudge
	if !c.cfg.CompactRelease {
		judge = newPartialJudge(parts)
	}
	switched, shares, opened, err := c.keySwitch(releaseCtx, q, e, sendReq, sum, senders, judge)
	if err != nil {
		return nil, err
	}
	q.phase("key-switch", start)

	res, err := c.release(q, rk, switched, parts)
	if err != nil {
		return nil, c.nameRefusal(releaseCtx, q, e, sendReq, sum, shares, opened, parts, err)
	}
	c.keepReleaseRecord(q, e, ksReq, parts, shares, rk, res)
	return res, nil
}

func (e *epoch) member(id string) epochMember {
	for _, m := range e.Members {
		if m.ID == id {
			return m
		}
	}
	return epochMember{}
}

// Get returns the status of a query, whole (with every node's timing): what
// a caller may see of it is StatusFor.
func (c *Coordinator) Get(id string) (*coordinatorv1.QueryStatus, error) {
	q, err := c.query(id)
	if err != nil {
		return nil, err
	}
	st, _ := q.snapshot()
	return st, nil
}

func (c *Coordinator) query(id string) (*query, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	q, ok := c.queries[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return q, nil
}

// Watch calls fn with the status of a query now and at every change until
// the query ends or ctx is done. The status is whole: callers are served
// through watchAs (StatusFor).
func (c *Coordinator) Watch(ctx context.Context, id string, fn func(*coordinatorv1.QueryStatus) error) error {
	q, err := c.query(id)
	if err != nil {
		return err
	}
	for {
		st, changed := q.snapshot()
		if err := fn(st); err != nil {
			return err
		}
		if terminal(st.State) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func terminal(s coordinatorv1.State) bool {
	return s == coordinatorv1.State_STATE_DONE || s == coordinatorv1.State_STATE_FAILED || s == coordinatorv1.State_STATE_CANCELLED
}

// Cancel stops a query that has not been released yet.
func (c *Coordinator) Cancel(id string) (*coordinatorv1.QueryStatus, error) {
	q, err := c.query(id)
	if err != nil {
		return nil, err
	}
	q.cancel()
	st, _ := q.snapshot()
	return st, nil
}

// List returns the most recent queries, newest first, whole (see StatusFor;
// the APIs serve listFor).
func (c *Coordinator) List(limit int, analyst string) []*coordinatorv1.QueryStatus {
	c.mu.RLock()
	ids := slices.Clone(c.order)
	c.mu.RUnlock()
	var out []*coordinatorv1.QueryStatus
	for i := len(ids) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		st, err := c.Get(ids[i])
		if err != nil || (analyst != "" && st.Analyst != analyst) {
			continue
		}
		st.Result = nil
		out = append(out, st)
	}
	return out
}

// listFor is List as caller p may see it (StatusFor).
func (c *Coordinator) listFor(p rpc.Peer, limit int, analyst string) []*coordinatorv1.QueryStatus {
	out := c.List(limit, analyst)
	for i, st := range out {
		out[i] = StatusFor(p, st)
	}
	return out
}

// addUpload counts bytes a node sent for a query.
func (q *query) addUpload(id string, n int) {
	q.update(func(st *coordinatorv1.QueryStatus) {
		for _, p := range st.Nodes {
			if p.NodeId == id {
				p.UploadBytes += int64(n)
			}
		}
	})
}

// awaiting adds node id to the status's awaiting_approval (on) or takes it
// out, and says so in the node's progress.
func (q *query) awaiting(id string, since time.Time, on bool) {
	q.update(func(st *coordinatorv1.QueryStatus) {
		st.AwaitingApproval = slices.DeleteFunc(st.AwaitingApproval, func(w *coordinatorv1.ApprovalWait) bool { return w.GetNodeId() == id })
		if on {
			st.AwaitingApproval = append(st.AwaitingApproval, &coordinatorv1.ApprovalWait{NodeId: id, SinceUnixMs: since.UnixMilli()})
			slices.SortFunc(st.AwaitingApproval, func(a, b *coordinatorv1.ApprovalWait) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
		}
		for _, n := range st.Nodes {
			if n.NodeId == id && on {
				n.Status, n.Error = "awaiting approval", "waiting for approval at "+id+" since "+since.UTC().Format(time.RFC3339)
			}
		}
	})
}

// WaitingLine is a one-line account of the nodes whose admin a query waits
// for, as `fedstat query` and the dashboard show it: "waiting for approval
// at hospital-b (since 2026-12-05T16:10:00Z), hospital-c (since ...)"; ""
// when it waits for none.
func WaitingLine(st *coordinatorv1.QueryStatus) string {
	if len(st.GetAwaitingApproval()) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("waiting for approval at ")
	for i, w := range st.GetAwaitingApproval() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (since %s)", w.GetNodeId(), time.UnixMilli(w.GetSinceUnixMs()).UTC().Format(time.RFC3339))
	}
	if d := st.GetApprovalDeadlineUnixMs(); d > 0 {
		fmt.Fprintf(&b, "; gives up at %s", time.UnixMilli(d).UTC().Format(time.RFC3339))
	}
	return b.String()
}

// note adds a remark to a node's progress without changing its status.
func (q *query) note(id, text string) {
	q.update(func(st *coordinatorv1.QueryStatus) {
		for _, n := range st.Nodes {
			if n.NodeId == id {
				n.Error = text
			}
		}
	})
}
