package protocol

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fedstat/fedstat/crypto/linkage"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
)

// The contract of a query across linked agencies (plan.LinkPlan,
// docs/linkage.md): the messages of the key ceremony's linkage key and of
// the pseudonym mix, the shape every list must have, how the pseudonyms are
// finished from the last stage's lists, and their tally.

// Envelope kinds of record linkage (wire values: never change one).
const (
	KindLinkCommitments = "link-commitments" // a member's Feldman commitments to its linkage-key polynomial
	KindLinkStage       = "link-stage"       // a mix stage's output
	KindLinkRelease     = "link-release"     // a mix stage's statement of what a linked query released
)

var (
	linkCommitKind = bytesKind(KindLinkCommitments)
	linkStageKind  = protoKind[nodev1.LinkStagePayload](KindLinkStage)
	linkRelKind    = protoKind[nodev1.LinkReleaseStatement](KindLinkRelease)
)

// SealLinkRelease signs stage node node's statement of what query queryID
// released (LinkAttest).
func SealLinkRelease(signer crypto.Signer, queryID string, epoch uint64, node string, st *nodev1.LinkReleaseStatement, now time.Time) (*typesv1.Signed, error) {
	return linkRelKind.seal(signer, queryBinding(queryID, epoch, node), st, now)
}

// OpenLinkRelease verifies node's signed statement of what query queryID
// released in epoch: the signature and the binding, and that the
// statement names the same query and epoch.
func OpenLinkRelease(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window) (*nodev1.LinkReleaseStatement, error) {
	st, err := linkRelKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if err != nil {
		return nil, err
	}
	if st.GetQueryId() != queryID || st.GetEpoch() != epoch {
		return nil, fmt.Errorf("it states query %s of epoch %d", st.GetQueryId(), st.GetEpoch())
	}
	return st, nil
}

// SealLinkCommitments signs node's commitments (concatenated 32-byte
// points) to its linkage-key polynomial of key epoch epoch.
func SealLinkCommitments(signer crypto.Signer, epoch uint64, node string, commitments []linkage.Point, now time.Time) (*typesv1.Signed, error) {
	b := make([]byte, 0, len(commitments)*32)
	for _, c := range commitments {
		b = append(b, c[:]...)
	}
	return linkCommitKind.seal(signer, queryBinding(EpochQueryID(epoch), epoch, node), b, now)
}

// OpenLinkCommitments verifies node's linkage-key commitments of epoch and
// returns them; there must be t of them (the epoch's threshold).
func OpenLinkCommitments(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, node string, t int, w Window) ([]linkage.Point, error) {
	b, err := linkCommitKind.open(pub, s, queryBinding(EpochQueryID(epoch), epoch, node), w)
	if err != nil {
		return nil, err
	}
	if len(b) != 32*t {
		return nil, fmt.Errorf("%w: %d bytes of commitments, threshold %d needs %d", ErrMalformedPayload, len(b), t, 32*t)
	}
	out := make([]linkage.Point, t)
	for i := range out {
		copy(out[i][:], b[32*i:])
	}
	return out, nil
}

// linkDealtQueryID binds a linkage-key share to its recipient; it differs
// from a homomorphic threshold share's, so one cannot stand for the other.
func linkDealtQueryID(to string) string { return "link-to:" + to }

// SealLinkShare signs the linkage-key share of epoch that from dealt to to
// (sealed: already encrypted to the recipient).
func SealLinkShare(signer crypto.Signer, epoch uint64, from, to string, sealed []byte, now time.Time) (*typesv1.Signed, error) {
	return thresholdKind.seal(signer, queryBinding(linkDealtQueryID(to), epoch, from), sealed, now)
}

// OpenLinkShare verifies the linkage-key share of epoch that from dealt to
// to, and returns it (still encrypted to the recipient).
func OpenLinkShare(pub crypto.PublicKey, s *typesv1.Signed, epoch uint64, from, to string, w Window) ([]byte, error) {
	return thresholdKind.open(pub, s, queryBinding(linkDealtQueryID(to), epoch, from), w)
}

// SealLinkStage signs stage node node's output of query queryID.
func SealLinkStage(signer crypto.Signer, queryID string, epoch uint64, node string, p *nodev1.LinkStagePayload, now time.Time) (*typesv1.Signed, error) {
	return linkStageKind.seal(signer, queryBinding(queryID, epoch, node), p, now)
}

// OpenLinkStage verifies stage node node's output of query queryID: the
// signature, the binding, the spec digest, the stage index and stage set,
// and the lists' shape.
func OpenLinkStage(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window, want LinkShape, stage int, stages []string) (*nodev1.LinkStagePayload, error) {
	p, err := linkStageKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p.GetSpecDigest(), want.SpecDigest) {
		return nil, errors.New("it was made for another query spec")
	}
	if int(p.GetStage()) != stage || !slices.Equal(p.GetStages(), stages) {
		return nil, fmt.Errorf("it is stage %d of %v, expected stage %d of %v", p.GetStage(), p.GetStages(), stage, stages)
	}
	if err := want.checkLists(p.GetLists()); err != nil {
		return nil, err
	}
	if err := want.checkNoise(p.GetNoise(), true); err != nil {
		return nil, err
	}
	return p, nil
}

// LinkShape is what every list of one linked query must be.
type LinkShape struct {
	SpecDigest []byte
	Cells      int  // the plan's cells
	Filters    int  // len(LinkPlan.Filters)
	Payload    bool // the outer lists carry payloads
}

// LinkShapeOf is the shape of the lists of the linked query with spec spec
// and plan p.
func LinkShapeOf(spec *typesv1.QuerySpec, p *plan.Plan) LinkShape {
	return LinkShape{SpecDigest: SpecDigest(spec), Cells: p.Cells(), Filters: len(p.Link.Filters), Payload: p.Link.Payload}
}

// Lists is the number of lists of a linked query: one per role (the outer
// table and each filter) and cell.
func (s LinkShape) Lists() int { return (1 + s.Filters) * s.Cells }

// ListIndex is the position of the list of role and cell in a partial or a
// stage's output: lists are ordered by cell, then role.
func (s LinkShape) ListIndex(role, cell int) int { return cell*(1+s.Filters) + role }

// checkLists checks that lists are the query's lists in order, each a whole
// number of 64-byte ciphertexts, with one payload per pseudonym on the outer
// lists of a payload query and none elsewhere.
func (s LinkShape) checkLists(lists []*nodev1.LinkList) error {
	if len(lists) != s.Lists() {
		return fmt.Errorf("%d lists, the plan needs %d", len(lists), s.Lists())
	}
	for i, l := range lists {
		cell, role := i/(1+s.Filters), i%(1+s.Filters)
		if int(l.GetCell()) != cell || int(l.GetRole()) != role {
			return fmt.Errorf("list %d is role %d cell %d, expected role %d cell %d", i, l.GetRole(), l.GetCell(), role, cell)
		}
		if len(l.GetPseudonyms())%linkage.CiphertextSize != 0 {
			return fmt.Errorf("list %d: %d bytes is not a whole number of %d-byte ciphertexts", i, len(l.GetPseudonyms()), linkage.CiphertextSize)
		}
		wantPayload := 0
		if role == 0 && s.Payload {
			wantPayload = len(l.GetPseudonyms())
		}
		if len(l.GetPayloads()) != wantPayload {
			return fmt.Errorf("list %d: %d bytes of payloads for %d bytes of pseudonyms (payload query: %v)", i, len(l.GetPayloads()), len(l.GetPseudonyms()), s.Payload)
		}
	}
	return nil
}

// checkNoise checks the noise ciphertexts: one per cell from a node (none
// without payload), a whole number per cell after merging.
func (s LinkShape) checkNoise(noise [][]byte, merged bool) error {
	if !s.Payload {
		if len(noise) != 0 {
			return errors.New("noise ciphertexts on a query without payload")
		}
		return nil
	}
	if len(noise) != s.Cells {
		return fmt.Errorf("noise for %d cells, the plan has %d", len(noise), s.Cells)
	}
	for c, b := range noise {
		if (!merged && len(b) != linkage.CiphertextSize) || len(b)%linkage.CiphertextSize != 0 || len(b) == 0 {
			return fmt.Errorf("noise of cell %d: %d bytes", c, len(b))
		}
	}
	return nil
}

// OpenLinkPartial runs every check of a linked query's partial: OpenPartial's
// envelope checks, the spec digest, and the lists' shape.
func OpenLinkPartial(pub crypto.PublicKey, s *typesv1.Signed, queryID string, epoch uint64, node string, w Window, want LinkShape) (*nodev1.LinkPartial, error) {
	payload, err := partialKind.open(pub, s, queryBinding(queryID, epoch, node), w)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(payload.GetSpecDigest(), want.SpecDigest) {
		return nil, errors.New("it was planned and noised for another query spec (min_nodes, threshold, epsilon, delta or SQL differ)")
	}
	l := payload.GetLink()
	if l == nil || len(payload.GetCiphertexts()) > 0 || len(payload.GetPlaintext()) > 0 {
		return nil, errors.New("it is not a linked query's partial")
	}
	if err := want.checkLists(l.GetLists()); err != nil {
		return nil, err
	}
	if err := want.checkNoise(l.GetNoise(), false); err != nil {
		return nil, err
	}
	return l, nil
}

// MergeLinkPartials concatenates the participants' lists (in the order
// given) into the input of the first mix stage, and their noise
// ciphertexts cell by cell.
func MergeLinkPartials(want LinkShape, parts []*nodev1.LinkPartial) ([]*nodev1.LinkList, [][]byte) {
	lists := make([]*nodev1.LinkList, want.Lists())
	for i := range lists {
		lists[i] = &nodev1.LinkList{Cell: int32(i / (1 + want.Filters)), Role: int32(i % (1 + want.Filters))}
	}
	var noise [][]byte
	if want.Payload {
		noise = make([][]byte, want.Cells)
	}
	for _, p := range parts {
		for i, l := range p.GetLists() {
			lists[i].Pseudonyms = append(lists[i].Pseudonyms, l.GetPseudonyms()...)
			lists[i].Payloads = append(lists[i].Payloads, l.GetPayloads()...)
		}
		for c, b := range p.GetNoise() {
			noise[c] = append(noise[c], b...)
		}
	}
	return lists, noise
}

// LinkPatterns describes the multiplicity patterns of a linked query: a
// resident's pattern is how many times their pseudonym appears in the outer
// list of a cell (a, at most the number of outer holders) and in each
// filter's list (b_i, at most that filter's holders). Every node adds
// dummies of every pattern but the empty one, so the coordinator's view of
// the patterns is differentially private.
type LinkPatterns struct {
	Outer   int   // holders of the outer table
	Filters []int // holders of each filter's table
	Negate  []bool
}

// LinkPatternsOf reads the patterns of a query from its plan and link spec.
func LinkPatternsOf(p *plan.Plan, l *nodev1.LinkSpec) LinkPatterns {
	out := LinkPatterns{Outer: len(l.GetOuterHolders())}
	for i, f := range p.Link.Filters {
		n := 0
		if i < len(l.GetFilterHolders()) {
			n = len(l.GetFilterHolders()[i].GetNodeIds())
		}
		out.Filters = append(out.Filters, n)
		out.Negate = append(out.Negate, f.Negate)
	}
	return out
}

// Count is the number of patterns, the empty one included (index 0).
func (lp LinkPatterns) Count() int {
	n := lp.Outer + 1
	for _, f := range lp.Filters {
		n *= f + 1
	}
	return n
}

// Pattern returns the multiplicities of pattern index i: a (outer) and b
// (filters).
func (lp LinkPatterns) Pattern(i int) (a int, b []int) {
	a = i % (lp.Outer + 1)
	i /= lp.Outer + 1
	b = make([]int, len(lp.Filters))
	for k, f := range lp.Filters {
		b[k] = i % (f + 1)
		i /= f + 1
	}
	return a, b
}

// Index is the index of pattern (a, b), or -1 when a multiplicity exceeds
// its holders (a list that no honest set of nodes could have made).
func (lp LinkPatterns) Index(a int, b []int) int {
	if a > lp.Outer {
		return -1
	}
	idx, mul := a, lp.Outer+1
	for k, f := range lp.Filters {
		if b[k] > f {
			return -1
		}
		idx += b[k] * mul
		mul *= f + 1
	}
	return idx
}

// Matches reports whether residents of pattern i are in the query's answer:
// in the outer table, and in (or, negated, not in) every filter.
func (lp LinkPatterns) Matches(i int) bool {
	a, b := lp.Pattern(i)
	if a == 0 {
		return false
	}
	for k := range b {
		if (b[k] > 0) == lp.Negate[k] {
			return false
		}
	}
	return true
}

// MatchingPatterns is the number of non-empty patterns whose residents are
// in the answer: the number of dummy kinds whose noise a released count
// carries.
func (lp LinkPatterns) MatchingPatterns() int {
	n := 0
	for i := 1; i < lp.Count(); i++ {
		if lp.Matches(i) {
			n++
		}
	}
	return n
}

// LinkShift is the public number of dummies of each pattern every node adds
// before its noise: ceil(8σ) for the node noise σ of the plan's match
// histogram (Measures()[0].NodeSigma), so that the noisy number of dummies
// is below zero with probability under 1e-15 per draw.
func LinkShift(p *plan.Plan) int64 {
	return int64(math.Ceil(8*p.Measures()[0].NodeSigma)) + 1
}

// LinkPadShift is the public part of the identity padding every node adds
// to each of its lists: ceil(8·PadSigma).
func LinkPadShift(p *plan.Plan) int64 {
	return int64(math.Ceil(8*p.Link.PadSigma)) + 1
}

// CountLinkPatterns returns, per cell, how many distinct pseudonyms have
// each pattern (identity padding dropped): what the coordinator sees of a
// linked query. TallyLinkLists counts with it, and so does the privacy
// audit of that view (node/link_audit_test.go).
func CountLinkPatterns(want LinkShape, lp LinkPatterns, pseudonyms [][]linkage.Point) ([][]int64, error) {
	out := make([][]int64, want.Cells)
	for cell := range out {
		counts, _, err := cellPatterns(want, lp, pseudonyms, cell)
		if err != nil {
			return nil, err
		}
		out[cell] = counts
	}
	return out, nil
}

// cellPatterns counts the patterns of one cell and returns each
// pseudonym's pattern index. A pseudonym seen more often than its holders
// allow is an error naming the cell.
func cellPatterns(want LinkShape, lp LinkPatterns, pseudonyms [][]linkage.Point, cell int) ([]int64, map[linkage.Point]int, error) {
	type count struct {
		a int
		b []int
	}
	seen := map[linkage.Point]*count{}
	for role := 0; role <= want.Filters; role++ {
		for _, pt := range pseudonyms[want.ListIndex(role, cell)] {
			if pt == (linkage.Point{}) {
				continue // identity padding
			}
			c := seen[pt]
			if c == nil {
				c = &count{b: make([]int, want.Filters)}
				seen[pt] = c
			}
			if role == 0 {
				c.a++
			} else {
				c.b[role-1]++
			}
		}
	}
	counts := make([]int64, lp.Count())
	patternOf := make(map[linkage.Point]int, len(seen))
	for pt, c := range seen {
		i := lp.Index(c.a, c.b)
		if i < 0 {
			return nil, nil, fmt.Errorf("cell %d: a pseudonym appears %d times in the outer list and %v in the filters' lists, more than the holders (%d, %v) can add", cell, c.a, c.b, lp.Outer, lp.Filters)
		}
		counts[i]++
		patternOf[pt] = i
	}
	return counts, patternOf, nil
}

// LinkTally is the tally of a query's mixed lists, per cell: how many
// distinct pseudonyms have each pattern (dummies included, identity
// padding dropped), and, for a payload query, the sum of the payloads of
// every outer element whose pseudonym matches.
type LinkTally struct {
	Patterns [][]int64                 // [cell][pattern index]
	Sums     []linkage.ValueCiphertext // [cell]; nil without payload
}

// SplitCiphertexts cuts the bytes of a list (LinkList.pseudonyms or
// payloads, or a cell's noise) into its 64-byte ciphertexts; a trailing
// partial one is dropped (the shape checks refuse those).
func SplitCiphertexts[T ~[linkage.CiphertextSize]byte](b []byte) []T {
	out := make([]T, len(b)/linkage.CiphertextSize)
	for i := range out {
		out[i] = T(b[i*linkage.CiphertextSize:])
	}
	return out
}

// SplitPoints cuts lists of concatenated 32-byte points (LinkC1's lists,
// a LinkFinishResponse's shares) into one sequence of points, in order; a
// list whose length is not a multiple of 32 bytes is an error naming it.
func SplitPoints(lists [][]byte) ([]linkage.Point, error) {
	var out []linkage.Point
	for i, b := range lists {
		if len(b)%linkage.PointSize != 0 {
			return nil, fmt.Errorf("list %d: %d bytes, not a whole number of points", i, len(b))
		}
		for j := 0; j < len(b); j += linkage.PointSize {
			out = append(out, linkage.Point(b[j:]))
		}
	}
	return out, nil
}

// JoinCiphertexts is the wire form of a list of ciphertexts.
func JoinCiphertexts[T ~[linkage.CiphertextSize]byte](cs []T) []byte {
	b := make([]byte, 0, len(cs)*linkage.CiphertextSize)
	for _, c := range cs {
		b = append(b, c[:]...)
	}
	return b
}

// LinkC1 returns the C1 components of every list (32 bytes each,
// concatenated per list): all the first stage is shown when it takes its
// withheld share off (LinkFinish).
func LinkC1(lists []*nodev1.LinkList) [][]byte {
	out := make([][]byte, len(lists))
	for i, l := range lists {
		ps := l.GetPseudonyms()
		b := make([]byte, 0, len(ps)/2)
		for j := 0; j+linkage.CiphertextSize <= len(ps); j += linkage.CiphertextSize {
			b = append(b, ps[j:j+linkage.PointSize]...)
		}
		out[i] = b
	}
	return out
}

// FinishLinkLists takes the first stage's shares (w·C1 of every element,
// per list, as LinkFinish returns them) off the last stage's lists and
// returns the pseudonyms, per list.
func FinishLinkLists(lists []*nodev1.LinkList, shares [][]byte) ([][]linkage.Point, error) {
	if len(shares) != len(lists) {
		return nil, fmt.Errorf("%d lists of shares for %d lists", len(shares), len(lists))
	}
	out := make([][]linkage.Point, len(lists))
	for i, l := range lists {
		cts := SplitCiphertexts[linkage.Ciphertext](l.GetPseudonyms())
		n := len(cts)
		if len(shares[i]) != n*linkage.PointSize {
			return nil, fmt.Errorf("list %d: %d bytes of shares for %d elements", i, len(shares[i]), n)
		}
		sh := make([]linkage.Point, n)
		for j := range n {
			sh[j] = linkage.Point(shares[i][j*linkage.PointSize:])
		}
		var err error
		if out[i], err = linkage.Finish(cts, sh); err != nil {
			return nil, fmt.Errorf("list %d: %w", i, err)
		}
	}
	return out, nil
}

// TallyLinkLists counts the patterns of the finished pseudonyms of the
// last stage's lists (FinishLinkLists) and sums the matching payloads. A
// pseudonym seen more often than its holders allow is an error naming the
// cell.
func TallyLinkLists(want LinkShape, lp LinkPatterns, lists []*nodev1.LinkList, pseudonyms [][]linkage.Point) (*LinkTally, error) {
	if err := want.checkLists(lists); err != nil {
		return nil, err
	}
	if len(pseudonyms) != len(lists) {
		return nil, fmt.Errorf("pseudonyms of %d lists for %d lists", len(pseudonyms), len(lists))
	}
	t := &LinkTally{Patterns: make([][]int64, want.Cells)}
	if want.Payload {
		t.Sums = make([]linkage.ValueCiphertext, want.Cells)
	}
	for cell := 0; cell < want.Cells; cell++ {
		counts, patternOf, err := cellPatterns(want, lp, pseudonyms, cell)
		if err != nil {
			return nil, err
		}
		t.Patterns[cell] = counts
		if !want.Payload {
			continue
		}
		li := want.ListIndex(0, cell)
		pays := SplitCiphertexts[linkage.ValueCiphertext](lists[li].GetPayloads())
		var matched []linkage.ValueCiphertext
		for j, pt := range pseudonyms[li] {
			if pt != (linkage.Point{}) && lp.Matches(patternOf[pt]) {
				matched = append(matched, pays[j])
			}
		}
		sum, err := linkage.AddValues(matched)
		if err != nil {
			return nil, fmt.Errorf("cell %d: payloads: %w", cell, err)
		}
		t.Sums[cell] = sum
	}
	return t, nil
}

// WithNoise adds the nodes' noise ciphertexts of every cell to the tally's
// sums: what the decryptors decrypt.
func (t *LinkTally) WithNoise(noise [][]byte) ([]linkage.ValueCiphertext, error) {
	out := make([]linkage.ValueCiphertext, len(t.Sums))
	for cell, sum := range t.Sums {
		cts := append([]linkage.ValueCiphertext{sum}, SplitCiphertexts[linkage.ValueCiphertext](noise[cell])...)
		s, err := linkage.AddValues(cts)
		if err != nil {
			return nil, fmt.Errorf("cell %d: noise: %w", cell, err)
		}
		out[cell] = s
	}
	return out, nil
}

// ErrLinkSum: a ciphertext a decryptor is asked to decrypt as a cell's
// payload sum is not the sum that the stages' proven outputs and the first
// stage's proven finish shares give for that cell.
var ErrLinkSum = errors.New("protocol: the ciphertext is not its cell's payload sum")

// LinkSums recomputes what the decryptors of a payload query decrypt, from
// the last stage's output (lists and noise) and the first stage's finish
// shares of it (per list, as LinkFinish returns them): finish the
// pseudonyms, tally them, add each cell's matching payloads and the nodes'
// noise. The coordinator and every decryptor compute it the same way.
func LinkSums(want LinkShape, lp LinkPatterns, lists []*nodev1.LinkList, finish [][]byte, noise [][]byte) (*LinkTally, []linkage.ValueCiphertext, error) {
	pseudonyms, err := FinishLinkLists(lists, finish)
	if err != nil {
		return nil, nil, err
	}
	tally, err := TallyLinkLists(want, lp, lists, pseudonyms)
	if err != nil {
		return nil, nil, err
	}
	if !want.Payload {
		return tally, nil, nil
	}
	if len(noise) != want.Cells {
		return nil, nil, fmt.Errorf("noise of %d cells, the plan has %d", len(noise), want.Cells)
	}
	sums, err := tally.WithNoise(noise)
	if err != nil {
		return nil, nil, err
	}
	return tally, sums, nil
}

// CheckLinkSums compares the sums a decryptor is asked to decrypt with
// those it recomputed (LinkSums): any other ciphertext (one resident's
// payload, a pseudonym ciphertext, a sum without the nodes' noise) is
// ErrLinkSum, naming the cell.
func CheckLinkSums(asked [][]byte, want []linkage.ValueCiphertext) error {
	if len(asked) != len(want) {
		return fmt.Errorf("%w: %d sums asked, the proven lists give %d cells", ErrLinkSum, len(asked), len(want))
	}
	for c := range want {
		if !bytes.Equal(asked[c], want[c][:]) {
			return fmt.Errorf("%w: the sum asked for cell %d is not the sum of the cell's matching payloads and the nodes' noise in the proven lists", ErrLinkSum, c)
		}
	}
	return nil
}

// OuterElems is the number of elements of every cell's outer list.
func OuterElems(shape LinkShape, lists []*nodev1.LinkList) []int {
	out := make([]int, shape.Cells)
	for cell := range out {
		if i := shape.ListIndex(0, cell); i < len(lists) {
			out[cell] = len(lists[i].GetPseudonyms()) / linkage.CiphertextSize
		}
	}
	return out
}

// LinkSumValues combines the decryptors' shares of every cell's payload
// sum (shares[i][cell] is decryptor i's, each checked with its proof; outer
// the elements of every cell's outer list, OuterElems) and
// returns the sums as integers on the payload measure's grid (the bounded
// discrete log). A sum beyond what the cell's outer elements and every
// participant's noise far into its tail allow is an error naming the cell.
func LinkSumValues(p *plan.Plan, outer []int, participants int, sums []linkage.ValueCiphertext, shares [][]linkage.Point) ([]int64, error) {
	if len(p.Measures()) < 2 {
		return nil, errors.New("the plan has no payload measure")
	}
	m := p.Measures()[1]
	out := make([]int64, len(sums))
	for cell, ct := range sums {
		sh := make([]linkage.Point, len(shares))
		for i := range shares {
			if len(shares[i]) != len(sums) {
				return nil, fmt.Errorf("decryptor %d: %d shares for %d sums", i, len(shares[i]), len(sums))
			}
			sh[i] = shares[i][cell]
		}
		v, err := linkage.CombineDecryption(ct, sh)
		if err != nil {
			return nil, fmt.Errorf("cell %d: %w", cell, err)
		}
		// The sum is at most every outer element's bound, plus the noise
		// of every participant far into its tail. The worst case is far
		// above any real sum; the search goes out from zero, so a bound
		// clamped to what the table serves costs nothing unless the sum
		// really is that large.
		if cell >= len(outer) {
			return nil, fmt.Errorf("the outer lists of %d cells for %d sums", len(outer), len(sums))
		}
		bound := float64(outer[cell])*m.PerCell*m.Scale + 12*math.Sqrt(float64(participants))*m.NodeSigma*m.Scale + 1
		x, err := linkage.DiscreteLog(v, int64(math.Min(math.Ceil(bound), linkage.MaxBound)))
		if err != nil {
			return nil, fmt.Errorf("cell %d: the decrypted sum is out of its range (%v)", cell, err)
		}
		out[cell] = x
	}
	return out, nil
}

// Totals are what dp.ReleaseLinked releases from the tally of a query of
// plan p with participants participants: every cell's count (LinkCount,
// less every participant's public shift), without the payload sums.
func (t *LinkTally) Totals(p *plan.Plan, lp LinkPatterns, participants int) dp.LinkTotals {
	shift := LinkShift(p)
	totals := dp.LinkTotals{Participants: participants, Patterns: lp.MatchingPatterns()}
	for cell := range t.Patterns {
		totals.Counts = append(totals.Counts, t.LinkCount(lp, cell, participants, shift))
	}
	return totals
}

// LinkCount is the released count of residents of cell from the tally:
// the matching patterns' counts minus the public shift of every
// participant's dummies.
func (t *LinkTally) LinkCount(lp LinkPatterns, cell int, participants int, shift int64) int64 {
	var n int64
	for i := 1; i < lp.Count(); i++ {
		if lp.Matches(i) {
			n += t.Patterns[cell][i] - int64(participants)*shift
		}
	}
	return n
}

// The steps whose decryption shares carry a linkage.ShareProof.
const (
	LinkStepFinish  = "link-finish"  // the first stage's withheld share of the last stage's lists
	LinkStepDecrypt = "link-decrypt" // a decryptor's shares of the payload sums
)

// ErrLinkShareProof: a node's decryption shares of a linked query do not
// match its proof, or it sent none.
var ErrLinkShareProof = errors.New("protocol: the decryption shares do not match their proof")

// linkShareContext binds a ShareProof to its step, query, epoch and node,
// so that a proof verifies for nothing else.
func linkShareContext(step, qid string, epoch uint64, node string) []byte {
	return fmt.Appendf(nil, "fedstat/link-share-proof/v1\x00%s\x00%s\x00%d\x00%s", step, qid, epoch, node)
}

// ProveLinkShares proves that node's shares are w·C1 of c1s (all lists, or
// all cells, in order), for step of query qid in epoch: the proof a
// LinkFinishResponse or LinkDecryptResponse carries.
func ProveLinkShares(w linkage.Scalar, step, qid string, epoch uint64, node string, c1s, shares []linkage.Point) ([]byte, error) {
	p, err := linkage.ProveShares(w, linkShareContext(step, qid, epoch, node), c1s, shares)
	if err != nil {
		return nil, err
	}
	return p[:], nil
}

// CheckLinkShares verifies node's proof that its shares are w·C1 of c1s
// for step of query qid in epoch, where w is its weighted linkage-key
// share for the set of points (the stages): it checks against
// pub.WeightedKey(points, point), the key the epoch's public commitments
// give that node's share, so a node whose shares are wrong (another
// member's, another set's, shifted to move a sum) is refused with
// ErrLinkShareProof, and so is one that sends no proof.
func CheckLinkShares(pub *linkage.PublicKey, points []uint64, point uint64, step, qid string, epoch uint64, node string, c1s, shares []linkage.Point, proof []byte) error {
	if len(proof) == 0 {
		return fmt.Errorf("%w: no proof of its shares (a version of fedstat before the proofs of issue 21)", ErrLinkShareProof)
	}
	if len(proof) != linkage.ShareProofSize {
		return fmt.Errorf("%w: a proof of %d bytes, want %d", ErrLinkShareProof, len(proof), linkage.ShareProofSize)
	}
	wkey, err := pub.WeightedKey(points, point)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrLinkShareProof, err)
	}
	if err := linkage.VerifyShares(wkey, linkShareContext(step, qid, epoch, node), c1s, shares, linkage.ShareProof(proof)); err != nil {
		return fmt.Errorf("%w: %v", ErrLinkShareProof, err)
	}
	return nil
}

// ErrLinkStageProof: a mix stage's output is not shown to be a correct mix
// of its input (a proof that does not verify, a proof or a cell's keys
// missing, the noise ciphertexts changed).
var ErrLinkStageProof = errors.New("protocol: the stage's output is not a proven mix of its input")

// LinkStageContext binds the proofs of a stage's lists of one cell to the
// query, the epoch, the stage's node and index, and the cell.
func LinkStageContext(qid string, epoch uint64, node string, stage, cell int) []byte {
	return fmt.Appendf(nil, "fedstat/link-stage-proof/v1\x00%s\x00%d\x00%s\x00%d\x00%d", qid, epoch, node, stage, cell)
}

// StageKeysBytes is the wire form of a cell's stage keys: K || V.
func StageKeysBytes(k linkage.StageKeys) []byte {
	return append(append([]byte(nil), k.K[:]...), k.V[:]...)
}

// CheckLinkStage checks that out, the opened output of stage number stage
// (node, at Shamir point point among the stages' points), is a proven mix
// of its input (inLists and inNoise: the merged partials for stage 0, the
// previous stage's output after) from the partial set of commitDigest
// (protocol.CommitDigest): every list's linkage.StageProof against
// the cell's keys and the stage's weighted linkage key (the identity for
// stage 0, which strips nothing), and the noise ciphertexts passed on
// unchanged. Any failure is ErrLinkStageProof, naming the cell and list.
func CheckLinkStage(pub *linkage.PublicKey, points []uint64, point uint64, qid string, epoch uint64, node string, stage int, shape LinkShape, commitDigest []byte, inLists []*nodev1.LinkList, inNoise [][]byte, out *nodev1.LinkStagePayload) error {
	if !bytes.Equal(out.GetCommitDigest(), commitDigest) {
		return fmt.Errorf("%w: it names another set of partials than the participants committed to", ErrLinkStageProof)
	}
	if len(out.GetStageKeys()) != shape.Cells || len(out.GetProofs()) != shape.Lists() {
		return fmt.Errorf("%w: %d cells of keys and %d proofs, the plan has %d cells and %d lists (a version before the proofs of issue 21?)", ErrLinkStageProof, len(out.GetStageKeys()), len(out.GetProofs()), shape.Cells, shape.Lists())
	}
	if len(inLists) != shape.Lists() || len(out.GetLists()) != shape.Lists() {
		return fmt.Errorf("%w: %d input lists and %d output lists, the plan has %d", ErrLinkStageProof, len(inLists), len(out.GetLists()), shape.Lists())
	}
	if len(out.GetNoise()) != len(inNoise) {
		return fmt.Errorf("%w: %d noise ciphertexts, its input had %d", ErrLinkStageProof, len(out.GetNoise()), len(inNoise))
	}
	for c := range inNoise {
		if !bytes.Equal(out.GetNoise()[c], inNoise[c]) {
			return fmt.Errorf("%w: the noise ciphertext of cell %d was changed", ErrLinkStageProof, c)
		}
	}
	var wkey linkage.Point // the identity: stage 0 strips nothing
	if stage > 0 {
		var err error
		if wkey, err = pub.WeightedKey(points, point); err != nil {
			return fmt.Errorf("%w: %v", ErrLinkStageProof, err)
		}
	}
	roles := 1 + shape.Filters
	for c := range shape.Cells {
		kb := out.GetStageKeys()[c]
		if len(kb) != 2*linkage.PointSize {
			return fmt.Errorf("%w: cell %d: keys of %d bytes", ErrLinkStageProof, c, len(kb))
		}
		var keys linkage.StageKeys
		copy(keys.K[:], kb)
		copy(keys.V[:], kb[linkage.PointSize:])
		ctx := LinkStageContext(qid, epoch, node, stage, c)
		for role := range roles {
			i := shape.ListIndex(role, c)
			proof, err := linkage.ParseStageProof(out.GetProofs()[i])
			if err != nil {
				return fmt.Errorf("%w: cell %d list %d: %v", ErrLinkStageProof, c, role, err)
			}
			in := SplitCiphertexts[linkage.Ciphertext](inLists[i].GetPseudonyms())
			got := SplitCiphertexts[linkage.Ciphertext](out.GetLists()[i].GetPseudonyms())
			var inP, gotP []linkage.ValueCiphertext
			if shape.Payload && role == 0 {
				inP = SplitCiphertexts[linkage.ValueCiphertext](inLists[i].GetPayloads())
				gotP = SplitCiphertexts[linkage.ValueCiphertext](out.GetLists()[i].GetPayloads())
			}
			if err := linkage.VerifyStage(keys, wkey, pub.X, ctx, role, in, inP, got, gotP, proof); err != nil {
				return fmt.Errorf("%w: cell %d list %d: %v", ErrLinkStageProof, c, role, err)
			}
		}
	}
	return nil
}
