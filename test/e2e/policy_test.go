package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fedclient "github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// auditEntries returns the entries of node i's audit log.
func auditEntries(t *testing.T, nw *demo.Network, i int) []audit.Entry {
	t.Helper()
	return auditLog(t, filepath.Join(nw.Dir, demo.NodeID(i), "audit.log"))
}

// auditLog returns the entries of the audit log at path.
func auditLog(t *testing.T, path string) []audit.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Entry
	if err := audit.Scan(f, func(_ int, e audit.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func refusedWith(entries []audit.Entry, reason string) bool {
	for _, e := range entries {
		if e.Action == "query.refused" {
			if r, _ := e.Details["reason"].(string); strings.Contains(r, reason) {
				return true
			}
		}
	}
	return false
}

// TestNodePolicyRefusals: a node refuses a forbidden role, a query kind its
// policy forbids and a cohort under its minimum, with a clear error for the
// analyst and an entry in the node's audit log; allowed queries still run.
func TestNodePolicyRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The cohort check is noisy (issue 13, finding 3); rho 0.3 makes its
	// noise sd 1.3, so that 0 patients are refused at every node.
	pol := &node.Policy{Roles: []pki.Role{pki.RoleAnalyst}, Kinds: []string{"count"}, MinNodes: 2, MinCohort: 20, MinCohortRho: 0.3}
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 400), Threshold: 2, MinNodes: 3, NodePolicy: pol, AuditLogs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)

	run := func(who *pki.Identity, sql string) (string, error) {
		client := dialCoordinator(t, nw, who)
		st, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: sql})
		if st != nil && st.Error != "" {
			return st.Error, err
		}
		if err != nil {
			return err.Error(), err
		}
		return "", nil
	}

	// Allowed: an analyst's cohort count (hypertension: well above 20 per node).
	if msg, err := run(nil, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'"); err != nil {
		t.Fatalf("allowed query refused: %s", msg)
	}

	// A role the nodes' policy does not allow (the operator).
	msg, err := run(nw.Operator, "SELECT COUNT(*) FROM patients")
	if err == nil || !strings.Contains(msg, `role "operator" may not query`) {
		t.Fatalf("operator at analyst-only nodes: %q", msg)
	}
	// A query kind the policy forbids (a mean).
	msg, err = run(nil, "SELECT AVG(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'")
	if err == nil || !strings.Contains(msg, `query kind "mean" is not allowed`) {
		t.Fatalf("forbidden kind: %q", msg)
	}
	// A cohort under the minimum (an unknown code: 0 patients).
	msg, err = run(nil, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'no-such-code'")
	if err == nil || !strings.Contains(msg, "below its minimum of 20") {
		t.Fatalf("small cohort: %q", msg)
	}
	for i := range nw.Nodes {
		entries := auditEntries(t, nw, i)
		for _, reason := range []string{`role "operator" may not query`, `query kind "mean" is not allowed`, "below its minimum of 20"} {
			if !refusedWith(entries, reason) {
				t.Errorf("%s: no audit entry for the refusal %q", demo.NodeID(i), reason)
			}
		}
	}
	// Refusals by role and kind debit nothing (they do not depend on the
	// data); the cohort refusal is decided on a noisy count and charged, as
	// is the allowed query: two debits at every node.
	for i := range nw.Nodes {
		debits := 0
		for _, e := range auditEntries(t, nw, i) {
			if e.Action == "budget.debited" {
				debits++
			}
		}
		if debits != 2 {
			t.Errorf("%s: %d debits, want 2 (the allowed query and the charged cohort check)", demo.NodeID(i), debits)
		}
	}
}

// TestMinCohortIsNotAFreeOracle replays the audit's attack on min_cohort
// (issue 13, finding 3): probes of "SELECT COUNT(*) FROM patients WHERE
// birth_date <= 'D'" at epsilon 1e-4, bisecting on D with node-1's refusal
// as the oracle. When the node decided on the exact count and a refusal
// debited nothing, 16 probes found the exact 20th oldest birth date and half
// of them were free. Now every probe is charged at node-1 (query plus the
// check's rho), the refusal is decided on a noisy count and says so.
func TestMinCohortIsNotAFreeOracle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pol := node.DefaultPolicy()
	pol.MinCohort = 20
	data := syntheticData(t, 3, 300)
	nw, err := demo.Start(ctx, demo.Options{Data: data, Threshold: 2, MinNodes: 2, NodePolicy: pol, AuditLogs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	client := dialCoordinator(t, nw, nil)

	lo, hi := cdm.DateFromYMD(1900, 1, 1), cdm.DateFromYMD(2025, 1, 1)
	const probes = 16
	refused := 0
	for range probes {
		mid := lo + (hi-lo)/2
		sql := fmt.Sprintf("SELECT COUNT(*) FROM patients WHERE birth_date <= '%s'", mid)
		st, _ := runQuery(ctx, client, &typesv1.QuerySpec{Sql: sql, Epsilon: 1e-4})
		if st == nil {
			t.Fatalf("probe %s: no status", mid)
		}
		small := false
		for _, ns := range st.GetNodes() {
			if ns.GetNodeId() == demo.NodeID(0) && strings.Contains(ns.GetError(), "below its minimum of 20") {
				small = true
				if !strings.Contains(ns.GetError(), "noisy count") {
					t.Errorf("refusal does not say it was decided on a noisy count: %q", ns.GetError())
				}
			}
		}
		if small {
			refused++
			lo = mid
		} else {
			hi = mid
		}
	}
	if refused == 0 || refused == probes {
		t.Fatalf("the bisection never crossed the threshold (%d of %d refused)", refused, probes)
	}
	debits, rho := 0, 0.0
	for _, e := range auditEntries(t, nw, 0) {
		if e.Action == "budget.debited" {
			debits++
			r, err := e.Details["rho"].(json.Number).Float64()
			if err != nil {
				t.Fatalf("debit entry without rho: %v", e.Details)
			}
			rho += r
		}
	}
	if debits != probes {
		t.Errorf("node-1 debited %d of %d probes (%d were refused): a refusal must be charged", debits, probes, refused)
	}
	if want := float64(probes) * node.DefaultMinCohortRho; rho < want {
		t.Errorf("node-1 charged rho %.4g for %d probes, want at least %.4g (the checks alone)", rho, probes, want)
	}
}

// TestApprovalQueue: with require_approval, a query waits at every node
// until the node admin approves it (the coordinator asks again while it
// waits), and each node tells its approval webhook once (node, query id,
// analyst, SQL), however often it is asked; a denied query fails and debits
// nothing.
func TestApprovalQueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hook := &webhook{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	pol := node.DefaultPolicy()
	pol.RequireApproval = true
	pol.ApprovalWebhook = hs.URL
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 300), Threshold: 2, MinNodes: 2, NodePolicy: pol, AuditLogs: true,
		CoordinatorConfig: func(c *coordinator.Config) { c.ApprovalPoll = 100 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	client := dialCoordinator(t, nw, nil)

	decideAll := func(approve bool) {
		for _, n := range nw.Nodes {
			for {
				waiting, err := n.Approvals()
				if err != nil {
					t.Fatal(err)
				}
				if len(waiting) == 1 {
					if err := n.Decide(ctx, waiting[0].QueryID, approve, "admin"); err != nil {
						t.Error(err)
					}
					break
				}
				select {
				case <-ctx.Done():
					t.Fatal("query never reached the approval queue")
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2})
		done <- err
	}()
	decideAll(true)
	if err := <-done; err != nil {
		t.Fatalf("approved query: %v", err)
	}
	waitFor(t, ctx, "the approval webhook to hear from every node", func() bool { return len(hook.received()) >= 3 })
	nodesTold := map[any]bool{}
	for _, a := range hook.received() {
		nodesTold[a["node"]] = true
		if a["query_id"] == "" || a["analyst"] != "analyst" || a["sql"] != demo.CohortQuery {
			t.Errorf("approval note %v", a)
		}
	}
	if len(nodesTold) != 3 || len(hook.received()) != 3 {
		t.Errorf("%d approval notes from %v, want the 3 nodes once each", len(hook.received()), nodesTold)
	}
	go func() {
		// Fresh: the same question again would be answered from the
		// release above, and no node would be asked.
		_, err := client.Run(ctx, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 2}, fedclient.RunOptions{Fresh: true})
		done <- err
	}()
	decideAll(false)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("denied query: %v", err)
	}
	for i := range nw.Nodes {
		var approved, denied bool
		for _, e := range auditEntries(t, nw, i) {
			approved = approved || e.Action == "query.approved"
			denied = denied || e.Action == "query.denied"
		}
		if !approved || !denied {
			t.Errorf("%s: audit has approved=%v denied=%v", demo.NodeID(i), approved, denied)
		}
	}
}

// TestCatalogueMismatchRefused: a node whose catalogue differs from the
// coordinator's (here max_nodes_per_patient) would noise and encode its
// partial for another plan than the one the coordinator decodes with; it
// refuses the query, naming the catalogue, instead of skewing the total.
func TestCatalogueMismatchRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 200), Threshold: 2, MinNodes: 3,
		NodeCatalogue: func(i int, c *plan.Catalogue) *plan.Catalogue {
			if i != 1 {
				return c
			}
			other := *c
			other.MaxNodesPerPatient = 2
			return &other
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	st, err := runQuery(ctx, dialCoordinator(t, nw, nil), &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients"})
	if err == nil && st.GetError() == "" {
		t.Fatal("a node with another catalogue answered")
	}
	for _, ns := range st.GetNodes() {
		if ns.GetNodeId() == demo.NodeID(1) && !strings.Contains(ns.GetError(), "network catalogue") {
			t.Errorf("%s: %q, want a refusal naming the catalogue", ns.GetNodeId(), ns.GetError())
		}
	}
}
