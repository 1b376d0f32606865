package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/releasecheck"
	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
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
// rounds before, as their release records proved them (checkRoundRecords;
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
		if p, ok := errors.AsType[*protocol.AnalysisPanic](err); ok {
			n.log.Warn("a signed analysis panicked on the results of its earlier rounds; the round is refused",
				"query_id", req.GetQueryId(), "method", a.Spec.GetMethod(), "round", p.Round, "panic", fmt.Sprint(p.Value), "stack", string(p.Stack))
		}
		return fmt.Errorf("%w: %w", signedquery.ErrInvalid, err)
	}
	if err := protocol.CheckAnalysisRound(a.Spec, want, req.GetSpec()); err != nil {
		return fmt.Errorf("%w: round %d of %q's signed %s analysis: %w", signedquery.ErrInvalid, round.GetRound(), a.Name, a.Spec.GetMethod(), err)
	}
	return nil
}

// checkRoundRecords checks that each round before round was released with
// the result round.results gives it, and returns those results. A round's
// release record, when sent, is checked (internal/releasecheck: the
// partial headers, commitments, sum and key-switch shares signed by nodes
// of the network CA and, where the result key is in the record, the
// decryption), must be the release of that round of this signed analysis
// (its query id) with that result, and is remembered (rememberRound); a
// round whose record is not sent must be one this node checked before,
// with the same result. So the results a round is recomputed from are the
// ones the network released, not the coordinator's word, and each record
// crosses the network to a node once.
func (n *Node) checkRoundRecords(sig *typesv1.AnalystSignature, round *nodev1.AnalysisRound) ([]*typesv1.Result, error) {
	r := int(round.GetRound())
	results := round.GetResults()
	if r < 1 || len(results) != r-1 {
		return nil, fmt.Errorf("%w: round %d comes with the results of %d rounds, want %d", signedquery.ErrInvalid, r, len(results), max(r-1, 0))
	}
	recs := map[string]*coordinatorv1.ReleaseRecord{}
	for _, rec := range round.GetRecords() {
		if recs[rec.GetQueryId()] != nil {
			return nil, fmt.Errorf("%w: two release records of query %s", signedquery.ErrInvalid, rec.GetQueryId())
		}
		recs[rec.GetQueryId()] = rec
	}
	for k := 1; k < r; k++ {
		qid, res := signedquery.AnalysisQueryID(sig, k), results[k-1]
		rec := recs[qid]
		delete(recs, qid)
		if rec == nil {
			known, err := n.checkedRound(qid)
			switch {
			case err != nil:
				return nil, err
			case known == nil:
				return nil, fmt.Errorf("%w: the release record of round %d (%s) was not sent, and this node has not checked it", signedquery.ErrInvalid, k, qid)
			case !proto.Equal(known, res):
				return nil, fmt.Errorf("%w: the result sent for round %d is not the one this node checked in its release record", signedquery.ErrInvalid, k)
			}
			continue
		}
		if !proto.Equal(rec.GetResult(), res) {
			return nil, fmt.Errorf("%w: the release record of round %d holds another result than the one sent for it", signedquery.ErrInvalid, k)
		}
		if _, err := releasecheck.Check(rec, releasecheck.Options{CA: n.cfg.Identity.CA, Released: res, Catalogue: n.cfg.Catalogue}); err != nil {
			return nil, fmt.Errorf("%w: the release record of round %d: %w", signedquery.ErrInvalid, k, err)
		}
		if err := n.rememberRound(qid, res); err != nil {
			return nil, err
		}
	}
	for qid := range recs {
		return nil, fmt.Errorf("%w: the release record of query %s is not of a round before round %d of this analysis", signedquery.ErrInvalid, qid, r)
	}
	return results, nil
}

// A round result a node checked is kept under n/analysis-round/<query id>
// (a checkedRound: the release time and the result) for
// checkedRoundRetention, past which no round of its analysis can run
// (signedquery.AnalysisMaxAge).
const checkedRoundRetention = 2 * signedquery.AnalysisMaxAge

func checkedRoundKey(qid string) []byte { return []byte("n/analysis-round/" + qid) }

// rememberRound keeps the result of round qid, checked now, and drops the
// kept results older than checkedRoundRetention.
func (n *Node) rememberRound(qid string, res *typesv1.Result) error {
	b, err := proto.Marshal(res)
	if err != nil {
		return err
	}
	now := n.cfg.Now()
	v := binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))
	v = append(v, b...)
	cutoff := uint64(now.Add(-checkedRoundRetention).UnixMilli())
	return n.cfg.DB.Update(func(tx *kv.Txn) error {
		var old [][]byte
		err := tx.Iterate([]byte("n/analysis-round/"), func(k, v []byte) error {
			if len(v) < 8 || binary.BigEndian.Uint64(v) < cutoff {
				old = append(old, append([]byte{}, k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return tx.Set(checkedRoundKey(qid), v)
	})
}

// checkedRound returns the result of round qid this node checked, or nil.
func (n *Node) checkedRound(qid string) (*typesv1.Result, error) {
	var out *typesv1.Result
	err := n.cfg.DB.View(func(tx *kv.Txn) error {
		v, err := tx.Get(checkedRoundKey(qid))
		if errors.Is(err, kv.ErrNotFound) || v == nil {
			return nil
		} else if err != nil {
			return err
		}
		if len(v) < 8 {
			return fmt.Errorf("node: %s: a truncated record", checkedRoundKey(qid))
		}
		out = &typesv1.Result{}
		return proto.Unmarshal(v[8:], out)
	})
	return out, err
}
