package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
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
