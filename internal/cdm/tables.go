package cdm

import "fmt"

// The tables of the common data model, declared once: each declaration
// below is the table's record type, its field in Records and its entry in
// Schema (name, columns and their kinds, whether its columns are patient
// attributes, its code in the store, its code columns). The columnar
// builder, the store's codec and staging, origins, the patient check, the
// CSV and CDM-row NDJSON importers, node status, the warehouse loader and
// the docs test loop over Schema; a format decoder (node/internal/fhir)
// maps its own input onto the record types. Adding a table is one
// declaration here plus its decoder mapping.

// Table names of the common data model.
const (
	TablePatients      = "patients"
	TableConditions    = "conditions"
	TableObservations  = "observations"
	TableEncounters    = "encounters"
	TableMedications   = "medications"
	TableProcedures    = "procedures"
	TableImmunizations = "immunizations"
)

// Records is a set of records of all tables, as an import or a generator
// produces them: one slice per table of Schema.
type Records struct {
	Patients      []Patient
	Conditions    []Condition
	Observations  []Observation
	Encounters    []Encounter
	Medications   []Medication
	Procedures    []Procedure
	Immunizations []Immunization
}

// Patient is one person. ID is unique within a node.
type Patient struct {
	ID        string
	BirthDate Date
	Sex       Sex
	Region    string
	DeathDate Date
	// Race and Ethnicity are the OMB category codes of the US Core race
	// and ethnicity extensions (2106-3, 2186-5, ...), several sorted and
	// joined by commas; empty when not given.
	Race, Ethnicity string
	// Identifiers are the patient's business identifiers (FHIR
	// Patient.identifier) as system|value items, comma-separated, in the
	// FHIR token form of FormatCodings (sorted). Record linkage takes the
	// value of the network's identifier system (Tables.ResidentKey); no
	// query reads them (the column is Secret).
	Identifiers string
}

// Condition is a diagnosis. ID identifies the source record (FHIR resource id,
// or a key derived from the CSV row) so that a changed record replaces the old.
type Condition struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Onset     Date
	Abatement Date
	// ClinicalStatus and VerificationStatus are the FHIR codes (active,
	// resolved, ...; confirmed, refuted, ...), empty when not given.
	ClinicalStatus     string
	VerificationStatus string
	// Codings holds the record's other codings (FormatCodings), empty when
	// Code is its only one.
	Codings string
}

// Observation is a measurement. HasValue is false for observations without a
// numeric value (Value is then 0).
type Observation struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Date      Date
	Value     float64
	HasValue  bool
	Unit      string
	Status    string
	// PanelID is the record id of the panel observation this one is a
	// component of (FHIR Observation.component), empty otherwise.
	PanelID string
	Codings string
}

// Encounter is a visit.
type Encounter struct {
	ID         string
	PatientID  string
	Class      string
	TypeCode   string
	TypeSystem string
	Start      Date
	End        Date
	// TypeCodings holds the other codings of the encounter's types.
	TypeCodings string
}

// Medication is a prescription (FHIR MedicationRequest).
type Medication struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Authored  Date
	Status    string
	Codings   string
}

// Procedure is a procedure performed on a patient (FHIR Procedure).
type Procedure struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Date      Date
	Status    string
	Codings   string
}

// Immunization is a vaccination (FHIR Immunization).
type Immunization struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Date      Date
	Status    string
	Codings   string
}

var (
	patients = declare(TableSchema{Name: TablePatients, Code: 'a', Patients: true,
		Doc: "one row per patient; its columns are patient attributes, visible on every table"},
		func(r *Records) *[]Patient { return &r.Patients },
		func(p *Patient) (*string, *string) { return &p.ID, &p.ID },
		dateField("birth_date", "date of birth", func(p *Patient) *Date { return &p.BirthDate }),
		field[Patient]{Column: Column{Name: "sex", Type: TypeString, Doc: "female, male, other or unknown",
			Values: sexNames[:], Parse: parseSex},
			get: func(p *Patient) Value { return Value{Str: p.Sex.String()} },
			set: func(p *Patient, v Value) { p.Sex, _ = ParseSex(v.Str) }},
		stringField("region", "region code, from the patient's address by the node's region rule", func(p *Patient) *string { return &p.Region }),
		dateField("death_date", "date of death, missing if alive", func(p *Patient) *Date { return &p.DeathDate }),
		stringField("race", "OMB race category code of the US Core race extension (2106-3 White, 2054-5 Black or African American, 2028-9 Asian, 1002-5 American Indian or Alaska Native, 2076-8 Native Hawaiian or Other Pacific Islander); several sorted and comma-joined; missing if not given", func(p *Patient) *string { return &p.Race }).added(),
		stringField("ethnicity", "OMB ethnicity category code of the US Core ethnicity extension (2135-2 Hispanic or Latino, 2186-5 Not Hispanic or Latino); missing if not given", func(p *Patient) *string { return &p.Ethnicity }).added(),
		identifiersField(),
	)
	conditions = declare(TableSchema{Name: TableConditions, Code: 'b', Coded: [2]string{"code", "system"}, Codings: "codings",
		Doc: "diagnoses (FHIR Condition)"},
		func(r *Records) *[]Condition { return &r.Conditions },
		func(c *Condition) (*string, *string) { return &c.ID, &c.PatientID },
		stringField("code", "diagnosis code (SNOMED CT, ICD-10)", func(c *Condition) *string { return &c.Code }).required(),
		stringField("system", "code system URI", func(c *Condition) *string { return &c.System }),
		dateField("onset_date", "onset", func(c *Condition) *Date { return &c.Onset }),
		dateField("abatement_date", "abatement, missing if ongoing", func(c *Condition) *Date { return &c.Abatement }),
		stringField("clinical_status", "FHIR clinicalStatus code: active, recurrence, relapse, inactive, remission, resolved; missing if not given", func(c *Condition) *string { return &c.ClinicalStatus }).added(),
		stringField("verification_status", "FHIR verificationStatus code: unconfirmed, provisional, differential, confirmed, refuted; missing if not given (entered-in-error is never imported)", func(c *Condition) *string { return &c.VerificationStatus }).added(),
		codingsField("codings", func(c *Condition) *string { return &c.Codings }).added(),
	)
	observations = declare(TableSchema{Name: TableObservations, Code: 'c', Coded: [2]string{"code", "system"}, Codings: "codings",
		Doc: "measurements (FHIR Observation)"},
		func(r *Records) *[]Observation { return &r.Observations },
		func(o *Observation) (*string, *string) { return &o.ID, &o.PatientID },
		stringField("code", "observation code (LOINC)", func(o *Observation) *string { return &o.Code }).required(),
		stringField("system", "code system URI", func(o *Observation) *string { return &o.System }),
		dateField("date", "effective date", func(o *Observation) *Date { return &o.Date }),
		field[Observation]{Column: Column{Name: "value", Type: TypeNumber, Doc: "numeric value, missing if none"},
			get: func(o *Observation) Value { return Value{Num: o.number()} },
			set: func(o *Observation, v Value) { o.Value, o.HasValue = v.Num, v.Num == v.Num }},
		stringField("unit", "unit of value (UCUM)", func(o *Observation) *string { return &o.Unit }),
		stringField("status", "FHIR status code: registered, preliminary, final, amended, corrected, cancelled, unknown; missing if not given (entered-in-error is never imported)", func(o *Observation) *string { return &o.Status }).added(),
		stringField("panel_id", "record id of the panel this observation is a component of (FHIR Observation.component); missing for other observations", func(o *Observation) *string { return &o.PanelID }).added(),
		codingsField("codings", func(o *Observation) *string { return &o.Codings }).added(),
	)
	encounters = declare(TableSchema{Name: TableEncounters, Code: 'd', Coded: [2]string{"type_code", "type_system"}, Codings: "type_codings",
		Doc: "visits (FHIR Encounter)"},
		func(r *Records) *[]Encounter { return &r.Encounters },
		func(e *Encounter) (*string, *string) { return &e.ID, &e.PatientID },
		stringField("class", "encounter class (AMB, EMER, IMP, ...)", func(e *Encounter) *string { return &e.Class }),
		stringField("type_code", "encounter type code", func(e *Encounter) *string { return &e.TypeCode }),
		stringField("type_system", "code system URI of type_code", func(e *Encounter) *string { return &e.TypeSystem }),
		dateField("start_date", "start", func(e *Encounter) *Date { return &e.Start }),
		dateField("end_date", "end", func(e *Encounter) *Date { return &e.End }),
		codingsField("type_codings", func(e *Encounter) *string { return &e.TypeCodings }).added(),
	)
	medications = declare(TableSchema{Name: TableMedications, Code: 'e', Coded: [2]string{"code", "system"}, Codings: "codings",
		Doc: "prescriptions (FHIR MedicationRequest)"},
		func(r *Records) *[]Medication { return &r.Medications },
		func(m *Medication) (*string, *string) { return &m.ID, &m.PatientID },
		stringField("code", "medication code (RxNorm)", func(m *Medication) *string { return &m.Code }).required(),
		stringField("system", "code system URI", func(m *Medication) *string { return &m.System }),
		dateField("authored_date", "date the prescription was written", func(m *Medication) *Date { return &m.Authored }),
		stringField("status", "FHIR status code: active, on-hold, cancelled, completed, stopped, draft, unknown; missing if not given (entered-in-error is never imported)", func(m *Medication) *string { return &m.Status }).added(),
		codingsField("codings", func(m *Medication) *string { return &m.Codings }).added(),
	)
	procedures = declare(TableSchema{Name: TableProcedures, Code: 'f', Coded: [2]string{"code", "system"}, Codings: "codings",
		Doc: "procedures performed (FHIR Procedure)"},
		func(r *Records) *[]Procedure { return &r.Procedures },
		func(x *Procedure) (*string, *string) { return &x.ID, &x.PatientID },
		stringField("code", "procedure code (SNOMED CT)", func(x *Procedure) *string { return &x.Code }).required(),
		stringField("system", "code system URI", func(x *Procedure) *string { return &x.System }),
		dateField("date", "date performed (the start of a period)", func(x *Procedure) *Date { return &x.Date }),
		stringField("status", "FHIR status code: preparation, in-progress, not-done, on-hold, stopped, completed, unknown; missing if not given (entered-in-error is never imported)", func(x *Procedure) *string { return &x.Status }).added(),
		codingsField("codings", func(x *Procedure) *string { return &x.Codings }).added(),
	)
	immunizations = declare(TableSchema{Name: TableImmunizations, Code: 'g', Coded: [2]string{"code", "system"}, Codings: "codings",
		Doc: "vaccinations (FHIR Immunization)"},
		func(r *Records) *[]Immunization { return &r.Immunizations },
		func(x *Immunization) (*string, *string) { return &x.ID, &x.PatientID },
		stringField("code", "vaccine code (CVX)", func(x *Immunization) *string { return &x.Code }).required(),
		stringField("system", "code system URI", func(x *Immunization) *string { return &x.System }),
		dateField("date", "date given (occurrenceDateTime, else recorded)", func(x *Immunization) *Date { return &x.Date }),
		stringField("status", "FHIR status code: completed, not-done; missing if not given (entered-in-error is never imported)", func(x *Immunization) *string { return &x.Status }),
		codingsField("codings", func(x *Immunization) *string { return &x.Codings }),
	)
)

// Schema is the common data model, in the order tables are stored and
// listed (patients first): every table the query language, the importers
// and the store know. The patients table also offers the derived column
// "age" (whole years at the query's reference date), which the query layer
// computes from birth_date.
var Schema = register(patients, conditions, observations, encounters, medications, procedures, immunizations)

// codingsField is a table's codings column (TableSchema.Codings): the
// record's codings other than the one in its code and system columns.
// identifiersField is the patients' identifiers column: system|value items
// like a codings column, secret (no query reads it).
func identifiersField() field[Patient] {
	f := stringField("identifiers", "the patient's business identifiers (FHIR Patient.identifier) as system|value items, comma-separated; read only by record linkage, never by a query", func(p *Patient) *string { return &p.Identifiers }).added()
	f.Parse = parseCodings
	f.Secret = true
	return f
}

func codingsField[T any](name string, p func(*T) *string) field[T] {
	f := stringField(name, "the record's other codings as system|code items, comma-separated (FHIR token form), matched by conditions on the code and system columns; not queried by itself", p)
	f.Parse = parseCodings
	return f
}

// number is the observation's value as a column holds it (NaN: none).
func (o *Observation) number() float64 {
	if !o.HasValue {
		return nan
	}
	return o.Value
}

// parseSex is the text form of the sex column (CSV): ParseSex's spellings.
func parseSex(s string) (string, error) {
	x, err := ParseSex(s)
	if err != nil {
		return "", fmt.Errorf("bad sex %q (want female, male, other or unknown)", s)
	}
	return x.String(), nil
}
