package releasecheck_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/releasecheck"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// linkedRecord is the release record of a linked count signed by three
// members (each a participant and a stage, T = 3) of a test CA, with the
// options that check it: the participants' partial envelopes and
// commitments to the set, and each stage's statement of the released
// result.
func linkedRecord(t testing.TB) (*coordinatorv1.ReleaseRecord, releasecheck.Options) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.Linkage = &plan.Linkage{IdentifierSystem: "urn:test:resident"}
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'", Epsilon: 1, Delta: 1e-6,
		Mechanism: typesv1.Mechanism_MECHANISM_GAUSSIAN, MinNodes: 3, Threshold: 3, ReferenceDate: "2026-12-01"}
	preq, err := protocol.PlanRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(preq, cat)
	if err != nil {
		t.Fatal(err)
	}
	const qid, epoch = "q-linked", 2
	now := time.Now()
	ids := []string{"node-1", "node-2", "node-3"}
	keys := map[string]*pki.Identity{}
	rec := &coordinatorv1.ReleaseRecord{QueryId: qid, Epoch: epoch, Spec: spec, ReleasedUnixMs: now.UnixMilli(),
		Result: &typesv1.Result{Columns: []string{"count"}, Rows: []*typesv1.Row{{Values: []*typesv1.Number{{Value: 1234, CiLow: 1200, CiHigh: 1268}}}}, Nodes: 3}}
	var partials []*nodev1.NodeSigned
	for _, id := range ids {
		ident, err := ca.Issue(pki.IssueRequest{Name: id, Role: pki.RoleNode, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		keys[id] = ident
		rec.Certificates = append(rec.Certificates, ident.Cert.Raw)
		env, err := envelope.Seal(ident.Key, envelope.Binding{QueryID: qid, Epoch: epoch, NodeID: id, Kind: protocol.KindPartial}, []byte("link partial of "+id), now)
		if err != nil {
			t.Fatal(err)
		}
		s := protocol.ToProto(env)
		partials = append(partials, &nodev1.NodeSigned{NodeId: id, Signed: &typesv1.Signed{Header: s.GetHeader(), Signature: s.GetSignature()}})
	}
	digest := protocol.CommitDigest(qid, epoch, spec, partials)
	for i, id := range ids {
		c, err := protocol.SealCommit(keys[id].Key, qid, epoch, id, digest, now)
		if err != nil {
			t.Fatal(err)
		}
		rec.Senders = append(rec.Senders, &coordinatorv1.ReleaseSender{NodeId: id, Partial: partials[i].GetSigned(), Commitment: c})
		st := &nodev1.LinkReleaseStatement{QueryId: qid, Epoch: epoch, SpecDigest: protocol.SpecDigest(spec), CommitDigest: digest,
			PlanFingerprint: p.Fingerprint(), Stages: ids, Participants: 3, Result: proto.Clone(rec.GetResult()).(*typesv1.Result)}
		signed, err := protocol.SealLinkRelease(keys[id].Key, qid, epoch, id, st, now)
		if err != nil {
			t.Fatal(err)
		}
		rec.LinkStatements = append(rec.LinkStatements, &coordinatorv1.ReleaseLinkStatement{NodeId: id, Statement: signed})
	}
	return rec, releasecheck.Options{CA: ca.Cert, Released: proto.Clone(rec.GetResult()).(*typesv1.Result), Catalogue: cat}
}

// TestCheckLinked: the record of a query across linked agencies verifies
// with all T stages' statements of its participant set, spec and plan
// whose result is the released one; each of these is refused, naming what
// failed: a released value the statements do not hold, a stage's
// statement missing or twice, one that is not a stage's, and a check with
// another catalogue proves nothing (ErrCatalogue).
func TestCheckLinked(t *testing.T) {
	rec, o := linkedRecord(t)
	v, err := releasecheck.Check(rec, o)
	if err != nil {
		t.Fatalf("the record: %v", err)
	}
	if !v.Linked || v.Threshold != 3 || len(v.Decryptors) != 3 || len(v.Senders) != 3 {
		t.Errorf("verdict %+v", v)
	}
	refused := func(name string, mod func(r *coordinatorv1.ReleaseRecord, o *releasecheck.Options), want string) {
		t.Helper()
		r, oo := proto.Clone(rec).(*coordinatorv1.ReleaseRecord), o
		oo.Released = proto.Clone(o.Released).(*typesv1.Result)
		mod(r, &oo)
		if _, err := releasecheck.Check(r, oo); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want refused: %q", name, err, want)
		}
	}
	refused("another released value", func(r *coordinatorv1.ReleaseRecord, o *releasecheck.Options) {
		r.Result.Rows[0].Values[0].Value++
		o.Released.Rows[0].Values[0].Value++
	}, "is not the one node-1 signed")
	refused("the record's result not the released one", func(r *coordinatorv1.ReleaseRecord, o *releasecheck.Options) {
		o.Released.Rows[0].Values[0].Value++
	}, "not the result released to you")
	refused("a statement missing", func(r *coordinatorv1.ReleaseRecord, _ *releasecheck.Options) {
		r.LinkStatements = r.LinkStatements[:2]
	}, "2 stages signed the release (of 3 stages)")
	refused("a statement twice", func(r *coordinatorv1.ReleaseRecord, _ *releasecheck.Options) {
		r.LinkStatements[2] = r.LinkStatements[1]
	}, "signed twice")
	refused("a statement under another node's name", func(r *coordinatorv1.ReleaseRecord, _ *releasecheck.Options) {
		r.LinkStatements[2].NodeId = "node-9"
	}, "no certificate of the network CA for stage node-9")
	other := plan.DefaultCatalogue()
	other.Linkage = &plan.Linkage{IdentifierSystem: "urn:test:resident"}
	other.MaxNodesPerPatient = 7
	if _, err := releasecheck.Check(rec, releasecheck.Options{CA: o.CA, Released: o.Released, Catalogue: other}); !errors.Is(err, releasecheck.ErrCatalogue) {
		t.Errorf("another catalogue: %v, want ErrCatalogue", err)
	}
}

// FuzzCheck: a release record the verifier is given (by a coordinator it
// need not trust) never crashes it; whatever it makes of the bytes, it
// verifies or refuses. Seeded with a linked record and its pieces.
func FuzzCheck(f *testing.F) {
	rec, o := linkedRecord(f)
	b, err := proto.Marshal(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	for _, ls := range rec.GetLinkStatements() {
		one := &coordinatorv1.ReleaseRecord{QueryId: rec.GetQueryId(), Spec: rec.GetSpec(), Senders: rec.GetSenders(), Certificates: rec.GetCertificates(),
			LinkStatements: []*coordinatorv1.ReleaseLinkStatement{ls}}
		if b, err := proto.Marshal(one); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &coordinatorv1.ReleaseRecord{}
		if proto.Unmarshal(b, r) != nil {
			return
		}
		_, _ = releasecheck.Check(r, o)
	})
}
