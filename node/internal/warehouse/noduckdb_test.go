//go:build !duckdb

package warehouse

import (
	"context"
	"errors"
	"testing"
)

// Without the duckdb tag the dialect is known but cannot open a file: the
// error says how to get a binary that can.
func TestDuckDBNeedsTheTag(t *testing.T) {
	d, err := DialectNamed("duckdb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), "omop.duckdb", d); !errors.Is(err, errNoDuckDB) {
		t.Fatalf("Open = %v, want %v", err, errNoDuckDB)
	}
}
