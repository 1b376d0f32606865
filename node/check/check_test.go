package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/check"
)

// want finds the result of check name with status st whose file and
// problem contain the given texts, and fails the test when there is none.
func want(t *testing.T, r *check.Report, name string, st check.Status, fatal bool, texts ...string) check.Result {
	t.Helper()
	for _, c := range r.Results {
		if c.Check != name || c.Status != st || c.Fatal != fatal {
			continue
		}
		all := c.File + " " + c.Problem + " " + c.Fix
		ok := true
		for _, s := range texts {
			ok = ok && strings.Contains(all, s)
		}
		if ok {
			return c
		}
	}
	var b strings.Builder
	for _, c := range r.Results {
		fmt.Fprintf(&b, "\n  %s (fatal %v)", c.Line(), c.Fatal)
	}
	t.Fatalf("no %s %s (fatal %v) mentioning %q in:%s", st, name, fatal, texts, b.String())
	return check.Result{}
}

func TestHealthy(t *testing.T) {
	s := newSim(t)
	s.spend(5)
	r := s.run()
	if !r.OK() || r.Fatal() != nil {
		t.Fatalf("healthy node: %v", r.Fatal())
	}
	for _, name := range []string{"certificate", "store", "space", "ledger", "audit", "mark", "keys"} {
		want(t, r, name, check.OK, false)
	}
	if r.Ledger.Charges != 5 || r.Audit.Charges != 5 || r.Mark.Charges != 5 || r.Epoch != 1 || len(r.Unaudited) != 0 {
		t.Errorf("figures: ledger %v, audit %v, mark %v, epoch %d, unaudited %v", r.Ledger, r.Audit, r.Mark, r.Epoch, r.Unaudited)
	}
}

// The failure kinds the daemon refuses to start on, each named with its
// file and the fix.
func TestRefusals(t *testing.T) {
	restore := "fedstat node restore"
	cases := []struct {
		name   string
		damage func(t *testing.T, s *sim)
		check  func(t *testing.T, s *sim, r *check.Report)
	}{
		{"MANIFEST deleted", func(t *testing.T, s *sim) {
			os.Remove(filepath.Join(admin.KVDir(s.dir), "MANIFEST"))
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "store", check.Fail, true, "MANIFEST", restore)
		}},
		{"store wiped (rm -rf kv)", func(t *testing.T, s *sim) {
			os.RemoveAll(admin.KVDir(s.dir))
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "store", check.Fail, true, "missing", "5 charge(s)", restore)
		}},
		{"store emptied (a new store where the old one was)", func(t *testing.T, s *sim) {
			os.RemoveAll(admin.KVDir(s.dir))
			s.open().Close()
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "ledger", check.Fail, true, "audit.log", "0 charge(s)", "5 charge(s)", restore)
			want(t, r, "ledger", check.Fail, true, check.MarkFile, "0 charge(s)", "5 charge(s)")
		}},
		{"audit log deleted", func(t *testing.T, s *sim) {
			os.Remove(s.auditPath())
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "audit", check.Fail, true, "audit.log", "missing", "fedstat node reset-audit")
		}},
		{"audit log cut at an entry boundary", func(t *testing.T, s *sim) {
			b, _ := os.ReadFile(s.auditPath())
			lines := bytes.SplitAfter(b, []byte("\n"))
			os.WriteFile(s.auditPath(), bytes.Join(lines[:len(lines)-4], nil), 0o600) // the last 3 entries
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "audit", check.Fail, true, "audit.log", "lacks the entry", "cut short")
		}},
		{"audit log edited", func(t *testing.T, s *sim) {
			b, _ := os.ReadFile(s.auditPath())
			os.WriteFile(s.auditPath(), bytes.Replace(b, []byte(`"rho":0.0613`), []byte(`"rho":0.0001`), 1), 0o600)
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "audit", check.Fail, true, "audit.log", "fedstat audit verify")
		}},
		{"key files of an epoch the store does not know", func(t *testing.T, s *sim) {
			os.WriteFile(filepath.Join(s.dir, "keys", "epoch-2.secret"), []byte("x"), 0o600)
		}, func(t *testing.T, s *sim, r *check.Report) {
			want(t, r, "keys", check.Fail, true, "epoch-2.secret", "record of epoch 1 only", restore)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t)
			s.spend(5)
			c.damage(t, s)
			r := s.run()
			c.check(t, s, r)
			if r.OK() || !errors.Is(r.Fatal(), check.ErrRefused) {
				t.Errorf("report OK %v, Fatal %v", r.OK(), r.Fatal())
			}
		})
	}

	t.Run("store older than its evidence (an old copy put back)", func(t *testing.T) {
		s := newSim(t)
		s.spend(3)
		old := filepath.Join(t.TempDir(), "kv")
		copyDir(t, admin.KVDir(s.dir), old) // with its WATERMARK: kv cannot tell
		s.spend(2)
		os.RemoveAll(admin.KVDir(s.dir))
		os.Rename(old, admin.KVDir(s.dir))
		r := s.run()
		want(t, r, "ledger", check.Fail, true, "audit.log", "3 charge(s)", "5 charge(s)", `rho of analyst`, restore)
		want(t, r, "ledger", check.Fail, true, check.MarkFile, "3 charge(s)", "5 charge(s)")
		want(t, r, "audit", check.OK, false) // the old store's head is in the log, which only grew
	})

	t.Run("certificate not valid at this machine's clock", func(t *testing.T) {
		s := newSim(t)
		o := s.opts()
		o.Now = func() time.Time { return time.Now().Add(400 * 24 * time.Hour) }
		r, err := check.Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		want(t, r, "certificate", check.Fail, true, "clock")
	})
}

// What the node starts on: a lost or invalid mark (re-created), a charge
// the audit log lacks (a stop between the debit and its entry), a missing
// threshold share (not ready for that epoch), a damaged CKG secret it does
// not decrypt with (a warning).
func TestStartsOn(t *testing.T) {
	t.Run("off the decryption committee, no key files", func(t *testing.T) {
		s := newSim(t)
		db := s.open()
		rec, _ := json.Marshal(map[string]any{"epoch": 1, "params": "test", "threshold": 2,
			"members": []map[string]any{{"id": "node-1", "point": 0}, {"id": "node-2", "point": 1}, {"id": "node-3", "point": 2}}, "public_key": []byte{1, 2, 3}})
		if _, err := db.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set([]byte("n/epoch"), rec) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		os.Remove(filepath.Join(s.dir, "keys", "epoch-1.secret"))
		os.Remove(filepath.Join(s.dir, "keys", "epoch-1-threshold.secret"))
		r := s.run()
		want(t, r, "keys", check.OK, false, "off the decryption committee", "2 of 3 members hold the key")
		if !r.OK() {
			t.Errorf("a node off the committee without key files: OK %v, Fatal %v", r.OK(), r.Fatal())
		}
	})
	t.Run("mark deleted", func(t *testing.T) {
		s := newSim(t)
		s.spend(4)
		os.Remove(s.markPath())
		r := s.run()
		want(t, r, "mark", check.Warn, false, "missing", "re-creates it")
		if !r.OK() || !r.BadMark {
			t.Errorf("OK %v BadMark %v", r.OK(), r.BadMark)
		}
	})
	t.Run("mark edited", func(t *testing.T) {
		s := newSim(t)
		s.spend(4)
		b, _ := os.ReadFile(s.markPath())
		os.WriteFile(s.markPath(), bytes.Replace(b, []byte(`"charges":4`), []byte(`"charges":1`), 1), 0o600)
		r := s.run()
		want(t, r, "mark", check.Warn, false, "signature does not verify", "moves it aside")
		if !r.OK() || !r.BadMark {
			t.Errorf("OK %v BadMark %v", r.OK(), r.BadMark)
		}
	})
	t.Run("mark and store lost together", func(t *testing.T) {
		s := newSim(t)
		s.spend(4)
		os.Remove(s.markPath())
		os.RemoveAll(admin.KVDir(s.dir))
		s.open().Close()
		r := s.run()
		want(t, r, "ledger", check.Fail, true, "audit.log", "0 charge(s)", "4 charge(s)")
		want(t, r, "mark", check.Warn, false, "missing", "once the failures above are fixed")
	})
	t.Run("a charge without its audit entry", func(t *testing.T) {
		s := newSim(t)
		s.spend(3)
		b, _ := os.ReadFile(s.auditPath())
		lines := bytes.SplitAfter(b, []byte("\n"))
		// Cut budget.debited and partial.released of the last query, as a
		// crash right after the debit leaves it (the mark holds the head
		// before them).
		os.WriteFile(s.auditPath(), bytes.Join(lines[:len(lines)-3], nil), 0o600)
		r := s.run()
		c := want(t, r, "ledger", check.OK, false, "1 charge(s) have no audit entry", "q-003")
		if !r.OK() || len(r.Unaudited) != 1 || r.Unaudited[0] != "q-003" {
			t.Errorf("OK %v, unaudited %v (%s)", r.OK(), r.Unaudited, c.Problem)
		}
	})
	t.Run("threshold share missing", func(t *testing.T) {
		s := newSim(t)
		s.spend(2)
		share := filepath.Join(s.dir, "keys", "epoch-1-threshold.secret")
		os.Remove(share)
		r := s.run()
		c := want(t, r, "keys", check.Fail, false, share, "does not decrypt in epoch 1")
		if c.Epoch != 1 || r.Fatal() != nil || r.OK() {
			t.Errorf("epoch %d, fatal %v, OK %v", c.Epoch, r.Fatal(), r.OK())
		}
	})
	t.Run("CKG secret damaged (not used to decrypt when T < N)", func(t *testing.T) {
		s := newSim(t)
		p := filepath.Join(s.dir, "keys", "epoch-1.secret")
		b, _ := os.ReadFile(p)
		b[len(b)-1] ^= 1
		os.WriteFile(p, b, 0o600)
		r := s.run()
		want(t, r, "keys", check.Warn, false, p, "checksum mismatch")
		if !r.OK() {
			t.Errorf("a damaged secret the node does not decrypt with failed the check")
		}
	})
}

// The daemon's mode: a new data directory gets a store; a directory whose
// store is gone but whose past shows is refused before anything is
// created.
func TestKeep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	r, err := check.Run(context.Background(), check.Options{DataDir: dir, Keep: true})
	if err != nil || r.Fatal() != nil || r.DB == nil {
		t.Fatalf("a new node: %v %v", err, r.Fatal())
	}
	r.Close()

	s := newSim(t)
	s.spend(2)
	os.RemoveAll(admin.KVDir(s.dir))
	o := s.opts()
	o.Keep = true
	r, err = check.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want(t, r, "store", check.Fail, true, "missing")
	if r.DB != nil {
		t.Error("the store was opened")
	}
	if _, err := os.Stat(admin.KVDir(s.dir)); !os.IsNotExist(err) {
		t.Errorf("the store was created: %v", err)
	}
}

// A file system too full to open the store.
func TestNoSpace(t *testing.T) {
	s := newSim(t)
	s.spend(1)
	mnt := filepath.Join(t.TempDir(), "small")
	os.MkdirAll(mnt, 0o700)
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	copyDir(t, s.dir, filepath.Join(mnt, "node-1"))
	s.dir = filepath.Join(mnt, "node-1")
	r := s.run()
	want(t, r, "space", check.Fail, true, "no space left", "free space")
}
