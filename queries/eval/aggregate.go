package eval

import (
	"fmt"
	"math"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// keyIndex compiles one group key into row -> label index (-1: outside the
// public domain, the row is dropped).
func (ev *evaluator) keyIndex(k plan.Key, tb *cdm.Table) (func(int) int, error) {
	n := len(k.Labels)
	switch k.Kind {
	case plan.KeyString:
		col, via, err := ev.stringCol(k.Col, tb)
		if err != nil {
			return nil, err
		}
		lab := make([]int32, col.Dict.Len())
		for i := range lab {
			lab[i] = -1
		}
		for i, l := range k.Labels {
			forms := []string{l}
			if k.Codes {
				forms = terminology.Forms(l)
			}
			for _, f := range forms {
				if id, ok := col.Dict.Lookup(f); ok && lab[id] < 0 {
					lab[id] = int32(i)
				}
			}
		}
		if via {
			pl := make([]int32, len(ev.prow))
			for pi, r := range ev.prow {
				pl[pi] = -1
				if r >= 0 {
					pl[pi] = lab[col.IDs[r]]
				}
			}
			pat := tb.Patient
			return func(r int) int { return int(pl[pat[r]]) }, nil
		}
		ids := col.IDs
		if c, ok := codedOf(k.Col, tb); ok {
			return codedKey(c, k, lab, ids), nil
		}
		return func(r int) int { return int(lab[ids[r]]) }, nil
	case plan.KeyWeek, plan.KeyMonth, plan.KeyYear:
		date, err := ev.rowValue(plan.ColumnValue{Col: k.Col}, tb)
		if err != nil {
			return nil, err
		}
		bucket := cdm.Date.Week
		if k.Kind == plan.KeyMonth {
			bucket = cdm.Date.Month
		} else if k.Kind == plan.KeyYear {
			bucket = cdm.Date.Year
		}
		first := k.First
		return func(r int) int {
			d := date(r)
			if math.IsNaN(d) {
				return -1
			}
			i := bucket(cdm.Date(d)) - first
			if i < 0 || i >= n {
				return -1
			}
			return i
		}, nil
	case plan.KeyBin:
		x, err := ev.rowValue(k.Value, tb)
		if err != nil {
			return nil, err
		}
		return func(r int) int { return k.BinIndex(x(r)) }, nil
	case plan.KeyAgeBand:
		ages, pat := ev.ageTable(), tb.Patient
		bands := n
		unknown, open := -1, -1
		if k.Unknown {
			bands--
			unknown = n - 1
		}
		if k.OpenTop {
			bands--
			open = bands
		}
		return func(r int) int {
			a := int(ages[pat[r]])
			switch {
			case a < 0:
				return unknown
			case k.OpenTop && a >= k.Top:
				return open
			case a < k.Start:
				return -1
			}
			i := (a - k.Start) / k.Width
			if i >= bands {
				return -1
			}
			return i
		}, nil
	}
	return nil, fmt.Errorf("%w: unsupported key kind %d", ErrData, k.Kind)
}

// aggregate computes the slots over the filtered rows, enforcing the
// contribution bounds.
func (ev *evaluator) aggregate(tb *cdm.Table, rows bitset) ([]float64, error) {
	p := ev.p
	keys, ms := p.Keys(), p.Measures()
	cells := p.Cells()
	out := make([]float64, len(ms)*cells)

	// Fast path: one cell, only COUNT(DISTINCT patient_id).
	if len(keys) == 0 && len(ms) == 1 && ms[0].Kind == plan.CountDistinct {
		seen := newBitset(len(ev.prow))
		pat := tb.Patient
		rows.each(func(r int) { seen.set(int(pat[r])) })
		out[0] = float64(seen.count())
		return out, nil
	}

	vals, err := ev.measureValues(ms, tb)
	if err != nil {
		return nil, err
	}
	err = ev.walkBounded(tb, rows, nil, len(ev.prow), func(r, c int, _ uint32, first bool) {
		for i := range ms {
			out[i*cells+c] += rowContribution(&ms[i], vals[i], r, first)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// measureValues compiles the Value of every measure that has one on tb
// (nil entries for the others).
func (ev *evaluator) measureValues(ms []plan.Measure, tb *cdm.Table) ([]func(int) float64, error) {
	vals := make([]func(int) float64, len(ms))
	for i, m := range ms {
		if m.Value != nil {
			f, err := ev.rowValue(m.Value, tb)
			if err != nil {
				return nil, err
			}
			vals[i] = f
		}
	}
	return vals, nil
}

// rowContribution is what row r, admitted by walkBounded, adds to measure
// m's cell: 1 for COUNT(*), 1 on the unit's first row in the cell for
// COUNT(DISTINCT), 1 for a non-missing value (CountValues), and the
// clamped, centred value (squared for SumSquares) for sums; 0 for a
// missing value.
func rowContribution(m *plan.Measure, val func(int) float64, r int, first bool) float64 {
	switch m.Kind {
	case plan.CountRows:
		return 1
	case plan.CountDistinct:
		if first {
			return 1
		}
	case plan.CountValues:
		if !math.IsNaN(val(r)) {
			return 1
		}
	case plan.Sum, plan.SumSquares:
		x := val(r)
		if math.IsNaN(x) {
			return 0
		}
		x = math.Min(math.Max(x, m.Lo), m.Hi) - m.Center
		if m.Kind == plan.SumSquares {
			x *= x
		}
		return x
	}
	return 0
}

// cellIndex compiles the plan's group keys on tb into row -> cell (-1:
// outside the public domain) and reports whether a key is row-level.
func (ev *evaluator) cellIndex(tb *cdm.Table) (cellOf func(int) int, rowLevel bool, err error) {
	keys := ev.p.Keys()
	idx := make([]func(int) int, len(keys))
	strides := make([]int, len(keys))
	s := 1
	for i := len(keys) - 1; i >= 0; i-- {
		f, err := ev.keyIndex(keys[i], tb)
		if err != nil {
			return nil, false, err
		}
		idx[i], strides[i] = f, s
		s *= len(keys[i].Labels)
		rowLevel = rowLevel || keys[i].RowLevel
	}
	cellOf = func(r int) int {
		c := 0
		for i, f := range idx {
			j := f(r)
			if j < 0 {
				return -1
			}
			c += j * strides[i]
		}
		return c
	}
	return cellOf, rowLevel, nil
}

// walkBounded calls f, in row order, for every row of rows that counts
// under the plan's contribution bounds, the privacy proof's rules: the row
// is in the public group domain (cell c), c is among the first G cells of
// its unit, and the row is among the first R rows of its unit in c. first
// is set on the unit's first row in c. The unit of a row is its patient
// (unit nil) or unit[patient] < nunits (eval.LinkElements: the resident,
// so that two local patients of one resident share one bound; cells are
// then always counted per unit, as for row-level keys). It honours
// ev.ctx every 65,536 rows.
func (ev *evaluator) walkBounded(tb *cdm.Table, rows bitset, unit []uint32, nunits int, f func(r, c int, u uint32, first bool)) error {
	cellOf, rowLevel, err := ev.cellIndex(tb)
	if err != nil {
		return err
	}
	if unit != nil {
		// Patients merged into one unit may disagree on a patient
		// attribute (two hospitals, two regions): count cells per unit.
		rowLevel = true
	}
	p := ev.p
	G, R := uint32(p.MaxGroupsPerPatient()), uint32(p.MaxRowsPerPatient())
	pat := tb.Patient

	// Rows used per (unit, cell). Without row-level keys every row of a
	// unit falls in the same cell, so the pair is the unit.
	var perUnit []uint32
	var pairs map[uint64]uint32
	var groupsUsed []uint32
	if rowLevel {
		pairs = make(map[uint64]uint32)
		groupsUsed = make([]uint32, nunits)
	} else {
		perUnit = make([]uint32, nunits)
	}
	var ctxErr error
	n := 0
	rows.each(func(r int) {
		if ctxErr != nil {
			return
		}
		if n++; n&0xFFFF == 0 {
			if ctxErr = ev.ctx.Err(); ctxErr != nil {
				return
			}
		}
		c := cellOf(r)
		if c < 0 {
			return
		}
		u := pat[r]
		if unit != nil {
			u = unit[u]
		}
		first := false
		if rowLevel {
			key := uint64(u)<<32 | uint64(c)
			used, seen := pairs[key]
			if !seen {
				if groupsUsed[u] >= G {
					return
				}
				groupsUsed[u]++
				first = true
			}
			if used >= R {
				return
			}
			pairs[key] = used + 1
		} else {
			used := perUnit[u]
			if used >= R {
				return
			}
			perUnit[u] = used + 1
			first = used == 0
		}
		f(r, c, u, first)
	})
	return ctxErr
}
