package admin

import (
	"context"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/node/internal/warehouse"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/test/testkit"
)

// TestWarehouseDataSource opens the warehouse data source a node daemon uses
// ([warehouse] in its config) on an OMOP schema and checks that it evaluates
// plans to the same exact aggregates as the embedded columnar store and
// summarises its row counts.
func TestWarehouseDataSource(t *testing.T) {
	dsn := testkit.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := synth.Generate(synth.Options{Patients: 800, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := warehouse.Open(ctx, dsn, warehouse.Postgres{})
	if err != nil {
		t.Fatal(err)
	}
	loader.Schema = "omop_admin_test"
	if err := loader.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	loader.Close()

	if _, err := OpenWarehouse(ctx, WarehouseOptions{DSN: dsn, Dialect: "trino"}); err == nil {
		t.Fatal("unknown dialect accepted")
	}
	if _, err := OpenWarehouse(ctx, WarehouseOptions{DSN: dsn, Schema: "no_such_schema"}); err == nil {
		t.Fatal("missing OMOP schema accepted")
	}
	w, err := OpenWarehouse(ctx, WarehouseOptions{DSN: dsn, Schema: "omop_admin_test"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	b := cdm.NewBuilder()
	b.AddRecords(recs)
	tabs := b.Build()
	sum := w.Summary()
	if sum.GetPatients() != int64(tabs.NumPatients()) {
		t.Errorf("summary: %d patients, want %d", sum.GetPatients(), tabs.NumPatients())
	}
	if tb, _ := tabs.Table("conditions"); sum.GetRows()["conditions"] != int64(tb.Rows) {
		t.Errorf("summary: %d condition rows, want %d", sum.GetRows()["conditions"], tb.Rows)
	}
	// The summary is cached: a changed warehouse shows after the TTL.
	more, err := synth.Generate(synth.Options{Patients: 50, Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	if err := LoadOMOP(ctx, WarehouseOptions{DSN: dsn, Schema: "omop_admin_test_2"}, more); err != nil {
		t.Fatal(err)
	}
	w2, err := OpenWarehouse(ctx, WarehouseOptions{DSN: dsn, Schema: "omop_admin_test_2"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := LoadOMOP(ctx, WarehouseOptions{DSN: dsn, Schema: "omop_admin_test_2"}, recs); err != nil {
		t.Fatal(err)
	}
	if got := w2.Summary().GetPatients(); got != 50 {
		t.Errorf("summary within the TTL: %d patients, want the cached 50", got)
	}
	w2.mu.Lock()
	w2.at = w2.at.Add(-summaryTTL)
	w2.mu.Unlock()
	if got := w2.Summary().GetPatients(); got != int64(tabs.NumPatients()) {
		t.Errorf("summary after the TTL: %d patients, want %d", got, tabs.NumPatients())
	}
	if w.Tables().NumPatients() != 0 {
		t.Error("a warehouse data source must not hold records")
	}

	cat := plan.DefaultCatalogue()
	cat.Regions = nil
	for _, p := range recs.Patients {
		cat.Regions = append(cat.Regions, p.Region)
	}
	for _, sql := range []string{
		`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'`,
		`SELECT sex, COUNT(*) FROM patients GROUP BY sex`,
		`SELECT AVG(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4'`,
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateOf(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))}, cat)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		got, err := w.Evaluate(ctx, p)
		if err != nil {
			t.Fatalf("%s: warehouse: %v", sql, err)
		}
		want, err := eval.Evaluate(ctx, p, tabs)
		if err != nil {
			t.Fatal(err)
		}
		g, e := got.Values(), want.Values()
		for i := range e {
			if d := g[i] - e[i]; d > 1e-6 || d < -1e-6 {
				t.Errorf("%s: cell %d: warehouse %v, embedded %v", sql, i, g[i], e[i])
			}
		}
	}
}
