package warehouse

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
)

// source is one OMOP table read as (part of) a fedstat table. Every source
// is read through a derived table with canonical column names (sourceSQL),
// so that a fedstat table read from several OMOP tables (observations: the
// measurement and observation tables) is a UNION ALL of its sources.
type source struct {
	table string // OMOP table
	id    string // row id column: the row order within the source
	// date is the event date checked against the person's observation
	// periods.
	date string
	// Coded columns: the standard concept (*_concept_id, matched with
	// concept_ancestor), the source concept (*_source_concept_id) and the
	// source value (*_source_value). Empty where the table has none.
	standard, sourceConcept, sourceValue string
	// cols maps fedstat columns (other than the coded pair) to an OMOP
	// column of this table or, when expr is set, an SQL expression over
	// the row alias "x".
	cols map[string]string
	expr map[string]string
	// where, when set, restricts the rows of the OMOP table (an SQL
	// condition over the row alias "x"; %[1]s is the concept table).
	where string
}

// omopTable maps one fedstat CDM table to its OMOP sources.
type omopTable struct {
	sources []source
	// code and system are the fedstat coded columns (cdm TableSchema.Coded)
	// read through the concepts of the sources.
	code, system string
}

// vocabularies maps OMOP vocabulary_id to the code system URIs of fedstat's
// CDM (the FHIR system URIs), first the id a URI is written as (LoadTables).
// Every id internal/terminology knows reads as terminology.SystemOfVocabulary
// has it (as OMOP concept sets are read; TestVocabulariesAgreeWithTerminology),
// "RxNorm Extension" as RxNorm included; ICD9CM, HCPCS and UCUM are the
// warehouse's own. Other vocabulary ids are passed through as they are.
var vocabularies = [][2]string{
	{"SNOMED", terminology.SNOMED},
	{"LOINC", terminology.LOINC},
	{"RxNorm", terminology.RxNorm},
	{"RxNorm Extension", terminology.RxNorm},
	{"ICD10", terminology.ICD10},
	{"ICD10CM", terminology.ICD10CM},
	{"ICD10GM", terminology.ICD10GM},
	{"ICD9CM", "http://hl7.org/fhir/sid/icd-9-cm"},
	{"CPT4", terminology.CPT},
	{"HCPCS", "urn:oid:2.16.840.1.113883.6.285"},
	{"ICD10PCS", terminology.ICD10PCS},
	{"ATC", terminology.ATC},
	{"CVX", terminology.CVX},
	{"NDC", terminology.NDC},
	{"UCUM", "http://unitsofmeasure.org"},
}

// visitClasses maps the standard visit concepts (visit_concept_id, the
// Visit vocabulary) to the FHIR encounter classes of fedstat's
// encounters.class; other visits fall back to visit_source_value.
var visitClasses = [][2]string{
	{"9201", "IMP"},      // Inpatient Visit
	{"9202", "AMB"},      // Outpatient Visit
	{"9203", "EMER"},     // Emergency Room Visit
	{"262", "EMER"},      // Emergency Room and Inpatient Visit
	{"581476", "HH"},     // Home Visit
	{"5083", "VR"},       // Telehealth
	{"581385", "OBSENC"}, // Observation Room
}

// races and ethnicities map the standard Race and Ethnicity concepts of
// person to the OMB category codes (CDC Race & Ethnicity code system) that
// the FHIR importer stores from the US Core extensions; other concepts fall
// back to race_source_value and ethnicity_source_value.
var races = [][2]string{
	{"8657", "1002-5"}, // American Indian or Alaska Native
	{"8515", "2028-9"}, // Asian
	{"8516", "2054-5"}, // Black or African American
	{"8557", "2076-8"}, // Native Hawaiian or Other Pacific Islander
	{"8527", "2106-3"}, // White
}

var ethnicities = [][2]string{
	{"38003563", "2135-2"}, // Hispanic or Latino
	{"38003564", "2186-5"}, // Not Hispanic or Latino
}

// genders maps gender_concept_id to fedstat's sex values; other concepts
// (0, No matching concept) fall back to gender_source_value read with
// cdm.ParseSex's spellings.
var genders = [][2]string{
	{"8532", "female"},
	{"8507", "male"},
	{"8521", "other"},
	{"8570", "other"}, // Ambiguous
	{"8551", "unknown"},
}

// mapping is the fedstat CDM -> OMOP CDM 5.3/5.4 mapping (docs/warehouse.md).
// Patient columns (sex, region, birth_date, death_date) are read through
// person, location and death on every table.
// noText is a text column OMOP does not have: FHIR's statuses (an OMOP ETL
// drops entered-in-error records and keeps no status), a record's other
// codings (OMOP has one source and one standard concept, both matched
// through code and system), an observation's panel.
const noText = "CAST(NULL AS varchar(50))"

// cvx restricts drug_exposure to vaccines (the CVX vocabulary, as OMOP ETLs
// write immunizations); medications reads the other drug exposures.
const cvx = "EXISTS (SELECT 1 FROM %[1]s cv WHERE cv.vocabulary_id = 'CVX' AND cv.concept_id IN (x.drug_concept_id, x.drug_source_concept_id))"

var mapping = map[string]omopTable{
	cdm.TablePatients: {sources: []source{{table: "person", id: "person_id"}}},
	cdm.TableConditions: {code: "code", system: "system", sources: []source{{
		table: "condition_occurrence", id: "condition_occurrence_id", date: "condition_start_date",
		standard: "condition_concept_id", sourceConcept: "condition_source_concept_id", sourceValue: "condition_source_value",
		cols: map[string]string{"onset_date": "condition_start_date", "abatement_date": "condition_end_date"},
		expr: map[string]string{"codings": noText, "clinical_status": noText, "verification_status": noText}}}},
	// FHIR Observations land in measurement or observation by the domain of
	// their concept (OMOP ETL convention): observations reads both.
	cdm.TableObservations: {code: "code", system: "system", sources: []source{{
		table: "measurement", id: "measurement_id", date: "measurement_date",
		standard: "measurement_concept_id", sourceConcept: "measurement_source_concept_id", sourceValue: "measurement_source_value",
		cols: map[string]string{"date": "measurement_date", "value": "value_as_number", "unit": "unit_source_value"},
		expr: map[string]string{"codings": noText, "status": noText, "panel_id": noText}}, {
		table: "observation", id: "observation_id", date: "observation_date",
		standard: "observation_concept_id", sourceConcept: "observation_source_concept_id", sourceValue: "observation_source_value",
		cols: map[string]string{"date": "observation_date", "value": "value_as_number", "unit": "unit_source_value"},
		expr: map[string]string{"codings": noText, "status": noText, "panel_id": noText}}}},
	// visit_concept_id is the visit's class (Visit vocabulary); the type
	// (FHIR Encounter.type) is the source concept.
	cdm.TableEncounters: {code: "type_code", system: "type_system", sources: []source{{
		table: "visit_occurrence", id: "visit_occurrence_id", date: "visit_start_date",
		sourceConcept: "visit_source_concept_id",
		cols:          map[string]string{"start_date": "visit_start_date", "end_date": "visit_end_date"},
		expr:          map[string]string{"class": visitClassSQL(), "type_codings": noText, "status": noText}}}},
	cdm.TableMedications: {code: "code", system: "system", sources: []source{{
		table: "drug_exposure", id: "drug_exposure_id", date: "drug_exposure_start_date",
		standard: "drug_concept_id", sourceConcept: "drug_source_concept_id", sourceValue: "drug_source_value",
		cols: map[string]string{"authored_date": "drug_exposure_start_date"},
		expr: map[string]string{"codings": noText, "status": noText}, where: "NOT " + cvx}}},
	cdm.TableImmunizations: {code: "code", system: "system", sources: []source{{
		table: "drug_exposure", id: "drug_exposure_id", date: "drug_exposure_start_date",
		standard: "drug_concept_id", sourceConcept: "drug_source_concept_id", sourceValue: "drug_source_value",
		cols: map[string]string{"date": "drug_exposure_start_date"},
		expr: map[string]string{"codings": noText, "status": noText}, where: cvx}}},
	cdm.TableProcedures: {code: "code", system: "system", sources: []source{{
		table: "procedure_occurrence", id: "procedure_occurrence_id", date: "procedure_date",
		standard: "procedure_concept_id", sourceConcept: "procedure_source_concept_id", sourceValue: "procedure_source_value",
		cols: map[string]string{"date": "procedure_date"},
		expr: map[string]string{"codings": noText, "status": noText}}}},
}

func visitClassSQL() string {
	return conceptCase("x.visit_concept_id", visitClasses, "x.visit_source_value")
}

// columns returns the OMOP columns a source reads.
func (s source) columns() []string {
	out := []string{s.id, "person_id"}
	for _, c := range []string{s.date, s.standard, s.sourceConcept, s.sourceValue} {
		if c != "" {
			out = append(out, c)
		}
	}
	for _, c := range s.cols {
		out = append(out, c)
	}
	if _, ok := s.expr["class"]; ok {
		out = append(out, "visit_concept_id", "visit_source_value")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// required lists the tables and columns the back end reads besides the
// mapped sources: the person and its location and death, and the
// vocabulary tables.
var required = map[string][]string{
	"person":               {"person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime", "location_id", "gender_source_value", "race_concept_id", "race_source_value", "ethnicity_concept_id", "ethnicity_source_value"},
	"location":             {"location_id", "location_source_value"},
	"death":                {"person_id", "death_date"},
	"observation_period":   {"person_id", "observation_period_start_date", "observation_period_end_date"},
	"concept":              {"concept_id", "concept_code", "vocabulary_id", "standard_concept"},
	"concept_relationship": {"concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"},
	"concept_ancestor":     {"ancestor_concept_id", "descendant_concept_id"},
}

// Info is what the back end found in the OMOP schema.
type Info struct {
	// Version is the CDM version, "5.3" or "5.4": cdm_source.cdm_version
	// when that table has a row, else by column presence
	// (procedure_occurrence.procedure_end_date and the episode table are
	// 5.4's).
	Version string
	// VersionFrom says where Version was read: "cdm_source" or "columns".
	VersionFrom string
	// Periods is true when observation_period has rows: then only persons
	// with an observation period, and events dated inside one of their
	// periods, are counted. A CDM with an empty observation_period is read
	// without that restriction (rather than answering zero everywhere).
	Periods bool
}

// describe reads the schema's catalogue: it checks that every table and
// column the mapping reads is there (an error names each one missing),
// detects the CDM version and whether observation periods apply.
func (b *Backend) describe(ctx context.Context) (Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.info != nil && b.infoSchema == b.Schema {
		return *b.info, nil
	}
	have := map[string]map[string]bool{}
	_, ch := b.d.(ClickHouse)
	var rows rows
	var err error
	if ch {
		rows, err = b.c.query(ctx, `SELECT lower(table), lower(name) FROM system.columns WHERE database = `+chLiteral(b.Schema))
	} else {
		rows, err = b.c.query(ctx, `SELECT lower(table_name), lower(column_name) FROM information_schema.columns WHERE table_schema = $1`, b.Schema)
	}
	if err != nil {
		return Info{}, fmt.Errorf("warehouse: reading the columns of schema %q: %w", b.Schema, err)
	}
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			rows.Close()
			return Info{}, fmt.Errorf("warehouse: %w", err)
		}
		if have[t] == nil {
			have[t] = map[string]bool{}
		}
		have[t][c] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Info{}, fmt.Errorf("warehouse: %w", err)
	}
	if len(have) == 0 {
		return Info{}, fmt.Errorf("warehouse: schema %q has no tables (is it the OMOP CDM schema? set the schema)", b.Schema)
	}
	need := map[string][]string{}
	for t, cs := range required {
		need[t] = cs
	}
	for _, m := range mapping {
		for _, s := range m.sources {
			need[s.table] = append(need[s.table], s.columns()...)
		}
	}
	var missing []string
	for t, cs := range need {
		if have[t] == nil {
			missing = append(missing, "table "+t)
			continue
		}
		for _, c := range cs {
			if !have[t][c] {
				missing = append(missing, t+"."+c)
			}
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		missing = slices.Compact(missing)
		return Info{}, fmt.Errorf("warehouse: schema %q is not an OMOP CDM 5.3/5.4 the node can read: missing %s", b.Schema, strings.Join(missing, ", "))
	}
	if ch {
		if err := b.chCheckSharding(ctx); err != nil {
			return Info{}, err
		}
	}
	var info Info
	if have["cdm_source"]["cdm_version"] {
		var v *string
		err := b.c.queryRow(ctx, "SELECT MAX(cdm_version) FROM "+b.tbl("cdm_source")).Scan(&v)
		if err != nil {
			return Info{}, fmt.Errorf("warehouse: reading cdm_source.cdm_version: %w", err)
		}
		if v != nil && strings.TrimSpace(*v) != "" {
			info.Version, err = cdmVersion(*v)
			if err != nil {
				return Info{}, err
			}
			info.VersionFrom = "cdm_source"
		}
	}
	if info.Version == "" {
		info.Version, info.VersionFrom = "5.3", "columns"
		if have["procedure_occurrence"]["procedure_end_date"] || have["episode"] != nil {
			info.Version = "5.4"
		}
	}
	var periods bool
	exists := "SELECT EXISTS (SELECT 1 FROM " + b.tbl("observation_period") + ")"
	if ch {
		exists = "SELECT count() > 0 FROM (SELECT 1 FROM " + b.tbl("observation_period") + " LIMIT 1)"
	}
	if err := b.c.queryRow(ctx, exists).Scan(&periods); err != nil {
		return Info{}, fmt.Errorf("warehouse: reading observation_period: %w", err)
	}
	info.Periods = periods
	b.info, b.infoSchema = &info, b.Schema
	return info, nil
}

// cdmVersion reads cdm_source.cdm_version ("v5.4.0", "5.3.1", "CDM v5.4")
// as "5.3" or "5.4", and refuses other versions.
func cdmVersion(v string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	s = strings.TrimPrefix(s, "cdm")
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "v")
	for _, ok := range []string{"5.3", "5.4"} {
		if s == ok || strings.HasPrefix(s, ok+".") {
			return ok, nil
		}
	}
	return "", fmt.Errorf("warehouse: cdm_source.cdm_version is %q: the node reads OMOP CDM 5.3 and 5.4 only", v)
}

// Info reports what the back end found in its schema (version,
// observation periods); it checks the schema on first use.
func (b *Backend) Info(ctx context.Context) (Info, error) { return b.describe(ctx) }
