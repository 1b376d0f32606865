package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"github.com/fedstat/fedstat/test/testkit"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/audit"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

var fedstatBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// buildBinary builds cmd/fedstat once for the package's process tests
// (TestMain removes it).
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process test builds the binary; skipped with -short")
	}
	fedstatBin.once.Do(func() {
		if fedstatBin.dir, fedstatBin.err = os.MkdirTemp("", "fedstat-demo-test"); fedstatBin.err == nil {
			fedstatBin.path, fedstatBin.err = testkit.BuildBinary(fedstatBin.dir)
		}
	})
	if fedstatBin.err != nil {
		t.Fatal(fedstatBin.err)
	}
	return fedstatBin.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{fedstatBin.dir, hookBin.dir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// serve starts a network of processes of the built binary in a temporary
// directory (o.Binary and o.Dir are set here); it is stopped when the test
// ends, and the end of every log is shown if the test failed.
func serve(t *testing.T, ctx context.Context, o demo.ServeOptions) *demo.Processes {
	t.Helper()
	o.Binary, o.Dir = buildBinary(t), t.TempDir()
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

// dumpLogs shows the end of the coordinator's and the nodes' logs.
func dumpLogs(t *testing.T, dir string, nodes int) {
	t.Helper()
	names := []string{"coordinator"}
	for i := range nodes {
		names = append(names, demo.NodeID(i))
	}
	for _, name := range names {
		b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("%s.log (end):\n%s", name, b)
	}
}

// cli runs the fedstat binary with the analyst's environment.
func cli(t *testing.T, p *demo.Processes, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(p.Binary, args...)
	cmd.Env = os.Environ()
	for k, v := range p.Env {
		if k != "FEDSTAT_TOKEN" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// httpJSON calls the coordinator's HTTP/JSON API with the analyst's token.
func httpJSON(t *testing.T, p *demo.Processes, method, path, body string) (int, []byte) {
	t.Helper()
	return httpJSONAs(t, p, p.Env["FEDSTAT_TOKEN"], method, path, body)
}

// httpJSONAs is httpJSON with another bearer token (p.OperatorToken).
func httpJSONAs(t *testing.T, p *demo.Processes, token, method, path, body string) (int, []byte) {
	t.Helper()
	c, err := p.HTTPClient(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, p.Env["FEDSTAT_HTTP"]+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiCall calls the HTTP/JSON API like httpJSON, fails the test unless the
// answer is 200 OK, and decodes it into out.
func apiCall(t *testing.T, p *demo.Processes, method, path, body string, out proto.Message) {
	t.Helper()
	code, b := httpJSON(t, p, method, path, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
	if err := protojson.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// TestProcesses runs the coordinator and three nodes as separate OS
// processes of the built binary: data imported with `fedstat node import`,
// nodes admitted by gossip, queries through the CLI and through HTTP/JSON, a
// node killed (min_nodes behaviour), and the coordinator killed and
// restarted with its history and the budgets intact.
func TestProcesses(t *testing.T) {
	data, err := demo.Synthetic(3, 500, 7)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3})

	// A query through the CLI, as JSON.
	_, stderr := cliQueryJSON(t, p, 3, demo.CohortQuery)
	if !strings.Contains(stderr, "node-1 answered") {
		t.Errorf("no progress on stderr: %q", stderr)
	}

	// The same kind of query through HTTP/JSON with a bearer token.
	code, body := httpJSON(t, p, "POST", "/v1/queries", `{"spec": {"sql": "SELECT sex, COUNT(*) FROM patients GROUP BY sex", "epsilon": 0.5}}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/queries: %d %s", code, body)
	}
	var st coordinatorv1.QueryStatus
	if err := protojson.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	httpQuery := st.QueryId
	code, body = httpJSON(t, p, "GET", "/v1/queries/"+httpQuery+"/watch", "")
	if code != http.StatusOK || !strings.Contains(string(body), "STATE_DONE") {
		t.Fatalf("watch: %d %s", code, body)
	}
	// The dashboard is where the env file says.
	if p.Env["FEDSTAT_DASHBOARD"] != p.Env["FEDSTAT_HTTP"]+"/" {
		t.Errorf("FEDSTAT_DASHBOARD = %q", p.Env["FEDSTAT_DASHBOARD"])
	}
	if code, body := httpJSON(t, p, "GET", "/", ""); code != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Errorf("dashboard: %d %.200s", code, body)
	}
	// A bad query is refused with its position.
	code, body = httpJSON(t, p, "POST", "/v1/queries", `{"spec": {"sql": "SELECT COUNT(*) FROM conditions WHERE cod = 'x'"}}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "did you mean") {
		t.Fatalf("bad query over HTTP: %d %s", code, body)
	}

	budgetBefore := budgets(t, p)

	// Kill a node: min_nodes 3 fails naming it, and nothing is decrypted;
	// min_nodes 2 (with threshold 2) still releases.
	p.Nodes[2].Kill()
	_, stderr, err = cli(t, p, "query", "--min-nodes", "3", "--deadline", "10s", demo.CohortQuery)
	if err == nil || !strings.Contains(stderr, "node-3") || !strings.Contains(stderr, "nothing was decrypted") {
		t.Fatalf("query with node-3 dead and min_nodes 3: err %v, stderr %q", err, stderr)
	}
	out, stderr, err := cli(t, p, "query", "--min-nodes", "2", "--deadline", "10s", "--format", "json", demo.CohortQuery)
	if err != nil || !strings.Contains(out, `"nodes": 2`) {
		t.Fatalf("query with node-3 dead and min_nodes 2: %v %s %s", err, out, stderr)
	}

	// Restart the coordinator after SIGKILL: history and budgets intact.
	// (Nothing is in flight here: both queries above have ended, so every
	// debit they caused is already in the nodes' ledgers.)
	beforeKill := budgets(t, p)
	p.Coordinator.Kill()
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	code, body = httpJSON(t, p, "GET", "/v1/queries/"+httpQuery, "")
	if code != http.StatusOK || !strings.Contains(string(body), "STATE_DONE") || !strings.Contains(string(body), "female") {
		t.Fatalf("query history after restart: %d %s", code, body)
	}
	after := budgets(t, p)
	for node, spent := range budgetBefore {
		if node == "node-3" {
			continue // killed
		}
		if after[node] < spent {
			t.Errorf("budget of analyst at %s went from %v to %v across a restart", node, spent, after[node])
		}
	}
	for node, spent := range beforeKill {
		if after[node] != spent {
			t.Errorf("budget of analyst at %s was %v before the coordinator's SIGKILL and %v after its restart", node, spent, after[node])
		}
	}
	out, _, err = cli(t, p, "nodes")
	if err != nil || !strings.Contains(out, "node-1") || !strings.Contains(out, "node-3") {
		t.Fatalf("fedstat nodes after restart: %v %s", err, out)
	}

	// Every node's and the coordinator's audit log verifies.
	p.Stop()
	for _, name := range []string{"coordinator", "node-1", "node-2", "node-3"} {
		f, err := os.Open(filepath.Join(p.Dir, name, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := audit.Verify(f)
		f.Close()
		if err != nil || n == 0 {
			t.Errorf("audit log of %s: %d entries, %v", name, n, err)
		}
	}
}

// cliResult is what `fedstat query --format json` prints, as far as the
// tests read it.
type cliResult struct {
	Rows []struct {
		Values []struct {
			Value   float64 `json:"value"`
			Display string  `json:"display"`
		} `json:"values"`
	} `json:"rows"`
	Nodes int `json:"nodes"`
}

// cliQueryJSON runs `fedstat query --format json ARGS...` and checks that it
// released one row from the given number of nodes; it returns the result
// and the progress printed on stderr.
func cliQueryJSON(t *testing.T, p *demo.Processes, nodes int, args ...string) (cliResult, string) {
	t.Helper()
	out, stderr, err := cli(t, p, append([]string{"query", "--format", "json"}, args...)...)
	if err != nil {
		t.Fatalf("fedstat query: %v\n%s", err, stderr)
	}
	var res cliResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Rows) != 1 || res.Nodes != nodes {
		t.Fatalf("query JSON %q: %v", out, err)
	}
	return res, stderr
}

// budgets returns the analyst's spent rho per node (HTTP API).
func budgets(t *testing.T, p *demo.Processes) map[string]float64 {
	t.Helper()
	var r coordinatorv1.BudgetResponse
	apiCall(t, p, "GET", "/v1/budget", "", &r)
	out := map[string]float64{}
	for _, n := range r.Nodes {
		if n.Error == "" {
			out[n.NodeId] = n.SpentRho
		}
	}
	if len(out) == 0 {
		t.Fatalf("no node reported a budget: %v", &r)
	}
	return out
}
