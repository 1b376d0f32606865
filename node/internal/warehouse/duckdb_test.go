//go:build duckdb

package warehouse

import (
	"path/filepath"
	"testing"
)

// With the duckdb tag every warehouse test also runs on a DuckDB file.
func init() {
	testDialects = append(testDialects, struct {
		d   Dialect
		dsn func(t *testing.T) string
	}{DuckDB{}, func(t *testing.T) string { return filepath.Join(t.TempDir(), "omop.duckdb") }})
}
