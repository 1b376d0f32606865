package signedquery_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc/rpctest"
	"github.com/fedstat/fedstat/internal/signedquery"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

func network(t *testing.T) (*pki.CA, *pki.Identity) {
	t.Helper()
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "alice", Role: pki.RoleResearcher, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return ca, id
}

func testSpec() *typesv1.QuerySpec {
	return &typesv1.QuerySpec{Sql: "SELECT COUNT(DISTINCT person_id) FROM person", Epsilon: 1, Delta: 1e-6, ReferenceDate: "2026-01-01"}
}

// TestOpen: a signed query opens with its analyst, role, spec and derived
// query id; each thing that is wrong is refused with ErrInvalid, naming it.
func TestOpen(t *testing.T) {
	ca, alice := network(t)
	now := time.Now()
	sig, err := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator", testSpec(), now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := signedquery.Open(ca.Cert, sig, "coordinator", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "alice" || r.Role != pki.RoleResearcher || !proto.Equal(r.Spec, testSpec()) || r.QueryID != signedquery.QueryID(sig) ||
		!strings.HasPrefix(r.QueryID, "q-") || len(r.QueryID) != 34 {
		t.Fatalf("opened %+v", r)
	}
	again, _ := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator", testSpec(), now)
	if signedquery.QueryID(again) == r.QueryID {
		t.Error("two signatures of the same query have the same id")
	}

	_, mallory := network(t) // of another network's CA
	node, err := ca.Issue(pki.IssueRequest{Name: "node-1", Role: pki.RoleNode, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	changed := proto.Clone(sig).(*typesv1.AnalystSignature)
	changed.Request.Payload, _ = proto.Marshal(&typesv1.QuerySpec{Sql: "SELECT 1", Epsilon: 9})
	foreign, _ := signedquery.Seal(mallory.Key, mallory.Cert.Raw, "coordinator", testSpec(), now)
	byNode, _ := signedquery.Seal(node.Key, node.Cert.Raw, "coordinator", testSpec(), now)
	swapped := proto.Clone(sig).(*typesv1.AnalystSignature)
	other, _ := ca.Issue(pki.IssueRequest{Name: "bob", Role: pki.RoleAnalyst, Validity: time.Hour})
	swapped.Certificate = other.Cert.Raw
	// A header bound to another coordinator under a signature of another
	// header: the error is the signature's, not a statement of what the
	// unverified header says.
	rebound, _ := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator-2", testSpec(), now)
	rebound.Request.Signature = sig.GetRequest().GetSignature()
	env, err := envelope.Seal(alice.Key, envelope.Binding{NodeID: "coordinator", Kind: "partial"}, sig.GetRequest().GetPayload(), now)
	if err != nil {
		t.Fatal(err)
	}
	otherKind := &typesv1.AnalystSignature{Request: &typesv1.Signed{Header: env.Header, Payload: env.Payload, Signature: env.Signature}, Certificate: alice.Cert.Raw}
	for _, tc := range []struct {
		name  string
		sig   *typesv1.AnalystSignature
		coord string
		at    time.Time
		want  string
	}{
		{"missing", &typesv1.AnalystSignature{}, "coordinator", now, "missing"},
		{"changed payload", changed, "coordinator", now, "was changed"},
		{"another certificate", swapped, "coordinator", now, `key of "bob"`},
		{"another CA", foreign, "coordinator", now, "not one of this network's CA"},
		{"a node's certificate", byNode, "coordinator", now, `role "node"`},
		{"another coordinator", sig, "coordinator-2", now, `for coordinator "coordinator", not for "coordinator-2"`},
		{"stale", sig, "coordinator", now.Add(2 * time.Minute), "further than 1m0s"},
		{"a forged binding", rebound, "coordinator", now, `key of "alice"`},
		{"another kind of message", otherKind, "coordinator", now, `a "partial", not an analyst's query`},
	} {
		_, err := signedquery.Open(ca.Cert, tc.sig, tc.coord, tc.at, time.Minute)
		if !errors.Is(err, signedquery.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
}

// TestQueryIDIgnoresSignatureMalleability: the other valid ECDSA signature
// of the same request, (r, N-s), verifies, and has the same query id: one
// signed request cannot be turned into two queries.
func TestQueryIDIgnoresSignatureMalleability(t *testing.T) {
	ca, alice := network(t)
	now := time.Now()
	sig, err := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator", testSpec(), now)
	if err != nil {
		t.Fatal(err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig.GetRequest().GetSignature(), &rs); err != nil {
		t.Skipf("signature is not ASN.1 ECDSA: %v", err)
	}
	if _, ok := alice.Key.Public().(*ecdsa.PublicKey); !ok {
		t.Skip("not an ECDSA key")
	}
	rs.S = new(big.Int).Sub(elliptic.P256().Params().N, rs.S)
	flipped, err := asn1.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	twin := proto.Clone(sig).(*typesv1.AnalystSignature)
	twin.Request.Signature = flipped
	r, err := signedquery.Open(ca.Cert, twin, "coordinator", now, time.Minute)
	if err != nil {
		t.Fatalf("the twin signature does not verify: %v", err)
	}
	if r.QueryID != signedquery.QueryID(sig) {
		t.Errorf("the twin signature runs under another query id: %s, %s", r.QueryID, signedquery.QueryID(sig))
	}
}

// TestCheckSettled: the coordinator may fill in what the analyst left
// unset, never change what the analyst signed.
func TestCheckSettled(t *testing.T) {
	signed := testSpec()
	settled := proto.Clone(signed).(*typesv1.QuerySpec)
	settled.MinNodes, settled.Threshold, settled.ApprovalWaitSeconds, settled.PartialLimit = 3, 2, 600, 1<<30
	if err := signedquery.CheckSettled(signed, settled); err != nil {
		t.Fatalf("settled spec refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(s *typesv1.QuerySpec)
		want   string
	}{
		{"sql", func(s *typesv1.QuerySpec) { s.Sql = "SELECT 1" }, "SQL"},
		{"epsilon", func(s *typesv1.QuerySpec) { s.Epsilon = 2 }, "epsilon is 2, the analyst signed 1"},
		{"delta", func(s *typesv1.QuerySpec) { s.Delta = 1e-3 }, "delta"},
		{"mechanism", func(s *typesv1.QuerySpec) { s.Mechanism = typesv1.Mechanism_MECHANISM_LAPLACE }, "mechanism"},
		{"reference date", func(s *typesv1.QuerySpec) { s.ReferenceDate = "2020-01-01" }, "reference_date"},
	} {
		s := proto.Clone(settled).(*typesv1.QuerySpec)
		tc.change(s)
		if err := signedquery.CheckSettled(signed, s); !errors.Is(err, signedquery.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
	pinned := proto.Clone(signed).(*typesv1.QuerySpec)
	pinned.MinNodes = 4
	if err := signedquery.CheckSettled(pinned, settled); err == nil || !strings.Contains(err.Error(), "min_nodes") {
		t.Errorf("a signed min_nodes changed: %v", err)
	}
	if err := signedquery.CheckSettled(&typesv1.QuerySpec{Sql: signed.Sql}, settled); err == nil || !strings.Contains(err.Error(), "no epsilon") {
		t.Errorf("a signed query without epsilon: %v", err)
	}
}

// TestWithDefaults: what the coordinator would fill in is stated, so that
// the signed spec is the settled one in its privacy parameters.
func TestWithDefaults(t *testing.T) {
	now := time.Date(2026, 3, 4, 23, 0, 0, 0, time.UTC)
	s := signedquery.WithDefaults(&typesv1.QuerySpec{Sql: "SELECT 1"}, now)
	if s.Epsilon != signedquery.DefaultEpsilon || s.Delta != signedquery.DefaultDelta || s.ReferenceDate != "2026-03-04" {
		t.Errorf("defaults: %v", s)
	}
	l := signedquery.WithDefaults(&typesv1.QuerySpec{Sql: "SELECT 1", Mechanism: typesv1.Mechanism_MECHANISM_LAPLACE, Epsilon: 0.5}, now)
	if l.Delta != 0 || l.Epsilon != 0.5 {
		t.Errorf("Laplace: %v", l)
	}
}

// TestErrors: the package's sentinel crosses gRPC typed.
func TestErrors(t *testing.T) {
	rpctest.CheckTable(t, signedquery.Errors, "while verifying: %w")
}

// FuzzOpen: Open never panics on hostile bytes, and accepts nothing but
// what was sealed.
func FuzzOpen(f *testing.F) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	alice, err := ca.Issue(pki.IssueRequest{Name: "alice", Role: pki.RoleAnalyst, Validity: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	sig, err := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator", testSpec(), now)
	if err != nil {
		f.Fatal(err)
	}
	r := sig.GetRequest()
	f.Add(r.GetHeader(), r.GetPayload(), r.GetSignature(), sig.GetCertificate())
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, header, payload, signature, cert []byte) {
		s := &typesv1.AnalystSignature{Request: &typesv1.Signed{Header: header, Payload: payload, Signature: signature}, Certificate: cert}
		got, err := signedquery.Open(ca.Cert, s, "coordinator", now, time.Minute)
		if err != nil {
			if !errors.Is(err, signedquery.ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if got.Name != "alice" || !proto.Equal(got.Spec, testSpec()) {
			t.Fatalf("opened something that was not sealed: %+v", got)
		}
	})
}
