package check_test

// Backups and restores (node/admin) checked with the start-up check: after
// a restore the node starts, and its spend is never below what it was.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/check"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

func (s *sim) backup(out string) *admin.Manifest {
	s.t.Helper()
	o := admin.BackupOptions{DataDir: s.dir}
	m, err := admin.Backup(context.Background(), o, out)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

func (s *sim) restore(in string, withIdentity bool) *admin.RestoreSummary {
	s.t.Helper()
	o := admin.RestoreOptions{DataDir: s.dir}
	if withIdentity {
		o.Identity = s.id
	}
	sum, err := admin.Restore(context.Background(), o, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return sum
}

func sameFigures(a, b ledger.Figures) bool { return a.Below(b) == nil && b.Below(a) == nil }

// wantHealthy runs the check and fails unless nothing failed.
func (s *sim) wantHealthy() *check.Report {
	s.t.Helper()
	r := s.run()
	if !r.OK() {
		var b strings.Builder
		for _, c := range r.Results {
			b.WriteString("\n  " + c.Line())
		}
		s.t.Fatalf("check after the restore failed:%s", b.String())
	}
	return r
}

// auditCarried returns the budget.carried_forward entries of the log.
func (s *sim) auditCarried() []audit.Entry {
	s.t.Helper()
	f, err := os.Open(s.auditPath())
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Entry
	audit.Scan(f, func(_ int, e audit.Entry) error {
		if e.Action == evidence.ActionCarriedForward {
			out = append(out, e)
		}
		return nil
	})
	return out
}

// Backup, spend, restore the old backup: the node has the spend after the
// backup, not before it; the per-query records of the queries after the
// backup (and a series interval's kept share) are kept; the audit log is
// kept with a carried-forward entry; the check passes; nothing was deleted.
func TestRestoreOldBackupKeepsTheSpend(t *testing.T) {
	for _, withID := range []bool{true, false} {
		t.Run(map[bool]string{true: "with identity", false: "without identity"}[withID], func(t *testing.T) {
			s := newSim(t)
			s.spend(3)
			bk := filepath.Join(t.TempDir(), "b.fsbk")
			m := s.backup(bk)
			if m.Ledger.Charges != 3 || m.Epoch != 1 || m.AuditEntries == 0 || m.Sealed {
				t.Fatalf("manifest %+v", m)
			}
			if raw, _ := os.ReadFile(bk); !strings.Contains(string(raw), "l/r/q-001") {
				t.Error("an unsealed backup does not hold the ledger's keys in the clear (the sealed test below relies on it)")
			}
			s.spend(4)
			after := s.figures()
			// A series interval's kept share (node.keepSeriesShare), made
			// after the backup beside its ledger answer: carried too.
			shareKey, share := []byte("n/series-share/s-flu-0123-L0.1"), []byte("kept share")
			db := s.open()
			if err := db.Update(func(tx *kv.Txn) error { return tx.Set(shareKey, share) }); err != nil {
				t.Fatal(err)
			}
			db.Close()

			sum := s.restore(bk, withID)
			if !sameFigures(sum.Spend, after) || sum.BackupLedger.Charges != 3 || !sum.AuditKept || sum.Records < 4 {
				t.Fatalf("restore: spend %v (want %v), backup %v, audit kept %v, records %d", sum.Spend, after, sum.BackupLedger, sum.AuditKept, sum.Records)
			}
			if got := s.figures(); !sameFigures(got, after) {
				t.Fatalf("ledger after restoring the old backup %v, want the spend after it %v", got, after)
			}
			db = s.open()
			got, err := db.Get(shareKey)
			db.Close()
			if err != nil || string(got) != string(share) {
				t.Errorf("the series share kept after the backup, after the restore: %q (%v)", got, err)
			}
			r := s.wantHealthy()
			if len(r.AuditOnly) != 0 {
				t.Errorf("debits without ledger records after a restore over a readable store: %v", r.AuditOnly)
			}
			if cf := s.auditCarried(); len(cf) != 1 || !strings.Contains(cf[0].Details["reason"].(string), "b.fsbk") {
				t.Errorf("carried-forward entries %v", cf)
			}
			for _, a := range sum.Aside {
				if _, err := os.Stat(a); err != nil {
					t.Errorf("moved aside but gone: %s", a)
				}
			}
			// And the node goes on from there.
			s.spend(1)
			if got := s.figures(); got.Charges != 8 {
				t.Errorf("charges after one more query: %d", got.Charges)
			}
			s.wantHealthy()
		})
	}
}

// The store is damaged (MANIFEST gone) or wiped: the restore cannot read
// it, and carries the spend from the mark and the audit log.
func TestRestoreOverALostStore(t *testing.T) {
	for name, damage := range map[string]func(s *sim){
		"MANIFEST deleted": func(s *sim) { os.Remove(filepath.Join(admin.KVDir(s.dir), "MANIFEST")) },
		"store wiped":      func(s *sim) { os.RemoveAll(admin.KVDir(s.dir)) },
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t)
			s.spend(2)
			bk := filepath.Join(t.TempDir(), "b.fsbk")
			s.backup(bk)
			s.spend(3)
			after := s.figures()
			damage(s)
			if r := s.run(); r.Fatal() == nil {
				t.Fatal("the damaged node passed the check")
			}
			sum := s.restore(bk, true)
			if sum.CurrentStore == "" || sum.Current != nil {
				t.Errorf("the current store was read: %v", sum.CurrentStore)
			}
			if got := s.figures(); !sameFigures(got, after) {
				t.Fatalf("ledger after restore %v, want %v", got, after)
			}
			r := s.wantHealthy()
			// The per-query records after the backup are lost with the
			// store; the audit log still names them.
			if len(r.AuditOnly) != 3 {
				t.Errorf("audit-only debits %v, want the 3 after the backup", r.AuditOnly)
			}
		})
	}
}

// The audit log is lost: the restore puts the backup's back, carries the
// spend from the store and the mark, and records it.
func TestRestoreOverALostAuditLog(t *testing.T) {
	s := newSim(t)
	s.spend(2)
	bk := filepath.Join(t.TempDir(), "b.fsbk")
	s.backup(bk)
	s.spend(2)
	after := s.figures()
	os.Remove(s.auditPath())
	sum := s.restore(bk, false)
	if sum.AuditKept || !sameFigures(s.figures(), after) {
		t.Fatalf("audit kept %v, ledger %v, want %v", sum.AuditKept, s.figures(), after)
	}
	r := s.wantHealthy()
	if !sameFigures(*r.Audit, after) {
		t.Errorf("the restored log proves %v, want %v (its carried-forward entry)", r.Audit, after)
	}
	if len(r.Unaudited) != 0 {
		t.Errorf("charges the carried-forward entry covers listed as unaudited: %v", r.Unaudited)
	}
	s.spend(1)
	if r := s.wantHealthy(); len(r.Unaudited) != 0 {
		t.Errorf("unaudited after a further query: %v", r.Unaudited)
	}
}

// A store encrypted at rest gives a sealed backup; the wrong key does not
// open it; a damaged backup is refused; a running daemon is not restored
// over.
func TestBackupSealedDamagedInUse(t *testing.T) {
	root := t.TempDir()
	keyFile := filepath.Join(root, "node.key")
	os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)), 0o600)
	s := newSimKeyed(t, keyFile)
	s.spend(2)
	bk := filepath.Join(t.TempDir(), "b.fsbk")
	m, err := admin.Backup(context.Background(), admin.BackupOptions{DataDir: s.dir, KeyFile: keyFile}, bk)
	if err != nil || !m.Sealed {
		t.Fatalf("sealed backup: %+v %v", m, err)
	}
	raw, _ := os.ReadFile(bk)
	if strings.Contains(string(raw), "l/r/q-001") {
		t.Error("the sealed backup holds a stored answer in the clear")
	}
	s.spend(1)
	other := filepath.Join(root, "other.key")
	os.WriteFile(other, []byte(strings.Repeat("cd", 32)), 0o600)
	if _, err := admin.Restore(context.Background(), admin.RestoreOptions{DataDir: s.dir, KeyFile: other}, bk); err == nil {
		t.Error("restored with another operator key")
	}
	if _, err := admin.Restore(context.Background(), admin.RestoreOptions{DataDir: s.dir, KeyFile: keyFile}, bk); err != nil {
		t.Fatal(err)
	}
	if f := s.figures(); f.Charges != 3 {
		t.Errorf("charges after restoring a sealed backup: %d, want 3", f.Charges)
	}

	bad := filepath.Join(t.TempDir(), "bad.fsbk")
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(bad, raw, 0o600)
	if _, err := admin.Restore(context.Background(), admin.RestoreOptions{DataDir: s.dir, KeyFile: keyFile}, bad); !errors.Is(err, admin.ErrBadBackup) {
		t.Errorf("damaged backup: %v", err)
	}
	os.WriteFile(bad, raw[:len(raw)/3], 0o600)
	if _, err := admin.Restore(context.Background(), admin.RestoreOptions{DataDir: s.dir, KeyFile: keyFile}, bad); !errors.Is(err, admin.ErrBadBackup) {
		t.Errorf("truncated backup: %v", err)
	}

	db := s.open() // as the daemon holds it
	defer db.Close()
	if _, err := admin.Restore(context.Background(), admin.RestoreOptions{DataDir: s.dir, KeyFile: keyFile}, bk); !errors.Is(err, admin.ErrDaemonRunning) {
		t.Errorf("restore over a running daemon: %v", err)
	}
	if _, err := admin.Backup(context.Background(), admin.BackupOptions{DataDir: s.dir, KeyFile: keyFile}, bk+"2"); !errors.Is(err, admin.ErrDaemonRunning) {
		t.Errorf("backup with the daemon running: %v", err)
	}
}

func newSimKeyed(t *testing.T, keyFile string) *sim {
	t.Helper()
	storeKey, ksKey, err := admin.Keys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return newSimWith(t, storeKey, ksKey)
}

// A lost audit log without a backup: reset-audit starts a new log that
// records the loss and the spend, and the node passes the check.
func TestResetAudit(t *testing.T) {
	s := newSim(t)
	s.spend(3)
	before := s.figures()
	os.Remove(s.auditPath())
	if r := s.run(); r.Fatal() == nil {
		t.Fatal("a node without its audit log passed")
	}
	sum, err := admin.ResetAudit(context.Background(), admin.ResetAuditOptions{DataDir: s.dir, Identity: s.id, Reason: "disk replaced"})
	if err != nil {
		t.Fatal(err)
	}
	if !sameFigures(sum.Spend, before) || sum.LostSeq == 0 {
		t.Errorf("reset: %+v", sum)
	}
	r := s.wantHealthy()
	if !sameFigures(*r.Audit, before) {
		t.Errorf("the new log proves %v, want %v", r.Audit, before)
	}
	cf := s.auditCarried()
	if len(cf) != 1 || !strings.Contains(cf[0].Details["reason"].(string), "disk replaced") {
		t.Errorf("first entry %v", cf)
	}
	s.spend(1)
	s.wantHealthy()

	// The store must open for it.
	os.Remove(filepath.Join(admin.KVDir(s.dir), "MANIFEST"))
	if _, err := admin.ResetAudit(context.Background(), admin.ResetAuditOptions{DataDir: s.dir, Reason: "x"}); !errors.Is(err, kv.ErrDamaged) {
		t.Errorf("reset-audit over a damaged store: %v", err)
	}
}
