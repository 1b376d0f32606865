package e2e

// Issue 16, the node admin's commands against real processes: `fedstat
// node status` and `fedstat node query` answer while the node daemon runs
// (through its admin socket, not the store it holds), give the exact
// figures of the node's data, and are reachable nowhere on the network;
// a mistyped --data-dir is refused with exit status 1, creating nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
)

func TestNodeAdminWhileDaemonRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data := syntheticData(t, 3, 150)
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3})
	dir := nodeDir(p, 0)
	want := data[0].TableCounts()

	out, stderr, err := cli(t, p, "node", "status", "--data-dir", dir, "--format", "json")
	if err != nil {
		t.Fatalf("node status while the daemon runs: %v\n%s%s", err, out, stderr)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("node status --format json: %v\n%s", err, out)
	}
	for table, n := range want {
		if st.Tables[table] != n {
			t.Errorf("node status while the daemon runs: %s has %d rows, the node was given %d", table, st.Tables[table], n)
		}
	}

	out, stderr, err = cli(t, p, "node", "query", "--data-dir", dir, "--format", "json", "SELECT COUNT(*) FROM patients")
	if err != nil {
		t.Fatalf("node query while the daemon runs: %v\n%s%s", err, out, stderr)
	}
	var res struct {
		Exact bool `json:"exact"`
		Rows  []struct {
			Values []struct {
				Value *float64 `json:"value"`
			} `json:"values"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Exact || len(res.Rows) != 1 || res.Rows[0].Values[0].Value == nil ||
		int(*res.Rows[0].Values[0].Value) != want["patients"] {
		t.Errorf("node query while the daemon runs: %v\n%s\nwant exactly %d patients", err, out, want["patients"])
	}

	// The daemon goes on serving the network meanwhile.
	if out, stderr, err := cli(t, p, "query", "--min-nodes", "3", "--deadline", "30s", demo.CohortQuery); err != nil {
		t.Errorf("an analyst's query after the admin's: %v\n%s%s", err, out, stderr)
	}

	// The exact answers have one door: the admin socket, mode 0600.
	if fi, err := os.Stat(node.AdminSocket(dir)); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("admin socket %s: %v %v, want a socket of mode 0600", node.AdminSocket(dir), err, fi)
	}
	for _, path := range []string{"/local/status", "/status", "/approvals"} {
		resp, err := http.Get("http://" + p.NodeOps[0] + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the node's ops endpoint answers %s with %d: %s", path, resp.StatusCode, b)
		}
	}

	// A mistyped data directory: exit status 1, named, nothing made.
	typo := dir + "-typo"
	for _, cmd := range [][]string{{"query", "SELECT COUNT(*) FROM patients"}, {"status"}, {"check"}, {"approvals"}} {
		out, stderr, err := cli(t, p, append([]string{"node", cmd[0], "--data-dir", typo}, cmd[1:]...)...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr, "data directory "+typo+" does not exist") || out != "" {
			t.Errorf("fedstat node %s --data-dir %s: %v, stdout %q, stderr %q", cmd[0], typo, err, out, stderr)
		}
		if _, err := os.Stat(typo); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("fedstat node %s made %s (%v)", cmd[0], typo, err)
		}
	}
}
