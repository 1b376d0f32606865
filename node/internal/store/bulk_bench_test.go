package store

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/queries/plan"
)

// envRows reads a row count from the environment (0: unset). The large
// measurements below are opt-in: they take minutes and gigabytes of disk.
func envRows(b *testing.B, name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	if n <= 0 {
		b.Skipf("set %s to a number of condition rows to run", name)
	}
	return n
}

// BenchmarkBulkNode measures a node with FEDSTAT_BULK_ROWS condition rows
// (one patient per 100 rows) on the column store: the keyed import of the
// patients, the streaming bulk import (time, peak anonymous memory, peak
// RSS), a reopen, and the cohort count (a COUNT(DISTINCT patient_id) with
// a code filter, through queries/eval) cold and warm. For example, the
// issue's target, 10^8 rows:
//
//	FEDSTAT_BULK_ROWS=100000000 FEDSTAT_BENCH_DIR=/var/tmp \
//	    go test -run '^$' -bench BulkNode -benchtime 1x -timeout 1h ./node/internal/store
func BenchmarkBulkNode(b *testing.B) {
	rows := envRows(b, "FEDSTAT_BULK_ROWS")
	np := max(rows/100, 1000)
	base := os.Getenv("FEDSTAT_BENCH_DIR")
	if base == "" {
		base = b.TempDir()
	}
	dir, err := os.MkdirTemp(base, "fedstat-bulk-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		s, db := openBulk(b, dir)
		t0 := time.Now()
		if _, err := s.ImportRecords(ctx, bulkPatients(np), "patients"); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s-patients")
		t0 = time.Now()
		anon, peak := peakDuring(func() {
			if _, err := s.ImportBulk(ctx, &rowSource{n: rows, np: np, chunk: 65536}, "bulk"); err != nil {
				b.Fatal(err)
			}
		})
		b.ReportMetric(time.Since(t0).Seconds(), "s-import")
		b.ReportMetric(float64(anon)/(1<<20), "MiB-import-anon-growth")
		b.ReportMetric(float64(peak)/(1<<20), "MiB-import-anon-peak")
		b.ReportMetric(float64(maxRSS())/(1<<20), "MiB-maxrss-import")
		db.Close()

		t0 = time.Now()
		s, db = openBulk(b, dir)
		b.ReportMetric(time.Since(t0).Seconds(), "s-reopen")
		c, _ := s.Tables().Table(cdm.TableConditions)
		if c.Rows != rows {
			b.Fatalf("%d rows", c.Rows)
		}
		p, err := plan.Build(plan.Request{SQL: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'",
			Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{})
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		var n float64
		for range 5 {
			t1 := time.Now()
			e, err := s.Evaluate(ctx, p)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t1))
			n = e.Values()[0]
		}
		b.ReportMetric(float64(lat[0].Milliseconds()), "ms-cohort-first")
		b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "ms-cohort-warm")
		b.ReportMetric(n, "patients-in-cohort")
		b.ReportMetric(float64(rssAnon())/(1<<20), "MiB-anon-serving")
		b.ReportMetric(float64(maxRSS())/(1<<20), "MiB-maxrss")
		db.Close()
		os.RemoveAll(filepath.Join(dir, "kv"))
		os.RemoveAll(filepath.Join(dir, "columns"))
	}
}

// BenchmarkKeyedImport is the reference: FEDSTAT_KEYED_ROWS condition rows
// imported as keyed records in one ImportRecords (the input itself held in
// memory, as the importers hold it), with the peak RSS.
func BenchmarkKeyedImport(b *testing.B) {
	rows := envRows(b, "FEDSTAT_KEYED_ROWS")
	np := max(rows/10, 1000)
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		db, err := kv.Open(kv.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(ctx, db, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.ImportRecords(ctx, bulkPatients(np), "patients"); err != nil {
			b.Fatal(err)
		}
		src := &rowSource{n: rows, np: np, chunk: rows}
		r, _ := src.Next(ctx)
		b.StartTimer()
		if _, err := s.ImportRecords(ctx, r, "conditions"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(maxRSS())/(1<<20), "MiB-maxrss")
		db.Close()
		b.StartTimer()
	}
}
