package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// TestCopiedPartialRefused plays a malicious member (node-3: the test holds
// its key) with a malicious coordinator against the copy attack of
// threat-model.md: node-3 sends, as its partial of a new query, node-1's
// revealed partial of an earlier query, re-randomised (so that no digest
// matches) or as it was, with node-1's proofs of encryption or without any.
// Released, the new total would hold node-1's earlier answer a second time,
// which node-1 never paid budget for. Every decryptor verifies every
// partial's proofs before it key-switches (node.openPartials), so each
// variant is refused, naming node-3, and no decryptor gives a share. So is
// node-3's own partial with a count of minus a million, proven in a range
// wider than the plan's (every decryptor verifies every range proof too),
// and one with minus a million encrypted behind a commitment to 5 (every
// decryptor checks each proof of encryption's link to the commitments).
// The control: the same release with node-3's own honest partial is
// key-switched.
func TestCopiedPartialRefused(t *testing.T) {
	nw, ctx, nodes := startCurious(t, 4, 2, 2, true)
	params := nw.Coordinator.Params()
	spec := secSpec(2, 2)
	n3 := mustIdentity(t, nw, "node-3")
	dec := []string{"node-1", "node-4"}

	header := func(qid, id string) *nodev1.NodeSigned {
		t.Helper()
		resp, err := evaluate(t, ctx, nw, nodes, id, qid, spec)
		if err != nil {
			t.Fatalf("evaluate %s at %s: %v", qid, id, err)
		}
		return &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()}
	}
	reveal := func(id, qid string, set []*nodev1.NodeSigned) *nodev1.NodeSigned {
		t.Helper()
		resp, err := nodes[id].Reveal(ctx, &nodev1.RevealRequest{QueryId: qid, Epoch: nw.Epoch, Spec: spec, Partials: set})
		if err != nil {
			t.Fatalf("reveal %s at %s: %v", qid, id, err)
		}
		return &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()}
	}
	payloadOf := func(p *nodev1.NodeSigned) *nodev1.PartialPayload {
		t.Helper()
		var pl nodev1.PartialPayload
		if err := proto.Unmarshal(p.GetSigned().GetPayload(), &pl); err != nil {
			t.Fatal(err)
		}
		return &pl
	}
	// release asks every decryptor to key-switch set (whole partials, with
	// the coordinator's sum and every sender's commitment; node-3's signed
	// by the test when forged).
	release := func(qid string, set []*nodev1.NodeSigned, forged bool) []error {
		t.Helper()
		_, target := resultKey(t, params)
		committers := []string{"node-2"}
		if !forged {
			committers = append(committers, "node-3")
		}
		req := compactRelease(t, ctx, nodes, nw.Epoch, qid, spec, set, sumOf(t, params, set), committers, target, dec)
		if forged {
			rc, err := protocol.NewReleaseCommitment(params, protocol.CommitDigest(qid, nw.Epoch, spec, set), protocol.SumDigest(req.GetSum()), payloadOf(set[1]))
			if err != nil {
				t.Fatal(err)
			}
			signed, err := protocol.SealReleaseCommitment(n3.Key, qid, nw.Epoch, "node-3", rc, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			req.Commits = append(req.Commits, &nodev1.NodeSigned{NodeId: "node-3", Signed: signed})
		}
		req.Partials = set // the whole partials, payloads and proofs
		var errs []error
		for _, d := range dec {
			resp, err := nodes[d].KeySwitch(ctx, req)
			if err == nil && len(resp.GetShare().GetPayload()) == 0 {
				t.Fatalf("%s answered with no share and no error", d)
			}
			errs = append(errs, err)
		}
		return errs
	}

	// The victim: node-1's revealed partial of an earlier query.
	victimQ := "q-victim"
	victim := reveal("node-1", victimQ, []*nodev1.NodeSigned{header(victimQ, "node-1"), header(victimQ, "node-2")})
	vp := payloadOf(victim)
	if len(vp.GetProofs()) != len(vp.GetCiphertexts()) || len(vp.GetProofs()) == 0 {
		t.Fatalf("node-1's partial carries %d proofs for %d ciphertexts", len(vp.GetProofs()), len(vp.GetCiphertexts()))
	}
	victimCts := make([]*homomorphic.Ciphertext, len(vp.GetCiphertexts()))
	for i, b := range vp.GetCiphertexts() {
		ct, err := homomorphic.UnmarshalCiphertext(params, b)
		if err != nil {
			t.Fatal(err)
		}
		victimCts[i] = ct
	}
	pk, epoch, err := nw.Coordinator.PublicKey()
	if err != nil || epoch != nw.Epoch {
		t.Fatalf("the epoch's public key: %v (epoch %d, want %d)", err, epoch, nw.Epoch)
	}
	// rerandomised is the victim's ciphertexts plus a fresh encryption of
	// zero under the epoch's key: no digest or byte of it is node-1's.
	rerandomised := func() [][]byte {
		t.Helper()
		out := make([][]byte, len(victimCts))
		for i, ct := range victimCts {
			zero, err := homomorphic.Encrypt(params, pk, []int64{0})
			if err != nil {
				t.Fatal(err)
			}
			c := ct.Clone()
			if err := homomorphic.Add(params, c, zero[0]); err != nil {
				t.Fatal(err)
			}
			b, err := c.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			out[i] = b
		}
		return out
	}
	// craft signs payload as node-3's partial of qid.
	craft := func(qid string, pl *nodev1.PartialPayload) *nodev1.NodeSigned {
		t.Helper()
		pl.VectorLen, pl.SpecDigest, pl.PlanFingerprint = vp.GetVectorLen(), protocol.SpecDigest(spec), vp.GetPlanFingerprint()
		pb, err := proto.Marshal(pl)
		if err != nil {
			t.Fatal(err)
		}
		env, err := envelope.Seal(n3.Key, envelope.Binding{QueryID: qid, Epoch: nw.Epoch, NodeID: "node-3", Kind: protocol.KindPartial}, pb, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &nodev1.NodeSigned{NodeId: "node-3", Signed: protocol.ToProto(env)}
	}

	// forged is node-3's own partial of qid, every proof made as an honest
	// node makes it, of values proven in ranges; change, when set, changes
	// what is encrypted after the commitments are made.
	forged := func(qid string, values []int64, ranges []rangeproof.Range, change func(encoded []int64)) *nodev1.PartialPayload {
		t.Helper()
		digest := protocol.SpecDigest(spec)
		encoded, rc, err := protocol.EncodePartial(values, ranges, qid, nw.Epoch, "node-3", digest)
		if err != nil {
			t.Fatal(err)
		}
		if change != nil {
			change(encoded)
		}
		cts, proofs, link, err := protocol.EncryptEncoded(params, pk, encoded, rc, protocol.EncryptionContext(qid, nw.Epoch, "node-3", digest))
		if err != nil {
			t.Fatal(err)
		}
		pl := &nodev1.PartialPayload{Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
		for _, ct := range cts {
			b, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			pl.Ciphertexts = append(pl.Ciphertexts, b)
		}
		return pl
	}
	// outOfRange: its count is minus a million, committed to and proven
	// in a range wider than the plan's.
	outOfRange := func(qid string) *nodev1.PartialPayload {
		t.Helper()
		return forged(qid, []int64{-1_000_000}, []rangeproof.Range{{Lo: -2_000_000, Hi: 2_000_000}}, nil)
	}
	// uncommitted: a count of 5 committed to and proven within the plan's
	// bounds, minus a million encrypted, its proof of encryption linked to
	// the commitment to 5.
	req, err := protocol.PlanRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	qp, err := plan.Build(req, nw.Catalogue)
	if err != nil {
		t.Fatal(err)
	}
	uncommitted := func(qid string) *nodev1.PartialPayload {
		t.Helper()
		return forged(qid, []int64{5}, protocol.PartialRanges(qp), func(encoded []int64) { encoded[0] = -1_000_000 })
	}
	// A copy carries node-1's range commitments, proof and link as well.
	coms, rproof, link := vp.GetRangeCommitments(), vp.GetRangeProof(), vp.GetRangeLink()
	cases := []struct {
		name  string
		pl    func(qid string) *nodev1.PartialPayload
		wants []string
	}{
		{"the copy as it was, with node-1's proofs", func(string) *nodev1.PartialPayload {
			return &nodev1.PartialPayload{Ciphertexts: vp.GetCiphertexts(), Proofs: vp.GetProofs(), RangeCommitments: coms, RangeProof: rproof, RangeLink: link}
		}, []string{"partial from node-3", "ciphertext 0", "proof of encryption refused"}},
		{"re-randomised, with node-1's proofs", func(string) *nodev1.PartialPayload {
			return &nodev1.PartialPayload{Ciphertexts: rerandomised(), Proofs: vp.GetProofs(), RangeCommitments: coms, RangeProof: rproof, RangeLink: link}
		}, []string{"partial from node-3", "ciphertext 0", "proof of encryption refused"}},
		{"re-randomised, without proofs", func(string) *nodev1.PartialPayload {
			return &nodev1.PartialPayload{Ciphertexts: rerandomised(), RangeCommitments: coms, RangeProof: rproof, RangeLink: link}
		}, []string{"partial from node-3", "no proofs of encryption"}},
		{"node-3's own minus a million behind a commitment to 5", uncommitted,
			[]string{"partial from node-3", "do not encrypt the values it committed to", "nothing was key-switched"}},
		{"node-3's own count of minus a million, proven in a wider range", outOfRange,
			[]string{"partial from node-3", "not proven within the plan's bounds", "range proof refused", "nothing was key-switched"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			qid := "q-copy-" + string(rune('a'+i))
			// node-3 signs its partial first (the victim's was revealed
			// long before), then node-2 reveals for the set.
			crafted := craft(qid, tc.pl(qid))
			h2 := header(qid, "node-2")
			p2 := reveal("node-2", qid, []*nodev1.NodeSigned{h2, protocolCommitment(crafted)})
			for j, err := range release(qid, []*nodev1.NodeSigned{p2, crafted}, true) {
				wantCode(t, tc.name+" at "+dec[j], err, codes.InvalidArgument, tc.wants...)
			}
		})
	}
	// Every decryptor's audit log records each refusal, naming node-3.
	for _, d := range dec {
		refused := map[string]int{}
		for _, e := range auditLog(t, filepath.Join(nw.Dir, d, "audit.log")) {
			reason, _ := e.Details["reason"].(string)
			if e.Action == "release.refused" && strings.Contains(reason, "node-3") {
				switch {
				case strings.Contains(reason, "proof of encryption refused"):
					refused["proof"]++
				case strings.Contains(reason, "no proofs of encryption"):
					refused["none"]++
				case strings.Contains(reason, "not proven within the plan's bounds"):
					refused["range"]++
				}
			}
		}
		if refused["proof"] != 2 || refused["none"] != 1 || refused["range"] != 1 {
			t.Errorf("%s's audit log: release.refused naming node-3 %v, want 2 for a proof refused, 1 for none and 1 for a range proof refused", d, refused)
		}
	}

	t.Run("control: node-3's own partial", func(t *testing.T) {
		qid := "q-copy-control"
		set := []*nodev1.NodeSigned{header(qid, "node-2"), header(qid, "node-3")}
		p2, p3 := reveal("node-2", qid, set), reveal("node-3", qid, set)
		for j, err := range release(qid, []*nodev1.NodeSigned{p2, p3}, false) {
			if err != nil {
				t.Fatalf("the honest release at %s: %v", dec[j], err)
			}
		}
	})
}
