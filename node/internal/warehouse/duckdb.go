//go:build duckdb

package warehouse

import (
	"database/sql"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" database/sql driver (cgo)
)

// With the duckdb build tag, the DuckDB dialect opens database files
// through github.com/duckdb/duckdb-go (DuckDB's own Go driver, cgo with
// its prebuilt library).
func init() {
	duckdbOpen = func(dsn string) (*sql.DB, error) { return sql.Open("duckdb", dsn) }
}
