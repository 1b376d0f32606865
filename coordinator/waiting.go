package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// Queries that wait for node admins' approvals (collect.go, askApproved)
// may wait for days, so they outlive a restart of the coordinator: when one
// starts to wait, its status is stored with the nodes it waits for, and a
// wait record (prefixWait) keeps what the status does not (the analyst's
// role, the deadline). At start, a query stored while waiting resumes
// (resumeWaiting): planned again from its settled spec, under the same id,
// in the same key epoch, its approval wait counted from its submission. The
// nodes that answered before the restart replay their stored partial (no
// new debit, no new noise); the nodes still waiting answer from their
// approval record. A coordinator that is closed (not killed) leaves such a
// query waiting in the store instead of ending it (Close, run).
//
// Only ordinary queries resume; a standing series' interval (retried by the
// series loop) and a query across linked agencies (its participants and
// stages were chosen at submission) are marked failed as before.

// prefixWait: c/qwait/<query id>, the wait record of a query.
var prefixWait = []byte("c/qwait/")

func waitKey(id string) []byte { return append(append([]byte{}, prefixWait...), id...) }

// waitRecord is what a waiting query needs to resume besides its status.
type waitRecord struct {
	Role       string `json:"role"`
	DeadlineMs int64  `json:"deadline_ms"`
	// Signature is the analyst's signed request (typesv1.AnalystSignature,
	// protobuf), when the query has one.
	Signature []byte `json:"signature,omitempty"`
}

// saveWaiting records that q waits for an approval: its status (with
// awaiting_approval) and, for a query that can resume, its wait record.
func (c *Coordinator) saveWaiting(q *query) error {
	q.mu.Lock()
	q.waited = true
	q.mu.Unlock()
	st, _ := q.snapshot()
	if !q.resumable {
		return c.saveQuery(st)
	}
	if c.cfg.DB == nil {
		return nil
	}
	b, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	wr := waitRecord{Role: q.role, DeadlineMs: q.deadline.Milliseconds()}
	if q.signature != nil {
		if wr.Signature, err = proto.Marshal(q.signature); err != nil {
			return err
		}
	}
	rec, err := json.Marshal(wr)
	if err != nil {
		return err
	}
	return c.cfg.DB.Update(func(tx *kv.Txn) error {
		if err := tx.Set(append(append([]byte{}, prefixQuery...), st.QueryId...), b); err != nil {
			return err
		}
		return tx.Set(waitKey(st.QueryId), rec)
	})
}

// dropWaiting removes the wait record of a query that ended.
func (c *Coordinator) dropWaiting(id string) {
	if c.cfg.DB == nil {
		return
	}
	if err := c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Delete(waitKey(id)) }); err != nil {
		c.log.Error("could not remove the wait record of a query that ended", "query_id", id, "err", err)
	}
}

// leftWaiting reports whether run should leave q in the store as it is
// rather than end it: the coordinator is closing and q was waiting for an
// approval, so the next start resumes it.
func (c *Coordinator) leftWaiting(q *query, err error) bool {
	q.mu.Lock()
	waited := q.waited
	q.mu.Unlock()
	return waited && q.resumable && c.cfg.DB != nil && c.closing.Load() && errors.Is(err, ErrQueryCanceled)
}

// interruptedText is the error of a query that was running when the
// coordinator stopped and does not resume.
func interruptedText(st *coordinatorv1.QueryStatus) string {
	text := "the coordinator stopped while this query was running; nothing was released. Resubmitting starts a new query (and a new debit at the nodes)."
	if len(st.GetAwaitingApproval()) > 0 {
		var ids []string
		for _, w := range st.GetAwaitingApproval() {
			ids = append(ids, w.GetNodeId())
		}
		text += " It was waiting for approval at " + strings.Join(ids, ", ") + "; a new query needs a new approval there."
	}
	return text
}

// resumeWaiting starts again the queries loadState found waiting (Run
// calls it once, before serving). A query whose key epoch is gone, or that
// no longer plans, is marked failed with the reason.
func (c *Coordinator) resumeWaiting() {
	c.mu.Lock()
	todo := c.toResume
	c.toResume = nil
	c.mu.Unlock()
	for _, r := range todo {
		if err := c.resume(r.st, r.rec); err != nil {
			c.log.Warn("a query stored while it waited for approval cannot resume", "query_id", r.st.QueryId, "err", err)
			c.endStored(r.st, err.Error())
		}
	}
}

// resume builds the query of st anew and runs it.
func (c *Coordinator) resume(st *coordinatorv1.QueryStatus, rec waitRecord) error {
	e, err := c.currentEpoch()
	if err != nil || e.ID != st.Epoch {
		return fmt.Errorf("the coordinator restarted while this query waited for approval, and key epoch %d it was planned for is no longer current; "+
			"nothing was released. Resubmitting starts a new query", st.Epoch)
	}
	preq, err := planRequest(st.Spec)
	if err != nil {
		return err
	}
	p, err := plan.Build(preq, c.cfg.Catalogue)
	if err != nil {
		return fmt.Errorf("the coordinator restarted while this query waited for approval, and it no longer plans: %w", err)
	}
	// The loaded status is already served (Get, Watch) by the stored
	// query: the resumed one works on its own copy.
	st = proto.Clone(st).(*coordinatorv1.QueryStatus)
	qctx, cancel := context.WithCancel(context.Background())
	q := &query{id: st.QueryId, plan: p, ctx: qctx, cancel: cancel, changed: make(chan struct{}), started: time.Now(),
		deadline: time.Duration(rec.DeadlineMs) * time.Millisecond, role: rec.Role, resumable: true, st: st}
	if q.deadline <= 0 {
		q.deadline = c.cfg.Deadline
	}
	if len(rec.Signature) > 0 {
		q.signature = new(typesv1.AnalystSignature)
		if err := proto.Unmarshal(rec.Signature, q.signature); err != nil {
			return fmt.Errorf("the coordinator restarted while this query waited for approval, and its analyst's signature does not decode: %w", err)
		}
	}
	if d := st.GetApprovalDeadlineUnixMs(); d > 0 {
		// Counted from the submission, not from the restart.
		q.approvalUntil = time.Now().Add(time.UnixMilli(d).Sub(c.cfg.Now()))
	}
	st.State = coordinatorv1.State_STATE_PLANNED
	st.AwaitingApproval = nil
	for _, n := range st.Nodes {
		n.Status, n.Error = "waiting", ""
	}
	st.Phases = append(st.Phases, &coordinatorv1.Phase{Name: "resumed after a restart"})
	c.mu.Lock()
	c.queries[q.id] = q
	c.mu.Unlock()
	who := Analyst{Name: st.Analyst, Role: rec.Role}
	c.record(context.Background(), c.cfg.Identity.Name(), "query.resumed", q.id, map[string]any{"analyst": who.Name})
	c.log.Info("resuming a query that waited for approval", "query_id", q.id, "analyst", who.Name)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.run(q, e, who)
	}()
	return nil
}

// endStored marks a stored query that cannot go on as failed.
func (c *Coordinator) endStored(st *coordinatorv1.QueryStatus, reason string) {
	c.mu.Lock()
	q, ok := c.queries[st.QueryId]
	c.mu.Unlock()
	if !ok {
		return
	}
	q.update(func(st *coordinatorv1.QueryStatus) {
		st.State = coordinatorv1.State_STATE_FAILED
		st.Error = reason
		st.AwaitingApproval = nil
		st.FinishedUnixMs = c.cfg.Now().UnixMilli()
	})
	final, _ := q.snapshot()
	if err := c.saveQuery(final); err != nil {
		c.log.Error("could not record the end of a query", "query_id", st.QueryId, "err", err)
	}
	c.dropWaiting(st.QueryId)
}

// storedWait is a query loadState found stored while it waited.
type storedWait struct {
	st  *coordinatorv1.QueryStatus
	rec waitRecord
}
