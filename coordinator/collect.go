package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
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
}

// collect asks every member of e for its partial of q, waiting at most the
// query's deadline, and returns the partials that passed the checks, in
// node order. It fails when fewer than min_nodes did, or q was cancelled.
func (c *Coordinator) collect(q *query, e *epoch, who Analyst) ([]partial, error) {
	m := int(q.st.Spec.GetMinNodes())
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_COLLECTING })
	start := time.Now()
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
			pt, err := c.collectOne(collectCtx, q, e, mem, who, shape)
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
	return parts, nil
}

// collectOne asks one member for its partial and checks it (verifyPartial).
func (c *Coordinator) collectOne(ctx context.Context, q *query, e *epoch, mem epochMember, who Analyst, shape protocol.PartialShape) (partial, error) {
	cl, err := c.client(mem.ID)
	if err != nil {
		return partial{}, err
	}
	req, err := protocol.SealEvaluate(c.cfg.Identity.Key, mem.ID, &nodev1.EvaluateBody{
		QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Analyst: who.Name, Role: who.Role,
		PlanFingerprint: q.plan.Fingerprint(), Series: q.series,
	}, c.cfg.Now())
	if err != nil {
		return partial{}, err
	}
	resp, err := cl.Evaluate(ctx, req)
	if err != nil {
		return partial{}, callError(err)
	}
	q.addUpload(mem.ID, proto.Size(resp))
	return c.verifyPartial(q.id, e, mem, resp.GetPartial(), shape)
}

// partialWindow is the window of the partials of query qid: a series
// interval's partial is replayed to every retry (protocol.SeriesPartialAge),
// so it is neither fresh nor unseen.
func (c *Coordinator) partialWindow(qid string) protocol.Window {
	if protocol.IsSeriesQuery(qid) {
		return protocol.Window{Now: c.cfg.Now(), MaxSkew: protocol.SeriesPartialAge}
	}
	return c.window()
}

// verifyPartial runs the checks of a partial (protocol.OpenPartial):
// signature by the member's certificate key, binding to this query, epoch
// and node, freshness, not seen before, the spec it was noised for and the
// plan's shape.
func (c *Coordinator) verifyPartial(qid string, e *epoch, mem epochMember, s *typesv1.Signed, shape protocol.PartialShape) (partial, error) {
	pt, err := protocol.OpenPartial(mem.Cert.PublicKey, s, qid, e.ID, mem.ID, c.partialWindow(qid), shape)
	if err != nil {
		return partial{}, fmt.Errorf("partial rejected: %w", err)
	}
	return partial{node: mem.ID, signed: s, cts: pt.Ciphertexts, plain: pt.Plaintext, version: pt.DataVersion}, nil
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
