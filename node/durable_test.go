package node_test

// The node's side of "the ledger never goes backwards" (issue 14): its
// high-water mark, its refusal to start below it, and what it does while
// running when it can no longer write safely. The whole start-up check is
// tested in node/check; the daemon over separate processes in
// test/e2e (fault_durable_test.go).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/keystore"
	"github.com/fedstat/fedstat/node/internal/ledger"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// keptNode opens the store of node-1 of a kept network directory and
// starts the node with a mark file and an audit log. It returns the error
// of node.New (the store and log are then closed again), else the node and
// a function that stops it and closes its store and log (also run when
// the test ends).
func keptNode(t *testing.T, dir string) (*node.Node, *kv.DB, func(), error) {
	t.Helper()
	nodeDir := filepath.Join(dir, "node-1")
	st, db, err := admin.OpenStore(context.Background(), admin.OpenOptions{DataDir: nodeDir})
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.Open(filepath.Join(nodeDir, "audit.log"))
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	n, err := node.New(node.Config{Identity: identity(t, dir, "node-1"), StateDir: nodeDir, DB: db, Data: st, Audit: alog,
		MarkFile: filepath.Join(nodeDir, evidence.MarkFile)})
	if err != nil {
		alog.Close()
		db.Close()
		return nil, nil, nil, err
	}
	done := false
	stop := func() {
		if !done {
			done = true
			n.Close()
			alog.Close()
			db.Close()
		}
	}
	t.Cleanup(stop)
	return n, db, stop, nil
}

// charge debits the ledger of a (closed) node's store directly, as earlier
// queries would have.
func charge(t *testing.T, nodeDir string, qids ...string) {
	t.Helper()
	db, err := kv.Open(kv.Options{Dir: admin.KVDir(nodeDir)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := ledger.New(db, ledger.Limits{})
	for _, q := range qids {
		if _, _, err := l.Charge(context.Background(), q, "alice", 0.0613, func() ([]byte, error) { return []byte("p"), nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNodeRefusesLedgerBelowItsMark: node.New writes the mark from the
// ledger at start; the same store brought back from before two debits
// (a copy of its directory) is refused, naming the mark and both
// figures; without the mark (a fresh volume, say) it starts and writes
// the mark again. The epoch record node/check reads agrees with the one
// the node wrote.
func TestNodeRefusesLedgerBelowItsMark(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	epoch := nw.Epoch
	nw.Close()
	nodeDir := filepath.Join(dir, "node-1")
	mark := filepath.Join(nodeDir, evidence.MarkFile)

	charge(t, nodeDir, "q-1")
	old := filepath.Join(t.TempDir(), "kv-old")
	if out, err := exec.Command("cp", "-a", admin.KVDir(nodeDir), old).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	charge(t, nodeDir, "q-2", "q-3")
	alog, err := audit.Open(filepath.Join(nodeDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	alog.Append(context.Background(), audit.Entry{Actor: "node-1", Action: "epoch.installed"})
	alog.Close()

	_, db, stop, err := keptNode(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := evidence.ReadMark(mark)
	if err != nil || m.Spend.Charges != 3 || m.Epoch != epoch || m.Node != "node-1" || m.AuditSeq == 0 {
		t.Fatalf("mark after start: %v, epoch %d, audit seq %d, %v; want 3 charges at epoch %d and the audit head", m.Spend, m.Epoch, m.AuditSeq, err, epoch)
	}
	e, ok, err := evidence.StoredEpoch(db)
	if !ok || err != nil || e.Epoch != epoch || e.Threshold != 2 || e.Members != 3 || !e.Installed {
		t.Errorf("evidence.StoredEpoch reads %+v (%v %v), want epoch %d, 2 of 3, installed", e, ok, err, epoch)
	}
	if a, ok, _ := evidence.ReadAnchor(db); !ok || a.Seq != m.AuditSeq || a.Hash != m.AuditHead {
		t.Errorf("audit head in the store %+v, in the mark %d %s", a, m.AuditSeq, m.AuditHead)
	}
	stop()

	// The store as it was before q-2 and q-3.
	os.RemoveAll(admin.KVDir(nodeDir))
	if err := os.Rename(old, admin.KVDir(nodeDir)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := keptNode(t, dir); err == nil || !strings.Contains(err.Error(), mark) || !strings.Contains(err.Error(), "1 charge(s)") ||
		!strings.Contains(err.Error(), "3 charge(s)") {
		t.Fatalf("node.New on a store older than its mark: %v; want a refusal naming %s and both figures", err, mark)
	}

	// Only the mark lost: the node starts and writes it again (the check
	// at the daemon's start compares the ledger with the audit log first).
	os.Remove(mark)
	if _, _, _, err := keptNode(t, dir); err != nil {
		t.Fatalf("start without the mark: %v", err)
	}
	if m, err := evidence.ReadMark(mark); err != nil || m.Spend.Charges != 1 {
		t.Errorf("mark re-created: %+v %v", m, err)
	}
}

// TestNodeNotReadyStaysUp: a node whose audit log is replaced while it runs
// stays up, answers Info, refuses Evaluate with FailedPrecondition naming
// itself and the cause (an analyst learns nothing of it), and says so in
// Ready. A node started without its threshold share answers, but refuses
// to decrypt in that epoch naming the file.
func TestNodeNotReadyStaysUp(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	epoch := nw.Epoch
	nw.Close()
	nodeDir := filepath.Join(dir, "node-1")

	n, _, stop, err := keptNode(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready of a healthy node: %v", err)
	}
	coord := dialNode(t, n.Addr(), identity(t, dir, "coordinator"), "node-1")
	analyst := dialNode(t, n.Addr(), identity(t, dir, "analyst"), "node-1")

	logPath := filepath.Join(nodeDir, "audit.log")
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := logPath + ".new"
	os.WriteFile(tmp, data, 0o600)
	os.Rename(tmp, logPath) // what sed -i does
	err = n.Ready()
	if !errors.Is(err, node.ErrNotReady) || !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "node-1") {
		t.Fatalf("Ready after the audit log was replaced: %v", err)
	}
	_, err = coord.Evaluate(ctx, &nodev1.EvaluateRequest{})
	if s := status.Convert(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "not ready") ||
		!strings.Contains(s.Message(), "node-1") || !strings.Contains(s.Message(), "replaced") {
		t.Errorf("Evaluate while the audit log is replaced: %v; want FailedPrecondition naming node-1 and the cause", err)
	}
	// The reveal steps write too (the set a partial or CKG share is
	// revealed in): refused the same way.
	for name, call := range map[string]func() error{
		"Reveal":       func() error { _, err := coord.Reveal(ctx, &nodev1.RevealRequest{}); return err },
		"RevealKeyGen": func() error { _, err := coord.RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{}); return err },
	} {
		if s := status.Convert(call()); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "not ready") {
			t.Errorf("%s while the audit log is replaced: %v; want FailedPrecondition, not ready", name, s.Err())
		}
	}
	if _, err := analyst.Evaluate(ctx, &nodev1.EvaluateRequest{}); status.Code(err) != codes.PermissionDenied || strings.Contains(err.Error(), "replaced") {
		t.Errorf("an analyst's Evaluate: %v; want PermissionDenied without the node's state", err)
	}
	if info, err := coord.Info(ctx, &nodev1.InfoRequest{}); err != nil || info.GetNodeId() != "node-1" {
		t.Errorf("Info of a node that is not ready: %v", err)
	}
	cancel()
	stop()

	// Restart with the threshold share gone. (The log verifies: it was
	// replaced with a copy of itself.)
	share := filepath.Join(nodeDir, "keys", fmt.Sprintf("epoch-%d-threshold.secret", epoch))
	if err := os.Remove(share); err != nil {
		t.Fatal(err)
	}
	n, _, _, err = keptNode(t, dir)
	if err != nil {
		t.Fatalf("start without the threshold share: %v; want a start, not ready for the epoch", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	coord = dialNode(t, n.Addr(), identity(t, dir, "coordinator"), "node-1")
	if err := n.ReadyForEpoch(epoch); !errors.Is(err, node.ErrNotReady) || !strings.Contains(err.Error(), share) {
		t.Errorf("ReadyForEpoch without the share: %v; want not ready naming %s", err, share)
	}
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), share) {
		t.Errorf("Ready without the share: %v", err)
	}
	_, err = coord.KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-1", Epoch: epoch})
	if s := status.Convert(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), share) {
		t.Errorf("KeySwitch without the share: %v; want FailedPrecondition naming the file", err)
	}
	// Queries are still answered (this empty one is refused for what it
	// is, not because the node cannot decrypt).
	if _, err := coord.Evaluate(ctx, &nodev1.EvaluateRequest{}); err == nil || strings.Contains(err.Error(), "not ready") {
		t.Errorf("Evaluate without the share: %v; want the request's own refusal", err)
	}
}

// The gRPC codes a coordinator gets from a node that is not ready.
func TestNotReadyCodes(t *testing.T) {
	for _, c := range []struct {
		cause error
		want  codes.Code
	}{
		{&kv.NoSpaceError{Path: "/d/kv", Op: "write"}, codes.ResourceExhausted},
		{&kv.DamageError{Dir: "/d/kv", File: "MANIFEST", Kind: kv.ErrDamaged}, codes.FailedPrecondition},
		{&audit.TamperError{Path: "/d/audit.log", What: "replaced"}, codes.FailedPrecondition},
		{&keystore.FileError{Name: "epoch-1-threshold", Kind: keystore.ErrNotFound}, codes.FailedPrecondition},
	} {
		err := fmt.Errorf("%w: node-1: %w", node.ErrNotReady, c.cause)
		if got := rpc.Code(err); got != c.want {
			t.Errorf("not ready because %v: %v, want %v", c.cause, got, c.want)
		}
	}
}
