package stats

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// exactQuerier is the test fake: it plans each query like the network and
// evaluates it on in-memory tables without noise (every value's noise
// variance is Var, 0 by default).
type exactQuerier struct {
	tables  *cdm.Tables
	cat     *plan.Catalogue
	Var     float64
	queries int
	// planVar, when set, gives every count and sum the noise variance a
	// one-node release of the query carries (dp.Release) instead of Var;
	// the values themselves stay exact.
	planVar bool
}

func (e *exactQuerier) Query(ctx context.Context, r Request) (*Release, error) {
	e.queries++
	p, err := plan.Build(plan.Request{SQL: r.SQL, Epsilon: r.Epsilon, Delta: r.Delta, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2026, 1, 1)}, e.cat)
	if err != nil {
		return nil, err
	}
	ex, err := eval.Evaluate(ctx, p, e.tables)
	if err != nil {
		return nil, err
	}
	res, err := dp.Exact(p, ex)
	if err != nil {
		return nil, err
	}
	out := &Release{Columns: res.Columns, KeyColumns: res.KeyColumns}
	for _, row := range res.Rows {
		rr := Row{Keys: row.Keys}
		for _, n := range row.Values {
			rr.Values = append(rr.Values, Noisy{Value: n.Value, Var: e.Var})
		}
		out.Rows = append(out.Rows, rr)
	}
	if e.planVar {
		// The variances depend on the plan and the number of partials
		// only, not on the totals: release zeros to read them.
		rel, err := dp.Release(p, make([]int64, p.VectorLen()), 1)
		if err != nil {
			return nil, err
		}
		for i, row := range rel.Rows {
			for j, n := range row.Values {
				if !math.IsNaN(n.Variance) {
					out.Rows[i].Values[j].Var = n.Variance
				}
			}
		}
	}
	return out, nil
}

// loadStudy reads a reference set with its schema from examples/reference.
func loadStudy(t *testing.T, rel, schema string) *exactQuerier {
	t.Helper()
	path := testkit.SharedData(t, rel)
	sc, err := cdm.ReadStudySchema("../../examples/reference/schemas/"+schema, "")
	if err != nil {
		t.Fatal(err)
	}
	st := readCSV(t, path, sc)
	cat := plan.DefaultCatalogue()
	cat.Studies = []cdm.StudySchema{*sc}
	return &exactQuerier{tables: cdm.NewBuilder().Build().WithStudies([]*cdm.Study{st}), cat: cat}
}

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol || math.IsNaN(got) {
		t.Errorf("%s = %.5f, want %.5f ± %g", name, got, want, tol)
	}
}

var _ = os.Getenv
