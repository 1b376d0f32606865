package e2e

// The long robustness run of issue 14, behind a flag:
//
//	go test -race -run TestRobustLong -robust.long -robust.duration 10m -timeout 30m ./test/e2e/
//
// Three node processes (T = 2) and a coordinator; queries run all the time
// while nodes are killed (SIGKILL), stopped (SIGTERM), damaged while down
// (MANIFEST deleted, store wiped, write-ahead log zeroed, high-water mark,
// audit log or threshold share deleted), backed up and restored from older
// backups, at random steps, one node at a time. Checked all along: the
// spend the coordinator sees at a node never goes down; a node either
// starts, or starts not ready as designed, or refuses naming the file and
// the fix, and is then repaired by `fedstat node restore`; every query
// ends, released or failed with a reason; no node dies on its own. At the
// end every node's ledger is reconciled with its audit log (the sum of its
// debits equals its ledger's spend but for charges a SIGKILL separated from
// their audit entry, which `fedstat node check` lists) and no query id was
// debited twice at a node.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"google.golang.org/protobuf/encoding/protojson"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

var (
	robustLong     = flag.Bool("robust.long", false, "run TestRobustLong, the long robustness run (kills, restarts, corruptions while queries run)")
	robustDuration = flag.Duration("robust.duration", 10*time.Minute, "how long TestRobustLong runs its chaos")
	robustSeed     = flag.Uint64("robust.seed", 0, "seed of TestRobustLong's schedule (0: from the clock; the seed is logged)")
)

// robustStats are the figures of a robustness run.
type robustStats struct {
	mu          sync.Mutex
	Seed        uint64         `json:"seed"`
	Duration    string         `json:"duration"`
	Iterations  int            `json:"iterations"`
	Kills       int            `json:"kills"`
	Stops       int            `json:"stops"`
	Corruptions map[string]int `json:"corruptions"`
	// Outcomes of starts after a corruption, by kind and outcome
	// (started, not-ready, refused).
	Outcomes    map[string]int `json:"outcomes"`
	Backups     int            `json:"backups"`
	Restores    int            `json:"restores"`
	QueriesOK   int            `json:"queries_ok"`
	QueriesFail int            `json:"queries_failed"`
	// FailReasons counts failed queries by the start of their error.
	FailReasons map[string]int `json:"fail_reasons"`
	// Violations lists every broken invariant.
	Violations []string `json:"violations"`
}

func (s *robustStats) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Violations = append(s.Violations, fmt.Sprintf(format, args...))
}

func (s *robustStats) count(m map[string]int, k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[k]++
}

// apiNoFatal calls the coordinator's HTTP/JSON API like apiCall, returning
// errors instead of failing the test (it runs outside the test goroutine).
func apiNoFatal(c *http.Client, p *demo.Processes, method, path, body string, out *coordinatorv1.QueryStatus) error {
	req, err := http.NewRequest(method, p.Env["FEDSTAT_HTTP"]+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.Env["FEDSTAT_TOKEN"])
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return protojson.Unmarshal(b, out)
}

// runQueriesUntil submits cohort queries one after another until ctx
// ends, and records how each ended.
func runQueriesUntil(ctx context.Context, p *demo.Processes, st *robustStats, rhoOut *float64, rhoMu *sync.Mutex) {
	c, err := p.HTTPClient(30 * time.Second)
	if err != nil {
		st.violate("query runner: %v", err)
		return
	}
	for ctx.Err() == nil {
		var q coordinatorv1.QueryStatus
		body := fmt.Sprintf(`{"spec": {"sql": %q, "min_nodes": 2}, "deadline_ms": 30000}`, demo.CohortQuery)
		if err := apiNoFatal(c, p, "POST", "/v1/queries", body, &q); err != nil {
			st.violate("submit failed: %v", err)
			return
		}
		end := time.Now().Add(2 * time.Minute)
		for {
			if err := apiNoFatal(c, p, "GET", "/v1/queries/"+q.QueryId, "", &q); err != nil {
				st.violate("status of %s: %v", q.QueryId, err)
				return
			}
			if terminalState(q.State) {
				break
			}
			if time.Now().After(end) {
				st.violate("query %s did not end within 2 minutes (state %v)", q.QueryId, q.State)
				break
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		switch {
		case q.State == coordinatorv1.State_STATE_DONE:
			st.mu.Lock()
			st.QueriesOK++
			st.mu.Unlock()
			rhoMu.Lock()
			*rhoOut = q.GetResult().GetRho()
			rhoMu.Unlock()
		case terminalState(q.State):
			st.mu.Lock()
			st.QueriesFail++
			st.mu.Unlock()
			if q.Error == "" {
				st.violate("query %s failed without a reason", q.QueryId)
			}
			reason := q.Error
			if len(reason) > 160 {
				reason = reason[:160]
			}
			st.count(st.FailReasons, reason)
		}
	}
}

func TestRobustLong(t *testing.T) {
	if !*robustLong {
		t.Skip("the long robustness run; enable with -robust.long (and -robust.duration)")
	}
	seed := *robustSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 14))
	st := &robustStats{Seed: seed, Duration: robustDuration.String(), Corruptions: map[string]int{}, Outcomes: map[string]int{}, FailReasons: map[string]int{}}
	t.Logf("seed %d (rerun with -robust.seed %d)", seed, seed)

	ctx, cancel := context.WithTimeout(context.Background(), *robustDuration+10*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 5)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2,
		NodeConfig: func(int) string { return "\n[budget]\ntotal_rho = 100000\nper_analyst_rho = 100000\n" }})
	spend := &spendLog{t: t, p: p}
	backups := make([]string, p.NodeCount())
	backupDir := t.TempDir()

	// Every node's backup before anything happens.
	takeBackup := func(i int) {
		t.Helper()
		b := filepath.Join(backupDir, fmt.Sprintf("%s-%d.fsbk", demo.NodeID(i), st.Backups))
		if out, err := nodeCLI(t, p, i, "backup", b); err != nil {
			st.violate("backup of %s: %v %s", demo.NodeID(i), err, out)
			return
		}
		backups[i] = b
		st.Backups++
	}
	for i := range p.NodeCount() {
		p.Nodes[i].Stop(15 * time.Second)
		takeBackup(i)
		startOK(t, ctx, p, i)
	}
	spend.see("start")

	// Queries all along.
	qctx, qstop := context.WithCancel(ctx)
	var rho float64
	var rhoMu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() { runQueriesUntil(qctx, p, st, &rho, &rhoMu) })

	// settle starts node i and waits until it is reachable, not ready, or
	// has exited (refused); it returns what it logged when it exited.
	settle := func(i int) (exited bool, log string) {
		t.Helper()
		logPath := filepath.Join(p.Dir, demo.NodeID(i)+".log")
		var off int64
		if fi, err := os.Stat(logPath); err == nil {
			off = fi.Size()
		}
		if err := p.StartNode(i); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			select {
			case <-p.Nodes[i].Exited():
				b, _ := os.ReadFile(logPath)
				if int64(len(b)) > off {
					b = b[off:]
				}
				return true, string(b)
			case <-time.After(200 * time.Millisecond):
			}
			if _, ok := budgetsQuiet(p)[demo.NodeID(i)]; ok {
				return false, ""
			}
			if time.Now().After(deadline) {
				st.violate("%s neither reachable nor exited 2 minutes after its start", demo.NodeID(i))
				return false, ""
			}
		}
	}
	// repair restores node i's latest backup and starts it.
	repair := func(i int, why string) {
		t.Helper()
		if out, err := nodeCLI(t, p, i, "check"); err == nil {
			st.violate("%s: fedstat node check passed on a node that refused to start (%s):\n%s", demo.NodeID(i), why, out)
		}
		out, err := nodeCLI(t, p, i, "restore", backups[i])
		st.Restores++
		if err != nil {
			st.violate("%s: restore after %s: %v\n%s", demo.NodeID(i), why, err, out)
			return
		}
		if exited, log := settle(i); exited {
			st.violate("%s: refused to start after its restore (%s):\n%s", demo.NodeID(i), why, log)
		}
	}
	// cleanRefusal checks that a refusal names the file and a fix.
	cleanRefusal := func(i int, kind, log string, names ...string) {
		if !strings.Contains(log, "refusing to start") || !strings.Contains(log, "fix:") {
			st.violate("%s after %s exited without a clean refusal:\n%s", demo.NodeID(i), kind, log)
		}
		for _, n := range names {
			if !strings.Contains(log, n) {
				st.violate("%s after %s: the refusal does not name %s:\n%s", demo.NodeID(i), kind, n, log)
			}
		}
	}

	kinds := []string{"manifest", "wipe-store", "zero-wal", "delete-mark", "delete-audit", "delete-share", "restore-old-backup"}
	var order []string
	start := time.Now()
	for time.Since(start) < *robustDuration {
		st.Iterations++
		// Let queries run for a while (the schedule, not a wait for an event).
		select {
		case <-time.After(time.Duration(500+rng.IntN(3000)) * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("out of time")
		}
		for i, n := range p.Nodes {
			select {
			case <-n.Exited():
				st.violate("%s exited on its own (iteration %d)", demo.NodeID(i), st.Iterations)
				if exited, log := settle(i); exited {
					st.violate("%s does not start again: %s", demo.NodeID(i), log)
				}
			default:
			}
		}
		i := rng.IntN(p.NodeCount())
		node := demo.NodeID(i)
		dir := nodeDir(p, i)
		switch r := rng.IntN(100); {
		case r < 30: // SIGKILL and restart
			p.Nodes[i].Kill()
			st.Kills++
			if exited, log := settle(i); exited {
				st.violate("%s refused to start after a plain SIGKILL: %s", node, log)
				repair(i, "SIGKILL")
			}
		case r < 45: // SIGTERM and restart
			p.Nodes[i].Stop(15 * time.Second)
			st.Stops++
			if exited, log := settle(i); exited {
				st.violate("%s refused to start after SIGTERM: %s", node, log)
				repair(i, "SIGTERM")
			}
		case r < 55: // a fresh backup
			p.Nodes[i].Stop(15 * time.Second)
			st.Stops++
			takeBackup(i)
			if exited, log := settle(i); exited {
				st.violate("%s refused to start after a backup: %s", node, log)
			}
		default: // SIGKILL, damage, start, repair if refused
			p.Nodes[i].Kill()
			st.Kills++
			// Every kind in turn, in a random order each round.
			if len(order) == 0 {
				order = slices.Clone(kinds)
				rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
			}
			kind := order[0]
			order = order[1:]
			st.count(st.Corruptions, kind)
			var names []string
			switch kind {
			case "manifest":
				os.Remove(filepath.Join(dir, "kv", "MANIFEST"))
				names = []string{"MANIFEST"}
			case "wipe-store":
				os.RemoveAll(filepath.Join(dir, "kv"))
				names = []string{"missing"}
			case "zero-wal":
				names = []string{filepath.Base(zeroWALTail(t, filepath.Join(dir, "kv")))}
			case "delete-mark":
				os.Remove(filepath.Join(dir, "ledger.hwm"))
			case "delete-audit":
				os.Remove(filepath.Join(dir, "audit.log"))
				names = []string{"audit.log"}
			case "delete-share":
				shares, _ := filepath.Glob(filepath.Join(dir, "keys", "epoch-*-threshold.secret"))
				sort.Strings(shares)
				if len(shares) > 0 {
					os.Remove(shares[len(shares)-1])
					names = []string{shares[len(shares)-1]}
				}
			case "restore-old-backup":
				if out, err := nodeCLI(t, p, i, "restore", backups[i]); err != nil {
					st.violate("%s: restore of an old backup: %v\n%s", node, err, out)
				}
				st.Restores++
			}
			exited, log := settle(i)
			switch {
			case exited:
				st.count(st.Outcomes, kind+": refused")
				switch kind {
				case "delete-mark", "delete-share", "restore-old-backup":
					st.violate("%s refused to start after %s (it should start): %s", node, kind, log)
				}
				cleanRefusal(i, kind, log, names...)
				repair(i, kind)
			case kind == "delete-share" && len(names) > 0:
				code, body := readyz(p, i)
				if code != http.StatusServiceUnavailable || !strings.Contains(body, names[0]) {
					st.violate("%s without its threshold share: /readyz %d %q, want not ready naming it", node, code, body)
				}
				st.count(st.Outcomes, kind+": not-ready")
				p.Nodes[i].Stop(15 * time.Second)
				st.Stops++
				repair(i, kind)
			default:
				st.count(st.Outcomes, kind+": started")
				switch kind {
				case "manifest", "wipe-store", "delete-audit":
					st.violate("%s started after %s", node, kind)
				}
			}
		}
		// The spend the coordinator sees never goes down (nodes it cannot
		// reach are skipped).
		now := budgetsQuiet(p)
		for id, v := range now {
			if v < spend.high[id]-1e-9 {
				st.violate("iteration %d: %s's spend went back from %v to %v", st.Iterations, id, spend.high[id], v)
			}
			spend.high[id] = math.Max(spend.high[id], v)
		}
	}
	qstop()
	wg.Wait()

	// Reconcile every node's ledger with its audit log.
	p.Stop()
	rhoMu.Lock()
	perQuery := rho
	rhoMu.Unlock()
	for i := range p.NodeCount() {
		r := nodeReport(t, p, i)
		switch {
		case !r.OK() || r.Ledger == nil || r.Audit == nil:
			st.violate("%s: check after the run failed: %+v", demo.NodeID(i), r.Results)
		case r.Ledger.Below(*r.Audit) != nil:
			st.violate("%s: ledger %v below its audit log %v", demo.NodeID(i), r.Ledger, r.Audit)
		default:
			diff := r.Ledger.TotalRho - r.Audit.TotalRho
			want := float64(len(r.Unaudited)) * perQuery
			if math.Abs(diff-want) > 1e-9*math.Max(1, r.Ledger.TotalRho) {
				st.violate("%s: ledger %v, audit log %v: difference %v, want %v (%d unaudited charge(s) of %v)", demo.NodeID(i), r.Ledger.TotalRho, r.Audit.TotalRho, diff, want, len(r.Unaudited), perQuery)
			}
			t.Logf("%s: ledger %v; audit log %v; %d unaudited charge(s) %v; %d audit debit(s) without a ledger record",
				demo.NodeID(i), r.Ledger, r.Audit, len(r.Unaudited), firstN(r.Unaudited, 5), len(r.AuditOnly))
		}
	}
	for node, per := range auditDebits(t, p) {
		for qid, n := range per {
			if n > 1 {
				st.violate("%s debited %s %d times", node, qid, n)
			}
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	t.Logf("robustness run:\n%s", b)
	if path := os.Getenv("FEDSTAT_ROBUST_REPORT"); path != "" {
		os.WriteFile(path, b, 0o644)
	}
	if len(st.Violations) > 0 {
		t.Errorf("%d invariant violation(s)", len(st.Violations))
	}
}

// budgetsQuiet is budgets without failing the test (nodes that do not
// answer are left out).
func budgetsQuiet(p *demo.Processes) map[string]float64 {
	out := map[string]float64{}
	c, err := p.HTTPClient(30 * time.Second)
	if err != nil {
		return out
	}
	req, _ := http.NewRequest("GET", p.Env["FEDSTAT_HTTP"]+"/v1/budget", nil)
	req.Header.Set("Authorization", "Bearer "+p.Env["FEDSTAT_TOKEN"])
	resp, err := c.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r coordinatorv1.BudgetResponse
	if resp.StatusCode != http.StatusOK || protojson.Unmarshal(b, &r) != nil {
		return out
	}
	for _, n := range r.Nodes {
		if n.Error == "" {
			out[n.NodeId] = n.SpentRho
		}
	}
	return out
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "…")
	}
	return s
}
