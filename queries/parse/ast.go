// Package parse turns fedstat's SQL dialect into an abstract syntax tree.
//
// The grammar is in docs/query-language.md. Parse is a hand-written lexer and
// recursive-descent parser; it never panics and runs in time linear in the
// input (nesting is limited to MaxDepth). Errors are *Error values carrying
// line, column, the offending line and a caret; they wrap ErrSyntax or
// ErrUnknownName for errors.Is. Names of tables and columns are checked by the
// planner (queries/plan), which reports with the same *Error type; function
// names are checked here.
package parse

// Pos is a byte offset into the query text.
type Pos int

// Query is one SELECT statement (the top-level query or a cohort subquery).
type Query struct {
	Pos     Pos
	Select  []SelectItem
	From    Ident
	Where   Expr // nil when absent
	GroupBy []Expr
	With    []Option // contribution bounds: WITH max_groups = 4, max_rows = 2
	// Source is the full query text, for errors that point into it.
	Source string
}

// SelectItem is one expression of the select list with its optional alias.
type SelectItem struct {
	Expr  Expr
	Alias string // "" when absent
	// AliasPos is the position of the alias, or of Expr when absent.
	AliasPos Pos
}

// Option is one `name = integer` item of the WITH clause.
type Option struct {
	Name  Ident
	Value int64
	Pos   Pos // of the value
}

// Expr is an expression node.
type Expr interface {
	// Position returns where the expression starts in the query text.
	Position() Pos
	exprNode()
}

// Ident is a column or table name (lower-cased; identifiers are
// case-insensitive).
type Ident struct {
	Pos  Pos
	Name string
}

// StringLit is a 'quoted' string; Value has ” unescaped.
type StringLit struct {
	Pos   Pos
	Value string
}

// NumberLit is a decimal number.
type NumberLit struct {
	Pos   Pos
	Value float64
	Text  string
}

// Call is a function call, e.g. COUNT(*), COUNT(DISTINCT patient_id),
// CLAMP(value, 3, 20), week(onset_date). Name is lower case.
type Call struct {
	Pos      Pos
	Name     string
	Args     []Expr
	Distinct bool
	Star     bool // COUNT(*)
}

// Binary is a binary operation: AND, OR, =, <>, <, <=, >, >=, +, -, *, /.
// "!=" is normalised to "<>".
type Binary struct {
	Pos  Pos // of the operator
	Op   string
	L, R Expr
}

// Unary is NOT x or -x.
type Unary struct {
	Pos Pos
	Op  string // "NOT" or "-"
	X   Expr
}

// Between is x [NOT] BETWEEN lo AND hi (inclusive).
type Between struct {
	Pos    Pos // of BETWEEN
	X      Expr
	Lo, Hi Expr
	Not    bool
}

// InList is x [NOT] IN (e1, e2, ...).
type InList struct {
	Pos  Pos // of IN
	X    Expr
	List []Expr
	Not  bool
}

// InSelect is x [NOT] IN (SELECT ...): a cohort.
type InSelect struct {
	Pos Pos // of IN
	X   Expr
	Sub *Query
	Not bool
}

// Like is x [NOT] LIKE 'pattern'. The planner accepts a pattern of the form
// 'head%' only: a code family.
type Like struct {
	Pos     Pos // of LIKE
	X       Expr
	Pattern *StringLit
	Not     bool
}

// InValueSet is x [NOT] IN VALUESET 'name': the codes of a value set of the
// network catalogue.
type InValueSet struct {
	Pos  Pos // of IN
	X    Expr
	Name *StringLit
	Not  bool
}

func (e *Ident) Position() Pos      { return e.Pos }
func (e *StringLit) Position() Pos  { return e.Pos }
func (e *NumberLit) Position() Pos  { return e.Pos }
func (e *Call) Position() Pos       { return e.Pos }
func (e *Binary) Position() Pos     { return e.L.Position() }
func (e *Unary) Position() Pos      { return e.Pos }
func (e *Between) Position() Pos    { return e.X.Position() }
func (e *InList) Position() Pos     { return e.X.Position() }
func (e *InSelect) Position() Pos   { return e.X.Position() }
func (e *Like) Position() Pos       { return e.X.Position() }
func (e *InValueSet) Position() Pos { return e.X.Position() }

func (*Ident) exprNode()      {}
func (*StringLit) exprNode()  {}
func (*NumberLit) exprNode()  {}
func (*Call) exprNode()       {}
func (*Binary) exprNode()     {}
func (*Unary) exprNode()      {}
func (*Between) exprNode()    {}
func (*InList) exprNode()     {}
func (*InSelect) exprNode()   {}
func (*Like) exprNode()       {}
func (*InValueSet) exprNode() {}
