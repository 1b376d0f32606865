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

// DataVersioner is a DataSource that can say which data it holds: a
// version that changes whenever the data changes and never comes back (the
// embedded store's). A node puts it in its partials and its Info answer, so
// that the coordinator can answer an identical later query from a release
// while no node's data changed. A source without one (the warehouse back
// end, whose tables change outside fedstat) never has a query reused.
type DataVersioner interface {
	DataVersion() string
}

// dataVersion is d's data version, or "" when it has none.
func dataVersion(d DataSource) string {
	if v, ok := d.(DataVersioner); ok {
		return v.DataVersion()
	}
	return ""
}
