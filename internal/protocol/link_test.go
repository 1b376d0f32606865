package protocol_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"

	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestLinkPatterns: every pattern index round-trips, the empty pattern is
// 0, multiplicities beyond the holders have no index, and Matches applies
// the outer table and every filter, negated ones as NOT IN.
func TestLinkPatterns(t *testing.T) {
	lp := protocol.LinkPatterns{Outer: 3, Filters: []int{1, 2}, Negate: []bool{false, true}}
	if lp.Count() != 4*2*3 {
		t.Fatalf("count %d", lp.Count())
	}
	for i := range lp.Count() {
		a, b := lp.Pattern(i)
		if lp.Index(a, b) != i {
			t.Fatalf("pattern %d = (%d, %v) indexes as %d", i, a, b, lp.Index(a, b))
		}
		want := a >= 1 && b[0] >= 1 && b[1] == 0
		if lp.Matches(i) != want {
			t.Errorf("pattern (%d, %v): matches %v", a, b, lp.Matches(i))
		}
	}
	if a, b := lp.Pattern(0); a != 0 || b[0] != 0 || b[1] != 0 {
		t.Errorf("pattern 0 is (%d, %v)", a, b)
	}
	if lp.Index(4, []int{0, 0}) != -1 || lp.Index(1, []int{2, 0}) != -1 {
		t.Error("a multiplicity beyond its holders has an index")
	}
	// a in 1..3, b0 = 1, b1 = 0: three patterns carry dummies into a count.
	if n := lp.MatchingPatterns(); n != 3 {
		t.Errorf("matching patterns %d, want 3", n)
	}
}

func listOf(role, cell int, pts []linkage.Point, payloads bool) *nodev1.LinkList {
	x := linkage.RandomPoint()
	cts, err := linkage.EncryptPoints(x, pts)
	if err != nil {
		panic(err)
	}
	l := &nodev1.LinkList{Role: int32(role), Cell: int32(cell)}
	for _, c := range cts {
		l.Pseudonyms = append(l.Pseudonyms, c[:]...)
	}
	if payloads {
		l.Payloads = make([]byte, len(l.Pseudonyms))
	}
	return l
}

// TestTallyLinkLists: the tally counts distinct pseudonyms per pattern,
// drops the identity padding, refuses a pseudonym seen more often than
// the holders allow (naming the cell), and LinkCount takes every
// participant's public shift off the matching patterns.
func TestTallyLinkLists(t *testing.T) {
	shape := protocol.LinkShape{Cells: 1, Filters: 1}
	lp := protocol.LinkPatterns{Outer: 2, Filters: []int{1}, Negate: []bool{false}}
	a, b, c, d := linkage.RandomPoint(), linkage.RandomPoint(), linkage.RandomPoint(), linkage.RandomPoint()
	id := linkage.Point{}
	// Outer: a twice (two hospitals), b, c, padding; filter: a, c, d, padding.
	outer := []linkage.Point{a, a, b, c, id, id}
	filter := []linkage.Point{a, c, d, id}
	lists := []*nodev1.LinkList{listOf(0, 0, outer, false), listOf(1, 0, filter, false)}
	tally, err := protocol.TallyLinkLists(shape, lp, lists, [][]linkage.Point{outer, filter})
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]int]int64{{2, 1}: 1, {1, 0}: 1, {1, 1}: 1, {0, 1}: 1}
	for i := 1; i < lp.Count(); i++ {
		pa, pb := lp.Pattern(i)
		if got := tally.Patterns[0][i]; got != want[[2]int{pa, pb[0]}] {
			t.Errorf("pattern (%d, %d): %d, want %d", pa, pb[0], got, want[[2]int{pa, pb[0]}])
		}
	}
	// a and c match (in the outer table and the filter); one participant
	// with shift 0: 2. With 2 participants and a shift of 1 per pattern,
	// the two matching patterns lose 2 each.
	if n := tally.LinkCount(lp, 0, 1, 0); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
	if n := tally.LinkCount(lp, 0, 2, 1); n != 2-2*2 {
		t.Errorf("count with shifts %d, want -2", n)
	}
	// A pseudonym three times in the outer list of a two-holder table.
	outer3 := []linkage.Point{a, a, a}
	_, err = protocol.TallyLinkLists(shape, lp, []*nodev1.LinkList{listOf(0, 0, outer3, false), listOf(1, 0, nil, false)},
		[][]linkage.Point{outer3, nil})
	if err == nil || !strings.Contains(err.Error(), "cell 0") {
		t.Errorf("over-holder pseudonym: %v", err)
	}
}

// TestLinkListsShape: lists out of order, a partial ciphertext, or
// payloads where none belong are refused by name, and the merge of two
// partials concatenates each list in order.
func TestLinkListsShape(t *testing.T) {
	shape := protocol.LinkShape{Cells: 2, Filters: 1, Payload: true}
	pts := []linkage.Point{linkage.RandomPoint()}
	good := func() []*nodev1.LinkList {
		return []*nodev1.LinkList{listOf(0, 0, pts, true), listOf(1, 0, pts, false), listOf(0, 1, pts, true), listOf(1, 1, pts, false)}
	}
	ls := good()
	if _, err := protocol.TallyLinkLists(shape, protocol.LinkPatterns{Outer: 1, Filters: []int{1}, Negate: []bool{false}}, ls,
		[][]linkage.Point{pts, pts, pts, pts}); err != nil {
		t.Fatalf("good lists: %v", err)
	}
	for name, mutate := range map[string]func([]*nodev1.LinkList){
		"order":           func(l []*nodev1.LinkList) { l[0], l[1] = l[1], l[0] },
		"partial":         func(l []*nodev1.LinkList) { l[2].Pseudonyms = l[2].Pseudonyms[:10] },
		"filter payload":  func(l []*nodev1.LinkList) { l[1].Payloads = make([]byte, 64) },
		"missing payload": func(l []*nodev1.LinkList) { l[0].Payloads = nil },
	} {
		ls := good()
		mutate(ls)
		_, err := protocol.TallyLinkLists(shape, protocol.LinkPatterns{Outer: 1, Filters: []int{1}, Negate: []bool{false}}, ls,
			[][]linkage.Point{pts, pts, pts, pts})
		if err == nil || !strings.Contains(err.Error(), "list") {
			t.Errorf("%s: %v", name, err)
		}
	}
	p1, p2 := &nodev1.LinkPartial{Lists: good()}, &nodev1.LinkPartial{Lists: good()}
	merged, _ := protocol.MergeLinkPartials(protocol.LinkShape{Cells: 2, Filters: 1}, []*nodev1.LinkPartial{p1, p2})
	for i, l := range merged {
		if want := append(append([]byte(nil), p1.Lists[i].Pseudonyms...), p2.Lists[i].Pseudonyms...); string(l.Pseudonyms) != string(want) {
			t.Errorf("merged list %d is not the concatenation", i)
		}
	}
}

// TestLinkShift: the public shift of every pattern's dummies is above 8σ
// of a node's noise (so a negative noisy count, clamped to zero, has
// probability below 1e-15 per draw), and the padding's above 8·PadSigma.
func TestLinkShift(t *testing.T) {
	ref, _ := cdm.ParseDate("2024-01-01")
	for _, eps := range []float64{0.1, 1, 8} {
		p, err := plan.Build(plan.Request{SQL: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'",
			Epsilon: eps, Delta: 1e-6, MinNodes: 4, Threshold: 2, ReferenceDate: ref, LinkHolders: 2},
			&plan.Catalogue{MaxNodesPerPatient: 2, Linkage: &plan.Linkage{IdentifierSystem: "urn:x"}})
		if err != nil {
			t.Fatal(err)
		}
		if s, sigma := float64(protocol.LinkShift(p)), p.Measures()[0].NodeSigma; s < 8*sigma || math.Erfc(s/sigma/math.Sqrt2)/2 > 1e-15 {
			t.Errorf("ε %v: shift %v for node σ %v", eps, s, sigma)
		}
		if s := float64(protocol.LinkPadShift(p)); s < 8*p.Link.PadSigma {
			t.Errorf("ε %v: padding shift %v for σ %v", eps, s, p.Link.PadSigma)
		}
	}
}

// TestCheckLinkStage: a stage's output made as the node makes it (one
// exponent per cell, StageProved under LinkStageContext) checks against its
// input; the same output is refused with ErrLinkStageProof, naming what is
// wrong, when a noise ciphertext was changed, when its proofs or keys are
// missing (a version before the proofs), when checked as another stage or
// node's, or against another input.
func TestCheckLinkStage(t *testing.T) {
	d, err := linkage.Deal(1, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := linkage.AggregatePublicKey([][]linkage.Point{d.Commitments}, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	shape := protocol.LinkShape{Cells: 2, Filters: 1, Payload: true}
	enc := func(role, cell, n int) *nodev1.LinkList {
		pts := make([]linkage.Point, n)
		for i := range pts {
			pts[i] = linkage.RandomPoint()
		}
		cts, err := linkage.EncryptPoints(pub.X, pts)
		if err != nil {
			t.Fatal(err)
		}
		l := &nodev1.LinkList{Role: int32(role), Cell: int32(cell), Pseudonyms: protocol.JoinCiphertexts(cts)}
		if role == 0 {
			vs, err := linkage.EncryptValues(pub.X, make([]int64, n))
			if err != nil {
				t.Fatal(err)
			}
			l.Payloads = protocol.JoinCiphertexts(vs)
		}
		return l
	}
	in := []*nodev1.LinkList{enc(0, 0, 5), enc(1, 0, 3), enc(0, 1, 4), enc(1, 1, 0)}
	noise := [][]byte{make([]byte, 64), make([]byte, 64)}
	commit := []byte("the commit digest of the partial set")
	out := &nodev1.LinkStagePayload{Noise: noise, CommitDigest: commit}
	for c := range shape.Cells {
		group := [][]linkage.Ciphertext{
			protocol.SplitCiphertexts[linkage.Ciphertext](in[shape.ListIndex(0, c)].GetPseudonyms()),
			protocol.SplitCiphertexts[linkage.Ciphertext](in[shape.ListIndex(1, c)].GetPseudonyms()),
		}
		pays := [][]linkage.ValueCiphertext{protocol.SplitCiphertexts[linkage.ValueCiphertext](in[shape.ListIndex(0, c)].GetPayloads()), nil}
		keys, proofs, err := linkage.StageProved(linkage.RandomScalar(), linkage.Scalar{}, pub.X, group, pays, protocol.LinkStageContext("q-1", 1, "node-1", 0, c))
		if err != nil {
			t.Fatal(err)
		}
		out.StageKeys = append(out.StageKeys, protocol.StageKeysBytes(keys))
		for role := range 2 {
			l := &nodev1.LinkList{Role: int32(role), Cell: int32(c), Pseudonyms: protocol.JoinCiphertexts(group[role])}
			if role == 0 {
				l.Payloads = protocol.JoinCiphertexts(pays[0])
			}
			out.Lists = append(out.Lists, l)
			out.Proofs = append(out.Proofs, proofs[role].MarshalBinary())
		}
	}
	check := func(o *nodev1.LinkStagePayload, node string, stage int, input []*nodev1.LinkList) error {
		return protocol.CheckLinkStage(pub, []uint64{1}, 1, "q-1", 1, node, stage, shape, commit, input, noise, o)
	}
	if err := check(out, "node-1", 0, in); err != nil {
		t.Fatalf("honest stage: %v", err)
	}
	refused := func(name string, err error, want string) {
		t.Helper()
		if !errors.Is(err, protocol.ErrLinkStageProof) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrLinkStageProof saying %q", name, err, want)
		}
	}
	changed := proto.Clone(out).(*nodev1.LinkStagePayload)
	changed.Noise = [][]byte{make([]byte, 64), append(make([]byte, 63), 1)}
	refused("a noise ciphertext changed", check(changed, "node-1", 0, in), "noise ciphertext of cell 1")
	bare := proto.Clone(out).(*nodev1.LinkStagePayload)
	bare.Proofs, bare.StageKeys = nil, nil
	refused("no proofs", check(bare, "node-1", 0, in), "a version before the proofs")
	refused("another node's", check(out, "node-2", 0, in), "cell 0 list 0")
	other := []*nodev1.LinkList{enc(0, 0, 5), in[1], in[2], in[3]}
	refused("another input", check(out, "node-1", 0, other), "cell 0 list 0")
	// An output that names another partial set than the one committed to.
	elsewhere := proto.Clone(out).(*nodev1.LinkStagePayload)
	elsewhere.CommitDigest = []byte("another set")
	refused("another partial set", check(elsewhere, "node-1", 0, in), "another set of partials")
}

// TestCheckLinkSums: a decryptor's comparison of the sums it is asked to
// decrypt with those it recomputed refuses a changed cell (naming it) and
// another number of cells, each with ErrLinkSum.
func TestCheckLinkSums(t *testing.T) {
	want := make([]linkage.ValueCiphertext, 3)
	asked := make([][]byte, 3)
	for c := range want {
		p, q := linkage.RandomPoint(), linkage.RandomPoint()
		copy(want[c][:], p[:])
		copy(want[c][linkage.PointSize:], q[:])
		asked[c] = append([]byte(nil), want[c][:]...)
	}
	if err := protocol.CheckLinkSums(asked, want); err != nil {
		t.Fatalf("the recomputed sums: %v", err)
	}
	for c := range want {
		bad := append([][]byte(nil), asked...)
		bad[c] = append([]byte(nil), asked[c]...)
		bad[c][len(bad[c])-1] ^= 1
		if err := protocol.CheckLinkSums(bad, want); !errors.Is(err, protocol.ErrLinkSum) || !strings.Contains(err.Error(), "cell "+string(rune('0'+c))) {
			t.Errorf("cell %d changed: %v, want ErrLinkSum naming the cell", c, err)
		}
	}
	if err := protocol.CheckLinkSums(asked[:2], want); !errors.Is(err, protocol.ErrLinkSum) {
		t.Errorf("two sums for three cells: %v, want ErrLinkSum", err)
	}
}
