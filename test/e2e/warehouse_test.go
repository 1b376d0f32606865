package e2e

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"

	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/test/testkit"
)

// TestWarehouseNodeProcess runs a network of separate processes in which
// node-3 answers from an OMOP database in PostgreSQL ([warehouse] in its
// config) instead of its imported records: the released total at epsilon 5
// (noise SD about 1.2) is the sum over node-1's and node-2's records and the warehouse's,
// not node-3's (much smaller) imported set.
func TestWarehouseNodeProcess(t *testing.T) {
	dsn := testkit.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(3, 300, 23)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := demo.Synthetic(1, 700, 29)
	if err != nil {
		t.Fatal(err)
	}
	schema := "omop_demo_node3"
	if err := admin.LoadOMOP(ctx, admin.WarehouseOptions{DSN: dsn, Schema: schema}, wh[0]); err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3,
		NodeConfig: func(i int) string {
			if i != 2 {
				return ""
			}
			return fmt.Sprintf("\n[warehouse]\ndsn = %q\nschema = %q\n", dsn, schema)
		}})

	res, _ := cliQueryJSON(t, p, 3, "--epsilon", "5", "SELECT COUNT(*) FROM patients")
	want := float64(len(data[0].Patients) + len(data[1].Patients) + len(wh[0].Patients))
	imported := float64(len(data[0].Patients) + len(data[1].Patients) + len(data[2].Patients))
	got := res.Rows[0].Values[0].Value
	if math.Abs(got-want) > 10 {
		t.Fatalf("released %v, want about %v from the warehouse (node-3's imported records would give %v)", got, want, imported)
	}
}
