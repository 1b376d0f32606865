package warehouse

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// handBuilt is a small OMOP CDM written row by row, with a vocabulary in
// which each rule of the mapping decides at least one count:
//
//	concepts (id, vocabulary, code, standard):
//	  201826  SNOMED  44054006   S  type 2 diabetes
//	  4174977 SNOMED  422034002  S  retinopathy due to type 2 diabetes (below 201826)
//	  320128  SNOMED  38341003   S  hypertension
//	  45576876 ICD10CM E11.9        Maps to 201826
//	  45591453 ICD10CM I10          Maps to 320128
//	  3004410 LOINC   4548-4     S  HbA1c
//	  3012697 LOINC   72166-2    S  tobacco smoking status
//	  1503297 RxNorm  6809       S  metformin (ingredient)
//	  1503328 RxNorm  860975     S  metformin 500 mg tablet (below 1503297)
//	  4249893 SNOMED  73761001   S  colonoscopy
//	  2211765 CPT4    45378         Maps to 4249893
//
//	persons (reference date 2024-01-01):
//	  1 gender 8532 (F), birth_datetime 1970-06-15              age 53
//	  2 gender 8507 (M), year 1980 month 3 (no day, no datetime) age 43
//	  3 gender 0, gender_source_value 'F', year 1990 only       age 34
//	  4 gender 8532, year 1950 month 12 day 31, died 2023-06-01 (and a
//	    second death row 2023-07-01)                             age 73
//	  5 gender 8507, born 1960, no observation period
//	  6 gender 8551 (unknown), year 2000                        age 24
//	observation periods: persons 1-4 and 6, 2010-01-01 .. 2023-12-31.
var handBuilt = []string{
	`INSERT INTO %[1]s.concept (concept_id, vocabulary_id, concept_code, standard_concept, domain_id) VALUES
		(201826, 'SNOMED', '44054006', 'S', 'Condition'), (4174977, 'SNOMED', '422034002', 'S', 'Condition'),
		(320128, 'SNOMED', '38341003', 'S', 'Condition'), (45576876, 'ICD10CM', 'E11.9', NULL, 'Condition'),
		(45591453, 'ICD10CM', 'I10', NULL, 'Condition'), (3004410, 'LOINC', '4548-4', 'S', 'Measurement'),
		(3012697, 'LOINC', '72166-2', 'S', 'Observation'), (1503297, 'RxNorm', '6809', 'S', 'Drug'),
		(1503328, 'RxNorm', '860975', 'S', 'Drug'), (4249893, 'SNOMED', '73761001', 'S', 'Procedure'),
		(2211765, 'CPT4', '45378', NULL, 'Procedure')`,
	`INSERT INTO %[1]s.concept_relationship (concept_id_1, concept_id_2, relationship_id, invalid_reason) VALUES
		(45576876, 201826, 'Maps to', NULL), (45591453, 320128, 'Maps to', NULL), (2211765, 4249893, 'Maps to', NULL),
		(45576876, 320128, 'Maps to', 'D')`,
	// concept_ancestor holds every standard concept as its own ancestor
	// (level 0), as the OMOP vocabulary does, and the two hierarchies.
	`INSERT INTO %[1]s.concept_ancestor (ancestor_concept_id, descendant_concept_id, min_levels_of_separation, max_levels_of_separation) VALUES
		(201826, 201826, 0, 0), (4174977, 4174977, 0, 0), (320128, 320128, 0, 0), (3004410, 3004410, 0, 0),
		(3012697, 3012697, 0, 0), (1503297, 1503297, 0, 0), (1503328, 1503328, 0, 0), (4249893, 4249893, 0, 0),
		(201826, 4174977, 1, 2), (1503297, 1503328, 2, 2)`,
	`INSERT INTO %[1]s.location (location_id, location_source_value) VALUES (1, 'north'), (2, 'south')`,
	`INSERT INTO %[1]s.person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth, birth_datetime, location_id, gender_source_value) VALUES
		(1, 8532, 1970, 6, 15, TIMESTAMP '1970-06-15 08:30:00', 1, 'F'),
		(2, 8507, 1980, 3, NULL, NULL, 1, 'M'),
		(3, 0, 1990, NULL, NULL, NULL, 2, 'F'),
		(4, 8532, 1950, 12, 31, NULL, 2, 'whatever'),
		(5, 8507, 1960, NULL, NULL, NULL, 1, 'M'),
		(6, 8551, 2000, NULL, NULL, NULL, 2, NULL)`,
	`INSERT INTO %[1]s.death (person_id, death_date) VALUES (4, DATE '2023-07-01'), (4, DATE '2023-06-01')`,
	`INSERT INTO %[1]s.observation_period (observation_period_id, person_id, observation_period_start_date, observation_period_end_date) VALUES
		(1, 1, DATE '2010-01-01', DATE '2023-12-31'), (2, 2, DATE '2010-01-01', DATE '2023-12-31'),
		(3, 3, DATE '2010-01-01', DATE '2023-12-31'), (4, 4, DATE '2010-01-01', DATE '2023-12-31'),
		(6, 6, DATE '2010-01-01', DATE '2023-12-31')`,
	`INSERT INTO %[1]s.condition_occurrence (condition_occurrence_id, person_id, condition_concept_id, condition_start_date, condition_source_value, condition_source_concept_id) VALUES
		(1, 1, 201826, DATE '2015-01-01', 'E11.9', 45576876),
		(2, 1, 201826, DATE '2016-01-01', '44054006', 201826),
		(3, 2, 4174977, DATE '2018-01-01', '422034002', 4174977),
		(4, 3, 320128, DATE '2019-01-01', 'I10', 45591453),
		(5, 4, 0, DATE '2020-01-01', 'LOCAL-DM', 0),
		(6, 5, 201826, DATE '2020-01-01', '44054006', 201826),
		(7, 1, 201826, DATE '2005-01-01', '44054006', 201826)`,
	`INSERT INTO %[1]s.measurement (measurement_id, person_id, measurement_concept_id, measurement_date, value_as_number, measurement_source_value, measurement_source_concept_id, unit_source_value) VALUES
		(1, 1, 3004410, DATE '2020-01-01', 7.5, '4548-4', 3004410, '%'),
		(2, 2, 3004410, DATE '2021-01-01', 9.0, '4548-4', 3004410, '%')`,
	`INSERT INTO %[1]s.observation (observation_id, person_id, observation_concept_id, observation_date, value_as_number, value_as_string, observation_source_value, observation_source_concept_id) VALUES
		(1, 1, 3012697, DATE '2020-01-01', NULL, 'Never smoker', '72166-2', 3012697),
		(2, 3, 3004410, DATE '2021-01-01', 6.0, NULL, '4548-4', 3004410)`,
	`INSERT INTO %[1]s.drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date, drug_source_value, drug_source_concept_id) VALUES
		(1, 1, 1503328, DATE '2016-02-01', '860975', 1503328)`,
	`INSERT INTO %[1]s.procedure_occurrence (procedure_occurrence_id, person_id, procedure_concept_id, procedure_date, procedure_source_value, procedure_source_concept_id) VALUES
		(1, 1, 4249893, DATE '2019-05-01', '45378', 2211765),
		(2, 2, 4249893, DATE '2020-05-01', '73761001', 4249893),
		(3, 6, 4249893, DATE '2024-06-01', '73761001', 4249893)`,
	`INSERT INTO %[1]s.visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date, visit_source_value) VALUES
		(1, 1, 9203, DATE '2015-01-01', 'ER'), (2, 2, 9201, DATE '2018-01-01', 'inpatient'), (3, 3, 0, DATE '2019-01-01', 'AMB')`,
}

// loadHandBuilt creates an empty v5.4 schema and writes handBuilt into it.
func loadHandBuilt(ctx context.Context, t *testing.T, b *Backend) {
	t.Helper()
	if err := b.CreateSchema(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range handBuilt {
		q = strings.ReplaceAll(q, "%[1]s", b.d.Quote(b.Schema))
		if _, ok := b.d.(ClickHouse); ok {
			q, _ = chTestSQL(q, nil)
		}
		if err := b.c.exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	b.forget()
}

// deleteAll empties table (on ClickHouse, its every shard).
func deleteAll(ctx context.Context, t *testing.T, b *Backend, table string) {
	t.Helper()
	if ch, ok := b.d.(ClickHouse); ok {
		for _, sh := range ch.Shards {
			if err := b.c.exec(ctx, "TRUNCATE TABLE "+ch.Quote(sh)+"."+ch.Quote(table)); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if err := b.c.exec(ctx, "DELETE FROM "+b.tbl(table)); err != nil {
		t.Fatal(err)
	}
}

// count evaluates sql and returns its values.
func count(ctx context.Context, t *testing.T, b *Backend, sql string) []float64 {
	t.Helper()
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)},
		&plan.Catalogue{Regions: []string{"north", "south"}})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	got, err := b.Evaluate(ctx, p)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return got.Values()
}

// testDialects are the databases the tests run on: PostgreSQL
// (testkit.PostgresDSN) always, DuckDB in builds with the duckdb tag
// (duckdb_test.go).
var testDialects = []struct {
	d   Dialect
	dsn func(t *testing.T) string
}{{Postgres{}, dsn}}

// forEachDialect runs f in a subtest per test dialect, with a backend
// whose schema is schema.
func forEachDialect(t *testing.T, schema string, f func(t *testing.T, ctx context.Context, b *Backend)) {
	for _, td := range testDialects {
		t.Run(td.d.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			b, err := Open(ctx, td.dsn(t), td.d)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			b.Schema = schema
			f(t, ctx, b)
		})
	}
}

// TestStandardConcepts asserts exact counts over the hand-built CDM, one
// or more per rule of the mapping (docs/warehouse.md).
func TestStandardConcepts(t *testing.T) { forEachDialect(t, "omop_hand", testStandardConcepts) }

func testStandardConcepts(t *testing.T, ctx context.Context, b *Backend) {
	loadHandBuilt(ctx, t, b)
	info, err := b.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info != (Info{Version: "5.4", VersionFrom: "cdm_source", Periods: true}) {
		t.Fatalf("info = %+v", info)
	}
	cases := []struct {
		why, sql string
		want     []float64
	}{
		// concept_ancestor: 44054006 names 201826 and the retinopathy
		// below it; person 5 (no observation period) and person 1's row
		// of 2005 (before the period) do not count.
		{"standard code and descendants", `SELECT COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'`, []float64{3, 2}},
		{"a descendant alone", `SELECT COUNT(*) FROM conditions WHERE code = '422034002'`, []float64{1}},
		// 'Maps to': E11.9 names 201826 exactly (not the retinopathy); the
		// deprecated E11.9 -> 320128 row is ignored.
		{"ICD-10-CM through Maps to", `SELECT COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'E11.9'`, []float64{2, 1}},
		{"ICD-10-CM to a SNOMED-sourced row", `SELECT COUNT(*) FROM conditions WHERE code = 'I10'`, []float64{1}},
		{"SNOMED to an ICD-sourced row", `SELECT COUNT(*) FROM conditions WHERE code = '38341003'`, []float64{1}},
		{"local source value without a concept", `SELECT COUNT(*) FROM conditions WHERE code = 'LOCAL-DM'`, []float64{1}},
		{"code list", `SELECT COUNT(*) FROM conditions WHERE code IN ('I10', 'LOCAL-DM')`, []float64{2}},
		// ICD-10 forms and families (queries/plan, internal/terminology):
		// E119 is E11.9; E11% is every concept_code in the family, each
		// through its own mapping (exactly, as E11.9 above).
		{"undotted ICD-10", `SELECT COUNT(*), COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'E119'`, []float64{2, 1}},
		{"ICD-10 family", `SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'`, []float64{2}},
		{"not in a family", `SELECT COUNT(*) FROM conditions WHERE code NOT LIKE 'E11%'`, []float64{3}},
		{"grouped undotted", `SELECT code, COUNT(*) FROM conditions WHERE code IN ('E119', 'I10') GROUP BY code`, []float64{2, 1}},
		{"family of a local code", `SELECT COUNT(*) FROM conditions WHERE code LIKE 'LOCAL%'`, []float64{1}},
		{"not a code", `SELECT COUNT(*) FROM conditions WHERE code <> '44054006'`, []float64{2}},
		{"source system", `SELECT COUNT(*) FROM conditions WHERE system = 'http://hl7.org/fhir/sid/icd-10-cm'`, []float64{2}},
		{"source or standard system", `SELECT COUNT(*) FROM conditions WHERE system = 'http://snomed.info/sct'`, []float64{4}},
		{"grouped codes", `SELECT code, COUNT(*) FROM conditions WHERE code IN ('422034002', '38341003') GROUP BY code`, []float64{1, 1}},
		// Gender concept, and the source value when the concept is 0.
		{"female", `SELECT COUNT(*) FROM patients WHERE sex = 'female'`, []float64{3}},
		{"male", `SELECT COUNT(*) FROM patients WHERE sex = 'male'`, []float64{1}},
		{"unknown", `SELECT COUNT(*) FROM patients WHERE sex = 'unknown'`, []float64{1}},
		// year/month/day_of_birth when birth_datetime is empty.
		{"age 40-59", `SELECT COUNT(*) FROM patients WHERE age BETWEEN 40 AND 59`, []float64{2}},
		{"age from year, month and day", `SELECT COUNT(*) FROM patients WHERE age = 73`, []float64{1}},
		{"age from the year alone", `SELECT COUNT(*) FROM patients WHERE age = 34 OR age = 24`, []float64{2}},
		{"birth date from year and month", `SELECT COUNT(*) FROM patients WHERE birth_date = '1980-03-01'`, []float64{1}},
		{"birth date from the year", `SELECT COUNT(*) FROM patients WHERE birth_date = '1990-01-01'`, []float64{1}},
		{"age bands", `SELECT age_band(age, 25) AS band, COUNT(*) FROM patients GROUP BY band`, []float64{1, 2, 2, 0, 0, 0, 0}},
		// death: the earliest of two rows.
		{"death", `SELECT COUNT(*) FROM patients WHERE death_date < '2023-06-15'`, []float64{1}},
		// observations: measurement and observation tables.
		{"measurement and observation", `SELECT COUNT(*) FROM observations WHERE code = '4548-4'`, []float64{3}},
		{"observation table", `SELECT COUNT(*) FROM observations WHERE code = '72166-2'`, []float64{1}},
		{"values of both", `SELECT COUNT(*), SUM(CLAMP(value, 0, 20)) FROM observations WHERE value > 6.5`, []float64{2, 16.5}},
		{"all observations", `SELECT COUNT(*) FROM observations`, []float64{4}},
		// procedure_occurrence; person 6's procedure is after the period.
		{"procedure by standard code", `SELECT COUNT(*) FROM procedures WHERE code = '73761001'`, []float64{2}},
		{"procedure by CPT4 through Maps to", `SELECT COUNT(DISTINCT patient_id) FROM procedures WHERE code = '45378'`, []float64{2}},
		{"procedure dates", `SELECT COUNT(*) FROM procedures WHERE date >= '2020-01-01'`, []float64{1}},
		// RxNorm ingredient -> clinical drug below it.
		{"drug ingredient", `SELECT COUNT(*) FROM medications WHERE code = '6809'`, []float64{1}},
		// visit concept as the encounter class, the source value otherwise.
		{"visit class", `SELECT COUNT(*) FROM encounters WHERE class IN ('EMER', 'AMB')`, []float64{2}},
		// Cohorts.
		{"cohort", `SELECT COUNT(*) FROM patients WHERE sex = 'female' AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')`, []float64{1}},
		{"not in cohort", `SELECT COUNT(*) FROM patients WHERE patient_id NOT IN (SELECT patient_id FROM procedures)`, []float64{3}},
		{"region", `SELECT region, COUNT(*) FROM patients GROUP BY region`, []float64{2, 3}},
	}
	for _, c := range cases {
		got := count(ctx, t, b, c.sql)
		if !equal(got, c.want) {
			t.Errorf("%s: %s = %v, want %v", c.why, c.sql, got, c.want)
		}
	}
	patients, rows, err := b.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if patients != 5 || rows[cdm.TableConditions] != 5 || rows[cdm.TableObservations] != 4 || rows[cdm.TableProcedures] != 2 {
		t.Errorf("summary %d %v", patients, rows)
	}

	// Without observation periods every person and row counts.
	deleteAll(ctx, t, b, "observation_period")
	b.forget()
	for sql, want := range map[string][]float64{
		`SELECT COUNT(*) FROM patients`:                           {6},
		`SELECT COUNT(*) FROM conditions WHERE code = '44054006'`: {5},
		`SELECT COUNT(*) FROM procedures`:                         {3},
	} {
		if got := count(ctx, t, b, sql); !equal(got, want) {
			t.Errorf("without periods: %s = %v, want %v", sql, got, want)
		}
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCDMVersions: the version comes from cdm_source, else from the
// columns (5.3 has no procedure_end_date and no episode table), and the
// same counts come out of both; other versions and missing columns are
// refused by name.
func TestCDMVersions(t *testing.T) { forEachDialect(t, "omop_versions", testCDMVersions) }

func testCDMVersions(t *testing.T, ctx context.Context, b *Backend) {
	loadHandBuilt(ctx, t, b)
	const q = `SELECT COUNT(*) FROM procedures WHERE code = '73761001'`
	exec := func(sql string) {
		t.Helper()
		if err := b.c.exec(ctx, strings.ReplaceAll(sql, "%s", b.d.Quote(b.Schema))); err != nil {
			t.Fatal(err)
		}
		b.forget()
	}
	exec(`DELETE FROM %s.cdm_source`)
	if info, err := b.Info(ctx); err != nil || info.Version != "5.4" || info.VersionFrom != "columns" {
		t.Errorf("5.4 by columns: %+v, %v", info, err)
	}
	exec(`ALTER TABLE %s.procedure_occurrence DROP COLUMN procedure_end_date`)
	if info, err := b.Info(ctx); err != nil || info.Version != "5.3" || info.VersionFrom != "columns" {
		t.Errorf("5.3 by columns: %+v, %v", info, err)
	}
	if got := count(ctx, t, b, q); !equal(got, []float64{2}) {
		t.Errorf("5.3: %v", got)
	}
	exec(`INSERT INTO %s.cdm_source (cdm_source_name, cdm_source_abbreviation, cdm_holder, cdm_version) VALUES ('x', 'x', 'x', 'v5.3.1')`)
	if info, err := b.Info(ctx); err != nil || info.Version != "5.3" || info.VersionFrom != "cdm_source" {
		t.Errorf("5.3 by cdm_source: %+v, %v", info, err)
	}
	exec(`UPDATE %s.cdm_source SET cdm_version = 'v6.0'`)
	if _, err := b.Info(ctx); err == nil || !strings.Contains(err.Error(), `"v6.0"`) {
		t.Errorf("v6.0: %v", err)
	}
	exec(`UPDATE %s.cdm_source SET cdm_version = '5.4'`)
	exec(`ALTER TABLE %s.person DROP COLUMN year_of_birth`)
	exec(`DROP TABLE %s.concept_ancestor`)
	_, _, err := b.Summary(ctx)
	if err == nil || !strings.Contains(err.Error(), "person.year_of_birth") || !strings.Contains(err.Error(), "table concept_ancestor") {
		t.Errorf("missing column and table: %v", err)
	}
	b.Schema = "omop_no_such_schema"
	if _, err := b.Info(ctx); err == nil || !strings.Contains(err.Error(), "no tables") {
		t.Errorf("missing schema: %v", err)
	}
}

// TestVocabulariesAgreeWithTerminology: a vocabulary id internal/terminology
// knows reads as the system URI terminology.SystemOfVocabulary gives it (as
// OMOP concept sets are read), so that value sets and the warehouse name a
// code's system alike; the warehouse's own ids are ones terminology does
// not know.
func TestVocabulariesAgreeWithTerminology(t *testing.T) {
	for _, v := range vocabularies {
		if got := terminology.SystemOfVocabulary(v[0]); got != v[1] && !strings.HasPrefix(got, "urn:omop:vocabulary:") {
			t.Errorf("vocabulary %s reads as %s; terminology says %s", v[0], v[1], got)
		}
	}
	for _, id := range []string{"SNOMED", "LOINC", "RxNorm", "RxNorm Extension", "ICD10", "ICD10CM", "ICD10GM", "ATC", "CVX", "NDC", "CPT4", "ICD10PCS"} {
		if !slices.ContainsFunc(vocabularies, func(v [2]string) bool { return v[0] == id }) {
			t.Errorf("vocabulary %s (terminology: %s) is not read as a system URI", id, terminology.SystemOfVocabulary(id))
		}
	}
}

// TestRxNormExtension: a drug coded in RxNorm Extension (OMOP's RxNorm for
// drugs outside the US) has the RxNorm system.
func TestRxNormExtension(t *testing.T) { forEachDialect(t, "omop_rxe", testRxNormExtension) }

func testRxNormExtension(t *testing.T, ctx context.Context, b *Backend) {
	if err := b.CreateSchema(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO %[1]s.concept (concept_id, vocabulary_id, concept_code, standard_concept) VALUES (43000001, 'RxNorm Extension', 'OMOP1000001', 'S')`,
		`INSERT INTO %[1]s.person (person_id, gender_concept_id, year_of_birth) VALUES (1, 8532, 1970)`,
		`INSERT INTO %[1]s.drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date, drug_source_concept_id) VALUES (1, 1, 43000001, DATE '2020-01-01', 0)`,
	} {
		q = strings.ReplaceAll(q, "%[1]s", b.d.Quote(b.Schema))
		if _, ok := b.d.(ClickHouse); ok {
			q, _ = chTestSQL(q, nil)
		}
		if err := b.c.exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	b.forget()
	if got := count(ctx, t, b, `SELECT COUNT(*) FROM medications WHERE system = 'http://www.nlm.nih.gov/research/umls/rxnorm'`); len(got) != 1 || got[0] != 1 {
		t.Errorf("RxNorm Extension drugs with the RxNorm system: got %v, want [1]", got)
	}
}

// TestInfoCached: the schema is described once per schema, not per query
// (forget, or a new Schema, describes it again).
func TestInfoCached(t *testing.T) { forEachDialect(t, "omop_cached", testInfoCached) }

func testInfoCached(t *testing.T, ctx context.Context, b *Backend) {
	loadHandBuilt(ctx, t, b)
	if info, err := b.Info(ctx); err != nil || !info.Periods {
		t.Fatalf("info %+v, %v", info, err)
	}
	deleteAll(ctx, t, b, "observation_period")
	count(ctx, t, b, `SELECT COUNT(*) FROM conditions`)
	if info, err := b.Info(ctx); err != nil || !info.Periods {
		t.Errorf("described again without forget: %+v, %v", info, err)
	}
	b.forget()
	if info, err := b.Info(ctx); err != nil || info.Periods {
		t.Errorf("after forget: %+v, %v", info, err)
	}
	b.Schema = "omop_cached_none"
	if _, err := b.Info(ctx); err == nil {
		t.Error("a new schema was not described again")
	}
}
