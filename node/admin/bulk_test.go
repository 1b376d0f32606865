package admin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// bulkInput writes patients.csv and conditions.csv (n conditions) to a
// new directory; bad > 0 makes that condition's onset date bad.
func bulkInput(t *testing.T, n, bad int) string {
	t.Helper()
	in := t.TempDir()
	var p, c strings.Builder
	p.WriteString("patient_id,birth_date,sex,region\n")
	for i := range 40 {
		fmt.Fprintf(&p, "p%d,19%02d-01-01,%s,R%d\n", i, 40+i, []string{"female", "male"}[i%2], i%3)
	}
	c.WriteString("id,patient_id,code,system,onset_date\n")
	for i := range n {
		date := fmt.Sprintf("2020-%02d-01", 1+i%12)
		if i+1 == bad {
			date = "someday"
		}
		fmt.Fprintf(&c, "c%d,p%d,%d,http://snomed.info/sct,%s\n", i, (i*7)%40, 100+i%9, date)
	}
	write(t, in, "patients.csv", p.String())
	write(t, in, "conditions.csv", c.String())
	return in
}

// TestImportBulk: a bulk import of CDM CSV files (read in small chunks)
// stores what the usual import stores; bad records fail it naming their
// line; an operator key file is refused.
func TestImportBulk(t *testing.T) {
	ctx := context.Background()
	in := bulkInput(t, 500, 0)
	keyed, bulk := t.TempDir(), t.TempDir()
	if _, err := Import(ctx, ImportOptions{DataDir: keyed}, []string{in}); err != nil {
		t.Fatal(err)
	}
	sum, err := Import(ctx, ImportOptions{DataDir: bulk, Bulk: true, ChunkRows: 64}, []string{in})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Added["conditions"] != 500 || sum.Added["patients"] != 40 || sum.Read["conditions"] != 500 {
		t.Fatalf("summary %+v", sum)
	}
	kt, err := OpenTables(ctx, keyed, "")
	if err != nil {
		t.Fatal(err)
	}
	bt, err := OpenTables(ctx, bulk, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(kt.RowCounts(), bt.RowCounts()) {
		t.Fatalf("rows %v, want %v", bt.RowCounts(), kt.RowCounts())
	}
	for _, sql := range []string{
		"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '103'",
		"SELECT region, COUNT(*) FROM conditions WHERE onset_date >= '2020-06-01' GROUP BY region",
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{Regions: []string{"R0", "R1", "R2"}})
		if err != nil {
			t.Fatal(err)
		}
		ke, err := eval.Evaluate(ctx, p, kt)
		if err != nil {
			t.Fatal(err)
		}
		be, err := eval.Evaluate(ctx, p, bt)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ke.Values(), be.Values()) {
			t.Errorf("%s: bulk %v, keyed %v", sql, be.Values(), ke.Values())
		}
	}
	// Again: nothing changes.
	if sum, err := Import(ctx, ImportOptions{DataDir: bulk, Bulk: true, ChunkRows: 64}, []string{in}); err != nil || sum.Generation != 0 {
		t.Fatalf("again: %+v, %v", sum, err)
	}

	if _, err := Backup(ctx, BackupOptions{DataDir: bulk}, filepath.Join(t.TempDir(), "b.tar")); !errors.Is(err, ErrBulkBackup) {
		t.Fatalf("backup of bulk imports: %v", err)
	}

	// A bad record in the third chunk: nothing of the bulk part is stored.
	bad := t.TempDir()
	_, err = Import(ctx, ImportOptions{DataDir: bad, Bulk: true, ChunkRows: 64}, []string{bulkInput(t, 500, 150)})
	var ie *ImportError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "conditions.csv:151") {
		t.Fatalf("bad record: %v", err)
	}
	if bt, err := OpenTables(ctx, bad, ""); err != nil || bt.RowCounts()["conditions"] != 0 {
		t.Fatalf("after a failed bulk import: %v, %v", bt.RowCounts(), err)
	}

	if _, err := Import(ctx, ImportOptions{DataDir: t.TempDir(), Bulk: true, KeyFile: "k"}, []string{in}); !errors.Is(err, ErrBulkEncrypted) {
		t.Fatalf("with a key file: %v", err)
	}
}
