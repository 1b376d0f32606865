package cdm

import (
	"errors"
	"slices"
	"testing"
)

func TestParseStudySchema(t *testing.T) {
	s, err := ParseStudySchema(`
name = "t"
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
	if s.RowsPerPatient != 1 || len(s.Missing) != 2 || s.Columns[1].CSV != "Arm" || s.Columns[0].CSV != "x" {
		t.Errorf("defaults not filled: %+v", s)
	}
	for _, bad := range []string{
		`name = "patients"` + "\n[[columns]]\nname = \"x\"\ntype = \"date\"",
		`name = "t"` + "\n[[columns]]\nname = \"x\"\ntype = \"int\"",
		`name = "t"` + "\n[[columns]]\nname = \"X\"\ntype = \"date\"",
		`name = "t"` + "\n[[columns]]\nname = \"x\"\ntype = \"blob\"",
		`name = "t"` + "\nfoo = 1\n[[columns]]\nname = \"x\"\ntype = \"date\"",
	} {
		if _, err := ParseStudySchema(bad, ""); !errors.Is(err, ErrBadSchema) {
			t.Errorf("%q: got %v, want ErrBadSchema", bad, err)
		}
	}
}

func FuzzParseStudySchema(f *testing.F) {
	f.Add("name = \"t\"\n[[columns]]\nname = \"x\"\ntype = \"int\"\nmin = 0\nmax = 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseStudySchema(text, "")
		if err == nil && (s.RowsPerPatient < 1 || len(s.Columns) == 0) {
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
