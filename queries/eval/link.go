package eval

import (
	stdcmp "cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

// ErrNotLinked is returned by LinkElements for a plan without a linked
// part (plan.Plan.Link is nil).
var ErrNotLinked = errors.New("eval: not a linked plan")

// LinkKey is a resident as the node knows them: Key is the value of the
// network's identifier system (Shared), or, for a patient without one, the
// node-local patient id (Shared false: the resident cannot be matched at
// another node; the caller must hash it so that it never matches).
type LinkKey struct {
	Key    string
	Shared bool
}

// LinkEntry is a resident in one cell of the outer table, with their
// bounded contribution to the payload measure (0 without payload).
type LinkEntry struct {
	LinkKey
	Value float64
}

// LinkLocal is a node's local part of a linked query (plan.LinkPlan): raw
// resident identifiers with exact values. It must never leave the node:
// only its encrypted, padded form may (the linkage protocol). String and
// LogValue redact it.
type LinkLocal struct {
	// Outer[g] lists, sorted by key, each resident with at least one row of
	// the outer table satisfying OuterWhere in cell g (cells numbered as
	// plan.Plan.Keys and Evaluate). Nil when the node holds no rows of the
	// outer table.
	Outer [][]LinkEntry
	// Filters[i] lists, sorted, each resident with at least one row of
	// Filters[i].Table satisfying its Where (whether the filter is negated
	// or not). A nil entry: the node holds no rows of that table.
	Filters [][]LinkKey
}

// String redacts the residents.
func (l *LinkLocal) String() string {
	return fmt.Sprintf("eval.LinkLocal{%d cells, %d filters, redacted}", len(l.Outer), len(l.Filters))
}

// LogValue redacts the residents.
func (l *LinkLocal) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("cells", len(l.Outer)), slog.Int("filters", len(l.Filters)), slog.String("residents", "redacted"))
}

func compareKeys(a, b LinkKey) int {
	if c := stdcmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	switch {
	case a.Shared == b.Shared:
		return 0
	case b.Shared:
		return -1
	}
	return 1
}

// LinkElements computes the node's local part of linked plan p over t.
//
// Residents are keyed by t.ResidentKey in p.Link.IdentifierSystem; two
// local patients with one key are one resident. Outer values are bounded
// per resident exactly as Evaluate bounds a patient: rows outside the
// public domain are dropped, at most G cells per resident and R rows per
// resident and cell count (the first, in row order), values are clamped to
// the payload measure's [Lo, Hi]; so one resident's value in a cell is at
// most the measure's PerCell, and it appears in at most G cells. It honours
// ctx between phases and within long scans, and is safe to call
// concurrently on the same tables.
func LinkElements(ctx context.Context, p *plan.Plan, t *cdm.Tables) (*LinkLocal, error) {
	if p == nil || t == nil {
		return nil, fmt.Errorf("%w: nil plan or tables", ErrData)
	}
	l := p.Link
	if l == nil {
		return nil, ErrNotLinked
	}
	if t.NumPatients() > p.MaxPatientsPerNode() {
		return nil, fmt.Errorf("%w: this node holds more patients than the network bound of %d per node (the exact number stays at the node)", ErrData, p.MaxPatientsPerNode())
	}
	ev, err := newEvaluator(ctx, p, t)
	if err != nil {
		return nil, err
	}
	rs := newResidents(t, l.IdentifierSystem)
	out := &LinkLocal{Filters: make([][]LinkKey, len(l.Filters))}

	if tb, ok := t.Table(l.Outer); ok && tb.Rows > 0 {
		if out.Outer, err = ev.linkOuter(tb, l, rs); err != nil {
			return nil, err
		}
	}
	for i, f := range l.Filters {
		tb, ok := t.Table(f.Table)
		if !ok || tb.Rows == 0 {
			continue
		}
		rows := full(tb.Rows)
		if f.Where != nil {
			if rows, err = ev.pred(f.Where, tb, rows); err != nil {
				return nil, err
			}
		}
		if err := rs.assign(ctx, tb, rows); err != nil {
			return nil, err
		}
		seen := make([]bool, len(rs.keys))
		list := []LinkKey{}
		pat := tb.Patient
		rows.each(func(r int) {
			if u := rs.unit[pat[r]]; !seen[u] {
				seen[u] = true
				list = append(list, rs.keys[u])
			}
		})
		slices.SortFunc(list, compareKeys)
		out.Filters[i] = list
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// linkOuter lists the residents of every cell of the outer table, with
// their bounded payload.
func (ev *evaluator) linkOuter(tb *cdm.Table, l *plan.LinkPlan, rs *residents) ([][]LinkEntry, error) {
	p := ev.p
	rows := full(tb.Rows)
	var err error
	if l.OuterWhere != nil {
		if rows, err = ev.pred(l.OuterWhere, tb, rows); err != nil {
			return nil, err
		}
	}
	if err := rs.assign(ev.ctx, tb, rows); err != nil {
		return nil, err
	}
	var payload *plan.Measure
	var val func(int) float64
	if l.Payload {
		ms := p.Measures()
		payload = &ms[1]
		vals, err := ev.measureValues(ms[1:2], tb)
		if err != nil {
			return nil, err
		}
		val = vals[0]
	}
	// Per (resident, cell), in first-seen order.
	type pair struct {
		u uint32
		c int
	}
	index := map[pair]int{}
	var pairs []pair
	var values []float64
	err = ev.walkBounded(tb, rows, rs.unit, len(rs.keys), func(r, c int, u uint32, first bool) {
		k := pair{u, c}
		i, ok := index[k]
		if !ok {
			i = len(pairs)
			index[k] = i
			pairs = append(pairs, k)
			values = append(values, 0)
		}
		if payload != nil {
			values[i] += rowContribution(payload, val, r, first)
		}
	})
	if err != nil {
		return nil, err
	}
	cells := make([][]LinkEntry, p.Cells())
	for g := range cells {
		cells[g] = []LinkEntry{}
	}
	for i, k := range pairs {
		cells[k.c] = append(cells[k.c], LinkEntry{LinkKey: rs.keys[k.u], Value: values[i]})
	}
	for g := range cells {
		slices.SortFunc(cells[g], func(a, b LinkEntry) int { return compareKeys(a.LinkKey, b.LinkKey) })
	}
	return cells, nil
}

// residents numbers the node's residents: unit[patient] is the resident of
// a patient (once assigned), keys[unit] its key.
type residents struct {
	t      *cdm.Tables
	system string
	unit   []uint32
	done   []bool
	keys   []LinkKey
	byKey  map[LinkKey]uint32
}

func newResidents(t *cdm.Tables, system string) *residents {
	n := t.NumPatients()
	return &residents{t: t, system: system, unit: make([]uint32, n), done: make([]bool, n), byKey: map[LinkKey]uint32{}}
}

// assign gives a resident to the patient of every row of rows.
func (rs *residents) assign(ctx context.Context, tb *cdm.Table, rows bitset) error {
	pat := tb.Patient
	var ctxErr error
	n := 0
	rows.each(func(r int) {
		if ctxErr != nil {
			return
		}
		if n++; n&0xFFFF == 0 {
			ctxErr = ctx.Err()
		}
		pi := pat[r]
		if rs.done[pi] {
			return
		}
		key, shared := rs.t.ResidentKey(pi, rs.system)
		k := LinkKey{Key: key, Shared: shared}
		u, ok := rs.byKey[k]
		if !ok {
			u = uint32(len(rs.keys))
			rs.byKey[k] = u
			rs.keys = append(rs.keys, k)
		}
		rs.unit[pi], rs.done[pi] = u, true
	})
	return ctxErr
}
