package coordinator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/protocol"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestCheckCommit: the coordinator checks each node's commitment as it
// arrives (signature, binding, freshness, digest), so that a bad one is
// that node's failure, not every decryptor's.
func TestCheckCommit(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := &Coordinator{cfg: Config{Now: func() time.Time { return now }, MaxSkew: protocol.DefaultMaxSkew}}
	e := &epoch{ID: 7, Members: []epochMember{{ID: "a", Cert: &x509.Certificate{PublicKey: key.Public()}}}}
	digest, otherDigest := make([]byte, 32), make([]byte, 32)
	digest[0] = 1
	seal := func(k *ecdsa.PrivateKey, qid string, d []byte, at time.Time) *typesv1.Signed {
		t.Helper()
		s, err := protocol.SealCommit(k, qid, 7, "a", d, at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := seal(key, "q1", digest, now)
	if err := c.checkCommit("q1", e, "a", good, digest); err != nil {
		t.Fatalf("a good commitment: %v", err)
	}
	for _, tc := range []struct {
		name, node string
		s          *typesv1.Signed
		want       string
	}{
		{"forged", "a", seal(other, "q1", digest, now), "commitment rejected"},
		{"another query", "a", seal(key, "q2", digest, now), "commitment rejected"},
		{"stale", "a", seal(key, "q1", digest, now.Add(-2*protocol.DefaultMaxSkew)), "commitment rejected"},
		{"another set", "a", seal(key, "q1", otherDigest, now), "another set of partials"},
		{"not a member", "b", good, "not a member"},
	} {
		if err := c.checkCommit("q1", e, tc.node, tc.s, digest); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
