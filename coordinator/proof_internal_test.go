package coordinator

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestVerifyPartialChecksProofs: the coordinator's own check of a revealed
// partial (verifyPartial) passes a partial with its proofs of encryption
// and refuses one whose proofs are another query's, another member's, of
// another ciphertext, or missing (unless the coordinator runs compact
// releases); what the coordinator does with the refusal (the query fails
// naming the member, nothing decrypted) is revealSet's.
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
	shape := protocol.PartialShape{SpecDigest: protocol.SpecDigest(spec), VectorLen: 2, Params: p}

	partial := func(ctx []byte, mutate func(*nodev1.PartialPayload)) *typesv1.Signed {
		t.Helper()
		cts, proofs, err := homomorphic.EncryptProven(p, rk.Public(), []int64{3, 4}, ctx)
		if err != nil {
			t.Fatal(err)
		}
		pl := &nodev1.PartialPayload{SpecDigest: shape.SpecDigest, VectorLen: 2, Proofs: proofs}
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
	own := protocol.EncryptionContext("q-1", e.ID, "node-3", shape.SpecDigest)
	if _, err := c.verifyPartial("q-1", spec, e, mem, partial(own, nil), shape); err != nil {
		t.Fatalf("a partial with its proofs: %v", err)
	}
	_, alt, err := homomorphic.EncryptProven(p, rk.Public(), []int64{3, 4}, own)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*typesv1.Signed{
		"another query's proofs":  partial(protocol.EncryptionContext("q-0", e.ID, "node-3", shape.SpecDigest), nil),
		"another member's proofs": partial(protocol.EncryptionContext("q-1", e.ID, "node-1", shape.SpecDigest), nil),
		"another ciphertext's":    partial(own, func(pl *nodev1.PartialPayload) { pl.Proofs[0] = alt[0] }),
		"a truncated proof":       partial(own, func(pl *nodev1.PartialPayload) { pl.Proofs[0] = pl.Proofs[0][:len(pl.Proofs[0])-1] }),
		"no proofs":               partial(own, func(pl *nodev1.PartialPayload) { pl.Proofs = nil }),
	} {
		_, err := c.verifyPartial("q-1", spec, e, mem, s, shape)
		if err == nil || !strings.Contains(err.Error(), "partial rejected") {
			t.Fatalf("%s: %v, want the partial rejected", name, err)
		}
		if name == "no proofs" && !errors.Is(err, protocol.ErrUnproven) {
			t.Fatalf("no proofs: %v, want ErrUnproven", err)
		}
	}
	c.cfg.CompactRelease = true
	if _, err := c.verifyPartial("q-1", spec, e, mem, partial(own, func(pl *nodev1.PartialPayload) { pl.Proofs = nil }), shape); err != nil {
		t.Fatalf("no proofs, compact releases on: %v", err)
	}
}
