package coordinator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestVerifyPartialChecksProofs: the proofs of encryption of a revealed
// partial whose proofs are another query's, another member's, of another
// ciphertext, or unlinked to its commitments fail the coordinator's check:
// at collection when it runs compact releases (verifyPartial; their
// decryptors never see the proofs), and otherwise only when a decryptor
// refuses the partial (its proofs func, which judgeRefusals runs;
// TestJudgeRefusals). A partial without proofs is refused at collection
// unless the coordinator runs compact releases. What the coordinator does
// with a refusal at collection (the query fails naming the member,
// nothing decrypted) is revealSet's.
func TestVerifyPartialChecksProofs(t *testing.T) {
	homomorphic.AllowInsecureForTests()
	p, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("proof test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "node-3", Role: pki.RoleNode, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{params: p, cfg: Config{Now: time.Now, MaxSkew: protocol.DefaultMaxSkew}, replay: envelope.NewMemoryReplayCache(time.Hour)}
	e := &epoch{ID: 4, PublicKey: rk.Public()}
	mem := epochMember{ID: "node-3", Cert: id.Cert}
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", MinNodes: 3}
	shape := protocol.PartialShape{SpecDigest: protocol.SpecDigest(spec), VectorLen: 2, Params: p, Ranges: []rangeproof.Range{{Lo: 0, Hi: 100}, {Lo: 0, Hi: 100}}}

	// partialOf is node-3's partial of values committed to and proven in
	// ranges for this query, its proofs of encryption for ctx (linked to
	// the commitments).
	partialOf := func(values []int64, ranges []rangeproof.Range, ctx []byte, mutate func(*nodev1.PartialPayload)) *typesv1.Signed {
		t.Helper()
		encoded, rc, err := protocol.EncodePartial(values, ranges, "q-1", e.ID, "node-3", shape.SpecDigest)
		if err != nil {
			t.Fatal(err)
		}
		cts, proofs, link, err := protocol.EncryptEncoded(p, rk.Public(), encoded, rc, ctx)
		if err != nil {
			t.Fatal(err)
		}
		pl := &nodev1.PartialPayload{SpecDigest: shape.SpecDigest, VectorLen: 2, Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
		for _, ct := range cts {
			b, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			pl.Ciphertexts = append(pl.Ciphertexts, b)
		}
		if mutate != nil {
			mutate(pl)
		}
		s, err := protocol.SealPartial(id.Key, "q-1", e.ID, "node-3", pl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// signedPartial is node-3's partial (3, 4) in the plan's ranges.
	signedPartial := func(ctx []byte, mutate func(*nodev1.PartialPayload)) *typesv1.Signed {
		t.Helper()
		return partialOf([]int64{3, 4}, shape.Ranges, ctx, mutate)
	}
	own := protocol.EncryptionContext("q-1", e.ID, "node-3", shape.SpecDigest)
	if pt, err := c.verifyPartial("q-1", spec, e, mem, signedPartial(own, nil), shape); err != nil || len(pt.commitments) != 2*rangeproof.PointSize {
		t.Fatalf("a partial with its proofs: %v (%d bytes of commitments kept)", err, len(pt.commitments))
	}
	_, alt, err := homomorphic.EncryptProven(p, rk.Public(), []int64{3, 4}, own)
	if err != nil {
		t.Fatal(err)
	}
	var otherLink []byte
	{
		var pl nodev1.PartialPayload
		if err := proto.Unmarshal(signedPartial(own, nil).GetPayload(), &pl); err != nil {
			t.Fatal(err)
		}
		otherLink = pl.GetRangeLink()
	}
	// liar is node-3's encryption of (3, 400) (and the limbs of (3, 4)'s
	// blindings) with a link made from the commitments to (3, 4): the
	// real protocol with one step changed.
	liar := func(pl *nodev1.PartialPayload) {
		encoded, rc, err := protocol.EncodePartial([]int64{3, 4}, shape.Ranges, "q-1", e.ID, "node-3", shape.SpecDigest)
		if err != nil {
			t.Fatal(err)
		}
		encoded[1] = 400
		cts, proofs, link, err := protocol.EncryptEncoded(p, rk.Public(), encoded, rc, own)
		if err != nil {
			t.Fatal(err)
		}
		pl.Ciphertexts = nil
		for _, ct := range cts {
			b, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			pl.Ciphertexts = append(pl.Ciphertexts, b)
		}
		pl.Proofs, pl.RangeCommitments, pl.RangeProof, pl.RangeLink = proofs, rc.Commitments, rc.Proof, link
	}
	for name, mutate := range map[string]struct {
		ctx    []byte
		mutate func(*nodev1.PartialPayload)
	}{
		"another query's proofs":                {protocol.EncryptionContext("q-0", e.ID, "node-3", shape.SpecDigest), nil},
		"another member's proofs":               {protocol.EncryptionContext("q-1", e.ID, "node-1", shape.SpecDigest), nil},
		"another ciphertext's":                  {own, func(pl *nodev1.PartialPayload) { pl.Proofs[0] = alt[0] }},
		"a truncated proof":                     {own, func(pl *nodev1.PartialPayload) { pl.Proofs[0] = pl.Proofs[0][:len(pl.Proofs[0])-1] }},
		"no proofs":                             {own, func(pl *nodev1.PartialPayload) { pl.Proofs = nil }},
		"no link":                               {own, func(pl *nodev1.PartialPayload) { pl.RangeLink = nil }},
		"another partial's link":                {own, func(pl *nodev1.PartialPayload) { pl.RangeLink = otherLink }},
		"(3, 400) behind commitments to (3, 4)": {own, liar},
	} {
		want := func(how string, err error) {
			t.Helper()
			if err == nil {
				t.Fatalf("%s, %s: passed, want it refused", name, how)
			}
			if name == "no proofs" && !errors.Is(err, protocol.ErrUnproven) {
				t.Fatalf("no proofs, %s: %v, want ErrUnproven", how, err)
			}
			// Another partial's link: its masks' commitments are not the
			// ones bound into these proofs of encryption, which fail.
			if name == "no link" || strings.Contains(name, "behind") {
				if !errors.Is(err, protocol.ErrUnlinked) {
					t.Fatalf("%s, %s: %v, want ErrUnlinked", name, how, err)
				}
			}
		}
		// A full release: taken at collection (its proofs left to the
		// decryptors), failing when judged; without proofs, refused.
		c.cfg.CompactRelease = false
		pt, err := c.verifyPartial("q-1", spec, e, mem, signedPartial(mutate.ctx, mutate.mutate), shape)
		if name == "no proofs" {
			if err == nil || !strings.Contains(err.Error(), "partial rejected") {
				t.Fatalf("no proofs, full release: %v, want the partial rejected", err)
			}
			want("full release, at collection", err)
		} else {
			if err != nil {
				t.Fatalf("%s, full release: %v at collection, want its proofs left to the decryptors", name, err)
			}
			if pt.proofs == nil {
				t.Fatalf("%s, full release: no check of its proofs kept for a refusal", name)
			}
			known, jerr := newPartialJudge([]partial{pt}).check("node-3")
			if !known {
				t.Fatalf("%s: the judge does not know node-3's partial", name)
			}
			want("full release, judged", jerr)
		}
		// A compact release: refused at collection (no proofs allowed).
		c.cfg.CompactRelease = true
		_, err = c.verifyPartial("q-1", spec, e, mem, signedPartial(mutate.ctx, mutate.mutate), shape)
		if name == "no proofs" {
			if err != nil {
				t.Fatalf("no proofs, compact releases on: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "partial rejected") {
			t.Fatalf("%s, compact release: %v, want the partial rejected", name, err)
		}
		want("compact release, at collection", err)
	}
	c.cfg.CompactRelease = false
	// A range proof is checked with the others of the set (checkRanges):
	// node-3's of (3, 400), proven in a range that allows 400, fails the
	// query naming node-3; with an honest partial beside it, only node-3.
	honest, err := c.verifyPartial("q-1", spec, e, mem, signedPartial(own, nil), shape)
	if err != nil {
		t.Fatal(err)
	}
	// (3, 400), committed to and proven in a range that allows 400.
	wide, err := c.verifyPartial("q-1", spec, e, mem, partialOf([]int64{3, 400}, []rangeproof.Range{{Lo: 0, Hi: 1000}, {Lo: 0, Hi: 1000}}, own, nil), shape)
	if err != nil {
		t.Fatalf("a range proof is not checked alone: %v", err)
	}
	honest.node = "node-1"
	if err := checkRanges([]partial{honest, honest}, false); err != nil {
		t.Fatalf("honest range proofs: %v", err)
	}
	err = checkRanges([]partial{honest, wide}, false)
	if !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "node-3 revealed a partial whose values are not proven within the plan's bounds") ||
		strings.Contains(err.Error(), "node-1:") || !strings.Contains(err.Error(), "nothing was decrypted") {
		t.Fatalf("a value beyond the plan's bounds: %v", err)
	}
	// A partial without a range proof (its node skips them): named unless
	// the coordinator skips them too (Config.SkipRangeProofs); a present
	// proof that fails is named either way.
	bare := honest
	bare.node, bare.ranges.Proof = "node-2", nil
	if err := checkRanges([]partial{honest, bare}, false); !errors.Is(err, ErrQueryFailed) || !strings.Contains(err.Error(), "node-2: partial rejected: it carries no range proof") {
		t.Fatalf("no range proof: %v", err)
	}
	if err := checkRanges([]partial{honest, bare}, true); err != nil {
		t.Fatalf("no range proof, skipped: %v", err)
	}
	if err := checkRanges([]partial{bare, wide}, true); err == nil || !strings.Contains(err.Error(), "node-3 revealed") {
		t.Fatalf("a failing proof, range proofs skipped: %v", err)
	}
}
