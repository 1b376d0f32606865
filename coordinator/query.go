package coordinator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
)

// Network defaults for the privacy parameters of a query.
const (
	DefaultEpsilon = 1.0
	DefaultDelta   = 1e-6
)

// query is one analyst query and its progress.
type query struct {
	id     string
	plan   *plan.Plan
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	st       *coordinatorv1.QueryStatus
	changed  chan struct{} // closed at every change, then replaced
	started  time.Time
	deadline time.Duration // bounds the wait for partials
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
func (c *Coordinator) Submit(ctx context.Context, who Analyst, spec *typesv1.QuerySpec, deadline time.Duration) (*coordinatorv1.QueryStatus, error) {
	e, err := c.currentEpoch()
	if err != nil {
		return nil, err
	}
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
		return nil, fmt.Errorf("%w: min_nodes %d exceeds the %d members of key epoch %d", ErrBadRequest, spec.MinNodes, len(e.Members), e.ID)
	}
	if spec.Threshold != 0 && int(spec.Threshold) != e.Threshold {
		return nil, fmt.Errorf("%w: threshold is %d for key epoch %d; it is not set per query", ErrBadRequest, e.Threshold, e.ID)
	}
	spec.Threshold = int32(e.Threshold)
	if int(spec.MinNodes) < e.Threshold {
		return nil, fmt.Errorf("%w: min_nodes %d is below the decryption threshold %d", ErrBadRequest, spec.MinNodes, e.Threshold)
	}
	if spec.ReferenceDate == "" {
		spec.ReferenceDate = cdm.DateOf(c.cfg.Now()).String()
	}
	// The encoding range of one partial: what the epoch's members can sum
	// without wrapping. It is the network's, not the analyst's, to set.
	spec.PartialLimit = c.params.MaxAbs() / int64(len(e.Members))
	start := time.Now()
	preq, err := planRequest(spec)
	if err != nil {
		return nil, err
	}
	p, err := plan.Build(preq, c.cfg.Catalogue)
	if err != nil {
		return nil, err
	}
	if worst := p.MaxAbsTotal(len(e.Members)); worst > c.params.MaxAbs() || worst < 0 {
		return nil, fmt.Errorf("%w: the worst-case sum %d over %d nodes could wrap around the plaintext modulus (at most %d): narrow the clamps or the groups, or lower the catalogue's patients per node", ErrBadRequest, worst, len(e.Members), c.params.MaxAbs())
	}
	if deadline <= 0 {
		deadline = c.cfg.Deadline
	}
	// ctx lives until the query ends (Cancel ends it early); the deadline
	// bounds only the wait for partials, so that a release can still run
	// after a slow node has used up the deadline.
	qctx, cancel := context.WithCancel(context.Background())
	q := &query{
		id: newQueryID(), plan: p, ctx: qctx, cancel: cancel, changed: make(chan struct{}), started: start, deadline: deadline,
		st: &coordinatorv1.QueryStatus{
			State: coordinatorv1.State_STATE_PLANNED, Spec: spec, Analyst: who.Name,
			Plan: p.Describe(), SubmittedUnixMs: c.cfg.Now().UnixMilli(), Epoch: e.ID,
		},
	}
	q.st.QueryId = q.id
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

type partial struct {
	node   string
	signed *typesv1.Signed
	cts    []*homomorphic.Ciphertext
	plain  []int64 // benchmark-only plaintext mode
}

func (c *Coordinator) execute(q *query, e *epoch, who Analyst) (*typesv1.Result, error) {
	spec := q.st.Spec
	p := q.plan
	m := int(spec.GetMinNodes())

	// Collect: every member evaluates; the coordinator verifies each partial.
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_COLLECTING })
	start := time.Now()
	collectCtx, cancelCollect := context.WithTimeout(q.ctx, q.deadline)
	defer cancelCollect()
	specDigest := protocol.SpecDigest(spec)
	var mu sync.Mutex
	var parts []partial
	failures := map[string]string{}
	var wg sync.WaitGroup
	for _, mem := range e.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			pt, err := c.collectOne(collectCtx, q, e, mem, who, specDigest)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if errors.Is(collectCtx.Err(), context.DeadlineExceeded) && q.ctx.Err() == nil {
					err = fmt.Errorf("no answer within the query's deadline of %s (%v)", q.deadline, err)
				}
				c.metrics.partials.WithLabelValues("failed").Inc()
				failures[mem.ID] = err.Error()
				q.node(mem.ID, "failed", err.Error(), time.Since(t0))
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
		return nil, fmt.Errorf("%w: %d of %d nodes answered, min_nodes is %d; nothing was decrypted. %s",
			ErrQueryFailed, len(parts), len(e.Members), m, describeFailures(failures))
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].node < parts[j].node })
	if c.cfg.BenchmarkPlaintext {
		return c.releasePlaintext(q, parts)
	}

	// Aggregate: add the ciphertexts (the coordinator cannot read them).
	start = time.Now()
	vectors := make([][]*homomorphic.Ciphertext, len(parts))
	signed := make([]*nodev1.NodeSigned, len(parts))
	for i, pt := range parts {
		vectors[i] = pt.cts
		signed[i] = &nodev1.NodeSigned{NodeId: pt.node, Signed: pt.signed}
	}
	sum, err := homomorphic.Sum(c.params, vectors)
	if err != nil {
		return nil, fmt.Errorf("%w: aggregate: %v", ErrQueryFailed, err)
	}
	q.phase("aggregate", start)

	// Key switch: T decryptors (see release).
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

	// Commit: every node whose partial is summed commits to exactly this
	// set of partials (once per query id); decryptors require all of these
	// commitments, so a query id can never be released over two sets.
	digest := protocol.CommitDigest(q.id, e.ID, spec, signed)
	senders := make([]string, len(parts))
	for i, pt := range parts {
		senders[i] = pt.node
	}
	commits := make([]*nodev1.NodeSigned, len(parts))
	err = c.fanout(releaseCtx, senders, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		resp, err := cl.Commit(ctx, &nodev1.CommitRequest{QueryId: q.id, Epoch: e.ID, Digest: digest})
		if err != nil {
			return fmt.Errorf("%s", rpcMessage(err))
		}
		commits[i] = &nodev1.NodeSigned{NodeId: id, Signed: resp.GetCommit()}
		q.addUpload(id, proto.Size(resp))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: release: commitment to the partial set: %v; nothing was decrypted", ErrQueryFailed, err)
	}

	ksReq := &nodev1.KeySwitchRequest{QueryId: q.id, Epoch: e.ID, Spec: spec, Partials: signed, TargetPublicKey: target, Commits: commits}
	decryptors, shares, err := c.release(releaseCtx, q, e, ksReq, len(sum), senders)
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v; nothing was decrypted", ErrQueryFailed, err)
	}
	out := make([]*homomorphic.Ciphertext, len(sum))
	for j := range sum {
		perCt := make([][]byte, len(decryptors))
		for i := range decryptors {
			perCt[i] = shares[i][j]
		}
		if out[j], err = collective.KeySwitchCombine(c.params, sum[j], perCt); err != nil {
			return nil, fmt.Errorf("%w: combine key-switch shares: %v", ErrQueryFailed, err)
		}
	}
	q.phase("key-switch", start)

	// Decrypt the total and release it.
	start = time.Now()
	totals, err := homomorphic.Decrypt(c.params, rk, out, p.VectorLen())
	if err != nil {
		return nil, fmt.Errorf("%w: decrypt: %v", ErrQueryFailed, err)
	}
	r, err := dp.Release(p, totals, len(parts))
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v", ErrQueryFailed, err)
	}
	q.phase("decrypt+release", start)
	return resultpb.ToProto(r), nil
}

func (e *epoch) member(id string) epochMember {
	for _, m := range e.Members {
		if m.ID == id {
			return m
		}
	}
	return epochMember{}
}

// collectOne asks one member for its partial and verifies it: signature by
// the member's certificate key, binding to this query, epoch and node,
// freshness, and a payload that decodes to the plan's shape.
func (c *Coordinator) collectOne(ctx context.Context, q *query, e *epoch, mem epochMember, who Analyst, specDigest []byte) (partial, error) {
	cl, err := c.client(mem.ID)
	if err != nil {
		return partial{}, err
	}
	req, err := protocol.SignEvaluate(c.cfg.Identity.Key, mem.ID, &nodev1.EvaluateBody{
		QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Analyst: who.Name, Role: who.Role,
		PlanFingerprint: q.plan.Fingerprint(),
	}, c.cfg.Now())
	if err != nil {
		return partial{}, err
	}
	resp, err := cl.Evaluate(ctx, req)
	if err != nil {
		return partial{}, fmt.Errorf("%s", rpcMessage(err))
	}
	q.addUpload(mem.ID, proto.Size(resp))
	return c.verifyPartial(q.id, e, mem, resp.GetPartial(), q.plan.VectorLen(), specDigest)
}

func (c *Coordinator) verifyPartial(qid string, e *epoch, mem epochMember, s *typesv1.Signed, vectorLen int, specDigest []byte) (partial, error) {
	if _, err := envelope.Open(mem.Cert.PublicKey, protocol.FromProto(s),
		envelope.Binding{QueryID: qid, Epoch: e.ID, NodeID: mem.ID, Kind: protocol.KindPartial},
		c.cfg.Now(), 5*time.Minute, c.replay); err != nil {
		return partial{}, fmt.Errorf("partial rejected: %w", err)
	}
	var payload nodev1.PartialPayload
	if err := proto.Unmarshal(s.GetPayload(), &payload); err != nil {
		return partial{}, fmt.Errorf("partial rejected: %v", err)
	}
	if !bytes.Equal(payload.GetSpecDigest(), specDigest) {
		return partial{}, fmt.Errorf("partial rejected: it was planned and noised for another query spec")
	}
	if c.cfg.BenchmarkPlaintext {
		if int(payload.GetVectorLen()) != vectorLen || len(payload.GetPlaintext()) != vectorLen || len(payload.GetCiphertexts()) != 0 {
			return partial{}, fmt.Errorf("partial rejected: benchmark plaintext mode needs %d plaintext slots", vectorLen)
		}
		return partial{node: mem.ID, signed: s, plain: payload.GetPlaintext()}, nil
	}
	if len(payload.GetPlaintext()) > 0 {
		return partial{}, fmt.Errorf("partial rejected: it is not encrypted")
	}
	want := (vectorLen + c.params.Slots() - 1) / c.params.Slots()
	if int(payload.GetVectorLen()) != vectorLen || len(payload.GetCiphertexts()) != want {
		return partial{}, fmt.Errorf("partial rejected: %d slots in %d ciphertexts, want %d in %d", payload.GetVectorLen(), len(payload.GetCiphertexts()), vectorLen, want)
	}
	cts := make([]*homomorphic.Ciphertext, len(payload.GetCiphertexts()))
	for i, b := range payload.GetCiphertexts() {
		ct, err := homomorphic.UnmarshalCiphertext(c.params, b)
		if err != nil {
			return partial{}, fmt.Errorf("partial rejected: ciphertext %d: %v", i, err)
		}
		cts[i] = ct
	}
	return partial{node: mem.ID, signed: s, cts: cts}, nil
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

// rpcMessage returns the text of a gRPC error without the "rpc error:" prefix.
func rpcMessage(err error) string {
	code := rpc.Code(err)
	msg := err.Error()
	if i := strings.Index(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return fmt.Sprintf("%s (%s)", msg, code)
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

// releasePlaintext is the benchmark-only release of plaintext partials: the
// plain sum, then the same post-processing as an encrypted release.
func (c *Coordinator) releasePlaintext(q *query, parts []partial) (*typesv1.Result, error) {
	start := time.Now()
	totals := make([]int64, q.plan.VectorLen())
	for _, pt := range parts {
		for i, v := range pt.plain {
			totals[i] += v
		}
	}
	q.phase("aggregate", start)
	start = time.Now()
	r, err := dp.Release(q.plan, totals, len(parts))
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v", ErrQueryFailed, err)
	}
	q.phase("decrypt+release", start)
	return resultpb.ToProto(r), nil
}

// release has T members key-switch the sum of the committed partials in
// base (query id, epoch, spec, partials, target key and commitments are
// set; the decryptors are chosen here) and returns the decryptors and their
// shares ([decryptor][ciphertext]).
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
func (c *Coordinator) release(ctx context.Context, q *query, e *epoch, base *nodev1.KeySwitchRequest, cts int, senders []string) ([]string, [][][]byte, error) {
	need := min(e.Threshold, len(e.Members))
	candidates := c.decryptorCandidates(e, senders)
	failed := map[string]string{}
	spent := map[string]bool{}
	for attempt := 1; ; attempt++ {
		var set []string
		for _, id := range candidates {
			if failed[id] == "" && !spent[id] && len(set) < need {
				set = append(set, id)
			}
		}
		if len(set) < need || ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%d decryptors needed, %d of the %d members were left after %d attempt(s). %s",
				need, len(set), len(e.Members), attempt-1, describeDecryptorFailures(e, candidates, failed, spent))
		}
		sort.Strings(set)

		prep := proto.Clone(base).(*nodev1.KeySwitchRequest)
		prep.Decryptors, prep.Phase = set, nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE
		errs := c.fanoutEach(ctx, set, func(ctx context.Context, _ int, id string) error {
			cl, err := c.client(id)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, decryptorTimeout)
			defer cancel()
			if _, err := cl.KeySwitch(cctx, prep); err != nil {
				return errors.New(rpcMessage(err))
			}
			return nil
		})
		if c.noteDecryptorFailures(q, attempt, set, errs, failed, "prepare") {
			c.metrics.releaseAttempts.WithLabelValues("prepare_failed").Inc()
			continue
		}

		rel := &nodev1.KeySwitchRequest{QueryId: base.GetQueryId(), Epoch: base.GetEpoch(), TargetPublicKey: base.GetTargetPublicKey(),
			Decryptors: set, Phase: nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE}
		shares := make([][][]byte, len(set))
		errs = c.fanoutEach(ctx, set, func(ctx context.Context, i int, id string) error {
			cl, err := c.client(id)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, decryptorTimeout)
			defer cancel()
			resp, err := cl.KeySwitch(cctx, rel)
			if err != nil {
				return errors.New(rpcMessage(err))
			}
			s := resp.GetShare()
			if _, err := envelope.Open(e.member(id).Cert.PublicKey, protocol.FromProto(s),
				envelope.Binding{QueryID: q.id, Epoch: e.ID, NodeID: id, Kind: protocol.KindKeySwitchShare},
				c.cfg.Now(), 5*time.Minute, c.replay); err != nil {
				return fmt.Errorf("key-switch share: %w", err)
			}
			var payload nodev1.KeySwitchPayload
			if err := proto.Unmarshal(s.GetPayload(), &payload); err != nil || len(payload.GetShares()) != cts {
				return errors.New("key-switch share: malformed payload")
			}
			shares[i] = payload.GetShares()
			q.addUpload(id, proto.Size(resp))
			return nil
		})
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
		return set, shares, nil
	}
}

// decryptorCandidates orders the members for release (see release). Members
// that reported they cannot decrypt in e are left out.
func (c *Coordinator) decryptorCandidates(e *epoch, senders []string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	type cand struct {
		id         string
		rank, sent int
	}
	var cs []cand
	for _, m := range e.Members {
		rank := 1 // no trusted report
		if n, ok := c.reg[m.ID]; ok && c.fresh(n.Health) {
			if _, problem := c.memberProblemLocked(e, m.ID); problem != "" {
				continue
			}
			rank = 0
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
	for _, m := range e.Members {
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
