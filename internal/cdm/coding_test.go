package cdm

import (
	"slices"
	"testing"
)

func TestCodedRecordOrderFree(t *testing.T) {
	cs := []Coding{{"urn:oid:1.2.3", "L1"}, {SystemICD10CM, "E11.9"}, {SystemSNOMED, "44054006"}, {SystemICD10CM, "E11.9"}, {"", "x"}, {SystemLOINC, ""}}
	want := Coding{SystemSNOMED, "44054006"}
	const wantOthers = "http://hl7.org/fhir/sid/icd-10-cm|E11.9,urn:oid:1.2.3|L1,|x"
	for i := range 50 {
		c := slices.Clone(cs)
		// A few deterministic permutations.
		for j := range c {
			k := (i*7 + j*3) % len(c)
			c[j], c[k] = c[k], c[j]
		}
		prim, others, ok := CodedRecord(c)
		if !ok || prim != want || others != wantOthers {
			t.Fatalf("order %v: primary %v, others %q", c, prim, others)
		}
	}
	if _, _, ok := CodedRecord([]Coding{{SystemLOINC, ""}}); ok {
		t.Error("a coding without a code is no code")
	}
}

func TestCodingsText(t *testing.T) {
	cs := []Coding{{"a|b", "c,d"}, {`e\f`, ""}, {"", "g"}}
	s := FormatCodings(cs)
	if s != `a\|b|c\,d,e\\f|,|g` {
		t.Errorf("format %q", s)
	}
	back, err := ParseCodings(s)
	if err != nil || !slices.Equal(back, cs) {
		t.Errorf("parse %v, %v", back, err)
	}
	for _, bad := range []string{"x", "a|b|c", `a|b\`, "a|b,c"} {
		if _, err := ParseCodings(bad); err == nil {
			t.Errorf("ParseCodings(%q): no error", bad)
		}
	}
	if got, err := parseCodings("b|2,a|1,b|2"); err != nil || got != "a|1,b|2" {
		t.Errorf("canonical form %q, %v", got, err)
	}
}

// FuzzCodings: ParseCodings never panics, and what it reads FormatCodings
// writes back to something it reads the same.
func FuzzCodings(f *testing.F) {
	for _, s := range []string{"", "a|b", `a\|b|c\,d,e\\f|,|g`, "|", ",", `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseCodings(s)
		if err != nil {
			return
		}
		again, err := ParseCodings(FormatCodings(cs))
		if err != nil || !slices.Equal(again, cs) {
			t.Fatalf("%q: read %v, round trip %v, %v", s, cs, again, err)
		}
	})
}
