package cdm

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"strconv"

	"github.com/BurntSushi/toml"
)

// A study table is a research data set a node imports from CSV next to the
// CDM tables (a trial's case report forms, a registry extract). Its schema
// is public: it is part of the network catalogue, so that the coordinator
// and every node plan queries on it identically. Its rows are as secret as
// any CDM record.

// ErrBadSchema marks a study schema that cannot be used.
var ErrBadSchema = errors.New("cdm: bad study schema")

// Privacy units of a study table (StudySchema.Unit).
const (
	// UnitPerson: the rows with the same value of the schema's id column
	// are one person (and, when the id is a CDM patient id of the node,
	// that patient). The default when id is set.
	UnitPerson = "person"
	// UnitRow: each row is a different person. The schema must say so
	// itself (unit = "row"); it is never assumed.
	UnitRow = "row"
)

// Study column types as a schema file names them.
const (
	StudyInt    = "int"    // whole numbers (stored as numbers)
	StudyFloat  = "float"  // numbers
	StudyString = "string" // text
	StudyDate   = "date"   // YYYY-MM-DD
)

// StudyColumn describes one column of a study table.
type StudyColumn struct {
	// Name is the column's name in queries: lower case, [a-z_][a-z0-9_]*.
	// Required.
	Name string `toml:"name"`
	// CSV is the column's header in the CSV file. Defaults to Name.
	CSV string `toml:"csv"`
	// Type is int, float, string or date. Required.
	Type string `toml:"type"`
	// Min and Max are the public range of a number column. Queries clamp
	// to it by default (SUM(x) means SUM(CLAMP(x, min, max))), and
	// GROUP BY of an int column whose range has at most 1000 values uses
	// the range as its domain. Required for int and float columns.
	Min *float64 `toml:"min"`
	Max *float64 `toml:"max"`
	// Values is the public domain of a string column (GROUP BY uses it).
	// Defaults to none: GROUP BY then needs the values listed in WHERE.
	// Import refuses a value not listed when Values is set.
	Values []string `toml:"values"`
	// Doc describes the column.
	Doc string `toml:"doc"`
}

// MaxLevels is the largest range of an int column that Levels lists.
const MaxLevels = 100

// Levels are the public categories of a column, for factors, strata and
// status columns: the whole numbers of an int column's range when it spans
// at most MaxLevels, the listed values of a string column, nil otherwise.
func (c *StudyColumn) Levels() []string {
	switch {
	case c.Type == StudyInt && c.Min != nil && c.Max != nil && *c.Max-*c.Min <= MaxLevels:
		var levels []string
		for v := math.Ceil(*c.Min); v <= *c.Max; v++ {
			levels = append(levels, strconv.FormatFloat(v, 'g', -1, 64))
		}
		return levels
	case c.Type == StudyString && len(c.Values) > 0:
		return c.Values
	}
	return nil
}

// StudySchema describes a study table.
type StudySchema struct {
	// Name is the table's name in queries. Required, [a-z_][a-z0-9_]*, and
	// not the name of a CDM table.
	Name string `toml:"name"`
	// ID is the CSV header of the column holding the person (patient) id:
	// the privacy unit is then the person, and rows with the same id are
	// one person. A schema must set ID or say Unit = "row".
	ID string `toml:"id"`
	// Unit is the privacy unit: "person" (the default when ID is set; needs
	// ID) or "row", the schema's own statement that each row is a different
	// person (no id column; ids are made from the study name and the row
	// number). A schema with neither ID nor Unit is refused: the row would
	// silently become the unit, and a person with several rows would get
	// less protection than the noise promises.
	Unit string `toml:"unit"`
	// RowsPerPatient bounds the rows one patient has in the table; import
	// refuses more. With 1 every study column is a patient attribute, so a
	// patient contributes to one group of any GROUP BY (G = 1) and one row
	// (R = 1). Defaults to 1.
	RowsPerPatient int `toml:"rows_per_patient"`
	// Missing lists the texts that mean "no value". Defaults to "" and "NA".
	Missing []string `toml:"missing"`
	// SmallCountThreshold is the k below which released counts on this
	// table display as "< k" and are withheld. 0 takes the network default;
	// -1 turns it off (research analyses need small counts; the DP noise
	// protects them, the threshold is only cosmetic).
	SmallCountThreshold int `toml:"small_count_threshold"`
	// Columns lists the columns to import and query, in order; CSV columns
	// not listed are ignored. Required.
	Columns []StudyColumn `toml:"columns"`
	// Doc describes the study.
	Doc string `toml:"doc"`
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// ParseStudySchema reads a study schema in TOML. name, when not empty,
// overrides the file's name field.
func ParseStudySchema(text, name string) (*StudySchema, error) {
	var s StudySchema
	md, err := toml.Decode(text, &s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSchema, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%w: unknown field %s", ErrBadSchema, und[0])
	}
	if name != "" {
		s.Name = name
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// ReadStudySchema reads a study schema file (see ParseStudySchema).
func ReadStudySchema(path, name string) (*StudySchema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSchema, err)
	}
	s, err := ParseStudySchema(string(b), name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Validate checks s and fills in its defaults.
func (s *StudySchema) Validate() error {
	if !identRE.MatchString(s.Name) {
		return fmt.Errorf("%w: study name %q: want lower-case letters, digits and _", ErrBadSchema, s.Name)
	}
	if _, ok := LookupTable(s.Name); ok {
		return fmt.Errorf("%w: study name %q is a CDM table", ErrBadSchema, s.Name)
	}
	switch {
	case s.Unit == "" && s.ID == "":
		return fmt.Errorf("%w: study %s: field id is missing and field unit is not set: a study schema must name its "+
			"person key (id = \"CSV column of the patient id\") or state that each row is a different person "+
			"(unit = \"row\"); without either, every row would silently count as its own person, and a person "+
			"with several rows would be protected as several people", ErrBadSchema, s.Name)
	case s.Unit == "" || s.Unit == UnitPerson:
		if s.ID == "" {
			return fmt.Errorf("%w: study %s: field unit = %q needs field id (the CSV column of the patient id)", ErrBadSchema, s.Name, UnitPerson)
		}
		s.Unit = UnitPerson
	case s.Unit == UnitRow:
		if s.ID != "" {
			return fmt.Errorf("%w: study %s: field unit = %q says each row is a different person, but field id = %q names a person key: keep one",
				ErrBadSchema, s.Name, UnitRow, s.ID)
		}
		if s.RowsPerPatient > 1 {
			return fmt.Errorf("%w: study %s: field unit = %q (each row a different person) allows one row per person, not rows_per_patient = %d",
				ErrBadSchema, s.Name, UnitRow, s.RowsPerPatient)
		}
	default:
		return fmt.Errorf("%w: study %s: field unit = %q: want %q (with id) or %q", ErrBadSchema, s.Name, s.Unit, UnitPerson, UnitRow)
	}
	if s.RowsPerPatient == 0 {
		s.RowsPerPatient = 1
	}
	if s.RowsPerPatient < 0 || s.RowsPerPatient > 1000 {
		return fmt.Errorf("%w: rows_per_patient must be 1 to 1000", ErrBadSchema)
	}
	if s.Missing == nil {
		s.Missing = []string{"", "NA"}
	}
	if len(s.Columns) == 0 {
		return fmt.Errorf("%w: study %s has no columns", ErrBadSchema, s.Name)
	}
	seen := map[string]bool{"patient_id": true}
	for i := range s.Columns {
		c := &s.Columns[i]
		if !identRE.MatchString(c.Name) {
			return fmt.Errorf("%w: column %q: want lower-case letters, digits and _", ErrBadSchema, c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: column %q appears twice or is reserved", ErrBadSchema, c.Name)
		}
		seen[c.Name] = true
		if c.CSV == "" {
			c.CSV = c.Name
		}
		switch c.Type {
		case StudyInt, StudyFloat:
			if c.Min == nil || c.Max == nil || !(*c.Min < *c.Max) || math.IsInf(*c.Min, 0) || math.IsInf(*c.Max, 0) {
				return fmt.Errorf("%w: column %s: a number column needs min < max (its public range)", ErrBadSchema, c.Name)
			}
			if len(c.Values) > 0 {
				return fmt.Errorf("%w: column %s: values is for string columns", ErrBadSchema, c.Name)
			}
		case StudyString:
			if c.Min != nil || c.Max != nil {
				return fmt.Errorf("%w: column %s: min and max are for number columns", ErrBadSchema, c.Name)
			}
		case StudyDate:
		default:
			return fmt.Errorf("%w: column %s: type %q: want int, float, string or date", ErrBadSchema, c.Name, c.Type)
		}
	}
	return nil
}

// Lookup returns the column named name.
func (s *StudySchema) Lookup(name string) (*StudyColumn, bool) {
	for i := range s.Columns {
		if s.Columns[i].Name == name {
			return &s.Columns[i], true
		}
	}
	return nil, false
}

// ColumnType returns the query language type of a study column.
func (c *StudyColumn) ColumnType() ColumnType {
	switch c.Type {
	case StudyString:
		return TypeString
	case StudyDate:
		return TypeDate
	}
	return TypeNumber
}

// IsMissing reports whether text means "no value".
func (s *StudySchema) IsMissing(text string) bool {
	for _, m := range s.Missing {
		if text == m {
			return true
		}
	}
	return false
}

// Study is a study table's rows, as an importer produces them and the store
// keeps them. Row i belongs to the patient PatientIDs[i]. Every column of the
// schema is in the map of its type: numbers (NaN missing), strings ("" missing),
// dates (NoDate missing).
type Study struct {
	Schema     StudySchema
	PatientIDs []string
	Numbers    map[string][]float64
	Strings    map[string][]string
	Dates      map[string][]Date
}

// Rows returns the number of rows.
func (s *Study) Rows() int { return len(s.PatientIDs) }

// WithStudies returns tables that hold everything of t plus one table per
// study. A study row whose patient id is a patient of t belongs to that
// patient; other ids become new patients (with no row in the patients
// table, so their age and patient attributes are missing). t is not
// modified. With no studies it returns t.
func (t *Tables) WithStudies(studies []*Study) *Tables {
	if len(studies) == 0 {
		return t
	}
	out := &Tables{PatientIDs: append([]string(nil), t.PatientIDs...), byName: maps.Clone(t.byName)}
	if t.patientIndex != nil {
		out.patientIndex = maps.Clone(t.patientIndex)
	} else {
		out.patientIndex = make(map[string]uint32, len(t.PatientIDs))
		for i, id := range t.PatientIDs {
			out.patientIndex[id] = uint32(i)
		}
	}
	for _, st := range studies {
		tb := newTable(st.Schema.Name)
		tb.Rows = st.Rows()
		tb.Patient = make([]uint32, tb.Rows)
		for r, id := range st.PatientIDs {
			i, ok := out.patientIndex[id]
			if !ok {
				i = uint32(len(out.PatientIDs))
				out.PatientIDs = append(out.PatientIDs, id)
				out.patientIndex[id] = i
			}
			tb.Patient[r] = i
		}
		for _, c := range st.Schema.Columns {
			switch c.ColumnType() {
			case TypeNumber:
				tb.Numbers[c.Name] = st.Numbers[c.Name]
			case TypeDate:
				tb.Dates[c.Name] = st.Dates[c.Name]
			case TypeString:
				col := &StringColumn{Dict: NewDict(), IDs: make([]uint32, tb.Rows)}
				col.Dict.Put("")
				for r, v := range st.Strings[c.Name] {
					col.IDs[r] = col.Dict.Put(v)
				}
				tb.Strings[c.Name] = col
			}
		}
		out.byName[st.Schema.Name] = tb
	}
	return out
}
