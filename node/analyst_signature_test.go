package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/signedquery"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestAnalystSignatureCheckedWithoutPolicy: a node whose policy does not
// require analyst signatures still verifies one that a query carries (a
// coordinator cannot attach a signature to another query, or change a
// signed one, where signatures are optional), and lets unsigned queries
// through.
func TestAnalystSignatureCheckedWithoutPolicy(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, role pki.Role) *pki.Identity {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	self, analyst := issue("node-1", pki.RoleNode), issue("alice", pki.RoleAnalyst)
	now := time.Now()
	n := &Node{id: "node-1", cfg: Config{Identity: self, Policy: DefaultPolicy(), MaxSkew: protocol.DefaultMaxSkew, Now: func() time.Time { return now }}}
	if n.cfg.Policy.RequireAnalystSignature {
		t.Fatal("the default policy requires analyst signatures; this test is of a node that does not")
	}
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2}
	sig, err := signedquery.Seal(analyst.Key, analyst.Cert.Raw, "coordinator", spec, now)
	if err != nil {
		t.Fatal(err)
	}
	body := func(s *typesv1.QuerySpec, sig *typesv1.AnalystSignature, qid string) *nodev1.EvaluateBody {
		return &nodev1.EvaluateBody{QueryId: qid, Spec: s, Analyst: "alice", Role: "analyst", AnalystSignature: sig}
	}
	if err := n.checkAnalystSignature(context.Background(), body(spec, nil, "q-unsigned"), "coordinator"); err != nil {
		t.Fatalf("an unsigned query where signatures are optional: %v", err)
	}
	if err := n.checkAnalystSignature(context.Background(), body(spec, sig, signedquery.QueryID(sig)), "coordinator"); err != nil {
		t.Fatalf("the honest signed query: %v", err)
	}
	changed := &typesv1.QuerySpec{Sql: spec.Sql, Epsilon: 8, Delta: spec.Delta, MinNodes: 2, Threshold: 2}
	for name, c := range map[string]struct {
		b     *nodev1.EvaluateBody
		coord string
		want  string
	}{
		"changed epsilon":     {body(changed, sig, signedquery.QueryID(sig)), "coordinator", "epsilon"},
		"another query id":    {body(spec, sig, "q-other"), "coordinator", "query id is q-other"},
		"another coordinator": {body(spec, sig, signedquery.QueryID(sig)), "coordinator-2", `not for "coordinator-2"`},
	} {
		err := n.checkAnalystSignature(context.Background(), c.b, c.coord)
		if !errors.Is(err, signedquery.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a refusal naming %q", name, err, c.want)
		}
	}
}
