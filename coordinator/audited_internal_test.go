package coordinator

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/pki"
)

// auditedCoordinator is a Coordinator with only an identity (named
// coordinator, from a fresh CA) and an audit log, for tests of one step
// of the protocol, and the log's path (auditEntries reads it back).
func auditedCoordinator(t *testing.T) (*Coordinator, string) {
	t.Helper()
	ca, err := pki.NewCA("coordinator test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "coordinator", Role: pki.RoleCoordinator, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return &Coordinator{cfg: Config{Identity: id, Audit: log}}, path
}

// auditEntries are the entries of the audit log at path.
func auditEntries(t *testing.T, path string) []audit.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Entry
	if err := audit.Scan(f, func(_ int, e audit.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
