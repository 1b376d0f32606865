package parse

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestErrorsGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/errors.input")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, q := range strings.Split(string(in), "\n----\n") {
		q = strings.TrimRight(q, "\n")
		_, err := Parse(q)
		out.WriteString("== " + strings.ReplaceAll(q, "\n", "\n   ") + "\n")
		if err == nil {
			t.Errorf("no error for %q", q)
			out.WriteString("(no error)\n\n")
			continue
		}
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %T is not *Error", q, err)
		}
		if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnknownName) {
			t.Errorf("%q: error wraps no sentinel", q)
		}
		out.WriteString(err.Error() + "\n\n")
	}
	golden(t, "testdata/errors.golden", out.String())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run with -update to accept):\n%s", path, got)
	}
}

func TestErrorPosition(t *testing.T) {
	_, err := Parse("SELECT COUNT(*)\nFROM patients\nWHERE sex = = 'f'")
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if pe.Line != 3 || pe.Column != 13 || pe.LineText != "WHERE sex = = 'f'" {
		t.Errorf("line %d column %d text %q", pe.Line, pe.Column, pe.LineText)
	}
	want := "line 3, column 13: expected an expression, found `=`\n  WHERE sex = = 'f'\n              ^"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"code", "system", "onset_date", "patient_id"}
	for in, want := range map[string]string{"cod": "code", "sytem": "system", "onset": "", "x": "", "patientid": "patient_id", "CODE": "code"} {
		if got := Suggest(in, cands); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, q := range []string{
		"SELECT COUNT(*) FROM patients WHERE NOT (age > 3 OR sex = 'x') AND a IN (1, 2) AND b NOT BETWEEN 1 AND 2",
		"SELECT week(d) AS w, COUNT(DISTINCT patient_id) FROM t WHERE x = 'it''s' GROUP BY w WITH max_groups = 3",
		"select count(*) from patients where patient_id not in (select patient_id from conditions where code = '1') -- comment",
		"SELECT AVG(CLAMP(value * 2 - -1, -3.5, 2e3)) FROM observations",
	} {
		a, err := Parse(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		// Formatting the WHERE clause and parsing it back gives the same tree.
		if a.Where != nil {
			f := Format(a.Where)
			b, err := Parse("SELECT COUNT(*) FROM t WHERE " + f)
			if err != nil {
				t.Fatalf("reparse %s: %v", f, err)
			}
			if g := Format(b.Where); g != f {
				t.Errorf("round trip: %s != %s", g, f)
			}
		}
	}
}

func TestDepthLimit(t *testing.T) {
	q := "SELECT COUNT(*) FROM t WHERE " + strings.Repeat("(", 10000) + "a = 1" + strings.Repeat(")", 10000)
	if _, err := Parse(q); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("err = %v", err)
	}
	q = "SELECT COUNT(*) FROM t WHERE " + strings.Repeat("NOT ", 10000) + "a = 1"
	if _, err := Parse(q); err == nil {
		t.Error("deep NOT accepted")
	}
	if _, err := Parse(strings.Repeat(" ", MaxLen+1)); err == nil {
		t.Error("oversized query accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003';",
		"SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64 AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006');",
		"SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region;",
		"SELECT AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4';",
		"SELECT x FROM t WITH max_rows = 3 -- c\n",
		"SELECT 'a''b', 1.5e3, .5, -(-3) FROM t WHERE NOT NOT a != b",
		"SELECT (((",
		"'unterminated",
		"SELECT \xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error", err)
			}
			_ = pe.Error()
			if pe.Offset < 0 || pe.Offset > len(s) {
				t.Fatalf("offset %d outside [0, %d]", pe.Offset, len(s))
			}
			return
		}
		if q.Where != nil {
			_ = Format(q.Where)
		}
	})
}
