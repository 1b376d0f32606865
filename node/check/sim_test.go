package check_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/check"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/keystore"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// sim writes a node's data directory the way the node daemon does (same
// packages, same order), without the network: a store with an epoch record
// (epoch 1, 2 of 3, installed), key files, an audit log, and debits that
// go through the ledger with the node's hooks (the audit head in the
// debit's transaction, the mark after it) between the audit entries
// query.received and budget.debited. The daemon's own behaviour is tested
// over separate processes in test/e2e.
type sim struct {
	t              *testing.T
	dir, pkiDir    string
	id             *pki.Identity
	queries        int
	analysts       []string
	rho            float64
	storeKey, ksKy []byte
}

func newSim(t *testing.T) *sim {
	t.Helper()
	return newSimWith(t, nil, nil)
}

// newSimWith is newSim for a store and key files encrypted at rest.
func newSimWith(t *testing.T, storeKey, keystoreKey []byte) *sim {
	t.Helper()
	root := t.TempDir()
	s := &sim{t: t, dir: filepath.Join(root, "node-1"), pkiDir: filepath.Join(root, "pki"), analysts: []string{"alice", "bob"}, rho: 0.0613,
		storeKey: storeKey, ksKy: keystoreKey}
	ca, err := pki.InitDir(s.pkiDir, "test", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "node-1", Role: pki.RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteIdentity(s.pkiDir, id); err != nil {
		t.Fatal(err)
	}
	s.id, err = pki.LoadIdentityDir(s.pkiDir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := s.open()
	rec, _ := json.Marshal(map[string]any{"epoch": 1, "params": "test", "threshold": 2,
		"members": []map[string]any{{"id": "node-1", "point": 1}, {"id": "node-2", "point": 2}, {"id": "node-3", "point": 3}}, "public_key": []byte{1, 2, 3}})
	if _, err := db.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set([]byte("n/epoch"), rec) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ks, err := keystore.Open(filepath.Join(s.dir, "keys"), s.ksKy)
	if err != nil {
		t.Fatal(err)
	}
	ks.Put("epoch-1", []byte("ckg secret"))
	ks.Put("epoch-1-threshold", []byte("threshold share"))
	s.log(audit.Entry{Actor: "coordinator", Action: "epoch.installed", Details: map[string]any{"epoch": 1}})
	return s
}

func (s *sim) open() *kv.DB {
	s.t.Helper()
	db, err := kv.Open(kv.Options{Dir: admin.KVDir(s.dir), EncryptionKey: s.storeKey})
	if err != nil {
		s.t.Fatal(err)
	}
	return db
}

func (s *sim) auditPath() string { return filepath.Join(s.dir, "audit.log") }
func (s *sim) markPath() string  { return filepath.Join(s.dir, check.MarkFile) }

func (s *sim) log(es ...audit.Entry) {
	s.t.Helper()
	l, err := audit.Open(s.auditPath())
	if err != nil {
		s.t.Fatal(err)
	}
	defer l.Close()
	for _, e := range es {
		if err := l.Append(context.Background(), e); err != nil {
			s.t.Fatal(err)
		}
	}
}

// spend runs k queries as the node would.
func (s *sim) spend(k int) {
	s.t.Helper()
	db := s.open()
	defer db.Close()
	l, err := audit.Open(s.auditPath())
	if err != nil {
		s.t.Fatal(err)
	}
	defer l.Close()
	writeMark := func(ledger.Figures) error {
		f, err := ledger.ReadFigures(db)
		if err != nil {
			return err
		}
		seq, head := l.Head()
		return evidence.WriteMark(s.markPath(), evidence.Mark{Node: "node-1", Time: time.Now(), Spend: f, Epoch: 1, AuditSeq: seq, AuditHead: head, Cert: s.id.Cert.Raw}, s.id.Key)
	}
	lg := ledger.NewWithHooks(db, ledger.Limits{TotalRho: 100, PerAnalystRho: 100}, ledger.Hooks{
		InDebit: func(tx *kv.Txn) error {
			seq, head := l.Head()
			return evidence.SetAnchor(tx, evidence.Anchor{Seq: seq, Hash: head})
		},
		AfterDebit: writeMark,
	})
	ctx := context.Background()
	for range k {
		s.queries++
		qid := fmt.Sprintf("q-%03d", s.queries)
		who := s.analysts[s.queries%len(s.analysts)]
		l.Append(ctx, audit.Entry{Actor: who, Action: "query.received", QueryID: qid, Details: map[string]any{"rho": s.rho}})
		if _, _, err := lg.Charge(ctx, qid, who, s.rho, func() ([]byte, error) { return []byte("partial"), nil }); err != nil {
			s.t.Fatal(err)
		}
		l.Append(ctx, audit.Entry{Actor: "node-1", Action: evidence.ActionDebited, QueryID: qid, Details: map[string]any{"analyst": who, "rho": s.rho}})
		l.Append(ctx, audit.Entry{Actor: "node-1", Action: "partial.released", QueryID: qid})
	}
}

func (s *sim) opts() check.Options {
	return check.Options{DataDir: s.dir, PKIDir: s.pkiDir, Name: "node-1"}
}

func (s *sim) run() *check.Report {
	s.t.Helper()
	r, err := check.Run(context.Background(), s.opts())
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// figures returns the ledger's figures.
func (s *sim) figures() ledger.Figures {
	s.t.Helper()
	db := s.open()
	defer db.Close()
	f, err := ledger.ReadFigures(db)
	if err != nil {
		s.t.Fatal(err)
	}
	return f
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v %s", from, to, err, out)
	}
}
