package admin

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"testing"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
	"github.com/fedstat/fedstat/node/internal/store"
)

type bundleFile struct {
	name string
	data []byte
}

func loadBundles(b *testing.B) ([]bundleFile, int64) {
	tgz := testkit.SharedData(b, "fhir-r4-synthea/bundles.tar.gz")
	f, err := os.Open(tgz)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []bundleFile
	var n int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, n
		}
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, bundleFile{h.Name, data})
		n += int64(len(data))
	}
}

// BenchmarkImportSyntheaBundles imports the 309 Synthea bundles (already
// read into memory, as from a page-cached directory) into a fresh on-disk
// store: parse, check, write durably, commit, rebuild the columnar copy.
// MB/s is of FHIR JSON. Run with -cpu 1 for the one-core figure.
func BenchmarkImportSyntheaBundles(b *testing.B) {
	bundles, n := loadBundles(b)
	rule, _ := fhir.ParseRegionRule("city")
	b.SetBytes(n)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		db, err := kv.Open(kv.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		s, err := store.Open(context.Background(), db, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		p := fhir.NewParser(fhir.Options{Region: rule})
		for _, f := range bundles {
			p.ParseBundle(f.name, f.data)
		}
		res := &ingest.Result{Batch: *p.Result().Batch}
		res.CheckPatients(s.Tables())
		if len(res.Errors) > 0 {
			b.Fatal(res.Errors[0])
		}
		sum, err := s.ImportRecords(context.Background(), &res.Records, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(sum.Build.Microseconds())/1000, "ms-columnar-build")
		db.Close()
		b.StartTimer()
	}
}

// BenchmarkImportSyntheaTarGz is the whole admin import of the archive as
// the CLI runs it (gzip and tar included).
func BenchmarkImportSyntheaTarGz(b *testing.B) {
	tgz := testkit.SharedData(b, "fhir-r4-synthea/bundles.tar.gz")
	_, n := loadBundles(b)
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		if _, err := Import(context.Background(), ImportOptions{DataDir: b.TempDir()}, []string{tgz}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseSyntheaBundles is the parser alone.
func BenchmarkParseSyntheaBundles(b *testing.B) {
	bundles, n := loadBundles(b)
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		p := fhir.NewParser(fhir.Options{})
		for _, f := range bundles {
			p.ParseBundle(f.name, f.data)
		}
	}
}

// BenchmarkOpenSynthea is the columnar build at start for the 309-bundle
// set (open = recover + scan + build).
func BenchmarkOpenSynthea(b *testing.B) {
	tgz := testkit.SharedData(b, "fhir-r4-synthea/bundles.tar.gz")
	dir := b.TempDir()
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{tgz}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		_, db, err := OpenStore(context.Background(), OpenOptions{DataDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
}
