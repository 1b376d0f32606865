// Package releasecheck checks a release record (coordinator/v1
// ReleaseRecord): that a released result is the decryption of the sum the
// nodes whose partials are in it committed to, switched by at least T
// decryptors of the epoch. It needs only the network CA certificate: every
// signer's certificate is in the record. It links Lattigo (through
// crypto/), so the client package must not import it; `fedstat verify`
// does.
//
// What a passing check proves, and what it does not, is in docs/crypto.md,
// "The release record".
package releasecheck

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/resultpb"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
)

// ErrRefused: the record does not prove the release; the message names
// the step and the party.
var ErrRefused = errors.New("releasecheck: refused")

// ErrCatalogue: the check's catalogue (Options.Catalogue) cannot plan the
// query, or plans it other than the nodes did (the plan fingerprint they
// committed to): the decryption cannot be checked with it. Nothing is
// proved or disproved.
var ErrCatalogue = errors.New("releasecheck: another catalogue")

// Options are the verifier's inputs besides the record.
type Options struct {
	// CA is the network CA certificate. Required.
	CA *x509.Certificate
	// Released is the result as the analyst received it (the query's
	// status). Required.
	Released *typesv1.Result
	// Catalogue plans the spec to decode the totals. Defaults to
	// plan.DefaultCatalogue().
	Catalogue *plan.Catalogue
}

// Verdict is what a record proved.
type Verdict struct {
	QueryID string
	Epoch   uint64
	// Senders are the nodes whose partials are in the sum, Decryptors the
	// nodes whose key-switch shares were combined (both sorted).
	Senders, Decryptors []string
	// Threshold is the epoch's T.
	Threshold int
	// PlanBound says every sender committed to the fingerprint of the plan
	// the totals were decoded with (nodes older than that commit to none:
	// then the totals were decoded with Options.Catalogue's plan unbound).
	PlanBound bool
	// RangesProven says every sender's range proof in the record verifies
	// against the range commitments it signed: each value it committed to
	// is within the plan's bounds (rangeproof.VerifyAll, checked here, not
	// taken from the coordinator). False when a sender sent none (policy
	// skip_range_proofs) or the record is older than the proofs.
	RangesProven bool
	// RangesChecked says the decrypted totals are the sum of the values the
	// senders committed to in their partials' range commitments, which they
	// signed again in their commitments (rangeproof.CheckTotal). Records of
	// nodes older than the range proofs carry none.
	RangesChecked bool
	// Decrypted says the sum was decrypted with the revealed result key
	// and matched the released result; when false, Withheld says why the
	// key was not revealed and the check stopped at the switched sum.
	Decrypted bool
	Withheld  string
	// Linked says the record is of a query across linked agencies:
	// Decryptors are then the mix stages that signed the released result
	// (every one of them, T), and Senders the participants.
	Linked bool
}

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, a...)...)
}

// skew accepts any signing time: a record is checked after the fact and
// partials may wait weeks for approvals; the bindings carry the check.
const skew = 100 * 365 * 24 * time.Hour

// Check verifies rec (see the package doc) and returns the verdict, or an
// error matching ErrRefused that names what failed.
func Check(rec *coordinatorv1.ReleaseRecord, o Options) (*Verdict, error) {
	if o.CA == nil || o.Released == nil {
		return nil, errors.New("releasecheck: the CA certificate and the released result are required")
	}
	cat := o.Catalogue
	if cat == nil {
		cat = plan.DefaultCatalogue()
	}
	qid, epoch, spec := rec.GetQueryId(), rec.GetEpoch(), rec.GetSpec()
	if qid == "" || spec == nil {
		return nil, refuse("the record has no query id or spec")
	}
	released := time.UnixMilli(rec.GetReleasedUnixMs())
	w := protocol.Window{Now: released, MaxSkew: skew}

	// 1. Certificates: of the network CA, role node.
	certs := map[string]*x509.Certificate{}
	for i, der := range rec.GetCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, refuse("certificate %d does not parse: %v", i, err)
		}
		name := c.Subject.CommonName
		if err := pki.VerifyAt(o.CA, c, released); err != nil {
			return nil, refuse("the certificate of %q is not of the network CA: %v", name, err)
		}
		if r, err := pki.RoleOf(c); err != nil || r != pki.RoleNode {
			return nil, refuse("the certificate of %q is not a node's (role %q)", name, r)
		}
		certs[name] = c
	}
	cert := func(id, what string) (*x509.Certificate, error) {
		c := certs[id]
		if c == nil {
			return nil, refuse("no certificate of the network CA for %s %s", what, id)
		}
		return c, nil
	}

	// 2. Partial headers: signed by their node, for this query and epoch.
	var partials []*typesv1.Signed
	var senders []string
	for _, s := range rec.GetSenders() {
		id := s.GetNodeId()
		if slices.Contains(senders, id) {
			return nil, refuse("sender %s appears twice", id)
		}
		c, err := cert(id, "sender")
		if err != nil {
			return nil, err
		}
		if err := protocol.OpenPartialHeader(c.PublicKey, s.GetPartial(), qid, epoch, id); err != nil {
			return nil, refuse("the partial of %s is not its signed partial of query %s in epoch %d: %v", id, qid, epoch, err)
		}
		senders = append(senders, id)
		partials = append(partials, s.GetPartial())
	}
	if min := int(spec.GetMinNodes()); len(senders) < min || len(senders) == 0 {
		return nil, refuse("%d senders, the query needs at least %d (min_nodes)", len(senders), min)
	}

	if len(rec.GetLinkStatements()) > 0 {
		return checkLinked(rec, o, cat, certs, senders, w)
	}

	// 3. Commitments: signed, to this partial set and this sum.
	params, err := homomorphic.NewParams(rec.GetParams())
	if err != nil {
		return nil, refuse("parameter set %q: %v", rec.GetParams(), err)
	}
	commitDigest := protocol.CommitDigest(qid, epoch, spec, nodeSigned(rec))
	sumDigest := protocol.SumDigest(rec.GetSum())
	commits := map[string]*nodev1.ReleaseCommitment{}
	for _, s := range rec.GetSenders() {
		id := s.GetNodeId()
		rc, err := protocol.OpenReleaseCommitment(certs[id].PublicKey, s.GetCommitment(), qid, epoch, id, w)
		if err != nil {
			return nil, refuse("the commitment of %s does not verify: %v", id, err)
		}
		if !bytes.Equal(rc.GetDigest(), commitDigest) {
			return nil, refuse("%s committed to another set of partials than the record's", id)
		}
		if !bytes.Equal(rc.GetSumDigest(), sumDigest) {
			return nil, refuse("%s committed to another sum than the record's", id)
		}
		commits[id] = rc
	}

	// 4. The sum is the sum of the committed partials.
	sum := make([]*homomorphic.Ciphertext, len(rec.GetSum()))
	for i, b := range rec.GetSum() {
		if sum[i], err = homomorphic.UnmarshalCiphertext(params, b); err != nil {
			return nil, refuse("sum ciphertext %d: %v", i, err)
		}
	}
	if err := protocol.CheckCompactSum(params, sum, rec.GetSum(), commitDigest, protocol.SpecDigest(spec), commits); err != nil {
		return nil, refuse("the sum is not the committed one: %v", err)
	}

	// 5. Decryptor shares: signed, distinct, at least T, of this set, this
	// sum and this target key.
	t := int(spec.GetThreshold())
	targetDigest := protocol.TargetKeyDigest(rec.GetTargetPublicKey())
	var decryptors []string
	shares := make([][][]byte, 0, len(rec.GetDecryptors()))
	for _, d := range rec.GetDecryptors() {
		id := d.GetNodeId()
		if slices.Contains(decryptors, id) {
			return nil, refuse("decryptor %s appears twice", id)
		}
		c, err := cert(id, "decryptor")
		if err != nil {
			return nil, err
		}
		p, err := protocol.OpenKeySwitchPayload(c.PublicKey, d.GetShare(), qid, epoch, id, w)
		if err != nil {
			return nil, refuse("the key-switch share of %s does not verify: %v", id, err)
		}
		switch {
		case !bytes.Equal(p.GetCommitDigest(), commitDigest):
			return nil, refuse("the key-switch share of %s is of another partial set", id)
		case !bytes.Equal(p.GetSumDigest(), sumDigest):
			return nil, refuse("the key-switch share of %s is of another sum", id)
		case !bytes.Equal(p.GetTargetKeyDigest(), targetDigest):
			return nil, refuse("the key-switch share of %s is to another target key", id)
		case len(p.GetShares()) != len(sum):
			return nil, refuse("the key-switch share of %s has %d shares for %d ciphertexts", id, len(p.GetShares()), len(sum))
		}
		decryptors = append(decryptors, id)
		shares = append(shares, p.GetShares())
	}
	if t < 1 || len(decryptors) < t {
		return nil, refuse("%d decryptor shares, the epoch's threshold is %d", len(decryptors), t)
	}
	switched, err := collective.KeySwitchCombineAll(params, sum, shares)
	if err != nil {
		return nil, refuse("combining the key-switch shares: %v", err)
	}
	v := &Verdict{QueryID: qid, Epoch: epoch, Senders: sorted(senders), Decryptors: sorted(decryptors), Threshold: t}
	// The plan the senders noised and encoded for (their catalogue and
	// version), which the totals must be decoded with.
	planFP := ""
	for i, id := range senders {
		fp := commits[id].GetPlanFingerprint()
		switch {
		case i == 0:
			planFP = fp
		case fp != planFP:
			return nil, refuse("the senders committed to different plans of the query (%s and %s): they planned with different catalogues", senders[0], id)
		}
	}

	// 6. and 7. Decrypt with the revealed key, decode, compare.
	p, err := releasedPlan(rec, o, cat)
	if err != nil {
		return nil, err
	}
	if planFP != "" {
		if got := p.Fingerprint(); got != planFP {
			return nil, fmt.Errorf("%w: the nodes planned query %s with another catalogue than this check's (plan fingerprint %.12s, this check's %.12s): "+
				"the totals cannot be decoded here; give the network's catalogue", ErrCatalogue, qid, planFP, got)
		}
		v.PlanBound = true
	}
	// The range proofs, which need no key: every sender's committed
	// values are within the plan's bounds.
	proven, err := checkRangeProofs(rec, commits, p)
	if err != nil {
		return nil, err
	}
	v.RangesProven = proven
	withheld := Disclosable(p, o.Released)
	if len(rec.GetResultKey()) == 0 {
		if withheld == nil {
			return nil, refuse("the result key is withheld, but every decrypted total was released (%s)", rec.GetResultKeyWithheld())
		}
		v.Withheld = withheld.Error()
		return v, nil
	}
	rk, err := homomorphic.UnmarshalResultKey(params, rec.GetResultKey())
	if err != nil {
		return nil, refuse("the result key does not decode: %v", err)
	}
	pub, err := rk.Public().MarshalBinary()
	if err != nil || !bytes.Equal(pub, rec.GetTargetPublicKey()) {
		return nil, refuse("the revealed result key is not the pair of the target key the decryptors switched to")
	}
	if err := homomorphic.CheckResultKey(params, rk); err != nil {
		return nil, refuse("the revealed result key: %v", err)
	}
	// The sum carries the values, then the limbs of their range
	// commitments' blindings (the record does not keep the commitments,
	// which the coordinator checked the total against before it released).
	encoded, err := homomorphic.DecryptTotal(params, rk, switched, rangeproof.EncodedLen(p.VectorLen()))
	if err != nil {
		return nil, refuse("decrypting the switched sum: %v", err)
	}
	totals := encoded[:p.VectorLen()]
	// The totals must be the sum of the values every sender committed to
	// (proven in range above when RangesProven).
	var coms [][]byte
	for _, id := range senders {
		if c := commits[id].GetRangeCommitments(); len(c) > 0 {
			coms = append(coms, c)
		}
	}
	switch len(coms) {
	case 0:
	case len(senders):
		if _, err := rangeproof.CheckTotal(coms, encoded, p.VectorLen()); err != nil {
			return nil, refuse("the decrypted totals are not the sum of the values the senders committed to: %v", err)
		}
		v.RangesChecked = true
	default:
		return nil, refuse("%d of the %d senders signed range commitments: all or none must", len(coms), len(senders))
	}
	r, err := dp.Release(p, totals, len(senders))
	if err != nil {
		return nil, refuse("decoding the decrypted totals: %v", err)
	}
	if err := sameValues(resultpb.ToProto(r), o.Released); err != nil {
		return nil, refuse("the released result is not the decryption of the committed sum: %v", err)
	}
	v.Decrypted = true
	return v, nil
}

// checkLinked checks the record of a query across linked agencies from
// step 3 on (the certificates and the participants' signed partial headers
// are checked): every participant committed to exactly this set; at least
// T distinct stages of the query signed a statement of this set, spec and
// plan whose result is the released one. An honest stage signs only what
// it tallied (and decrypted) from outputs whose proofs of a correct mix,
// and finish and decryption shares whose proofs, it checked; so with at
// most T-1 colluders the result is that of the committed partials.
func checkLinked(rec *coordinatorv1.ReleaseRecord, o Options, cat *plan.Catalogue, certs map[string]*x509.Certificate, senders []string, w protocol.Window) (*Verdict, error) {
	qid, epoch, spec := rec.GetQueryId(), rec.GetEpoch(), rec.GetSpec()
	commitDigest := protocol.CommitDigest(qid, epoch, spec, nodeSigned(rec))
	for _, s := range rec.GetSenders() {
		id := s.GetNodeId()
		// A participant's commitment to the set it revealed in (Reveal).
		d, err := protocol.OpenCommit(certs[id].PublicKey, s.GetCommitment(), qid, epoch, id, w)
		if err != nil {
			return nil, refuse("the commitment of %s does not verify: %v", id, err)
		}
		if !bytes.Equal(d, commitDigest) {
			return nil, refuse("%s committed to another set of partials than the record's", id)
		}
	}
	p, err := releasedPlan(rec, o, cat)
	if err != nil {
		return nil, err
	}
	if p.Link == nil {
		return nil, refuse("the record has stages' statements, but the spec is not a query across linked agencies")
	}
	t := int(spec.GetThreshold())
	specDigest := protocol.SpecDigest(spec)
	var signers, stages []string
	planFP := ""
	for i, ls := range rec.GetLinkStatements() {
		id := ls.GetNodeId()
		if slices.Contains(signers, id) {
			return nil, refuse("stage %s signed twice", id)
		}
		c := certs[id]
		if c == nil {
			return nil, refuse("no certificate of the network CA for stage %s", id)
		}
		st, err := protocol.OpenLinkRelease(c.PublicKey, ls.GetStatement(), qid, epoch, id, w)
		if err != nil {
			return nil, refuse("the statement of %s does not verify: %v", id, err)
		}
		switch {
		case i == 0:
			stages, planFP = st.GetStages(), st.GetPlanFingerprint()
		case !slices.Equal(st.GetStages(), stages) || st.GetPlanFingerprint() != planFP:
			return nil, refuse("the statements of %s and %s name other stages or plans", signers[0], id)
		}
		switch {
		case !slices.Contains(st.GetStages(), id):
			return nil, refuse("%s signed a statement, but is not among its stages %v", id, st.GetStages())
		case !bytes.Equal(st.GetSpecDigest(), specDigest):
			return nil, refuse("the statement of %s is of another query spec", id)
		case !bytes.Equal(st.GetCommitDigest(), commitDigest):
			return nil, refuse("the statement of %s is of another set of partials than the record's", id)
		case int(st.GetParticipants()) != len(senders):
			return nil, refuse("the statement of %s counts %d participants, the record has %d", id, st.GetParticipants(), len(senders))
		}
		if err := sameValues(st.GetResult(), o.Released); err != nil {
			return nil, refuse("the released result is not the one %s signed: %v", id, err)
		}
		signers = append(signers, id)
	}
	if t < 1 || len(signers) < t || len(stages) != t {
		return nil, refuse("%d stages signed the release (of %d stages), the epoch's threshold is %d", len(signers), len(stages), t)
	}
	if got := p.Fingerprint(); got != planFP {
		return nil, fmt.Errorf("%w: the stages planned query %s with another catalogue than this check's (plan fingerprint %.12s, this check's %.12s): "+
			"the release cannot be checked here; give the network's catalogue", ErrCatalogue, qid, planFP, got)
	}
	return &Verdict{QueryID: qid, Epoch: epoch, Senders: sorted(senders), Decryptors: sorted(signers), Threshold: t, PlanBound: true, Linked: true}, nil
}

// releasedPlan checks that the record's result is the one released to the
// analyst and plans the record's spec with cat (a spec it cannot plan is
// ErrCatalogue: nothing can be checked here).
func releasedPlan(rec *coordinatorv1.ReleaseRecord, o Options, cat *plan.Catalogue) (*plan.Plan, error) {
	if !proto.Equal(rec.GetResult(), o.Released) {
		return nil, refuse("the record's result is not the result released to you")
	}
	preq, err := protocol.PlanRequest(rec.GetSpec())
	if err != nil {
		return nil, refuse("the spec does not plan: %v", err)
	}
	p, err := plan.Build(preq, cat)
	if err != nil {
		return nil, fmt.Errorf("%w: the spec does not plan with this catalogue (%v): the release cannot be checked here; give the network's catalogue", ErrCatalogue, err)
	}
	return p, nil
}

// sameValues compares the numbers of two results cell by cell (display
// names and the suppression of small counts in a series aside).
func sameValues(want, got *typesv1.Result) error {
	if len(want.GetRows()) != len(got.GetRows()) {
		return fmt.Errorf("%d rows, the decryption has %d", len(got.GetRows()), len(want.GetRows()))
	}
	for i, wr := range want.GetRows() {
		gr := got.GetRows()[i]
		if !slices.Equal(wr.GetKeys(), gr.GetKeys()) || len(wr.GetValues()) != len(gr.GetValues()) {
			return fmt.Errorf("row %d differs in its keys or columns", i)
		}
		for j, wv := range wr.GetValues() {
			gv := gr.GetValues()[j]
			if gv.GetSuppressed() {
				continue
			}
			if !same(wv.GetValue(), gv.GetValue()) {
				return fmt.Errorf("row %d (%v), column %d: released %v, decrypted %v", i, wr.GetKeys(), j, gv.GetValue(), wv.GetValue())
			}
		}
	}
	return nil
}

func same(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b))
}

// Disclosable says whether the result key of a release of p may be revealed
// to the analyst who received r: nil when every slot of the decrypted
// totals is determined by r (no value suppressed, every measure released as
// a count or a sum of its own, no count rounded from a finer grid);
// otherwise an error saying what would be disclosed beyond r.
func Disclosable(p *plan.Plan, r *typesv1.Result) error {
	for _, row := range r.GetRows() {
		for _, n := range row.GetValues() {
			if n.GetSuppressed() {
				return errors.New("the result has suppressed small counts, which the decrypted totals hold")
			}
		}
	}
	direct := map[int]bool{}
	for _, o := range p.Outputs() {
		switch o.Kind {
		case plan.OutCount:
			direct[o.Count] = true
		case plan.OutSum:
			direct[o.Sum] = true
		}
	}
	for i, m := range p.Measures() {
		count := m.Kind == plan.CountRows || m.Kind == plan.CountDistinct || m.Kind == plan.CountValues
		switch {
		case !direct[i]:
			return fmt.Errorf("the totals of %s are not released on their own (a mean or variance is built from them)", m.Label)
		case count && m.Scale != 1:
			return fmt.Errorf("the totals of %s are on a finer grid than the released, rounded counts", m.Label)
		}
	}
	if p.Link != nil {
		return errors.New("a query across linked agencies is not released by one key switch")
	}
	return nil
}

// nodeSigned lists the record's partials as the commit digest takes them.
func nodeSigned(rec *coordinatorv1.ReleaseRecord) []*nodev1.NodeSigned {
	out := make([]*nodev1.NodeSigned, len(rec.GetSenders()))
	for i, s := range rec.GetSenders() {
		out[i] = &nodev1.NodeSigned{NodeId: s.GetNodeId(), Signed: s.GetPartial()}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// checkRangeProofs verifies the range proofs the record carries against
// the range commitments each sender signed, the plan's bounds and the
// context of its partial (protocol.RangeProofItem), all at once. It is
// true when every sender's proof verifies; a proof that does not verify
// refuses the record naming its sender; a sender without one (policy
// skip_range_proofs, or a record older than the proofs) leaves it false.
func checkRangeProofs(rec *coordinatorv1.ReleaseRecord, commits map[string]*nodev1.ReleaseCommitment, p *plan.Plan) (bool, error) {
	ranges := protocol.PartialRanges(p)
	digest := protocol.SpecDigest(rec.GetSpec())
	var items []rangeproof.Item
	var from []string
	for _, s := range rec.GetSenders() {
		id := s.GetNodeId()
		if len(s.GetRangeProof()) == 0 {
			continue
		}
		coms := commits[id].GetRangeCommitments()
		if len(coms) == 0 {
			return false, refuse("%s has a range proof in the record but signed no range commitments", id)
		}
		items = append(items, rangeproof.Item{Commitments: coms, Ranges: ranges, Context: protocol.EncryptionContext(rec.GetQueryId(), rec.GetEpoch(), id, digest), Proof: s.GetRangeProof()})
		from = append(from, id)
	}
	var failed []string
	for i, err := range rangeproof.VerifyAll(items) {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", from[i], err))
		}
	}
	if len(failed) > 0 {
		return false, refuse("the range proof of %s does not verify against the range commitments it signed: its values are not proven within the plan's bounds", strings.Join(failed, ", "))
	}
	return len(items) > 0 && len(items) == len(rec.GetSenders()), nil
}
