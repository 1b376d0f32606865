//go:build duckdb

package e2e

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/test/testkit"
)

// TestWarehouseDuckDBNodeProcess is TestWarehouseNodeProcess with node-3's
// OMOP CDM in a DuckDB file, opened read-only by a fedstat binary built
// with the duckdb tag ([warehouse] dialect = "duckdb").
func TestWarehouseDuckDBNodeProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("process test builds the binary; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 23)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := demo.Synthetic(1, 700, 29)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hospital.duckdb")
	if err := admin.LoadOMOP(ctx, admin.WarehouseOptions{DSN: file, Dialect: "duckdb", Schema: "omop"}, wh[0]); err != nil {
		t.Fatal(err)
	}
	bin, err := testkit.BuildBinaryTags(t.TempDir(), "duckdb")
	if err != nil {
		t.Fatal(err)
	}
	o := demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3, Binary: bin, Dir: t.TempDir(),
		NodeConfig: func(i int) string {
			if i != 2 {
				return ""
			}
			return fmt.Sprintf("\n[warehouse]\ndialect = \"duckdb\"\ndsn = %q\nschema = \"omop\"\n", file+"?access_mode=READ_ONLY")
		}}
	p, err := demo.Serve(ctx, o)
	if err != nil {
		dumpLogs(t, o.Dir, len(o.Data))
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			dumpLogs(t, o.Dir, len(o.Data))
		}
	})

	res, _ := cliQueryJSON(t, p, 3, "--epsilon", "5", "SELECT COUNT(*) FROM patients")
	want := float64(len(data[0].Patients) + len(data[1].Patients) + len(wh[0].Patients))
	imported := float64(len(data[0].Patients) + len(data[1].Patients) + len(data[2].Patients))
	got := res.Rows[0].Values[0].Value
	if math.Abs(got-want) > 10 {
		t.Fatalf("released %v, want about %v from the DuckDB file (node-3's imported records would give %v)", got, want, imported)
	}
}
