package node

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestCheckLinkSet: the first mix stage of a linked query takes the
// participants' link partials only with every participant's commitment to
// exactly that set (a participant's partial made after another's was
// revealed is in a set the others did not commit to).
func TestCheckLinkSet(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const qid, epoch = "q-link", 3
	spec := &typesv1.QuerySpec{Sql: "SELECT COUNT(DISTINCT person_id) FROM patients", Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2}
	e := &epochState{Epoch: epoch}
	ids := map[string]*pki.Identity{}
	var set []*nodev1.NodeSigned
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		ident, err := ca.Issue(pki.IssueRequest{Name: id, Role: pki.RoleNode, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = ident
		e.Members = append(e.Members, member{ID: id, Cert: ident.Cert, Point: uint64(len(e.Members) + 1)})
		env, err := envelope.Seal(ident.Key, envelope.Binding{QueryID: qid, Epoch: epoch, NodeID: id, Kind: protocol.KindPartial}, []byte("link partial of "+id), now)
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, &nodev1.NodeSigned{NodeId: id, Signed: protocol.ToProto(env)})
	}
	commitsTo := func(s []*nodev1.NodeSigned, who ...string) []*nodev1.NodeSigned {
		var out []*nodev1.NodeSigned
		for _, id := range who {
			c, err := protocol.SealCommit(ids[id].Key, qid, epoch, id, protocol.CommitDigest(qid, epoch, spec, s), now)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, &nodev1.NodeSigned{NodeId: id, Signed: c})
		}
		return out
	}
	n := &Node{id: "node-1", cfg: Config{Now: func() time.Time { return now }, MaxSkew: protocol.DefaultMaxSkew}}
	all := []string{"node-1", "node-2", "node-3"}
	if _, err := n.checkLinkSet(e, qid, spec, all, set, commitsTo(set, all...)); err != nil {
		t.Fatalf("the committed set: %v", err)
	}
	// node-3's partial replaced by one made later: node-1 and node-2
	// committed to the first set.
	env, _ := envelope.Seal(ids["node-3"].Key, envelope.Binding{QueryID: qid, Epoch: epoch, NodeID: "node-3", Kind: protocol.KindPartial}, []byte("crafted"), now)
	crafted := []*nodev1.NodeSigned{set[0], set[1], {NodeId: "node-3", Signed: protocol.ToProto(env)}}
	mixed := append(commitsTo(set, "node-1", "node-2"), commitsTo(crafted, "node-3")...)
	for name, c := range map[string]struct {
		partials, commits []*nodev1.NodeSigned
		want              string
	}{
		"a commitment missing":               {set, commitsTo(set, "node-1", "node-3"), "no commitment to this set of partials from [node-2]"},
		"a partial made after the others":    {crafted, mixed, "committed to another set of partials"},
		"a participant's partial missing":    {set[:2], commitsTo(set[:2], "node-1", "node-2"), "2 partials for 3 participants"},
		"a participant's partial sent twice": {[]*nodev1.NodeSigned{set[0], set[1], set[1]}, commitsTo(set, all...), "3 partials for 3 participants"},
		"no commitments at all":              {set, nil, "no commitment"},
	} {
		_, err := n.checkLinkSet(e, qid, spec, all, c.partials, c.commits)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", name, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrAlreadyReleased) {
			t.Errorf("%s: %v is neither a bad request nor a second release", name, err)
		}
	}
}

// TestLinkCheckedCache: the release evidence a stage checked at
// LinkDecrypt is reused at LinkAttest only for the same epoch, spec, link
// spec, outputs and finish shares (a request for another spec with the
// same outputs is checked afresh, where the outputs' spec digest refuses
// it), and only the last few queries are kept.
func TestLinkCheckedCache(t *testing.T) {
	r := &linkRequest{e: &epochState{Epoch: 3}, shape: protocol.LinkShape{SpecDigest: []byte("spec A")}}
	ls := &nodev1.LinkSpec{Participants: []string{"a", "b"}, Stages: []string{"a", "b"}}
	outputs := []*nodev1.NodeSigned{{NodeId: "a", Signed: &typesv1.Signed{Payload: []byte("out a")}}, {NodeId: "b", Signed: &typesv1.Signed{Payload: []byte("out b")}}}
	finish := &nodev1.LinkFinishResponse{Shares: [][]byte{[]byte("shares")}, Proof: []byte("proof")}
	d := evidenceDigest(r, ls, outputs, finish)
	var c linkCheckedSet
	c.put("q-1", &linkEvidence{digest: d})
	if c.get("q-1", d) == nil {
		t.Fatal("the checked evidence is not found again")
	}
	other := []struct {
		name string
		r    *linkRequest
		ls   *nodev1.LinkSpec
		out  []*nodev1.NodeSigned
		fin  *nodev1.LinkFinishResponse
	}{
		{"another spec", &linkRequest{e: r.e, shape: protocol.LinkShape{SpecDigest: []byte("spec B")}}, ls, outputs, finish},
		{"another epoch", &linkRequest{e: &epochState{Epoch: 4}, shape: r.shape}, ls, outputs, finish},
		{"another link spec", r, &nodev1.LinkSpec{Participants: []string{"a", "b", "c"}, Stages: ls.Stages}, outputs, finish},
		{"another output", r, ls, outputs[:1], finish},
		{"another finish proof", r, ls, outputs, &nodev1.LinkFinishResponse{Shares: finish.Shares, Proof: []byte("other")}},
	}
	for _, o := range other {
		if c.get("q-1", evidenceDigest(o.r, o.ls, o.out, o.fin)) != nil {
			t.Errorf("%s: the cached evidence was reused", o.name)
		}
	}
	for i := range linkCheckedKeep {
		c.put(fmt.Sprintf("q-%d", i+2), &linkEvidence{digest: d})
	}
	if c.get("q-1", d) != nil || c.get(fmt.Sprintf("q-%d", linkCheckedKeep+1), d) == nil {
		t.Errorf("the cache keeps %d queries: the oldest should be gone, the newest kept", linkCheckedKeep)
	}
}
