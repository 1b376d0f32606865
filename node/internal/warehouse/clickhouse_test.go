package warehouse

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/test/testkit"
)

// clickhouse starts a ClickHouse server (test/testkit) and opens the
// back end on it with schema: Distributed tables over two shards.
func clickhouse(t *testing.T, ctx context.Context, schema string) *Backend {
	t.Helper()
	srv := testkit.ClickHouseServer(t)
	b, err := Open(ctx, srv.URL, ClickHouse{Cluster: srv.Cluster, Shards: srv.Shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.Schema = schema
	return b
}

// TestClickHouseCompareWithEval: the ClickHouse dialect, reading
// Distributed tables over two shards, gives the same answers as the
// embedded store (eval on the columnar tables) on the same data,
// bit-identical, for the compare test's queries; the functions' queries
// within 1e-9 relative (exp and ln from ClickHouse's math library).
func TestClickHouseCompareWithEval(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := clickhouse(t, ctx, "omop_ch")
	recs, err := synth.Generate(synth.Options{Patients: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	tb := cdm.NewBuilder()
	tb.AddRecords(recs)
	tabs := tb.Build()
	start := time.Now()
	if err := b.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d patients in %v", len(tabs.PatientIDs), time.Since(start).Round(time.Millisecond))
	// The rows are split between the shards, and the schema's tables
	// read both.
	d := b.d.(ClickHouse)
	var total int64
	for _, sh := range d.Shards {
		var n int64
		if err := b.c.queryRow(ctx, "SELECT count() FROM "+d.Quote(sh)+".condition_occurrence").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("shard %s holds no conditions", sh)
		}
		total += n
	}
	var all int64
	if err := b.c.queryRow(ctx, "SELECT count() FROM omop_ch.condition_occurrence").Scan(&all); err != nil {
		t.Fatal(err)
	}
	if all != total || all != tabs.RowCounts()[cdm.TableConditions] {
		t.Errorf("distributed table has %d conditions, shards %d, records %d", all, total, tabs.RowCounts()[cdm.TableConditions])
	}

	cat := &plan.Catalogue{Regions: synth.DefaultRegions}
	ref := cdm.DateFromYMD(2024, 1, 1)
	check := func(sql string, exact bool) {
		t.Helper()
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			return
		}
		want, err := eval.Evaluate(ctx, p, tabs)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		got, err := b.Evaluate(ctx, p)
		if err != nil {
			t.Errorf("%s: %v", sql, err)
			return
		}
		t.Logf("%v %s", time.Since(start).Round(time.Millisecond), sql)
		w, g := want.Values(), got.Values()
		nonzero := false
		for i := range w {
			nonzero = nonzero || w[i] != 0
			same := w[i] == g[i] || (math.IsNaN(w[i]) && math.IsNaN(g[i]))
			if !exact {
				same = math.Abs(w[i]-g[i]) <= 1e-9*math.Max(1, math.Abs(w[i]))
			}
			if !same {
				t.Errorf("%s: slot %d: eval %v, clickhouse %v", sql, i, w[i], g[i])
			}
		}
		if !nonzero {
			t.Errorf("%s: all zero: the query tests nothing", sql)
		}
	}
	for _, sql := range queries {
		check(sql, true)
	}
	for _, sql := range funcQueries {
		check(sql, false)
	}
}

// TestClickHouseRefusesPeriods: a CDM with observation periods is refused
// by name (ClickHouse 18.16 cannot place events in periods in one
// statement), not answered wrongly.
func TestClickHouseRefusesPeriods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := clickhouse(t, ctx, "omop_periods")
	recs, err := synth.Generate(synth.Options{Patients: 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	d := b.d.(ClickHouse)
	if err := b.c.exec(ctx, "INSERT INTO "+d.Quote(d.Shards[1])+".observation_period (observation_period_id, person_id, observation_period_start_date, observation_period_end_date) VALUES (1, 1, 10957, 21915)"); err != nil {
		t.Fatal(err)
	}
	b.forget()
	p, err := plan.Build(plan.Request{SQL: `SELECT COUNT(*) FROM conditions`, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1}, &plan.Catalogue{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Evaluate(ctx, p)
	if !errors.Is(err, ErrClickHouseUnsupported) || !strings.Contains(err.Error(), "observation periods") {
		t.Fatalf("Evaluate with periods = %v, want %v naming observation periods", err, ErrClickHouseUnsupported)
	}
}
