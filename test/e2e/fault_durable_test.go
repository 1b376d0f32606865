package e2e

// Issue 14 over separate processes: the ledger never goes backwards and a
// damaged node never forgets what it spent. A node's files are damaged
// while it is stopped (its Badger MANIFEST deleted, its whole store
// wiped, its write-ahead log zeroed after SIGKILL, its high-water mark,
// audit log or threshold share deleted, an older backup restored) and
// each time the daemon refuses to start naming the file and the fix, or
// starts not ready as designed; `fedstat node check` says the same; the
// repair is `fedstat node restore` of an older backup; and the spend the
// coordinator sees at each node never decreases. At the end each node's
// ledger is reconciled with its audit log.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"github.com/fedstat/fedstat/node/check"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

func nodeConfig(p *demo.Processes, i int) string { return filepath.Join(p.Dir, demo.NodeID(i)+".toml") }
func nodeDir(p *demo.Processes, i int) string    { return filepath.Join(p.Dir, demo.NodeID(i)) }

// startRefused starts node i, waits (up to a minute) for it to exit, and
// returns what it logged.
func startRefused(t *testing.T, ctx context.Context, p *demo.Processes, i int) string {
	t.Helper()
	logPath := filepath.Join(p.Dir, demo.NodeID(i)+".log")
	var off int64
	if st, err := os.Stat(logPath); err == nil {
		off = st.Size()
	}
	if err := p.StartNode(i); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	select {
	case <-p.Nodes[i].Exited():
	case <-wait.Done():
		p.Nodes[i].Kill()
		t.Fatalf("%s started; want it to refuse", demo.NodeID(i))
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(off, io.SeekStart)
	b, _ := io.ReadAll(f)
	return string(b)
}

// startOK starts node i and waits until it is up and the coordinator
// reaches it (it fails the test if the node exits instead).
func startOK(t *testing.T, ctx context.Context, p *demo.Processes, i int) {
	t.Helper()
	if err := p.StartNode(i); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, demo.NodeID(i)+" to be reachable", func() bool {
		select {
		case <-p.Nodes[i].Exited():
			b, _ := os.ReadFile(filepath.Join(p.Dir, demo.NodeID(i)+".log"))
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Fatalf("%s exited at start:\n%s", demo.NodeID(i), b)
		default:
		}
		return len(budgets(t, p)) == p.NodeCount()
	})
}

// readyz returns the status code and body of node i's /readyz ("" when
// it does not answer).
func readyz(p *demo.Processes, i int) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.NodeOps[i] + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// nodeCLI runs `fedstat node CMD --config node-i.toml ARGS...`.
func nodeCLI(t *testing.T, p *demo.Processes, i int, cmd string, args ...string) (string, error) {
	t.Helper()
	out, stderr, err := cli(t, p, append([]string{"node", cmd, "--config", nodeConfig(p, i)}, args...)...)
	return out + stderr, err
}

// nodeReport runs `fedstat node check --format json` on node i.
func nodeReport(t *testing.T, p *demo.Processes, i int) *check.Report {
	t.Helper()
	out, _, _ := cli(t, p, "node", "check", "--config", nodeConfig(p, i), "--format", "json")
	var r check.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("fedstat node check --format json: %v\n%s", err, out)
	}
	return &r
}

// wantAll fails unless s contains every text.
func wantAll(t *testing.T, what, s string, texts ...string) {
	t.Helper()
	for _, x := range texts {
		if !strings.Contains(s, x) {
			t.Fatalf("%s does not mention %q:\n%s", what, x, s)
		}
	}
}

// wantCheck runs `fedstat node check` on the stopped node i and wants a
// non-zero exit and a FAIL line of check name mentioning texts.
func wantCheck(t *testing.T, p *demo.Processes, i int, name string, texts ...string) {
	t.Helper()
	out, err := nodeCLI(t, p, i, "check")
	if err == nil {
		t.Fatalf("fedstat node check exited 0 on a damaged node:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL "+name) {
			ok := true
			for _, x := range texts {
				ok = ok && strings.Contains(line, x)
			}
			if ok {
				return
			}
		}
	}
	t.Fatalf("fedstat node check: no FAIL %s line mentioning %q:\n%s", name, texts, out)
}

// spendLog tracks the spend the coordinator sees at each node and fails
// the test when one goes down.
type spendLog struct {
	t    *testing.T
	p    *demo.Processes
	high map[string]float64
}

func (s *spendLog) see(step string) map[string]float64 {
	s.t.Helper()
	now := budgetsOf(s.t, s.p)
	if s.high == nil {
		s.high = map[string]float64{}
	}
	for id, v := range now {
		if v < s.high[id]-1e-9 {
			s.t.Errorf("%s: %s's spend went back from %v to %v", step, id, s.high[id], v)
		}
		s.high[id] = math.Max(s.high[id], v)
	}
	return now
}

// runQueries runs n cohort queries (min_nodes 2) and fails unless each is
// released.
func runQueries(t *testing.T, ctx context.Context, p *demo.Processes, n int) {
	t.Helper()
	for range n {
		qid := submit(t, p, demo.CohortQuery, 2, time.Minute)
		if st := waitEnd(t, ctx, p, qid); st.State != coordinatorv1.State_STATE_DONE {
			t.Fatalf("query %s: %v %s", qid, st.State, st.Error)
		}
	}
}

// zeroWALTail zeroes the second half of what was written to the newest
// non-empty write-ahead log file of a store, as a torn write after a
// crash leaves it, and returns the file.
func zeroWALTail(t *testing.T, kvDir string) string {
	t.Helper()
	mems, _ := filepath.Glob(filepath.Join(kvDir, "*.mem"))
	sort.Strings(mems)
	for j := len(mems) - 1; j >= 0; j-- {
		b, err := os.ReadFile(mems[j])
		if err != nil {
			t.Fatal(err)
		}
		end := len(b)
		for end > 0 && b[end-1] == 0 {
			end--
		}
		if end == 0 {
			continue
		}
		f, err := os.OpenFile(mems[j], os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, end-end/2), int64(end/2)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return mems[j]
	}
	t.Fatalf("no written write-ahead log in %s (%v)", kvDir, mems)
	return ""
}

// reconcile stops the network and checks every node's ledger against its
// audit log: the check passes, the ledger is not below the log's debits
// (equal but for charges whose audit entry a SIGKILL cut off, which the
// check lists), and no query id was debited twice.
func reconcile(t *testing.T, p *demo.Processes) {
	t.Helper()
	p.Stop()
	for i := range p.NodeCount() {
		r := nodeReport(t, p, i)
		if !r.OK() || r.Ledger == nil || r.Audit == nil {
			t.Errorf("%s after the run: check not OK: %+v", demo.NodeID(i), r.Results)
			continue
		}
		if g := r.Ledger.Below(*r.Audit); g != nil {
			t.Errorf("%s: ledger %v below its audit log %v", demo.NodeID(i), r.Ledger, r.Audit)
		}
		if d := r.Ledger.TotalRho - r.Audit.TotalRho; d > 1e-9 && len(r.Unaudited) == 0 {
			t.Errorf("%s: ledger %v above its audit log %v with no unaudited charge to explain it", demo.NodeID(i), r.Ledger, r.Audit)
		}
	}
	for node, per := range auditDebits(t, p) {
		for qid, n := range per {
			if n > 1 {
				t.Errorf("%s debited %s %d times", node, qid, n)
			}
		}
	}
}

// TestDurableStoreLoss: node-3's store is lost three ways, each repaired
// by restoring the same old backup: its MANIFEST deleted, its whole store
// wiped (rm -rf kv), its write-ahead log's second half zeroed after
// SIGKILL. Each time the daemon refuses to start naming the file and the
// fix, `fedstat node check` fails naming them, the restore keeps the spend
// after the backup, and the spend the coordinator sees never decreases.
func TestDurableStoreLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 5)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2})
	const n3 = 2
	spend := &spendLog{t: t, p: p}

	runQueries(t, ctx, p, 2)
	p.Nodes[n3].Stop(15 * time.Second)
	bk := filepath.Join(t.TempDir(), "node-3.fsbk")
	if out, err := nodeCLI(t, p, n3, "backup", bk); err != nil {
		t.Fatalf("fedstat node backup: %v\n%s", err, out)
	}
	startOK(t, ctx, p, n3)
	spend.see("after the backup")
	runQueries(t, ctx, p, 2)
	before := spend.see("four queries")

	repair := func(step string) {
		t.Helper()
		out, err := nodeCLI(t, p, n3, "restore", bk)
		if err != nil {
			t.Fatalf("%s: fedstat node restore: %v\n%s", step, err, out)
		}
		if out, err := nodeCLI(t, p, n3, "check"); err != nil {
			t.Fatalf("%s: check after the restore: %v\n%s", step, err, out)
		}
		startOK(t, ctx, p, n3)
		if got := spend.see(step)["node-3"]; math.Abs(got-spend.high["node-3"]) > 1e-9 {
			t.Errorf("%s: node-3 spent %v after restoring the old backup, want %v", step, got, spend.high["node-3"])
		}
	}

	// 1. The MANIFEST deleted.
	p.Nodes[n3].Stop(15 * time.Second)
	manifest := filepath.Join(nodeDir(p, n3), "kv", "MANIFEST")
	os.Remove(manifest)
	log := startRefused(t, ctx, p, n3)
	wantAll(t, "node-3's refusal", log, manifest, "fedstat node restore")
	wantCheck(t, p, n3, "store", manifest, "fedstat node restore")
	repair("MANIFEST deleted")

	// 2. The whole store wiped.
	p.Nodes[n3].Stop(15 * time.Second)
	os.RemoveAll(filepath.Join(nodeDir(p, n3), "kv"))
	log = startRefused(t, ctx, p, n3)
	wantAll(t, "node-3's refusal", log, "the store is missing", "ledger.hwm records", "fedstat node restore")
	wantCheck(t, p, n3, "store", "missing", "fedstat node restore")
	if _, err := os.Stat(filepath.Join(nodeDir(p, n3), "kv")); !os.IsNotExist(err) {
		t.Errorf("the refused start created a store: %v", err)
	}
	repair("store wiped")

	// 3. SIGKILL after more queries, and the second half of the write-ahead
	// log zeroed: Badger would replay up to the damage and drop the rest.
	runQueries(t, ctx, p, 3)
	spend.see("three more queries")
	p.Nodes[n3].Kill()
	mem := zeroWALTail(t, filepath.Join(nodeDir(p, n3), "kv"))
	log = startRefused(t, ctx, p, n3)
	wantAll(t, "node-3's refusal", log, "rolled back", filepath.Base(mem), "fedstat node restore")
	wantCheck(t, p, n3, "store", "rolled back", filepath.Base(mem))
	repair("write-ahead log zeroed")

	runQueries(t, ctx, p, 1)
	after := spend.see("a query after the repairs")
	if after["node-3"] <= before["node-3"] {
		t.Errorf("node-3 spent %v at the end, %v before the damage", after["node-3"], before["node-3"])
	}
	reconcile(t, p)
}

// TestDurableSideFiles: the files next to the store. The high-water mark
// deleted: the node starts and re-creates it. The audit log deleted: the
// node refuses to start; the old backup restores it with the spend
// carried forward. The threshold share deleted: the node starts but is not
// ready for the epoch (its /readyz and `fedstat node check` name the
// file); restoring the backup puts the share back. A restore over the
// running daemon is refused.
func TestDurableSideFiles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 5)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2})
	const n3 = 2
	spend := &spendLog{t: t, p: p}
	runQueries(t, ctx, p, 2)
	p.Nodes[n3].Stop(15 * time.Second)
	bk := filepath.Join(t.TempDir(), "node-3.fsbk")
	if out, err := nodeCLI(t, p, n3, "backup", bk); err != nil {
		t.Fatalf("fedstat node backup: %v\n%s", err, out)
	}
	startOK(t, ctx, p, n3)
	runQueries(t, ctx, p, 2)
	spend.see("four queries")

	// A restore over the running daemon.
	if out, err := nodeCLI(t, p, n3, "restore", bk); err == nil || !strings.Contains(out, "stop it first") {
		t.Errorf("restore over the running daemon: %v\n%s", err, out)
	}
	if out, err := nodeCLI(t, p, n3, "check"); err != nil || !strings.Contains(out, "running and ready") {
		t.Errorf("check of the running daemon: %v\n%s", err, out)
	}

	// 1. The high-water mark deleted (a fresh volume for it, say).
	p.Nodes[n3].Stop(15 * time.Second)
	mark := filepath.Join(nodeDir(p, n3), check.MarkFile)
	os.Remove(mark)
	out, err := nodeCLI(t, p, n3, "check")
	if err != nil || !strings.Contains(out, "warn mark") {
		t.Errorf("check without the mark: %v\n%s", err, out)
	}
	startOK(t, ctx, p, n3)
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the mark was not re-created: %v", err)
	}
	spend.see("mark re-created")

	// 2. The audit log deleted.
	p.Nodes[n3].Stop(15 * time.Second)
	auditLog := filepath.Join(nodeDir(p, n3), "audit.log")
	os.Remove(auditLog)
	log := startRefused(t, ctx, p, n3)
	wantAll(t, "node-3's refusal", log, auditLog, "missing", "fedstat node reset-audit")
	wantCheck(t, p, n3, "audit", auditLog, "missing")
	if out, err := nodeCLI(t, p, n3, "restore", bk); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	startOK(t, ctx, p, n3)
	if got := spend.see("audit log restored")["node-3"]; math.Abs(got-spend.high["node-3"]) > 1e-9 {
		t.Errorf("node-3 spent %v after the restore, want %v", got, spend.high["node-3"])
	}
	runQueries(t, ctx, p, 1)
	spend.see("a query")

	// 3. The threshold share deleted: the node starts, not ready for the
	// epoch, naming the file; it still answers queries.
	p.Nodes[n3].Stop(15 * time.Second)
	shares, _ := filepath.Glob(filepath.Join(nodeDir(p, n3), "keys", "epoch-*-threshold.secret"))
	sort.Strings(shares)
	if len(shares) == 0 {
		t.Fatal("no threshold share")
	}
	share := shares[len(shares)-1]
	os.Remove(share)
	wantCheck(t, p, n3, "keys", share)
	if out, _ := nodeCLI(t, p, n3, "check"); !strings.Contains(out, "the daemon starts, not ready for epoch") {
		t.Errorf("check: the share's failure should say the daemon starts not ready:\n%s", out)
	}
	startOK(t, ctx, p, n3)
	if code, body := readyz(p, n3); code != http.StatusServiceUnavailable || !strings.Contains(body, share) {
		t.Errorf("node-3's /readyz without its share: %d %q", code, body)
	}
	if out, err := nodeCLI(t, p, n3, "check"); err == nil || !strings.Contains(out, share) {
		t.Errorf("check of the running, not ready daemon: %v\n%s", err, out)
	}
	qid := submit(t, p, demo.CohortQuery, 2, time.Minute)
	st := waitEnd(t, ctx, p, qid)
	np := nodeProgress(st, "node-3")
	switch {
	case st.State == coordinatorv1.State_STATE_DONE:
		t.Logf("query with node-3 unable to decrypt: released from %d nodes (node-3 %s)", st.GetResult().GetNodes(), np.GetStatus())
	case !strings.Contains(st.Error+np.GetError(), share):
		t.Errorf("query with node-3 unable to decrypt failed without naming the share: %q / node-3 %q", st.Error, np.GetError())
	default:
		// The coordinator chose node-3 as a decryptor (choosing by
		// readiness is the coordinator's part); the failure names it.
		t.Logf("query with node-3 unable to decrypt: %v, %s", st.State, st.Error)
	}
	spend.see("query without node-3's share")
	p.Nodes[n3].Stop(15 * time.Second)
	if out, err := nodeCLI(t, p, n3, "restore", bk); err != nil || !strings.Contains(out, share) {
		t.Fatalf("restore to put the share back: %v\n%s", err, out)
	}
	startOK(t, ctx, p, n3)
	waitFor(t, ctx, "node-3 ready again", func() bool { code, _ := readyz(p, n3); return code == http.StatusOK })
	runQueries(t, ctx, p, 1)
	spend.see("the end")
	reconcile(t, p)
}

// TestDurableFullDisk: node-3's data directory is on a small file system
// that fills up while it runs: it stays up, reports not ready, the
// coordinator's query names it and the cause and releases from the other
// two; with space freed it is ready again and answers.
func TestDurableFullDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 5)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "node-3")
	os.MkdirAll(mnt, 0o700)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=320m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	o := demo.ServeOptions{Binary: buildBinary(t), Dir: dir, Data: data, Threshold: 2, MinNodes: 2}
	p, err := demo.Serve(ctx, o)
	if err != nil {
		dumpLogs(t, dir, 3)
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			dumpLogs(t, dir, 3)
		}
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	spend := &spendLog{t: t, p: p}
	runQueries(t, ctx, p, 1)
	spend.see("one query")

	// Fill the file system to 200 MiB short of the 256 MiB kv keeps free.
	var fs syscall.Statfs_t
	syscall.Statfs(mnt, &fs)
	free := int64(fs.Bavail) * int64(fs.Bsize)
	filler := filepath.Join(mnt, "filler")
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(free-200<<20), filler).CombinedOutput(); err != nil {
		t.Fatalf("fallocate: %v %s", err, out)
	}
	waitFor(t, ctx, "node-3 not ready for lack of space", func() bool {
		code, body := readyz(p, 2)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left")
	})
	qid := submit(t, p, demo.CohortQuery, 2, time.Minute)
	st := waitEnd(t, ctx, p, qid)
	wantReleasedWithout(t, "query on a full disk", st, "node-3", "node-3", "no space left")
	select {
	case <-p.Nodes[2].Exited():
		t.Fatal("node-3 exited on a full disk")
	default:
	}
	spend.see("full disk")

	os.Remove(filler)
	waitFor(t, ctx, "node-3 ready with space freed", func() bool { code, _ := readyz(p, 2); return code == http.StatusOK })
	qid = submit(t, p, demo.CohortQuery, 2, time.Minute)
	if st := waitEnd(t, ctx, p, qid); st.State != coordinatorv1.State_STATE_DONE || nodeProgress(st, "node-3").GetStatus() == "failed" {
		t.Errorf("query after space was freed: %v, node-3 %q %q", st.State, nodeProgress(st, "node-3").GetStatus(), nodeProgress(st, "node-3").GetError())
	}
	spend.see("space freed")
	reconcile(t, p)
}
