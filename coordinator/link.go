package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/resultpb"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
)

// A query across linked agencies (plan.LinkPlan; the protocol and what
// every party sees are in docs/linkage.md). The coordinator plans it from
// the tables the nodes announce (membership.Meta.Rows), collects every
// participant's link partial, hands the merged lists through the T mix
// stages, tallies the last stage's pseudonyms (the only thing it reads: a
// histogram of multiplicity patterns that the nodes' dummies make
// differentially private), has the stages decrypt the payload sums, and
// releases.

// linkStageTimeout bounds one mix stage of a linked query: a stage raises
// every element of every list to a power (about 0.2 ms an element on one
// core), so a city-sized query takes seconds to a minute per stage.
const linkStageTimeout = 10 * time.Minute

// linkSpec plans who takes part in a linked query of plan p in epoch e:
// the live members (participants; each adds dummies, so each must answer),
// the holders of the outer table and of each filter's table (from the
// tables each node announces), and T stages chosen at random among the
// participants.
func (c *Coordinator) linkSpec(e *epoch, p *plan.Plan) (*nodev1.LinkSpec, error) {
	if e.Link == nil {
		// Without the members' verification keys the proofs of their
		// decryption shares cannot be checked: a linked query is refused
		// rather than decrypted on trust.
		return nil, fmt.Errorf("%w: key epoch %d has no linkage key at the coordinator (made without one, or stored by a version before the proofs of decryption shares); the next key ceremony makes one", ErrNotReady, e.ID)
	}
	live := map[string]*regNode{}
	for _, n := range c.registry() {
		if n.Alive {
			live[n.ID] = &n
		}
	}
	ls := &nodev1.LinkSpec{}
	// A node announces the tables it holds in its gossip metadata: a
	// coarse row count is above 0 exactly when it holds rows.
	holds := func(id, table string) bool { return live[id].Meta.Rows[table] > 0 }
	for _, m := range e.Members {
		if live[m.ID] != nil {
			ls.Participants = append(ls.Participants, m.ID)
		}
	}
	for _, id := range ls.Participants {
		if holds(id, p.Link.Outer) {
			ls.OuterHolders = append(ls.OuterHolders, id)
		}
	}
	if len(ls.OuterHolders) == 0 {
		return nil, fmt.Errorf("%w: no live node announces rows of %s; a query across linked agencies needs at least one holder of its outer table", ErrBadRequest, p.Link.Outer)
	}
	for _, f := range p.Link.Filters {
		h := &nodev1.Holders{}
		for _, id := range ls.Participants {
			if holds(id, f.Table) {
				h.NodeIds = append(h.NodeIds, id)
			}
		}
		ls.FilterHolders = append(ls.FilterHolders, h)
	}
	stages := min(e.Threshold, len(e.committee()))
	var mixers []string
	for _, id := range ls.Participants {
		if e.onCommittee(id) {
			mixers = append(mixers, id)
		}
	}
	if len(mixers) < stages {
		return nil, fmt.Errorf("%w: %d live committee members, a query across linked agencies needs %d to mix", ErrTooFewNodes, len(mixers), stages)
	}
	perm := rand.Perm(len(mixers))
	for _, i := range perm[:stages] {
		ls.Stages = append(ls.Stages, mixers[i])
	}
	return ls, nil
}

// executeLinked runs the protocol of a linked query (Submit planned it and
// its link spec).
func (c *Coordinator) executeLinked(q *query, e *epoch, who Analyst) (*typesv1.Result, error) {
	spec, ls := q.st.Spec, q.link
	shape := protocol.LinkShapeOf(spec, q.plan)
	lp := protocol.LinkPatternsOf(q.plan, ls)

	// Collect: every participant's link partial.
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_COLLECTING })
	start := time.Now()
	collectCtx, cancel := context.WithTimeout(q.ctx, q.deadline)
	defer cancel()
	signed := make([]*nodev1.NodeSigned, len(ls.Participants))
	errs := c.fanoutEach(collectCtx, ls.Participants, func(ctx context.Context, i int, id string) error {
		t0 := time.Now()
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		body := &nodev1.EvaluateBody{
			QueryId: q.id, Epoch: e.ID, Spec: spec, Analyst: who.Name, Role: who.Role,
			PlanFingerprint: q.plan.Fingerprint(), Link: ls, AnalystSignature: q.signature,
		}
		resp, err := c.askApproved(q.ctx, ctx, q, id, cl, body)
		if err != nil {
			q.node(id, "failed", err.Error(), time.Since(t0))
			return err
		}
		q.addUpload(id, proto.Size(resp))
		pt, err := c.verifyCommitment(q.id, spec, e, e.member(id), resp.GetPartial())
		if err != nil {
			err = fmt.Errorf("link %w", err)
			q.node(id, "failed", err.Error(), time.Since(t0))
			return err
		}
		signed[i] = &nodev1.NodeSigned{NodeId: id, Signed: pt.signed}
		q.node(id, "answered", "", time.Since(t0))
		return nil
	})
	q.phase("collect", start)
	if q.ctx.Err() != nil {
		return nil, fmt.Errorf("%w before release; nothing was decrypted", ErrQueryCanceled)
	}
	failures := map[string]string{}
	for i, err := range errs {
		if err != nil {
			failures[ls.Participants[i]] = err.Error()
		}
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("%w: a query across linked agencies needs every participant's lists (each carries dummies the others' do not replace); "+
			"%d of %d answered; nothing was decrypted. %s", ErrQueryFailed, len(ls.Participants)-len(failures), len(ls.Participants), describeFailures(failures))
	}
	// Reveal: the set of the participants' signed headers is fixed; each
	// sends its link partial within it, with its commitment to the set,
	// which the first mix stage requires of every participant.
	start = time.Now()
	opened := make([]*nodev1.LinkPartial, len(signed))
	commits, err := c.revealSet(q, e, signed, func(i int, s *typesv1.Signed) error {
		id := ls.Participants[i]
		lp, err := protocol.OpenLinkPartial(e.member(id).Cert.PublicKey, s, q.id, e.ID, id, c.partialWindow(q.id, spec), shape)
		if err != nil {
			return fmt.Errorf("link partial rejected: %w", err)
		}
		opened[i] = lp
		return nil
	})
	if err != nil {
		return nil, err
	}
	q.phase("reveal", start)

	// Mix: the stages in order.
	q.update(func(st *coordinatorv1.QueryStatus) { st.State = coordinatorv1.State_STATE_DECRYPTING })
	// Every stage is given the partials and every earlier stage's output,
	// and checks each earlier stage's proof before it mixes. The
	// coordinator checks each stage's output before it hands it on, and
	// names the stage whose proof fails, or a stage that refuses outputs
	// whose proofs verify. (Checking while the next stage works saved no
	// time where every process shares the machine's cores: 181 s against
	// 209 s for the deduplicated count at 10^6 residents.)
	inLists, inNoise := protocol.MergeLinkPartials(shape, opened)
	commit := protocol.CommitDigest(q.id, e.ID, spec, signed)
	points := e.points(ls.Stages)
	var outputs []*nodev1.NodeSigned
	var last *nodev1.LinkStagePayload
	for k, id := range ls.Stages {
		start := time.Now()
		req := &nodev1.LinkStageRequest{QueryId: q.id, Epoch: e.ID, Spec: spec, Link: ls, Stage: uint32(k), Partials: signed, Commits: commits}
		if k > 0 {
			req.Earlier, req.Previous = outputs[:k-1], outputs[k-1]
		}
		out, payload, err := c.linkStage(q, e, id, req, shape, k)
		if errors.Is(err, protocol.ErrLinkStageProof) {
			// Every earlier output verified here: the refusal is unfounded.
			c.record(q.ctx, c.cfg.Identity.Name(), "link.stage_refusal_unfounded", q.id, map[string]any{"node": id, "stage": k, "epoch": e.ID, "error": err.Error()})
			return nil, fmt.Errorf("%w: mix stage %d at %s refused earlier outputs whose proofs verify at the coordinator: %v; nothing was decrypted", ErrQueryFailed, k+1, id, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: mix stage %d at %s: %v; nothing was decrypted", ErrQueryFailed, k+1, id, err)
		}
		if err := protocol.CheckLinkStage(e.Link, points, points[k], q.id, e.ID, id, k, shape, commit, inLists, inNoise, payload); err != nil {
			c.record(q.ctx, c.cfg.Identity.Name(), "link.stage_proof_failed", q.id, map[string]any{"node": id, "stage": k, "epoch": e.ID, "error": err.Error()})
			c.log.Warn("mix stage refused: its proof does not verify", "query", q.id, "node", id, "stage", k, "err", err)
			return nil, fmt.Errorf("%w: mix stage %d at %s: its output refused: %w; nothing was decrypted", ErrQueryFailed, k+1, id, err)
		}
		outputs, last = append(outputs, &nodev1.NodeSigned{NodeId: id, Signed: out}), payload
		inLists, inNoise = payload.GetLists(), payload.GetNoise()
		q.phase(fmt.Sprintf("mix %d/%d", k+1, len(ls.Stages)), start)
	}

	// Finish the pseudonyms: the first stage takes off the share it kept
	// back, shown only the C1 components, so that no stage holds a
	// pseudonym while the lists are mixed. Then tally them.
	start = time.Now()
	finish, err := c.linkFinish(q, e, ls, last.GetLists())
	if err != nil {
		return nil, fmt.Errorf("%w: finishing the pseudonyms at %s: %v; nothing was decrypted", ErrQueryFailed, ls.Stages[0], err)
	}
	q.phase("finish", start)
	start = time.Now()
	tally, sums, err := protocol.LinkSums(shape, lp, last.GetLists(), finish.GetShares(), last.GetNoise())
	if err != nil {
		return nil, fmt.Errorf("%w: tally: %v", ErrQueryFailed, err)
	}
	totals := tally.Totals(q.plan, lp, len(ls.Participants))
	q.phase("tally", start)

	// Decrypt the payload sums. The decryptors are given the evidence to
	// recompute every sum: every stage's output and the first stage's
	// finish shares.
	ev := &nodev1.LinkAttestRequest{QueryId: q.id, Epoch: e.ID, Spec: spec, Link: ls, Outputs: outputs, Finish: finish}
	if shape.Payload {
		start := time.Now()
		values, shares, err := c.linkDecrypt(q, e, ls, sums, ev, last.GetLists(), shape)
		if err != nil {
			return nil, err
		}
		totals.Sums, ev.Decrypted = values, shares
		q.phase("decrypt", start)
	}
	start = time.Now()
	r, err := dp.ReleaseLinked(q.plan, totals)
	if err != nil {
		return nil, fmt.Errorf("%w: release: %v", ErrQueryFailed, err)
	}
	res := resultpb.ToProto(r)
	// Every stage signs the result, from the totals it checks in the same
	// evidence: the release record's statements.
	want := &nodev1.LinkReleaseStatement{QueryId: q.id, Epoch: e.ID, SpecDigest: shape.SpecDigest, CommitDigest: commit, PlanFingerprint: q.plan.Fingerprint(),
		Stages: ls.Stages, Participants: int32(totals.Participants), Result: res}
	statements, err := c.linkAttest(q, e, ev, want)
	if err != nil {
		return nil, err
	}
	q.phase("release", start)
	nameCodes(c.cfg.Catalogue, q.plan, r)
	res = resultpb.ToProto(r)
	c.keepLinkRecord(q, e, signed, commits, statements, res)
	return res, nil
}

// linkAttest asks every stage to sign the totals of a linked query from
// the evidence in req (LinkAttest) and returns the signed statements,
// each checked to state want. A stage that refuses, or states other
// totals than the coordinator tallied, is named and nothing is released.
func (c *Coordinator) linkAttest(q *query, e *epoch, req *nodev1.LinkAttestRequest, want *nodev1.LinkReleaseStatement) ([]*coordinatorv1.ReleaseLinkStatement, error) {
	ctx, cancel := context.WithTimeout(q.ctx, linkStageTimeout)
	defer cancel()
	stages := req.GetLink().GetStages()
	out := make([]*coordinatorv1.ReleaseLinkStatement, len(stages))
	errs := c.fanoutEach(ctx, stages, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		resp, err := cl.LinkAttest(ctx, req)
		if err != nil {
			return callError(err)
		}
		st, err := protocol.OpenLinkRelease(e.member(id).Cert.PublicKey, resp.GetStatement(), q.id, e.ID, id, c.window())
		if err != nil {
			return fmt.Errorf("its statement rejected: %w", err)
		}
		if !proto.Equal(st, want) {
			c.record(q.ctx, c.cfg.Identity.Name(), "link.attest_mismatch", q.id, map[string]any{"node": id, "epoch": e.ID})
			// No values in the error: nothing is released.
			return errors.New("it states another release than the coordinator's tally gives")
		}
		out[i] = &coordinatorv1.ReleaseLinkStatement{NodeId: id, Statement: resp.GetStatement()}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("%w: the statement of the released totals at %s: %v; nothing was released", ErrQueryFailed, stages[i], err)
		}
	}
	return out, nil
}

// linkStage asks stage node id for its stage k and checks its output,
// which it returns signed and opened.
func (c *Coordinator) linkStage(q *query, e *epoch, id string, req *nodev1.LinkStageRequest, shape protocol.LinkShape, k int) (*typesv1.Signed, *nodev1.LinkStagePayload, error) {
	ctx, cancel := context.WithTimeout(q.ctx, linkStageTimeout)
	defer cancel()
	cl, err := c.client(id)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	resp, err := cl.LinkStage(ctx, req)
	if err != nil {
		return nil, nil, callError(err)
	}
	q.addUpload(id, proto.Size(resp))
	m := e.member(id)
	out, err := protocol.OpenLinkStage(m.Cert.PublicKey, resp.GetOutput(), q.id, e.ID, id, c.window(), shape, k, req.GetLink().GetStages())
	if err != nil {
		return nil, nil, fmt.Errorf("output rejected: %w", err)
	}
	q.note(id, fmt.Sprintf("mixed stage %d in %s", k+1, time.Since(t0).Round(time.Millisecond)))
	return resp.GetOutput(), out, nil
}

// linkDecrypt has the stages (T members) decrypt the payload sums of every
// cell (cts: the matching payloads and the nodes' noise) and returns the
// sums (integers on the payload measure's grid). ev carries the evidence
// (the stages' outputs and the finish shares) each decryptor recomputes
// the sums from before it decrypts.
func (c *Coordinator) linkDecrypt(q *query, e *epoch, ls *nodev1.LinkSpec, cts []linkage.ValueCiphertext, ev *nodev1.LinkAttestRequest, lists []*nodev1.LinkList, shape protocol.LinkShape) ([]int64, []*nodev1.LinkDecryptShares, error) {
	sums := make([][]byte, len(cts))
	for i := range cts {
		sums[i] = cts[i][:]
	}
	c1s := make([]linkage.Point, len(cts))
	for i := range cts {
		c1s[i] = linkage.Point(cts[i][:linkage.PointSize])
	}
	ctx, cancel := context.WithTimeout(q.ctx, releaseTimeout)
	defer cancel()
	decryptors := ls.Stages
	points := e.points(decryptors)
	shares := make([][]linkage.Point, len(decryptors))
	proven := make([]*nodev1.LinkDecryptShares, len(decryptors))
	errs := c.fanoutEach(ctx, decryptors, func(ctx context.Context, i int, id string) error {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		resp, err := cl.LinkDecrypt(ctx, &nodev1.LinkDecryptRequest{QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Link: ls, Sums: sums, Decryptors: decryptors,
			Outputs: ev.GetOutputs(), Finish: ev.GetFinish()})
		if err != nil {
			return callError(err)
		}
		if len(resp.GetShares()) != len(cts) {
			return fmt.Errorf("%d decryption shares for %d sums", len(resp.GetShares()), len(cts))
		}
		ds := make([]linkage.Point, len(cts))
		for cell, b := range resp.GetShares() {
			if len(b) != linkage.PointSize {
				return fmt.Errorf("decryption share for cell %d: %d bytes", cell, len(b))
			}
			ds[cell] = linkage.Point(b)
		}
		if err := c.checkLinkShares(q, e, points, id, protocol.LinkStepDecrypt, c1s, ds, resp.GetProof()); err != nil {
			return err
		}
		shares[i] = ds
		proven[i] = &nodev1.LinkDecryptShares{NodeId: id, Shares: resp.GetShares(), Proof: resp.GetProof()}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("%w: decryption of the payload sums at %s: %v; nothing was released", ErrQueryFailed, decryptors[i], err)
		}
	}
	out, err := protocol.LinkSumValues(q.plan, protocol.OuterElems(shape, lists), len(ls.Participants), cts, shares)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v; nothing was released", ErrQueryFailed, err)
	}
	return out, proven, nil
}

// linkFinish asks the first stage for its withheld share of the last
// stage's lists (LinkFinish, shown the C1 components only) and returns its
// answer once the shares' proof verifies (protocol.FinishLinkLists gives
// the pseudonyms from it).
func (c *Coordinator) linkFinish(q *query, e *epoch, ls *nodev1.LinkSpec, lists []*nodev1.LinkList) (*nodev1.LinkFinishResponse, error) {
	ctx, cancel := context.WithTimeout(q.ctx, linkStageTimeout)
	defer cancel()
	id := ls.Stages[0]
	cl, err := c.client(id)
	if err != nil {
		return nil, err
	}
	c1 := protocol.LinkC1(lists)
	resp, err := cl.LinkFinish(ctx, &nodev1.LinkFinishRequest{QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Link: ls, C1: c1})
	if err != nil {
		return nil, callError(err)
	}
	q.addUpload(id, proto.Size(resp))
	c1s, err := protocol.SplitPoints(c1)
	if err != nil {
		return nil, err
	}
	shares, err := protocol.SplitPoints(resp.GetShares())
	if err != nil {
		return nil, fmt.Errorf("its shares: %w", err)
	}
	if len(shares) != len(c1s) {
		return nil, fmt.Errorf("%d shares for %d elements", len(shares), len(c1s))
	}
	if err := c.checkLinkShares(q, e, e.points(ls.Stages), id, protocol.LinkStepFinish, c1s, shares, resp.GetProof()); err != nil {
		return nil, err
	}
	return resp, nil
}

// checkLinkShares checks node id's proof that its decryption shares of a
// linked query's step are w·C1 for its weighted linkage-key share among
// points (protocol.CheckLinkShares). A node whose shares are not is named
// in the error and in the audit log (the proof, the shares and the
// members' public commitments let anyone check the accusation); nothing
// is decrypted with them.
func (c *Coordinator) checkLinkShares(q *query, e *epoch, points []uint64, id, step string, c1s, shares []linkage.Point, proof []byte) error {
	err := protocol.CheckLinkShares(e.Link, points, e.member(id).Point, step, q.id, e.ID, id, c1s, shares, proof)
	if err != nil {
		c.record(q.ctx, c.cfg.Identity.Name(), "link.share_proof_failed", q.id, map[string]any{"node": id, "step": step, "epoch": e.ID, "error": err.Error()})
		c.log.Warn("decryption shares refused: their proof does not verify", "query", q.id, "node", id, "step", step, "err", err)
		return fmt.Errorf("%s's %s shares refused: %w", id, step, err)
	}
	return nil
}
