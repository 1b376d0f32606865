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

	"github.com/fedstat/fedstat/internal/webhook"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// approval is a query waiting for the node admin's decision.
type approval struct {
	QueryID  string    `json:"query_id"`
	Analyst  string    `json:"analyst"`
	Role     string    `json:"role"`
	SQL      string    `json:"sql"`
	Epsilon  float64   `json:"epsilon"`
	Delta    float64   `json:"delta"`
	Rho      float64   `json:"rho"`
	Since    time.Time `json:"since"`
	decision chan bool
	waiters  int // requests blocked on this decision (under Node.approvalMu)
}

// AdminSocket returns the path of the node's local admin socket. Only the
// node's own user can reach it (mode 0600 in the 0700 state directory): it
// is how `fedstat node approvals` talks to a running node.
func AdminSocket(stateDir string) string { return filepath.Join(stateDir, "admin.sock") }

// awaitApproval queues a query for the admin and blocks until the admin
// decides or ctx ends (the coordinator's deadline).
func (n *Node) awaitApproval(ctx context.Context, body *nodev1.EvaluateBody, rho float64) error {
	a := &approval{QueryID: body.GetQueryId(), Analyst: body.GetAnalyst(), Role: body.GetRole(), SQL: body.GetSpec().GetSql(),
		Epsilon: body.GetSpec().GetEpsilon(), Delta: body.GetSpec().GetDelta(), Rho: rho, Since: n.cfg.Now(), decision: make(chan bool, 1)}
	n.approvalMu.Lock()
	fresh := false
	if old, ok := n.approvals[a.QueryID]; ok {
		a = old // a re-delivered request waits for the same decision
	} else {
		n.approvals[a.QueryID] = a
		fresh = true
	}
	a.waiters++
	n.approvalMu.Unlock()
	defer func() {
		// A query nobody waits for any more (the coordinator gave up or
		// died) leaves the queue: the admin is not asked to decide on it,
		// and a later delivery queues it afresh.
		n.approvalMu.Lock()
		defer n.approvalMu.Unlock()
		if a.waiters--; a.waiters == 0 && n.approvals[a.QueryID] == a {
			delete(n.approvals, a.QueryID)
		}
	}()
	n.record(ctx, body.GetAnalyst(), "query.awaiting_approval", a.QueryID, map[string]any{"sql": a.SQL, "rho": rho})
	n.log.Info("query awaits the admin's approval", "query_id", a.QueryID, "analyst", a.Analyst)
	if url := n.cfg.Policy.ApprovalWebhook; fresh && url != "" {
		note := map[string]any{"node": n.id, "query_id": a.QueryID, "analyst": a.Analyst, "role": a.Role, "sql": a.SQL,
			"epsilon": a.Epsilon, "delta": a.Delta, "rho": a.Rho, "since": a.Since.UTC().Format(time.RFC3339),
			"approve": "fedstat node approve --data-dir DIR " + a.QueryID}
		go func() {
			// Not bound to the query: the admin is told even if the
			// coordinator stops waiting.
			if err := webhook.Post(context.Background(), url, note); err != nil {
				n.log.Error("could not tell the approval webhook of a waiting query", "query_id", note["query_id"], "err", err)
			}
		}()
	}
	select {
	case ok := <-a.decision:
		a.decision <- ok // let other waiters see it too
		if !ok {
			return fmt.Errorf("%w: %s", ErrDenied, a.QueryID)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: query %s was still awaiting the admin's approval at %s", ctx.Err(), a.QueryID, n.id)
	}
}

// Approvals lists the queries waiting for the admin, oldest first.
func (n *Node) Approvals() []approval {
	n.approvalMu.Lock()
	defer n.approvalMu.Unlock()
	out := make([]approval, 0, len(n.approvals))
	for _, a := range n.approvals {
		if len(a.decision) == 0 {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// Decide approves or denies a waiting query.
func (n *Node) Decide(ctx context.Context, queryID string, approve bool, by string) error {
	n.approvalMu.Lock()
	a, ok := n.approvals[queryID]
	if ok {
		delete(n.approvals, queryID)
	}
	n.approvalMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: no query %s is awaiting approval", ErrBadRequest, queryID)
	}
	a.decision <- approve
	action := "query.approved"
	if !approve {
		action = "query.denied"
	}
	n.record(ctx, by, action, queryID, map[string]any{"analyst": a.Analyst})
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
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.Approvals())
	})
	decide := func(approve bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := n.Decide(r.Context(), r.PathValue("id"), approve, "node-admin@"+n.id); err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
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
