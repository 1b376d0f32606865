package e2e

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
)

// compactRelease is a compact release of qid as a coordinator builds it,
// over the sum sum (which an honest coordinator computes from partials, a
// curious one crafts): every node in committers is asked to commit to the
// set of partials and to sum, and the request carries the sum, the
// partials' headers and signatures, and those commitments.
func compactRelease(t *testing.T, ctx context.Context, nodes map[string]nodev1.NodeServiceClient, epoch uint64, qid string, spec *typesv1.QuerySpec,
	partials []*nodev1.NodeSigned, sum []*homomorphic.Ciphertext, committers []string, target []byte, dec []string) *nodev1.KeySwitchRequest {
	t.Helper()
	sumBytes := make([][]byte, len(sum))
	for i, ct := range sum {
		b, err := ct.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		sumBytes[i] = b
	}
	digest := protocol.CommitDigest(qid, epoch, spec, partials)
	req := &nodev1.KeySwitchRequest{QueryId: qid, Epoch: epoch, Spec: spec, Sum: sumBytes, TargetPublicKey: target, Decryptors: dec}
	for _, p := range partials {
		req.Partials = append(req.Partials, &nodev1.NodeSigned{NodeId: p.GetNodeId(),
			Signed: &typesv1.Signed{Header: p.GetSigned().GetHeader(), Signature: p.GetSigned().GetSignature()}})
	}
	for _, id := range committers {
		resp, err := nodes[id].Commit(ctx, &nodev1.CommitRequest{QueryId: qid, Epoch: epoch, Digest: digest, SumDigest: protocol.SumDigest(sumBytes)})
		if err != nil {
			t.Fatalf("commit of %s at %s: %v", qid, id, err)
		}
		req.Commits = append(req.Commits, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetCommit()})
	}
	return req
}

// TestCompactRelease drives the compact release (the decryptors get the
// coordinator's sum and the senders' fingerprint commitments, never the
// partials) as a curious coordinator would, and shows that a decryptor
// key-switches only the true sum of the committed partials: a sum with a
// partial counted twice, a sum that leaves a committed partial out, a
// fresh encryption added to the sum, partials noised for a larger
// min_nodes released under a smaller one, a missing commitment, a
// commitment from a node whose partial is not in the set and a second sum
// of a committed set are each refused,
// naming what is wrong; the honest compact release decrypts to the total.
// A node's first commitment of a query fingerprints the partial it kept in
// memory (sentCache), a later one reads it back from its ledger: the
// "commitments" release is checked on commitments of the second kind, the
// "honest" one on the first.
func TestCompactRelease(t *testing.T) {
	nw, ctx, nodes := startCuriousCompact(t, 4, 2, 2)
	params := nw.Coordinator.Params()
	ids := nodeIDs(nw)
	dec := []string{"node-1", "node-2"}

	refused := func(t *testing.T, name string, req *nodev1.KeySwitchRequest, texts ...string) {
		t.Helper()
		_, err := nodes[dec[0]].KeySwitch(ctx, req)
		if err == nil {
			t.Fatalf("%s: a decryptor key-switched it", name)
		}
		wantCode(t, name, err, codes.InvalidArgument, texts...)
	}

	t.Run("partial counted twice", func(t *testing.T) {
		spec := secSpec(2, 2)
		partials := collect(t, ctx, nw, nodes, "q-c-twice", spec, ids...)
		sum := sumOf(t, params, append(partials, partials[0]))
		_, target := resultKey(t, params)
		refused(t, "a partial counted twice", compactRelease(t, ctx, nodes, nw.Epoch, "q-c-twice", spec, partials, sum, ids, target, dec),
			"not the sum of the committed partials")
		// A sender commits to one sum of its set: the honest sum after the
		// crafted one is refused.
		honest := sumOf(t, params, partials)
		hb, err := honest[0].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		_, err = nodes[ids[0]].Commit(ctx, &nodev1.CommitRequest{QueryId: "q-c-twice", Epoch: nw.Epoch,
			Digest: protocol.CommitDigest("q-c-twice", nw.Epoch, spec, partials), SumDigest: protocol.SumDigest([][]byte{hb})})
		wantCode(t, "a second sum of the committed set", err, codes.AlreadyExists, "another sum")
	})
	t.Run("committed partial left out of the sum", func(t *testing.T) {
		spec := secSpec(2, 2)
		partials := collect(t, ctx, nw, nodes, "q-c-drop", spec, ids...)
		sum := sumOf(t, params, partials[1:])
		_, target := resultKey(t, params)
		refused(t, "a committed partial left out of the sum", compactRelease(t, ctx, nodes, nw.Epoch, "q-c-drop", spec, partials, sum, ids, target, dec),
			"not the sum of the committed partials")
	})
	t.Run("fresh encryption added", func(t *testing.T) {
		spec := secSpec(2, 2)
		partials := collect(t, ctx, nw, nodes, "q-c-fresh", spec, ids...)
		sum := sumOf(t, params, partials)
		rk, target := resultKey(t, params)
		extra, err := homomorphic.Encrypt(params, rk.Public(), []int64{1000})
		if err != nil {
			t.Fatal(err)
		}
		crafted, err := homomorphic.Sum(params, [][]*homomorphic.Ciphertext{sum, extra})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, "a fresh encryption added to the sum", compactRelease(t, ctx, nodes, nw.Epoch, "q-c-fresh", spec, partials, crafted, ids, target, dec),
			"not the sum of the committed partials")
	})
	t.Run("smaller min_nodes than evaluated", func(t *testing.T) {
		partials := collect(t, ctx, nw, nodes, "q-c-m3", secSpec(3, 2), ids[:3]...)
		_, target := resultKey(t, params)
		// The senders revealed for the set of three under min_nodes 3: the
		// same partials under min_nodes 2 are another set, which they do
		// not commit to, and the decryptor refuses the release without
		// their commitments.
		sum := sumOf(t, params, partials[:2])
		sb, err := sum[0].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		_, err = nodes[ids[0]].Commit(ctx, &nodev1.CommitRequest{QueryId: "q-c-m3", Epoch: nw.Epoch,
			Digest: protocol.CommitDigest("q-c-m3", nw.Epoch, secSpec(2, 2), partials[:2]), SumDigest: protocol.SumDigest([][]byte{sb})})
		wantCode(t, "a commitment under a smaller min_nodes", err, codes.AlreadyExists, "another set")
		req := compactRelease(t, ctx, nodes, nw.Epoch, "q-c-m3", secSpec(2, 2), partials[:2], sum, nil, target, dec)
		refused(t, "release under a smaller min_nodes than evaluated", req, "no commitment to this set of partials", ids[0], ids[1])
	})
	t.Run("commitments", func(t *testing.T) {
		spec := secSpec(2, 2)
		partials := collect(t, ctx, nw, nodes, "q-c-commits", spec, ids[:3]...)
		// node-4 answers too, and its partial is left out of the set.
		if _, err := evaluate(t, ctx, nw, nodes, ids[3], "q-c-commits", spec); err != nil {
			t.Fatal(err)
		}
		sum := sumOf(t, params, partials[:3])
		_, target := resultKey(t, params)
		missing := compactRelease(t, ctx, nodes, nw.Epoch, "q-c-commits", spec, partials[:3], sum, ids[:2], target, dec)
		refused(t, "a sender's commitment missing", missing, "no commitment to this set of partials", ids[2])
		full := compactRelease(t, ctx, nodes, nw.Epoch, "q-c-commits", spec, partials[:3], sum, ids[:3], target, dec)
		// node-4 answered but its partial is not in this set: a commitment
		// of its own would add its fingerprint to the check.
		digest := protocol.CommitDigest("q-c-commits", nw.Epoch, spec, partials[:3])
		resp, err := nodes[ids[3]].Commit(ctx, &nodev1.CommitRequest{QueryId: "q-c-commits", Epoch: nw.Epoch, Digest: digest, SumDigest: protocol.SumDigest(full.GetSum())})
		if err != nil {
			t.Fatal(err)
		}
		extra := proto.Clone(full).(*nodev1.KeySwitchRequest)
		extra.Commits = append(extra.Commits, &nodev1.NodeSigned{NodeId: ids[3], Signed: resp.GetCommit()})
		refused(t, "a commitment from a node whose partial is not in the set", extra, "not a sender of this release", ids[3])
		// The honest release of the three partials still goes through.
		if _, err := nodes[dec[0]].KeySwitch(ctx, full); err != nil {
			t.Fatalf("the honest compact release after the refusals: %v", err)
		}
	})
	t.Run("honest", func(t *testing.T) {
		spec := secSpec(2, 2)
		partials := collect(t, ctx, nw, nodes, "q-c-honest", spec, ids...)
		sum := sumOf(t, params, partials)
		rk, target := resultKey(t, params)
		req := compactRelease(t, ctx, nodes, nw.Epoch, "q-c-honest", spec, partials, sum, ids, target, dec)
		var shares [][]byte
		for _, d := range dec {
			resp, err := nodes[d].KeySwitch(ctx, req)
			if err != nil {
				t.Fatalf("honest compact release at %s: %v", d, err)
			}
			shares = append(shares, shareOf(t, resp)[0])
		}
		got, err := releaseValue(t, nw, spec, sum, shares, rk, len(partials))
		if err != nil {
			t.Fatal(err)
		}
		p := buildPlan(t, nw, spec)
		exact := 0.0
		for i := range ids {
			b := cdm.NewBuilder()
			b.AddRecords(nw.Records(i))
			ex, err := eval.Evaluate(ctx, p, b.Build())
			if err != nil {
				t.Fatal(err)
			}
			exact += ex.Values()[0]
		}
		if sd := p.NodeSigmas()[0] * 2; got < exact-12*sd || got > exact+12*sd {
			t.Fatalf("compact release gave %v, exact total %v (node sigma %.2f)", got, exact, p.NodeSigmas()[0])
		}
	})
}
