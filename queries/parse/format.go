package parse

import (
	"strconv"
	"strings"
)

// Format returns the canonical text of e: keywords and function names upper
// case, minimal spacing, strings re-quoted. Equal expressions format equally,
// so the planner uses it as an identity.
func Format(e Expr) string {
	var b strings.Builder
	format(&b, e)
	return b.String()
}

func format(b *strings.Builder, e Expr) {
	switch e := e.(type) {
	case *Ident:
		b.WriteString(e.Name)
	case *StringLit:
		b.WriteString("'" + strings.ReplaceAll(e.Value, "'", "''") + "'")
	case *NumberLit:
		b.WriteString(strconv.FormatFloat(e.Value, 'g', -1, 64))
	case *Call:
		b.WriteString(strings.ToUpper(e.Name))
		b.WriteByte('(')
		if e.Star {
			b.WriteByte('*')
		}
		if e.Distinct {
			b.WriteString("DISTINCT ")
		}
		for i, a := range e.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, a)
		}
		b.WriteByte(')')
	case *Binary:
		b.WriteByte('(')
		format(b, e.L)
		b.WriteString(" " + e.Op + " ")
		format(b, e.R)
		b.WriteByte(')')
	case *Unary:
		if e.Op == "NOT" {
			b.WriteString("NOT ")
		} else {
			b.WriteString(e.Op)
		}
		format(b, e.X)
	case *Between:
		format(b, e.X)
		if e.Not {
			b.WriteString(" NOT")
		}
		b.WriteString(" BETWEEN ")
		format(b, e.Lo)
		b.WriteString(" AND ")
		format(b, e.Hi)
	case *InList:
		format(b, e.X)
		if e.Not {
			b.WriteString(" NOT")
		}
		b.WriteString(" IN (")
		for i, a := range e.List {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, a)
		}
		b.WriteByte(')')
	case *Like:
		format(b, e.X)
		if e.Not {
			b.WriteString(" NOT")
		}
		b.WriteString(" LIKE ")
		format(b, e.Pattern)
	case *InValueSet:
		format(b, e.X)
		if e.Not {
			b.WriteString(" NOT")
		}
		b.WriteString(" IN VALUESET ")
		format(b, e.Name)
	case *InSelect:
		format(b, e.X)
		if e.Not {
			b.WriteString(" NOT")
		}
		b.WriteString(" IN (SELECT ")
		for i, s := range e.Sub.Select {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, s.Expr)
		}
		b.WriteString(" FROM " + e.Sub.From.Name)
		if e.Sub.Where != nil {
			b.WriteString(" WHERE ")
			format(b, e.Sub.Where)
		}
		b.WriteByte(')')
	case nil:
		b.WriteString("<nil>")
	}
}
