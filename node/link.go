package node

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/resultpb"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// A node's side of a query across linked agencies (plan.LinkPlan; the
// protocol is in docs/linkage.md). Evaluate answers such a query with a
// link partial (linkPartial): the node's residents of the outer table per
// cell and of each filter, hashed to the group and encrypted under the
// epoch's linkage key, with dummies of every multiplicity pattern and
// identity padding, so that nothing it sends says which of its residents
// are where. LinkStage mixes (linkStage), LinkDecrypt decrypts payload sums
// (linkDecrypt).

// LinkSource is a DataSource that can answer queries across linked
// agencies: Link lists the node's residents of the plan's outer table per
// cell (with their payload) and of each filter (eval.LinkElements).
type LinkSource interface {
	Link(ctx context.Context, p *plan.Plan) (*eval.LinkLocal, error)
}

// Link implements LinkSource on the current tables.
func (f TablesFunc) Link(ctx context.Context, p *plan.Plan) (*eval.LinkLocal, error) {
	return eval.LinkElements(ctx, p, f())
}

// linkDomain is the hash domain of shared identifiers: the network's
// identifier system. A patient without one hashes in a domain of its own
// node, so that it never matches another node's resident.
func linkDomain(p *plan.Plan) string { return "fedstat/link/v1|" + p.Link.IdentifierSystem }

func localDomain(p *plan.Plan, node string) string { return linkDomain(p) + "|local|" + node }

// checkLinkSpec checks the link part of an evaluate request against the
// plan and the epoch: participants, stages and holders are distinct
// members, this node is a participant, the stages are T of them, and the
// holders the spec counts for the payload's sensitivity are the outer
// holders listed.
func checkLinkSpec(e *epochState, self string, p *plan.Plan, l *nodev1.LinkSpec, spec *typesv1.QuerySpec) error {
	if l == nil {
		return fmt.Errorf("%w: a query across linked agencies needs its link spec (participants, holders, stages)", ErrBadRequest)
	}
	distinctMembers := func(what string, ids []string) error {
		seen := map[string]bool{}
		for _, id := range ids {
			if _, ok := e.member(id); !ok || seen[id] {
				return fmt.Errorf("%w: link spec: %s %q is not a member of epoch %d or is repeated", ErrBadRequest, what, id, e.Epoch)
			}
			seen[id] = true
		}
		return nil
	}
	if err := distinctMembers("participant", l.GetParticipants()); err != nil {
		return err
	}
	if !slices.Contains(l.GetParticipants(), self) {
		return fmt.Errorf("%w: link spec: %s is not among the participants", ErrBadRequest, self)
	}
	if len(l.GetParticipants()) < int(spec.GetMinNodes()) {
		return fmt.Errorf("%w: link spec: %d participants, min_nodes is %d", ErrBadRequest, len(l.GetParticipants()), spec.GetMinNodes())
	}
	in := func(what string, ids []string) error {
		if err := distinctMembers(what, ids); err != nil {
			return err
		}
		for _, id := range ids {
			if !slices.Contains(l.GetParticipants(), id) {
				return fmt.Errorf("%w: link spec: %s %s is not a participant", ErrBadRequest, what, id)
			}
		}
		return nil
	}
	if err := in("stage", l.GetStages()); err != nil {
		return err
	}
	for _, id := range l.GetStages() {
		if !e.onCommittee(id) {
			return fmt.Errorf("%w: link spec: stage %s is not on the decryption committee of epoch %d", ErrBadRequest, id, e.Epoch)
		}
	}
	if len(l.GetStages()) != linkStages(e) {
		return fmt.Errorf("%w: link spec: %d stages, epoch %d needs %d", ErrBadRequest, len(l.GetStages()), e.Epoch, linkStages(e))
	}
	if err := in("outer holder", l.GetOuterHolders()); err != nil {
		return err
	}
	if len(l.GetFilterHolders()) != len(p.Link.Filters) {
		return fmt.Errorf("%w: link spec: holders for %d filters, the query has %d", ErrBadRequest, len(l.GetFilterHolders()), len(p.Link.Filters))
	}
	for i, h := range l.GetFilterHolders() {
		if err := in(fmt.Sprintf("holder of filter %d", i+1), h.GetNodeIds()); err != nil {
			return err
		}
	}
	if int(spec.GetLinkHolders()) < max(1, len(l.GetOuterHolders())) {
		return fmt.Errorf("%w: link spec: the spec counts %d holders of %s for the sensitivity, the link spec lists %d",
			ErrBadRequest, spec.GetLinkHolders(), p.Link.Outer, len(l.GetOuterHolders()))
	}
	return nil
}

// linkStages is the number of mix stages of epoch e: its threshold (every
// committee member when T = K), so that T-1 colluding members never hold every
// stage's secret exponent and permutation.
func linkStages(e *epochState) int { return min(e.Threshold, len(e.committee())) }

// linkPartial evaluates a linked query on the local data and returns the
// signed link partial (stored by the ledger with the debit, like a
// partial, so a re-delivered request gets the same lists and never a fresh
// draw of dummies).
func (n *Node) linkPartial(ctx context.Context, e *epochState, queryID string, spec *typesv1.QuerySpec, ls *nodev1.LinkSpec, p *plan.Plan) ([]byte, error) {
	if e.Link == nil {
		return nil, fmt.Errorf("%w: key epoch %d has no linkage key (it was made by an older version); the operator must run a new key ceremony (fedstat admin rekey)", ErrBadRequest, e.Epoch)
	}
	src, ok := n.cfg.Data.(LinkSource)
	if !ok {
		return nil, fmt.Errorf("%w: this node's data source (%T) cannot answer queries across linked agencies", ErrPolicy, n.cfg.Data)
	}
	local, err := src.Link(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := checkHolder(n.id, p, ls, local); err != nil {
		return nil, err
	}
	if rho := n.cfg.Policy.cohortRho(p); rho > 0 && local.Outer != nil {
		// The minimum cohort, on this node's outer residents: decided on a
		// noisy count (σ = G/√(2ρ), charged with the query) as for a
		// partial, and stored as a refusal.
		var count float64
		for _, c := range local.Outer {
			count += float64(len(c))
		}
		sigma := float64(p.MaxGroupsPerPatient()) / math.Sqrt(2*rho)
		z, err := dp.IntGaussian(sigma, 1)
		if err != nil {
			return nil, err
		}
		if count+float64(z[0]) < float64(n.cfg.Policy.MinCohort) {
			return []byte(fmt.Sprintf("%sthe cohort at %s is below its minimum of %d (decided on a noisy count, sd %.3g; the check is charged)",
				refusalPrefix, n.id, n.cfg.Policy.MinCohort, sigma)), nil
		}
	}
	plain, err := linkLists(n.id, p, ls, local, linkage.RandomPoint)
	if err != nil {
		return nil, err
	}
	out, err := plain.encrypt(e.Link.X)
	if err != nil {
		return nil, err
	}
	payload := &nodev1.PartialPayload{SpecDigest: protocol.SpecDigest(spec), Link: out}
	signed, err := protocol.SealPartial(n.cfg.Identity.Key, queryID, e.Epoch, n.id, payload, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	return proto.Marshal(signed)
}

// checkHolder checks that the link spec lists this node as a holder of
// every table of the query it holds rows of: a node left out would have
// its residents missed and the patterns' bounds understated.
func checkHolder(self string, p *plan.Plan, ls *nodev1.LinkSpec, local *eval.LinkLocal) error {
	if hasEntries(local.Outer) && !slices.Contains(ls.GetOuterHolders(), self) {
		return fmt.Errorf("%w: %s holds rows of %s but the coordinator did not list it as a holder; its residents would be missed and the sensitivity understated",
			ErrBadRequest, self, p.Link.Outer)
	}
	for i, f := range local.Filters {
		if len(f) > 0 && !slices.Contains(ls.GetFilterHolders()[i].GetNodeIds(), self) {
			return fmt.Errorf("%w: %s holds rows of %s but the coordinator did not list it as a holder",
				ErrBadRequest, self, p.Link.Filters[i].Table)
		}
	}
	return nil
}

// linkPlain is a node's link partial before encryption: per list (in
// protocol.LinkShape order) the group elements (H of each resident, the
// dummies, the identity padding; shuffled) and, on the outer lists of a
// payload query, each element's value on the payload grid; and this node's
// noise share of each cell's payload sum.
type linkPlain struct {
	roles int
	pts   [][]linkage.Point
	vals  [][]int64
	noise []int64
}

// linkLists builds this node's lists of a linked query from its local part
// (eval.LinkElements): its residents hashed to the group (node's own hash
// domain for an unshared key), then, in every cell and for every
// non-empty multiplicity pattern (a, b) of lp, the public shift plus this
// node's integer Gaussian noise of dummies, each a fresh element (from
// newPoint) put a times in the outer list and b_i times in filter i's, then
// the identity padding of each list, then a shuffle of each list. The
// privacy audit (link_audit_test.go) runs it as the node does.
func linkLists(self string, p *plan.Plan, ls *nodev1.LinkSpec, local *eval.LinkLocal, newPoint func() linkage.Point) (*linkPlain, error) {
	shape := protocol.LinkShape{Cells: p.Cells(), Filters: len(p.Link.Filters), Payload: p.Link.Payload}
	lp := protocol.LinkPatternsOf(p, ls)
	cells, roles := p.Cells(), 1+len(p.Link.Filters)
	out := &linkPlain{roles: roles, pts: make([][]linkage.Point, shape.Lists())}
	if p.Link.Payload {
		out.vals = make([][]int64, shape.Lists())
	}
	scale := 1.0
	if p.Link.Payload {
		scale = p.Measures()[1].Scale
	}
	hash := func(k eval.LinkKey) linkage.Point {
		if k.Shared {
			return linkage.HashIdentifier(linkDomain(p), k.Key)
		}
		return linkage.HashIdentifier(localDomain(p, self), k.Key)
	}
	for c, entries := range local.Outer {
		i := shape.ListIndex(0, c)
		for _, en := range entries {
			out.pts[i] = append(out.pts[i], hash(en.LinkKey))
			if out.vals != nil {
				out.vals[i] = append(out.vals[i], int64(math.Round(en.Value*scale)))
			}
		}
	}
	for f, keys := range local.Filters {
		hashed := make([]linkage.Point, len(keys))
		for j, k := range keys {
			hashed[j] = hash(k)
		}
		for c := 0; c < cells; c++ {
			i := shape.ListIndex(f+1, c)
			out.pts[i] = append(out.pts[i], hashed...)
		}
	}
	shift := protocol.LinkShift(p)
	noise, err := dp.LinkDummies(p, cells*(lp.Count()-1))
	if err != nil {
		return nil, err
	}
	for c := 0; c < cells; c++ {
		for pat := 1; pat < lp.Count(); pat++ {
			count := max(0, shift+noise[c*(lp.Count()-1)+pat-1])
			a, b := lp.Pattern(pat)
			for range count {
				d := newPoint()
				i := shape.ListIndex(0, c)
				for range a {
					out.pts[i] = append(out.pts[i], d)
					if out.vals != nil {
						out.vals[i] = append(out.vals[i], 0)
					}
				}
				for f, bf := range b {
					i := shape.ListIndex(f+1, c)
					for range bf {
						out.pts[i] = append(out.pts[i], d)
					}
				}
			}
		}
	}
	pads, err := dp.LinkPadding(p, shape.Lists())
	if err != nil {
		return nil, err
	}
	padShift := protocol.LinkPadShift(p)
	for i := range out.pts {
		for range max(0, padShift+pads[i]) {
			out.pts[i] = append(out.pts[i], linkage.Point{})
			if out.vals != nil && i%roles == 0 {
				out.vals[i] = append(out.vals[i], 0)
			}
		}
	}
	for i := range out.pts {
		var v []int64
		if out.vals != nil && i%roles == 0 {
			v = out.vals[i]
		}
		shuffleLinked(out.pts[i], v)
	}
	if p.Link.Payload {
		if out.noise, err = dp.LinkPayloadNoise(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// encrypt encrypts the lists under the linkage key x: what leaves the node.
func (l *linkPlain) encrypt(x linkage.Point) (*nodev1.LinkPartial, error) {
	out := &nodev1.LinkPartial{}
	for i, pts := range l.pts {
		nl := &nodev1.LinkList{Cell: int32(i / l.roles), Role: int32(i % l.roles)}
		cts, err := linkage.EncryptPoints(x, pts)
		if err != nil {
			return nil, err
		}
		nl.Pseudonyms = protocol.JoinCiphertexts(cts)
		if l.vals != nil && i%l.roles == 0 {
			vcts, err := linkage.EncryptValues(x, l.vals[i])
			if err != nil {
				return nil, err
			}
			nl.Payloads = protocol.JoinCiphertexts(vcts)
		}
		out.Lists = append(out.Lists, nl)
	}
	if l.noise != nil {
		vcts, err := linkage.EncryptValues(x, l.noise)
		if err != nil {
			return nil, err
		}
		for _, ct := range vcts {
			out.Noise = append(out.Noise, ct[:])
		}
	}
	return out, nil
}

func hasEntries(o [][]eval.LinkEntry) bool {
	for _, c := range o {
		if len(c) > 0 {
			return true
		}
	}
	return false
}

// shuffleLinked permutes pts (and vals with it, when not nil) uniformly at
// random, from a ChaCha8 stream keyed by crypto/rand.
func shuffleLinked(pts []linkage.Point, vals []int64) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(err)
	}
	r := rand.New(rand.NewChaCha8(seed))
	r.Shuffle(len(pts), func(i, j int) {
		pts[i], pts[j] = pts[j], pts[i]
		if vals != nil {
			vals[i], vals[j] = vals[j], vals[i]
		}
	})
}

// linkRequest is what a LinkStage or LinkDecrypt call is about, checked.
type linkRequest struct {
	e      *epochState
	p      *plan.Plan
	shape  protocol.LinkShape
	points []uint64 // Shamir points of the stages (or decryptors), in order
}

// openLinkRequest checks the query of a LinkStage or LinkDecrypt call: the
// epoch, the plan of the spec (a linked plan), the link spec, and that this
// node is among set (the stages or the decryptors), which must be T
// distinct members.
func (n *Node) openLinkRequest(ctx context.Context, call, queryID string, epoch uint64, spec *typesv1.QuerySpec, ls *nodev1.LinkSpec, set []string) (*linkRequest, error) {
	e, err := n.releaseEpoch(ctx, call, queryID, epoch)
	if err != nil {
		return nil, err
	}
	if e.Link == nil {
		return nil, fmt.Errorf("%w: key epoch %d has no linkage key", ErrBadRequest, e.Epoch)
	}
	preq, err := planRequest(spec)
	if err != nil {
		return nil, err
	}
	p, err := plan.Build(preq, n.cfg.Catalogue)
	if err != nil {
		return nil, err
	}
	if p.Link == nil {
		return nil, fmt.Errorf("%w: %s of %s: not a query across linked agencies", ErrBadRequest, call, queryID)
	}
	// Stages and decryptors are participants (the coordinator picks
	// them among the nodes that sent a partial).
	if err := checkLinkSpec(e, n.id, p, ls, spec); err != nil {
		return nil, err
	}
	points, err := checkDecryptors(e, n.id, set)
	if err != nil {
		return nil, err
	}
	return &linkRequest{e: e, p: p, shape: protocol.LinkShapeOf(spec, p), points: points}, nil
}

// staged remembers the queries this node has mixed, per stage, so that it
// mixes each stage of a query once (a second output of one stage under
// another exponent would be a second partial decryption of the same lists).
type stagedSet struct {
	mu   sync.Mutex
	done map[string]bool
}

func (s *stagedSet) claim(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = map[string]bool{}
	}
	if s.done[key] {
		return false
	}
	s.done[key] = true
	return true
}

// checkLinkSet checks the partials the first mix stage is given: one per
// participant, and every participant's commitment to exactly this set
// (RevealResponse.commit), so that no link partial of it was made after
// another was revealed (threat-model.md, "Members are semi-honest").
func (n *Node) checkLinkSet(e *epochState, qid string, spec *typesv1.QuerySpec, participants []string, partials, commits []*nodev1.NodeSigned) ([]byte, error) {
	want := map[string]bool{}
	for _, id := range participants {
		want[id] = true
	}
	got := map[string]bool{}
	for _, p := range partials {
		got[p.GetNodeId()] = true
	}
	if len(partials) != len(want) || len(got) != len(want) {
		return nil, fmt.Errorf("%w: link stage of %s: %d partials for %d participants", ErrBadRequest, qid, len(partials), len(want))
	}
	digest := protocol.CommitDigest(qid, e.Epoch, spec, partials)
	if err := n.checkCommits(e, qid, digest, want, commits); err != nil {
		return nil, fmt.Errorf("link stage of %s: %w", qid, err)
	}
	return digest, nil
}

// linkStage runs this node's stage of the mix of a linked query.
func (n *Node) linkStage(ctx context.Context, req *nodev1.LinkStageRequest) (*nodev1.LinkStageResponse, error) {
	qid := req.GetQueryId()
	ls := req.GetLink()
	stages := ls.GetStages()
	k := int(req.GetStage())
	if k < 0 || k >= len(stages) || stages[k] != n.id {
		return nil, fmt.Errorf("%w: stage %d of %s is not this node's (stages %v)", ErrBadRequest, k, qid, stages)
	}
	r, err := n.openLinkRequest(ctx, "link stage", qid, req.GetEpoch(), req.GetSpec(), ls, stages)
	if err != nil {
		return nil, err
	}
	// The input of stage 0 (the participants' partials, each checked,
	// merged in the participants' order), then every earlier stage's
	// output, each checked against its proof: a stage mixes only what is a
	// proven mix of the partials, so that no earlier stage can have
	// dropped, added, copied or changed an element (docs/linkage.md).
	lists, noise, commit, err := n.linkInput(r, req)
	if err != nil {
		return nil, err
	}
	outputs := append(append([]*nodev1.NodeSigned(nil), req.GetEarlier()...), req.GetPrevious())
	if k == 0 {
		outputs = nil
	} else if len(outputs) != k {
		return nil, fmt.Errorf("%w: link stage %d of %s: %d earlier outputs, want %d", ErrBadRequest, k, qid, len(outputs), k)
	}
	step := fmt.Sprintf("link stage %d of %s", k, qid)
	for i, prev := range outputs {
		out, err := n.checkStageOutput(ctx, r, step, qid, stages, i, prev, commit, lists, noise)
		if err != nil {
			return nil, err
		}
		lists, noise = out.GetLists(), out.GetNoise()
	}
	if !n.staged.claim(fmt.Sprintf("%s/%d", qid, k)) {
		return nil, fmt.Errorf("%w: stage %d of %s was mixed by this node already", ErrReplayed, k, qid)
	}
	// The first stage keeps its share of the key back: the last stage's
	// output is then still encrypted under it, and it takes it off later
	// from the C1 components alone (linkFinish), so that no stage holds a
	// finished pseudonym while the lists are mixed (the stages finish them
	// at release, checkLinkEvidence, after every stage has mixed).
	var w linkage.Scalar
	if k > 0 {
		if w, err = n.linkWeight(r.e, r.points); err != nil {
			return nil, err
		}
	}
	roles := 1 + r.shape.Filters
	var stageKeys, stageProofs [][]byte
	for c := 0; c < r.shape.Cells; c++ {
		// One exponent per cell: a cell's lists must meet under the same
		// one, and no two cells' pseudonyms of one resident are equal.
		key := linkage.RandomScalar()
		group := make([][]linkage.Ciphertext, roles)
		var payloads [][]linkage.ValueCiphertext
		if r.shape.Payload {
			payloads = make([][]linkage.ValueCiphertext, roles)
		}
		for role := range roles {
			l := lists[r.shape.ListIndex(role, c)]
			group[role] = protocol.SplitCiphertexts[linkage.Ciphertext](l.GetPseudonyms())
			if r.shape.Payload && role == 0 {
				payloads[role] = protocol.SplitCiphertexts[linkage.ValueCiphertext](l.GetPayloads())
			}
		}
		keys, proofs, err := linkage.StageProved(key, w, r.e.Link.X, group, payloads, protocol.LinkStageContext(qid, r.e.Epoch, n.id, k, c))
		if err != nil {
			return nil, fmt.Errorf("%w: link stage %d of %s, cell %d: %v", ErrBadRequest, k, qid, c, err)
		}
		stageKeys = append(stageKeys, protocol.StageKeysBytes(keys))
		for _, p := range proofs {
			stageProofs = append(stageProofs, p.MarshalBinary())
		}
		for role := range roles {
			i := r.shape.ListIndex(role, c)
			nl := &nodev1.LinkList{Cell: int32(c), Role: int32(role), Pseudonyms: protocol.JoinCiphertexts(group[role])}
			if payloads != nil && payloads[role] != nil {
				nl.Payloads = protocol.JoinCiphertexts(payloads[role])
			}
			lists[i] = nl
		}
	}
	out := &nodev1.LinkStagePayload{Stage: uint32(k), Stages: stages, Lists: lists, Noise: noise, SpecDigest: r.shape.SpecDigest,
		StageKeys: stageKeys, Proofs: stageProofs, CommitDigest: commit}
	signed, err := protocol.SealLinkStage(n.cfg.Identity.Key, qid, r.e.Epoch, n.id, out, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	n.record(ctx, "coordinator", "link.stage", qid, map[string]any{"stage": k, "lists": len(lists)})
	return &nodev1.LinkStageResponse{Output: signed}, nil
}

// openStageOutput opens o, the signed output of stage i of query qid,
// which must be from stages[i]; step names the call in the error.
func (n *Node) openStageOutput(r *linkRequest, step, qid string, stages []string, i int, o *nodev1.NodeSigned) (*nodev1.LinkStagePayload, error) {
	if o.GetNodeId() != stages[i] {
		return nil, fmt.Errorf("%w: %s: output %d is from %s, not stage %d (%s)", ErrBadRequest, step, i, o.GetNodeId(), i, stages[i])
	}
	m, _ := r.e.member(stages[i])
	out, err := protocol.OpenLinkStage(m.Cert.PublicKey, o.GetSigned(), qid, r.e.Epoch, stages[i], n.window(nil), r.shape, i, stages)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: output of stage %d (%s): %v", ErrBadRequest, step, i, stages[i], err)
	}
	return out, nil
}

// checkStageOutput opens the output of stage i (openStageOutput) and
// checks its proof of a correct mix of its input (lists and noise, from the
// partial set of commit). A stage whose proof fails is named in the error
// and in the audit log (link.stage_proof_failed).
func (n *Node) checkStageOutput(ctx context.Context, r *linkRequest, step, qid string, stages []string, i int, o *nodev1.NodeSigned, commit []byte, lists []*nodev1.LinkList, noise [][]byte) (*nodev1.LinkStagePayload, error) {
	out, err := n.openStageOutput(r, step, qid, stages, i, o)
	if err != nil {
		return nil, err
	}
	if err := protocol.CheckLinkStage(r.e.Link, r.points, r.points[i], qid, r.e.Epoch, stages[i], i, r.shape, commit, lists, noise, out); err != nil {
		n.record(ctx, "coordinator", "link.stage_proof_failed", qid, map[string]any{"stage": i, "node": stages[i], "error": err.Error()})
		return nil, fmt.Errorf("%s: the output of stage %d (%s) refused: %w", step, i, stages[i], err)
	}
	return out, nil
}

// linkInput checks the participants' partials of a stage request (every
// participant's, each with its commitment to exactly this set) and merges
// them in the participants' order: the input of stage 0. It returns the
// set's commit digest too.
func (n *Node) linkInput(r *linkRequest, req *nodev1.LinkStageRequest) ([]*nodev1.LinkList, [][]byte, []byte, error) {
	qid, ls := req.GetQueryId(), req.GetLink()
	got := map[string]*typesv1.Signed{}
	for _, s := range req.GetPartials() {
		got[s.GetNodeId()] = s.GetSigned()
	}
	commit, err := n.checkLinkSet(r.e, qid, req.GetSpec(), ls.GetParticipants(), req.GetPartials(), req.GetCommits())
	if err != nil {
		return nil, nil, nil, err
	}
	parts := make([]*nodev1.LinkPartial, 0, len(ls.GetParticipants()))
	for _, id := range ls.GetParticipants() {
		s, ok := got[id]
		if !ok {
			return nil, nil, nil, fmt.Errorf("%w: link stage of %s: no partial from participant %s", ErrBadRequest, qid, id)
		}
		m, _ := r.e.member(id)
		w := n.window(nil)
		w.MaxSkew = protocol.PartialAge(req.GetSpec(), w.MaxSkew) // held while the query waited for approvals
		lp, err := protocol.OpenLinkPartial(m.Cert.PublicKey, s, qid, r.e.Epoch, id, w, r.shape)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: link stage of %s: partial of %s: %v", ErrBadRequest, qid, id, err)
		}
		parts = append(parts, lp)
	}
	lists, noise := protocol.MergeLinkPartials(r.shape, parts)
	return lists, noise, commit, nil
}

// linkWeight is this node's linkage-key share weighted by its Lagrange
// coefficient in the set of points (w = λ·s).
func (n *Node) linkWeight(e *epochState, points []uint64) (linkage.Scalar, error) {
	share, err := n.loadLinkShare(e)
	if err != nil {
		return linkage.Scalar{}, err
	}
	self, _ := e.member(n.id)
	return linkage.Weighted(share, points, self.Point)
}

// linkFinish takes the first stage's withheld share of the linkage key
// off the last stage's lists, given only their C1 components: this node
// sees no C2, hence no pseudonym. It proves that every share is w·C1
// (protocol.ProveLinkShares).
func (n *Node) linkFinish(ctx context.Context, req *nodev1.LinkFinishRequest) (*nodev1.LinkFinishResponse, error) {
	qid := req.GetQueryId()
	ls := req.GetLink()
	stages := ls.GetStages()
	if len(stages) == 0 || stages[0] != n.id {
		return nil, fmt.Errorf("%w: %s is not the first stage of %s (stages %v)", ErrBadRequest, n.id, qid, stages)
	}
	r, err := n.openLinkRequest(ctx, "link finish", qid, req.GetEpoch(), req.GetSpec(), ls, stages)
	if err != nil {
		return nil, err
	}
	if len(req.GetC1()) != r.shape.Lists() {
		return nil, fmt.Errorf("%w: link finish of %s: %d lists, the plan has %d", ErrBadRequest, qid, len(req.GetC1()), r.shape.Lists())
	}
	if !n.staged.claim(qid + "/finish") {
		return nil, fmt.Errorf("%w: %s was finished by this node already", ErrReplayed, qid)
	}
	w, err := n.linkWeight(r.e, r.points)
	if err != nil {
		return nil, err
	}
	resp := &nodev1.LinkFinishResponse{}
	var allC1, allShares []linkage.Point
	for i, b := range req.GetC1() {
		if len(b)%linkage.PointSize != 0 {
			return nil, fmt.Errorf("%w: link finish of %s: list %d: %d bytes", ErrBadRequest, qid, i, len(b))
		}
		c1s := make([]linkage.Point, len(b)/linkage.PointSize)
		for j := range c1s {
			copy(c1s[j][:], b[j*linkage.PointSize:])
		}
		sh, err := linkage.PartialDecrypt(w, c1s)
		if err != nil {
			return nil, fmt.Errorf("%w: link finish of %s: list %d: %v", ErrBadRequest, qid, i, err)
		}
		out := make([]byte, 0, len(sh)*linkage.PointSize)
		for _, p := range sh {
			out = append(out, p[:]...)
		}
		resp.Shares = append(resp.Shares, out)
		allC1, allShares = append(allC1, c1s...), append(allShares, sh...)
	}
	// One proof over every list that each share is w·C1: whoever finishes
	// the pseudonyms checks it against this node's public weighted key.
	if resp.Proof, err = protocol.ProveLinkShares(w, protocol.LinkStepFinish, qid, r.e.Epoch, n.id, allC1, allShares); err != nil {
		return nil, err
	}
	n.record(ctx, "coordinator", "link.finish", qid, map[string]any{"lists": len(resp.Shares)})
	return resp, nil
}

// linkDecrypt returns this node's decryption shares of the payload sums of
// a linked query, one per cell, with a proof that each is w·C1 of its sum
// (protocol.ProveLinkShares). Before it decrypts anything it recomputes
// every sum from the evidence the request carries (checkLinkEvidence) and refuses a
// request whose sums differ: a coordinator cannot have it decrypt one
// resident's payload, a pseudonym ciphertext or a sum without the nodes'
// noise in place of a cell's sum.
func (n *Node) linkDecrypt(ctx context.Context, req *nodev1.LinkDecryptRequest) (*nodev1.LinkDecryptResponse, error) {
	qid := req.GetQueryId()
	ls := req.GetLink()
	r, err := n.openLinkRequest(ctx, "link decrypt", qid, req.GetEpoch(), req.GetSpec(), ls, req.GetDecryptors())
	if err != nil {
		return nil, err
	}
	if !r.shape.Payload {
		return nil, fmt.Errorf("%w: %s has no payload to decrypt", ErrBadRequest, qid)
	}
	if len(req.GetSums()) != r.shape.Cells {
		return nil, fmt.Errorf("%w: link decrypt of %s: %d sums for %d cells", ErrBadRequest, qid, len(req.GetSums()), r.shape.Cells)
	}
	if !slices.Equal(req.GetDecryptors(), ls.GetStages()) {
		return nil, fmt.Errorf("%w: link decrypt of %s: the decryptors %v are not the stages %v", ErrBadRequest, qid, req.GetDecryptors(), ls.GetStages())
	}
	ev, err := n.checkLinkEvidence(ctx, r, qid, ls, req.GetOutputs(), req.GetFinish())
	if err != nil {
		return nil, err
	}
	sums := ev.sums
	if err := protocol.CheckLinkSums(req.GetSums(), sums); err != nil {
		n.record(ctx, "coordinator", "link.sum_refused", qid, map[string]any{"error": err.Error()})
		n.log.Warn("link decrypt refused: a sum is not its cell's", "query", qid, "err", err)
		return nil, fmt.Errorf("link decrypt of %s refused: %w", qid, err)
	}
	if !n.staged.claim(qid + "/decrypt") {
		return nil, fmt.Errorf("%w: the sums of %s were decrypted by this node already", ErrReplayed, qid)
	}
	w, err := n.linkWeight(r.e, r.points)
	if err != nil {
		return nil, err
	}
	resp := &nodev1.LinkDecryptResponse{}
	var c1s, shares []linkage.Point
	for _, ct := range sums {
		sh, err := linkage.DecryptShare(w, ct)
		if err != nil {
			return nil, err
		}
		resp.Shares = append(resp.Shares, sh[:])
		c1s, shares = append(c1s, linkage.Point(ct[:linkage.PointSize])), append(shares, sh)
	}
	if resp.Proof, err = protocol.ProveLinkShares(w, protocol.LinkStepDecrypt, qid, r.e.Epoch, n.id, c1s, shares); err != nil {
		return nil, err
	}
	n.record(ctx, "coordinator", "link.decrypt", qid, map[string]any{"cells": len(resp.Shares)})
	return resp, nil
}

// linkEvidence is what a stage checked of the evidence of a linked
// query's release (LinkDecrypt, LinkAttest) and computed from it.
// It keeps no list: it stays in memory (linkCheckedSet) between the two
// release steps of a payload query.
type linkEvidence struct {
	digest []byte              // SHA-256 of the evidence (outputs and finish shares)
	commit []byte              // the partial set's commit digest, from this node's own output
	outer  []int               // the elements of every cell's outer list in the last output
	tally  *protocol.LinkTally // the pattern histogram (and payload sums)
	sums   []linkage.ValueCiphertext
}

// evidenceDigest hashes what a release step's checks depend on: the
// epoch, the spec, the link spec, every output's signed bytes and the
// finish shares with their proof.
func evidenceDigest(r *linkRequest, ls *nodev1.LinkSpec, outputs []*nodev1.NodeSigned, finish *nodev1.LinkFinishResponse) []byte {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	field(binary.BigEndian.AppendUint64(nil, r.e.Epoch))
	field(r.shape.SpecDigest)
	lsb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ls)
	field(lsb)
	for _, o := range outputs {
		field([]byte(o.GetNodeId()))
		field(o.GetSigned().GetHeader())
		field(o.GetSigned().GetPayload())
		field(o.GetSigned().GetSignature())
	}
	for _, b := range finish.GetShares() {
		field(b)
	}
	field(finish.GetProof())
	return h.Sum(nil)
}

// linkCheckedSet keeps the evidence this node checked at LinkDecrypt of
// its last few queries, so that LinkAttest of the same evidence (the next
// step of a payload query) does not check every proof again.
type linkCheckedSet struct {
	mu    sync.Mutex
	m     map[string]*linkEvidence
	order []string
}

// linkCheckedKeep is how many queries' checked evidence a node keeps: the
// attest step follows the decrypt step of the same query at once.
const linkCheckedKeep = 8

func (s *linkCheckedSet) put(qid string, ev *linkEvidence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*linkEvidence{}
	}
	if _, ok := s.m[qid]; !ok {
		s.order = append(s.order, qid)
	}
	s.m[qid] = ev
	for len(s.order) > linkCheckedKeep {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
}

func (s *linkCheckedSet) get(qid string, digest []byte) *linkEvidence {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev := s.m[qid]; ev != nil && bytes.Equal(ev.digest, digest) {
		return ev
	}
	return nil
}

// checkLinkEvidence checks the evidence of a release step of a linked
// query and recomputes from it what is released. The decryptors are the
// stages, in order; this node, stage d, checked every stage before it
// when it mixed, so it needs:
//   - its own output, under its own signature (what it mixed, from the
//     proven outputs before it and the partial set it checked);
//   - every later stage's output, signed, with its proof against the one
//     before (a later stage colluding with the coordinator cannot plant
//     or swap an element);
//   - the first stage's finish shares of the last output, with their proof.
//
// From those it finishes the pseudonyms, tallies them and, for a payload
// query, adds every cell's matching payloads and the nodes' noise
// (protocol.LinkSums). Any failure names the stage whose output or shares
// it refuses.
func (n *Node) checkLinkEvidence(ctx context.Context, r *linkRequest, qid string, ls *nodev1.LinkSpec, outputs []*nodev1.NodeSigned, finish *nodev1.LinkFinishResponse) (*linkEvidence, error) {
	stages := ls.GetStages()
	digest := evidenceDigest(r, ls, outputs, finish)
	if ev := n.linkChecked.get(qid, digest); ev != nil {
		return ev, nil
	}
	d := slices.Index(stages, n.id)
	if d < 0 {
		return nil, fmt.Errorf("%w: %s is not a stage of %s (stages %v)", ErrBadRequest, n.id, qid, stages)
	}
	if len(outputs) != len(stages) {
		return nil, fmt.Errorf("%w: link release of %s: %d stage outputs for %d stages (a coordinator of a version before the decryptors' check?)", ErrBadRequest, qid, len(outputs), len(stages))
	}
	// Its own output, by its signature; then every later stage's, proven.
	step := "link release of " + qid
	own, err := n.openStageOutput(r, step, qid, stages, d, outputs[d])
	if err != nil {
		return nil, err
	}
	ev := &linkEvidence{digest: digest, commit: own.GetCommitDigest()}
	lists, noise := own.GetLists(), own.GetNoise()
	for i := d + 1; i < len(stages); i++ {
		out, err := n.checkStageOutput(ctx, r, step, qid, stages, i, outputs[i], ev.commit, lists, noise)
		if err != nil {
			return nil, err
		}
		lists, noise = out.GetLists(), out.GetNoise()
	}
	c1s, err := protocol.SplitPoints(protocol.LinkC1(lists))
	if err != nil {
		return nil, fmt.Errorf("%w: link release of %s: %v", ErrBadRequest, qid, err)
	}
	shares, err := protocol.SplitPoints(finish.GetShares())
	if err != nil || len(shares) != len(c1s) {
		return nil, fmt.Errorf("%w: link release of %s: the finish shares of %s: %d for %d elements (%v)", ErrBadRequest, qid, stages[0], len(shares), len(c1s), err)
	}
	if err := protocol.CheckLinkShares(r.e.Link, r.points, r.points[0], protocol.LinkStepFinish, qid, r.e.Epoch, stages[0], c1s, shares, finish.GetProof()); err != nil {
		n.record(ctx, "coordinator", "link.share_proof_failed", qid, map[string]any{"step": protocol.LinkStepFinish, "node": stages[0], "error": err.Error()})
		return nil, fmt.Errorf("link release of %s: %s's %s shares refused: %w", qid, stages[0], protocol.LinkStepFinish, err)
	}
	if ev.tally, ev.sums, err = protocol.LinkSums(r.shape, protocol.LinkPatternsOf(r.p, ls), lists, finish.GetShares(), noise); err != nil {
		return nil, fmt.Errorf("%w: link release of %s: %v", ErrBadRequest, qid, err)
	}
	ev.outer = protocol.OuterElems(r.shape, lists)
	n.linkChecked.put(qid, ev)
	return ev, nil
}

// linkAttest signs what a linked query releases (LinkAttest): the counts
// of its tally and, for a payload query, the decrypted sums, from the
// evidence it checks (checkLinkEvidence) and every decryptor's proven
// shares of the sums. The statement is the release record's: an analyst's
// `fedstat verify` checks that T stages signed the totals the result was
// released from.
func (n *Node) linkAttest(ctx context.Context, req *nodev1.LinkAttestRequest) (*nodev1.LinkAttestResponse, error) {
	qid := req.GetQueryId()
	ls := req.GetLink()
	stages := ls.GetStages()
	r, err := n.openLinkRequest(ctx, "link attest", qid, req.GetEpoch(), req.GetSpec(), ls, stages)
	if err != nil {
		return nil, err
	}
	ev, err := n.checkLinkEvidence(ctx, r, qid, ls, req.GetOutputs(), req.GetFinish())
	if err != nil {
		return nil, err
	}
	lp := protocol.LinkPatternsOf(r.p, ls)
	participants := len(ls.GetParticipants())
	totals := ev.tally.Totals(r.p, lp, participants)
	if r.shape.Payload {
		dec := req.GetDecrypted()
		if len(dec) != len(stages) {
			return nil, fmt.Errorf("%w: link attest of %s: the shares of %d decryptors, the stages are %d", ErrBadRequest, qid, len(dec), len(stages))
		}
		c1s := make([]linkage.Point, len(ev.sums))
		for c, ct := range ev.sums {
			c1s[c] = linkage.Point(ct[:linkage.PointSize])
		}
		shares := make([][]linkage.Point, len(stages))
		for i, ds := range dec {
			if ds.GetNodeId() != stages[i] || len(ds.GetShares()) != len(ev.sums) {
				return nil, fmt.Errorf("%w: link attest of %s: decryptor %d: %s with %d shares, want stage %s with %d", ErrBadRequest, qid, i, ds.GetNodeId(), len(ds.GetShares()), stages[i], len(ev.sums))
			}
			if shares[i], err = protocol.SplitPoints(ds.GetShares()); err != nil || len(shares[i]) != len(ev.sums) {
				return nil, fmt.Errorf("%w: link attest of %s: the shares of %s: %v", ErrBadRequest, qid, stages[i], err)
			}
			if err := protocol.CheckLinkShares(r.e.Link, r.points, r.points[i], protocol.LinkStepDecrypt, qid, r.e.Epoch, stages[i], c1s, shares[i], ds.GetProof()); err != nil {
				n.record(ctx, "coordinator", "link.share_proof_failed", qid, map[string]any{"step": protocol.LinkStepDecrypt, "node": stages[i], "error": err.Error()})
				return nil, fmt.Errorf("link attest of %s: %s's %s shares refused: %w", qid, stages[i], protocol.LinkStepDecrypt, err)
			}
		}
		if totals.Sums, err = protocol.LinkSumValues(r.p, ev.outer, participants, ev.sums, shares); err != nil {
			return nil, fmt.Errorf("link attest of %s: %w", qid, err)
		}
	}
	res, err := dp.ReleaseLinked(r.p, totals)
	if err != nil {
		return nil, fmt.Errorf("link attest of %s: %w", qid, err)
	}
	st := &nodev1.LinkReleaseStatement{
		QueryId: qid, Epoch: r.e.Epoch, SpecDigest: r.shape.SpecDigest, CommitDigest: ev.commit, PlanFingerprint: r.p.Fingerprint(),
		Stages: stages, Participants: int32(participants), Result: resultpb.ToProto(res),
	}
	signed, err := protocol.SealLinkRelease(n.cfg.Identity.Key, qid, r.e.Epoch, n.id, st, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	n.record(ctx, "coordinator", "link.attest", qid, map[string]any{"cells": r.shape.Cells})
	return &nodev1.LinkAttestResponse{Statement: signed}, nil
}

// linkShareName is the keystore name of this node's linkage-key share of
// an epoch.
func linkShareName(epoch uint64) string { return secretName(epoch) + "-link" }

// loadLinkShare reads this node's linkage-key share of e.
func (n *Node) loadLinkShare(e *epochState) (linkage.Scalar, error) {
	var s linkage.Scalar
	b, err := n.keys.Get(linkShareName(e.Epoch))
	if err != nil {
		return s, fmt.Errorf("%w: linkage-key share of epoch %d: %s", ErrKeysUnavailable, e.Epoch, keyProblem(err))
	}
	if len(b) != len(s) {
		return s, fmt.Errorf("%w: linkage-key share of epoch %d: malformed", ErrKeysUnavailable, e.Epoch)
	}
	copy(s[:], b)
	return s, nil
}
