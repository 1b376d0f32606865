package warehouse

import (
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
)

// TestTranslateNoDataInSQL runs without a database: text values travel as
// bind parameters, never in the SQL text, and the bounds are in the SQL.
func TestTranslateNoDataInSQL(t *testing.T) {
	sql := `SELECT region, COUNT(*) FROM conditions WHERE code = 'x''); DROP TABLE person; --' GROUP BY region WITH max_groups = 3, max_rows = 2`
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{Regions: []string{"north", "south"}})
	if err != nil {
		t.Fatal(err)
	}
	q, args, err := Translate(Postgres{}, "omop", Info{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(q, "gr <=") {
		t.Errorf("patient-level keys need no group bound:\n%s", q)
	}
	if strings.Contains(q, "DROP") || strings.Contains(q, "north") {
		t.Errorf("data in SQL text:\n%s", q)
	}
	if len(args) != 3 {
		t.Errorf("args = %v, want the code and two regions", args)
	}
	for _, want := range []string{"ROW_NUMBER() OVER (PARTITION BY pid, cell ORDER BY src, ord)", "rn <= 2", `"omop"."condition_occurrence"`} {
		if !strings.Contains(q, want) {
			t.Errorf("SQL lacks %q:\n%s", want, q)
		}
	}
}
