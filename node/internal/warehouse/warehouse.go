// Package warehouse is a node back end for an existing OMOP CDM 5.3 or 5.4
// database in PostgreSQL, in a DuckDB file or in ClickHouse (Distributed
// tables sharded by person): it checks the schema (Info),
// translates a query plan into one SQL statement (Translate) that matches
// codes on standard concepts (concept_ancestor, 'Maps to') and source
// values, enforces the plan's contribution bounds in the database and
// returns only aggregates (one row per cell), through a Dialect so that
// other engines are a new dialect, not a rewrite. See docs/warehouse.md.
package warehouse

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// DefaultSchema is the schema holding the OMOP tables.
const DefaultSchema = "omop"

// Backend evaluates plans in an OMOP database: PostgreSQL (pgx), a
// DuckDB file (database/sql, in binaries built with the duckdb tag) or
// ClickHouse (its HTTP interface, chconn.go). It is safe for concurrent use
// once Schema is set.
type Backend struct {
	c      conn
	d      Dialect
	Schema string // OMOP schema; DefaultSchema unless set before use

	mu         sync.Mutex
	info       *Info  // what describe found, for infoSchema
	infoSchema string // the schema info describes
}

func (b *Backend) tbl(name string) string { return b.d.Quote(b.Schema) + "." + b.d.Quote(name) }

// Open connects with dialect d (nil: Postgres) to dsn: for PostgreSQL a
// libpq/pgx connection string, for DuckDB the database file's path (with
// "?access_mode=READ_ONLY" to open it read-only), for ClickHouse the
// http:// URL of its HTTP interface.
func Open(ctx context.Context, dsn string, d Dialect) (*Backend, error) {
	if d == nil {
		d = Postgres{}
	}
	var c conn
	switch d.Name() {
	case "duckdb":
		if duckdbOpen == nil {
			return nil, errNoDuckDB
		}
		db, err := duckdbOpen(dsn)
		if err != nil {
			return nil, fmt.Errorf("warehouse: opening DuckDB %q: %w", dsn, err)
		}
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("warehouse: opening DuckDB %q: %w", dsn, err)
		}
		c = sqlConn{db: db, d: d}
	case "clickhouse":
		var err error
		if c, err = openClickHouse(ctx, dsn, d.(ClickHouse)); err != nil {
			return nil, err
		}
	default:
		var err error
		if c, err = openPostgres(ctx, dsn); err != nil {
			return nil, err
		}
	}
	return &Backend{c: c, d: d, Schema: DefaultSchema}, nil
}

// Close closes the connections.
func (b *Backend) Close() { b.c.close() }

// Evaluate computes p's exact aggregates in the database. The result must
// never leave the node (see eval.Exact).
func (b *Backend) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	info, err := b.describe(ctx)
	if err != nil {
		return nil, err
	}
	var n int64
	if err := b.c.queryRow(ctx, "SELECT COUNT(*) FROM "+b.tbl("person")).Scan(&n); err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	if n > int64(p.MaxPatientsPerNode()) {
		return nil, fmt.Errorf("%w: this node holds more patients than the network bound of %d per node (the exact number stays at the node)", eval.ErrData, p.MaxPatientsPerNode())
	}
	q, args, err := Translate(b.d, b.Schema, info, p)
	if err != nil {
		return nil, err
	}
	rows, err := b.c.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	defer rows.Close()
	ms, cells := len(p.Measures()), p.Cells()
	vals := make([]float64, ms*cells)
	dst := make([]any, ms+1)
	var cell int64
	got := make([]float64, ms)
	dst[0] = &cell
	for i := range got {
		dst[i+1] = &got[i]
	}
	for rows.Next() {
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("warehouse: %w", err)
		}
		if cell < 0 || cell >= int64(cells) {
			return nil, fmt.Errorf("warehouse: cell %d outside the domain of %d", cell, cells)
		}
		for i, v := range got {
			vals[i*cells+int(cell)] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	return eval.FromValues(p, vals)
}

// ddl is the OMOP CDM v5.4 subset the back end reads (column names and types
// as in the OMOP DDL; NOT NULL relaxed where fedstat data may lack a value,
// concept.vocabulary_id widened to hold unknown system URIs).
var ddl = []string{
	`CREATE TABLE %[1]s.cdm_source (cdm_source_name varchar(255) NOT NULL, cdm_source_abbreviation varchar(25) NOT NULL, cdm_holder varchar(255) NOT NULL, source_release_date date, cdm_release_date date, cdm_version varchar(10), cdm_version_concept_id integer NOT NULL DEFAULT 0, vocabulary_version varchar(20) NOT NULL DEFAULT '')`,
	`CREATE TABLE %[1]s.concept (concept_id integer PRIMARY KEY, concept_name varchar(255) NOT NULL DEFAULT '', domain_id varchar(20) NOT NULL DEFAULT '', vocabulary_id varchar(255) NOT NULL, concept_class_id varchar(20) NOT NULL DEFAULT '', standard_concept varchar(1), concept_code varchar(50) NOT NULL, valid_start_date date NOT NULL DEFAULT DATE '1970-01-01', valid_end_date date NOT NULL DEFAULT DATE '2099-12-31', invalid_reason varchar(1))`,
	`CREATE INDEX concept_code_idx ON %[1]s.concept (concept_code)`,
	`CREATE TABLE %[1]s.concept_relationship (concept_id_1 integer NOT NULL, concept_id_2 integer NOT NULL, relationship_id varchar(20) NOT NULL, valid_start_date date NOT NULL DEFAULT DATE '1970-01-01', valid_end_date date NOT NULL DEFAULT DATE '2099-12-31', invalid_reason varchar(1))`,
	`CREATE TABLE %[1]s.concept_ancestor (ancestor_concept_id integer NOT NULL, descendant_concept_id integer NOT NULL, min_levels_of_separation integer NOT NULL DEFAULT 0, max_levels_of_separation integer NOT NULL DEFAULT 0)`,
	`CREATE TABLE %[1]s.location (location_id bigint PRIMARY KEY, location_source_value varchar(50))`,
	`CREATE TABLE %[1]s.person (person_id bigint PRIMARY KEY, gender_concept_id integer NOT NULL, year_of_birth integer, month_of_birth integer, day_of_birth integer, birth_datetime timestamp, race_concept_id integer NOT NULL DEFAULT 0, ethnicity_concept_id integer NOT NULL DEFAULT 0, location_id bigint, person_source_value varchar(50), gender_source_value varchar(50), race_source_value varchar(50), ethnicity_source_value varchar(50))`,
	`CREATE TABLE %[1]s.observation_period (observation_period_id bigint PRIMARY KEY, person_id bigint NOT NULL, observation_period_start_date date NOT NULL, observation_period_end_date date NOT NULL, period_type_concept_id integer NOT NULL DEFAULT 32817)`,
	`CREATE TABLE %[1]s.death (person_id bigint NOT NULL, death_date date NOT NULL, death_type_concept_id integer)`,
	`CREATE TABLE %[1]s.condition_occurrence (condition_occurrence_id bigint PRIMARY KEY, person_id bigint NOT NULL, condition_concept_id integer NOT NULL DEFAULT 0, condition_start_date date, condition_end_date date, condition_type_concept_id integer NOT NULL DEFAULT 0, condition_source_value varchar(50), condition_source_concept_id integer)`,
	`CREATE TABLE %[1]s.measurement (measurement_id bigint PRIMARY KEY, person_id bigint NOT NULL, measurement_concept_id integer NOT NULL DEFAULT 0, measurement_date date, measurement_type_concept_id integer NOT NULL DEFAULT 0, value_as_number double precision, measurement_source_value varchar(50), measurement_source_concept_id integer, unit_source_value varchar(50))`,
	`CREATE TABLE %[1]s.observation (observation_id bigint PRIMARY KEY, person_id bigint NOT NULL, observation_concept_id integer NOT NULL DEFAULT 0, observation_date date, observation_type_concept_id integer NOT NULL DEFAULT 0, value_as_number double precision, value_as_string varchar(60), observation_source_value varchar(50), observation_source_concept_id integer, unit_source_value varchar(50))`,
	`CREATE TABLE %[1]s.visit_occurrence (visit_occurrence_id bigint PRIMARY KEY, person_id bigint NOT NULL, visit_concept_id integer NOT NULL DEFAULT 0, visit_start_date date, visit_end_date date, visit_type_concept_id integer NOT NULL DEFAULT 0, visit_source_value varchar(50), visit_source_concept_id integer, admitted_from_concept_id integer, discharged_to_concept_id integer)`,
	`CREATE TABLE %[1]s.drug_exposure (drug_exposure_id bigint PRIMARY KEY, person_id bigint NOT NULL, drug_concept_id integer NOT NULL DEFAULT 0, drug_exposure_start_date date, drug_type_concept_id integer NOT NULL DEFAULT 0, drug_source_value varchar(50), drug_source_concept_id integer)`,
	`CREATE TABLE %[1]s.procedure_occurrence (procedure_occurrence_id bigint PRIMARY KEY, person_id bigint NOT NULL, procedure_concept_id integer NOT NULL DEFAULT 0, procedure_date date, procedure_end_date date, procedure_type_concept_id integer NOT NULL DEFAULT 0, procedure_source_value varchar(50), procedure_source_concept_id integer)`,
}

// conceptOf inverts a table of concept ids to fedstat values (genders,
// races, visitClasses, ...): each value's first concept id, the one
// LoadTables writes.
func conceptOf(table [][2]string) map[string]int32 {
	m := map[string]int32{}
	for _, v := range table {
		if _, ok := m[v[1]]; !ok {
			id, err := strconv.Atoi(v[0])
			if err != nil {
				panic("warehouse: concept id " + v[0])
			}
			m[v[1]] = int32(id)
		}
	}
	return m
}

var (
	genderConcept = conceptOf(genders)
	visitConcept  = conceptOf(visitClasses)
	raceConcept   = conceptOf(races)
	ethnicConcept = conceptOf(ethnicities)
)

// CreateSchema (re)creates the OMOP schema b.Schema, empty: the v5.4
// subset the back end reads (ddl), with cdm_source saying v5.4. It drops
// the schema first: for tests and demos only.
func (b *Backend) CreateSchema(ctx context.Context) error {
	if _, ok := b.d.(ClickHouse); ok {
		return b.chCreateSchema(ctx)
	}
	s := b.d.Quote(b.Schema)
	if err := b.c.exec(ctx, "DROP SCHEMA IF EXISTS "+s+" CASCADE"); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	if err := b.c.exec(ctx, "CREATE SCHEMA "+s); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	for _, q := range ddl {
		if err := b.c.exec(ctx, fmt.Sprintf(q, s)); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
	}
	if err := b.c.exec(ctx, "INSERT INTO "+b.tbl("cdm_source")+" (cdm_source_name, cdm_source_abbreviation, cdm_holder, cdm_version) VALUES ('fedstat test load', 'fedstat', 'fedstat', 'v5.4')"); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	b.forget()
	return nil
}

// forget drops what describe found (the schema changed).
func (b *Backend) forget() {
	b.mu.Lock()
	b.info = nil
	b.mu.Unlock()
}

// LoadRecords (re)creates the OMOP schema b.Schema and writes r into it, for
// tests and demos. Row ids follow the row order of
// cdm.NewBuilder().AddRecords(r).Build(), person_id is the patient index + 1,
// so that "first in row order" is the same for eval and the warehouse.
func (b *Backend) LoadRecords(ctx context.Context, r *cdm.Records) error {
	t := cdm.NewBuilder()
	t.AddRecords(r)
	return b.LoadTables(ctx, t.Build())
}

// LoadTables is LoadRecords from columnar tables. Each (system, code) pair
// becomes one local standard concept (ids above 2,000,000,000, OMOP's range
// for site concepts) that is both the row's standard and source concept;
// observations go to measurement; no observation period is written (so the
// back end reads without that restriction).
func (b *Backend) LoadTables(ctx context.Context, t *cdm.Tables) error {
	if err := b.CreateSchema(ctx); err != nil {
		return err
	}
	defer b.forget()
	str := func(tb *cdm.Table, col string, r int) any {
		c, ok := tb.Strings[col]
		if !ok {
			return nil
		}
		v := c.Dict.Value(c.IDs[r])
		if v == "" {
			return nil
		}
		return v
	}
	date := func(tb *cdm.Table, col string, r int) any {
		c, ok := tb.Dates[col]
		if !ok || !c[r].Valid() {
			return nil
		}
		return c[r].Time()
	}
	num := func(tb *cdm.Table, col string, r int) any {
		c, ok := tb.Numbers[col]
		if !ok || math.IsNaN(c[r]) {
			return nil
		}
		return c[r]
	}
	copyRows := func(table string, cols []string, rows [][]any) error {
		if err := b.c.insert(ctx, b.Schema, table, cols, rows); err != nil {
			return fmt.Errorf("warehouse: copy %s: %w", table, err)
		}
		return nil
	}
	// person, location, death.
	pt, _ := t.Table(cdm.TablePatients)
	n := t.NumPatients()
	prow := make([]int, n)
	for i := range prow {
		prow[i] = -1
	}
	if pt != nil {
		for r, pi := range pt.Patient {
			prow[pi] = r
		}
	}
	locs := map[string]int64{}
	var locRows, personRows, deathRows [][]any
	for pi := 0; pi < n; pi++ {
		id := int64(pi + 1)
		row := []any{id, int32(0), nil, nil, nil, nil, nil, t.PatientIDs[pi], nil, int32(0), nil, int32(0), nil}
		if r := prow[pi]; r >= 0 {
			if sx := str(pt, "sex", r); sx != nil {
				row[1] = genderConcept[sx.(string)]
				row[8] = sx
			}
			if bd := date(pt, "birth_date", r); bd != nil {
				y, m, d := pt.Dates["birth_date"][r].Civil()
				row[2], row[3], row[4], row[5] = int32(y), int32(m), int32(d), bd
			}
			if rg := str(pt, "region", r); rg != nil {
				l, ok := locs[rg.(string)]
				if !ok {
					l = int64(len(locs) + 1)
					locs[rg.(string)] = l
					locRows = append(locRows, []any{l, rg})
				}
				row[6] = l
			}
			// Race and ethnicity: the OMB code as the source value, and its
			// standard concept when the patient has exactly one.
			for _, re := range []struct {
				col     string
				at      int
				concept map[string]int32
			}{{"race", 9, raceConcept}, {"ethnicity", 11, ethnicConcept}} {
				if v := str(pt, re.col, r); v != nil {
					row[re.at+1] = v
					if c, ok := re.concept[v.(string)]; ok {
						row[re.at] = c
					}
				}
			}
			if dd := date(pt, "death_date", r); dd != nil {
				deathRows = append(deathRows, []any{id, dd, int32(32817)})
			}
		}
		personRows = append(personRows, row)
	}
	if err := copyRows("location", []string{"location_id", "location_source_value"}, locRows); err != nil {
		return err
	}
	if err := copyRows("person", []string{"person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime", "location_id", "person_source_value", "gender_source_value",
		"race_concept_id", "race_source_value", "ethnicity_concept_id", "ethnicity_source_value"}, personRows); err != nil {
		return err
	}
	if err := copyRows("death", []string{"person_id", "death_date", "death_type_concept_id"}, deathRows); err != nil {
		return err
	}
	vocabOf := map[string]string{}
	for _, v := range vocabularies {
		if _, ok := vocabOf[v[1]]; !ok {
			vocabOf[v[1]] = v[0]
		}
	}
	concepts := map[[2]string]int32{}
	var conceptRows [][]any
	concept := func(system, code any) any {
		if system == nil && code == nil {
			return nil
		}
		sy, _ := system.(string)
		co, _ := code.(string)
		if v, ok := vocabOf[sy]; ok {
			sy = v
		}
		k := [2]string{sy, co}
		id, ok := concepts[k]
		if !ok {
			id = int32(2_000_000_001 + len(concepts))
			concepts[k] = id
			conceptRows = append(conceptRows, []any{id, sy, co, "S"})
		}
		return id
	}
	// Row ids continue across the fedstat tables that share an OMOP table
	// (medications and immunizations in drug_exposure), in row order.
	idBase := map[string]int64{}
	for i := range cdm.Schema {
		sch := &cdm.Schema[i]
		tb, ok := t.Table(sch.Name)
		m, mapped := mapping[sch.Name]
		if sch.Patients || !ok || !mapped {
			continue
		}
		src := m.sources[0]
		cols := []string{src.id, "person_id"}
		var fcols []cdm.Column
		for _, c := range sch.Columns {
			if oc, ok := src.cols[c.Name]; ok {
				cols = append(cols, oc)
				fcols = append(fcols, c)
			}
		}
		class := src.expr["class"] != ""
		if class {
			cols = append(cols, "visit_concept_id", "visit_source_value")
		}
		if src.sourceValue != "" {
			cols = append(cols, src.sourceValue)
		}
		for _, c := range []string{src.standard, src.sourceConcept} {
			if c != "" {
				cols = append(cols, c)
			}
		}
		rows := make([][]any, tb.Rows)
		base := idBase[src.table]
		idBase[src.table] += int64(tb.Rows)
		for r := 0; r < tb.Rows; r++ {
			row := []any{base + int64(r+1), int64(tb.Patient[r]) + 1}
			for _, c := range fcols {
				switch c.Type {
				case cdm.TypeString:
					row = append(row, str(tb, c.Name, r))
				case cdm.TypeDate:
					row = append(row, date(tb, c.Name, r))
				default:
					row = append(row, num(tb, c.Name, r))
				}
			}
			if class {
				cl := str(tb, "class", r)
				s, _ := cl.(string)
				row = append(row, visitConcept[s], cl)
			}
			if src.sourceValue != "" {
				row = append(row, str(tb, m.code, r))
			}
			c := concept(str(tb, m.system, r), str(tb, m.code, r))
			if src.standard != "" {
				if c == nil {
					row = append(row, int32(0))
				} else {
					row = append(row, c)
				}
			}
			if src.sourceConcept != "" {
				row = append(row, c)
			}
			rows[r] = row
		}
		if err := copyRows(src.table, cols, rows); err != nil {
			return err
		}
	}
	if err := copyRows("concept", []string{"concept_id", "vocabulary_id", "concept_code", "standard_concept"}, conceptRows); err != nil {
		return err
	}
	if _, ok := b.d.(ClickHouse); ok {
		return nil
	}
	if err := b.c.exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	return nil
}

// Summary is the exact size of the warehouse's data as queries see it:
// persons and rows of the fedstat tables (all sources of each, inside the
// observation periods when they apply), under the fedstat table names. It
// checks the schema first (an error names what is missing).
func (b *Backend) Summary(ctx context.Context) (patients int64, rows map[string]int64, err error) {
	info, err := b.describe(ctx)
	if err != nil {
		return 0, nil, err
	}
	if _, ok := b.d.(ClickHouse); ok {
		return b.chSummary(ctx, info)
	}
	rows = map[string]int64{}
	for i := range cdm.Schema {
		name := cdm.Schema[i].Name
		if _, ok := mapping[name]; !ok {
			continue
		}
		tr := &translator{d: b.d, schema: b.Schema, info: info}
		_, from, err := tr.from(name)
		if err != nil {
			return 0, nil, err
		}
		var n int64
		if err := b.c.queryRow(ctx, "SELECT COUNT(*) FROM "+from).Scan(&n); err != nil {
			return 0, nil, fmt.Errorf("warehouse: counting %s: %w", name, err)
		}
		rows[name] = n
	}
	return rows[cdm.TablePatients], rows, nil
}
