package plan

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/parse"
)

type binder struct {
	src string
	cat *Catalogue
	ref cdm.Date
	// studyDomain marks GROUP BY keys whose domain is a study schema's
	// value list (copied to the plan for Describe).
	studyDomain map[string]bool
	// valueSets: the value sets the query uses, name -> digest.
	valueSets map[string]string
}

func (b *binder) errf(kind error, pos parse.Pos, format string, args ...any) error {
	return parse.NewError(kind, b.src, pos, format, args...)
}

// scope is the set of columns visible in a query on one table.
type scope struct {
	table *cdm.TableSchema
	// study is set for a study table: only its own columns and patient_id
	// are visible (no age, no patient attributes).
	study *cdm.StudySchema
}

// tableNames lists the CDM tables and the catalogue's studies, for
// suggestions.
func (b *binder) tableNames() []string {
	out := make([]string, 0, len(cdm.Schema)+len(b.cat.Studies))
	for _, s := range cdm.Schema {
		out = append(out, s.Name)
	}
	for _, s := range b.cat.Studies {
		out = append(out, s.Name)
	}
	return out
}

func (b *binder) table(id parse.Ident) (*scope, error) {
	t, ok := cdm.LookupTable(id.Name)
	if !ok {
		if st, ok := b.cat.Study(id.Name); ok {
			ts := &cdm.TableSchema{Name: st.Name}
			for _, c := range st.Columns {
				ts.Columns = append(ts.Columns, cdm.Column{Name: c.Name, Type: c.ColumnType(), Doc: c.Doc})
			}
			return &scope{table: ts, study: st}, nil
		}
		return nil, parse.UnknownName(b.src, id.Pos, "table", id.Name, b.tableNames())
	}
	return &scope{table: t}, nil
}

// patientLevel reports whether every column of a study is a patient
// attribute (one row per patient).
func (s *scope) patientLevel() bool { return s.study != nil && s.study.RowsPerPatient == 1 }

// names lists the column names of s, for suggestions.
func (s *scope) names() []string {
	if s.study != nil {
		out := []string{"patient_id"}
		for _, c := range s.table.Columns {
			out = append(out, c.Name)
		}
		return out
	}
	out := []string{"patient_id", "age"}
	for _, c := range s.table.Columns {
		if !c.Secret {
			out = append(out, c.Name)
		}
	}
	if s.table.Name != cdm.TablePatients {
		p, _ := cdm.LookupTable(cdm.TablePatients)
		for _, c := range p.Columns {
			if !c.Secret {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

// column resolves a column name. ok is false for unknown names; patient_id
// and age are handled by the callers.
func (s *scope) column(name string) (ColumnRef, bool) {
	if c, ok := s.table.Lookup(name); ok && !c.Secret {
		ref := ColumnRef{Name: c.Name, Type: c.Type, Patient: s.table.Name == cdm.TablePatients}
		if s.study != nil {
			if sc, _ := s.study.Lookup(name); sc.Min != nil {
				ref.Clamped, ref.Lo, ref.Hi = true, *sc.Min, *sc.Max
			}
		}
		return ref, true
	}
	if s.study != nil {
		return ColumnRef{}, false
	}
	p, _ := cdm.LookupTable(cdm.TablePatients)
	if c, ok := p.Lookup(name); ok && !c.Secret {
		return ColumnRef{Name: c.Name, Type: c.Type, Patient: true}, true
	}
	return ColumnRef{}, false
}

// exprType is the type of an expression as the binder sees it.
type exprType uint8

const (
	tyNumber exprType = iota + 1
	tyDate
	tyString
	tyPatientID
	tyStringLit
	tyDateOrString // a string literal where a date is expected
)

func (b *binder) unknownColumn(s *scope, id *parse.Ident) error {
	return parse.UnknownName(b.src, id.Pos, "column", id.Name, s.names())
}

// plan binds the top-level query into p.
func (b *binder) plan(q *parse.Query, p *Plan) error {
	s, err := b.table(q.From)
	if err != nil {
		return err
	}
	p.table = s.table.Name
	if q.Where != nil {
		p.where, err = b.pred(s, q.Where)
		if err != nil {
			return err
		}
	}
	cons := b.constraints(p.where)
	linked := false
	if b.cat.Linkage != nil {
		if linked, err = b.linkCheck(q); err != nil {
			return err
		}
	}

	// Contribution bounds from WITH.
	groups, rows := b.cat.MaxGroupsPerPatient, b.cat.MaxRowsPerPatient
	p.groupsSrc, p.rowsSrc = "catalogue default", "catalogue default"
	for _, o := range q.With {
		switch o.Name.Name {
		case "max_groups":
			groups, p.groupsSrc = int(o.Value), "query"
		case "max_rows":
			rows, p.rowsSrc = int(o.Value), "query"
		default:
			return parse.UnknownName(b.src, o.Name.Pos, "option", o.Name.Name, []string{"max_groups", "max_rows"})
		}
	}

	// Group keys.
	aliases := map[string]int{}
	for i, it := range q.Select {
		if it.Alias != "" {
			aliases[it.Alias] = i
		}
	}
	keyFormats := map[string]int{}
	for _, g := range q.GroupBy {
		e, name := g, ""
		if id, ok := g.(*parse.Ident); ok {
			if i, ok := aliases[id.Name]; ok {
				e, name = q.Select[i].Expr, id.Name
			}
		}
		f := parse.Format(e)
		if name == "" {
			name = f
			for _, it := range q.Select {
				if it.Alias != "" && parse.Format(it.Expr) == f {
					name = it.Alias
				}
			}
		}
		if _, dup := keyFormats[f]; dup {
			return b.errf(parse.ErrInvalid, g.Position(), "`%s` appears twice in GROUP BY", name)
		}
		k, err := b.key(s, e, g.Position(), name, cons)
		if err != nil {
			return err
		}
		keyFormats[f] = len(p.keys)
		p.keys = append(p.keys, k)
	}
	p.cells = 1
	rowDomain := 1
	for _, k := range p.keys {
		if len(k.Labels) == 0 {
			return b.errf(parse.ErrInvalid, q.Pos, "GROUP BY %s has an empty domain", k.Name)
		}
		if p.cells > b.cat.MaxSlots/len(k.Labels) {
			return b.errf(parse.ErrInvalid, q.Pos, "the group domain has more than %d cells; narrow the date range or the lists", b.cat.MaxSlots)
		}
		p.cells *= len(k.Labels)
		if k.RowLevel {
			rowDomain *= len(k.Labels)
		}
	}
	p.groups = min(groups, rowDomain)
	if rowDomain == 1 {
		p.groups = 1
		p.groupsSrc = "each patient is in one group"
	} else if p.groups == rowDomain && rowDomain < groups {
		p.groupsSrc = "size of the row-level domain"
	}
	p.rows = rows
	if p.table == cdm.TablePatients {
		p.rows, p.rowsSrc = 1, "one row per patient"
	}
	if s.study != nil {
		if s.study.RowsPerPatient < p.rows {
			p.rows, p.rowsSrc = s.study.RowsPerPatient, "study rows_per_patient"
		} else if linked && p.rowsSrc == "catalogue default" {
			// A linked SUM or COUNT(*) over an agency table is exact: the
			// schema's bound (enforced at import) is the bound, and the
			// catalogue's default must not silently truncate it.
			p.rows, p.rowsSrc = s.study.RowsPerPatient, "study rows_per_patient (linked: not truncated)"
		}
		switch k := s.study.SmallCountThreshold; {
		case k < 0:
			p.smallK = 0
		case k > 0:
			p.smallK = k
		}
	}

	// Outputs: keys first.
	for i, k := range p.keys {
		p.outputs = append(p.outputs, Output{Name: k.Name, Kind: OutKey, Key: i, Count: -1, Sum: -1, SumSq: -1})
	}
	measureIdx := map[string]int{}
	addMeasure := func(m Measure) int {
		id := fmt.Sprintf("%d|%s", m.Kind, m.Label)
		if i, ok := measureIdx[id]; ok {
			return i
		}
		measureIdx[id] = len(p.measures)
		p.measures = append(p.measures, m)
		return len(p.measures) - 1
	}
	if linked {
		// Measure 0 of a linked plan is always the match histogram.
		addMeasure(Measure{Kind: CountDistinct, Label: "COUNT(DISTINCT patient_id)", PerCell: 1})
	}
	nAgg := 0
	for _, it := range q.Select {
		c, isCall := it.Expr.(*parse.Call)
		isAgg := false
		if isCall {
			fn, _ := parse.LookupFunction(c.Name)
			isAgg = fn.Aggregate
		}
		if !isAgg {
			if _, ok := keyFormats[parse.Format(it.Expr)]; ok {
				continue
			}
			if id, ok := it.Expr.(*parse.Ident); ok {
				if _, ok := s.column(id.Name); !ok && id.Name != "age" && id.Name != "patient_id" {
					return b.unknownColumn(s, id)
				}
			}
			return b.errf(parse.ErrInvalid, it.Expr.Position(), "`%s` must appear in GROUP BY or inside an aggregate", parse.Format(it.Expr))
		}
		nAgg++
		name := it.Alias
		if name == "" {
			name = parse.Format(it.Expr)
		}
		out := Output{Name: name, Count: -1, Sum: -1, SumSq: -1}
		switch {
		case c.Name == "count" && c.Star:
			out.Kind = OutCount
			out.Count = addMeasure(Measure{Kind: CountRows, Label: "COUNT(*)", PerCell: float64(p.rows)})
		case c.Name == "count" && c.Distinct:
			if id, ok := c.Args[0].(*parse.Ident); !ok || id.Name != "patient_id" {
				return b.errf(parse.ErrInvalid, c.Args[0].Position(), "COUNT(DISTINCT ...) is supported for patient_id only")
			}
			out.Kind = OutCount
			out.Count = addMeasure(Measure{Kind: CountDistinct, Label: "COUNT(DISTINCT patient_id)", PerCell: 1})
		case c.Name == "count":
			return b.errf(parse.ErrInvalid, c.Pos, "use COUNT(*) or COUNT(DISTINCT patient_id)")
		default:
			v, lo, hi, label, err := b.clamped(s, c)
			if err != nil {
				return err
			}
			r := float64(p.rows)
			center := (lo + hi) / 2
			bnd := math.Max(math.Abs(lo-center), math.Abs(hi-center))
			cnt := func() int {
				return addMeasure(Measure{Kind: CountValues, Label: "COUNT(" + label + ")", Value: v, Lo: lo, Hi: hi, PerCell: r})
			}
			sum := func(c float64) int {
				bb := math.Max(math.Abs(lo-c), math.Abs(hi-c))
				return addMeasure(Measure{Kind: Sum, Label: centred("SUM", label, c), Value: v, Lo: lo, Hi: hi, Center: c, PerCell: r * bb})
			}
			out.Lo, out.Hi = lo, hi
			switch c.Name {
			case "sum":
				out.Kind = OutSum
				out.Sum = sum(0)
			case "avg":
				out.Kind, out.Center = OutMean, center
				out.Count, out.Sum = cnt(), sum(center)
			case "variance", "stddev":
				out.Kind, out.Center = OutVariance, center
				if c.Name == "stddev" {
					out.Kind = OutStddev
				}
				out.Count, out.Sum = cnt(), sum(center)
				out.SumSq = addMeasure(Measure{Kind: SumSquares, Label: centred("SUMSQ", label, center), Value: v, Lo: lo, Hi: hi, Center: center, PerCell: r * bnd * bnd})
			default:
				return b.errf(parse.ErrInvalid, c.Pos, "%s is not an aggregate", strings.ToUpper(c.Name))
			}
		}
		p.outputs = append(p.outputs, out)
	}
	if nAgg == 0 {
		return b.errf(parse.ErrInvalid, q.Pos, "the query has no aggregate: add COUNT(*), COUNT(DISTINCT patient_id), SUM, AVG, STDDEV or VARIANCE")
	}
	if linked {
		p.Link = b.linkPlan(q, p.where)
		p.Link.Outer = p.table
		p.Link.Payload = len(p.measures) > 1
		p.linkOuterText, p.linkFilterText = linkTexts(q)
	}
	return nil
}

func centred(fn, label string, c float64) string {
	if c == 0 {
		return fn + "(" + label + ")"
	}
	return fn + "(" + label + " - " + fmtNum(c) + ")"
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// clamped checks that an aggregate's argument is CLAMP(x, lo, hi) with
// constant bounds and returns its parts.
func (b *binder) clamped(s *scope, c *parse.Call) (v Value, lo, hi float64, label string, err error) {
	fn := strings.ToUpper(c.Name)
	cl, ok := c.Args[0].(*parse.Call)
	if !ok && s.study != nil {
		// A bare number column of a study clamps to its public range.
		if id, isID := c.Args[0].(*parse.Ident); isID {
			if sc, found := s.study.Lookup(id.Name); found && sc.Min != nil {
				col, _ := s.column(id.Name)
				lo, hi = *sc.Min, *sc.Max
				return ColumnValue{col}, lo, hi, fmt.Sprintf("CLAMP(%s, %s, %s)", id.Name, fmtNum(lo), fmtNum(hi)), nil
			}
		}
	}
	if !ok || cl.Name != "clamp" {
		return nil, 0, 0, "", b.errf(parse.ErrInvalid, c.Args[0].Position(), "%s needs a bounded argument: write %s(CLAMP(%s, lo, hi)) so one patient's contribution is bounded", fn, fn, parse.Format(c.Args[0]))
	}
	bound := func(e parse.Expr) (float64, error) {
		n, ok := e.(*parse.NumberLit)
		if !ok {
			return 0, b.errf(parse.ErrInvalid, e.Position(), "CLAMP bounds must be numbers")
		}
		return n.Value, nil
	}
	if lo, err = bound(cl.Args[1]); err != nil {
		return
	}
	if hi, err = bound(cl.Args[2]); err != nil {
		return
	}
	if !(lo < hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.Abs(lo) > 1e12 || math.Abs(hi) > 1e12 {
		return nil, 0, 0, "", b.errf(parse.ErrInvalid, cl.Args[1].Position(), "CLAMP needs finite bounds lo < hi (at most 1e12 in magnitude)")
	}
	v, ty, err := b.value(s, cl.Args[0])
	if err != nil {
		return
	}
	if ty != tyNumber {
		return nil, 0, 0, "", b.errf(parse.ErrInvalid, cl.Args[0].Position(), "CLAMP needs a number, `%s` is a %s", parse.Format(cl.Args[0]), tyName(ty))
	}
	return v, lo, hi, parse.Format(cl), nil
}

func tyName(t exprType) string {
	switch t {
	case tyNumber:
		return "number"
	case tyDate:
		return "date"
	case tyString, tyStringLit, tyDateOrString:
		return "string"
	case tyPatientID:
		return "patient id"
	}
	return "value"
}

// value binds a numeric or date expression, or reports a string column
// (v nil, ty tyString) or string literal (tyStringLit).
func (b *binder) value(s *scope, e parse.Expr) (Value, exprType, error) {
	switch e := e.(type) {
	case *parse.NumberLit:
		return ConstValue{e.Value}, tyNumber, nil
	case *parse.StringLit:
		return nil, tyStringLit, nil
	case *parse.Ident:
		if s.study != nil && e.Name == "age" {
			if _, ok := s.column(e.Name); !ok {
				return nil, 0, b.unknownColumn(s, e)
			}
		}
		switch e.Name {
		case "age":
			if s.study != nil {
				break
			}
			return AgeValue{}, tyNumber, nil
		case "patient_id":
			return nil, tyPatientID, nil
		}
		c, ok := s.column(e.Name)
		if !ok {
			return nil, 0, b.unknownColumn(s, e)
		}
		switch c.Type {
		case cdm.TypeNumber:
			return ColumnValue{c}, tyNumber, nil
		case cdm.TypeDate:
			return ColumnValue{c}, tyDate, nil
		}
		return nil, tyString, nil
	case *parse.Unary:
		if e.Op == "-" {
			x, ty, err := b.value(s, e.X)
			if err != nil {
				return nil, 0, err
			}
			if ty != tyNumber {
				return nil, 0, b.errf(parse.ErrInvalid, e.Pos, "cannot negate a %s", tyName(ty))
			}
			return NegValue{x}, tyNumber, nil
		}
	case *parse.Binary:
		switch e.Op {
		case "=", "<>", "<", "<=", ">", ">=", "AND", "OR":
			p, err := b.pred(s, e)
			if err != nil {
				return nil, 0, err
			}
			return IndicatorValue{p}, tyNumber, nil
		case "+", "-", "*", "/":
			l, lt, err := b.value(s, e.L)
			if err != nil {
				return nil, 0, err
			}
			r, rt, err := b.value(s, e.R)
			if err != nil {
				return nil, 0, err
			}
			if lt != tyNumber || rt != tyNumber {
				return nil, 0, b.errf(parse.ErrInvalid, e.Pos, "arithmetic needs numbers (`%s` is not)", parse.Format(e))
			}
			return ArithValue{Op: e.Op[0], L: l, R: r}, tyNumber, nil
		}
	case *parse.Call:
		if e.Name == "exp" || e.Name == "ln" {
			x, ty, err := b.value(s, e.Args[0])
			if err != nil {
				return nil, 0, err
			}
			if ty != tyNumber {
				return nil, 0, b.errf(parse.ErrInvalid, e.Args[0].Position(), "%s needs a number, `%s` is a %s", strings.ToUpper(e.Name), parse.Format(e.Args[0]), tyName(ty))
			}
			return FuncValue{Name: e.Name, X: x}, tyNumber, nil
		}
		return nil, 0, b.errf(parse.ErrInvalid, e.Pos, "%s cannot be used here", strings.ToUpper(e.Name))
	case *parse.Between, *parse.InList, *parse.InSelect:
		p, err := b.pred(s, e)
		if err != nil {
			return nil, 0, err
		}
		return IndicatorValue{p}, tyNumber, nil
	}
	if u, ok := e.(*parse.Unary); ok && u.Op == "NOT" {
		p, err := b.pred(s, e)
		if err != nil {
			return nil, 0, err
		}
		return IndicatorValue{p}, tyNumber, nil
	}
	return nil, 0, b.errf(parse.ErrInvalid, e.Position(), "`%s` is not a value", parse.Format(e))
}

// pred binds a boolean expression.
func (b *binder) pred(s *scope, e parse.Expr) (Pred, error) {
	switch e := e.(type) {
	case *parse.Binary:
		switch e.Op {
		case "AND", "OR":
			l, err := b.pred(s, e.L)
			if err != nil {
				return nil, err
			}
			r, err := b.pred(s, e.R)
			if err != nil {
				return nil, err
			}
			if e.Op == "AND" {
				return &And{l, r}, nil
			}
			return &Or{l, r}, nil
		case "=", "<>", "<", "<=", ">", ">=":
			return b.compare(s, e.L, e.Op, e.R, e.Pos)
		}
	case *parse.Unary:
		if e.Op == "NOT" {
			x, err := b.pred(s, e.X)
			if err != nil {
				return nil, err
			}
			return &Not{x}, nil
		}
	case *parse.Between:
		lo, err := b.compare(s, e.X, ">=", e.Lo, e.Pos)
		if err != nil {
			return nil, err
		}
		hi, err := b.compare(s, e.X, "<=", e.Hi, e.Pos)
		if err != nil {
			return nil, err
		}
		var p Pred = &And{lo, hi}
		if e.Not {
			p = &Not{p}
		}
		return p, nil
	case *parse.InList:
		if id, ok := e.X.(*parse.Ident); ok {
			if c, ok := s.column(id.Name); ok && c.Type == cdm.TypeString {
				vals := make([]string, 0, len(e.List))
				var labels []string
				for _, it := range e.List {
					v, err := b.stringLit(c, it)
					if err != nil {
						return nil, err
					}
					labels = append(labels, v)
					vals = append(vals, b.codeForms(s, c, v)...)
				}
				return &StringIn{Col: c, Values: vals, Labels: labels, Negate: e.Not}, nil
			}
		}
		var p Pred
		for _, it := range e.List {
			c, err := b.compare(s, e.X, "=", it, e.Pos)
			if err != nil {
				return nil, err
			}
			if p == nil {
				p = c
			} else {
				p = &Or{p, c}
			}
		}
		if e.Not {
			p = &Not{p}
		}
		return p, nil
	case *parse.Like:
		c, err := b.textColumn(s, e.X, "LIKE")
		if err != nil {
			return nil, err
		}
		head, ok := strings.CutSuffix(e.Pattern.Value, "%")
		if !ok || head == "" || strings.ContainsAny(head, "%_") {
			return nil, b.errf(parse.ErrInvalid, e.Pattern.Pos, "LIKE takes a code family written 'head%%' (e.g. 'E11%%': E11 and every code below it); '%s' is not one", e.Pattern.Value)
		}
		coded := b.coded(s, c)
		if coded {
			head = terminology.FamilyPrefix(head)
		}
		return &StringIn{Col: c, Prefixes: []string{head}, Codes: coded, Negate: e.Not}, nil
	case *parse.InValueSet:
		c, err := b.textColumn(s, e.X, "IN VALUESET")
		if err != nil {
			return nil, err
		}
		if !b.coded(s, c) {
			return nil, b.errf(parse.ErrInvalid, e.Pos, "IN VALUESET matches codes; %s is not a code column", c.Name)
		}
		vs, ok := b.cat.ValueSet(e.Name.Value)
		if !ok {
			names := make([]string, 0, len(b.cat.ValueSets))
			for _, v := range b.cat.ValueSets {
				names = append(names, v.Name)
			}
			if len(names) == 0 {
				return nil, b.errf(parse.ErrUnknownName, e.Name.Pos, "unknown value set '%s': the network catalogue has no value sets (value_sets in the daemons' config)", e.Name.Value)
			}
			hint := ""
			if sg := parse.Suggest(e.Name.Value, names); sg != "" {
				hint = fmt.Sprintf("; did you mean '%s'?", sg)
			}
			return nil, b.errf(parse.ErrUnknownName, e.Name.Pos, "unknown value set '%s'%s (the catalogue has %s)", e.Name.Value, hint, strings.Join(names, ", "))
		}
		if b.valueSets == nil {
			b.valueSets = map[string]string{}
		}
		b.valueSets[vs.Name] = vs.Digest()
		var p Pred = &StringIn{Col: c, Values: terminology.Codes(vs.Include), Prefixes: terminology.Codes(vs.IncludeFamilies), Codes: true}
		if len(vs.Exclude)+len(vs.ExcludeFamilies) > 0 {
			p = &And{p, &StringIn{Col: c, Values: terminology.Codes(vs.Exclude), Prefixes: terminology.Codes(vs.ExcludeFamilies), Codes: true, Negate: true}}
		}
		if e.Not {
			p = &Not{p}
		}
		return p, nil
	case *parse.InSelect:
		if id, ok := e.X.(*parse.Ident); !ok || id.Name != "patient_id" {
			return nil, b.errf(parse.ErrInvalid, e.X.Position(), "a subquery needs `patient_id IN (SELECT patient_id FROM ...)`")
		}
		sub := e.Sub
		if len(sub.Select) != 1 || parse.Format(sub.Select[0].Expr) != "patient_id" {
			return nil, b.errf(parse.ErrInvalid, sub.Pos, "a cohort subquery must select exactly patient_id")
		}
		if len(sub.GroupBy) > 0 || len(sub.With) > 0 {
			return nil, b.errf(parse.ErrInvalid, sub.Pos, "a cohort subquery takes only FROM and WHERE")
		}
		ss, err := b.table(sub.From)
		if err != nil {
			return nil, err
		}
		c := &Cohort{Table: ss.table.Name, Negate: e.Not}
		if sub.Where != nil {
			if c.Where, err = b.pred(ss, sub.Where); err != nil {
				return nil, err
			}
		}
		return c, nil
	case *parse.Ident:
		if _, ok := s.column(e.Name); !ok && e.Name != "age" && e.Name != "patient_id" {
			return nil, b.unknownColumn(s, e)
		}
	}
	return nil, b.errf(parse.ErrInvalid, e.Position(), "`%s` is not a condition", parse.Format(e))
}

// textColumn resolves x, which op needs to be a text column.
func (b *binder) textColumn(s *scope, x parse.Expr, op string) (ColumnRef, error) {
	id, ok := x.(*parse.Ident)
	if !ok {
		return ColumnRef{}, b.errf(parse.ErrInvalid, x.Position(), "%s needs a text column on its left, not `%s`", op, parse.Format(x))
	}
	c, ok := s.column(id.Name)
	if !ok {
		return ColumnRef{}, b.unknownColumn(s, id)
	}
	if c.Type != cdm.TypeString {
		return ColumnRef{}, b.errf(parse.ErrInvalid, id.Pos, "%s needs a text column; %s is not text", op, c.Name)
	}
	return c, nil
}

// coded reports whether c is the code column of the scope's table (the
// first of its Coded pair), whose values are codes of a code system.
func (b *binder) coded(s *scope, c ColumnRef) bool {
	return s.study == nil && s.table != nil && !c.Patient && c.Name == s.table.Coded[0]
}

// codeForms returns the values a literal v compared with column c matches:
// on a code column, v and its canonical ICD-10 form (terminology.Forms), so
// 'E119' finds the stored E11.9; on its system column, v and the forms of
// the system it names (terminology.SystemForms); elsewhere v.
func (b *binder) codeForms(s *scope, c ColumnRef, v string) []string {
	switch {
	case b.coded(s, c):
		return terminology.Forms(v)
	case s.study == nil && s.table != nil && !c.Patient && c.Name == s.table.Coded[1]:
		// The code's system: a short name (ICD-10-CM, SNOMED) stands for
		// the system's URI and OID too.
		return terminology.SystemForms(v)
	}
	return []string{v}
}

// stringLit checks a literal compared with text column c and normalises sex.
func (b *binder) stringLit(c ColumnRef, e parse.Expr) (string, error) {
	lit, ok := e.(*parse.StringLit)
	if !ok {
		return "", b.errf(parse.ErrInvalid, e.Position(), "%s is text: compare it with a 'quoted string'", c.Name)
	}
	if c.Name == "sex" && c.Patient {
		sx, err := cdm.ParseSex(lit.Value)
		if err != nil {
			return "", b.errf(parse.ErrInvalid, lit.Pos, "sex must be 'female', 'male', 'other' or 'unknown', not '%s'", lit.Value)
		}
		return sx.String(), nil
	}
	return lit.Value, nil
}

var flipOp = map[string]string{"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

func (b *binder) compare(s *scope, le parse.Expr, op string, re parse.Expr, pos parse.Pos) (Pred, error) {
	// A text column against a string literal.
	for i := 0; i < 2; i++ {
		colE, litE, o := le, re, op
		if i == 1 {
			colE, litE, o = re, le, flipOp[op]
		}
		if id, ok := colE.(*parse.Ident); ok {
			if c, ok := s.column(id.Name); ok && c.Type == cdm.TypeString {
				v, err := b.stringLit(c, litE)
				if err != nil {
					return nil, err
				}
				if o != "=" && o != "<>" {
					return nil, b.errf(parse.ErrInvalid, pos, "text column %s supports only =, <> and IN", c.Name)
				}
				return &StringIn{Col: c, Values: b.codeForms(s, c, v), Labels: []string{v}, Negate: o == "<>"}, nil
			}
		}
	}
	l, lt, err := b.value(s, le)
	if err != nil {
		return nil, err
	}
	r, rt, err := b.value(s, re)
	if err != nil {
		return nil, err
	}
	// Date against a string literal: parse the date.
	if lt == tyDate && rt == tyStringLit {
		if r, err = b.dateLit(re); err != nil {
			return nil, err
		}
		rt = tyDate
	}
	if rt == tyDate && lt == tyStringLit {
		if l, err = b.dateLit(le); err != nil {
			return nil, err
		}
		lt = tyDate
	}
	switch {
	case lt == tyPatientID || rt == tyPatientID:
		return nil, b.errf(parse.ErrInvalid, pos, "patient_id can be used only in COUNT(DISTINCT patient_id) and `patient_id IN (SELECT patient_id ...)`")
	case lt == tyStringLit && rt == tyStringLit:
		return nil, b.errf(parse.ErrInvalid, pos, "compare a column, not two strings")
	case lt != rt:
		return nil, b.errf(parse.ErrInvalid, pos, "cannot compare a %s with a %s", tyName(lt), tyName(rt))
	}
	// Keep a constant on the right for the constraint analysis.
	if _, lc := l.(ConstValue); lc {
		if _, rc := r.(ConstValue); !rc {
			l, r, op = r, l, flipOp[op]
		}
	}
	return &Compare{L: l, Op: op, R: r}, nil
}

func (b *binder) dateLit(e parse.Expr) (Value, error) {
	lit := e.(*parse.StringLit)
	d, err := cdm.ParseDate(lit.Value)
	if err != nil || !d.Valid() {
		return nil, b.errf(parse.ErrInvalid, lit.Pos, "'%s' is not a date: want 'YYYY-MM-DD'", lit.Value)
	}
	return ConstValue{float64(d)}, nil
}

// constraints are the bounds that the top-level AND chain of WHERE puts on
// columns: they make public group domains.
type constraints struct {
	dateLo, dateHi map[string]float64 // by date column name
	ageLo, ageHi   float64
	lists          map[string][]string // text column name -> allowed values
}

func (b *binder) constraints(p Pred) *constraints {
	c := &constraints{dateLo: map[string]float64{}, dateHi: map[string]float64{}, ageLo: math.Inf(-1), ageHi: math.Inf(1), lists: map[string][]string{}}
	var walk func(Pred)
	walk = func(p Pred) {
		switch p := p.(type) {
		case *And:
			walk(p.L)
			walk(p.R)
		case *StringIn:
			if p.Negate {
				return
			}
			labels := p.Labels
			if labels == nil {
				labels = p.Values
			}
			if len(p.Prefixes) > 0 {
				return // a family lists no domain
			}
			if old, ok := c.lists[p.Col.Name]; ok {
				var keep []string
				for _, v := range old {
					for _, w := range labels {
						if v == w {
							keep = append(keep, v)
							break
						}
					}
				}
				c.lists[p.Col.Name] = keep
			} else {
				c.lists[p.Col.Name] = dedupe(labels)
			}
		case *Compare:
			k, ok := p.R.(ConstValue)
			if !ok {
				return
			}
			lo, hi := math.Inf(-1), math.Inf(1)
			switch p.Op {
			case "=":
				lo, hi = k.V, k.V
			case ">=":
				lo = k.V
			case ">":
				lo = math.Floor(k.V) + 1
			case "<=":
				hi = k.V
			case "<":
				hi = math.Ceil(k.V) - 1
			default:
				return
			}
			switch l := p.L.(type) {
			case AgeValue:
				c.ageLo, c.ageHi = math.Max(c.ageLo, lo), math.Min(c.ageHi, hi)
			case ColumnValue:
				if l.Col.Type != cdm.TypeDate {
					return
				}
				if v, ok := c.dateLo[l.Col.Name]; !ok || lo > v {
					c.dateLo[l.Col.Name] = lo
				}
				if v, ok := c.dateHi[l.Col.Name]; !ok || hi < v {
					c.dateHi[l.Col.Name] = hi
				}
			}
		}
	}
	if p != nil {
		walk(p)
	}
	return c
}

func dedupe(v []string) []string {
	out := make([]string, 0, len(v))
	seen := map[string]bool{}
	for _, s := range v {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

var sexLabels = []string{"female", "male", "other", "unknown"}

// key binds one GROUP BY expression and derives its public domain.
func (b *binder) key(s *scope, e parse.Expr, pos parse.Pos, name string, cons *constraints) (Key, error) {
	rootPatients := s.table.Name == cdm.TablePatients
	if s.study != nil {
		if k, ok, err := b.studyKey(s, e, pos, name, cons); ok || err != nil {
			return k, err
		}
	}
	switch e := e.(type) {
	case *parse.Ident:
		if e.Name == "age" {
			return Key{}, b.errf(parse.ErrInvalid, pos, "group ages with age_band(age, width), e.g. age_band(age, 10)")
		}
		c, ok := s.column(e.Name)
		if !ok {
			if e.Name == "patient_id" {
				return Key{}, b.errf(parse.ErrInvalid, pos, "cannot group by patient_id")
			}
			return Key{}, b.unknownColumn(s, e)
		}
		switch c.Type {
		case cdm.TypeDate:
			return Key{}, b.errf(parse.ErrInvalid, pos, "group dates with week(%s), month(%s) or year(%s)", c.Name, c.Name, c.Name)
		case cdm.TypeNumber:
			return Key{}, b.errf(parse.ErrInvalid, pos, "cannot group by the number %s", c.Name)
		}
		k := Key{Name: name, Kind: KeyString, Col: c, RowLevel: !c.Patient}
		switch {
		case c.Patient && c.Name == "sex":
			k.Labels = append([]string(nil), sexLabels...)
			if l, ok := cons.lists["sex"]; ok {
				k.Labels = l
			}
		case c.Patient && c.Name == "region":
			if len(b.cat.Regions) == 0 {
				return Key{}, b.errf(parse.ErrInvalid, pos, "GROUP BY region needs the network's region list, and the catalogue has none")
			}
			k.Labels = dedupe(b.cat.Regions)
			if l, ok := cons.lists["region"]; ok {
				k.Labels = intersect(k.Labels, l)
			}
		default:
			l, ok := cons.lists[c.Name]
			if !ok {
				return Key{}, b.errf(parse.ErrInvalid, pos, "GROUP BY %s needs its values listed in WHERE (e.g. %s IN ('a', 'b')): group domains must be public, never read from data", c.Name, c.Name)
			}
			k.Labels = l
			k.Codes = b.coded(s, c)
		}
		_ = rootPatients
		return k, nil
	case *parse.Call:
		switch e.Name {
		case "week", "month", "year":
			id, ok := e.Args[0].(*parse.Ident)
			var c ColumnRef
			if ok {
				c, ok = s.column(id.Name)
				if !ok {
					return Key{}, b.unknownColumn(s, id)
				}
				ok = c.Type == cdm.TypeDate
			}
			if !ok {
				return Key{}, b.errf(parse.ErrInvalid, e.Args[0].Position(), "%s() needs a date column", e.Name)
			}
			lo, okLo := cons.dateLo[c.Name]
			hi, okHi := cons.dateHi[c.Name]
			if !okLo || !okHi || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
				return Key{}, b.errf(parse.ErrInvalid, pos, "GROUP BY %s(%s) needs a bounded date range: add `%s BETWEEN 'YYYY-MM-DD' AND 'YYYY-MM-DD'` to WHERE (group domains come from the query, never from data)", e.Name, c.Name, c.Name)
			}
			if lo > hi {
				return Key{}, b.errf(parse.ErrInvalid, pos, "the date range of %s is empty", c.Name)
			}
			k := Key{Name: name, Col: c, RowLevel: !c.Patient}
			dlo, dhi := cdm.Date(lo), cdm.Date(hi)
			var first, last int
			switch e.Name {
			case "week":
				k.Kind = KeyWeek
				first, last = dlo.Week(), dhi.Week()
			case "month":
				k.Kind = KeyMonth
				first, last = dlo.Month(), dhi.Month()
			case "year":
				k.Kind = KeyYear
				first, last = dlo.Year(), dhi.Year()
			}
			if last-first+1 > b.cat.MaxSlots {
				return Key{}, b.errf(parse.ErrInvalid, pos, "the date range has %d buckets; at most %d are allowed", last-first+1, b.cat.MaxSlots)
			}
			k.First = first
			for i := first; i <= last; i++ {
				k.Labels = append(k.Labels, BucketLabel(k.Kind, i))
			}
			return k, nil
		case "age_band":
			if id, ok := e.Args[0].(*parse.Ident); !ok || id.Name != "age" {
				return Key{}, b.errf(parse.ErrInvalid, e.Args[0].Position(), "age_band takes age as its first argument")
			}
			n, ok := e.Args[1].(*parse.NumberLit)
			if !ok || n.Value != math.Trunc(n.Value) || n.Value < 1 || n.Value > 200 {
				return Key{}, b.errf(parse.ErrInvalid, e.Args[1].Position(), "age_band width must be a whole number of years from 1 to 200")
			}
			w := int(n.Value)
			top := b.cat.MaxAge
			k := Key{Name: name, Kind: KeyAgeBand, Width: w, OpenTop: true, Unknown: true, Top: top}
			start, end := 0, top // bands cover [start, end) then top+
			if !math.IsInf(cons.ageLo, 0) || !math.IsInf(cons.ageHi, 0) {
				k.Unknown = false
			}
			if !math.IsInf(cons.ageLo, 0) && cons.ageLo > 0 {
				start = min(int(cons.ageLo)/w*w, top/w*w)
			}
			if !math.IsInf(cons.ageHi, 0) && cons.ageHi < float64(top) {
				if cons.ageHi < 0 {
					return Key{}, b.errf(parse.ErrInvalid, pos, "the age range is empty")
				}
				end = (int(cons.ageHi)/w + 1) * w
				k.OpenTop = false
			}
			k.Start = start
			for a := start; a < end && a < top; a += w {
				hi := a + w - 1
				if k.OpenTop && a+w > top {
					hi = top - 1
				}
				k.Labels = append(k.Labels, fmt.Sprintf("%d-%d", a, hi))
			}
			if k.OpenTop {
				k.Labels = append(k.Labels, fmt.Sprintf("%d+", top))
			}
			if k.Unknown {
				k.Labels = append(k.Labels, "unknown")
			}
			return k, nil
		}
	}
	return Key{}, b.errf(parse.ErrInvalid, pos, "cannot group by `%s`: use week(), month(), year() of a date, region, sex, age_band(age, w) or a text column listed in WHERE", parse.Format(e))
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// BucketLabel is the label of time bucket i: "2020-W06" (ISO week of the
// bucket's Monday), "2020-02", "2020".
func BucketLabel(k KeyKind, i int) string {
	switch k {
	case KeyWeek:
		y, w := cdm.WeekStart(i).Time().ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	case KeyMonth:
		y, m, _ := cdm.MonthStart(i).Civil()
		return fmt.Sprintf("%04d-%02d", y, m)
	case KeyYear:
		return fmt.Sprintf("%04d", i)
	}
	return strconv.Itoa(i)
}

var _ = time.Monday
var _ = sort.Strings
