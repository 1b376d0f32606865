package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/internal/signedquery"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// Policy is what a node's admin allows.
type Policy struct {
	// Roles may query this node. Defaults to analyst, researcher, operator.
	Roles []pki.Role
	// Kinds are the plan kinds allowed (plan.Plan.Kind); empty allows all.
	Kinds []string
	// MinNodes is the smallest min_nodes this node accepts: it never helps
	// release a sum of fewer partials. Defaults to 2.
	MinNodes int
	// MinCohort refuses a query whose cohort at this node (its largest
	// count, summed over all groups) is below it, decided on a noisy count
	// (dp.NoisyCohort) whose cost MinCohortRho is charged with the query,
	// refused or not. The refusal reaches the analyst; it depends on the
	// data only through that noisy count. Defaults to 0 (off).
	MinCohort int
	// MinCohortRho is the zCDP cost of the minimum-cohort check, charged on
	// top of the query's own cost whenever MinCohort is on and the query has
	// a count: the check's noise has σ = (the cohort's sensitivity)/√(2ρ), 10
	// for a COUNT(DISTINCT) at the default. Defaults to DefaultMinCohortRho.
	MinCohortRho float64
	// RequireApproval queues every new query until the node admin approves
	// or denies it (`fedstat node approvals`). Defaults to false.
	RequireApproval bool
	// ApprovalWebhook, when set, is told of every query that starts to
	// wait for the admin's approval (a JSON POST: node, query id, analyst,
	// role, SQL, epsilon, delta, rho, since), so that the admin need not
	// watch the queue.
	ApprovalWebhook string
	// RequireAnalystSignature refuses every query that no analyst's client
	// signed (EvaluateBody.analyst_signature): the analyst's name, role and
	// query then rest on the analyst's certificate, not on the
	// coordinator's word. Queries no analyst's client signs are refused
	// with it: those of the HTTP API's token clients (Python, R, the
	// dashboard, and the model fits the coordinator runs for them) and
	// standing series' intervals. A
	// signature that is present is verified whether this is on or not.
	// Defaults to false.
	RequireAnalystSignature bool
	// AcceptUnprovenPartials lets this node key-switch sums of partials
	// that carry no proofs of encryption: those of nodes older than the
	// proofs, and compact releases, in which a decryptor gets the sum and
	// not the partials and so cannot verify them. Off (the default), a
	// member that sends another member's ciphertext, a re-randomisation or
	// multiple of it, or a ciphertext with no short witness, is named and
	// nothing is released (docs/crypto.md, "Proofs of fresh encryption").
	// A proof that is present is verified whether this is on or not.
	AcceptUnprovenPartials bool
	// SkipRangeProofs makes this node send its partials without range
	// proofs (still with the commitments the release checks the total
	// against) and key-switch sums of partials that carry none. For a
	// network whose members trust each other's inputs and want the speed
	// (a range proof costs a node about 140 us per bit of its vector);
	// off, the default, a member whose values are outside the plan's
	// bounds is named and nothing is released (docs/crypto.md, "Range
	// proofs"). A range proof that is present is verified whether this is
	// on or not.
	SkipRangeProofs bool
}

// DefaultMinCohortRho is the default cost of a node's minimum-cohort check
// (Policy.MinCohortRho): ρ 0.005 (ε 0.53 at δ 1e-6), noise σ 10 on a count of
// patients.
const DefaultMinCohortRho = 0.005

// cohortRho is what the minimum-cohort check of p costs at this node: 0 when
// the policy has no minimum or p has no count to check.
func (pol *Policy) cohortRho(p *plan.Plan) float64 {
	if pol.MinCohort <= 0 {
		return 0
	}
	for _, m := range p.Measures() {
		if m.Kind == plan.CountRows || m.Kind == plan.CountDistinct || m.Kind == plan.CountValues {
			if pol.MinCohortRho > 0 {
				return pol.MinCohortRho
			}
			return DefaultMinCohortRho
		}
	}
	return 0
}

// DefaultPolicy returns the default policy.
func DefaultPolicy() *Policy {
	return &Policy{Roles: []pki.Role{pki.RoleAnalyst, pki.RoleResearcher, pki.RoleOperator}, MinNodes: 2}
}

// planRequest is protocol.PlanRequest with the node's error.
func planRequest(spec *typesv1.QuerySpec) (plan.Request, error) {
	r, err := protocol.PlanRequest(spec)
	if err != nil {
		return plan.Request{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return r, nil
}

// openEvaluate verifies a signed evaluate request from the calling
// coordinator: signature by the mutual-TLS peer's certificate key, addressed
// to this node, fresh, and never seen before.
func (n *Node) openEvaluate(ctx context.Context, req *nodev1.EvaluateRequest) (*nodev1.EvaluateBody, rpc.Peer, error) {
	peer, cert, err := rpc.RequireCert(ctx, pki.RoleCoordinator)
	if err != nil {
		return nil, peer, err
	}
	body, err := protocol.OpenEvaluate(cert.PublicKey, req, n.id, n.window(n.replay))
	if errors.Is(err, envelope.ErrReplay) || errors.Is(err, envelope.ErrStale) {
		return nil, peer, fmt.Errorf("%w: %v", ErrReplayed, err)
	}
	if err != nil {
		return nil, peer, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return body, peer, nil
}

// window is how this node judges the time of the messages it receives
// (protocol.Window); seen is nil for messages it may be shown again.
func (n *Node) window(seen envelope.ReplayCache) protocol.Window {
	return protocol.Window{Now: n.cfg.Now(), MaxSkew: n.cfg.MaxSkew, Seen: seen}
}

func (n *Node) evaluate(ctx context.Context, sreq *nodev1.EvaluateRequest) (*nodev1.EvaluateResponse, error) {
	start := time.Now()
	req, peer, err := n.openEvaluate(ctx, sreq)
	if err != nil {
		n.metrics.queries.WithLabelValues("refused").Inc()
		who := peer.Name
		if who == "" {
			who = "unauthenticated"
		}
		n.record(ctx, who, "query.refused", "", map[string]any{"reason": err.Error()})
		return nil, err
	}
	resp, err := n.evaluateBody(ctx, req, peer.Name)
	if err != nil {
		n.metrics.queries.WithLabelValues("refused").Inc()
		n.record(ctx, req.GetAnalyst(), "query.refused", req.GetQueryId(), map[string]any{"reason": err.Error(), "role": req.GetRole()})
		n.log.Info("query refused", "query_id", req.GetQueryId(), "analyst", req.GetAnalyst(), "err", err)
		return nil, err
	}
	if resp.ApprovalPending != nil {
		n.metrics.queries.WithLabelValues("pending").Inc()
		return resp, nil
	}
	if resp.Replayed {
		n.metrics.queries.WithLabelValues("replayed").Inc()
	} else {
		n.metrics.queries.WithLabelValues("answered").Inc()
		n.metrics.latency.Observe(time.Since(start).Seconds())
	}
	return resp, nil
}

// evaluateBody answers the query of req, sent by the coordinator whose
// certificate has the name coordinator.
func (n *Node) evaluateBody(ctx context.Context, req *nodev1.EvaluateBody, coordinator string) (*nodev1.EvaluateResponse, error) {
	e, err := n.epochFor(req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if req.GetEpoch() != e.Epoch {
		return nil, fmt.Errorf("%w: query %s is for epoch %d, this node is at epoch %d", ErrWrongEpoch, req.GetQueryId(), req.GetEpoch(), e.Epoch)
	}
	if req.GetQueryId() == "" || req.GetAnalyst() == "" {
		return nil, fmt.Errorf("%w: query id and analyst are required", ErrBadRequest)
	}
	if err := n.checkAnalystSignature(ctx, req, coordinator); err != nil {
		return nil, err
	}
	pol := n.cfg.Policy
	if !slices.Contains(pol.Roles, pki.Role(req.GetRole())) {
		return nil, fmt.Errorf("%w: role %q may not query %s", ErrPolicy, req.GetRole(), n.id)
	}
	preq, err := planRequest(req.GetSpec())
	if err != nil {
		return nil, err
	}
	wait, err := protocol.ApprovalWait(req.GetSpec())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if preq.MinNodes < pol.MinNodes {
		return nil, fmt.Errorf("%w: min_nodes %d is below this node's minimum of %d", ErrPolicy, preq.MinNodes, pol.MinNodes)
	}
	if preq.Threshold != e.Threshold {
		return nil, fmt.Errorf("%w: query assumes threshold %d, epoch %d has threshold %d", ErrBadRequest, preq.Threshold, e.Epoch, e.Threshold)
	}
	p, err := plan.Build(preq, n.cfg.Catalogue)
	if err != nil {
		return nil, err
	}
	if fp := req.GetPlanFingerprint(); fp != "" && fp != p.Fingerprint() {
		return nil, fmt.Errorf("%w: this node's plan of the query differs from the coordinator's: the network catalogue "+
			"(regions, max_nodes_per_patient, small_count_threshold, studies, value sets, [linkage]) or the software version differs between them; the node would "+
			"noise and encode its partial differently from how the coordinator decodes the total", ErrBadRequest)
	}
	var series *seriesQuery
	if req.GetSeries() == nil && protocol.IsSeriesQuery(req.GetQueryId()) {
		return nil, fmt.Errorf("%w: query id %q is a series interval's, and the query is not a series'", ErrBadRequest, req.GetQueryId())
	}
	if req.GetSeries() != nil {
		if p.Link != nil {
			return nil, fmt.Errorf("%w: a standing series cannot be a query across linked agencies", ErrSeries)
		}
		if series, err = n.checkSeries(req, p); err != nil {
			return nil, err
		}
	}
	if len(pol.Kinds) > 0 && !slices.Contains(pol.Kinds, p.Kind()) {
		return nil, fmt.Errorf("%w: query kind %q is not allowed at %s", ErrPolicy, p.Kind(), n.id)
	}
	if p.Link != nil {
		if err := checkLinkSpec(e, n.id, p, req.GetLink(), req.GetSpec()); err != nil {
			return nil, err
		}
	} else if err := protocol.CheckPlaintextRange(p, e.Params, len(e.Members)); err != nil {
		return nil, err
	}
	if pol.RequireApproval {
		// Asked again while it waits: answered at once, recorded once.
		if pa, ok := n.waiting(req); ok {
			return pendingResponse(pa), nil
		}
	}
	n.record(ctx, req.GetAnalyst(), "query.received", req.GetQueryId(), map[string]any{
		"sql": req.GetSpec().GetSql(), "epsilon": req.GetSpec().GetEpsilon(), "delta": req.GetSpec().GetDelta(), "rho": p.Rho(), "role": req.GetRole()})
	// The query's own cost, plus the minimum-cohort check's when it runs:
	// charged together, whether the check lets the query through or not.
	rho := p.Rho() + pol.cohortRho(p)
	if series != nil {
		// The lifetime budget, once; the interval itself is within it.
		if err := n.reserveSeries(ctx, req.GetAnalyst(), series); err != nil {
			return nil, err
		}
		rho = pol.cohortRho(p)
	}
	var made *nodev1.PartialPayload // the payload of the partial computed here, if one was
	var madeBytes []byte
	answer, replayed, err := n.ledger.Charge(ctx, req.GetQueryId(), req.GetAnalyst(), rho, func() ([]byte, error) {
		if pol.RequireApproval {
			// Inside Charge: after the budget check, before any work; a
			// pending or denied query is charged nothing.
			if err := n.approvalGate(ctx, req, rho, wait); err != nil {
				return nil, err
			}
		}
		if p.Link != nil {
			return n.linkPartial(ctx, e, req.GetQueryId(), req.GetSpec(), req.GetLink(), p)
		}
		b, payload, err := n.partial(ctx, e, req.GetQueryId(), req.GetSpec(), p, series)
		made, madeBytes = payload, b
		return b, err
	})
	var pa *pendingApproval
	if errors.As(err, &pa) {
		return pendingResponse(pa), nil
	}
	if err != nil {
		return nil, err
	}
	if pol.RequireApproval && !replayed {
		n.answeredApproval(req.GetQueryId())
	}
	if !replayed {
		n.metrics.rho.Add(rho)
		n.record(ctx, n.id, "budget.debited", req.GetQueryId(), map[string]any{"analyst": req.GetAnalyst(), "rho": rho})
	}
	if reason, ok := storedRefusal(answer); ok {
		// Decided once, on a noisy count, and charged: a re-delivery gets
		// the same refusal, never a fresh draw.
		return nil, fmt.Errorf("%w: %s", ErrPolicy, reason)
	}
	if replayed && series != nil {
		// An interval answered in an earlier key epoch and never released
		// in it: the same noisy share under this epoch's key.
		if answer, made, err = n.reencryptInterval(ctx, e, req, rho, p, answer); err != nil {
			return nil, err
		}
		madeBytes = answer
	}
	var signed typesv1.Signed
	if err := proto.Unmarshal(answer, &signed); err != nil {
		return nil, fmt.Errorf("node: stored answer of %s: %w", req.GetQueryId(), err)
	}
	if made != nil && bytes.Equal(answer, madeBytes) {
		// What the ledger stored is this partial: its reveal and commit
		// steps need not read it back and parse it again.
		n.sent.keep(req.GetQueryId(), e.Epoch, made, &signed, n.cfg.Now())
	}
	n.record(ctx, n.id, "partial.released", req.GetQueryId(), map[string]any{"replayed": replayed, "slots": p.VectorLen()})
	n.log.Info("answered query", "query_id", req.GetQueryId(), "analyst", req.GetAnalyst(), "rho", p.Rho(), "replayed", replayed)
	// The commitment only: the partial goes out once the set it is
	// released in is fixed (Reveal), so that no partial of the set can be
	// made after another was seen.
	return &nodev1.EvaluateResponse{Partial: protocol.Commitment(&signed), Replayed: replayed}, nil
}

// checkAnalystSignature verifies the analyst's signed request of req
// (signedquery), before anything is charged: the certificate of the
// network CA valid now, the name and role it carries are the query's
// analyst and role, the signature, the coordinator it was made for is the
// calling one, signed within the skew window plus the query's approval wait
// (protocol.PartialAge), the query id is the one derived from the
// signature, and the spec evaluated is the signed one as the coordinator
// may settle it (signedquery.CheckSettled). A query without one passes
// unless the policy requires it. The errors match signedquery.ErrInvalid.
// A standing series' interval carries the signed series (checked here
// against the interval's series), a round of a statistical analysis the
// signed analysis (checkAnalysisRound).
func (n *Node) checkAnalystSignature(ctx context.Context, req *nodev1.EvaluateBody, coordinator string) error {
	sig := req.GetAnalystSignature()
	if req.GetAnalysis() != nil {
		return n.checkAnalysisRound(ctx, req, coordinator)
	}
	if sig == nil {
		if n.cfg.Policy.RequireAnalystSignature {
			return fmt.Errorf("%w: %s requires every query to be signed by its analyst's client (policy require_analyst_signature), "+
				"and query %s is not (the HTTP API's token clients do not sign)", signedquery.ErrInvalid, n.id, req.GetQueryId())
		}
		return nil
	}
	if series := req.GetSeries(); series != nil {
		// An interval of a standing series: the analyst signed the series'
		// definition when creating it, which fixes this interval's query
		// (checkSeries) and the lifetime budget it reserves.
		r, err := signedquery.OpenSeries(n.cfg.Identity.CA, sig, coordinator, n.cfg.Now(), n.cfg.MaxSkew)
		if err != nil {
			return err
		}
		switch {
		case r.Name != req.GetAnalyst():
			return fmt.Errorf("%w: the series runs as %q's, and %q signed it", signedquery.ErrInvalid, req.GetAnalyst(), r.Name)
		case string(r.Role) != req.GetRole():
			return fmt.Errorf("%w: the series runs with role %q, and the certificate of %q has role %q", signedquery.ErrInvalid, req.GetRole(), r.Name, r.Role)
		}
		return signedquery.CheckSeriesSettled(r.Spec, series.GetSpec())
	}
	r, err := signedquery.Open(n.cfg.Identity.CA, sig, coordinator, n.cfg.Now(), protocol.PartialAge(req.GetSpec(), n.cfg.MaxSkew))
	if err != nil {
		return err
	}
	switch {
	case r.Name != req.GetAnalyst():
		return fmt.Errorf("%w: the query is sent as %q's, and %q signed it", signedquery.ErrInvalid, req.GetAnalyst(), r.Name)
	case string(r.Role) != req.GetRole():
		return fmt.Errorf("%w: the query is sent with role %q, and the certificate of %q has role %q", signedquery.ErrInvalid, req.GetRole(), r.Name, r.Role)
	case r.QueryID != req.GetQueryId():
		return fmt.Errorf("%w: the query id is %s, and %q's signature is for query id %s (one signature pays for one query)",
			signedquery.ErrInvalid, req.GetQueryId(), r.Name, r.QueryID)
	}
	return signedquery.CheckSettled(r.Spec, req.GetSpec())
}

// pendingResponse is the answer to a query that waits for the admin.
func pendingResponse(p *pendingApproval) *nodev1.EvaluateResponse {
	return &nodev1.EvaluateResponse{ApprovalPending: &nodev1.ApprovalPending{SinceUnixMs: p.since.UnixMilli()}}
}

// refusalPrefix marks a stored answer that is a refusal decided on noisy
// data (the minimum-cohort check) rather than a signed partial. A signed
// partial is a protobuf message, which never starts with these bytes (0x00
// is not a valid field tag).
const refusalPrefix = "\x00fedstat-refusal\x00"

// storedRefusal reports whether a stored answer is a refusal, and its reason.
func storedRefusal(answer []byte) (string, bool) {
	r, ok := bytes.CutPrefix(answer, []byte(refusalPrefix))
	return string(r), ok
}

// errSmallCohort is the refusal of the minimum-cohort check.
var errSmallCohort = errors.New("small cohort")

// noisyShare is a node's side of a query on its data, exactly as it runs for
// a real query: the exact aggregates (data.Evaluate), the minimum-cohort
// decision on a noisy count (pol.MinCohort, charged as pol.cohortRho), and
// the noise share on the plan's grid. A refusal wraps errSmallCohort. The
// exact aggregates never leave this function. The privacy auditor
// (privacy_audit_test.go) runs it too, on TablesOf(tables).
func noisyShare(ctx context.Context, id string, data DataSource, pol *Policy, p *plan.Plan) (*dp.Share, error) {
	exact, err := data.Evaluate(ctx, p)
	if err != nil {
		return nil, err
	}
	return noisyExact(id, pol, p, exact)
}

// noisyExact is noisyShare on exact aggregates already computed.
func noisyExact(id string, pol *Policy, p *plan.Plan, exact *eval.Exact) (*dp.Share, error) {
	if rho := pol.cohortRho(p); rho > 0 {
		c, err := dp.NoisyCohort(p, exact, rho)
		if err != nil {
			return nil, err
		}
		if c.Counted && c.Noisy < float64(pol.MinCohort) {
			return nil, fmt.Errorf("%w: the cohort at %s is below its minimum of %d (decided on a noisy count, sd %.3g; the check is charged)",
				errSmallCohort, id, pol.MinCohort, c.Sigma)
		}
	}
	return dp.NoiseShare(p, exact)
}

// partial evaluates p on the local data, adds this node's noise share,
// encrypts under the epoch's collective key and signs (noisyShare); a
// refusal by the minimum-cohort check comes back as a stored refusal
// (refusalPrefix), charged like an answer.
func (n *Node) partial(ctx context.Context, e *epochState, queryID string, spec *typesv1.QuerySpec, p *plan.Plan, series *seriesQuery) ([]byte, *nodev1.PartialPayload, error) {
	// The data version is read before the data: if an import lands while
	// the query is evaluated, the partial carries the older version, and an
	// identical later query is asked again rather than answered from it.
	version := dataVersion(n.cfg.Data)
	var share *dp.Share
	var err error
	if series != nil {
		var exact *eval.Exact
		if exact, err = n.seriesExact(ctx, p, series); err == nil {
			share, err = noisyExact(n.id, n.cfg.Policy, p, exact)
		}
	} else {
		share, err = noisyShare(ctx, n.id, n.cfg.Data, n.cfg.Policy, p)
	}
	if errors.Is(err, errSmallCohort) {
		// Stored and charged like an answer (see evaluateBody).
		_, reason, _ := strings.Cut(err.Error(), ": ")
		return []byte(refusalPrefix + reason), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	payload := &nodev1.PartialPayload{VectorLen: int32(p.VectorLen()), SpecDigest: protocol.SpecDigest(spec), DataVersion: version,
		PlanFingerprint: p.Fingerprint()}
	if series != nil && !n.cfg.BenchmarkPlaintext {
		// Kept before the ledger stores the partial, so that the interval
		// can be sent again in a later key epoch (reencryptInterval).
		if err := n.keepSeriesShare(queryID, payload, share.Slots()); err != nil {
			return nil, nil, err
		}
	}
	return n.sealPartial(e, queryID, spec, payload, share.Slots(), p)
}

// sealPartial puts slots, a noisy share of plan p, into payload (committed
// to and proven within p's bounds, then encrypted with the commitments'
// blindings under e's collective key; or in the clear in benchmark
// plaintext mode), signs it as this node's partial of queryID in epoch e,
// and returns the signed partial and payload. What it encrypted and the
// seed of the encryptions' randomness are kept until the partial can no
// longer be released (keepLimbWitness), to prove its limbs if asked.
func (n *Node) sealPartial(e *epochState, queryID string, spec *typesv1.QuerySpec, payload *nodev1.PartialPayload, slots []int64, p *plan.Plan) ([]byte, *nodev1.PartialPayload, error) {
	var cts []*homomorphic.Ciphertext
	var err error
	if n.cfg.BenchmarkPlaintext {
		payload.Plaintext = slots
	} else {
		var encoded []int64
		var c *rangeproof.Committed
		if n.cfg.Policy.SkipRangeProofs {
			encoded, c = protocol.EncodeUnproven(slots)
		} else if encoded, c, err = protocol.EncodePartial(slots, protocol.PartialRanges(p), queryID, e.Epoch, n.id, payload.GetSpecDigest()); err != nil {
			return nil, nil, err
		}
		payload.RangeCommitments, payload.RangeProof = c.Commitments, c.Proof
		seed := make([]byte, homomorphic.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, nil, err
		}
		if cts, payload.Proofs, payload.RangeLink, err = protocol.EncryptEncodedSeeded(e.Params, e.PublicKey, encoded, c,
			protocol.EncryptionContext(queryID, e.Epoch, n.id, payload.GetSpecDigest()), seed); err != nil {
			return nil, nil, err
		}
		// Before the partial is stored or sent: a partial that goes out can
		// always be proven.
		if err := n.keepLimbWitness(queryID, spec, seed, encoded); err != nil {
			return nil, nil, err
		}
	}
	for _, ct := range cts {
		b, err := ct.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		payload.Ciphertexts = append(payload.Ciphertexts, b)
	}
	signed, err := protocol.SealPartial(n.cfg.Identity.Key, queryID, e.Epoch, n.id, payload, n.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	b, err := proto.Marshal(signed)
	return b, payload, err
}

func releaseKey(queryID string) []byte { return []byte("n/release/" + queryID) }

// keySwitch checks that what it is asked to decrypt is the sum of at least
// min_nodes distinct partials signed by members for this query id and epoch,
// recomputes that sum itself, and returns its key-switch share towards the
// target key. It helps with one release per query id: the same request again
// gets the same stored share, any other is refused.
func (n *Node) keySwitch(ctx context.Context, req *nodev1.KeySwitchRequest) (*nodev1.KeySwitchResponse, error) {
	resp, err := n.keySwitchChecked(ctx, req)
	if err != nil {
		n.metrics.releases.WithLabelValues("refused").Inc()
		n.record(ctx, n.id, "release.refused", req.GetQueryId(), map[string]any{"reason": err.Error()})
		return nil, err
	}
	outcome := "released"
	if req.GetPhase() == nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE {
		outcome = "prepared"
	}
	n.metrics.releases.WithLabelValues(outcome).Inc()
	return resp, nil
}

func (n *Node) keySwitchChecked(ctx context.Context, req *nodev1.KeySwitchRequest) (*nodev1.KeySwitchResponse, error) {
	qid := req.GetQueryId()
	e, err := n.releaseEpoch(ctx, "release", qid, req.GetEpoch())
	if err != nil {
		return nil, err
	}
	points, err := checkDecryptors(e, n.id, req.GetDecryptors())
	if err != nil {
		return nil, err
	}
	if req.GetPhase() == nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_RELEASE {
		return n.releasePrepared(ctx, e, req)
	}
	prepare := req.GetPhase() == nodev1.KeySwitchPhase_KEY_SWITCH_PHASE_PREPARE
	preq, err := planRequest(req.GetSpec())
	if err != nil {
		return nil, err
	}
	if preq.Threshold != e.Threshold {
		// As Evaluate refuses it: with the epoch's threshold T, min_nodes
		// >= T (plan.Build) puts at least one partial of a member outside
		// any T-1 colluders into every sum this node key-switches.
		return nil, fmt.Errorf("%w: the release assumes threshold %d, epoch %d has threshold %d", ErrBadRequest, preq.Threshold, e.Epoch, e.Threshold)
	}
	p, err := plan.Build(preq, n.cfg.Catalogue)
	if err != nil {
		return nil, err
	}
	minNodes := max(preq.MinNodes, n.cfg.Policy.MinNodes)
	if len(req.GetPartials()) < minNodes {
		return nil, fmt.Errorf("%w: %d partials for %s, at least %d needed (min_nodes)", ErrTooFewPartials, len(req.GetPartials()), qid, minNodes)
	}
	shape := protocol.PartialShapeOf(req.GetSpec(), p, e.Params)
	commitDigest := protocol.CommitDigest(qid, e.Epoch, req.GetSpec(), req.GetPartials())

	digest := releaseDigest(commitDigest, req)
	if resp, done, err := n.storedShare(qid, digest, prepare); done {
		return resp, err
	}

	var sum []*homomorphic.Ciphertext
	if len(req.GetSum()) > 0 {
		if sum, err = n.compactSum(e, qid, req, shape, commitDigest); err != nil {
			return nil, err
		}
	} else if sum, err = n.fullSum(e, qid, req, shape, commitDigest); err != nil {
		return nil, err
	}
	// A narrowing, not a closure, of key recovery by a member that crafts
	// its partial (docs/threat-model.md, "Members are semi-honest"): a sum
	// whose c1 is degenerate (zero, constant, sparse, low-entropy) would make
	// this node's key-switch share reveal its secret share.
	for i, ct := range sum {
		if err := homomorphic.CheckKeySwitchable(e.Params, ct); err != nil {
			return nil, fmt.Errorf("%w: the sum of the partials of %s (ciphertext %d) is not what honest encryptions add up to; "+
				"a member may have crafted its partial: %v", ErrBadPartial, qid, i, err)
		}
	}
	target, err := homomorphic.UnmarshalPublicKey(e.Params, req.GetTargetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("%w: target key: %v", ErrBadRequest, err)
	}
	sk, ts, err := n.releaseSecret(e, points)
	if err != nil {
		return nil, err
	}
	payload := &nodev1.KeySwitchPayload{CommitDigest: commitDigest, TargetKeyDigest: protocol.TargetKeyDigest(req.GetTargetPublicKey())}
	if len(req.GetSum()) > 0 {
		payload.SumDigest = protocol.SumDigest(req.GetSum())
	}
	// Every share goes out unproven; the coordinator asks for its proofs
	// when the release's total is refused (ProveKeySwitch, ksproof.go),
	// and this member makes the shares again then from its secret and the
	// same inputs.
	if payload.Shares, err = n.switchShares(e, sk, ts, points, target, sum, qid, commitDigest, payload.GetTargetKeyDigest(), nil); err != nil {
		return nil, err
	}
	signed, err := protocol.SealKeySwitchShare(n.cfg.Identity.Key, qid, e.Epoch, n.id, payload, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	sb, err := proto.Marshal(signed)
	if err != nil {
		return nil, err
	}
	var from []string
	for _, ps := range req.GetPartials() {
		from = append(from, ps.GetNodeId())
	}
	sumDigest, err := digestOfSum(sum)
	if err != nil {
		return nil, err
	}
	rec := &shareRecord{Digest: digest, Share: sb, Commit: commitDigest, From: from, Points: points, SumDigest: sumDigest}
	if resp, stored, err := n.storeShare(qid, rec, prepare); !stored || err != nil {
		return resp, err
	}
	if prepare {
		n.record(ctx, n.id, "release.prepared", qid, map[string]any{"partials_from": from, "decryptors": req.GetDecryptors()})
		return &nodev1.KeySwitchResponse{}, nil
	}
	n.record(ctx, n.id, "release.keyswitch_share", qid, map[string]any{"partials_from": from, "decryptors": req.GetDecryptors()})
	n.log.Info("released key-switch share", "query_id", qid, "partials", len(from), "decryptors", len(req.GetDecryptors()))
	return &nodev1.KeySwitchResponse{Share: signed}, nil
}

// fullSum opens every partial of a release that carries them, checks the
// senders' commitments to exactly this set and returns the partials' sum.
func (n *Node) fullSum(e *epochState, qid string, req *nodev1.KeySwitchRequest, shape protocol.PartialShape, commitDigest []byte) ([]*homomorphic.Ciphertext, error) {
	vectors, seen, err := n.openPartials(e, qid, req, shape)
	if err != nil {
		return nil, err
	}
	if err := n.checkCommits(e, qid, commitDigest, seen, req.GetCommits()); err != nil {
		return nil, err
	}
	return homomorphic.Sum(e.Params, vectors)
}

// openPartials runs every check of every partial of a release that
// carries them (protocol.OpenPartial) and verifies their proofs of
// encryption (protocol.CheckEncryptionProofs, then all range proofs at once with protocol.CheckRangeProofs), naming the sender of the
// first that fails. It returns their ciphertexts and the senders.
func (n *Node) openPartials(e *epochState, qid string, req *nodev1.KeySwitchRequest, shape protocol.PartialShape) ([][]*homomorphic.Ciphertext, map[string]bool, error) {
	partials := req.GetPartials()
	members := make([]member, len(partials))
	seen := map[string]bool{}
	for i, ps := range partials {
		from := ps.GetNodeId()
		m, ok := e.member(from)
		if !ok {
			return nil, nil, fmt.Errorf("%w: partial from %q: not a member of epoch %d", ErrBadPartial, from, e.Epoch)
		}
		if seen[from] {
			return nil, nil, fmt.Errorf("%w: two partials from %s", ErrBadPartial, from)
		}
		seen[from] = true
		members[i] = m
	}
	// No replay cache: a partial is bound to this query id, epoch and
	// node, and the release record below lets a query id be released
	// once; presenting the same partials again (a retry after a refusal)
	// must work.
	w := n.window(nil)
	// A query that waited for approvals holds the partials of the nodes
	// that answered at once up to its approval wait.
	w.MaxSkew = protocol.PartialAge(req.GetSpec(), w.MaxSkew)
	if protocol.IsSeriesQuery(qid) {
		w.MaxSkew = protocol.SeriesPartialAge // replayed to every retry (protocol.SeriesPartialAge)
	}
	// The partials are opened and their proofs verified on every core (a
	// proof takes about 2 ms); the first failure in the request's order is
	// the one reported.
	vectors := make([][]*homomorphic.Ciphertext, len(partials))
	errs := make([]error, len(partials))
	ranges := make([]rangeproof.Item, len(partials))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, ps := range partials {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			from := ps.GetNodeId()
			pt, err := protocol.OpenPartial(members[i].Cert.PublicKey, ps.GetSigned(), qid, e.Epoch, from, w, shape)
			if err != nil {
				// Not a PartialRefusal: the coordinator ran the same checks
				// as the partial arrived (a freshness window that has since
				// run out is this decryptor's view, not a bad partial).
				errs[i] = fmt.Errorf("%w: partial from %s: %v", ErrBadPartial, from, err)
				return
			}
			if err := protocol.CheckEncryptionProofs(e.Params, e.PublicKey, pt, qid, e.Epoch, from, shape.SpecDigest, n.cfg.Policy.AcceptUnprovenPartials); err != nil {
				errs[i] = refusePartial(from, fmt.Errorf("%w: partial from %s: %v; nothing was key-switched", ErrBadPartial, from, err))
				return
			}
			vectors[i] = pt.Ciphertexts
			ranges[i] = protocol.RangeProofItem(pt, qid, e.Epoch, from, shape)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	// The range proofs of all partials at once (one multi-scalar
	// multiplication); the first that fails, in the request's order, is
	// reported.
	var items []rangeproof.Item
	var senders []string
	for i, it := range ranges {
		if len(vectors[i]) > 0 { // not a benchmark plaintext partial
			items = append(items, it)
			senders = append(senders, partials[i].GetNodeId())
		}
	}
	for i, err := range protocol.CheckRangeProofs(items, n.cfg.Policy.SkipRangeProofs) {
		if err != nil {
			return nil, nil, refusePartial(senders[i], fmt.Errorf("%w: partial from %s: %v; nothing was key-switched", ErrBadPartial, senders[i], err))
		}
	}
	return vectors, seen, nil
}

// refusePartial returns err, this decryptor's refusal of from's partial
// for its proofs (of encryption, or of range), carrying from as a
// PartialRefusal detail (rpc.ToStatus sends it): the coordinator, which
// leaves the proofs of encryption of a full release to the decryptors,
// checks that partial itself to tell a bad partial from a false refusal
// (docs/crypto.md, "Who checks the proofs of encryption").
func refusePartial(from string, err error) error {
	return &partialRefused{from: from, err: err}
}

type partialRefused struct {
	from string
	err  error
}

func (p *partialRefused) Error() string { return p.err.Error() }
func (p *partialRefused) Unwrap() error { return p.err }
func (p *partialRefused) StatusDetails() []protoadapt.MessageV1 {
	return []protoadapt.MessageV1{&nodev1.PartialRefusal{NodeId: p.from}}
}

// compactSum checks the sum of a compact release (docs/crypto.md,
// "Checking a sum without its partials"): the partials are named by their
// senders' ids, headers and signatures only; every sender, and no other
// node, must have signed a ReleaseCommitment to this set and this sum for
// this spec; and the fingerprint of the sum must be the sum of their
// fingerprints. It returns the sum.
func (n *Node) compactSum(e *epochState, qid string, req *nodev1.KeySwitchRequest, shape protocol.PartialShape, commitDigest []byte) ([]*homomorphic.Ciphertext, error) {
	withPayloads := 0
	for _, ps := range req.GetPartials() {
		if len(ps.GetSigned().GetPayload()) > 0 {
			withPayloads++
		}
	}
	switch {
	case withPayloads == 0 && !n.cfg.Policy.AcceptUnprovenPartials:
		return nil, fmt.Errorf("%w: a compact release of %s carries the sum, not the partials, so this node cannot verify their proofs of encryption "+
			"(policy accept_unproven_partials is off; the coordinator's compact_release must be off too)", ErrBadRequest, qid)
	case withPayloads != 0 && withPayloads != len(req.GetPartials()):
		return nil, fmt.Errorf("%w: %d of the %d partials of %s carry their payload: all or none must", ErrBadRequest, withPayloads, len(req.GetPartials()), qid)
	}
	want := e.Params.NumCiphertexts(rangeproof.EncodedLen(shape.VectorLen))
	if len(req.GetSum()) != want {
		return nil, fmt.Errorf("%w: a sum of %d ciphertexts for %s, the plan needs %d", ErrBadPartial, len(req.GetSum()), qid, want)
	}
	sum := make([]*homomorphic.Ciphertext, want)
	for i, b := range req.GetSum() {
		ct, err := homomorphic.UnmarshalCiphertext(e.Params, b)
		if err != nil {
			return nil, fmt.Errorf("%w: sum of %s, ciphertext %d: %v", ErrBadPartial, qid, i, err)
		}
		sum[i] = ct
	}
	senders := map[string]bool{}
	for _, ps := range req.GetPartials() {
		from := ps.GetNodeId()
		if _, ok := e.member(from); !ok || senders[from] {
			return nil, fmt.Errorf("%w: partial from %q: not a member of epoch %d, or repeated", ErrBadPartial, from, e.Epoch)
		}
		senders[from] = true
	}
	commits := map[string]*nodev1.ReleaseCommitment{}
	for _, c := range req.GetCommits() {
		from := c.GetNodeId()
		m, ok := e.member(from)
		if !ok || !senders[from] || commits[from] != nil {
			return nil, fmt.Errorf("%w: commitment from %q: not a sender of this release, or repeated", ErrBadRequest, from)
		}
		rc, err := protocol.OpenReleaseCommitment(m.Cert.PublicKey, c.GetSigned(), qid, e.Epoch, from, n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: commitment from %s: %v", ErrBadRequest, from, err)
		}
		commits[from] = rc
	}
	var missing []string
	for id := range senders {
		if commits[id] == nil {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: no commitment to this set of partials from %v (every node whose partial is released must commit)", ErrBadRequest, missing)
	}
	if err := protocol.CheckCompactSum(e.Params, sum, req.GetSum(), commitDigest, shape.SpecDigest, commits); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPartial, qid, err)
	}
	if withPayloads > 0 {
		// The partials came too: every proof of encryption is verified, and
		// the sum must be exactly theirs.
		vectors, _, err := n.openPartials(e, qid, req, shape)
		if err != nil {
			return nil, err
		}
		own, err := homomorphic.Sum(e.Params, vectors)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPartial, qid, err)
		}
		for i := range own {
			if !own[i].Equal(sum[i]) {
				return nil, fmt.Errorf("%w: %s: ciphertext %d of the sum is not the sum of the partials sent with it", ErrBadPartial, qid, i)
			}
		}
	}
	return sum, nil
}

// releaseDigest identifies a release request: its partial set (the commit
// digest: query id, epoch, spec and partials), the target key and the
// decryptors.
func releaseDigest(commitDigest []byte, req *nodev1.KeySwitchRequest) []byte {
	h := sha256.New()
	h.Write(commitDigest)
	fmt.Fprintf(h, "%d\x00", len(req.GetTargetPublicKey()))
	h.Write(req.GetTargetPublicKey())
	dec := slices.Clone(req.GetDecryptors())
	sort.Strings(dec)
	for _, d := range dec {
		fmt.Fprintf(h, "\x01%s", d)
	}
	return h.Sum(nil)
}
