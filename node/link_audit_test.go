package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/dpaudit"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// The privacy of a query across linked agencies at the coordinator
// (docs/linkage.md, "What each party sees"): it sees every node's list
// lengths and, after the mix, how many distinct pseudonyms have each
// multiplicity pattern. The audit runs the nodes' real list building
// (linkLists: their residents, the dummies of every pattern with Google's
// integer Gaussian noise, the identity padding) on two neighbouring cities
// and computes exactly that view. The mix is a bijection per cell (a
// pseudonym is K·H(id)), so equal elements before it are equal pseudonyms
// after it and the view is the multiplicity structure of the lists; the
// dummies' elements come from a counter instead of crypto/rand (the view
// depends only on which elements are equal).

const linkAuditSystem = "urn:audit:rid"

// rid is an 18-digit resident identity number (long enough that random
// ciphertext bytes never spell one by chance).
func rid(n int) string { return fmt.Sprintf("51010419%010d", n) }

// linkAuditCity is a small linked network: two hospitals and a registry
// (honest), and a fourth participant that colludes with the coordinator
// (its dummies are known to the attacker, so it is left out of the view).
// extra adds resident rid(99): diabetic at both hospitals and dead in the
// registry, pattern (a = 2, b = 1), the change that moves the view most.
func linkAuditCity(t testing.TB, extra bool) map[string]*cdm.Tables {
	t.Helper()
	hosp := func(prefix string, residents []string) *cdm.Tables {
		b := cdm.NewBuilder()
		for i, r := range residents {
			id := fmt.Sprintf("%s%d", prefix, i)
			b.AddPatient(&cdm.Patient{ID: id, Region: "north", Identifiers: linkAuditSystem + "|" + r})
			b.AddCondition(&cdm.Condition{ID: "c" + id, PatientID: id, Code: "E11.9", Onset: cdm.DateFromYMD(2022, 1, 1), Abatement: cdm.NoDate})
		}
		return b.Build()
	}
	h1 := []string{rid(1), rid(2), rid(3), rid(4), rid(5)}
	h2 := []string{rid(3), rid(4), rid(6), rid(7)}
	dead := []string{rid(2), rid(4), rid(7), rid(8)}
	if extra {
		h1, h2, dead = append(h1, rid(99)), append(h2, rid(99)), append(dead, rid(99))
	}
	sc := linkAuditCatalogue(t).Studies[0]
	st := &cdm.Study{Schema: sc, Dates: map[string][]cdm.Date{}}
	for _, r := range dead {
		st.PatientIDs = append(st.PatientIDs, r)
		st.Dates["death_date"] = append(st.Dates["death_date"], cdm.DateFromYMD(2023, 6, 1))
	}
	return map[string]*cdm.Tables{
		"h1":  hosp("a", h1),
		"h2":  hosp("b", h2),
		"reg": cdm.NewBuilder().Build().WithStudies([]*cdm.Study{st}),
	}
}

func linkAuditCatalogue(t testing.TB) *plan.Catalogue {
	t.Helper()
	sc, err := cdm.ParseStudySchema("name = \"deaths\"\nid = \"rid\"\nrows_per_patient = 1\n[[columns]]\nname = \"death_date\"\ntype = \"date\"\n", "")
	if err != nil {
		t.Fatal(err)
	}
	return &plan.Catalogue{Regions: []string{"north"}, Studies: []cdm.StudySchema{*sc}, MaxNodesPerPatient: 3,
		Linkage: &plan.Linkage{IdentifierSystem: linkAuditSystem}}
}

// linkAuditSetup plans Q2 of issue 17 for four participants (threshold 2:
// the three honest nodes' noise must suffice) and its link spec.
func linkAuditSetup(t testing.TB, eps float64) (*plan.Plan, *nodev1.LinkSpec) {
	t.Helper()
	p, err := plan.Build(plan.Request{
		SQL:     "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM deaths)",
		Epsilon: eps, Delta: auditDelta, MinNodes: 4, Threshold: 2, ReferenceDate: auditRef, LinkHolders: 2,
	}, linkAuditCatalogue(t))
	if err != nil {
		t.Fatal(err)
	}
	ls := &nodev1.LinkSpec{Participants: []string{"h1", "h2", "reg", "colluder"}, OuterHolders: []string{"h1", "h2"},
		FilterHolders: []*nodev1.Holders{{NodeIds: []string{"reg"}}}, Stages: []string{"h1", "colluder"}}
	return p, ls
}

// counterPoints returns distinct, non-identity elements from a counter (a
// stand-in for linkage.RandomPoint: the view depends only on equality).
func counterPoints() func() linkage.Point {
	var n atomic.Uint64
	return func() linkage.Point {
		var pt linkage.Point
		pt[0] = 0xd0
		binary.LittleEndian.PutUint64(pt[8:], n.Add(1))
		return pt
	}
}

// linkView is what the coordinator sees of one release: every honest
// node's list lengths and the number of distinct pseudonyms of every
// pattern (identity padding dropped). dummies=false removes the dummies
// and the padding (the control: a protocol without them).
func linkView(t testing.TB, p *plan.Plan, ls *nodev1.LinkSpec, locals map[string]*eval.LinkLocal, dummies bool) (lengths map[string][]int, patterns []int64) {
	t.Helper()
	lp := protocol.LinkPatternsOf(p, ls)
	shape := protocol.LinkShape{Cells: p.Cells(), Filters: len(p.Link.Filters), Payload: p.Link.Payload}
	merged := make([][]linkage.Point, shape.Lists())
	lengths = map[string][]int{}
	newPoint := counterPoints()
	for _, id := range []string{"h1", "h2", "reg"} {
		plain, err := linkLists(id, p, ls, locals[id], newPoint)
		if err != nil {
			t.Fatal(err)
		}
		for i, pts := range plain.pts {
			if !dummies {
				var kept []linkage.Point
				for _, pt := range pts {
					if pt[0] != 0xd0 && pt != (linkage.Point{}) {
						kept = append(kept, pt)
					}
				}
				pts = kept
			}
			lengths[id] = append(lengths[id], len(pts))
			merged[i] = append(merged[i], pts...)
		}
	}
	// The coordinator's count of patterns, as the protocol tallies it.
	counts, err := protocol.CountLinkPatterns(shape, lp, merged)
	if err != nil {
		t.Fatal(err)
	}
	patterns = make([]int64, lp.Count())
	for _, c := range counts {
		for i, n := range c {
			patterns[i] += n
		}
	}
	return lengths, patterns
}

// linkAuditStat is the attacker's statistic: the count of rid(99)'s pattern
// weighted by the inverse of its noise variance, plus the lengths of the
// lists rid(99) lengthens weighted by the inverse of the padding's variance.
func linkAuditStat(p *plan.Plan, ls *nodev1.LinkSpec, lengths map[string][]int, patterns []int64) float64 {
	lp := protocol.LinkPatternsOf(p, ls)
	shape := protocol.LinkShape{Cells: p.Cells(), Filters: len(p.Link.Filters)}
	sn := p.Measures()[0].NodeSigma
	vh := 3 * (sn*sn + 1.0/12)
	vp := p.Link.PadSigma*p.Link.PadSigma + 1.0/12
	s := float64(patterns[lp.Index(2, []int{1})]) / vh
	s += float64(lengths["h1"][shape.ListIndex(0, 0)]+lengths["h2"][shape.ListIndex(0, 0)]+lengths["reg"][shape.ListIndex(1, 0)]) / vp
	return s
}

func linkAudit(t *testing.T, eps float64, dummies bool, runs int) dpaudit.Result {
	p, ls := linkAuditSetup(t, eps)
	locals := func(extra bool) map[string]*eval.LinkLocal {
		out := map[string]*eval.LinkLocal{}
		for id, tb := range linkAuditCity(t, extra) {
			l, err := eval.LinkElements(context.Background(), p, tb)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = l
		}
		return out
	}
	d, d2 := locals(false), locals(true)
	x := make([]dpaudit.Outcome, runs)
	y := make([]dpaudit.Outcome, runs)
	for i := range runs {
		l, pt := linkView(t, p, ls, d, dummies)
		x[i] = dpaudit.Value(linkAuditStat(p, ls, l, pt))
		l, pt = linkView(t, p, ls, d2, dummies)
		y[i] = dpaudit.Value(linkAuditStat(p, ls, l, pt))
	}
	res, err := dpaudit.Audit(x, y, dpaudit.Options{Epsilon: p.Epsilon(), Delta: p.Delta(), Confidence: auditCheckConfidence})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestLinkHistogramIsDP audits the coordinator's view of a linked query
// (Q2 of issue 17: diabetics at two hospitals who died, per the registry)
// between a city and the same city with one more resident at both
// hospitals and the registry: the lower bound on its privacy loss must not
// exceed the ε the nodes charge.
func TestLinkHistogramIsDP(t *testing.T) {
	runs := 2000
	switch {
	case *auditLong:
		runs = 40000
	case testing.Short() || raceEnabled:
		runs = 300
	}
	for _, eps := range []float64{1, 4} {
		res := linkAudit(t, eps, true, runs)
		t.Logf("charged ε %v; %s", res.Epsilon, res)
		if res.Exceeds() {
			t.Errorf("the coordinator's view of a linked query loses more privacy than charged: %s", res)
		}
	}
}

// TestLinkHistogramAuditCatchesNoDummies is the audit's positive control:
// without the dummies and the padding, the pattern counts and list lengths
// give the extra resident away, and the same audit must say so.
func TestLinkHistogramAuditCatchesNoDummies(t *testing.T) {
	res := linkAudit(t, 1, false, 300)
	t.Logf("without dummies: %s", res)
	if !res.Exceeds() {
		t.Errorf("the audit did not catch a view without dummies: %s", res)
	}
}

// TestLinkPartialHidesIdentifiers: what a node sends for a linked query
// (its lists, encrypted under the linkage key) holds neither an identity
// number nor the group element of one (H(id), which anyone can compute
// from a guessed identifier), and every list is longer than the node's
// residents in it (dummies and padding) and shuffled: the same query again
// gives other bytes and other lengths.
func TestLinkPartialHidesIdentifiers(t *testing.T) {
	p, ls := linkAuditSetup(t, 1)
	city := linkAuditCity(t, true)
	// A linkage key of a three-member epoch.
	points := []uint64{1, 2, 3}
	var commits [][]linkage.Point
	for range points {
		d, err := linkage.Deal(2, points)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, d.Commitments)
	}
	pub, err := linkage.AggregatePublicKey(commits, points)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"h1", "reg"} {
		local, err := eval.LinkElements(context.Background(), p, city[id])
		if err != nil {
			t.Fatal(err)
		}
		var sent [][]byte
		var lens [][]int
		for range 2 {
			plain, err := linkLists(id, p, ls, local, linkage.RandomPoint)
			if err != nil {
				t.Fatal(err)
			}
			lp, err := plain.encrypt(pub.X)
			if err != nil {
				t.Fatal(err)
			}
			b, err := proto.Marshal(lp)
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, b)
			var l []int
			for i, list := range lp.GetLists() {
				n := len(list.GetPseudonyms()) / linkage.CiphertextSize
				l = append(l, n)
				if real := len(plain.pts[i]); n != real {
					t.Fatalf("list %d: %d ciphertexts for %d elements", i, n, real)
				}
			}
			lens = append(lens, l)
		}
		for _, r := range []string{rid(1), rid(2), rid(3), rid(4), rid(5), rid(6), rid(7), rid(8), rid(99)} {
			h := linkage.HashIdentifier(linkDomain(p), r)
			for _, b := range sent {
				if bytes.Contains(b, []byte(r)) || bytes.Contains(b, h[:]) {
					t.Errorf("%s's partial holds %s or H(%s)", id, r, r)
				}
			}
		}
		if bytes.Equal(sent[0], sent[1]) {
			t.Errorf("%s sent the same bytes twice", id)
		}
		if fmt.Sprint(lens[0]) == fmt.Sprint(lens[1]) {
			t.Errorf("%s: list lengths %v both times: the padding is not random", id, lens[0])
		}
		// Every list is longer than the node's residents in it.
		for i, n := range lens[0] {
			if min := int(protocol.LinkPadShift(p)) / 2; n < min {
				t.Errorf("%s list %d: %d elements, expected padding of about %d", id, i, n, protocol.LinkPadShift(p))
			}
		}
	}
}

// TestLinkSpecChecks: a node refuses a link spec that would make it add
// the wrong dummies or understate the sensitivity: a stage or holder that
// is not a participant, the wrong number of stages, fewer holders counted
// in the spec than listed, or itself left out of the holders of a table
// it holds rows of. It mixes each stage, and finishes and decrypts each
// query, once.
func TestLinkSpecChecks(t *testing.T) {
	p, ls := linkAuditSetup(t, 1)
	e := &epochState{Epoch: 1, Threshold: 2}
	for i, id := range []string{"h1", "h2", "reg", "colluder"} {
		e.Members = append(e.Members, member{ID: id, Point: uint64(i + 1)})
	}
	spec := &typesv1.QuerySpec{MinNodes: 4, LinkHolders: 2}
	if err := checkLinkSpec(e, "h1", p, ls, spec); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, mutate := range map[string]func(l *nodev1.LinkSpec, s *typesv1.QuerySpec){
		"stage not a participant": func(l *nodev1.LinkSpec, _ *typesv1.QuerySpec) {
			l.Participants = l.Participants[:3]
			l.Stages = []string{"h1", "colluder"}
		},
		"three stages":           func(l *nodev1.LinkSpec, _ *typesv1.QuerySpec) { l.Stages = []string{"h1", "h2", "reg"} },
		"repeated participant":   func(l *nodev1.LinkSpec, _ *typesv1.QuerySpec) { l.Participants = append(l.Participants, "h2") },
		"holders undercounted":   func(_ *nodev1.LinkSpec, s *typesv1.QuerySpec) { s.LinkHolders = 1 },
		"fewer than min_nodes":   func(_ *nodev1.LinkSpec, s *typesv1.QuerySpec) { s.MinNodes = 5 },
		"filter holders missing": func(l *nodev1.LinkSpec, _ *typesv1.QuerySpec) { l.FilterHolders = nil },
		"this node not taking part": func(l *nodev1.LinkSpec, _ *typesv1.QuerySpec) {
			l.Participants = []string{"h2", "reg", "colluder"}
			l.Stages = []string{"h2", "reg"}
			l.OuterHolders = []string{"h2"}
		},
	} {
		l := proto.Clone(ls).(*nodev1.LinkSpec)
		s := proto.Clone(spec).(*typesv1.QuerySpec)
		mutate(l, s)
		if err := checkLinkSpec(e, "h1", p, l, s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A holder of the outer table that the spec leaves out.
	local, err := eval.LinkElements(context.Background(), p, linkAuditCity(t, false)["h1"])
	if err != nil {
		t.Fatal(err)
	}
	if err := checkHolder("h1", p, ls, local); err != nil {
		t.Fatalf("listed holder: %v", err)
	}
	l := proto.Clone(ls).(*nodev1.LinkSpec)
	l.OuterHolders = []string{"h2"}
	if err := checkHolder("h1", p, l, local); err == nil {
		t.Error("a holder left out of the holders was accepted")
	}
	// Once per stage, finish and decryption.
	var s stagedSet
	for _, key := range []string{"q/0", "q/1", "q/finish", "q/decrypt"} {
		if !s.claim(key) || s.claim(key) {
			t.Errorf("%s: claimed twice or not at all", key)
		}
	}
}
