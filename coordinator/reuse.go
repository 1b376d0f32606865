package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The same question twice costs once: a query identical to an earlier
// release of the same analyst (same SQL, epsilon, delta, mechanism,
// reference date, minimum nodes and key epoch: the settled spec's digest)
// is answered from that release, charged nothing, when every node whose
// partial is in the release says its data has not changed since (its data
// version, node.DataVersioner) and no member that was left out of the
// release could answer now. Giving an analyst a number she was already
// given is post-processing: it costs no privacy. Another analyst's
// identical question is asked anew: releases belong to whoever asked
// (roles and per-analyst budgets are kept at the nodes).

var prefixReuse = []byte("c/reuse/")

// reuseInfoTimeout bounds the data-version check of a reuse.
const reuseInfoTimeout = 5 * time.Second

// releaseRecord is what the coordinator keeps of a release so that the same
// question can be answered from it.
type releaseRecord struct {
	QueryID string `json:"query_id"`
	// Versions is the data version of each node's partial in the release.
	Versions map[string]string `json:"versions"`
}

// reuseKey identifies a question: analyst, role, key epoch and settled spec.
func reuseKey(who Analyst, epoch uint64, spec *typesv1.QuerySpec) string {
	h := sha256.New()
	for _, f := range [][]byte{[]byte("fedstat/reuse/v1"), []byte(who.Name), []byte(who.Role), binary.BigEndian.AppendUint64(nil, epoch), protocol.SpecDigest(spec)} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f))))
		h.Write(f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// partialVersions returns each partial's data version, or nil when a node
// could not say which data it answered from (nothing can then be reused).
func partialVersions(parts []partial) map[string]string {
	v := make(map[string]string, len(parts))
	for _, p := range parts {
		if p.version == "" {
			return nil
		}
		v[p.node] = p.version
	}
	return v
}

// rememberRelease records a released query for reuse.
func (c *Coordinator) rememberRelease(q *query, who Analyst, epoch uint64, versions map[string]string) {
	if versions == nil || q.series != nil || q.link != nil {
		return
	}
	st, _ := q.snapshot()
	if st.GetReusedFrom() != "" {
		return
	}
	key := reuseKey(who, epoch, st.GetSpec())
	rec := releaseRecord{QueryID: q.id, Versions: versions}
	if c.cfg.DB != nil {
		b, err := json.Marshal(rec)
		if err == nil {
			err = c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(append(append([]byte{}, prefixReuse...), key...), b) })
		}
		if err != nil {
			c.log.Warn("could not record a release for reuse", "query_id", q.id, "err", err)
			return
		}
	}
	c.reuseMu.Lock()
	if c.reuse == nil {
		c.reuse = make(map[string]releaseRecord)
	}
	c.reuse[key] = rec
	c.reuseMu.Unlock()
}

// loadReleases restores the reuse index.
func (c *Coordinator) loadReleases() error {
	if c.cfg.DB == nil {
		return nil
	}
	m := make(map[string]releaseRecord)
	err := c.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixReuse, func(k, v []byte) error {
			var r releaseRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("release record %s: %w", k, err)
			}
			m[string(k[len(prefixReuse):])] = r
			return nil
		})
	})
	if err != nil {
		return err
	}
	c.reuseMu.Lock()
	c.reuse = m
	c.reuseMu.Unlock()
	return nil
}

// earlierRelease returns the released status that answers the same
// question, or nil (with why not, for the log) when it must be asked anew.
func (c *Coordinator) earlierRelease(ctx context.Context, who Analyst, e *epoch, spec *typesv1.QuerySpec) (*coordinatorv1.QueryStatus, string) {
	c.reuseMu.Lock()
	rec, ok := c.reuse[reuseKey(who, e.ID, spec)]
	c.reuseMu.Unlock()
	if !ok {
		return nil, ""
	}
	q, err := c.query(rec.QueryID)
	if err != nil {
		return nil, "the earlier release is no longer kept"
	}
	st, _ := q.snapshot()
	if st.GetState() != coordinatorv1.State_STATE_DONE || st.GetResult() == nil {
		return nil, "the earlier query has no release"
	}
	// Ask every member for its data version now.
	cctx, cancel := context.WithTimeout(ctx, reuseInfoTimeout)
	defer cancel()
	type answer struct {
		id, version string
		err         error
	}
	answers := make([]answer, len(e.Members))
	var wg sync.WaitGroup
	for i, m := range e.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].id = m.ID
			cl, err := c.client(m.ID)
			if err != nil {
				answers[i].err = err
				return
			}
			info, err := cl.Info(cctx, &nodev1.InfoRequest{})
			if err != nil {
				answers[i].err = err
				return
			}
			answers[i].version = info.GetDataVersion()
		}()
	}
	wg.Wait()
	for _, a := range answers {
		old, in := rec.Versions[a.id]
		switch {
		case in && a.err != nil:
			return nil, fmt.Sprintf("node %s cannot say whether its data changed (%v)", a.id, a.err)
		case in && a.version != old:
			return nil, fmt.Sprintf("node %s's data changed since query %s", a.id, rec.QueryID)
		case !in && a.err == nil:
			return nil, fmt.Sprintf("node %s, left out of query %s, can answer now", a.id, rec.QueryID)
		}
	}
	return st, ""
}

// reuseRelease answers a query from an earlier release: a new query record,
// released at once, charged nothing, that names the release it repeats.
func (c *Coordinator) reuseRelease(ctx context.Context, who Analyst, e *epoch, spec *typesv1.QuerySpec, from *coordinatorv1.QueryStatus, start time.Time) (*coordinatorv1.QueryStatus, error) {
	now := c.cfg.Now().UnixMilli()
	st := &coordinatorv1.QueryStatus{
		QueryId: newQueryID(), State: coordinatorv1.State_STATE_DONE, Spec: spec, Analyst: who.Name,
		Plan: from.GetPlan(), SubmittedUnixMs: now, FinishedUnixMs: now, Epoch: e.ID,
		Result: proto.Clone(from.GetResult()).(*typesv1.Result), ReusedFrom: from.GetQueryId(),
	}
	for _, n := range from.GetNodes() {
		st.Nodes = append(st.Nodes, &coordinatorv1.NodeProgress{NodeId: n.GetNodeId(), Status: "reused"})
	}
	st.Phases = []*coordinatorv1.Phase{{Name: "reuse", ElapsedMs: ms(time.Since(start))}}
	if err := c.saveQuery(st); err != nil {
		return nil, err
	}
	qctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := &query{id: st.QueryId, ctx: qctx, cancel: cancel, changed: make(chan struct{}), started: start, st: st}
	c.mu.Lock()
	c.queries[q.id] = q
	c.order = append(c.order, q.id)
	c.mu.Unlock()
	c.metrics.queries.WithLabelValues("reused").Inc()
	c.record(ctx, who.Name, "query.reused", q.id, map[string]any{"sql": spec.Sql, "epsilon": spec.Epsilon, "delta": spec.Delta, "role": who.Role, "reused_from": from.GetQueryId()})
	c.log.Info("query answered from an earlier release", "query_id", q.id, "reused_from", from.GetQueryId(), "analyst", who.Name)
	out, _ := q.snapshot()
	return out, nil
}
