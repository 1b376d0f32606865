//go:build duckdb

package warehouse

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// With the duckdb tag every warehouse test also runs on a DuckDB file.
func init() {
	testDialects = append(testDialects, struct {
		d   Dialect
		dsn func(t *testing.T) string
	}{DuckDB{}, func(t *testing.T) string { return filepath.Join(t.TempDir(), "omop.duckdb") }})
}

// TestDuckDBReadOnly opens a CDM file the way a node should, read-only:
// queries answer, writes are refused by DuckDB.
func TestDuckDBReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hospital.duckdb")
	w, err := Open(ctx, path, DuckDB{})
	if err != nil {
		t.Fatal(err)
	}
	w.Schema = "cdm"
	loadHandBuilt(ctx, t, w)
	w.Close()

	r, err := Open(ctx, path+"?access_mode=READ_ONLY", DuckDB{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Schema = "cdm"
	if got := count(ctx, t, r, `SELECT COUNT(*) FROM conditions WHERE code = '44054006'`); !equal(got, []float64{3}) {
		t.Errorf("read-only: %v", got)
	}
	if err := r.c.exec(ctx, "DELETE FROM cdm.person"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "read-only") {
		t.Errorf("a write to a read-only file: %v", err)
	}
}
