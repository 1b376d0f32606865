package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The collect step of a query, the other side of the nodes' Evaluate: every
// member is asked to evaluate the query, and each partial is checked as it
// arrives (verifyPartial).

// partial is a member's checked partial.
type partial struct {
	node   string
	signed *typesv1.Signed
	cts    []*homomorphic.Ciphertext
	plain  []int64 // benchmark-only plaintext mode
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
	specDigest := protocol.SpecDigest(q.st.Spec)
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
	return parts, nil
}

// collectOne asks one member for its partial and checks it (verifyPartial).
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
		return partial{}, callError(err)
	}
	q.addUpload(mem.ID, proto.Size(resp))
	return c.verifyPartial(q.id, e, mem, resp.GetPartial(), q.plan.VectorLen(), specDigest)
}

// verifyPartial checks a partial: signature by the member's certificate
// key, binding to this query, epoch and node, freshness, and a payload that
// decodes to the plan's shape.
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
