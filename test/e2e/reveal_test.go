package e2e

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestPartialsFixedBeforeRevealed plays a malicious coordinator working
// with one malicious member (node-3: the test holds its key and signs its
// crafted partials) against the two attacks of threat-model.md, "Members
// are semi-honest": a partial that is the negation of an honest node's, so
// that the released sum is another honest node's partial alone, and one
// that cancels the honest partials, so that the decryptors key-switch a sum
// of the attackers' choosing (the route to the collective secret key,
// TestDegenerateSumLeaksSecretShare). Both need the honest partials before
// the crafted one is signed. A node answers Evaluate with its partial's
// signed header only and sends the partial (Reveal) for one set of headers
// per query id, its own among them; so the crafted partial can only join a
// set after the honest nodes have fixed theirs, and they refuse it: the
// release is refused, naming the honest node whose commitment it lacks,
// and nothing is key-switched.
func TestPartialsFixedBeforeRevealed(t *testing.T) {
	nw, ctx, nodes := startCuriousCompact(t, 4, 2, 2)
	params := nw.Coordinator.Params()
	spec := secSpec(2, 2)
	n3 := mustIdentity(t, nw, "node-3")
	dec := []string{"node-2", "node-4"}

	// headers asks each node for its answer to qid: a signed header, no
	// partial.
	headers := func(qid string, ids ...string) []*nodev1.NodeSigned {
		t.Helper()
		var out []*nodev1.NodeSigned
		for _, id := range ids {
			resp, err := evaluate(t, ctx, nw, nodes, id, qid, spec)
			if err != nil {
				t.Fatalf("evaluate %s at %s: %v", qid, id, err)
			}
			if len(resp.GetPartial().GetPayload()) != 0 {
				t.Fatalf("%s answered %s with its partial; it must send only the signed header until the partial set is fixed", id, qid)
			}
			out = append(out, &nodev1.NodeSigned{NodeId: id, Signed: resp.GetPartial()})
		}
		return out
	}
	// craft signs, as node-3's partial of qid, the negation of the sum of
	// the given revealed partials.
	craft := func(qid string, of ...*nodev1.NodeSigned) *nodev1.NodeSigned {
		t.Helper()
		sum := sumOf(t, params, of)
		neg := make([][]byte, len(sum))
		for i, ct := range sum {
			z := ct.Clone()
			if err := homomorphic.Sub(params, z, ct); err != nil {
				t.Fatal(err)
			}
			if err := homomorphic.Sub(params, z, ct); err != nil {
				t.Fatal(err)
			}
			b, err := z.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			neg[i] = b
		}
		var own nodev1.PartialPayload
		if err := proto.Unmarshal(of[0].GetSigned().GetPayload(), &own); err != nil {
			t.Fatal(err)
		}
		pb, err := proto.Marshal(&nodev1.PartialPayload{VectorLen: own.GetVectorLen(), Ciphertexts: neg, SpecDigest: protocol.SpecDigest(spec)})
		if err != nil {
			t.Fatal(err)
		}
		env, err := envelope.Seal(n3.Key, envelope.Binding{QueryID: qid, Epoch: nw.Epoch, NodeID: "node-3", Kind: protocol.KindPartial}, pb, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return &nodev1.NodeSigned{NodeId: "node-3", Signed: protocol.ToProto(env)}
	}
	revealAt := func(id, qid string, set []*nodev1.NodeSigned) (*nodev1.RevealResponse, error) {
		return nodes[id].Reveal(ctx, &nodev1.RevealRequest{QueryId: qid, Epoch: nw.Epoch, Spec: spec, Partials: set})
	}
	// refusedEverywhere asks each decryptor to key-switch the compact
	// release of set (with the commitments of committers) and wants every
	// one to refuse it, naming the missing commitments.
	refusedEverywhere := func(name, qid string, set []*nodev1.NodeSigned, committers []string, missing ...string) {
		t.Helper()
		_, target := resultKey(t, params)
		req := compactRelease(t, ctx, nodes, nw.Epoch, qid, spec, set, sumOf(t, params, set), committers, target, dec)
		// node-3 signs its own commitment, with the fingerprints of its
		// crafted partial.
		for _, p := range set {
			if p.GetNodeId() != "node-3" {
				continue
			}
			var payload nodev1.PartialPayload
			if err := proto.Unmarshal(p.GetSigned().GetPayload(), &payload); err != nil {
				t.Fatal(err)
			}
			rc, err := protocol.NewReleaseCommitment(params, protocol.CommitDigest(qid, nw.Epoch, spec, set), protocol.SumDigest(req.GetSum()), &payload)
			if err != nil {
				t.Fatal(err)
			}
			signed, err := protocol.SealReleaseCommitment(n3.Key, qid, nw.Epoch, "node-3", rc, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			req.Commits = append(req.Commits, &nodev1.NodeSigned{NodeId: "node-3", Signed: signed})
		}
		for _, d := range dec {
			resp, err := nodes[d].KeySwitch(ctx, req)
			if err == nil {
				t.Fatalf("%s: %s key-switched it (%d shares)", name, d, len(resp.GetShare().GetPayload()))
			}
			wantCode(t, name+" at "+d, err, codes.InvalidArgument, append([]string{"no commitment to this set of partials"}, missing...)...)
		}
	}

	t.Run("refused sets", func(t *testing.T) {
		qid := "q-reveal-sets"
		hs := headers(qid, "node-1", "node-2")
		_, err := revealAt("node-1", qid, hs[1:])
		wantCode(t, "a set without the node's partial", err, codes.InvalidArgument, "does not hold this node's partial")
		_, err = revealAt("node-1", qid, hs[:1])
		wantCode(t, "a set below min_nodes", err, codes.InvalidArgument, "min_nodes is 2")
		other := proto.Clone(hs[0]).(*nodev1.NodeSigned)
		other.Signed.Signature = append([]byte(nil), hs[1].GetSigned().GetSignature()...)
		_, err = revealAt("node-1", qid, []*nodev1.NodeSigned{other, hs[1]})
		wantCode(t, "a set with the node's header under another signature", err, codes.InvalidArgument, "not the one this node signed")
		dup := []*nodev1.NodeSigned{hs[0], hs[1], hs[1]}
		_, err = revealAt("node-1", qid, dup)
		wantCode(t, "a set naming a sender twice", err, codes.InvalidArgument, "node-2", "repeated")
		foreign := headers("q-reveal-elsewhere", "node-2")
		_, err = revealAt("node-1", qid, []*nodev1.NodeSigned{hs[0], foreign[0]})
		wantCode(t, "a set with a partial of another query", err, codes.InvalidArgument, "node-2", "q-reveal-elsewhere")
		// None of these fixed a set: the genuine one is revealed, again
		// the same partial when asked twice.
		a, err := revealAt("node-1", qid, hs)
		if err != nil {
			t.Fatalf("the genuine set after the refusals: %v", err)
		}
		b, err := revealAt("node-1", qid, hs)
		if err != nil || !proto.Equal(a.GetPartial(), b.GetPartial()) {
			t.Fatalf("the same set again: %v (same partial %v)", err, proto.Equal(a.GetPartial(), b.GetPartial()))
		}
	})

	t.Run("negation of an honest partial", func(t *testing.T) {
		qid := "q-negate"
		hs := headers(qid, "node-1", "node-2")
		// To negate node-1's partial, the attackers need it first: node-1
		// sends it only within a set, which it then keeps to.
		first := []*nodev1.NodeSigned{hs[0], hs[1]}
		r1, err := revealAt("node-1", qid, first)
		if err != nil {
			t.Fatal(err)
		}
		p1 := &nodev1.NodeSigned{NodeId: "node-1", Signed: r1.GetPartial()}
		neg := craft(qid, p1)
		// node-2 has revealed nothing yet, so it reveals for the crafted
		// set (it cannot tell node-3's partial from an honest one).
		crafted := []*nodev1.NodeSigned{hs[0], hs[1], protocolCommitment(neg)}
		r2, err := revealAt("node-2", qid, crafted)
		if err != nil {
			t.Fatal(err)
		}
		p2 := &nodev1.NodeSigned{NodeId: "node-2", Signed: r2.GetPartial()}
		// The attack is real: the crafted set's sum is node-2's partial
		// alone, to the bit.
		set := []*nodev1.NodeSigned{p1, p2, neg}
		if sum, own := sumOf(t, params, set), sumOf(t, params, []*nodev1.NodeSigned{p2}); !sum[0].Equal(own[0]) {
			t.Fatal("control: the crafted set's sum is not node-2's partial")
		}
		// node-1 keeps to its set: no reveal, no commitment for another.
		_, err = revealAt("node-1", qid, crafted)
		wantCode(t, "node-1 asked to reveal for the crafted set", err, codes.AlreadyExists, "another set of partials")
		_, err = nodes["node-1"].Commit(ctx, &nodev1.CommitRequest{QueryId: qid, Epoch: nw.Epoch, Digest: protocol.CommitDigest(qid, nw.Epoch, spec, set)})
		wantCode(t, "node-1 asked to commit to the crafted set", err, codes.AlreadyExists, "another set of partials")
		// Every decryptor refuses the crafted release, naming node-1.
		refusedEverywhere("the release of node-2's partial alone", qid, set, []string{"node-2"}, "node-1")
		// And node-1's own set is dead too: node-2 keeps to the crafted one.
		refusedEverywhere("the release of node-1's set", qid, []*nodev1.NodeSigned{p1, p2}, []string{"node-1"}, "node-2")
	})

	t.Run("partial that cancels the honest ones", func(t *testing.T) {
		qid := "q-cancel"
		hs := headers(qid, "node-1", "node-2")
		var revealed []*nodev1.NodeSigned
		for _, id := range []string{"node-1", "node-2"} {
			r, err := revealAt(id, qid, hs)
			if err != nil {
				t.Fatal(err)
			}
			revealed = append(revealed, &nodev1.NodeSigned{NodeId: id, Signed: r.GetPartial()})
		}
		cancel := craft(qid, revealed...)
		set := append(append([]*nodev1.NodeSigned(nil), revealed...), cancel)
		// Control: the crafted sum is the zero ciphertext, chosen by the
		// attackers (with a chosen c1 added, the route to a secret share).
		sum := sumOf(t, params, set)
		zero := sum[0].Clone()
		if err := homomorphic.Sub(params, zero, sum[0]); err != nil {
			t.Fatal(err)
		}
		if !sum[0].Equal(zero) {
			t.Fatal("control: the crafted set does not sum to zero")
		}
		crafted := []*nodev1.NodeSigned{hs[0], hs[1], protocolCommitment(cancel)}
		for _, id := range []string{"node-1", "node-2"} {
			_, err := revealAt(id, qid, crafted)
			wantCode(t, id+" asked to reveal for the crafted set", err, codes.AlreadyExists, "another set of partials")
		}
		refusedEverywhere("the release of a sum the attackers chose", qid, set, nil, "node-1", "node-2")
	})

	t.Run("another threshold", func(t *testing.T) {
		// A release under a spec with threshold 1 would let a set of the
		// attackers' partials alone through min_nodes.
		qid := "q-threshold"
		ps := collect(t, ctx, nw, nodes, qid, spec, "node-1", "node-2")
		_, target := resultKey(t, params)
		one := secSpec(1, 1)
		_, err := nodes["node-2"].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: qid, Epoch: nw.Epoch, Spec: one, Partials: ps[:1],
			TargetPublicKey: target, Decryptors: dec})
		wantCode(t, "a release under threshold 1", err, codes.InvalidArgument, "threshold 1", "has threshold 2")
	})

	// After the attacks the network answers an honest query.
	client := dialCoordinator(t, nw, nil)
	if _, err := runQuery(ctx, client, &typesv1.QuerySpec{Sql: secSpec(2, 2).GetSql(), MinNodes: 2}); err != nil {
		t.Fatalf("an honest query after the attacks: %v", err)
	}
}

// protocolCommitment is a partial as its sender first sends it: the signed
// header without the payload.
func protocolCommitment(p *nodev1.NodeSigned) *nodev1.NodeSigned {
	return &nodev1.NodeSigned{NodeId: p.GetNodeId(), Signed: protocol.Commitment(p.GetSigned())}
}
