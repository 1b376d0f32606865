package node

import (
	"context"

	"github.com/fedstat/fedstat/internal/cdm"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// TablesFunc is a DataSource over the columnar tables the function returns
// at each call: Evaluate runs queries/eval on them, Summary counts them.
// The function must return immutable tables (a snapshot), never nil, and
// be safe to call concurrently.
type TablesFunc func() *cdm.Tables

var _ DataSource = TablesFunc(nil)

// TablesOf is the DataSource over the fixed tables t: the benchmark's
// shared read-only data, and tests (noisyShare(ctx, id, TablesOf(t), pol, p)).
func TablesOf(t *cdm.Tables) TablesFunc { return func() *cdm.Tables { return t } }

// Evaluate implements DataSource: eval.Evaluate on the current tables.
func (f TablesFunc) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	return eval.Evaluate(ctx, p, f())
}

// Summary implements DataSource: the exact counts of the current tables.
func (f TablesFunc) Summary() *typesv1.DataSummary {
	t := f()
	return &typesv1.DataSummary{Patients: int64(t.NumPatients()), Rows: t.RowCounts()}
}
