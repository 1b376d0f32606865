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

	idx := make([]func(int) int, len(keys))
	strides := make([]int, len(keys))
	rowLevel := false
	s := 1
	for i := len(keys) - 1; i >= 0; i-- {
		f, err := ev.keyIndex(keys[i], tb)
		if err != nil {
			return nil, err
		}
		idx[i], strides[i] = f, s
		s *= len(keys[i].Labels)
		rowLevel = rowLevel || keys[i].RowLevel
	}
	cellOf := func(r int) int {
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
	G, R := uint32(p.MaxGroupsPerPatient()), uint32(p.MaxRowsPerPatient())
	pat := tb.Patient
	npat := len(ev.prow)

	// Rows used per (patient, cell). Without row-level keys every row of a
	// patient falls in the same cell, so the pair is the patient.
	var perPatient []uint32
	var pairs map[uint64]uint32
	var groupsUsed []uint32
	if rowLevel {
		pairs = make(map[uint64]uint32)
		groupsUsed = make([]uint32, npat)
	} else {
		perPatient = make([]uint32, npat)
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
		pi := pat[r]
		var used uint32
		newPair := false
		if rowLevel {
			key := uint64(pi)<<32 | uint64(c)
			u, seen := pairs[key]
			if !seen {
				if groupsUsed[pi] >= G {
					return
				}
				groupsUsed[pi]++
				newPair = true
			}
			if u >= R {
				return
			}
			pairs[key] = u + 1
			used = u
		} else {
			used = perPatient[pi]
			if used >= R {
				return
			}
			perPatient[pi] = used + 1
			newPair = used == 0
		}
		_ = used
		for i := range ms {
			m := &ms[i]
			slot := i*cells + c
			switch m.Kind {
			case plan.CountRows:
				out[slot]++
			case plan.CountDistinct:
				if newPair {
					out[slot]++
				}
			case plan.CountValues:
				if !math.IsNaN(vals[i](r)) {
					out[slot]++
				}
			case plan.Sum, plan.SumSquares:
				x := vals[i](r)
				if math.IsNaN(x) {
					continue
				}
				x = math.Min(math.Max(x, m.Lo), m.Hi) - m.Center
				if m.Kind == plan.SumSquares {
					x *= x
				}
				out[slot] += x
			}
		}
	})
	if ctxErr != nil {
		return nil, ctxErr
	}
	return out, nil
}
