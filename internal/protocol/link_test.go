package protocol_test

import (
	"math"
	"strings"
	"testing"

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
