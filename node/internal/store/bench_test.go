package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// bigStore returns a store directory with nPatients patients and nConds
// condition rows, made once and kept in the temp directory between runs
// (FEDSTAT_BENCH_DIR overrides where).
func bigStore(b *testing.B, nPatients, nConds int) string {
	base := os.Getenv("FEDSTAT_BENCH_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("fedstat-bench-store-v3-%d-%d", nPatients, nConds))
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return dir
	}
	os.RemoveAll(dir)
	t0 := time.Now()
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	codes := []string{"44054006", "38341003", "195967001", "840539006", "6142004", "73211009", "10509002", "444814009", "233604007", "68496003"}
	r := &cdm.Records{}
	for i := range nPatients {
		r.Patients = append(r.Patients, cdm.Patient{ID: "p" + strconv.Itoa(i), BirthDate: cdm.Date(-10000 + i%30000), Sex: cdm.Sex(1 + i%2), Region: "R" + strconv.Itoa(i%50), DeathDate: cdm.NoDate})
	}
	if _, err := s.ImportRecords(context.Background(), r, "patients"); err != nil {
		b.Fatal(err)
	}
	const chunk = 1_000_000
	for start := 0; start < nConds; start += chunk {
		r := &cdm.Records{}
		for i := start; i < min(start+chunk, nConds); i++ {
			// Skewed codes: code k appears about twice as often as k+1.
			k := 0
			for x := uint32(i*2654435761) >> 22; x&1 == 1 && k < len(codes)-1; x >>= 1 {
				k++
			}
			r.Conditions = append(r.Conditions, cdm.Condition{ID: "c" + strconv.Itoa(i), PatientID: "p" + strconv.Itoa((i*7919)%nPatients),
				Code: codes[k], System: cdm.SystemSNOMED, Onset: cdm.Date(15000 + i%3650), Abatement: cdm.NoDate})
		}
		if _, err := s.ImportRecords(context.Background(), r, "conditions"); err != nil {
			b.Fatal(err)
		}
	}
	db.Close()
	os.WriteFile(filepath.Join(dir, "complete"), nil, 0o600)
	b.Logf("made %s in %v", dir, time.Since(t0))
	return dir
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLoad10MConditions opens a store of 10 million condition rows
// (1 million patients) and builds the columnar copy, as a node does at
// start. It reports the heap the columnar copy keeps (MiB-tables) and the
// peak process RSS (MiB-maxrss, Linux). Run with -benchtime 1x.
func BenchmarkLoad10MConditions(b *testing.B) {
	dir := bigStore(b, 1_000_000, 10_000_000)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		db, err := kv.Open(kv.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := Open(context.Background(), db, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t := s.Tables()
		db.Close()
		after := heapInUse()
		c, _ := t.Table(cdm.TableConditions)
		if c.Rows != 10_000_000 {
			b.Fatalf("rows %d", c.Rows)
		}
		b.ReportMetric(float64(after-before)/(1<<20), "MiB-tables")
		b.ReportMetric(float64(maxRSS())/(1<<20), "MiB-maxrss")
		runtime.KeepAlive(t)
		b.StartTimer()
	}
}

// BenchmarkCountDistinct10M is a COUNT(DISTINCT patient_id) with one code
// filter over the 10 million rows, as a plain scan of the columnar copy
// (the reference for the query engine).
func BenchmarkCountDistinct10M(b *testing.B) {
	dir := bigStore(b, 1_000_000, 10_000_000)
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	db.Close()
	t := s.Tables()
	c, _ := t.Table(cdm.TableConditions)
	code := c.Strings["code"]
	id, _ := code.Dict.Lookup("38341003")
	seen := make([]uint64, (t.NumPatients()+63)/64)
	b.ResetTimer()
	var n int
	for range b.N {
		clear(seen)
		n = 0
		for i, v := range code.IDs {
			if v == id {
				p := c.Patient[i]
				if seen[p>>6]&(1<<(p&63)) == 0 {
					seen[p>>6] |= 1 << (p & 63)
					n++
				}
			}
		}
	}
	b.ReportMetric(float64(n), "patients")
}

// BenchmarkAppendTo10M imports 10,000 new conditions into (a copy of) the
// 10-million-row store: compare, write, commit and extend the snapshot.
func BenchmarkAppendTo10M(b *testing.B) {
	src := bigStore(b, 1_000_000, 10_000_000)
	dir := b.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		b.Fatal(err)
	}
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := Open(context.Background(), db, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for n := range b.N {
		r := &cdm.Records{}
		for i := range 10_000 {
			r.Conditions = append(r.Conditions, cdm.Condition{ID: fmt.Sprintf("new%d-%d", n, i), PatientID: "p" + strconv.Itoa(i*97),
				Code: "840539006", System: cdm.SystemSNOMED, Onset: 18500, Abatement: cdm.NoDate})
		}
		sum, err := s.ImportRecords(context.Background(), r, "append")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(sum.Build.Milliseconds()), "ms-snapshot")
		b.ReportMetric(float64(sum.Write.Milliseconds()), "ms-write")
	}
}
