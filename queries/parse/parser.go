package parse

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits that keep parsing cheap on hostile input.
const (
	// MaxLen is the longest query text accepted, in bytes.
	MaxLen = 64 << 10
	// MaxDepth bounds the nesting of parentheses, NOT and subqueries.
	MaxDepth = 64
)

// Function describes a function of the dialect.
type Function struct {
	Name      string
	MinArgs   int
	MaxArgs   int
	Aggregate bool
	Doc       string
}

// functions lists the functions of the dialect, by lower-case name.
var functions = map[string]Function{
	"count":    {"count", 1, 1, true, "COUNT(*) rows, or COUNT(DISTINCT patient_id) patients"},
	"sum":      {"sum", 1, 1, true, "SUM(CLAMP(x, lo, hi)): sum of clamped values"},
	"avg":      {"avg", 1, 1, true, "AVG(CLAMP(x, lo, hi)): mean of clamped values"},
	"stddev":   {"stddev", 1, 1, true, "STDDEV(CLAMP(x, lo, hi)): population standard deviation"},
	"variance": {"variance", 1, 1, true, "VARIANCE(CLAMP(x, lo, hi)): population variance"},
	"clamp":    {"clamp", 3, 3, false, "CLAMP(x, lo, hi): x limited to [lo, hi]"},
	"week":     {"week", 1, 1, false, "week(date): ISO week (Monday start), label YYYY-Www"},
	"month":    {"month", 1, 1, false, "month(date): calendar month, label YYYY-MM"},
	"year":     {"year", 1, 1, false, "year(date): calendar year, label YYYY"},
	"age_band": {"age_band", 2, 2, false, "age_band(age, width): band of width years, label lo-hi"},
	"exp":      {"exp", 1, 1, false, "EXP(x): e to the power x"},
	"ln":       {"ln", 1, 1, false, "LN(x): natural logarithm (missing for x <= 0)"},
	"bin":      {"bin", 2, 2, false, "bin(x, width): GROUP BY bins of a study number column, label = lower bound"},
}

// LookupFunction returns the function named name (lower case).
func LookupFunction(name string) (Function, bool) {
	f, ok := functions[name]
	return f, ok
}

func functionNames() []string {
	out := make([]string, 0, len(functions))
	for n := range functions {
		out = append(out, n)
	}
	return out
}

type parser struct {
	lx    lexer
	src   string
	tok   token
	depth int
}

// Parse parses one query. The returned error, if any, is an *Error.
func Parse(src string) (*Query, error) {
	if len(src) > MaxLen {
		return nil, NewError(ErrSyntax, src[:0], 0, "query is %d bytes; at most %d are accepted", len(src), MaxLen)
	}
	p := &parser{lx: lexer{src: src}, src: src}
	p.advance()
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	if p.isPunct(";") {
		p.advance()
	}
	if p.tok.kind != tEOF {
		return nil, p.errAt(p.tok.pos, "unexpected %s after the end of the query", p.describe())
	}
	return q, nil
}

func (p *parser) advance() { p.tok = p.lx.next() }

func (p *parser) errAt(pos Pos, format string, args ...any) *Error {
	return NewError(ErrSyntax, p.src, pos, format, args...)
}

func (p *parser) describe() string {
	switch p.tok.kind {
	case tEOF:
		return "end of query"
	case tIdent:
		return "`" + p.tok.text + "`"
	case tKeyword:
		return p.tok.text
	case tString:
		return "string"
	case tNumber:
		return "number " + p.tok.text
	case tPunct:
		return "`" + p.tok.text + "`"
	}
	return "token"
}

// check turns an illegal token into an error.
func (p *parser) check() error {
	if p.tok.kind == tIllegal {
		return p.errAt(p.tok.pos, "%s", p.tok.text)
	}
	return nil
}

func (p *parser) isKeyword(k string) bool { return p.tok.kind == tKeyword && p.tok.text == k }
func (p *parser) isPunct(s string) bool   { return p.tok.kind == tPunct && p.tok.text == s }

func (p *parser) expectKeyword(k string) error {
	if err := p.check(); err != nil {
		return err
	}
	if !p.isKeyword(k) {
		return p.errAt(p.tok.pos, "expected %s, found %s", k, p.describe())
	}
	p.advance()
	return nil
}

func (p *parser) expectPunct(s string) error {
	if err := p.check(); err != nil {
		return err
	}
	if !p.isPunct(s) {
		return p.errAt(p.tok.pos, "expected `%s`, found %s", s, p.describe())
	}
	p.advance()
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errAt(p.tok.pos, "query nested too deeply (more than %d levels)", MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) query() (*Query, error) {
	q := &Query{Pos: p.tok.pos, Source: p.src}
	if err := p.check(); err != nil {
		return nil, err
	}
	if !p.isKeyword("SELECT") {
		if p.tok.kind == tIdent && Suggest(p.tok.text, []string{"select"}) != "" {
			return nil, p.errAt(p.tok.pos, "expected SELECT, found %s; did you mean `SELECT`?", p.describe())
		}
		return nil, p.errAt(p.tok.pos, "expected SELECT, found %s", p.describe())
	}
	p.advance()
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		item := SelectItem{Expr: e, AliasPos: e.Position()}
		if p.isKeyword("AS") {
			p.advance()
			if err := p.check(); err != nil {
				return nil, err
			}
			if p.tok.kind != tIdent {
				return nil, p.errAt(p.tok.pos, "expected a column alias after AS, found %s", p.describe())
			}
			item.Alias, item.AliasPos = p.tok.text, p.tok.pos
			p.advance()
		} else if p.tok.kind == tIdent {
			if Suggest(p.tok.text, []string{"from"}) != "" {
				return nil, p.errAt(p.tok.pos, "expected FROM, found %s; did you mean `FROM`?", p.describe())
			}
			return nil, p.errAt(p.tok.pos, "unexpected %s in the select list; missing `,` or AS?", p.describe())
		}
		q.Select = append(q.Select, item)
		if !p.isPunct(",") {
			break
		}
		p.advance()
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if !p.isKeyword("FROM") {
		if p.tok.kind == tIdent && Suggest(p.tok.text, []string{"from"}) != "" {
			return nil, p.errAt(p.tok.pos, "expected FROM, found %s; did you mean `FROM`?", p.describe())
		}
		return nil, p.errAt(p.tok.pos, "expected FROM, found %s", p.describe())
	}
	p.advance()
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.tok.kind != tIdent {
		return nil, p.errAt(p.tok.pos, "expected a table name after FROM, found %s", p.describe())
	}
	q.From = Ident{Pos: p.tok.pos, Name: p.tok.text}
	p.advance()
	if p.isKeyword("WHERE") {
		p.advance()
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		q.Where = e
	}
	if p.isKeyword("GROUP") {
		p.advance()
		if err := p.expectKeyword("BY"); err != nil {
			return nil, err
		}
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			q.GroupBy = append(q.GroupBy, e)
			if !p.isPunct(",") {
				break
			}
			p.advance()
		}
	}
	if p.isKeyword("WITH") {
		p.advance()
		for {
			if err := p.check(); err != nil {
				return nil, err
			}
			if p.tok.kind != tIdent {
				return nil, p.errAt(p.tok.pos, "expected an option name (max_groups, max_rows), found %s", p.describe())
			}
			opt := Option{Name: Ident{Pos: p.tok.pos, Name: p.tok.text}}
			p.advance()
			if err := p.expectPunct("="); err != nil {
				return nil, err
			}
			if err := p.check(); err != nil {
				return nil, err
			}
			if p.tok.kind != tNumber {
				return nil, p.errAt(p.tok.pos, "expected a whole number, found %s", p.describe())
			}
			v, err := strconv.ParseInt(p.tok.text, 10, 32)
			if err != nil || v < 1 {
				return nil, p.errAt(p.tok.pos, "expected a whole number from 1 to 2147483647, found %s", p.tok.text)
			}
			opt.Value, opt.Pos = v, p.tok.pos
			p.advance()
			q.With = append(q.With, opt)
			if !p.isPunct(",") {
				break
			}
			p.advance()
		}
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return q, nil
}

func (p *parser) expr() (Expr, error) { return p.or() }

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.isKeyword("OR") {
		pos := p.tok.pos
		p.advance()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: pos, Op: "OR", L: l, R: r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.isKeyword("AND") {
		pos := p.tok.pos
		p.advance()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: pos, Op: "AND", L: l, R: r}
	}
	return l, nil
}

func (p *parser) not() (Expr, error) {
	if p.isKeyword("NOT") {
		pos := p.tok.pos
		p.advance()
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &Unary{Pos: pos, Op: "NOT", X: x}, nil
	}
	return p.predicate()
}

func (p *parser) predicate() (Expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.tok.kind == tPunct {
		switch op := p.tok.text; op {
		case "=", "<>", "<", "<=", ">", ">=":
			pos := p.tok.pos
			p.advance()
			r, err := p.additive()
			if err != nil {
				return nil, err
			}
			return &Binary{Pos: pos, Op: op, L: l, R: r}, nil
		}
	}
	not := false
	if p.isKeyword("NOT") {
		not = true
		p.advance()
		if !p.isKeyword("BETWEEN") && !p.isKeyword("IN") && !p.isKeyword("LIKE") {
			if err := p.check(); err != nil {
				return nil, err
			}
			return nil, p.errAt(p.tok.pos, "expected BETWEEN, IN or LIKE after NOT, found %s", p.describe())
		}
	}
	switch {
	case p.isKeyword("BETWEEN"):
		pos := p.tok.pos
		p.advance()
		lo, err := p.additive()
		if err != nil {
			return nil, err
		}
		if err := p.expectKeyword("AND"); err != nil {
			return nil, err
		}
		hi, err := p.additive()
		if err != nil {
			return nil, err
		}
		return &Between{Pos: pos, X: l, Lo: lo, Hi: hi, Not: not}, nil
	case p.isKeyword("LIKE"):
		pos := p.tok.pos
		p.advance()
		lit, err := p.stringLit("LIKE")
		if err != nil {
			return nil, err
		}
		return &Like{Pos: pos, X: l, Pattern: lit, Not: not}, nil
	case p.isKeyword("IN"):
		pos := p.tok.pos
		p.advance()
		if p.isKeyword("VALUESET") {
			p.advance()
			lit, err := p.stringLit("VALUESET")
			if err != nil {
				return nil, err
			}
			return &InValueSet{Pos: pos, X: l, Name: lit, Not: not}, nil
		}
		if err := p.expectPunct("("); err != nil {
			return nil, err
		}
		if p.isKeyword("SELECT") {
			if err := p.enter(); err != nil {
				return nil, err
			}
			sub, err := p.query()
			p.leave()
			if err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			return &InSelect{Pos: pos, X: l, Sub: sub, Not: not}, nil
		}
		var list []Expr
		for {
			e, err := p.additive()
			if err != nil {
				return nil, err
			}
			list = append(list, e)
			if !p.isPunct(",") {
				break
			}
			p.advance()
		}
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		return &InList{Pos: pos, X: l, List: list, Not: not}, nil
	}
	return l, nil
}

// stringLit reads the 'quoted string' that must follow the keyword after.
func (p *parser) stringLit(after string) (*StringLit, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.tok.kind != tString {
		return nil, p.errAt(p.tok.pos, "expected a 'quoted string' after %s, found %s", after, p.describe())
	}
	t := p.tok
	p.advance()
	return &StringLit{Pos: t.pos, Value: t.text}, nil
}

func (p *parser) additive() (Expr, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for p.isPunct("+") || p.isPunct("-") {
		op, pos := p.tok.text, p.tok.pos
		p.advance()
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: pos, Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) multiplicative() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isPunct("*") || p.isPunct("/") {
		op, pos := p.tok.text, p.tok.pos
		p.advance()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &Binary{Pos: pos, Op: op, L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary() (Expr, error) {
	if p.isPunct("-") {
		pos := p.tok.pos
		p.advance()
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if n, ok := x.(*NumberLit); ok {
			return &NumberLit{Pos: pos, Value: -n.Value, Text: "-" + n.Text}, nil
		}
		return &Unary{Pos: pos, Op: "-", X: x}, nil
	}
	return p.primary()
}

func (p *parser) primary() (Expr, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	t := p.tok
	switch t.kind {
	case tNumber:
		p.advance()
		v, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, p.errAt(t.pos, "malformed number `%s`", t.text)
		}
		return &NumberLit{Pos: t.pos, Value: v, Text: t.text}, nil
	case tString:
		p.advance()
		return &StringLit{Pos: t.pos, Value: t.text}, nil
	case tIdent:
		p.advance()
		if !p.isPunct("(") {
			return &Ident{Pos: t.pos, Name: t.text}, nil
		}
		return p.call(t)
	case tPunct:
		if t.text == "(" {
			p.advance()
			if err := p.enter(); err != nil {
				return nil, err
			}
			defer p.leave()
			if p.isKeyword("SELECT") {
				return nil, p.errAt(p.tok.pos, "a subquery is allowed only as `patient_id IN (SELECT patient_id FROM ...)`")
			}
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			return e, nil
		}
	}
	return nil, p.errAt(t.pos, "expected an expression, found %s", p.describe())
}

// call parses name( ... ); the current token is "(".
func (p *parser) call(name token) (Expr, error) {
	fn, ok := functions[name.text]
	if !ok {
		return nil, UnknownName(p.src, name.pos, "function", name.text, functionNames())
	}
	p.advance() // (
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	c := &Call{Pos: name.pos, Name: name.text}
	if p.isPunct("*") {
		if c.Name != "count" {
			return nil, p.errAt(p.tok.pos, "`*` is allowed only in COUNT(*)")
		}
		c.Star = true
		p.advance()
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		return c, nil
	}
	if p.isKeyword("DISTINCT") {
		if c.Name != "count" {
			return nil, p.errAt(p.tok.pos, "DISTINCT is allowed only in COUNT(DISTINCT patient_id)")
		}
		c.Distinct = true
		p.advance()
	}
	if !p.isPunct(")") {
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			c.Args = append(c.Args, e)
			if !p.isPunct(",") {
				break
			}
			p.advance()
		}
	}
	if err := p.expectPunct(")"); err != nil {
		return nil, err
	}
	if len(c.Args) < fn.MinArgs || len(c.Args) > fn.MaxArgs {
		want := fmt.Sprint(fn.MinArgs)
		if fn.MaxArgs != fn.MinArgs {
			want = fmt.Sprintf("%d to %d", fn.MinArgs, fn.MaxArgs)
		}
		return nil, NewError(ErrSyntax, p.src, name.pos, "%s takes %s argument%s, got %d", strings.ToUpper(c.Name), want, plural(fn.MinArgs), len(c.Args))
	}
	return c, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
