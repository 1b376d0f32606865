package cdm

// ColumnType is the type of a column as the query language sees it.
type ColumnType uint8

// Column types.
const (
	TypeString ColumnType = iota + 1 // dictionary-encoded text (codes, regions, sex)
	TypeDate                         // Date
	TypeNumber                       // float64, NaN for missing
)

func (t ColumnType) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeDate:
		return "date"
	case TypeNumber:
		return "number"
	}
	return "invalid"
}

// Column describes one column of a table.
type Column struct {
	Name string
	Type ColumnType
	Doc  string
}

// TableSchema describes one table. Every table has a patient_id column (the
// privacy unit) that is not listed in Columns: it is stored as Table.Patient.
type TableSchema struct {
	Name    string
	Columns []Column
}

// Lookup returns the column named name.
func (s *TableSchema) Lookup(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Table names of the common data model.
const (
	TablePatients     = "patients"
	TableConditions   = "conditions"
	TableObservations = "observations"
	TableEncounters   = "encounters"
	TableMedications  = "medications"
)

// Schema is the common data model as the query language sees it. The patients
// table also offers the derived column "age" (whole years at the query's
// reference date), which the query layer computes from birth_date.
var Schema = []TableSchema{
	{Name: TablePatients, Columns: []Column{
		{"birth_date", TypeDate, "date of birth"},
		{"sex", TypeString, "female, male, other or unknown"},
		{"region", TypeString, "region code, from the patient's address by the node's region rule"},
		{"death_date", TypeDate, "date of death, missing if alive"},
	}},
	{Name: TableConditions, Columns: []Column{
		{"code", TypeString, "diagnosis code (SNOMED CT, ICD-10)"},
		{"system", TypeString, "code system URI"},
		{"onset_date", TypeDate, "onset"},
		{"abatement_date", TypeDate, "abatement, missing if ongoing"},
	}},
	{Name: TableObservations, Columns: []Column{
		{"code", TypeString, "observation code (LOINC)"},
		{"system", TypeString, "code system URI"},
		{"date", TypeDate, "effective date"},
		{"value", TypeNumber, "numeric value, missing if none"},
		{"unit", TypeString, "unit of value (UCUM)"},
	}},
	{Name: TableEncounters, Columns: []Column{
		{"class", TypeString, "encounter class (AMB, EMER, IMP, ...)"},
		{"type_code", TypeString, "encounter type code"},
		{"type_system", TypeString, "code system URI of type_code"},
		{"start_date", TypeDate, "start"},
		{"end_date", TypeDate, "end"},
	}},
	{Name: TableMedications, Columns: []Column{
		{"code", TypeString, "medication code (RxNorm)"},
		{"system", TypeString, "code system URI"},
		{"authored_date", TypeDate, "date the prescription was written"},
	}},
}

// LookupTable returns the schema of the CDM table named name.
func LookupTable(name string) (*TableSchema, bool) {
	for i := range Schema {
		if Schema[i].Name == name {
			return &Schema[i], true
		}
	}
	return nil, false
}
