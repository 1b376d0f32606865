package admin

import (
	"context"
	"sync"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/warehouse"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// Warehouse is a node data source (node.DataSource) backed by an OMOP CDM
// v5.4 database: the node pushes each query's aggregation down as SQL and
// reads back only the aggregates. It holds no records in the node's store.
type Warehouse struct {
	b     *warehouse.Backend
	empty *cdm.Tables

	mu      sync.Mutex
	summary *typesv1.DataSummary
	at      time.Time
}

// WarehouseOptions says where the OMOP data is.
type WarehouseOptions struct {
	// DSN is a PostgreSQL connection string (libpq key=value or URL), a
	// DuckDB file's path, or ClickHouse's HTTP URL
	// (http://user:password@host:8123/).
	DSN string
	// Dialect names the SQL dialect ("postgres", the default; "duckdb",
	// "clickhouse": warehouse.DialectNamed).
	Dialect string
	// Schema holds the OMOP tables. Default "omop".
	Schema string
}

// OpenWarehouse connects to the warehouse and checks that it answers: its
// first data summary (row counts of the OMOP tables) is taken here.
func OpenWarehouse(ctx context.Context, o WarehouseOptions) (*Warehouse, error) {
	b, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	patients, rows, err := b.Summary(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	return &Warehouse{b: b, empty: cdm.NewBuilder().Build(),
		summary: &typesv1.DataSummary{Patients: patients, Rows: rows}, at: time.Now()}, nil
}

// open connects with o's dialect and schema.
func (o WarehouseOptions) open(ctx context.Context) (*warehouse.Backend, error) {
	d, err := warehouse.DialectNamed(o.Dialect)
	if err != nil {
		return nil, err
	}
	b, err := warehouse.Open(ctx, o.DSN, d)
	if err != nil {
		return nil, err
	}
	if o.Schema != "" {
		b.Schema = o.Schema
	}
	return b, nil
}

// Close closes the connections.
func (w *Warehouse) Close() { w.b.Close() }

// Tables is empty: a warehouse data source holds no records in memory or
// in the node's store (its records stay in the database, where Evaluate
// runs). The node does not call it; it is there to say so.
func (w *Warehouse) Tables() *cdm.Tables { return w.empty }

// Evaluate computes p's exact aggregates in the database.
func (w *Warehouse) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	return w.b.Evaluate(ctx, p)
}

// summaryTTL bounds how often Summary counts rows in the database.
const summaryTTL = 10 * time.Minute

// Summary gives row counts per table, refreshed at most every ten minutes
// (counting a large warehouse is not free); on an error it keeps the last
// (OpenWarehouse took the first).
func (w *Warehouse) Summary() *typesv1.DataSummary {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.summary != nil && time.Since(w.at) < summaryTTL {
		return w.summary
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patients, rows, err := w.b.Summary(ctx)
	if err == nil {
		w.summary = &typesv1.DataSummary{Patients: patients, Rows: rows}
	}
	w.at = time.Now() // on an error: keep the last summary, try again after the TTL
	return w.summary
}

// LoadOMOP (re)creates the OMOP schema o.Schema in the database o.DSN and
// writes recs into it. It drops that schema first: for tests and demos
// only, never against a production warehouse.
func LoadOMOP(ctx context.Context, o WarehouseOptions, recs *cdm.Records) error {
	b, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	return b.LoadRecords(ctx, recs)
}
