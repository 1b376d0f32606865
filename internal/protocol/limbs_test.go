package protocol_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestLimbProof: the proof of the limbs of an honest partial, made again
// from what the node kept (the encoded slots and the seed), verifies
// against the partial as sent; for another node or query it does not, and
// from another seed none is made. A
// member that encrypted a limb off by one cannot prove: from what it
// encrypted its limbs do not open its commitments, from the limbs that
// would its ciphertexts are not made again, and a proof of the right limbs
// linked to the ciphertexts that hold the wrong one is refused naming the
// slot.
func TestLimbProof(t *testing.T) {
	params := testParams(t)
	spec := testSpec()
	digest := protocol.SpecDigest(spec)
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		t.Fatal(err)
	}
	pk := rk.Public()
	values := []int64{5, 7, 0}
	ranges := []rangeproof.Range{{Lo: -10, Hi: 100}, {Lo: -10, Hi: 100}, {Lo: -10, Hi: 100}}
	encoded, rc, err := protocol.EncodePartial(values, ranges, "q-1", 3, "node-1", digest)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(encoded []int64) (*protocol.Partial, []byte) {
		t.Helper()
		seed := make([]byte, homomorphic.SeedSize)
		rand.Read(seed)
		cts, proofs, link, err := protocol.EncryptEncodedSeeded(params, pk, encoded, rc, protocol.EncryptionContext("q-1", 3, "node-1", digest), seed)
		if err != nil {
			t.Fatal(err)
		}
		p := &protocol.Partial{Ciphertexts: cts, Proofs: proofs, RangeCommitments: rc.Commitments, RangeProof: rc.Proof, RangeLink: link}
		// The partial's own proofs hold whatever its limbs are.
		if err := protocol.CheckEncryptionProofs(params, pk, p, "q-1", 3, "node-1", digest, false); err != nil {
			t.Fatal(err)
		}
		return p, seed
	}
	honest, seed := seal(encoded)
	resp, err := protocol.ProveLimbs(params, pk, honest.Ciphertexts, encoded, seed, rc.Commitments, "q-1", 3, "node-1", digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.CheckLimbProof(params, pk, honest, resp, "q-1", 3, "node-1", digest); err != nil {
		t.Fatalf("an honest partial's limbs: %v", err)
	}
	other := make([]byte, homomorphic.SeedSize)
	rand.Read(other)
	if _, err := protocol.ProveLimbs(params, pk, honest.Ciphertexts, encoded, other, rc.Commitments, "q-1", 3, "node-1", digest); !errors.Is(err, homomorphic.ErrNotMadeAgain) {
		t.Errorf("from another seed: %v, want ErrNotMadeAgain", err)
	}
	if err := protocol.CheckLimbProof(params, pk, honest, resp, "q-1", 3, "node-2", digest); err == nil {
		t.Error("the proof verified as another node's")
	}
	if err := protocol.CheckLimbProof(params, pk, honest, resp, "q-2", 3, "node-1", digest); err == nil {
		t.Error("the proof verified for another query")
	}
	short := &nodev1.ProveLimbsResponse{LimbCommitments: resp.LimbCommitments, LimbRangeProof: resp.LimbRangeProof, Recomposition: resp.Recomposition, Link: resp.Link}
	if err := protocol.CheckLimbProof(params, pk, honest, short, "q-1", 3, "node-1", digest); !errors.Is(err, rangeproof.ErrLimbs) {
		t.Errorf("without its proofs of encryption: %v", err)
	}

	// node-1 encrypts limb 2 of value 1 off by one.
	bad := slices.Clone(encoded)
	at := len(values) + rangeproof.Limbs + 2
	bad[at]++
	partial, badSeed := seal(bad)
	if _, err := protocol.ProveLimbs(params, pk, partial.Ciphertexts, bad, badSeed, rc.Commitments, "q-1", 3, "node-1", digest); !errors.Is(err, rangeproof.ErrLimbs) {
		t.Errorf("from what it encrypted: %v, want ErrLimbs", err)
	}
	if _, err := protocol.ProveLimbs(params, pk, partial.Ciphertexts, encoded, badSeed, rc.Commitments, "q-1", 3, "node-1", digest); !errors.Is(err, homomorphic.ErrNotMadeAgain) {
		t.Errorf("from the limbs it committed to: %v, want ErrNotMadeAgain", err)
	}
	// A prover that proves the right limbs and links them to its
	// ciphertexts, made with what they hold.
	ctx := protocol.LimbContext("q-1", 3, "node-1", digest)
	lp, open, err := rangeproof.ProveLimbs(encoded, rc.Commitments, ctx)
	if err != nil {
		t.Fatal(err)
	}
	link := open.Linker(params.Slots(), params.PlaintextModulus())
	forged := &nodev1.ProveLimbsResponse{LimbCommitments: lp.Commitments, LimbRangeProof: lp.Proof, Recomposition: lp.Recomposition}
	for i, ct := range partial.Ciphertexts {
		proof, err := homomorphic.ProveAgainLinked(params, pk, ct, bad, ctx, i, badSeed, link)
		if err != nil {
			t.Fatal(err)
		}
		forged.Proofs = append(forged.Proofs, proof)
	}
	forged.Link = link.Link()
	err = protocol.CheckLimbProof(params, pk, partial, forged, "q-1", 3, "node-1", digest)
	if !errors.Is(err, rangeproof.ErrLink) || !strings.Contains(err.Error(), "do not encrypt the limbs") {
		t.Errorf("the right limbs linked to the wrong one: %v", err)
	}
	// The honest partial's proof does not prove the other.
	if err := protocol.CheckLimbProof(params, pk, partial, resp, "q-1", 3, "node-1", digest); err == nil {
		t.Error("the honest partial's proof verified for another partial")
	}
}

// BenchmarkLimbProof: a member's proof of its limbs (protocol.ProveLimbs:
// limb commitments, range proof, recomposition, a new proof of encryption
// per ciphertext with the link), and the coordinator's check of it, for a
// cohort count (d = 1) and weekly counts by region (d = 530), under the
// production parameters (8,192 slots).
func BenchmarkLimbProof(b *testing.B) {
	params, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		b.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(params)
	if err != nil {
		b.Fatal(err)
	}
	pk := rk.Public()
	digest := []byte("digest")
	for _, d := range []int{1, 530} {
		values := make([]int64, d)
		ranges := make([]rangeproof.Range, d)
		for i := range ranges {
			ranges[i] = rangeproof.Range{Lo: -100, Hi: 1 << 20}
		}
		encoded, rc, err := protocol.EncodePartial(values, ranges, "q-1", 3, "node-1", digest)
		if err != nil {
			b.Fatal(err)
		}
		seed := make([]byte, homomorphic.SeedSize)
		rand.Read(seed)
		cts, _, _, err := protocol.EncryptEncodedSeeded(params, pk, encoded, rc, protocol.EncryptionContext("q-1", 3, "node-1", digest), seed)
		if err != nil {
			b.Fatal(err)
		}
		var resp *nodev1.ProveLimbsResponse
		b.Run(fmt.Sprintf("prove/d=%d", d), func(b *testing.B) {
			for b.Loop() {
				if resp, err = protocol.ProveLimbs(params, pk, cts, encoded, seed, rc.Commitments, "q-1", 3, "node-1", digest); err != nil {
					b.Fatal(err)
				}
			}
			size := len(resp.LimbCommitments) + len(resp.LimbRangeProof) + len(resp.Recomposition) + len(resp.Link)
			for _, p := range resp.Proofs {
				size += len(p)
			}
			b.ReportMetric(float64(size), "bytes")
		})
		pt := &protocol.Partial{Ciphertexts: cts, RangeCommitments: rc.Commitments}
		b.Run(fmt.Sprintf("check/d=%d", d), func(b *testing.B) {
			for b.Loop() {
				if err := protocol.CheckLimbProof(params, pk, pt, resp, "q-1", 3, "node-1", digest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
