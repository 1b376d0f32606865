package eval

import (
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// A record of a coded CDM table (cdm.TableSchema.Codings) may carry several
// codings: its primary one in the code and system columns, the others in
// its codings column. The contract, one row per record:
//
//   - code IN (...) / system IN (...), a code family (LIKE 'E11%') and a
//     value set hold for a row when any of its codings has such a code /
//     system; code NOT IN (...) (and <>, NOT LIKE) when none has.
//   - A code condition and a system condition joined by AND (conjuncts of
//     one AND chain, at any nesting of AND) must hold on the same coding:
//     code = 'E11.9' AND system = 'http://hl7.org/fhir/sid/icd-10-cm' does
//     not match a row coded [local E11.9, ICD-10-CM E10.9]. Only the first
//     non-negated code and system conditions of a chain are paired; others
//     (and negated ones) hold on any coding, as alone.
//   - GROUP BY code (or system) puts a row in exactly one group: the first
//     label of the key's domain, in the domain's order, that one of its
//     codings carries.
//
// A row counts once, whatever the number of its codings, so contribution
// bounds are unchanged. Matching is decided once per dictionary entry; the
// scan costs one lookup per row, and a second pass only over the codings
// column when some row's other codings can match.

// codedColumn describes a code or system column of a table with codings.
type codedColumn struct {
	system bool // the column is the system column (else the code column)
	ids    []uint32
	sets   [][]cdm.Coding // by dictionary id of the codings column
}

// codedOf reports whether c is the code or system column of tb's table
// and some row of tb has other codings.
func codedOf(c plan.ColumnRef, tb *cdm.Table) (codedColumn, bool) {
	if c.Patient || len(tb.Codings) == 0 {
		return codedColumn{}, false
	}
	s, ok := cdm.LookupTable(tb.Name)
	if !ok || s.Codings == "" || (c.Name != s.Coded[0] && c.Name != s.Coded[1]) {
		return codedColumn{}, false
	}
	col, ok := tb.Strings[s.Codings]
	if !ok || len(tb.Codings) != col.Dict.Len() {
		return codedColumn{}, false
	}
	any := false
	for _, set := range tb.Codings {
		if len(set) > 0 {
			any = true
			break
		}
	}
	if !any {
		return codedColumn{}, false
	}
	return codedColumn{system: c.Name == s.Coded[1], ids: col.IDs, sets: tb.Codings}, true
}

// valueTest returns the test of one value against p's values and
// prefixes (code families), ignoring Negate: the rule stringInColumn
// applies to each dictionary entry, applied to one coding. nil p always
// holds.
func valueTest(p *plan.StringIn) func(v string) bool {
	if p == nil {
		return func(string) bool { return true }
	}
	vals := make(map[string]bool, len(p.Values))
	for _, v := range p.Values {
		vals[v] = true
	}
	return func(v string) bool {
		return vals[v] || p.UnderPrefix(v)
	}
}

// codingIn returns mask ∧ (some coding of the row has its code in
// code.Values, when code is set, and its system in sys.Values, when sys is
// set). code and sys are not negated; at least one is set.
func (ev *evaluator) codingIn(code, sys *plan.StringIn, tb *cdm.Table, mask bitset) (bitset, error) {
	// The primary coding, through the code and system columns (a fresh
	// bitset: at least one of code and sys is set).
	out := mask
	var err error
	for _, p := range []*plan.StringIn{code, sys} {
		if p == nil {
			continue
		}
		if out, err = ev.stringInColumn(p, tb, out); err != nil {
			return nil, err
		}
	}
	// The other codings, decided per dictionary entry of the codings
	// column.
	var c codedColumn
	for _, p := range []*plan.StringIn{code, sys} {
		if p != nil {
			c, _ = codedOf(p.Col, tb)
		}
	}
	codeOK, sysOK := valueTest(code), valueTest(sys)
	match := make([]bool, len(c.sets))
	anyMatch := false
	for id, set := range c.sets {
		for _, x := range set {
			if codeOK(x.Code) && sysOK(x.System) {
				match[id], anyMatch = true, true
				break
			}
		}
	}
	if !anyMatch {
		return out, nil
	}
	orMatch(c.ids, match, mask, out)
	return out, nil
}

// orMatch sets out |= mask ∧ match[ids], 64 rows at a time (scanEq's loop
// with a table instead of one id).
func orMatch(ids []uint32, match []bool, mask, out bitset) {
	for wi, w := range mask {
		if w == 0 {
			continue
		}
		base := wi << 6
		end := min(base+64, len(ids))
		var o uint64
		for j, v := range ids[base:end] {
			if match[v] {
				o |= 1 << uint(j)
			}
		}
		out[wi] |= o & w
	}
}

// codedStringIn is stringIn on a code or system column with codings.
func (ev *evaluator) codedStringIn(p *plan.StringIn, tb *cdm.Table, mask bitset) (bitset, error) {
	pos := *p
	pos.Negate = false
	var code, sys *plan.StringIn
	if c, _ := codedOf(p.Col, tb); c.system {
		sys = &pos
	} else {
		code = &pos
	}
	in, err := ev.codingIn(code, sys, tb, mask)
	if err != nil || !p.Negate {
		return in, err
	}
	out := newBitset(tb.Rows)
	for i := range out {
		out[i] = mask[i] &^ in[i]
	}
	return out, nil
}

// conjuncts flattens an AND chain, left to right.
func conjuncts(p plan.Pred, out []plan.Pred) []plan.Pred {
	if a, ok := p.(*plan.And); ok {
		return conjuncts(a.R, conjuncts(a.L, out))
	}
	return append(out, p)
}

// and evaluates an AND chain; a code and a system condition among its
// conjuncts are matched on the same coding.
func (ev *evaluator) and(p *plan.And, tb *cdm.Table, mask bitset) (bitset, error) {
	cs := conjuncts(p, nil)
	ci, si := -1, -1
	for i, c := range cs {
		x, ok := c.(*plan.StringIn)
		if !ok || x.Negate {
			continue
		}
		cc, ok := codedOf(x.Col, tb)
		switch {
		case !ok:
		case cc.system && si < 0:
			si = i
		case !cc.system && ci < 0:
			ci = i
		}
	}
	out := mask
	if ci >= 0 && si >= 0 {
		var err error
		if out, err = ev.codingIn(cs[ci].(*plan.StringIn), cs[si].(*plan.StringIn), tb, mask); err != nil {
			return nil, err
		}
	}
	for i, c := range cs {
		if ci >= 0 && si >= 0 && (i == ci || i == si) {
			continue
		}
		var err error
		if out, err = ev.pred(c, tb, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// codedKey is keyIndex for GROUP BY the code or system column of a table
// with codings: the first label, in domain order, that a coding of the
// row carries (lab maps the column's dictionary ids to labels; a code
// key's label stands for its every form, terminology.Forms).
func codedKey(c codedColumn, k plan.Key, lab []int32, primary []uint32) func(int) int {
	labelOf := map[string]int32{}
	for i, l := range k.Labels {
		forms := []string{l}
		if k.Codes {
			forms = terminology.Forms(l)
		}
		for _, f := range forms {
			if _, ok := labelOf[f]; !ok {
				labelOf[f] = int32(i)
			}
		}
	}
	extra := make([]int32, len(c.sets))
	for id, set := range c.sets {
		extra[id] = -1
		for _, x := range set {
			v := x.Code
			if c.system {
				v = x.System
			}
			if li, ok := labelOf[v]; ok && (extra[id] < 0 || li < extra[id]) {
				extra[id] = li
			}
		}
	}
	ids := c.ids
	return func(r int) int {
		a, b := lab[primary[r]], extra[ids[r]]
		if a < 0 || (b >= 0 && b < a) {
			return int(b)
		}
		return int(a)
	}
}
