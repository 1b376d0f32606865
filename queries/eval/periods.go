package eval

import (
	"context"
	"fmt"
	"slices"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

// Periods describes one released interval of a standing series
// (queries/continual) to PeriodCounts.
type Periods struct {
	// Column is the date column of the plan's table (FROM) that places a
	// row in a period. Required.
	Column string
	// Period returns the period of a date: 0 for the series' first, -1
	// outside the series (before its start). It is called with valid dates
	// only. Required.
	Period func(d cdm.Date) int
	// First and Last are the periods of the interval being released,
	// inclusive. Required 0 <= First <= Last.
	First, Last int
	// K is the number of periods in which a patient may count over the
	// whole series: their first K periods with a matching row. Required
	// >= 1.
	K int
	// Counted, when set, is the node's memory of the series: the periods
	// in which each patient (by id) counted in the series' earlier
	// releases. A patient keeps those and may add periods (their first
	// matching ones not yet counted) only up to K in all, so that the
	// bound holds whatever happens to the data between releases (rows
	// deleted or corrected, not only added). PeriodCounts puts each
	// patient's periods as counted now back into it; the caller stores
	// them before the answer leaves the node. Nil: no memory (the
	// append-only rule of the package doc).
	Counted map[string][]int32
}

// PeriodCounts evaluates one interval of a standing series. p is the plan
// of
//
//	SELECT [key,] COUNT(DISTINCT patient_id) FROM t
//	WHERE (<where>) AND <Column> BETWEEN '<series start>' AND '<last day of Last>'
//	[GROUP BY key]
//
// with key, if any, a patient attribute (one cell per patient). For every
// patient it takes the distinct periods in which the patient has a row
// admitted by p's filter, in p's public group domain and with a date whose
// period is not -1, in ascending order; keeps the first w.K of them; and
// adds 1 to the patient's cell for each kept period within [w.First,
// w.Last]. The result has Evaluate's layout (one slot per cell) and its
// rules (it never leaves the node; dp.NoiseShare noises it).
//
// One patient thus adds up to min(K, Last−First+1) to one cell, more than
// the plan's per-query sensitivity of 1: the series' budget accounts for it
// (continual.Weight, continual.NodeRho), not the plan. Without memory
// (w.Counted nil) the first-K rule bounds the patient over the whole series
// only if the (patient, period) pairs the filter admits only grow between
// evaluations: rows may arrive late but must not be deleted or changed;
// with the node's memory of the series (w.Counted) it holds whatever
// changes (see Periods.Counted and docs/statistics.md). A node
// of n patients gives cells of at most
// n·min(K, Last−First+1); dp.NoiseShare refuses a cell beyond the plan's
// MaxAbsPartial (ErrRange).
//
// It refuses (ErrData) a nil plan or tables, a plan with other or more
// measures than one COUNT(DISTINCT patient_id), a row-level group key (a
// date or code bucket), a linked plan, a missing date column and a bad w.
// It honours ctx like Evaluate and is safe to call concurrently on the same
// tables.
func PeriodCounts(ctx context.Context, p *plan.Plan, t *cdm.Tables, w Periods) (*Exact, error) {
	if p == nil || t == nil {
		return nil, fmt.Errorf("%w: nil plan or tables", ErrData)
	}
	ms := p.Measures()
	switch {
	case len(ms) != 1 || ms[0].Kind != plan.CountDistinct:
		return nil, fmt.Errorf("%w: a standing series counts COUNT(DISTINCT patient_id) and nothing else; this plan has %d measures", ErrData, len(ms))
	case p.Link != nil:
		return nil, fmt.Errorf("%w: a standing series cannot count linked residents", ErrData)
	case w.Period == nil:
		return nil, fmt.Errorf("%w: the series has no period function", ErrData)
	case w.K < 1:
		return nil, fmt.Errorf("%w: a patient must count in at least K = 1 period, got K = %d", ErrData, w.K)
	case w.First < 0 || w.Last < w.First:
		return nil, fmt.Errorf("%w: periods %d..%d: want 0 <= first <= last", ErrData, w.First, w.Last)
	}
	for _, k := range p.Keys() {
		if k.RowLevel {
			return nil, fmt.Errorf("%w: a standing series groups by patient attributes only (sex, region, age band), not by %s, which can put one patient in several cells", ErrData, k.Name)
		}
	}
	if t.NumPatients() > p.MaxPatientsPerNode() {
		return nil, fmt.Errorf("%w: this node holds more patients than the network bound of %d per node (the exact number stays at the node)", ErrData, p.MaxPatientsPerNode())
	}
	ev, err := newEvaluator(ctx, p, t)
	if err != nil {
		return nil, err
	}
	root, err := ev.table(p.Table())
	if err != nil {
		return nil, err
	}
	dates, ok := root.Dates[w.Column]
	if !ok {
		return nil, fmt.Errorf("%w: table %s has no date column %s", ErrData, root.Name, w.Column)
	}
	rows := full(root.Rows)
	if wh := p.Where(); wh != nil {
		if rows, err = ev.pred(wh, root, rows); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cellOf, _, err := ev.cellIndex(root)
	if err != nil {
		return nil, err
	}

	// (patient, period) of every admitted row, packed so that sorting
	// orders by patient, then period.
	var pairs []uint64
	cell := make([]int32, len(ev.prow)) // patient -> cell (-1: none yet)
	for i := range cell {
		cell[i] = -1
	}
	pat := root.Patient
	var ctxErr error
	n := 0
	rows.each(func(r int) {
		if ctxErr != nil {
			return
		}
		if n++; n&0xFFFF == 0 {
			ctxErr = ctx.Err()
		}
		d := dates[r]
		if !d.Valid() {
			return
		}
		per := w.Period(d)
		if per < 0 || per > w.Last {
			// Periods after Last cannot be among the first K of any
			// period up to Last, nor count in [First, Last].
			return
		}
		c := cellOf(r)
		if c < 0 {
			return
		}
		pi := pat[r]
		// The key is a patient attribute: every row of a patient has the
		// patient's cell.
		cell[pi] = int32(c)
		pairs = append(pairs, uint64(pi)<<32|uint64(uint32(per)))
	})
	if ctxErr != nil {
		return nil, ctxErr
	}
	slices.Sort(pairs)
	pairs = slices.Compact(pairs)

	out := make([]float64, p.Cells())
	for i := 0; i < len(pairs); {
		pi := pairs[i] >> 32
		j := i
		for j < len(pairs) && pairs[j]>>32 == pi {
			j++
		}
		// pairs[i:j] are the patient's distinct periods, ascending; the
		// first K count.
		if w.Counted == nil {
			for _, pr := range pairs[i:min(j, i+w.K)] {
				if per := int(uint32(pr)); per >= w.First && per <= w.Last {
					out[cell[pi]]++
				}
			}
			i = j
			continue
		}
		// With the series' memory: the periods counted before stay
		// counted (even if their rows are gone), and the patient's first
		// matching periods not yet counted join them up to K.
		id := t.PatientIDs[pi]
		counted := slices.Clone(w.Counted[id])
		for _, pr := range pairs[i:j] {
			if len(counted) >= w.K {
				break
			}
			if per := int32(uint32(pr)); !slices.Contains(counted, per) {
				counted = append(counted, per)
			}
		}
		slices.Sort(counted)
		for _, per := range counted {
			if int(per) >= w.First && int(per) <= w.Last {
				out[cell[pi]]++
			}
		}
		w.Counted[id] = counted
		i = j
	}
	return &Exact{plan: p, values: out}, nil
}
