package cdm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseStudySchema(t *testing.T) {
	s, err := ParseStudySchema(`
name = "t"
unit = "row"
[[columns]]
name = "x"
type = "int"
min = 0
max = 3
[[columns]]
name = "arm"
csv = "Arm"
type = "string"
values = ["a", "b"]
`, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.RowsPerPatient != 1 || len(s.Missing) != 2 || s.Columns[1].CSV != "Arm" || s.Columns[0].CSV != "x" || s.Unit != UnitRow {
		t.Errorf("defaults not filled: %+v", s)
	}
	for _, bad := range []string{
		`name = "patients"` + "\nunit = \"row\"\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		`name = "t"` + "\nunit = \"row\"\n[[columns]]\nname = \"x\"\ntype = \"int\"",
		`name = "t"` + "\nunit = \"row\"\n[[columns]]\nname = \"X\"\ntype = \"date\"",
		`name = "t"` + "\nunit = \"row\"\n[[columns]]\nname = \"x\"\ntype = \"blob\"",
		`name = "t"` + "\nunit = \"row\"\nfoo = 1\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		// The privacy unit: said wrongly or contradicted.
		`name = "t"` + "\nunit = \"person\"\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		`name = "t"` + "\nunit = \"row\"\nid = \"pid\"\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		`name = "t"` + "\nunit = \"row\"\nrows_per_patient = 3\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		`name = "t"` + "\nunit = \"visit\"\n[[columns]]\nname = \"x\"\ntype = \"date\"",
	} {
		if _, err := ParseStudySchema(bad, ""); !errors.Is(err, ErrBadSchema) {
			t.Errorf("%q: got %v, want ErrBadSchema", bad, err)
		}
	}
}

func FuzzParseStudySchema(f *testing.F) {
	f.Add("name = \"t\"\nunit = \"row\"\n[[columns]]\nname = \"x\"\ntype = \"int\"\nmin = 0\nmax = 1\n")
	f.Add("name = \"t\"\nid = \"pid\"\n[[columns]]\nname = \"x\"\ntype = \"int\"\nmin = 0\nmax = 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStudySchema(text, "")
		if err == nil && (s.RowsPerPatient < 1 || len(s.Columns) == 0 || (s.Unit == UnitRow) == (s.ID != "") || (s.Unit != UnitRow && s.Unit != UnitPerson)) {
			t.Fatalf("accepted an invalid schema: %+v", s)
		}
	})
}

func TestStudyColumnLevels(t *testing.T) {
	lo, hi := 0.5, 3.0
	if got := (&StudyColumn{Type: StudyInt, Min: &lo, Max: &hi}).Levels(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("int range [0.5, 3]: %v", got)
	}
	if got := (&StudyColumn{Type: StudyString, Values: []string{"a", "b"}}).Levels(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("string values: %v", got)
	}
	big := lo + MaxLevels + 1
	for _, c := range []StudyColumn{{Type: StudyInt, Min: &lo, Max: &big}, {Type: StudyFloat, Min: &lo, Max: &hi}, {Type: StudyString}} {
		if got := c.Levels(); got != nil {
			t.Errorf("%+v: levels %v, want none", c, got)
		}
	}
}

// TestStudySchemaPrivacyUnit (issue 13, item 4): a schema that names no
// person key and does not say that each row is a different person is
// refused, naming the file, the field and the reason; an explicit
// row-unit schema and a person-keyed one load.
func TestStudySchemaPrivacyUnit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cols := "\n[[columns]]\nname = \"x\"\ntype = \"int\"\nmin = 0\nmax = 3\n"
	bad := write("bad.toml", `name = "trial"`+cols)
	_, err := ReadStudySchema(bad, "")
	if !errors.Is(err, ErrBadSchema) {
		t.Fatalf("a schema without id or unit: got %v, want ErrBadSchema", err)
	}
	for _, want := range []string{bad, "field id", "unit = \"row\"", "each row is a different person", "person key", "several people"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	s, err := ReadStudySchema(write("rows.toml", `name = "trial"`+"\nunit = \"row\""+cols), "")
	if err != nil || s.Unit != UnitRow || s.ID != "" {
		t.Fatalf("row-unit schema: %+v, %v", s, err)
	}
	s, err = ReadStudySchema(write("person.toml", `name = "trial"`+"\nid = \"pid\""+cols), "")
	if err != nil || s.Unit != UnitPerson || s.ID != "pid" {
		t.Fatalf("person-keyed schema: %+v, %v", s, err)
	}
}
