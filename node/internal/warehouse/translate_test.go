package warehouse

import (
	"slices"
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

// TestMappingCoversSchema: every column of every mapped CDM table is
// readable from OMOP (its code pair through concepts, the rest from each
// source), and the sources of one table project the same columns, so
// that their UNION ALL lines up. A column added to the CDM without an
// OMOP reading fails here rather than in an analyst's query.
func TestMappingCoversSchema(t *testing.T) {
	for i := range cdm.Schema {
		sch := &cdm.Schema[i]
		m, ok := mapping[sch.Name]
		if !ok {
			t.Errorf("table %s has no OMOP mapping", sch.Name)
			continue
		}
		if sch.Patients {
			continue
		}
		if m.code != sch.Coded[0] || m.system != sch.Coded[1] {
			t.Errorf("%s: coded columns %q/%q, the CDM says %q", sch.Name, m.code, m.system, sch.Coded)
		}
		tr := &translator{}
		for _, c := range sch.Columns {
			if c.Name == m.code || c.Name == m.system {
				continue
			}
			if !tr.hasColumn(sch.Name, c.Name) {
				t.Errorf("%s.%s has no OMOP column in every source", sch.Name, c.Name)
			}
		}
		for _, s := range m.sources {
			if len(s.cols)+len(s.expr) != len(m.sources[0].cols)+len(m.sources[0].expr) {
				t.Errorf("%s: source %s projects other columns than %s", sch.Name, s.table, m.sources[0].table)
			}
		}
	}
}

// TestTranslateCodeFamily: a code family travels as the head (exact) and a
// LIKE of what lies below it, with wildcards in the head escaped.
func TestTranslateCodeFamily(t *testing.T) {
	for sql, want := range map[string][]any{
		`SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'`:   {"E11", "E11.%"},
		`SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11.6%'`: {"E11.6%"},
		`SELECT COUNT(*) FROM patients WHERE region LIKE 'no%'`:    {"no%"},
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{Regions: []string{"north"}})
		if err != nil {
			t.Fatal(err)
		}
		q, args, err := Translate(Postgres{}, "omop", Info{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(q, "LIKE") || !strings.Contains(q, `ESCAPE '\'`) {
			t.Errorf("%s: no escaped LIKE in\n%s", sql, q)
		}
		for _, w := range want {
			if !slices.Contains(args, w) {
				t.Errorf("%s: args %v lack %v", sql, args, w)
			}
		}
	}
}

// TestTranslatePeriods: observation periods restrict persons and events
// only when the schema has them.
func TestTranslatePeriods(t *testing.T) {
	p, err := plan.Build(plan.Request{SQL: `SELECT COUNT(*) FROM observations WHERE code = '4548-4'`, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, &plan.Catalogue{})
	if err != nil {
		t.Fatal(err)
	}
	off, _, err := Translate(Postgres{}, "omop", Info{}, p)
	if err != nil {
		t.Fatal(err)
	}
	on, _, err := Translate(Postgres{}, "omop", Info{Periods: true}, p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(off, "observation_period") {
		t.Errorf("periods without Info.Periods:\n%s", off)
	}
	// Two sources (measurement, observation) and the person.
	if n := strings.Count(on, `"omop"."observation_period"`); n != 3 {
		t.Errorf("%d observation_period references, want 3:\n%s", n, on)
	}
	if !strings.Contains(on, "UNION ALL") {
		t.Errorf("observations is not measurement UNION ALL observation:\n%s", on)
	}
}
