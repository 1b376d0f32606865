package stats

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Limits of a model and of an analysis, the same for every caller (the
// command line and the coordinator's statistics API): the rounds' queries
// grow with the square of the terms and their SQL is built before any plan
// could refuse it, and every Newton round spends budget.
const (
	// MaxTerms bounds a model's terms: linear regression's outcome, the
	// covariates and the factors' indicators.
	MaxTerms = 50
	// MaxRounds bounds the Newton-Raphson rounds (queries) of logistic
	// regression and Cox.
	MaxRounds = 20
)

// RequestError is an analysis or a model refused before any query ran: an
// unknown column, a column named twice, too many terms or rounds, a term
// without a range. Its text names the term and the rule, without a package
// prefix, so that a command line or an API can show it as it is. It wraps
// ErrInput.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

// Unwrap returns ErrInput.
func (e *RequestError) Unwrap() error { return ErrInput }

func refuse(format string, a ...any) error { return &RequestError{Msg: fmt.Sprintf(format, a...)} }

// Term is a model term as an analyst names it: a study column, or a SQL
// expression with a name and a public range.
type Term struct {
	// Name is the term's name in the estimates; for a column term, the
	// column.
	Name string
	// Expr is the SQL of an expression term ("race = 2", "lwt / 2"); empty
	// for the column Name.
	Expr string
	// Lo and Hi are the term's public range when Ranged. A column term
	// without one takes the schema's; an expression term without one is
	// [0, 1] (a condition such as race = 2).
	Lo, Hi float64
	Ranged bool
}

// ParseTerm reads a term as the command line writes it (`fedstat stats
// --x`): COLUMN (its range from the study schema), NAME@LO,HI (an explicit
// range), NAME=EXPR (a condition, range [0, 1]) or NAME=EXPR@LO,HI.
func ParseTerm(s string) (Term, error) {
	t := Term{}
	spec := s
	if i := strings.LastIndex(spec, "@"); i >= 0 {
		parts := strings.Split(spec[i+1:], ",")
		if len(parts) != 2 {
			return Term{}, refuse("covariate %q: the range is @LO,HI", s)
		}
		lo, err1 := strconv.ParseFloat(parts[0], 64)
		hi, err2 := strconv.ParseFloat(parts[1], 64)
		if err1 != nil || err2 != nil {
			return Term{}, refuse("covariate %q: the range is @LO,HI", s)
		}
		t.Lo, t.Hi, t.Ranged = lo, hi, true
		spec = spec[:i]
	}
	if name, expr, ok := strings.Cut(spec, "="); ok {
		t.Name, t.Expr = strings.TrimSpace(name), expr
	} else {
		t.Name = spec
	}
	return t, nil
}

// Model names the terms of a regression model.
type Model struct {
	// Outcome is linear regression's outcome: a number term, counted with
	// the covariates. Unset (no Name) for the other methods.
	Outcome Term
	// Covariates are the number terms.
	Covariates []Term
	// Factors are categorical study columns: each adds one 0/1 indicator
	// per level but the first (Factor).
	Factors []string
}

// Build resolves the model against the study's public schema (nil when
// there is none: every term then needs a range, and factors are refused).
// The rules, for every caller:
//
//   - at most MaxTerms terms (the outcome, covariates and factors named, and
//     again after the factors are expanded into indicators);
//   - a study column is named at most once (as a column term, a bare
//     column expression or a factor): twice, the model is singular and its
//     rounds would spend budget for nothing;
//   - a column term is a number column of the schema, with the schema's
//     range unless the term gives one;
//   - a factor is an int column with a small range or a string column with
//     listed values.
//
// It returns the outcome (zero when the model has none) and the covariates,
// and a *RequestError when the model is refused.
func (m Model) Build(sc *cdm.StudySchema) (outcome Covariate, covariates []Covariate, err error) {
	named := len(m.Covariates) + len(m.Factors)
	if m.Outcome.Name != "" {
		named++
	}
	if named > MaxTerms {
		return Covariate{}, nil, refuse("at most %d covariates and factors", MaxTerms)
	}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return refuse("column %q is named twice in the model", name)
		}
		seen[name] = true
		return nil
	}
	resolve := func(role string, t Term) (Covariate, error) {
		if t.Name == "" {
			return Covariate{}, refuse("%s: a name is required", role)
		}
		c := Covariate{Name: t.Name, Expr: t.Expr, Lo: 0, Hi: 1}
		if t.Expr == "" {
			c.Expr = t.Name
			col := lookup(sc, t.Name)
			if col != nil {
				if err := once(col.Name); err != nil {
					return Covariate{}, err
				}
			}
			switch {
			case t.Ranged:
			case col == nil && sc == nil:
				return Covariate{}, refuse("%s %q: give its range (%s@LO,HI) or the study schema", role, t.Name, t.Name)
			case col == nil:
				return Covariate{}, refuse("%q: no such column in study %s", t.Name, sc.Name)
			case col.Min == nil || col.Max == nil:
				return Covariate{}, refuse("%s %q is not a number column; use it as a factor", role, t.Name)
			default:
				c.Lo, c.Hi = *col.Min, *col.Max
			}
		} else if col := lookup(sc, strings.TrimSpace(t.Expr)); col != nil {
			// A bare column under another name is that column.
			if err := once(col.Name); err != nil {
				return Covariate{}, err
			}
		}
		if t.Ranged {
			c.Lo, c.Hi = t.Lo, t.Hi
		}
		if !(c.Lo < c.Hi) || math.IsInf(c.Lo, 0) || math.IsInf(c.Hi, 0) {
			return Covariate{}, refuse("%s %q: the range needs lo < hi, got [%v, %v]", role, t.Name, c.Lo, c.Hi)
		}
		return c, nil
	}
	if m.Outcome.Name != "" {
		if outcome, err = resolve("outcome", m.Outcome); err != nil {
			return Covariate{}, nil, err
		}
	}
	for _, x := range m.Covariates {
		c, err := resolve("covariate", x)
		if err != nil {
			return Covariate{}, nil, err
		}
		covariates = append(covariates, c)
	}
	for _, f := range m.Factors {
		col := lookup(sc, f)
		switch {
		case col == nil && sc == nil:
			return Covariate{}, nil, refuse("factor %q: no such column in the study schema (none given)", f)
		case col == nil:
			return Covariate{}, nil, refuse("%q: no such column in study %s", f, sc.Name)
		}
		if err := once(col.Name); err != nil {
			return Covariate{}, nil, err
		}
		terms, err := Factor(col)
		if err != nil {
			return Covariate{}, nil, refuse("factor %q needs an int column with a small range or a string column with listed values", f)
		}
		covariates = append(covariates, terms...)
	}
	n := len(covariates)
	if m.Outcome.Name != "" {
		n++
	}
	if n > MaxTerms {
		return Covariate{}, nil, refuse("the factors make %d model terms; at most %d", n, MaxTerms)
	}
	return outcome, covariates, nil
}

func lookup(sc *cdm.StudySchema, name string) *cdm.StudyColumn {
	if sc == nil {
		return nil
	}
	c, _ := sc.Lookup(name)
	return c
}
