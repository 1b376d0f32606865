package e2e

// Liveness tests of issue 14 with separate OS processes of the built binary
// on loopback (3 nodes, T = 2, min_nodes 3): the coordinator killed at a
// named step of the key ceremony, a node whose clock is 20 minutes ahead, a
// node whose threshold share is damaged or deleted, a node restarted with an
// empty data directory, and the coordinator restarted without its data
// directory. In each the network reaches a usable key epoch and answers a
// query with nobody doing more than the fault itself.
//
// Faults that need a hook (the coordinator exiting at a step, a skewed
// clock, loopback gossip timings) use a binary built with the
// fedstat_testhooks tag (cmd/fedstat/internal/daemon/testhooks.go); the others run the
// release binary.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"github.com/fedstat/fedstat/test/testkit"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

var hookBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// buildHookBinary builds cmd/fedstat with the fedstat_testhooks tag once
// (TestMain removes it).
func buildHookBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process test builds the binary; skipped with -short")
	}
	hookBin.once.Do(func() {
		if hookBin.dir, hookBin.err = os.MkdirTemp("", "fedstat-hooks-test"); hookBin.err == nil {
			hookBin.path, hookBin.err = testkit.BuildBinaryTags(hookBin.dir, "fedstat_testhooks")
		}
	})
	if hookBin.err != nil {
		t.Fatal(hookBin.err)
	}
	return hookBin.path
}

// serveHooked is serve with the test-hooks binary.
func serveHooked(t *testing.T, ctx context.Context, o demo.ServeOptions) *demo.Processes {
	t.Helper()
	o.Binary, o.Dir = buildHookBinary(t), t.TempDir()
	p, err := demo.Serve(ctx, o)
	if err != nil {
		dumpLogs(t, o.Dir, len(o.Data))
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			dumpLogs(t, o.Dir, len(o.Data))
		}
	})
	return p
}

// opsGet fetches an ops endpoint of the coordinator (/readyz, /metrics).
func opsGet(t *testing.T, p *demo.Processes, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.Ops + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the metric line that starts with name (0 if
// there is none).
func metric(t *testing.T, p *demo.Processes, name string) float64 {
	t.Helper()
	_, body := opsGet(t, p, "/metrics")
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// nodesView is the operator's view of the network (GET /v1/nodes).
func nodesView(t *testing.T, p *demo.Processes) *coordinatorv1.NodesResponse {
	t.Helper()
	var r coordinatorv1.NodesResponse
	apiCall(t, p, "GET", "/v1/nodes", "", &r)
	return &r
}

// waitExited waits until pr has ended and returns its exit code.
func waitExited(t *testing.T, ctx context.Context, pr *demo.Proc, what string) int {
	t.Helper()
	select {
	case <-pr.Exited():
		return pr.Cmd.ProcessState.ExitCode()
	case <-ctx.Done():
		t.Fatalf("gave up waiting for %s", what)
		return 0
	}
}

// logHas reports whether a line of the log of daemon name contains every
// text.
func logHas(t *testing.T, p *demo.Processes, name string, texts ...string) bool {
	t.Helper()
	return logLine(t, p, name, 0, texts...) >= 0
}

// logLine returns the number of the first line at or after line from of the
// log of daemon name that contains every text (-1 if none).
func logLine(t *testing.T, p *demo.Processes, name string, from int, texts ...string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, name+".log"))
	if err != nil {
		return -1
	}
	for i, line := range strings.Split(string(b), "\n") {
		all := i >= from
		for _, s := range texts {
			all = all && strings.Contains(line, s)
		}
		if all {
			return i
		}
	}
	return -1
}

// TestLivenessCoordinatorKilledInCeremony kills the coordinator (it exits,
// as after a crash) right after it admitted a node, after it collected the
// members' CKG shares (they hold a pending epoch), and after every member
// installed the epoch but before the coordinator stored it. Restarted
// without the hook, it reaches a usable key epoch on its own (an epoch id
// newer than any the nodes made keys for) and the network answers a query.
func TestLivenessCoordinatorKilledInCeremony(t *testing.T) {
	data, err := demo.Synthetic(3, 200, 17)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"after-admission", "after-ckg-shares", "before-epoch-stored"} {
		t.Run(step, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			p := serveHooked(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3, NoWait: true,
				DaemonEnv: map[string][]string{"coordinator": {"FEDSTAT_TEST_EXIT_AT=" + step}}})
			if code := waitExited(t, ctx, p.Coordinator, "the coordinator to exit at "+step); code != 3 {
				t.Fatalf("the coordinator exited with %d, want 3 (the hook at %s)", code, step)
			}
			if !logHas(t, p, "coordinator", "exiting at ceremony step", "step="+step) {
				t.Fatalf("the coordinator did not exit at %s", step)
			}
			delete(p.DaemonEnv, "coordinator")
			if err := p.StartCoordinator(); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitReady(ctx, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			v := nodesView(t, p)
			if step != "after-admission" && v.GetEpoch() < 2 {
				t.Errorf("key epoch %d after a restart at %s; want a new id above the nodes' epoch 1", v.GetEpoch(), step)
			}
			for _, n := range v.GetNodes() {
				if n.GetEpoch() != v.GetEpoch() {
					t.Errorf("%s is at epoch %d, the coordinator at %d", n.GetNodeId(), n.GetEpoch(), v.GetEpoch())
				}
			}
			cliQueryJSON(t, p, 3, demo.CohortQuery)
		})
	}
}

// TestLivenessClockSkew starts node-3 with its clock 20 minutes ahead. Every
// key ceremony fails on node-3's CKG share, and the coordinator retries with
// backoff; /readyz, the metrics and the operator's view say why and when it
// tries next. Once node-3 runs with a correct clock again, a retry succeeds
// and the network answers a query, without anyone touching the coordinator.
func TestLivenessClockSkew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 200, 19)
	if err != nil {
		t.Fatal(err)
	}
	p := serveHooked(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3, NoWait: true,
		DaemonEnv: map[string][]string{"node-3": {"FEDSTAT_TEST_CLOCK_OFFSET=20m"}}})
	waitFor(t, ctx, "two failed key ceremonies", func() bool {
		return metric(t, p, `fedstat_coordinator_key_ceremonies_total{result="failed"}`) >= 2
	})
	code, readyz := opsGet(t, p, "/readyz")
	t.Logf("/readyz while node-3's clock is 20 minutes ahead: %d %s", code, readyz)
	for _, s := range []string{"no key epoch", "key ceremony failed", "CKG share of node-3", "stale or future timestamp", "next attempt in"} {
		if code != http.StatusServiceUnavailable || !strings.Contains(readyz, s) {
			t.Errorf("/readyz: %d %q; want 503 saying %q", code, readyz, s)
		}
	}
	cs := nodesView(t, p).GetCeremony()
	if cs.GetState() != "retrying" && cs.GetState() != "running" || cs.GetFailures() < 1 || !strings.Contains(cs.GetLastError(), "node-3") {
		t.Errorf("operator's view of the ceremony: %v", cs)
	}
	if cs.GetState() == "retrying" && cs.GetNextAttemptUnixMs() <= cs.GetLastAttemptUnixMs() {
		t.Errorf("next attempt %d not after the last %d", cs.GetNextAttemptUnixMs(), cs.GetLastAttemptUnixMs())
	}
	if out, stderr, err := cli(t, p, "nodes"); err != nil || !strings.Contains(out, "key ceremony: ") || !strings.Contains(out, "failed attempt(s)") ||
		!strings.Contains(out, "CKG share of node-3") {
		t.Errorf("fedstat nodes: %v\n%s%s", err, out, stderr)
	}

	// node-3's clock is fixed (it runs without the offset).
	delete(p.DaemonEnv, "node-3")
	p.Nodes[2].Stop(10 * time.Second)
	if err := p.StartNode(2); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if cs := nodesView(t, p).GetCeremony(); cs.GetState() != "idle" || cs.GetFailures() != 0 {
		t.Errorf("ceremony after the success: %v", cs)
	}
	if metric(t, p, `fedstat_coordinator_key_ceremonies_total{result="ok"}`) != 1 {
		t.Errorf("successful ceremonies: %v, want 1", metric(t, p, `fedstat_coordinator_key_ceremonies_total{result="ok"}`))
	}
	cliQueryJSON(t, p, 3, demo.CohortQuery)
}

// damage makes a node's threshold share of an epoch unusable: cut in half
// (the key store reads it, it does not decode) or deleted.
func damage(t *testing.T, p *demo.Processes, node string, epoch uint64, del bool) {
	t.Helper()
	path := filepath.Join(p.Dir, node, "keys", fmt.Sprintf("epoch-%d-threshold.secret", epoch))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if del {
		err = os.Remove(path)
	} else {
		err = os.WriteFile(path, b[:len(b)/2], 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestLivenessThresholdShareLost damages node-2's threshold share (cut in
// half), then, in the next epoch, deletes node-1's. The coordinator takes
// readiness reports only at start here (health_interval 1h), so each loss is
// found by the release itself: the first decryptor set fails at the PREPARE
// step, before any share has left a node, and the query is released by
// another T-subset over the same partials. Each node is charged once per
// query. The failing member's readiness report, taken at once, makes the
// coordinator re-key with it (the default policy).
func TestLivenessThresholdShareLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 23)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3, CoordinatorConfig: "health_interval = \"1h\"\n"})
	var released []*coordinatorv1.QueryStatus
	for _, tc := range []struct {
		node, want string
		del        bool
		others     []string
	}{
		{"node-2", "damaged", false, []string{"node-1", "node-3"}},
		{"node-1", "missing", true, []string{"node-2", "node-3"}},
	} {
		e := nodesView(t, p).GetEpoch()
		damage(t, p, tc.node, e, tc.del)
		st := waitEnd(t, ctx, p, submit(t, p, demo.CohortQuery, 3, time.Minute))
		if st.State != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 {
			t.Fatalf("query with %s's threshold share %s: %v %q", tc.node, tc.want, st.State, st.Error)
		}
		np := nodeProgress(st, tc.node)
		if np.GetStatus() != "answered" || !strings.Contains(np.GetError(), "release attempt 1 (prepare)") ||
			!strings.Contains(np.GetError(), fmt.Sprintf("threshold share of epoch %d: %s", e, tc.want)) {
			t.Errorf("%s in the query: %q %q; want answered, replaced as decryptor naming its share", tc.node, np.GetStatus(), np.GetError())
		}
		for _, id := range tc.others {
			if s := nodeProgress(st, id).GetStatus(); s != "decrypted" {
				t.Errorf("%s: %q, want decrypted", id, s)
			}
		}
		released = append(released, st)
		waitFor(t, ctx, "a new key epoch with "+tc.node, func() bool {
			code, _ := opsGet(t, p, "/readyz")
			return code == http.StatusOK && nodesView(t, p).GetEpoch() > e
		})
	}
	var rho float64
	for _, st := range released {
		rho += st.GetResult().GetRho()
	}
	for id, spent := range budgetsOf(t, p) {
		if spent != rho {
			t.Errorf("%s spent %v, want %v: one debit per query", id, spent, rho)
		}
	}
	p.Stop()
	for node, per := range auditDebits(t, p) {
		for _, st := range released {
			if per[st.QueryId] != 1 {
				t.Errorf("%s debited %s %d times, want once", node, st.QueryId, per[st.QueryId])
			}
		}
	}
}

// TestLivenessEmptyDataDir restarts node-3 with an empty data directory and
// the same certificate. The coordinator sees from its readiness report that
// a member of the key epoch lost its keys, and re-keys with it (the default
// policy); the network answers a query with min_nodes 3.
func TestLivenessEmptyDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 29)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3})
	e := nodesView(t, p).GetEpoch()
	p.Nodes[2].Stop(10 * time.Second)
	if err := os.RemoveAll(filepath.Join(p.Dir, "node-3")); err != nil {
		t.Fatal(err)
	}
	if err := p.StartNode(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a new key epoch with node-3", func() bool {
		v := nodesView(t, p)
		if v.GetEpoch() <= e {
			return false
		}
		for _, n := range v.GetNodes() {
			if n.GetEpoch() != v.GetEpoch() {
				return false
			}
		}
		code, _ := opsGet(t, p, "/readyz")
		return code == http.StatusOK
	})
	if !logHas(t, p, "coordinator", "new key epoch", "re-key with node-3, which lost its keys of key epoch") {
		t.Errorf("the coordinator's log does not say why it re-keyed")
	}
	cliQueryJSON(t, p, 3, demo.CohortQuery)
}

// TestLivenessCoordinatorStateLost kills the coordinator, deletes its data
// directory, keeps it down for longer than the nodes keep gossiping to a
// member they declared dead, and starts it again: it knows no node and no
// epoch. The nodes, not restarted, join it again by gossip (one of them
// re-joins it, the others learn of it by gossip); it admits them, makes a
// key epoch and answers a query.
func TestLivenessCoordinatorStateLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 200, 31)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"FEDSTAT_TEST_GOSSIP_FAST=1"}
	p := serveHooked(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3,
		DaemonEnv: map[string][]string{"coordinator": env, "node-1": env, "node-2": env, "node-3": env}})
	cliQueryJSON(t, p, 3, demo.CohortQuery)
	pids := make([]int, len(p.Nodes))
	for i, n := range p.Nodes {
		pids[i] = n.Cmd.Process.Pid
	}

	p.Coordinator.Kill()
	if err := os.RemoveAll(filepath.Join(p.Dir, "coordinator")); err != nil {
		t.Fatal(err)
	}
	for i := range p.Nodes {
		waitFor(t, ctx, demo.NodeID(i)+" to declare the coordinator gone", func() bool {
			return logHas(t, p, demo.NodeID(i), "gossip member gone", "member=coordinator")
		})
	}
	// The outage outlasts the time the nodes keep gossiping to a member
	// they declared dead (1s with loopback timings): memberlist alone would
	// never reach the coordinator again. This models the outage's length;
	// it synchronises nothing.
	time.Sleep(3 * time.Second)
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	v := nodesView(t, p)
	if len(v.GetNodes()) != 3 {
		t.Errorf("the restarted coordinator knows %d nodes, want 3", len(v.GetNodes()))
	}
	rejoined := 0
	for i, n := range p.Nodes {
		select {
		case <-n.Exited():
			t.Errorf("%s exited", demo.NodeID(i))
		default:
		}
		if n.Cmd.Process.Pid != pids[i] {
			t.Errorf("%s was restarted", demo.NodeID(i))
		}
		if gone := logLine(t, p, demo.NodeID(i), 0, "gossip member gone", "member=coordinator"); logLine(t, p, demo.NodeID(i), gone+1, "gossip joined") > gone {
			rejoined++
		}
	}
	if rejoined == 0 {
		t.Errorf("no node logs that it joined the coordinator again")
	}
	cliQueryJSON(t, p, 3, demo.CohortQuery)
}

// TestReleaseBinaryHasNoTestHooks: the fault hooks of these tests exist only
// in a binary built with the fedstat_testhooks tag; the release binary does
// not even contain the names of their variables.
func TestReleaseBinaryHasNoTestHooks(t *testing.T) {
	hooks := []string{"FEDSTAT_TEST_EXIT_AT", "FEDSTAT_TEST_CLOCK_OFFSET", "FEDSTAT_TEST_GOSSIP_FAST"}
	for _, tc := range []struct {
		bin   string
		hooks bool
	}{{buildBinary(t), false}, {buildHookBinary(t), true}} {
		b, err := os.ReadFile(tc.bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hooks {
			if strings.Contains(string(b), h) != tc.hooks {
				t.Errorf("%s contains %s: %v, want %v", tc.bin, h, !tc.hooks, tc.hooks)
			}
		}
	}
}
