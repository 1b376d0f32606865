package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInitIssueLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := InitDir(dir, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitDir(dir, "test", time.Hour); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("second init: %v, want refusal", err)
	}
	ca2, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca2.Cert.Equal(ca.Cert) {
		t.Fatal("loaded CA differs")
	}
	id, err := ca2.Issue(IssueRequest{Name: "hospital-a", Role: RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteIdentity(dir, id); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIdentityDir(dir, "hospital-a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != "hospital-a" || got.Role() != RoleNode {
		t.Fatalf("identity = %s/%s", got.Name(), got.Role())
	}
	// A key readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, KeyFile("hospital-a")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentityDir(dir, "hospital-a"); !errors.Is(err, ErrInsecureKey) {
		t.Fatalf("world-readable key: %v", err)
	}
}

func TestForeignCARejected(t *testing.T) {
	a, _ := NewCA("a", time.Hour)
	b, _ := NewCA("b", time.Hour)
	id, err := b.Issue(IssueRequest{Name: "mallory", Role: RoleCoordinator})
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(a.Cert, id.Cert); !errors.Is(err, ErrNotIssuedBy) {
		t.Fatalf("foreign cert: %v", err)
	}
}

func TestBadNamesAndRoles(t *testing.T) {
	ca, _ := NewCA("a", time.Hour)
	for _, r := range []IssueRequest{
		{Name: "", Role: RoleNode},
		{Name: "a b", Role: RoleNode},
		{Name: "../x", Role: RoleNode},
		{Name: "ok", Role: "root"},
	} {
		if _, err := ca.Issue(r); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v, want ErrBadRequest", r, err)
		}
	}
}
