package plan

import (
	"fmt"
	"math"
	"strings"

	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/zcdp"
)

// Record linkage (docs/linkage.md, issue 17).
//
// In a linked network (Catalogue.Linkage set) patient_id means the linked
// resident: a person that several nodes (hospitals, an insurer, a registry)
// may hold, recognised by the value of one identifier system. A query is
// linked when it counts residents (COUNT(DISTINCT patient_id)) or filters
// on a cohort subquery (patient_id [NOT] IN (SELECT patient_id FROM ...)).
// A linked query is not a sum of per-node partials: each node submits
// encrypted, DP-padded lists of resident pseudonyms (LinkPlan), the stage
// nodes blind them, and the coordinator counts matches.
//
// # Privacy math of a linked plan
//
// The unit is the resident. Measures[0] is the match histogram: per cell
// g, how many residents have each multiplicity pattern over the outer list
// O_g and the filter lists F_{i,g}. Removing one resident removes one
// element from one pattern of every cell the resident appears in, however
// many nodes hold them, so its per-cell bound is 1 and K = 1; the number
// of cells it may appear in, Measure.Groups, is
//
//   - 1 without GROUP BY;
//   - C (every cell) when the query has a cohort filter: the filter lists
//     are replicated into every cell, so a filter member is in every cell's
//     histogram (with multiplicity 0 in O_g where it is not an outer row);
//   - else min(C, H·G): each of the H nodes holding the outer table may put
//     the resident into G cells of its own, and nodes need not agree (two
//     hospitals may record different regions for the same resident).
//
// For COUNT(*) and SUM, Measures[1] is the payload: sums of per-resident
// values bounded at each node as Evaluate bounds a patient (PerCell, G
// cells), added over the H = Request.LinkHolders nodes that hold the outer
// table (Catalogue.MaxNodesPerPatient when the request does not say): K = H.
//
// List sizes are protected by identity padding that each node adds on its
// own (every node's lists are seen separately, so no node relies on
// others' noise): one resident adds at most one element to each of at most
// G outer lists of a node and one element to each filter list of every
// cell, L2pad = √(G + C·F) for F filters (C·F because each cell's copy of
// a filter list is padded independently; a node that drew one padding per
// filter and copied it to every cell would need only √(G + F)). Padding
// gets ρ/16 and PadSigma = L2pad/√(2·ρ/16); the measures share the other
// 15ρ/16 equally, with noise as for any plan. Linked plans need the
// Gaussian mechanism (the padding and dummies are Gaussian).

// Linkage describes record linkage in a network.
type Linkage struct {
	// IdentifierSystem is the FHIR Patient.identifier system whose value
	// identifies a resident at every node (agency tables hold the same
	// value in their id column). Required.
	IdentifierSystem string
}

// LinkPlan is what a node computes for a linked query (eval.LinkElements)
// and how much padding it adds.
type LinkPlan struct {
	IdentifierSystem string
	// Outer is the table of FROM.
	Outer string
	// OuterWhere is WHERE without its cohort terms (nil: every row).
	OuterWhere Pred
	// Filters are the cohort terms of WHERE, in query order.
	Filters []LinkFilter
	// Payload is set for COUNT(*) and SUM: Measures[1] carries each outer
	// element's value. COUNT(DISTINCT patient_id) has no payload.
	Payload bool
	// PadSigma is the standard deviation of the identity padding each node
	// adds to each of its lists (see the package's linkage notes).
	PadSigma float64
	// PadL2 and PadRho are the padding's sensitivity and budget share
	// (PadSigma = PadL2/√(2·PadRho)).
	PadL2, PadRho float64
	// Holders is H = Request.LinkHolders (Catalogue.MaxNodesPerPatient when
	// 0), the nodes that may hold one resident's outer rows.
	Holders int
}

// LinkFilter is one cohort term: residents with (Negate: without) a row of
// Table satisfying Where (nil: any row).
type LinkFilter struct {
	Table  string
	Where  Pred
	Negate bool
}

// linkCheck decides whether q is a linked query in a linked network and
// refuses the forms linkage cannot run. Called only when the catalogue has
// Linkage.
func (b *binder) linkCheck(q *parse.Query) (linked bool, err error) {
	// Cohort terms: top-level AND conjuncts of WHERE only, one level deep.
	var conjuncts []parse.Expr
	var split func(e parse.Expr)
	split = func(e parse.Expr) {
		if bin, ok := e.(*parse.Binary); ok && bin.Op == "AND" {
			split(bin.L)
			split(bin.R)
			return
		}
		conjuncts = append(conjuncts, e)
	}
	if q.Where != nil {
		split(q.Where)
	}
	for _, c := range conjuncts {
		if in, ok := c.(*parse.InSelect); ok {
			linked = true
			if nested := findInSelect(in.Sub.Where); nested != nil {
				return false, b.errf(parse.ErrInvalid, nested.Position(), "in a network with record linkage a cohort subquery cannot contain another `patient_id IN (SELECT ...)`: linkage matches residents one level deep; move the condition up into the outer WHERE, joined with AND")
			}
			continue
		}
		if in := findInSelect(c); in != nil {
			why := "under OR"
			if u, ok := c.(*parse.Unary); ok && u.Op == "NOT" {
				why = "under NOT (write `patient_id NOT IN (SELECT ...)` instead)"
			} else if !hasOr(c) {
				why = "inside another expression"
			}
			return false, b.errf(parse.ErrInvalid, in.Position(), "in a network with record linkage `patient_id IN (SELECT ...)` must be a condition of WHERE joined to the rest with AND, not %s: each cohort is matched across nodes as a whole", why)
		}
	}
	for _, it := range q.Select {
		if in := findInSelect(it.Expr); in != nil {
			return false, b.errf(parse.ErrInvalid, in.Position(), "in a network with record linkage `patient_id IN (SELECT ...)` can only be a condition of WHERE joined with AND")
		}
	}
	// Aggregates.
	var aggs []*parse.Call
	for _, it := range q.Select {
		if c, ok := it.Expr.(*parse.Call); ok {
			if fn, _ := parse.LookupFunction(c.Name); fn.Aggregate {
				aggs = append(aggs, c)
				if c.Name == "count" && c.Distinct {
					linked = true
				}
			}
		}
	}
	if !linked {
		return false, nil
	}
	const supported = "a linked query (resident counts and cohort filters in a network with record linkage) takes exactly one aggregate: COUNT(DISTINCT patient_id), COUNT(*) or SUM(CLAMP(x, lo, hi))"
	if len(aggs) > 1 {
		return false, b.errf(parse.ErrInvalid, aggs[1].Pos, "%s; run the other aggregates as separate queries", supported)
	}
	if len(aggs) == 1 {
		switch c := aggs[0]; c.Name {
		case "count", "sum":
		default:
			return false, b.errf(parse.ErrInvalid, c.Pos, "%s is not supported here: %s", strings.ToUpper(c.Name), supported)
		}
	}
	return true, nil
}

// findInSelect returns the first cohort subquery in e (nil: none).
func findInSelect(e parse.Expr) *parse.InSelect {
	var found *parse.InSelect
	var walk func(e parse.Expr)
	walk = func(e parse.Expr) {
		if e == nil || found != nil {
			return
		}
		switch e := e.(type) {
		case *parse.InSelect:
			found = e
		case *parse.Binary:
			walk(e.L)
			walk(e.R)
		case *parse.Unary:
			walk(e.X)
		case *parse.Between:
			walk(e.X)
			walk(e.Lo)
			walk(e.Hi)
		case *parse.InList:
			walk(e.X)
			for _, x := range e.List {
				walk(x)
			}
		case *parse.Like:
			walk(e.X)
		case *parse.InValueSet:
			walk(e.X)
		case *parse.Call:
			for _, x := range e.Args {
				walk(x)
			}
		}
	}
	walk(e)
	return found
}

// hasOr reports whether e has an OR outside any subquery.
func hasOr(e parse.Expr) bool {
	switch e := e.(type) {
	case *parse.Binary:
		return e.Op == "OR" || hasOr(e.L) || hasOr(e.R)
	case *parse.Unary:
		return hasOr(e.X)
	}
	return false
}

// linkPlan splits the bound WHERE into the outer predicate and the cohort
// filters (linkCheck has made sure that every cohort is a top-level
// conjunct) and records the subqueries' text for Describe.
func (b *binder) linkPlan(q *parse.Query, where Pred) *LinkPlan {
	l := &LinkPlan{IdentifierSystem: b.cat.Linkage.IdentifierSystem}
	var outer []Pred
	var split func(p Pred)
	split = func(p Pred) {
		switch p := p.(type) {
		case *And:
			split(p.L)
			split(p.R)
		case *Cohort:
			l.Filters = append(l.Filters, LinkFilter{Table: p.Table, Where: p.Where, Negate: p.Negate})
		default:
			outer = append(outer, p)
		}
	}
	if where != nil {
		split(where)
	}
	for _, p := range outer {
		if l.OuterWhere == nil {
			l.OuterWhere = p
		} else {
			l.OuterWhere = &And{l.OuterWhere, p}
		}
	}
	return l
}

// linkTexts returns the SQL of WHERE's conjuncts other than cohorts
// (joined by AND) and of each cohort's subquery WHERE, for Describe.
func linkTexts(q *parse.Query) (outer string, filters []string) {
	var parts []string
	var split func(e parse.Expr)
	split = func(e parse.Expr) {
		switch e := e.(type) {
		case *parse.Binary:
			if e.Op == "AND" {
				split(e.L)
				split(e.R)
				return
			}
		case *parse.InSelect:
			f := ""
			if e.Sub.Where != nil {
				f = parse.Format(e.Sub.Where)
			}
			filters = append(filters, f)
			return
		}
		parts = append(parts, parse.Format(e))
	}
	if q.Where != nil {
		split(q.Where)
	}
	return strings.Join(parts, " AND "), filters
}

// linkGroups is the number of cells one resident may appear in in the
// match histogram (see the package's linkage notes).
func linkGroups(cells, groups, holders, filters int) int {
	switch {
	case cells == 1:
		return 1
	case filters > 0:
		return cells
	}
	if holders > cells/max(groups, 1) {
		return cells
	}
	return min(cells, holders*groups)
}

// linkMeasures sets the measures' K and G of a linked plan and the padding
// budget, before account.
func (p *Plan) linkMeasures() {
	l := p.Link
	h := l.Holders
	for i := range p.measures {
		m := &p.measures[i]
		if m.Kind == CountDistinct {
			m.Nodes, m.Groups = 1, linkGroups(p.cells, p.groups, h, len(l.Filters))
		} else {
			m.Nodes, m.Groups = h, p.groups
		}
	}
}

// linkPadding sets the padding's share of the budget and its sigma and
// returns the budget left for the measures.
func (p *Plan) linkPadding(rho float64) float64 {
	l := p.Link
	l.PadRho = rho / 16
	l.PadL2 = math.Sqrt(float64(p.groups) + float64(p.cells*len(l.Filters)))
	l.PadSigma = zcdp.GaussianSigma(l.PadL2, l.PadRho)
	return rho - l.PadRho
}

// describeLink writes the linked part of Describe.
func (p *Plan) describeLink(b *strings.Builder) {
	l := p.Link
	g := func(v float64) string { return fmt.Sprintf("%.6g", v) }
	what := "counts distinct residents"
	if l.Payload {
		what = "sums a bounded value per resident (payload, measure 2)"
	}
	fmt.Fprintf(b, "linked:    residents are linked across nodes by their identifier in %s; the query %s\n", l.IdentifierSystem, what)
	outer := ""
	if p.linkOuterText != "" {
		outer = " where " + p.linkOuterText
	}
	fmt.Fprintf(b, "           outer: residents with a row of %s%s, per cell; held by up to H = %d nodes\n", l.Outer, outer, l.Holders)
	for i, f := range l.Filters {
		verb := "with"
		if f.Negate {
			verb = "without"
		}
		cond := ""
		if p.linkFilterText[i] != "" {
			cond = " where " + p.linkFilterText[i]
		}
		fmt.Fprintf(b, "           filter %d: only residents %s a row of %s%s, at any node\n", i+1, verb, f.Table, cond)
	}
	fmt.Fprintf(b, "           padding: L2 %s, rho %s, sigma %s per node per list\n", g(l.PadL2), g(l.PadRho), g(l.PadSigma))
}
