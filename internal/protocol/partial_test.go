package protocol_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

func testSpec() *typesv1.QuerySpec {
	return &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6, MinNodes: 2, Threshold: 2, ReferenceDate: "2026-01-01"}
}

func testPlan(t *testing.T, spec *typesv1.QuerySpec) *plan.Plan {
	t.Helper()
	req, err := protocol.PlanRequest(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(req, plan.DefaultCatalogue())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testParams(t *testing.T) homomorphic.Params {
	t.Helper()
	params, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	return params
}

// encrypted returns the payload of an honest partial of spec (query q-1,
// epoch 3, node-1): n zero slots committed to, proven within the plan's
// bounds and encrypted with their blindings' limbs, with proofs of
// encryption, under pk (a fresh key when nil).
func encrypted(t *testing.T, params homomorphic.Params, spec *typesv1.QuerySpec, n int, pk ...*homomorphic.PublicKey) *nodev1.PartialPayload {
	t.Helper()
	if len(pk) == 0 {
		rk, err := homomorphic.GenResultKey(params)
		if err != nil {
			t.Fatal(err)
		}
		pk = append(pk, rk.Public())
	}
	return encryptedOf(t, params, spec, make([]int64, n), protocol.PartialRanges(testPlan(t, spec)), "q-1", pk[0])
}

// encryptedOf is encrypted of values, proven in ranges for the query id
// rangeQuery (q-1, the partial's, unless a test wants another's), under pk.
func encryptedOf(t *testing.T, params homomorphic.Params, spec *typesv1.QuerySpec, values []int64, ranges []rangeproof.Range, rangeQuery string, pk *homomorphic.PublicKey) *nodev1.PartialPayload {
	t.Helper()
	digest := protocol.SpecDigest(spec)
	encoded, rc, err := protocol.EncodePartial(values, ranges, rangeQuery, 3, "node-1", digest)
	if err != nil {
		t.Fatal(err)
	}
	cts, proofs, link, err := protocol.EncryptEncoded(params, pk, encoded, rc, protocol.EncryptionContext("q-1", 3, "node-1", digest))
	if err != nil {
		t.Fatal(err)
	}
	out := &nodev1.PartialPayload{VectorLen: int32(len(values)), SpecDigest: digest, Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
	for _, ct := range cts {
		b, err := ct.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out.Ciphertexts = append(out.Ciphertexts, b)
	}
	return out
}

// TestPartial: OpenPartial, the checks both sides run on a partial, accepts
// an honest partial and refuses every departure from the query's spec and
// shape, and every envelope problem, with the messages the coordinator and
// the nodes show.
func TestPartial(t *testing.T) {
	signer := key(t)
	params := testParams(t)
	spec := testSpec()
	p := testPlan(t, spec)
	shape := protocol.PartialShapeOf(spec, p, params)
	if shape.VectorLen != p.VectorLen() || !shape.Params.Equal(params) || string(shape.SpecDigest) != string(protocol.SpecDigest(spec)) || shape.Plaintext {
		t.Fatalf("shape %+v", shape)
	}
	honest := encrypted(t, params, spec, p.VectorLen())
	seal := func(payload *nodev1.PartialPayload) *typesv1.Signed {
		t.Helper()
		s, err := protocol.SealPartial(signer, "q-1", 3, "node-1", payload, t0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	open := func(s *typesv1.Signed, want protocol.PartialShape) (*protocol.Partial, error) {
		return protocol.OpenPartial(signer.Public(), s, "q-1", 3, "node-1", window(), want)
	}

	s := seal(honest)
	got, err := open(s, shape)
	if err != nil {
		t.Fatal(err)
	}
	if got.Signed != s || len(got.Ciphertexts) != params.NumCiphertexts(rangeproof.EncodedLen(p.VectorLen())) || got.Plaintext != nil {
		t.Fatalf("opened %+v", got)
	}

	other := testSpec()
	other.MinNodes = 3
	wrongLen := encrypted(t, params, spec, p.VectorLen())
	wrongLen.VectorLen++
	extra := encrypted(t, params, spec, p.VectorLen())
	extra.Ciphertexts = append(extra.Ciphertexts, extra.Ciphertexts[0])
	garbage := encrypted(t, params, spec, p.VectorLen())
	garbage.Ciphertexts[0] = []byte("not a ciphertext")
	plain := encrypted(t, params, spec, p.VectorLen())
	plain.Plaintext = make([]int64, p.VectorLen())
	uncommitted := encrypted(t, params, spec, p.VectorLen())
	uncommitted.RangeCommitments = nil
	for _, c := range []struct {
		name    string
		payload *nodev1.PartialPayload
		want    string
	}{
		{"noised for another spec", encrypted(t, params, other, p.VectorLen()),
			"it was planned and noised for another query spec (min_nodes, threshold, epsilon, delta or SQL differ)"},
		{"another number of slots", wrongLen, "2 slots in 1 ciphertexts, the plan needs 1 (and their blindings) in 1"},
		{"another number of ciphertexts", extra, "1 slots in 2 ciphertexts, the plan needs 1 (and their blindings) in 1"},
		{"no range commitments", uncommitted, "0 bytes of range commitments: the plan's 1 values need 32"},
		{"a ciphertext that does not decode", garbage, "ciphertext 0: "},
		{"slots in the clear", plain, "it is not encrypted"},
	} {
		_, err := open(seal(c.payload), shape)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if p.VectorLen() != 1 {
		t.Fatalf("the messages above assume a plan of 1 slot, got %d", p.VectorLen())
	}

	if _, err := open(resealed(t, signer, s, []byte{0xff, 0xff}), shape); !errors.Is(err, protocol.ErrMalformedPayload) {
		t.Errorf("a payload that does not decode: %v", err)
	}
	if _, err := protocol.OpenPartial(key(t).Public(), s, "q-1", 3, "node-1", window(), shape); !errors.Is(err, envelope.ErrBadSignature) {
		t.Errorf("another node's key: %v", err)
	}
	for name, b := range map[string][3]any{"query id": {"q-2", uint64(3), "node-1"}, "epoch": {"q-1", uint64(2), "node-1"}, "node": {"q-1", uint64(3), "node-2"}} {
		if _, err := protocol.OpenPartial(signer.Public(), s, b[0].(string), b[1].(uint64), b[2].(string), window(), shape); !errors.Is(err, envelope.ErrBindingMismatch) {
			t.Errorf("another %s: %v", name, err)
		}
	}
	late := window()
	late.Now = t0.Add(protocol.DefaultMaxSkew + time.Minute)
	if _, err := protocol.OpenPartial(signer.Public(), s, "q-1", 3, "node-1", late, shape); !errors.Is(err, envelope.ErrStale) {
		t.Errorf("beyond the window: %v", err)
	}

	// Benchmark plaintext mode: slots in the clear, nothing else.
	bench := shape
	bench.Plaintext = true
	clear := &nodev1.PartialPayload{VectorLen: int32(p.VectorLen()), Plaintext: []int64{42}, SpecDigest: protocol.SpecDigest(spec)}
	got, err = open(seal(clear), bench)
	if err != nil || len(got.Plaintext) != 1 || got.Plaintext[0] != 42 || got.Ciphertexts != nil {
		t.Errorf("a plaintext partial in plaintext mode: %+v, %v", got, err)
	}
	if _, err := open(s, bench); err == nil || err.Error() != "benchmark plaintext mode needs 1 plaintext slots" {
		t.Errorf("an encrypted partial in plaintext mode: %v", err)
	}
}

// TestCheckPartialProofs: a partial's range proof is verified for the
// plan's bounds, whatever the policy on proofs of encryption: an honest
// partial passes; a proof of another node's commitments, one made for
// values beyond the plan's bounds (a count of minus a million, proven in a
// wider range) or for another query, and a changed proof are refused.
func TestCheckPartialProofs(t *testing.T) {
	params := testParams(t)
	spec := testSpec()
	p := testPlan(t, spec)
	shape := protocol.PartialShapeOf(spec, p, params)
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		t.Fatal(err)
	}
	signer := key(t)
	open := func(payload *nodev1.PartialPayload) *protocol.Partial {
		t.Helper()
		s, err := protocol.SealPartial(signer, "q-1", 3, "node-1", payload, t0)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := protocol.OpenPartial(signer.Public(), s, "q-1", 3, "node-1", window(), shape)
		if err != nil {
			t.Fatal(err)
		}
		return pt
	}
	// checkSkip runs both checks a decryptor runs on a partial: its proofs
	// of encryption, then its range proof (with skipRanges, policy
	// skip_range_proofs).
	checkSkip := func(pt *protocol.Partial, allowUnproven, skipRanges bool) error {
		if err := protocol.CheckEncryptionProofs(params, rk.Public(), pt, "q-1", 3, "node-1", shape.SpecDigest, allowUnproven); err != nil {
			return err
		}
		return protocol.CheckRangeProofs([]rangeproof.Item{protocol.RangeProofItem(pt, "q-1", 3, "node-1", shape)}, skipRanges)[0]
	}
	check := func(pt *protocol.Partial, allowUnproven bool) error { return checkSkip(pt, allowUnproven, false) }
	honest := encrypted(t, params, spec, p.VectorLen(), rk.Public())
	if err := check(open(honest), false); err != nil {
		t.Fatalf("an honest partial: %v", err)
	}
	// A count of minus a million, proven in a range that allows it (and
	// encrypted, linked to its commitment).
	digest := protocol.SpecDigest(spec)
	wide := []rangeproof.Range{{Lo: -2_000_000, Hi: 2_000_000}}
	minusAMillion := encryptedOf(t, params, spec, []int64{-1_000_000}, wide, "q-1", rk.Public())
	if _, _, err := protocol.EncodePartial([]int64{-1_000_000}, shape.Ranges, "q-1", 3, "node-1", digest); !errors.Is(err, rangeproof.ErrProof) {
		t.Errorf("a count of minus a million in the plan's bounds: %v, want ErrProof", err)
	}
	otherQuery := encryptedOf(t, params, spec, []int64{5}, shape.Ranges, "q-2", rk.Public())
	changed := encrypted(t, params, spec, p.VectorLen(), rk.Public())
	changed.RangeProof[len(changed.RangeProof)-1] ^= 1
	// Another partial's commitments (and range proof): refused at the
	// proofs of encryption, whose challenges bound this partial's
	// commitments with its link, whatever the policy on unproven partials.
	swapped := encrypted(t, params, spec, p.VectorLen(), rk.Public())
	other := encrypted(t, params, spec, p.VectorLen())
	swapped.RangeCommitments, swapped.RangeProof = other.RangeCommitments, other.RangeProof
	for _, allow := range []bool{false, true} {
		if err := check(open(swapped), allow); !errors.Is(err, protocol.ErrUnlinked) && !errors.Is(err, homomorphic.ErrProof) {
			t.Errorf("other commitments (unproven allowed %v): %v, want ErrUnlinked or the proof of encryption refused", allow, err)
		}
	}
	// Minus a million encrypted behind a commitment to 5 proven in range,
	// with the link of 5: every range proof verifies, the link does not.
	{
		encoded, rc, err := protocol.EncodePartial([]int64{5}, shape.Ranges, "q-1", 3, "node-1", digest)
		if err != nil {
			t.Fatal(err)
		}
		encoded[0] = -1_000_000
		cts, proofs, link, err := protocol.EncryptEncoded(params, rk.Public(), encoded, rc, protocol.EncryptionContext("q-1", 3, "node-1", digest))
		if err != nil {
			t.Fatal(err)
		}
		liar := &nodev1.PartialPayload{VectorLen: 1, SpecDigest: digest, Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
		for _, ct := range cts {
			b, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			liar.Ciphertexts = append(liar.Ciphertexts, b)
		}
		for _, allow := range []bool{false, true} {
			err := check(open(liar), allow)
			if !errors.Is(err, protocol.ErrUnlinked) || !errors.Is(err, rangeproof.ErrLink) || !strings.Contains(err.Error(), "does not encrypt the value committed to in slot 0") {
				t.Errorf("minus a million behind a commitment to 5 (unproven allowed %v): %v, want ErrUnlinked naming slot 0", allow, err)
			}
		}
		noLink := proto.Clone(liar).(*nodev1.PartialPayload)
		noLink.RangeLink = nil
		if err := check(open(noLink), true); !errors.Is(err, protocol.ErrUnlinked) {
			t.Errorf("a partial without its link: %v, want ErrUnlinked", err)
		}
	}
	for name, payload := range map[string]*nodev1.PartialPayload{
		"minus a million": minusAMillion, "another query": otherQuery, "a changed proof": changed,
	} {
		pt := open(payload)
		for _, allow := range []bool{false, true} {
			if err := check(pt, allow); !errors.Is(err, rangeproof.ErrProof) || !strings.Contains(err.Error(), "not proven within the plan's bounds") {
				t.Errorf("%s (unproven allowed %v): %v, want ErrProof", name, allow, err)
			}
		}
	}
	// Without a range proof (a node with policy skip_range_proofs): refused
	// unless this side skips them too; a present proof is checked either way.
	noRange := encrypted(t, params, spec, p.VectorLen(), rk.Public())
	noRange.RangeProof = nil
	if err := check(open(noRange), true); !errors.Is(err, protocol.ErrNoRangeProof) {
		t.Errorf("no range proof: %v, want ErrNoRangeProof", err)
	}
	if err := checkSkip(open(noRange), false, true); err != nil {
		t.Errorf("no range proof, skipped: %v", err)
	}
	if err := checkSkip(open(minusAMillion), false, true); !errors.Is(err, rangeproof.ErrProof) {
		t.Errorf("minus a million, range proofs skipped: %v, want the present proof refused", err)
	}
	noEncryptionProofs := encrypted(t, params, spec, p.VectorLen(), rk.Public())
	noEncryptionProofs.Proofs = nil
	if err := check(open(noEncryptionProofs), false); !errors.Is(err, protocol.ErrUnproven) {
		t.Errorf("no proofs of encryption: %v, want ErrUnproven", err)
	}
	if err := check(open(noEncryptionProofs), true); err != nil {
		t.Errorf("no proofs of encryption, allowed: %v", err)
	}
}
