package eval

import (
	"fmt"
	"math"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

// pred returns mask ∧ p over the rows of tb. It does not modify mask.
func (ev *evaluator) pred(p plan.Pred, tb *cdm.Table, mask bitset) (bitset, error) {
	if err := ev.ctx.Err(); err != nil {
		return nil, err
	}
	switch p := p.(type) {
	case *plan.And:
		return ev.and(p, tb, mask)
	case *plan.Or:
		l, err := ev.pred(p.L, tb, mask)
		if err != nil {
			return nil, err
		}
		r, err := ev.pred(p.R, tb, mask)
		if err != nil {
			return nil, err
		}
		for i := range l {
			l[i] |= r[i]
		}
		return l, nil
	case *plan.Not:
		x, err := ev.pred(p.X, tb, mask)
		if err != nil {
			return nil, err
		}
		out := newBitset(tb.Rows)
		for i := range out {
			out[i] = mask[i] &^ x[i]
		}
		return out, nil
	case *plan.StringIn:
		return ev.stringIn(p, tb, mask)
	case *plan.Compare:
		return ev.compare(p, tb, mask)
	case *plan.Cohort:
		return ev.cohort(p, tb, mask)
	}
	return nil, fmt.Errorf("%w: unsupported predicate %T", ErrData, p)
}

func (ev *evaluator) stringIn(p *plan.StringIn, tb *cdm.Table, mask bitset) (bitset, error) {
	if _, ok := codedOf(p.Col, tb); ok {
		return ev.codedStringIn(p, tb, mask)
	}
	return ev.stringInColumn(p, tb, mask)
}

// stringInColumn is stringIn on the column itself (for a code or system
// column: the primary coding only).
func (ev *evaluator) stringInColumn(p *plan.StringIn, tb *cdm.Table, mask bitset) (bitset, error) {
	col, via, err := ev.stringCol(p.Col, tb)
	if err != nil {
		return nil, err
	}
	// match[id] for every dictionary id.
	match := make([]bool, col.Dict.Len())
	for _, v := range p.Values {
		if id, ok := col.Dict.Lookup(v); ok {
			match[id] = true
		}
	}
	if len(p.Prefixes) > 0 {
		// A code family: every dictionary entry below one of the heads.
		for id, v := range col.Dict.Values() {
			match[id] = match[id] || p.UnderPrefix(v)
		}
	}
	if p.Negate {
		for i := range match {
			match[i] = !match[i]
		}
	}
	out := newBitset(tb.Rows)
	if via {
		// A patient attribute on another table: decide per patient once.
		pm := make([]bool, len(ev.prow))
		for pi, r := range ev.prow {
			if r >= 0 {
				pm[pi] = match[col.IDs[r]]
			} else {
				pm[pi] = p.Negate
			}
		}
		pat := tb.Patient
		scanMask(mask, out, tb.Rows, func(r int) bool { return pm[pat[r]] })
		return out, nil
	}
	ids := col.IDs
	if len(p.Values) == 1 && len(p.Prefixes) == 0 && !p.Negate {
		id, ok := col.Dict.Lookup(p.Values[0])
		if !ok {
			return out, nil // no row can match
		}
		scanEq(ids, id, mask, out)
		return out, nil
	}
	scanMask(mask, out, tb.Rows, func(r int) bool { return match[ids[r]] })
	return out, nil
}

// scanEq sets out = mask ∧ (ids == id), 64 rows at a time; the hot path of
// code filters over millions of rows.
func scanEq(ids []uint32, id uint32, mask, out bitset) {
	for wi, w := range mask {
		if w == 0 {
			continue
		}
		base := wi << 6
		var o uint64
		if end := base + 64; end <= len(ids) {
			chunk := ids[base:end:end]
			for j, v := range chunk {
				if v == id {
					o |= 1 << uint(j)
				}
			}
		} else {
			for j := 0; base+j < len(ids); j++ {
				if ids[base+j] == id {
					o |= 1 << uint(j)
				}
			}
		}
		out[wi] = o & w
	}
}

// scanMask sets out = mask ∧ f.
func scanMask(mask, out bitset, n int, f func(int) bool) {
	for wi, w := range mask {
		if w == 0 {
			continue
		}
		var o uint64
		for ww := w; ww != 0; ww &= ww - 1 {
			j := trailing(ww)
			if f(wi<<6 | j) {
				o |= 1 << uint(j)
			}
		}
		out[wi] = o
	}
}

func (ev *evaluator) compare(p *plan.Compare, tb *cdm.Table, mask bitset) (bitset, error) {
	out := newBitset(tb.Rows)
	// Fast path: a direct date or number column against a constant.
	if cv, ok := p.L.(plan.ColumnValue); ok && !(cv.Col.Patient && tb.Name != cdm.TablePatients) {
		if k, ok := p.R.(plan.ConstValue); ok {
			test := cmpFunc(p.Op, k.V)
			switch cv.Col.Type {
			case cdm.TypeDate:
				col, ok := tb.Dates[cv.Col.Name]
				if !ok {
					return nil, fmt.Errorf("%w: table %s has no date column %s", ErrData, tb.Name, cv.Col.Name)
				}
				scanMask(mask, out, tb.Rows, func(r int) bool { d := col[r]; return d.Valid() && test(float64(d)) })
				return out, nil
			case cdm.TypeNumber:
				col, ok := tb.Numbers[cv.Col.Name]
				if !ok {
					return nil, fmt.Errorf("%w: table %s has no number column %s", ErrData, tb.Name, cv.Col.Name)
				}
				if c := cv.Col; c.Clamped {
					scanMask(mask, out, tb.Rows, func(r int) bool { return test(clampRead(col[r], c.Lo, c.Hi)) })
					return out, nil
				}
				scanMask(mask, out, tb.Rows, func(r int) bool { return test(col[r]) })
				return out, nil
			}
		}
	}
	l, err := ev.rowValue(p.L, tb)
	if err != nil {
		return nil, err
	}
	r, err := ev.rowValue(p.R, tb)
	if err != nil {
		return nil, err
	}
	op := p.Op
	scanMask(mask, out, tb.Rows, func(i int) bool { return cmp(op, l(i), r(i)) })
	return out, nil
}

// cmp compares two numbers; NaN (missing) makes every comparison false.
func cmp(op string, a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	switch op {
	case "=":
		return a == b
	case "<>":
		return a != b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	}
	return false
}

func cmpFunc(op string, k float64) func(float64) bool {
	switch op {
	case "=":
		return func(a float64) bool { return a == k }
	case "<>":
		return func(a float64) bool { return a != k && !math.IsNaN(a) }
	case "<":
		return func(a float64) bool { return a < k }
	case "<=":
		return func(a float64) bool { return a <= k }
	case ">":
		return func(a float64) bool { return a > k }
	case ">=":
		return func(a float64) bool { return a >= k }
	}
	return func(float64) bool { return false }
}

// cohort marks the patients with a qualifying row of the subquery's table,
// then keeps the rows of tb whose patient is (or, negated, is not) marked.
func (ev *evaluator) cohort(p *plan.Cohort, tb *cdm.Table, mask bitset) (bitset, error) {
	sub, err := ev.table(p.Table)
	if err != nil {
		return nil, err
	}
	rows := full(sub.Rows)
	if p.Where != nil {
		if rows, err = ev.pred(p.Where, sub, rows); err != nil {
			return nil, err
		}
	}
	members := newBitset(len(ev.prow))
	pat := sub.Patient
	rows.each(func(r int) { members.set(int(pat[r])) })
	out := newBitset(tb.Rows)
	tp := tb.Patient
	neg := p.Negate
	scanMask(mask, out, tb.Rows, func(r int) bool { return members.has(int(tp[r])) != neg })
	return out, nil
}
