package warehouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/test/testkit"
)

// clickhouse starts a ClickHouse server (test/testkit) and opens the
// back end on it with schema: Distributed tables over two shards.
func clickhouse(t *testing.T, ctx context.Context, schema string) *Backend {
	t.Helper()
	return clickhouseOn(t, ctx, testkit.ClickHouseServer(t), schema)
}

func clickhouseOn(t *testing.T, ctx context.Context, srv testkit.ClickHouse, schema string) *Backend {
	t.Helper()
	b, err := Open(ctx, srv.URL, ClickHouse{Cluster: srv.Cluster, Shards: srv.Shards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.Schema = schema
	return b
}

// chTestSQL rewrites the tests' PostgreSQL-flavoured statements for
// ClickHouse 18.16 and the loader's schema there (chDDL): DATE literals and
// CAST($n AS date) arguments become day numbers, TIMESTAMP literals and
// CAST($n AS timestamp) arguments DateTime text (NULL before 1970, which
// DateTime cannot hold; year/month/day_of_birth carry those births).
func chTestSQL(q string, args []any) (string, []any) {
	day := func(s string) (int64, int, bool) {
		tm, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return 0, 0, false
		}
		return int64(cdm.DateFromYMD(tm.Year(), tm.Month(), tm.Day())), tm.Year(), true
	}
	q = chDateLit.ReplaceAllStringFunc(q, func(m string) string {
		d, _, _ := day(chDateLit.FindStringSubmatch(m)[1])
		return strconv.FormatInt(d, 10)
	})
	q = chTimestampLit.ReplaceAllString(q, "'$1'")
	args = slices.Clone(args)
	q = chCastArg.ReplaceAllStringFunc(q, func(m string) string {
		sub := chCastArg.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		if v, ok := args[n-1].(string); ok {
			if d, y, ok := day(v); ok {
				switch {
				case sub[2] == "date":
					args[n-1] = d
				case y < 1970:
					args[n-1] = nil
				default:
					args[n-1] = v + " 00:00:00"
				}
			}
		}
		return "$" + sub[1]
	})
	return q, args
}

var (
	chDateLit      = regexp.MustCompile(`DATE '(\d{4}-\d{2}-\d{2})'`)
	chTimestampLit = regexp.MustCompile(`TIMESTAMP '([^']*)'`)
	chCastArg      = regexp.MustCompile(`CAST\(\$(\d+) AS (date|timestamp)\)`)
)

// TestClickHouse runs the warehouse tests on the ClickHouse dialect, on
// one server whose OMOP tables are Distributed over two shards (the
// loader splits persons by person_id):
//
//   - CompareWithEval, FunctionsAgainstEval: the same answers as the
//     embedded store (eval on the columnar tables) on the same data,
//     bit-identical (exp and ln within 1e-9 relative);
//   - StandardConcepts, RxNormExtension, FHIRAndOMOPAgree: the OMOP
//     mapping's rules (concept_ancestor, 'Maps to', systems, partial
//     birth dates, death, observation periods) give the counts they give
//     on PostgreSQL;
//   - InfoCached, Literals, ShardingChecked (a cluster whose tables are
//     not all sharded alike by person_id is refused), CancelKills (a
//     cancelled statement stops on the server).
func TestClickHouse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv := testkit.ClickHouseServer(t)
	for _, c := range []struct {
		name, schema string
		f            func(t *testing.T, ctx context.Context, b *Backend)
	}{
		{"CompareWithEval", "omop_test", testClickHouseCompare},
		{"FunctionsAgainstEval", "omop_funcs", testFunctionsAgainstEval},
		{"StandardConcepts", "omop_hand", testStandardConcepts},
		{"RxNormExtension", "omop_rxe", testRxNormExtension},
		{"FHIRAndOMOPAgree", "omop_fhir", testFHIRAndOMOPAgree},
		{"InfoCached", "omop_cached", testInfoCached},
		{"Literals", "omop_lit", testClickHouseLiterals},
		{"ShardingChecked", "omop_shardkey", testClickHouseSharding},
		{"CancelKills", "omop_cancel", testClickHouseCancel},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, ctx, clickhouseOn(t, ctx, srv, c.schema)) })
	}
}

// testClickHouseCompare is testCompareWithEval, after checking that the
// loader split the rows between the shards and that the schema's
// Distributed tables read them all.
func testClickHouseCompare(t *testing.T, ctx context.Context, b *Backend) {
	testCompareWithEval(t, ctx, b)
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
	_, rows, err := b.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rows[cdm.TableConditions] != total || total == 0 {
		t.Errorf("the Distributed table reads %d conditions, the shards hold %d", rows[cdm.TableConditions], total)
	}
}

// TestClickHouseCohortScale measures the DESIGN.md cohort count pushed to
// ClickHouse on a large table: FEDSTAT_CH_SCALE_ROWS condition rows (for
// instance 10000000) over a tenth as many persons, generated inside
// ClickHouse (INSERT ... SELECT FROM numbers, each shard its persons), on
// top of 5,000 synthetic patients whose vocabulary the rows use, with one
// observation period a person when FEDSTAT_CH_SCALE_PERIODS is set. It
// runs only when FEDSTAT_CH_SCALE_ROWS is set (docs/warehouse.md has the
// figures).
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
		if os.Getenv("FEDSTAT_CH_SCALE_PERIODS") != "" {
			// One observation period a person, 2010-01-01 to 2029-12-31.
			stmts = append(stmts, fmt.Sprintf("INSERT INTO %s.observation_period (observation_period_id, person_id, observation_period_start_date, observation_period_end_date) SELECT toInt64(number + 1) AS pid, pid, 14610, 21914 FROM numbers(%d) WHERE pid %% %d = %d AND (pid <= 5000 OR pid > 10000000)",
				db, 10000001+persons, len(d.Shards), k))
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
	b.forget()
	info, err := b.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("observation periods: %v", info.Periods)
	for _, sql := range []string{
		`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'`,
		`SELECT sex, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003' GROUP BY sex`,
		`SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64 AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`,
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{})
		if err != nil {
			t.Fatal(err)
		}
		q, _, err := Translate(b.d, b.Schema, info, p)
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
		t.Logf("%s = %v: median %v, min %v, max %v of 5 (%d bytes of SQL)", sql, vals, times[2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[4].Round(time.Millisecond), len(q))
	}
}

// testClickHouseLiterals: values travel as literals (ClickHouse 18.16 has
// no query parameters), so quotes, backslashes, LIKE wildcards and control
// bytes must come back from the server as they went in, and a value never
// ends its literal, whether written by the translator (chLiteral) or bound
// to a $n placeholder (chBind).
func testClickHouseLiterals(t *testing.T, ctx context.Context, b *Backend) {
	for _, v := range []string{"", "plain", "it's", `back\slash`, `\'`, "'; DROP DATABASE x; --", "tab\tnew\nline\r\x00nul", "50%_off", "ünïcødé", "\x7f\x01"} {
		var got string
		if err := b.c.queryRow(ctx, "SELECT "+chLiteral(v)).Scan(&got); err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if got != v {
			t.Errorf("literal %s came back as %q, want %q", chLiteral(v), got, v)
		}
		if err := b.c.queryRow(ctx, "SELECT $1 -- '$1'", v).Scan(&got); err != nil || got != v {
			t.Errorf("$1 bound to %q came back as %q, %v", v, got, err)
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

// testClickHouseSharding: the translator's distributed plan needs a
// person's rows on one shard; a person-keyed table sharded otherwise, by
// another expression than the others, or local among Distributed ones is
// refused by name.
func testClickHouseSharding(t *testing.T, ctx context.Context, b *Backend) {
	if err := b.CreateSchema(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Info(ctx); err != nil {
		t.Fatalf("sharded by person_id: %v", err)
	}
	d := b.d.(ClickHouse)
	for _, c := range []struct{ engine, want string }{
		{"Distributed(fedstat, '', condition_occurrence, rand())", "sharding key rand()"},
		{"Distributed(fedstat, '', condition_occurrence)", "sharding key none"},
		{"Distributed(fedstat, '', condition_occurrence, cityHash64(person_id))", "Distributed differently"},
		{"MergeTree ORDER BY person_id", "condition_occurrence of database omop_shardkey are local"},
	} {
		for _, q := range []string{
			"DROP TABLE " + b.tbl("condition_occurrence"),
			"CREATE TABLE " + b.tbl("condition_occurrence") + " AS " + d.Quote(d.Shards[0]) + ".condition_occurrence ENGINE = " + c.engine,
		} {
			if err := b.c.exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		b.forget()
		if _, err := b.Info(ctx); !errors.Is(err, ErrClickHouseUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Info = %v, want %v saying %q", c.engine, err, ErrClickHouseUnsupported, c.want)
		}
	}
}

// TestCHBind: $n placeholders outside quotes become literals; a $ inside a
// string or identifier stays; a placeholder without its argument is an
// error, not an empty value.
func TestCHBind(t *testing.T) {
	got, err := chBind("SELECT $1, '$1', `$2`, $2, $10 -- x", []any{"a'b", int64(7), nil, nil, nil, nil, nil, nil, nil, 2.5})
	if want := "SELECT 'a\\'b', '$1', `$2`, 7, toFloat64('2.5') -- x"; err != nil || got != want {
		t.Errorf("chBind = %q, %v; want %q", got, err, want)
	}
	if _, err := chBind("SELECT $2", []any{1}); err == nil {
		t.Error("$2 with one argument: no error")
	}
	if _, err := chBind("SELECT $1", []any{struct{}{}}); err == nil {
		t.Error("an argument without a literal form: no error")
	}
}

// testClickHouseCancel: when the caller's context ends, the statement is
// killed on the server, not left running (ClickHouse 18.16 does not stop
// a query whose HTTP client went away).
func testClickHouseCancel(t *testing.T, ctx context.Context, b *Backend) {
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := b.c.exec(short, "SELECT count() FROM numbers(100000000000) WHERE NOT ignore(sleep(0))"); err == nil {
		t.Fatal("a statement of minutes finished in 300 ms")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int64
		if err := b.c.queryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE '%numbers(100000000000)%' AND query NOT LIKE '%system.processes%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled statement still runs on the server after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
