package evidence

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

func identity(t *testing.T, ca *pki.CA, name string, role pki.Role) *pki.Identity {
	t.Helper()
	id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func sampleMark(id *pki.Identity) Mark {
	return Mark{Node: id.Name(), Time: time.Now().UTC(), Epoch: 3, AuditSeq: 17, AuditHead: "ab12",
		Spend: ledger.Figures{TotalRho: 0.1226, Charges: 7, Analysts: map[string]float64{"alice": 0.1, "bob": 0.0226}},
		Cert:  id.Cert.Raw}
}

func TestMarkRoundTripAndTampering(t *testing.T) {
	ca := newCA(t)
	id := identity(t, ca, "node-1", pki.RoleNode)
	path := filepath.Join(t.TempDir(), MarkFile)
	m := sampleMark(id)
	if err := WriteMark(path, m, id.Key); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	got, err := ReadMark(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Spend.Below(m.Spend) != nil || m.Spend.Below(got.Spend) != nil || got.AuditHead != "ab12" || got.Epoch != 3 {
		t.Fatalf("read back %+v, wrote %+v", got, m)
	}
	if err := got.Verify(path, ca.Cert, "node-1"); err != nil {
		t.Fatal(err)
	}
	// Another node's mark, and a mark of another CA.
	if err := got.Verify(path, ca.Cert, "node-2"); !errors.Is(err, ErrBadMark) {
		t.Errorf("node-1's mark verified as node-2's: %v", err)
	}
	if err := got.Verify(path, newCA(t).Cert, "node-1"); !errors.Is(err, ErrBadMark) {
		t.Errorf("a mark of another CA verified: %v", err)
	}
	// An analyst's certificate cannot sign a node's mark.
	an := identity(t, ca, "node-1x", pki.RoleAnalyst)
	am := sampleMark(an)
	am.Node = "node-1x"
	WriteMark(path+".a", am, an.Key)
	if m, err := ReadMark(path + ".a"); err != nil || m.Verify(path, ca.Cert, "node-1x") == nil {
		t.Errorf("a mark signed by an analyst certificate verified: %v", err)
	}

	// Every single-byte change, and truncation, is refused.
	data, _ := os.ReadFile(path)
	for i := 0; i < len(data); i += 7 {
		bad := bytes.Clone(data)
		bad[i] ^= 0x20
		os.WriteFile(path, bad, 0o600)
		if m, err := ReadMark(path); err == nil && m.Verify(path, ca.Cert, "node-1") == nil {
			t.Fatalf("byte %d flipped: accepted (%+v)", i, m.Spend)
		}
	}
	os.WriteFile(path, data[:len(data)/2], 0o600)
	if _, err := ReadMark(path); !errors.Is(err, ErrBadMark) {
		t.Errorf("truncated: %v", err)
	}
	os.Remove(path)
	if _, err := ReadMark(path); !errors.Is(err, ErrNoMark) {
		t.Errorf("missing: %v", err)
	}
}

func appendAll(t *testing.T, path string, es ...audit.Entry) {
	t.Helper()
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, e := range es {
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func debit(qid, who string, rho float64) audit.Entry {
	return audit.Entry{Actor: "node-1", Action: ActionDebited, QueryID: qid, Details: map[string]any{"analyst": who, "rho": rho}}
}

// The audit log proves the sum of its debits, or the last carried-forward
// statement plus the debits after it, whichever is larger.
func TestReadAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if _, err := ReadAudit(path); !errors.Is(err, ErrNoAudit) {
		t.Fatalf("missing log: %v", err)
	}
	appendAll(t, path,
		audit.Entry{Actor: "coordinator", Action: "query.received", QueryID: "q-1"},
		debit("q-1", "alice", 0.0613),
		debit("q-2", "alice", 0.0613),
		debit("q-3", "bob", 0.0178),
	)
	a, err := ReadAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Figures{TotalRho: 0.0613 + 0.0613 + 0.0178, Charges: 3, Analysts: map[string]float64{"alice": 0.1226, "bob": 0.0178}}
	if a.Spend.Below(want) != nil || want.Below(a.Spend) != nil || a.Entries != 4 || a.Debits["q-1"] != 1 {
		t.Fatalf("spend %v (%d entries), want %v", a.Spend, a.Entries, want)
	}
	head := a.Head

	// A restore carried a higher spend forward; a debit follows.
	cf := ledger.Figures{TotalRho: 0.5, Charges: 9, Analysts: map[string]float64{"alice": 0.45, "bob": 0.05}}
	appendAll(t, path,
		audit.Entry{Actor: "node-1", Action: ActionCarriedForward, Details: CarriedDetails(cf, "restore", nil)},
		debit("q-4", "carol", 0.25),
	)
	a, err = ReadAudit(path, head, "feedface")
	if err != nil {
		t.Fatal(err)
	}
	want = ledger.Figures{TotalRho: 0.75, Charges: 10, Analysts: map[string]float64{"alice": 0.45, "bob": 0.05, "carol": 0.25}}
	if a.Spend.Below(want) != nil || want.Below(a.Spend) != nil {
		t.Fatalf("spend after a carry-forward %v, want %v", a.Spend, want)
	}
	if a.Found[head] != 4 || len(a.Found) != 1 {
		t.Errorf("anchors found %v, want %s at seq 4 only", a.Found, head)
	}

	// A chain that does not verify is refused.
	data, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(data, []byte(`0.0613`), []byte(`0.0001`), 1), 0o600)
	if _, err := ReadAudit(path); !errors.Is(err, audit.ErrCorrupt) {
		t.Errorf("edited log: %v", err)
	}
}

func TestAnchorAndEpoch(t *testing.T) {
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, err := ReadAnchor(db); ok || err != nil {
		t.Fatalf("anchor of an empty store: %v %v", ok, err)
	}
	if err := WriteAnchor(db, Anchor{Seq: 5, Hash: "cafe"}); err != nil {
		t.Fatal(err)
	}
	if a, ok, err := ReadAnchor(db); !ok || err != nil || a != (Anchor{5, "cafe"}) {
		t.Fatalf("anchor %v %v %v", a, ok, err)
	}
	if _, ok, err := StoredEpoch(db); ok || err != nil {
		t.Fatalf("epoch of an empty store: %v %v", ok, err)
	}
	db.Update(func(tx *kv.Txn) error {
		return tx.Set(keyEpoch, []byte(`{"epoch":4,"params":"x","threshold":2,"members":[{"id":"a","point":1},{"id":"b","point":2},{"id":"c","point":3}],"crs":null,"public_key":"AAE="}`))
	})
	e, ok, err := StoredEpoch(db)
	if !ok || err != nil || e.Epoch != 4 || e.Threshold != 2 || e.Members != 3 || !e.Installed || !e.NeedsThreshold() || !e.OnCommittee("b") {
		t.Fatalf("epoch %+v %v %v", e, ok, err)
	}
	// A decryption committee of a and c, T = 2 of 2: no threshold shares,
	// and b holds no key.
	db.Update(func(tx *kv.Txn) error {
		return tx.Set(keyEpoch, []byte(`{"epoch":5,"params":"x","threshold":2,"members":[{"id":"a","point":1},{"id":"b","point":0},{"id":"c","point":2}],"crs":null,"public_key":"AAE="}`))
	})
	e, ok, err = StoredEpoch(db)
	if !ok || err != nil || e.Members != 3 || len(e.Committee) != 2 || e.NeedsThreshold() || e.OnCommittee("b") || !e.OnCommittee("c") {
		t.Fatalf("epoch with a committee %+v %v %v", e, ok, err)
	}
}
