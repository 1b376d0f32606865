package node

import (
	"context"
	"fmt"

	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/releasecheck"
	"github.com/fedstat/fedstat/internal/signedquery"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// checkAnalysisRound checks a round of an analyst-signed statistical
// analysis (EvaluateBody.analysis), before anything is charged: the signed
// analysis (signedquery.OpenAnalysis: the certificate of the network CA
// valid now, with a role that may sign, the signature, the calling
// coordinator, signed within signedquery.AnalysisMaxAge), its name and
// role are the query's analyst and role, the query id is the round's
// (signedquery.AnalysisQueryID), and the query is the round's query as
// this node recomputes it from the signed analysis and the results of the
// rounds before, as their release records prove them (checkRoundRecords;
// protocol.AnalysisRound, protocol.CheckAnalysisRound). A round's query id
// is charged once by the ledger, so the rounds together cost at most the
// signed budget. The errors match signedquery.ErrInvalid.
func (n *Node) checkAnalysisRound(ctx context.Context, req *nodev1.EvaluateBody, coordinator string) error {
	round := req.GetAnalysis()
	sig := req.GetAnalystSignature()
	if sig == nil {
		return fmt.Errorf("%w: query %s is sent as round %d of an analysis without the analyst's signed analysis", signedquery.ErrInvalid, req.GetQueryId(), round.GetRound())
	}
	if req.GetSeries() != nil {
		return fmt.Errorf("%w: query %s is sent both as a series interval and as an analysis round", signedquery.ErrInvalid, req.GetQueryId())
	}
	a, err := signedquery.OpenAnalysis(n.cfg.Identity.CA, sig, coordinator, n.cfg.Now(), signedquery.AnalysisMaxAge+n.cfg.MaxSkew)
	if err != nil {
		return err
	}
	switch {
	case a.Name != req.GetAnalyst():
		return fmt.Errorf("%w: the analysis runs as %q's, and %q signed it", signedquery.ErrInvalid, req.GetAnalyst(), a.Name)
	case string(a.Role) != req.GetRole():
		return fmt.Errorf("%w: the analysis runs with role %q, and the certificate of %q has role %q", signedquery.ErrInvalid, req.GetRole(), a.Name, a.Role)
	case req.GetQueryId() != signedquery.AnalysisQueryID(sig, int(round.GetRound())):
		return fmt.Errorf("%w: query id %s is not round %d of %q's signed analysis (each round runs once, under its own id)",
			signedquery.ErrInvalid, req.GetQueryId(), round.GetRound(), a.Name)
	}
	previous, err := n.checkRoundRecords(sig, round)
	if err != nil {
		return err
	}
	want, err := protocol.AnalysisRound(ctx, a.Spec, n.cfg.Catalogue, int(round.GetRound()), previous)
	if err != nil {
		return fmt.Errorf("%w: %w", signedquery.ErrInvalid, err)
	}
	if err := protocol.CheckAnalysisRound(a.Spec, want, req.GetSpec()); err != nil {
		return fmt.Errorf("%w: round %d of %q's signed %s analysis: %w", signedquery.ErrInvalid, round.GetRound(), a.Name, a.Spec.GetMethod(), err)
	}
	return nil
}

// checkRoundRecords checks the release record of each round before round
// (internal/releasecheck: the partial headers, commitments, sum and
// key-switch shares signed by nodes of the network CA and, where the
// result key is in the record, the decryption) and that it is the release
// of that round of this signed analysis (its query id), and returns the
// rounds' released results. So the results a round is recomputed from are
// the ones the network released, not the coordinator's word.
func (n *Node) checkRoundRecords(sig *typesv1.AnalystSignature, round *nodev1.AnalysisRound) ([]*typesv1.Result, error) {
	recs := round.GetRecords()
	if r := int(round.GetRound()); r < 1 || len(recs) != r-1 {
		return nil, fmt.Errorf("%w: round %d comes with the release records of %d rounds, want %d", signedquery.ErrInvalid, r, len(recs), max(r-1, 0))
	}
	out := make([]*typesv1.Result, len(recs))
	for i, rec := range recs {
		if want := signedquery.AnalysisQueryID(sig, i+1); rec.GetQueryId() != want {
			return nil, fmt.Errorf("%w: the release record of round %d is of query %s, not of the round (%s)", signedquery.ErrInvalid, i+1, rec.GetQueryId(), want)
		}
		if rec.GetResult() == nil {
			return nil, fmt.Errorf("%w: the release record of round %d has no result", signedquery.ErrInvalid, i+1)
		}
		if _, err := releasecheck.Check(rec, releasecheck.Options{CA: n.cfg.Identity.CA, Released: rec.GetResult(), Catalogue: n.cfg.Catalogue}); err != nil {
			return nil, fmt.Errorf("%w: the release record of round %d: %w", signedquery.ErrInvalid, i+1, err)
		}
		out[i] = rec.GetResult()
	}
	return out, nil
}
