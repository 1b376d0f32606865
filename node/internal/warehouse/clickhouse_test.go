package warehouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
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

// TestClickHouseCohortScale measures the DESIGN.md cohort count pushed to
// ClickHouse on a large table: FEDSTAT_CH_SCALE_ROWS condition rows (for
// instance 10000000) over a tenth as many persons, generated inside
// ClickHouse (INSERT ... SELECT FROM numbers, each shard its persons), on
// top of 5,000 synthetic patients whose vocabulary the rows use. It runs
// only when that variable is set (docs/warehouse.md has the figure).
func TestClickHouseCohortScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FEDSTAT_CH_SCALE_ROWS"))
	if n <= 0 {
		t.Skip("set FEDSTAT_CH_SCALE_ROWS (e.g. 10000000) to measure")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b := clickhouse(t, ctx, "omop_scale")
	recs, err := synth.Generate(synth.Options{Patients: 5000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.LoadRecords(ctx, recs); err != nil {
		t.Fatal(err)
	}
	codes := []string{"840539006", "38341003", "44054006", "6142004", "195967001"}
	ids := make([]string, len(codes))
	for i, c := range codes {
		var id int64
		if err := b.c.queryRow(ctx, "SELECT concept_id FROM omop_scale.concept WHERE concept_code = "+chLiteral(c)).Scan(&id); err != nil {
			t.Fatalf("concept %s: %v", c, err)
		}
		ids[i] = strconv.FormatInt(id, 10)
	}
	persons := max(n/10, 1)
	d := b.d.(ClickHouse)
	start := time.Now()
	for k, sh := range d.Shards {
		db := d.Quote(sh)
		stmts := []string{
			fmt.Sprintf("INSERT INTO %s.person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth, location_id, person_source_value) SELECT toInt64(10000001 + number) AS pid, if(number %% 2 = 0, 8507, 8532), toInt32(1930 + number %% 80), toInt32(1 + number %% 12), toInt32(1 + number %% 28), toInt64(1 + number %% 3), concat('s', toString(number)) FROM numbers(%d) WHERE pid %% %d = %d",
				db, persons, len(d.Shards), k),
			fmt.Sprintf("INSERT INTO %s.condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, condition_start_date, condition_source_value, condition_source_concept_id) SELECT toInt64(100000000 + number), toInt64(10000001 + cityHash64(number) %% %d) AS pid, toInt32([%s][1 + number %% 5]) AS c, toInt32(17000 + number %% 2500), ['%s'][1 + number %% 5], c FROM numbers(%d) WHERE pid %% %d = %d",
				db, persons, strings.Join(ids, ","), strings.Join(codes, "','"), n, len(d.Shards), k),
			"OPTIMIZE TABLE " + db + ".condition_occurrence FINAL",
		}
		for _, q := range stmts {
			if err := b.c.exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rows int64
	if err := b.c.queryRow(ctx, "SELECT count() FROM omop_scale.condition_occurrence").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d condition rows over %d persons in %v", rows, persons+5000, time.Since(start).Round(time.Millisecond))
	for _, sql := range []string{
		`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'`,
		`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64 AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`,
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{})
		if err != nil {
			t.Fatal(err)
		}
		var times []time.Duration
		var vals []float64
		for range 5 {
			start := time.Now()
			e, err := b.Evaluate(ctx, p)
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			times = append(times, time.Since(start))
			vals = e.Values()
		}
		slices.Sort(times)
		t.Logf("%s = %v: median %v, min %v, max %v of 5", sql, vals, times[2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[4].Round(time.Millisecond))
	}
}

// TestClickHouseLiterals: values travel as literals (ClickHouse 18.16 has
// no query parameters), so quotes, backslashes, LIKE wildcards and control
// bytes must come back from the server as they went in, and a value never
// ends its literal.
func TestClickHouseLiterals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := clickhouse(t, ctx, "omop_lit")
	for _, v := range []string{"", "plain", "it's", `back\slash`, `\'`, "'; DROP DATABASE x; --", "tab\tnew\nline\r\x00nul", "50%_off", "ünïcødé", "\x7f\x01"} {
		var got string
		if err := b.c.queryRow(ctx, "SELECT "+chLiteral(v)).Scan(&got); err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if got != v {
			t.Errorf("literal %s came back as %q, want %q", chLiteral(v), got, v)
		}
		var like int64
		if err := b.c.queryRow(ctx, "SELECT "+chLiteral(v+"x")+" LIKE "+chBindText(nil, []string{v}, false).like[0]).Scan(&like); err != nil || like != 1 {
			t.Errorf("%q LIKE its own prefix: %d, %v", v+"x", like, err)
		}
	}
	// A prefix's wildcards are escaped: '50%' does not match '500'.
	var like int64
	if err := b.c.queryRow(ctx, "SELECT '500' LIKE "+chBindText(nil, []string{"50%"}, false).like[0]).Scan(&like); err != nil || like != 0 {
		t.Errorf("'500' LIKE the prefix 50%%: %d, %v", like, err)
	}
}
