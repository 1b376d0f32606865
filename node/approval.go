package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/webhook"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// A query at a node whose policy requires approval (Policy.RequireApproval)
// waits in the node's store for the admin's decision, as an approval
// record. Evaluate never blocks on it: the first request stores the record,
// tells the approval webhook and answers "pending"; the coordinator asks
// again until the admin decides or the query's approval wait ends. Nothing
// is charged while a query waits or when it is denied: the decision is
// read inside the ledger's Charge (after the budget check, before the
// evaluation), and a query approved and answered is debited once and
// afterwards replayed from the ledger like any other. The record survives a
// restart of the node; it is removed when the approved query is answered,
// and pruned MaxSkew after its wait ended.

// approval is a query waiting for, or decided by, the node admin. Stored
// as JSON at approvalKey(QueryID).
type approval struct {
	QueryID string    `json:"query_id"`
	Analyst string    `json:"analyst"`
	Role    string    `json:"role"`
	SQL     string    `json:"sql"`
	Epsilon float64   `json:"epsilon"`
	Delta   float64   `json:"delta"`
	Rho     float64   `json:"rho"`
	Since   time.Time `json:"since"`
	// Until is when the query stops waiting: Since plus its approval wait
	// (QuerySpec.approval_wait_seconds), or MaxSkew when it has none.
	Until time.Time `json:"until"`
	// Decision is "" while the query waits, then approvalApproved or
	// approvalDenied, by DecidedBy at DecidedAt.
	Decision  string    `json:"decision,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
}

const (
	approvalApproved = "approved"
	approvalDenied   = "denied"
)

func approvalKey(queryID string) []byte { return []byte("n/approval/" + queryID) }

var approvalPrefix = []byte("n/approval/")

// pendingApproval is what approvalGate returns while the admin has not
// decided: Evaluate answers it as EvaluateResponse.approval_pending.
type pendingApproval struct {
	queryID string
	since   time.Time
}

func (p *pendingApproval) Error() string {
	return fmt.Sprintf("query %s awaits the node admin's approval since %s", p.queryID, p.since.UTC().Format(time.RFC3339))
}

// AdminSocket returns the path of the node's local admin socket. Only the
// node's own user can reach it (mode 0600 in the 0700 state directory): it
// is how `fedstat node approvals` talks to a running node.
func AdminSocket(stateDir string) string { return filepath.Join(stateDir, "admin.sock") }

// loadApproval reads the approval record of a query; nil when there is none.
func (n *Node) loadApproval(queryID string) (*approval, error) {
	b, err := n.cfg.DB.Get(approvalKey(queryID))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a approval
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("node: approval record of %s: %w", queryID, err)
	}
	return &a, nil
}

func (n *Node) saveApproval(a *approval) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return n.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(approvalKey(a.QueryID), b) })
}

// waiting reports whether query body waits for the admin (a pending,
// unexpired record for the same analyst): Evaluate answers "pending" at
// once, without a new "query.received" entry at every poll.
func (n *Node) waiting(body *nodev1.EvaluateBody) (*pendingApproval, bool) {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	a, err := n.loadApproval(body.GetQueryId())
	if err != nil || a == nil || a.Decision != "" || a.Analyst != body.GetAnalyst() || !n.cfg.Now().Before(a.Until) {
		return nil, false
	}
	return &pendingApproval{queryID: a.QueryID, since: a.Since}, true
}

// approvalGate decides whether query body may be evaluated now. It runs
// inside the ledger's Charge, so only for a query not answered yet: nil
// once the admin approved; ErrDenied once denied; otherwise a
// *pendingApproval, and the first time (or the first time after its wait
// ended undecided) it stores the record, records "query.awaiting_approval"
// and tells the approval webhook.
func (n *Node) approvalGate(ctx context.Context, body *nodev1.EvaluateBody, rho float64, wait time.Duration) error {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	now := n.cfg.Now()
	a, err := n.loadApproval(body.GetQueryId())
	if err != nil {
		return err
	}
	if a != nil {
		switch {
		case a.Analyst != body.GetAnalyst():
			return fmt.Errorf("%w: query id %s awaits approval for another analyst", ErrBadRequest, a.QueryID)
		case a.Decision == approvalApproved:
			return nil
		case a.Decision == approvalDenied:
			return fmt.Errorf("%w: %s (by %s)", ErrDenied, a.QueryID, a.DecidedBy)
		case now.Before(a.Until):
			return &pendingApproval{queryID: a.QueryID, since: a.Since}
		}
		// Its wait ended undecided, and the query id is asked again (a
		// standing series' interval retried, a query id re-delivered):
		// it waits afresh, as a new query would.
		n.record(ctx, n.id, "query.approval_expired", a.QueryID, map[string]any{"analyst": a.Analyst, "until": a.Until.UTC().Format(time.RFC3339)})
	}
	a = &approval{QueryID: body.GetQueryId(), Analyst: body.GetAnalyst(), Role: body.GetRole(), SQL: body.GetSpec().GetSql(),
		Epsilon: body.GetSpec().GetEpsilon(), Delta: body.GetSpec().GetDelta(), Rho: rho, Since: now, Until: now.Add(wait)}
	if wait == 0 {
		// No approval wait (a standing series' query): the coordinator
		// waits no longer than its deadline, unknown here; MaxSkew
		// bounds the record.
		a.Until = now.Add(n.cfg.MaxSkew)
	}
	if err := n.saveApproval(a); err != nil {
		return err
	}
	n.record(ctx, body.GetAnalyst(), "query.awaiting_approval", a.QueryID, map[string]any{"sql": a.SQL, "rho": rho,
		"until": a.Until.UTC().Format(time.RFC3339)})
	n.log.Info("query awaits the admin's approval", "query_id", a.QueryID, "analyst", a.Analyst, "until", a.Until)
	if url := n.cfg.Policy.ApprovalWebhook; url != "" {
		note := map[string]any{"node": n.id, "query_id": a.QueryID, "analyst": a.Analyst, "role": a.Role, "sql": a.SQL,
			"epsilon": a.Epsilon, "delta": a.Delta, "rho": a.Rho, "since": a.Since.UTC().Format(time.RFC3339),
			"until": a.Until.UTC().Format(time.RFC3339), "approve": "fedstat node approve --data-dir DIR " + a.QueryID}
		go func() {
			// Not bound to the request: it returns at once.
			if err := webhook.Post(context.Background(), url, note); err != nil {
				n.log.Error("could not tell the approval webhook of a waiting query", "query_id", note["query_id"], "err", err)
			}
		}()
	}
	return &pendingApproval{queryID: a.QueryID, since: a.Since}
}

// answeredApproval removes the approval record of a query that has been
// answered (and charged): from now on the ledger replays its answer.
func (n *Node) answeredApproval(queryID string) {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	if err := n.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Delete(approvalKey(queryID)) }); err != nil {
		n.log.Error("could not remove the approval record of an answered query", "query_id", queryID, "err", err)
	}
}

// Approvals lists the queries waiting for the admin, oldest first. Records
// whose wait ended more than MaxSkew ago are removed on the way (an
// undecided one with an audit entry "query.approval_expired").
func (n *Node) Approvals() ([]approval, error) {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	now := n.cfg.Now()
	var out, stale []approval
	err := n.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(approvalPrefix, func(k, v []byte) error {
			var a approval
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("node: approval record %s: %w", k, err)
			}
			switch {
			case now.After(a.Until.Add(n.cfg.MaxSkew)):
				stale = append(stale, a)
			case a.Decision == "" && now.Before(a.Until):
				out = append(out, a)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, a := range stale {
		if err := n.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Delete(approvalKey(a.QueryID)) }); err != nil {
			return nil, err
		}
		if a.Decision == "" {
			n.record(context.Background(), n.id, "query.approval_expired", a.QueryID, map[string]any{"analyst": a.Analyst,
				"until": a.Until.UTC().Format(time.RFC3339)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// Decide approves or denies a waiting query. The decision is stored before
// Decide returns, so it holds across a restart of the node; the query is
// evaluated (and charged) when the coordinator next asks for it.
func (n *Node) Decide(ctx context.Context, queryID string, approve bool, by string) error {
	n.approvalMu.Lock()
	a, err := n.loadApproval(queryID)
	switch {
	case err != nil:
	case a == nil:
		err = fmt.Errorf("%w: no query %s is awaiting approval", ErrBadRequest, queryID)
	case a.Decision != "":
		err = fmt.Errorf("%w: query %s was already %s by %s", ErrBadRequest, queryID, a.Decision, a.DecidedBy)
	case !n.cfg.Now().Before(a.Until):
		err = fmt.Errorf("%w: query %s stopped waiting at %s", ErrApprovalExpired, queryID, a.Until.UTC().Format(time.RFC3339))
	default:
		a.Decision, a.DecidedBy, a.DecidedAt = approvalDenied, by, n.cfg.Now()
		if approve {
			a.Decision = approvalApproved
		}
		err = n.saveApproval(a)
	}
	n.approvalMu.Unlock()
	if err != nil {
		return err
	}
	n.record(ctx, by, "query."+a.Decision, queryID, map[string]any{"analyst": a.Analyst})
	n.log.Info("the admin decided on a query", "query_id", queryID, "decision", a.Decision, "by", by)
	return nil
}

// startAdmin serves the admin socket: GET /approvals, POST
// /approvals/{id}/approve and /approvals/{id}/deny, GET /ready (Ready,
// for `fedstat node check` while the daemon runs), and Config.Local under
// /local/ (`fedstat node status` and `fedstat node query` while the daemon
// runs).
//
// The socket is the access rule: it has mode 0600 (connecting to a unix
// socket needs write permission on it), so only the node's own user (and
// root) reaches it, and it is never reachable over the network. Everything it serves is for the
// node's admin only: exact counts, exact answers, queued SQL.
func (n *Node) startAdmin() error {
	path := AdminSocket(n.cfg.StateDir)
	_ = os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("node: admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /approvals", func(w http.ResponseWriter, _ *http.Request) {
		list, err := n.Approvals()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := n.Decide(r.Context(), r.PathValue("id"), approve, "node-admin@"+n.id); err != nil {
				code := http.StatusInternalServerError
				if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrApprovalExpired) {
					code = http.StatusNotFound
				}
				http.Error(w, err.Error(), code)
				return
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if n.cfg.Local != nil {
		mux.Handle("/local/", http.StripPrefix("/local", n.cfg.Local))
	}
	mux.HandleFunc("POST /approvals/{id}/approve", decide(true))
	mux.HandleFunc("POST /approvals/{id}/deny", decide(false))
	n.adminSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := n.adminSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin socket stopped", "err", err)
		}
	}()
	return nil
}

func (n *Node) stopAdmin() {
	if n.adminSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n.adminSrv.Shutdown(ctx)
	}
}
