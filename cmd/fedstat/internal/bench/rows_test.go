package bench

import (
	"context"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// TestBulkData: a small node on the embedded store has the rows asked for,
// its patients, and the codes the benchmark queries look for.
func TestBulkData(t *testing.T) {
	const rows = 150_000
	tables, err := BulkData(context.Background(), t.TempDir(), rows, 1, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := tables.Table(cdm.TableConditions)
	if c.Rows != rows || tables.NumPatients() != 1500 {
		t.Fatalf("%d rows, %d patients", c.Rows, tables.NumPatients())
	}
	code := c.Strings["code"]
	for _, want := range []string{"44054006", "6142004"} {
		id, ok := code.Dict.Lookup(want)
		if !ok {
			t.Fatalf("no %s", want)
		}
		n := 0
		for _, v := range code.IDs {
			if v == id {
				n++
			}
		}
		if n < rows/40 {
			t.Errorf("code %s on %d rows", want, n)
		}
	}
}
