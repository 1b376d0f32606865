package e2e

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/releasecheck"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestVerifiableRelease runs two queries through a real coordinator and
// nodes, fetches their release records as the analyst and checks them as
// `fedstat verify` does (internal/releasecheck) with only the network CA
// certificate: the honest record verifies, decrypting to the released
// count, and names the senders and decryptors; a record tampered as a
// malicious coordinator would tamper it is refused, naming what is wrong:
// released totals changed, a sender dropped, a partial or a commitment of
// another query, a sum that is not the committed one, a forged or missing
// decryptor share, fewer than T shares, a certificate not of the network
// CA, a result key made up after the fact, and a key withheld although
// nothing was. For a mean, whose sums the analyst is not given, the key is
// withheld and the check stops at the switched sum, saying so.
func TestVerifiableRelease(t *testing.T) {
	nw := startNetwork(t, 3, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := dialCoordinator(t, nw, nil)
	ca := nw.Analyst.CA

	run := func(eps float64, sql ...string) (*coordinatorv1.QueryStatus, *coordinatorv1.ReleaseRecord) {
		t.Helper()
		spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: eps, Delta: 1e-6}
		if len(sql) > 0 {
			spec.Sql = sql[0]
		}
		st, err := runQuery(ctx, c, spec)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := c.ReleaseRecord(ctx, st.GetQueryId())
		if err != nil {
			t.Fatalf("release record of %s: %v", st.GetQueryId(), err)
		}
		return st, rec
	}
	st, rec := run(1)
	_, other := run(0.9)

	check := func(rec *coordinatorv1.ReleaseRecord, released *typesv1.Result) (*releasecheck.Verdict, error) {
		return releasecheck.Check(rec, releasecheck.Options{CA: ca, Released: released, Catalogue: nw.Catalogue})
	}

	t.Run("honest", func(t *testing.T) {
		v, err := check(rec, st.GetResult())
		if err != nil {
			t.Fatal(err)
		}
		if !v.Decrypted || !v.PlanBound || len(v.Senders) != 3 || len(v.Decryptors) != 2 || v.Threshold != 2 {
			t.Fatalf("verdict %+v", v)
		}
	})

	// Every sender commits to its plan's fingerprint: a verifier whose
	// catalogue plans the query otherwise (here one more node per patient,
	// so other sensitivities and noise) decodes nothing, rather than a
	// result the coordinator rescaled to its plan.
	t.Run("another catalogue", func(t *testing.T) {
		cat := *nw.Catalogue
		cat.MaxNodesPerPatient++
		v, err := releasecheck.Check(rec, releasecheck.Options{CA: ca, Released: st.GetResult(), Catalogue: &cat})
		if !errors.Is(err, releasecheck.ErrCatalogue) || !strings.Contains(err.Error(), "another catalogue than this check's") {
			t.Fatalf("a check with another catalogue: %+v, %v", v, err)
		}
	})
	// resign is r with sender i's commitment changed by change and re-signed
	// by that node (as a node that signs what it likes would).
	resign := func(t *testing.T, r *coordinatorv1.ReleaseRecord, i int, change func(*nodev1.ReleaseCommitment)) {
		t.Helper()
		var rc nodev1.ReleaseCommitment
		env, err := envelope.ParseHeader(r.Senders[i].Commitment.GetHeader())
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(r.Senders[i].Commitment.GetPayload(), &rc); err != nil {
			t.Fatal(err)
		}
		change(&rc)
		id, err := pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), r.Senders[i].GetNodeId())
		if err != nil {
			t.Fatal(err)
		}
		signed, err := protocol.SealReleaseCommitment(id.Key, r.GetQueryId(), r.GetEpoch(), r.Senders[i].GetNodeId(), &rc, env.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		r.Senders[i].Commitment = signed
	}
	// withPlan is r with sender i's commitment re-signed by that node with
	// plan fingerprint fp.
	withPlan := func(t *testing.T, r *coordinatorv1.ReleaseRecord, i int, fp string) {
		t.Helper()
		resign(t, r, i, func(rc *nodev1.ReleaseCommitment) { rc.PlanFingerprint = fp })
	}
	t.Run("senders committed to different plans", func(t *testing.T) {
		r := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		withPlan(t, r, 1, "0000")
		_, err := releasecheck.Check(r, releasecheck.Options{CA: ca, Released: st.GetResult(), Catalogue: nw.Catalogue})
		if !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "committed to different plans") {
			t.Fatalf("senders with different plans: %v", err)
		}
	})
	// Nodes older than the plan's fingerprint commit to none: the check
	// decodes with its own plan and says the plan was not bound.
	t.Run("senders committed to no plan", func(t *testing.T) {
		r := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		for i := range r.Senders {
			withPlan(t, r, i, "")
		}
		v, err := releasecheck.Check(r, releasecheck.Options{CA: ca, Released: st.GetResult(), Catalogue: nw.Catalogue})
		if err != nil || v.PlanBound || !v.Decrypted {
			t.Fatalf("senders with no plan fingerprint: %+v, %v", v, err)
		}
	})

	// Every sender signs its partial's range commitments again in its
	// commitment: the check requires the totals to be the sum of the
	// committed values. Another partial's commitments, or none from one
	// sender, are refused; none from every sender (nodes older than the
	// range proofs) is checked without them.
	t.Run("range commitments", func(t *testing.T) {
		v, err := check(rec, st.GetResult())
		if err != nil || !v.RangesChecked {
			t.Fatalf("the honest record: ranges checked %v, %v", v != nil && v.RangesChecked, err)
		}
		r := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		var first nodev1.ReleaseCommitment
		if err := proto.Unmarshal(r.Senders[1].Commitment.GetPayload(), &first); err != nil {
			t.Fatal(err)
		}
		resign(t, r, 0, func(rc *nodev1.ReleaseCommitment) { rc.RangeCommitments = first.GetRangeCommitments() })
		// Its range proof no longer verifies against them...
		sender0 := r.Senders[0].GetNodeId()
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "the range proof of "+sender0+" (") {
			t.Fatalf("another partial's range commitments: %v; want the range proof of %s refused", err, sender0)
		}
		// ... and without the proofs the total is not their sum.
		for _, s := range r.Senders {
			s.RangeProof = nil
		}
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "not the sum of the values the senders committed to") {
			t.Fatalf("another partial's range commitments, no range proofs: %v", err)
		}
		r = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		resign(t, r, 2, func(rc *nodev1.ReleaseCommitment) { rc.RangeCommitments = nil })
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "has a range proof in the record but signed no range commitments") {
			t.Fatalf("one sender without range commitments, with its proof: %v", err)
		}
		r.Senders[2].RangeProof = nil
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "all or none must") {
			t.Fatalf("one sender without range commitments: %v", err)
		}
		for i := range r.Senders {
			resign(t, r, i, func(rc *nodev1.ReleaseCommitment) { rc.RangeCommitments = nil })
			r.Senders[i].RangeProof = nil
		}
		if v, err := check(r, st.GetResult()); err != nil || v.RangesChecked || !v.Decrypted {
			t.Fatalf("no sender with range commitments: %+v, %v", v, err)
		}
	})

	// The record carries every sender's range proof, which the check
	// verifies itself (needing no key) against the commitments the sender
	// signed: a changed proof, or another sender's, is refused naming the
	// sender; a record without them (policy skip_range_proofs) is checked
	// but not proven within the bounds.
	t.Run("range proofs", func(t *testing.T) {
		v, err := check(rec, st.GetResult())
		if err != nil || !v.RangesProven || !v.RangesChecked {
			t.Fatalf("the honest record: ranges proven %v, checked %v, %v", v != nil && v.RangesProven, v != nil && v.RangesChecked, err)
		}
		for _, s := range rec.GetSenders() {
			if len(s.GetRangeProof()) == 0 {
				t.Fatalf("the record has no range proof of %s", s.GetNodeId())
			}
		}
		r := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		r.Senders[1].RangeProof[len(r.Senders[1].RangeProof)/2] ^= 1
		named := r.Senders[1].GetNodeId()
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "the range proof of "+named+" (") {
			t.Fatalf("a changed range proof: %v; want %s's refused", err, named)
		}
		r = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		r.Senders[0].RangeProof = rec.Senders[1].RangeProof
		named = r.Senders[0].GetNodeId()
		if _, err := check(r, st.GetResult()); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "the range proof of "+named+" (") {
			t.Fatalf("another sender's range proof: %v; want %s's refused", err, named)
		}
		r = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		r.Senders[2].RangeProof = nil
		if v, err := check(r, st.GetResult()); err != nil || v.RangesProven || !v.RangesChecked || !v.Decrypted {
			t.Fatalf("one sender without its range proof: %+v, %v; want checked, not proven", v, err)
		}
	})

	refused := func(t *testing.T, tamper func(r *coordinatorv1.ReleaseRecord, res *typesv1.Result), texts ...string) {
		t.Helper()
		r := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
		res := proto.Clone(st.GetResult()).(*typesv1.Result)
		tamper(r, res)
		v, err := check(r, res)
		if !errors.Is(err, releasecheck.ErrRefused) {
			t.Fatalf("a tampered record passed: %+v, %v", v, err)
		}
		for _, s := range texts {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("error %q does not say %q", err, s)
			}
		}
	}
	t.Run("released totals changed", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, res *typesv1.Result) {
			res.Rows[0].Values[0].Value += 1
			r.Result = res
		}, "not the decryption of the committed sum")
	})
	t.Run("released result not the record's", func(t *testing.T) {
		refused(t, func(_ *coordinatorv1.ReleaseRecord, res *typesv1.Result) { res.Rows[0].Values[0].Value += 1 },
			"not the result released to you")
	})
	t.Run("sender dropped", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.Senders = r.Senders[1:] },
			"committed to another set of partials")
	})
	t.Run("partial of another query", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) {
			r.Senders[0].Partial = other.Senders[0].Partial
		},
			"the partial of "+rec.Senders[0].NodeId, "is not its signed partial")
	})
	t.Run("commitment of another query", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) {
			r.Senders[1].Commitment = other.Senders[1].Commitment
		}, "the commitment of "+rec.Senders[1].NodeId)
	})
	t.Run("sum not the committed one", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.Sum = other.Sum }, "committed to another sum")
	})
	t.Run("forged share", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) {
			sh := r.Decryptors[0].Share
			sh.Payload = other.Decryptors[0].Share.Payload
		}, "the key-switch share of "+rec.Decryptors[0].NodeId, "does not verify")
	})
	t.Run("share of another query", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) {
			r.Decryptors[0].Share = other.Decryptors[0].Share
		},
			"the key-switch share of "+rec.Decryptors[0].NodeId)
	})
	t.Run("fewer than T shares", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.Decryptors = r.Decryptors[:1] },
			"1 decryptor shares, the epoch's threshold is 2")
	})
	t.Run("share repeated", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.Decryptors[1] = r.Decryptors[0] }, "appears twice")
	})
	t.Run("certificate not of the network CA", func(t *testing.T) {
		rogue, err := pki.NewCA("rogue", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		id, err := rogue.Issue(pki.IssueRequest{Name: rec.Senders[0].NodeId, Role: pki.RoleNode})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) {
			r.Certificates = append([][]byte{id.Cert.Raw}, r.Certificates...)
		}, "the certificate of \""+rec.Senders[0].NodeId+"\" is not of the network CA")
	})
	t.Run("result key made up", func(t *testing.T) {
		params, err := homomorphic.NewParams(rec.GetParams())
		if err != nil {
			t.Fatal(err)
		}
		rk, err := homomorphic.GenResultKey(params)
		if err != nil {
			t.Fatal(err)
		}
		b, err := rk.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.ResultKey = b }, "not the pair of the target key")
	})
	t.Run("key withheld for a mean", func(t *testing.T) {
		// The sums behind a mean were not released: the coordinator keeps
		// the key, and the check stops at the switched sum, saying so.
		st, rec := run(1, "SELECT AVG(CLAMP(age, 0, 110)) AS mean_age FROM patients")
		if len(rec.GetResultKey()) != 0 || !strings.Contains(rec.GetResultKeyWithheld(), "not released on their own") {
			t.Fatalf("result key %d bytes, withheld %q", len(rec.GetResultKey()), rec.GetResultKeyWithheld())
		}
		v, err := check(rec, st.GetResult())
		if err != nil {
			t.Fatal(err)
		}
		if v.Decrypted || !strings.Contains(v.Withheld, "not released on their own") || len(v.Senders) != 3 {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("result key withheld", func(t *testing.T) {
		refused(t, func(r *coordinatorv1.ReleaseRecord, _ *typesv1.Result) { r.ResultKey = nil }, "the result key is withheld")
	})
}
