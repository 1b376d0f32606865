package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// issueAt signs a node certificate valid from notBefore for validity.
func issueAt(t *testing.T, ca *CA, name string, notBefore time.Time, validity time.Duration) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{string(RoleNode)}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// A certificate that is not valid at this machine's time was reported as
// "certificate not issued by the network CA"; now the error says it is a
// clock problem and gives both times, in both directions.
func TestVerifyClockErrors(t *testing.T) {
	ca, err := NewCA("net", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name      string
		cert      *x509.Certificate
		want      []string
		notBefore bool
	}{
		{"issued by a machine whose clock is ahead (this one is behind)", issueAt(t, ca, "node-2", now.Add(20*time.Minute), time.Hour),
			[]string{"certificate of node-2 is not valid until " + now.Add(20*time.Minute).Format(time.RFC3339), "this machine's clock says", "check the clock (NTP)"}, true},
		{"expired, or this machine's clock is far ahead", issueAt(t, ca, "node-3", now.Add(-50*time.Second), 20*time.Second),
			[]string{"certificate of node-3 expired at " + now.Add(-30*time.Second).Format(time.RFC3339), "this machine's clock says", "check the clock (NTP)"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(ca.Cert, tc.cert)
			var ce *ClockError
			if !errors.Is(err, ErrClock) || errors.Is(err, ErrNotIssuedBy) || !errors.As(err, &ce) {
				t.Fatalf("Verify: %v, want a *ClockError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("%q lacks %q", err, w)
				}
			}
			if ce.Subject != tc.cert.Subject.CommonName || ce.Now.IsZero() || tc.notBefore != ce.Now.Before(ce.NotBefore) {
				t.Fatalf("ClockError %+v", ce)
			}
		})
	}
	// The injectable time: a valid certificate checked at a time off by
	// hours either way.
	id, err := ca.Issue(IssueRequest{Name: "node-1", Role: RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyAt(ca.Cert, id.Cert, time.Now().Add(-3*time.Hour)); !strings.Contains(fmt.Sprint(err), "certificate of node-1 is not valid until") {
		t.Fatalf("clock behind: %v", err)
	}
	if err := VerifyAt(ca.Cert, id.Cert, time.Now().Add(2*365*24*time.Hour)); !strings.Contains(fmt.Sprint(err), "certificate of node-1 expired at") {
		t.Fatalf("clock ahead: %v", err)
	}
	// The network CA's own certificate out of range is named as such.
	short, _ := NewCA("net2", time.Hour)
	leaf := issueAt(t, short, "node-4", now.Add(-time.Minute), 24*time.Hour)
	err = VerifyAt(short.Cert, leaf, now.Add(3*time.Hour))
	if !errors.Is(err, ErrClock) || !strings.Contains(err.Error(), "the network CA's certificate (net2 network CA) expired at") {
		t.Fatalf("expired CA: %v", err)
	}
}

// A certificate of another CA stays "not issued by the network CA" even
// when it is also outside its validity.
func TestForeignExpiredIsNotAClockProblem(t *testing.T) {
	a, _ := NewCA("a", time.Hour)
	b, _ := NewCA("b", time.Hour)
	c := issueAt(t, b, "mallory", time.Now().Add(-3*time.Hour), time.Hour)
	if err := Verify(a.Cert, c); !errors.Is(err, ErrNotIssuedBy) || errors.Is(err, ErrClock) {
		t.Fatalf("foreign expired certificate: %v", err)
	}
}
