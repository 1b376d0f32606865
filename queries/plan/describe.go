package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/queries/parse"
)

func normalise(q *parse.Query) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, it := range q.Select {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(parse.Format(it.Expr))
		if it.Alias != "" {
			b.WriteString(" AS " + it.Alias)
		}
	}
	b.WriteString(" FROM " + q.From.Name)
	if q.Where != nil {
		b.WriteString(" WHERE " + parse.Format(q.Where))
	}
	if len(q.GroupBy) > 0 {
		b.WriteString(" GROUP BY ")
		for i, g := range q.GroupBy {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(parse.Format(g))
		}
	}
	if len(q.With) > 0 {
		b.WriteString(" WITH ")
		for i, o := range q.With {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s = %d", o.Name.Name, o.Value)
		}
	}
	return b.String()
}

var measureKindNames = map[MeasureKind]string{
	CountRows: "count of rows", CountDistinct: "count of patients", CountValues: "count of values",
	Sum: "sum", SumSquares: "sum of squares",
}

// Describe explains the plan for humans (`--explain`) and golden tests: the
// group domain, the contribution bounds, each measure's sensitivity and
// noise, the encoding and the cost. The text is deterministic.
func (p *Plan) Describe() string {
	var b strings.Builder
	g := func(v float64) string { return fmt.Sprintf("%.6g", v) }
	fmt.Fprintf(&b, "query:     %s\n", p.normSQL)
	fmt.Fprintf(&b, "kind:      %s\n", p.Kind())
	fmt.Fprintf(&b, "table:     %s\n", p.table)
	fmt.Fprintf(&b, "age at:    %s\n", p.req.ReferenceDate)
	if len(p.keys) == 0 {
		b.WriteString("groups:    none (1 cell)\n")
	}
	for _, k := range p.keys {
		src := "query"
		switch {
		case k.Kind == KeyString && k.Col.Name == "region" && k.Col.Patient:
			src = "catalogue regions"
		case k.Kind == KeyString && k.Col.Name == "sex" && k.Col.Patient:
			src = "fixed sex codes"
		case k.Kind == KeyWeek || k.Kind == KeyMonth || k.Kind == KeyYear:
			src = "date range in WHERE"
		case k.Kind == KeyAgeBand:
			src = "age bands"
		case k.Kind == KeyBin:
			src = fmt.Sprintf("bins of %g over the study column's public range", k.BinWidth)
		case k.Kind == KeyString && isStudyKey(p, k):
			src = "the study schema's values"
		case k.Kind == KeyString:
			src = "values listed in WHERE"
		}
		level := "patient attribute"
		if k.RowLevel {
			level = "row-level"
		}
		fmt.Fprintf(&b, "group by:  %s: %d values from %s (%s): %s\n", k.Name, len(k.Labels), src, level, labelsSummary(k.Labels))
	}
	fmt.Fprintf(&b, "cells:     %d\n", p.cells)
	fmt.Fprintf(&b, "bounds:    groups per patient G = %d (%s); rows per patient per group R = %d (%s)\n", p.groups, p.groupsSrc, p.rows, p.rowsSrc)
	if p.nodesPer > 1 && p.Link == nil {
		fmt.Fprintf(&b, "           a patient may be at up to K = %d nodes: sensitivities × %d\n", p.nodesPer, p.nodesPer)
	}
	if p.Link != nil {
		p.describeLink(&b)
	}
	fmt.Fprintf(&b, "mechanism: %s; m = %d partials, threshold T = %d, honest partials m-T+1 = %d\n", p.mech, p.req.MinNodes, p.req.Threshold, p.honest)
	for i, m := range p.measures {
		fmt.Fprintf(&b, "measure %d: %s = %s\n", i+1, m.Label, measureKindNames[m.Kind])
		fmt.Fprintf(&b, "           per-cell bound %s, L2 sensitivity %s, L1 sensitivity %s\n", g(m.PerCell), g(m.L2), g(m.L1))
		if p.Link != nil {
			what := "payload summed over matched outer elements"
			if m.Kind == CountDistinct {
				what = "match histogram: one element per resident per cell however many nodes hold them"
			}
			fmt.Fprintf(&b, "           %s: K = %d nodes, G = %d cells\n", what, m.Nodes, m.Groups)
		}
		if p.mech == Gaussian {
			fmt.Fprintf(&b, "           rho %s, sigma %s, per-node sigma %s, scale %s\n", g(m.Rho), g(m.Sigma), g(m.NodeSigma), g(m.Scale))
		} else {
			fmt.Fprintf(&b, "           epsilon %s, Laplace b %s per node (sd %s), scale %s\n", g(m.Epsilon), g(m.LaplaceB), g(m.NodeSigma), g(m.Scale))
		}
	}
	var outs []string
	for _, o := range p.outputs {
		outs = append(outs, o.Name)
	}
	fmt.Fprintf(&b, "outputs:   %s\n", strings.Join(outs, " | "))
	fmt.Fprintf(&b, "slots:     %d; max |partial| %d; max |total of m| %d\n", p.VectorLen(), p.MaxAbsPartial(), p.MaxAbsTotal(p.req.MinNodes))
	if p.mech == Gaussian {
		fmt.Fprintf(&b, "cost:      rho = %s zCDP = (epsilon %s, delta %s)\n", g(p.rho), g(p.req.Epsilon), g(p.req.Delta))
	} else {
		fmt.Fprintf(&b, "cost:      epsilon %s (pure DP) = rho %s zCDP\n", g(p.req.Epsilon), g(p.rho))
	}
	return b.String()
}

func labelsSummary(l []string) string {
	if len(l) <= 8 {
		return strings.Join(l, ", ")
	}
	return strings.Join(l[:3], ", ") + ", ..., " + strings.Join(l[len(l)-2:], ", ")
}

// Fingerprint is a hex SHA-256 of everything that determines what a node
// computes and how much noise it adds: the normalised query, the privacy
// parameters, every label of every group domain, the bounds, the measures
// with their sensitivities, noise and scales (floats at 9 significant digits,
// so that last-bit differences between platforms do not matter). The
// coordinator can send it with a request and a node can refuse when its own
// plan's fingerprint differs (e.g. a different catalogue). It is computed
// once per plan: the coordinator sends it to every node, and a node checks
// it and puts it in its partial.
func (p *Plan) Fingerprint() string {
	p.fingerprint.once.Do(func() { p.fingerprint.v = p.computeFingerprint() })
	return p.fingerprint.v
}

func (p *Plan) computeFingerprint() string {
	h := sha256.New()
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 9, 64) }
	fmt.Fprintf(h, "sql=%s\nmech=%s eps=%s delta=%s m=%d T=%d ref=%d\n", p.normSQL, p.mech, g(p.req.Epsilon), g(p.req.Delta), p.req.MinNodes, p.req.Threshold, p.req.ReferenceDate)
	fmt.Fprintf(h, "table=%s G=%d R=%d K=%d maxpat=%d k=%d cells=%d\n", p.table, p.groups, p.rows, p.nodesPer, p.maxPat, p.smallK, p.cells)
	for _, k := range p.keys {
		fmt.Fprintf(h, "key %s kind=%d col=%s/%v first=%d w=%d s=%d top=%d open=%v unk=%v row=%v labels=%q\n",
			k.Name, k.Kind, k.Col.Name, k.Col.Patient, k.First, k.Width, k.Start, k.Top, k.OpenTop, k.Unknown, k.RowLevel, k.Labels)
	}
	for _, name := range slices.Sorted(maps.Keys(p.valueSets)) {
		fmt.Fprintf(h, "valueset %s=%s\n", name, p.valueSets[name])
	}
	if l := p.Link; l != nil {
		fmt.Fprintf(h, "link system=%q outer=%s payload=%v holders=%d padl2=%s padrho=%s pad=%s outerwhere=%q\n", l.IdentifierSystem, l.Outer, l.Payload, l.Holders, g(l.PadL2), g(l.PadRho), g(l.PadSigma), p.linkOuterText)
		for i, f := range l.Filters {
			fmt.Fprintf(h, "link filter %s negate=%v where=%q\n", f.Table, f.Negate, p.linkFilterText[i])
		}
		for _, m := range p.measures {
			fmt.Fprintf(h, "link measure %d K=%d G=%d rho=%s\n", m.Kind, m.Nodes, m.Groups, g(m.Rho))
		}
	}
	for _, m := range p.measures {
		fmt.Fprintf(h, "measure %d %s lo=%s hi=%s c=%s C=%s l2=%s sigma=%s node=%s b=%s scale=%s\n",
			m.Kind, m.Label, g(m.Lo), g(m.Hi), g(m.Center), g(m.PerCell), g(m.L2), g(m.Sigma), g(m.NodeSigma), g(m.LaplaceB), g(m.Scale))
	}
	return hex.EncodeToString(h.Sum(nil))
}
