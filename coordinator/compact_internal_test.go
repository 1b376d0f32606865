package coordinator

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestCheckCompactNamesTheSender: the coordinator's own check of a compact
// release passes honest commitments and, when one sender's fingerprint is
// not its partial's, refuses naming that sender (before any decryptor is
// asked).
func TestCheckCompactNamesTheSender(t *testing.T) {
	homomorphic.AllowInsecureForTests()
	p, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{params: p}
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", MinNodes: 3}
	ids := []string{"node-1", "node-2", "node-3"}
	var signed []*nodev1.NodeSigned
	var parts [][]*homomorphic.Ciphertext
	var payloads []*nodev1.PartialPayload
	for i, id := range ids {
		cts, err := homomorphic.Encrypt(p, rk.Public(), []int64{int64(10 * (i + 1))})
		if err != nil {
			t.Fatal(err)
		}
		b, err := cts[0].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, cts)
		payloads = append(payloads, &nodev1.PartialPayload{SpecDigest: protocol.SpecDigest(spec), VectorLen: 1, Ciphertexts: [][]byte{b},
			RangeCommitments: []byte(id + " commits to its values")})
		signed = append(signed, &nodev1.NodeSigned{NodeId: id, Signed: &typesv1.Signed{Header: []byte(id)}})
	}
	sum, err := homomorphic.Sum(p, parts)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sum[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cs := &compactSum{cts: sum, bytes: [][]byte{sb}, parts: parts}
	for _, pl := range payloads {
		cs.commitments = append(cs.commitments, pl.GetRangeCommitments())
	}
	digest := protocol.CommitDigest("q-1", 1, spec, signed)
	opened := make([]*nodev1.ReleaseCommitment, len(ids))
	for i := range ids {
		if opened[i], err = protocol.NewReleaseCommitment(p, digest, protocol.SumDigest(cs.bytes), payloads[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.checkCompact(spec, signed, cs, digest, opened); err != nil {
		t.Fatalf("honest commitments: %v", err)
	}
	// Each repeats its partial's range commitments (the release record's
	// copy, which fedstat verify checks the total against); node-3 signing
	// node-1's is refused, naming node-3.
	if err := checkRangeCommitments(signed, cs, opened); err != nil {
		t.Fatalf("honest range commitments: %v", err)
	}
	opened[2].RangeCommitments = opened[0].GetRangeCommitments()
	if err := checkRangeCommitments(signed, cs, opened); !errors.Is(err, protocol.ErrSumMismatch) || !strings.Contains(err.Error(), "node-3 repeats other range commitments") {
		t.Fatalf("node-3 repeating node-1's range commitments: %v", err)
	}
	v := opened[1].GetFingerprints()[0].GetValues()
	v[0] = (v[0] + 1) % 1024 // still reduced, no longer node-2's partial
	err = c.checkCompact(spec, signed, cs, digest, opened)
	if !errors.Is(err, protocol.ErrSumMismatch) || !strings.Contains(err.Error(), "node-2") {
		t.Fatalf("a false fingerprint of node-2: %v, want a refusal naming node-2", err)
	}
}
