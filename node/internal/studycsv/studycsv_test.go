package studycsv

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

func schema(t *testing.T) *cdm.StudySchema {
	t.Helper()
	s, err := cdm.ParseStudySchema(`
name = "s"
id = "id"
[[columns]]
name = "ph_ecog"
csv = "ph.ecog"
type = "int"
min = 0
max = 4
[[columns]]
name = "arm"
type = "string"
values = ["A", "B"]
[[columns]]
name = "d"
type = "date"
`, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRead(t *testing.T) {
	res, err := Read(strings.NewReader("id,ph.ecog,arm,d,extra\n1,2,A,2020-01-02,x\n2,NA,B,,y\n3,7,A,2020-02-03,z\n"), "x.csv", schema(t))
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("%v %v", err, res.Errors)
	}
	st := res.Study
	if st.Rows() != 3 || st.PatientIDs[1] != "2" || st.Strings["arm"][1] != "B" || st.Numbers["ph_ecog"][0] != 2 || res.OutOfRange["ph_ecog"] != 1 {
		t.Fatalf("got %+v, out of range %v", st, res.OutOfRange)
	}
}

func TestReadErrors(t *testing.T) {
	res, err := Read(strings.NewReader("id,ph.ecog,arm,d\n1,2.5,A,2020-01-02\n2,1,C,2020-13-01\n2,1,A,\n"), "dir/x.csv", schema(t))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range res.Errors {
		msgs = append(msgs, e.Error())
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{"x.csv:2: ph.ecog: ", "not a whole number", "x.csv:3: arm: ", "not one of the listed values", "x.csv:3: d: ", "not a date"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q lack %q", got, want)
		}
	}
	if !errors.Is(res.Errors[0], ErrValue) {
		t.Errorf("%v is not ErrValue", res.Errors[0])
	}
	if _, err := Read(strings.NewReader("id,arm,d\n"), "x.csv", schema(t)); err == nil || !strings.Contains(err.Error(), `no column "ph.ecog"`) {
		t.Errorf("missing column: got %v", err)
	}
}

// FuzzRead: the reader never panics, and a result without errors is
// consistent with the schema (every column has a value per row).
func FuzzRead(f *testing.F) {
	f.Add("id,ph.ecog,arm,d\n1,2,A,2020-01-02\n")
	f.Add("id,ph.ecog,arm,d\n\"1\",NA,B,\n2,1e3,A,2020-02-30\n")
	f.Add("\ufeffid,ph.ecog,arm,d,x\n1,2,A,2020-01-02,\"a\nb\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		s := schema(t)
		res, err := Read(strings.NewReader(text), "f.csv", s)
		if err != nil || len(res.Errors) > 0 {
			return
		}
		n := res.Study.Rows()
		if len(res.Study.Numbers["ph_ecog"]) != n || len(res.Study.Strings["arm"]) != n || len(res.Study.Dates["d"]) != n {
			t.Fatalf("columns do not match %d rows", n)
		}
	})
}
