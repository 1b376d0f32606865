// Package eval evaluates a plan over a node's columnar tables. It runs only
// on a node: its output, *Exact, holds exact (un-noised) aggregates that must
// never leave the node. queries/dp turns an *Exact into a noisy share, the
// only value that may.
//
// Evaluation enforces the plan's contribution bounds, which the privacy proof
// relies on: rows outside the public group domain are dropped; per patient,
// at most G cells (the first G in row order) and at most R rows per cell (the
// first R in row order) count; values are clamped to [lo, hi].
package eval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

// Errors.
var (
	// ErrData marks tables that do not fit the plan (missing table or
	// column, more patients than the plan's bound).
	ErrData = errors.New("eval: data does not fit the plan")
)

// Exact holds a node's exact local aggregates for one plan, slot by slot in
// natural units (counts; sums of clamped, centred values). It must never
// leave the node: String and LogValue redact it, and the only ways to read
// it are dp.NoiseShare (which adds the node's noise) and Values.
type Exact struct {
	plan   *plan.Plan
	values []float64
}

// Plan returns the plan e was evaluated for.
func (e *Exact) Plan() *plan.Plan { return e.plan }

// Values returns a copy of the exact slot values (measure-major, as
// plan.VectorLen). It exists for the node admin's local exact answer
// (`fedstat node query`, via dp.Exact) and for tests. The values are not
// differentially private and must never leave the node.
func (e *Exact) Values() []float64 { return append([]float64(nil), e.values...) }

// String redacts the values.
func (e *Exact) String() string { return fmt.Sprintf("eval.Exact{%d slots, redacted}", len(e.values)) }

// LogValue redacts the values.
func (e *Exact) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("slots", len(e.values)), slog.String("values", "redacted"))
}

// Evaluate computes p's exact aggregates over t. It honours ctx between
// phases. It is safe to call concurrently on the same tables.
func Evaluate(ctx context.Context, p *plan.Plan, t *cdm.Tables) (*Exact, error) {
	if p == nil || t == nil {
		return nil, fmt.Errorf("%w: nil plan or tables", ErrData)
	}
	if t.NumPatients() > p.MaxPatientsPerNode() {
		return nil, fmt.Errorf("%w: this node holds more patients than the network bound of %d per node (the exact number stays at the node)", ErrData, p.MaxPatientsPerNode())
	}
	ev, err := newEvaluator(ctx, p, t)
	if err != nil {
		return nil, err
	}
	root, err := ev.table(p.Table())
	if err != nil {
		return nil, err
	}
	rows := full(root.Rows)
	if w := p.Where(); w != nil {
		if rows, err = ev.pred(w, root, rows); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	vals, err := ev.aggregate(root, rows)
	if err != nil {
		return nil, err
	}
	return &Exact{plan: p, values: vals}, nil
}

type evaluator struct {
	ctx      context.Context
	p        *plan.Plan
	t        *cdm.Tables
	patients *cdm.Table
	prow     []int32 // patient index -> row of the patients table (-1: none)
	ages     []int16 // patient index -> age at the reference date (-1 unknown); lazily
}

func newEvaluator(ctx context.Context, p *plan.Plan, t *cdm.Tables) (*evaluator, error) {
	ev := &evaluator{ctx: ctx, p: p, t: t}
	pt, ok := t.Table(cdm.TablePatients)
	if !ok {
		return nil, fmt.Errorf("%w: no patients table", ErrData)
	}
	ev.patients = pt
	n := t.NumPatients()
	ev.prow = make([]int32, n)
	for i := range ev.prow {
		ev.prow[i] = -1
	}
	for r, pi := range pt.Patient {
		if int(pi) < n {
			ev.prow[pi] = int32(r)
		}
	}
	return ev, nil
}

func (ev *evaluator) table(name string) (*cdm.Table, error) {
	tb, ok := ev.t.Table(name)
	if !ok {
		return nil, fmt.Errorf("%w: no table %q", ErrData, name)
	}
	return tb, nil
}

// ageTable returns the ages of all patients at the reference date
// (cdm.AgeAt; -1 unknown), computed once.
func (ev *evaluator) ageTable() []int16 {
	if ev.ages != nil {
		return ev.ages
	}
	ages := make([]int16, len(ev.prow))
	births := ev.patients.Dates["birth_date"]
	ref := ev.p.ReferenceDate()
	for pi, r := range ev.prow {
		ages[pi] = -1
		if r < 0 || int(r) >= len(births) {
			continue
		}
		if a := cdm.AgeAt(births[r], ref); a >= 0 {
			ages[pi] = int16(min(a, math.MaxInt16))
		}
	}
	ev.ages = ages
	return ages
}

// patientOf returns the patient index of each row of tb.
func patientOf(tb *cdm.Table) []uint32 { return tb.Patient }

// stringCol returns the ids and dictionary of text column c, read on tb or,
// for a patient column on another table, on the patients table (then
// viaPatient is true and ids are indexed by patients-table row).
func (ev *evaluator) stringCol(c plan.ColumnRef, tb *cdm.Table) (col *cdm.StringColumn, viaPatient bool, err error) {
	src := tb
	if c.Patient && tb.Name != cdm.TablePatients {
		src, viaPatient = ev.patients, true
	}
	col, ok := src.Strings[c.Name]
	if !ok {
		return nil, false, fmt.Errorf("%w: table %s has no text column %s", ErrData, src.Name, c.Name)
	}
	return col, viaPatient, nil
}

// rowValue compiles a Value into a function of the row of tb.
func (ev *evaluator) rowValue(v plan.Value, tb *cdm.Table) (func(int) float64, error) {
	switch v := v.(type) {
	case plan.ConstValue:
		k := v.V
		return func(int) float64 { return k }, nil
	case plan.AgeValue:
		ages, pat := ev.ageTable(), tb.Patient
		return func(r int) float64 {
			a := ages[pat[r]]
			if a < 0 {
				return math.NaN()
			}
			return float64(a)
		}, nil
	case plan.ColumnValue:
		src, via := tb, false
		if v.Col.Patient && tb.Name != cdm.TablePatients {
			src, via = ev.patients, true
		}
		var get func(int) float64
		switch v.Col.Type {
		case cdm.TypeDate:
			col, ok := src.Dates[v.Col.Name]
			if !ok {
				return nil, fmt.Errorf("%w: table %s has no date column %s", ErrData, src.Name, v.Col.Name)
			}
			get = func(r int) float64 {
				d := col[r]
				if !d.Valid() {
					return math.NaN()
				}
				return float64(d)
			}
		case cdm.TypeNumber:
			col, ok := src.Numbers[v.Col.Name]
			if !ok {
				return nil, fmt.Errorf("%w: table %s has no number column %s", ErrData, src.Name, v.Col.Name)
			}
			get = func(r int) float64 { return col[r] }
			if c := v.Col; c.Clamped {
				get = func(r int) float64 { return clampRead(col[r], c.Lo, c.Hi) }
			}
		default:
			return nil, fmt.Errorf("%w: column %s is not numeric", ErrData, v.Col.Name)
		}
		if !via {
			return get, nil
		}
		pat, prow := tb.Patient, ev.prow
		return func(r int) float64 {
			pr := prow[pat[r]]
			if pr < 0 {
				return math.NaN()
			}
			return get(int(pr))
		}, nil
	case plan.FuncValue:
		x, err := ev.rowValue(v.X, tb)
		if err != nil {
			return nil, err
		}
		switch v.Name {
		case "exp":
			return func(r int) float64 { return math.Exp(x(r)) }, nil
		case "ln":
			return func(r int) float64 {
				a := x(r)
				if !(a > 0) {
					return math.NaN()
				}
				return math.Log(a)
			}, nil
		}
		return nil, fmt.Errorf("%w: unsupported function %q", ErrData, v.Name)
	case plan.IndicatorValue:
		bits, err := ev.pred(v.P, tb, full(tb.Rows))
		if err != nil {
			return nil, err
		}
		return func(r int) float64 {
			if bits.has(r) {
				return 1
			}
			return 0
		}, nil
	case plan.NegValue:
		x, err := ev.rowValue(v.X, tb)
		if err != nil {
			return nil, err
		}
		return func(r int) float64 { return -x(r) }, nil
	case plan.ArithValue:
		l, err := ev.rowValue(v.L, tb)
		if err != nil {
			return nil, err
		}
		rr, err := ev.rowValue(v.R, tb)
		if err != nil {
			return nil, err
		}
		switch v.Op {
		case '+':
			return func(r int) float64 { return l(r) + rr(r) }, nil
		case '-':
			return func(r int) float64 { return l(r) - rr(r) }, nil
		case '*':
			return func(r int) float64 { return l(r) * rr(r) }, nil
		case '/':
			return func(r int) float64 {
				d := rr(r)
				if d == 0 {
					return math.NaN()
				}
				return l(r) / d
			}, nil
		}
	}
	return nil, fmt.Errorf("%w: unsupported value %T", ErrData, v)
}

// clampRead clamps a study column's value to its public range (NaN stays).
func clampRead(x, lo, hi float64) float64 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
