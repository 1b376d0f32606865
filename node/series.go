package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// A standing series (docs/statistics.md, "Continual release") is answered
// like any query, with three differences, all checked here and not taken
// from the coordinator's word:
//
//   - the query must be exactly the series' query for the interval it names
//     (protocol.SeriesQuery: SQL, budget, reference date, query id), for an
//     interval that is over by this node's clock;
//   - the node charges the series' lifetime budget once, at its first query
//     (a ledger entry of its own, protocol.SeriesReservationID, replayed
//     after a restart), and each interval then at no further cost: the
//     binary-tree mechanism's noise makes the whole lifetime cost ρ
//     (continual.NodeRho). Each interval has a fixed query id, so it is
//     answered once and replayed to a retry, never drawn afresh;
//   - each patient counts in at most its first K periods of the series
//     (eval.PeriodCounts), the bound the accounting assumes.

// SeriesSource is a DataSource that can count the periods of a standing
// series with the K bound (eval.PeriodCounts).
type SeriesSource interface {
	Periods(ctx context.Context, p *plan.Plan, w eval.Periods) (*eval.Exact, error)
}

// Periods implements SeriesSource on the current tables.
func (f TablesFunc) Periods(ctx context.Context, p *plan.Plan, w eval.Periods) (*eval.Exact, error) {
	return eval.PeriodCounts(ctx, p, f(), w)
}

// ErrSeries marks a series query that is not the series' own.
var ErrSeries = errors.New("node: not a query of the series")

// seriesQuery is a checked series query.
type seriesQuery struct {
	in      *nodev1.SeriesInterval
	iv      continual.Interval
	periods eval.Periods
}

// checkSeries checks that req is the query of the series interval it names.
func (n *Node) checkSeries(req *nodev1.EvaluateBody, p *plan.Plan) (*seriesQuery, error) {
	in := req.GetSeries()
	s := in.GetSpec()
	sch, err := protocol.CheckSeries(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSeries, err)
	}
	iv := continual.Interval{Level: int(in.GetLevel()), Index: int(in.GetIndex())}
	want, err := protocol.SeriesQuery(s, iv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSeries, err)
	}
	got := req.GetSpec()
	switch {
	case req.GetQueryId() != protocol.SeriesQueryID(s, iv):
		return nil, fmt.Errorf("%w: query id %q is not interval %s of series %s", ErrSeries, req.GetQueryId(), iv, s.GetName())
	case got.GetSql() != want.GetSql():
		return nil, fmt.Errorf("%w: the SQL is not the series' query for interval %s", ErrSeries, iv)
	case got.GetReferenceDate() != want.GetReferenceDate():
		return nil, fmt.Errorf("%w: reference date %s, the series' is its start, %s", ErrSeries, got.GetReferenceDate(), want.GetReferenceDate())
	case p.Mechanism() != plan.Gaussian || got.GetDelta() != want.GetDelta() || !sameRho(p.Rho(), continual.NodeRho(protocol.SeriesRho(s), int(s.GetPeriods()), int(s.GetMaxPeriodsPerPatient()))):
		return nil, fmt.Errorf("%w: the budget of interval %s is not the series' (Gaussian, ρ = lifetime ρ / W(T, K))", ErrSeries, iv)
	case got.GetMinNodes() < s.GetMinNodes():
		return nil, fmt.Errorf("%w: min_nodes %d is below the series' %d", ErrSeries, got.GetMinNodes(), s.GetMinNodes())
	}
	_, last := sch.Bounds(iv.Last())
	if today := cdm.DateOf(n.cfg.Now()); last >= today {
		return nil, fmt.Errorf("%w: interval %s of series %s ends %s, which is not over at this node (today is %s)", ErrSeries, iv, s.GetName(), last, today)
	}
	if len(p.Measures()) != 1 || p.Measures()[0].Kind != plan.CountDistinct {
		return nil, fmt.Errorf("%w: a series counts COUNT(DISTINCT patient_id)", ErrSeries)
	}
	return &seriesQuery{in: in, iv: iv, periods: eval.Periods{
		Column: s.GetDateColumn(), Period: sch.Period, First: iv.First(), Last: iv.Last(), K: int(s.GetMaxPeriodsPerPatient()),
	}}, nil
}

func sameRho(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(a, b) }

// reserveSeries charges the series' lifetime budget to the analyst, once:
// the ledger entry's answer is the series digest, so a second series under
// the same name with another definition is another reservation (its queries
// have other ids), and a replay of this one costs nothing.
func (n *Node) reserveSeries(ctx context.Context, analyst string, sq *seriesQuery) error {
	s := sq.in.GetSpec()
	digest := protocol.SeriesDigest(s)
	rho := protocol.SeriesRho(s)
	ans, replayed, err := n.ledger.Charge(ctx, protocol.SeriesReservationID(s), analyst, rho, func() ([]byte, error) {
		return digest, nil
	})
	if err != nil {
		return err
	}
	if !bytes.Equal(ans, digest) {
		return fmt.Errorf("%w: the reservation of series %s is for another definition", ErrSeries, s.GetName())
	}
	if !replayed {
		n.metrics.rho.Add(rho)
		n.record(ctx, n.id, "budget.debited", protocol.SeriesReservationID(s), map[string]any{
			"analyst": analyst, "rho": rho, "series": s.GetName(), "periods": s.GetPeriods(), "max_periods_per_patient": s.GetMaxPeriodsPerPatient()})
		n.log.Info("reserved the lifetime budget of a standing series", "series", s.GetName(), "analyst", analyst, "rho", rho)
	}
	return nil
}

// seriesExact counts the interval's periods with the K bound, and with the
// node's memory of the series: the periods each patient counted in before
// (n/series-counted/<reservation>/<patient id>), which the patient keeps
// whatever happened to its rows since, so that a deleted or corrected
// record cannot let a patient count in more than K periods
// (eval.Periods.Counted). The memory is written before the answer leaves
// the node (the ledger commits the answer after compute returns); series
// evaluations are serialised so that two intervals cannot both add
// periods to one patient's memory.
func (n *Node) seriesExact(ctx context.Context, p *plan.Plan, sq *seriesQuery) (*eval.Exact, error) {
	src, ok := n.cfg.Data.(SeriesSource)
	if !ok {
		return nil, fmt.Errorf("%w: this node's data back end cannot answer standing series (the embedded store can)", ErrPolicy)
	}
	n.seriesMu.Lock()
	defer n.seriesMu.Unlock()
	prefix := []byte("n/series-counted/" + protocol.SeriesReservationID(sq.in.GetSpec()) + "/")
	before := map[string][]int32{}
	err := n.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefix, func(k, v []byte) error {
			periods, err := decodePeriods(v)
			if err != nil {
				return fmt.Errorf("node: series memory %s: %w", k, err)
			}
			before[string(k[len(prefix):])] = periods
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	w := sq.periods
	w.Counted = make(map[string][]int32, len(before))
	for id, ps := range before {
		w.Counted[id] = ps
	}
	exact, err := src.Periods(ctx, p, w)
	if err != nil {
		return nil, err
	}
	err = n.cfg.DB.Update(func(tx *kv.Txn) error {
		for id, ps := range w.Counted {
			if slices.Equal(ps, before[id]) {
				continue
			}
			if err := tx.Set(append(slices.Clone(prefix), id...), encodePeriods(ps)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return exact, nil
}

func encodePeriods(ps []int32) []byte {
	var b []byte
	for _, p := range ps {
		b = binary.AppendUvarint(b, uint64(p))
	}
	return b
}

func decodePeriods(b []byte) ([]int32, error) {
	var out []int32
	for len(b) > 0 {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > math.MaxInt32 {
			return nil, errors.New("damaged period list")
		}
		out = append(out, int32(v))
		b = b[k:]
	}
	return out, nil
}

// An interval answered in key epoch E and not released in it (a re-key came
// first) would otherwise never be released: its query id has no epoch, so
// the ledger replays the epoch-E partial in every later epoch, and no
// decryptor of E is left once E's grace has passed. So the node keeps the
// noisy share of every interval it answers (n/series-share/<query id>, the
// payload with the share in the clear, beside the raw data it was computed
// from) and, asked for the interval in a later epoch, sends the same share
// encrypted under that epoch's key, charging nothing: the same noisy value,
// never a fresh draw. Two conditions keep that to one release per interval:
//
//   - epoch E is over at this node (past PreviousEpochGrace): a release in E
//     may still be under way until then;
//   - this node never revealed its epoch-E partial (no n/commit/<query id>):
//     a node commits to one partial set per query id, across epochs, and a
//     set of E+1 is another set, so a node that took part in a release
//     attempt in E refuses to take part in one in E+1.

func seriesShareKey(qid string) []byte { return []byte("n/series-share/" + qid) }

// keepSeriesShare stores payload (without ciphertexts) with slots, the
// interval's noisy share, under the interval's query id.
func (n *Node) keepSeriesShare(qid string, payload *nodev1.PartialPayload, slots []int64) error {
	kept := proto.Clone(payload).(*nodev1.PartialPayload)
	kept.Plaintext = slots
	b, err := proto.Marshal(kept)
	if err != nil {
		return err
	}
	return n.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(seriesShareKey(qid), b) })
}

// reencryptInterval returns answer, the stored partial of series interval
// req, unchanged when it is of epoch e; when it is of an earlier epoch that
// is over, it replaces it in the ledger with the interval's kept noisy
// share encrypted under e's key and returns that partial and its payload.
func (n *Node) reencryptInterval(ctx context.Context, e *epochState, req *nodev1.EvaluateBody, rho float64, p *plan.Plan, answer []byte) ([]byte, *nodev1.PartialPayload, error) {
	qid := req.GetQueryId()
	var signed typesv1.Signed
	if err := proto.Unmarshal(answer, &signed); err != nil {
		return nil, nil, fmt.Errorf("node: stored answer of %s: %w", qid, err)
	}
	was, err := protocol.PartialEpoch(signed.GetHeader(), qid, n.id)
	if err != nil {
		return nil, nil, fmt.Errorf("node: stored answer of %s: %w", qid, err)
	}
	if cur, err := n.current(); err != nil || was >= e.Epoch || cur.Epoch != e.Epoch {
		// This epoch's partial, or asked in an epoch that is not the
		// newest: the stored answer as it is.
		return answer, nil, nil
	}
	n.mu.RLock()
	prev, until := n.previous, n.previousUntil
	n.mu.RUnlock()
	if prev != nil && prev.Epoch == was && n.cfg.Now().Before(until) {
		return nil, nil, fmt.Errorf("%w: this node answered %s in epoch %d, which it serves until %s for a release that may be under way; "+
			"asked in epoch %d after that, it sends the same noisy share under epoch %d's key", ErrWrongEpoch, qid, was, until.UTC().Format(time.RFC3339), e.Epoch, e.Epoch)
	}
	var made *nodev1.PartialPayload
	// Held until the ledger has committed the new partial: no reveal can
	// fix a set of the old one in between (fixSet takes it too).
	n.releaseMu.Lock()
	defer n.releaseMu.Unlock()
	out, replaced, err := n.ledger.Replace(ctx, qid, req.GetAnalyst(), rho, func(stored []byte) ([]byte, error) {
		if !bytes.Equal(stored, answer) {
			return nil, nil // replaced meanwhile by a concurrent request
		}
		switch _, err := n.cfg.DB.Get(commitKey(qid)); {
		case err == nil:
			return nil, fmt.Errorf("%w: %s: this node revealed its partial of epoch %d for a release that did not finish in that epoch; "+
				"a partial of it in epoch %d would be a second release of the interval", ErrAlreadyReleased, qid, was, e.Epoch)
		case !errors.Is(err, kv.ErrNotFound):
			return nil, err
		}
		b, err := n.cfg.DB.Get(seriesShareKey(qid))
		if errors.Is(err, kv.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s: this node answered it in epoch %d without keeping its noisy share (an older version, or benchmark plaintext mode), "+
				"so it cannot send it in epoch %d", ErrWrongEpoch, qid, was, e.Epoch)
		}
		if err != nil {
			return nil, err
		}
		var kept nodev1.PartialPayload
		if err := proto.Unmarshal(b, &kept); err != nil {
			return nil, fmt.Errorf("node: kept share of %s: %w", qid, err)
		}
		switch {
		case !bytes.Equal(kept.GetSpecDigest(), protocol.SpecDigest(req.GetSpec())):
			return nil, fmt.Errorf("%w: %s: this node's share was noised in epoch %d for another spec (min_nodes, or the epoch's threshold, differ); "+
				"the interval cannot be released in epoch %d", ErrWrongEpoch, qid, was, e.Epoch)
		case kept.GetPlanFingerprint() != p.Fingerprint():
			return nil, fmt.Errorf("%w: %s: this node's share was planned in epoch %d with another catalogue; the interval cannot be released in epoch %d", ErrWrongEpoch, qid, was, e.Epoch)
		}
		slots := kept.Plaintext
		kept.Plaintext = nil
		next, payload, err := n.sealPartial(e, qid, req.GetSpec(), &kept, slots, p)
		made = payload
		return next, err
	})
	if err != nil {
		return nil, nil, err
	}
	if !replaced {
		return out, nil, nil
	}
	n.record(ctx, n.id, "partial.reencrypted", qid, map[string]any{"from_epoch": was, "epoch": e.Epoch})
	n.log.Info("sent a series interval of an earlier key epoch under the new key", "query_id", qid, "from_epoch", was, "epoch", e.Epoch)
	return out, made, nil
}
