package eval_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

const ridSystem = "urn:city:rid"

func linkCatalogue(t testing.TB) *plan.Catalogue {
	t.Helper()
	var studies []cdm.StudySchema
	for _, s := range []string{`
name = "deaths"
id = "rid"
rows_per_patient = 1
[[columns]]
name = "death_date"
type = "date"
`, `
name = "claims"
id = "rid"
rows_per_patient = 50
[[columns]]
name = "amount"
type = "float"
min = 0
max = 100000
[[columns]]
name = "service_date"
type = "date"
`} {
		sc, err := cdm.ParseStudySchema(s, "")
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, *sc)
	}
	return &plan.Catalogue{Regions: []string{"north", "south", "east", "west"}, Studies: studies,
		MaxNodesPerPatient: 2, Linkage: &plan.Linkage{IdentifierSystem: ridSystem}}
}

func linkPlan(t testing.TB, sql string) *plan.Plan {
	t.Helper()
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref}, linkCatalogue(t))
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if p.Link == nil {
		t.Fatalf("%s: not linked", sql)
	}
	return p
}

// hospital returns a hospital's tables: h1 and h2 are two records of
// resident R1 (different regions), h3 has no city identifier (unshared),
// h4 is R4, h5 is R5.
func hospital() *cdm.Builder {
	b := cdm.NewBuilder()
	for _, p := range []cdm.Patient{
		{ID: "h1", Region: "north", Identifiers: "urn:city:rid|R1,urn:hosp:mrn|M7"},
		{ID: "h2", Region: "south", Identifiers: "urn:city:rid|R1"},
		{ID: "h3", Region: "north", Identifiers: "urn:hosp:mrn|M9"},
		{ID: "h4", Region: "east", Identifiers: "urn:city:rid|R4"},
		{ID: "h5", Region: "west", Identifiers: "urn:city:rid|R5,urn:hosp:mrn|M1"},
	} {
		b.AddPatient(&p)
	}
	for i, c := range []struct{ p, code string }{
		{"h1", "E11.9"}, {"h2", "E11.2"}, {"h1", "E11.65"}, {"h3", "E11"}, {"h4", "I10"}, {"h5", "E11.9"}, {"h5", "I10"},
	} {
		b.AddCondition(&cdm.Condition{ID: fmt.Sprint("c", i), PatientID: c.p, Code: c.code, Onset: cdm.DateFromYMD(2022, 1, 1), Abatement: cdm.NoDate})
	}
	return b
}

func deathsStudy(t testing.TB) *cdm.Study {
	sc := linkCatalogue(t).Studies[0]
	return &cdm.Study{Schema: sc, PatientIDs: []string{"R9", "R1", "R4"},
		Dates: map[string][]cdm.Date{"death_date": {cdm.DateFromYMD(2023, 2, 2), cdm.DateFromYMD(2023, 5, 1), cdm.DateFromYMD(2022, 1, 1)}}}
}

// claimsStudy: R1 has one claim of 200,000 (clamped to 100,000) in 2021
// then 60 claims of 100 in 2021, 2022, 2023 in turn; R5 has 10, 20, 30 in
// 2022; R7 has 5 in 2020.
func claimsStudy(t testing.TB) *cdm.Study {
	sc := linkCatalogue(t).Studies[1]
	st := &cdm.Study{Schema: sc, Numbers: map[string][]float64{}, Dates: map[string][]cdm.Date{}}
	add := func(id string, amount float64, year int) {
		st.PatientIDs = append(st.PatientIDs, id)
		st.Numbers["amount"] = append(st.Numbers["amount"], amount)
		st.Dates["service_date"] = append(st.Dates["service_date"], cdm.DateFromYMD(year, 3, 1))
	}
	add("R1", 200000, 2021)
	for i := range 60 {
		add("R1", 100, 2021+i%3)
	}
	add("R5", 10, 2022)
	add("R5", 20, 2022)
	add("R7", 5, 2020)
	add("R5", 30, 2022)
	return st
}

func shared(keys ...string) []eval.LinkKey {
	out := []eval.LinkKey{}
	for _, k := range keys {
		out = append(out, eval.LinkKey{Key: k, Shared: !strings.HasPrefix(k, "h")})
	}
	return out
}

func entries(kv ...any) []eval.LinkEntry {
	out := []eval.LinkEntry{}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		out = append(out, eval.LinkEntry{LinkKey: eval.LinkKey{Key: k, Shared: !strings.HasPrefix(k, "h")}, Value: kv[i+1].(float64)})
	}
	return out
}

func TestLinkElements(t *testing.T) {
	hosp := hospital().Build()
	registry := cdm.NewBuilder().Build().WithStudies([]*cdm.Study{deathsStudy(t)})
	insurer := cdm.NewBuilder().Build().WithStudies([]*cdm.Study{claimsStudy(t)})
	// One node holding all three (claims of R1 link to h1/h2 by the key).
	all := hospital().Build().WithStudies([]*cdm.Study{deathsStudy(t), claimsStudy(t)})

	cases := []struct {
		name    string
		sql     string
		node    *cdm.Tables
		outer   [][]eval.LinkEntry
		filters [][]eval.LinkKey
	}{
		// Q1: h1 and h2 are one resident; h3 is a resident of its own that
		// no other node can match.
		{name: "Q1 hospital", node: hosp, sql: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'",
			outer: [][]eval.LinkEntry{entries("R1", 0.0, "R5", 0.0, "h3", 0.0)}, filters: [][]eval.LinkKey{}},
		// By region (G = 1): R1 is north (h1's first row) and not also
		// south, though h2 is south: one resident, at most G cells.
		{name: "Q1 by region", node: hosp, sql: "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' GROUP BY region",
			outer:   [][]eval.LinkEntry{entries("R1", 0.0, "h3", 0.0), entries(), entries(), entries("R5", 0.0)},
			filters: [][]eval.LinkKey{}},
		{name: "Q2 hospital", node: hosp, sql: q2Link,
			outer: [][]eval.LinkEntry{entries("R1", 0.0, "R5", 0.0, "h3", 0.0)}, filters: [][]eval.LinkKey{nil}},
		{name: "Q2 registry", node: registry, sql: q2Link,
			outer: nil, filters: [][]eval.LinkKey{shared("R1", "R9")}},
		{name: "Q2 all", node: all, sql: q2Link,
			outer: [][]eval.LinkEntry{entries("R1", 0.0, "R5", 0.0, "h3", 0.0)}, filters: [][]eval.LinkKey{shared("R1", "R9")}},
		// Q3: R1's 61 claims: the first R = 50 count, the first clamped to
		// 100,000: 100,000 + 49·100.
		{name: "Q3 insurer", node: insurer, sql: q3Link,
			outer: [][]eval.LinkEntry{entries("R1", 104900.0, "R5", 60.0, "R7", 5.0)}, filters: [][]eval.LinkKey{nil}},
		{name: "Q3 hospital", node: hosp, sql: q3Link,
			outer: nil, filters: [][]eval.LinkKey{shared("R1", "R5", "h3")}},
		{name: "Q3 all", node: all, sql: q3Link,
			outer: [][]eval.LinkEntry{entries("R1", 104900.0, "R5", 60.0, "R7", 5.0)}, filters: [][]eval.LinkKey{shared("R1", "R5", "h3")}},
		{name: "COUNT(*) NOT IN", node: all, sql: "SELECT COUNT(*) FROM claims WHERE patient_id NOT IN (SELECT patient_id FROM deaths)",
			outer: [][]eval.LinkEntry{entries("R1", 50.0, "R5", 3.0, "R7", 1.0)}, filters: [][]eval.LinkKey{shared("R1", "R4", "R9")}},
		// By year, at most 2 cells per resident: R1 is in 2021 and 2022
		// (first in row order), not 2023; 2021 holds the big claim and
		// 20 claims of 100, then R = 50 caps nothing more.
		{name: "claims by year", node: insurer, sql: "SELECT year(service_date) AS y, SUM(amount) FROM claims WHERE service_date BETWEEN '2020-01-01' AND '2023-12-31'" +
			" AND patient_id IN (SELECT patient_id FROM conditions) GROUP BY y WITH max_groups = 2",
			outer:   [][]eval.LinkEntry{entries("R7", 5.0), entries("R1", 102000.0), entries("R1", 2000.0, "R5", 60.0), entries()},
			filters: [][]eval.LinkKey{nil}},
		// Rows outside the public domain are dropped.
		{name: "claims 2022 only", node: insurer, sql: "SELECT year(service_date) AS y, COUNT(*) FROM claims WHERE service_date BETWEEN '2022-01-01' AND '2022-12-31'" +
			" AND patient_id IN (SELECT patient_id FROM deaths) GROUP BY y",
			outer: [][]eval.LinkEntry{entries("R1", 20.0, "R5", 3.0)}, filters: [][]eval.LinkKey{nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := linkPlan(t, c.sql)
			got, err := eval.LinkElements(context.Background(), p, c.node)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Outer, c.outer) {
				t.Errorf("outer:\n got %v\nwant %v", got.Outer, c.outer)
			}
			if !reflect.DeepEqual(got.Filters, c.filters) {
				t.Errorf("filters:\n got %#v\nwant %#v", got.Filters, c.filters)
			}
			if s := fmt.Sprint(got); strings.Contains(s, "R1") {
				t.Errorf("String leaks residents: %s", s)
			}
			// No resident's value passes the payload's per-cell bound.
			if l := p.Link; l.Payload {
				bound := p.Measures()[1].PerCell
				for _, cell := range got.Outer {
					for _, e := range cell {
						if math.Abs(e.Value) > bound {
							t.Errorf("%s: %v > PerCell %v", e.Key, e.Value, bound)
						}
					}
				}
			}
		})
	}
}

const (
	q2Link = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN " +
		"(SELECT patient_id FROM deaths WHERE death_date BETWEEN '2023-01-01' AND '2023-12-31')"
	q3Link = "SELECT SUM(CLAMP(amount, 0, 100000)) FROM claims WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'E11%')"
)

// TestLinkElementsMatchEvaluate: where no two patients share a resident and
// every filter is local, the outer values add up to Evaluate's payload
// slots, cell by cell (the same bounds).
func TestLinkElementsMatchEvaluate(t *testing.T) {
	insurer := cdm.NewBuilder().Build().WithStudies([]*cdm.Study{claimsStudy(t)})
	for _, sql := range []string{
		"SELECT year(service_date) AS y, SUM(amount) FROM claims WHERE service_date BETWEEN '2020-01-01' AND '2023-12-31' AND patient_id IN (SELECT patient_id FROM claims) GROUP BY y WITH max_groups = 2",
		"SELECT year(service_date) AS y, COUNT(*) FROM claims WHERE service_date BETWEEN '2021-01-01' AND '2023-12-31' AND patient_id IN (SELECT patient_id FROM claims WHERE amount > 50) GROUP BY y WITH max_rows = 7",
		"SELECT SUM(amount) FROM claims WHERE patient_id IN (SELECT patient_id FROM claims)",
	} {
		p := linkPlan(t, sql)
		ex, err := eval.Evaluate(context.Background(), p, insurer)
		if err != nil {
			t.Fatal(err)
		}
		vals := ex.Values()
		got, err := eval.LinkElements(context.Background(), p, insurer)
		if err != nil {
			t.Fatal(err)
		}
		members := map[string]bool{}
		for _, k := range got.Filters[0] {
			members[k.Key] = true
		}
		for g, cell := range got.Outer {
			var sum, n float64
			for _, e := range cell {
				if members[e.Key] {
					sum += e.Value
					n++
				}
			}
			if want := vals[p.Cells()+g]; math.Abs(sum-want) > 1e-9 {
				t.Errorf("%s: cell %d: payload %v, Evaluate %v", sql, g, sum, want)
			}
			if want := vals[g]; n != want {
				t.Errorf("%s: cell %d: %v residents, Evaluate %v", sql, g, n, want)
			}
		}
	}
}

func TestLinkElementsErrors(t *testing.T) {
	hosp := hospital().Build()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := eval.LinkElements(ctx, linkPlan(t, q2Link), hosp); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
	if _, err := eval.LinkElements(context.Background(), build(t, "SELECT COUNT(*) FROM conditions"), hosp); !errors.Is(err, eval.ErrNotLinked) {
		t.Errorf("local plan: got %v", err)
	}
}
