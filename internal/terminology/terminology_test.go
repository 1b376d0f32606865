package terminology

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCanonicalICD10(t *testing.T) {
	for in, want := range map[string]string{
		"E11.9": "E11.9", "E119": "E11.9", "e11.9": "E11.9", " E11 ": "E11", "E11.65": "E11.65", "E1165": "E11.65",
		"S72.001A": "S72.001A", "S72001A": "S72.001A", "U07.1": "U07.1", "E11.-": "E11", "G63.2*": "G63.2", "E10.40+": "E10.40",
		"C4A.0": "C4A.0",
	} {
		got, ok := CanonicalICD10(in)
		if !ok || got != want {
			t.Errorf("CanonicalICD10(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"44054006", "4548-4", "E1", "11E.9", "E11.", "E11.12345", "EE1.9", "E11-9", ""} {
		if got, ok := CanonicalICD10(in); ok {
			t.Errorf("CanonicalICD10(%q) = %q, true; want not ICD-10", in, got)
		}
	}
}

func TestIsICD10(t *testing.T) {
	for _, s := range []string{ICD10, ICD10CM, ICD10GM, "http://fhir.de/CodeSystem/dimdi/icd-10-gm", "urn:oid:2.16.840.1.113883.6.90",
		"https://fhir.infoway-inforoute.ca/CodeSystem/icd10ca", "http://id.who.int/icd/release/10/2019"} {
		if !IsICD10(s) {
			t.Errorf("IsICD10(%q) = false", s)
		}
	}
	for _, s := range []string{SNOMED, LOINC, ICD10PCS, "http://hl7.org/fhir/sid/icd-10-pcs", "urn:oid:2.16.840.1.113883.6.96", ""} {
		if IsICD10(s) {
			t.Errorf("IsICD10(%q) = true", s)
		}
	}
}

func TestCanonicalAndForms(t *testing.T) {
	if got := Canonical(ICD10CM, "E119"); got != "E11.9" {
		t.Errorf("Canonical(ICD-10-CM, E119) = %s", got)
	}
	// A local system's code that looks like ICD-10 is kept as it is.
	if got := Canonical("urn:oid:1.2.3", "J1234"); got != "J1234" {
		t.Errorf("Canonical(local, J1234) = %s", got)
	}
	if got := Forms("e119"); !reflect.DeepEqual(got, []string{"e119", "E11.9"}) {
		t.Errorf("Forms = %q", got)
	}
	if got := Forms("44054006"); !reflect.DeepEqual(got, []string{"44054006"}) {
		t.Errorf("Forms = %q", got)
	}
	for _, c := range []struct {
		code, head string
		in         bool
	}{{"E11", "E11", true}, {"E11.9", "E11", true}, {"E11.65", "E116", true}, {"E11.9", "E11.6", false}, {"E10.9", "E11", false},
		{"E119X", "E11", false}, {"E119X", "E1", true}, {"E11.6X", "E11.6", true}} {
		if got := InFamily(c.code, FamilyPrefix(c.head)); got != c.in {
			t.Errorf("InFamily(%s, family of %s) = %v", c.code, c.head, got)
		}
	}
}

func TestFamilyLike(t *testing.T) {
	if e, l := FamilyLike("E11"); e != "E11" || l != "E11." {
		t.Errorf("FamilyLike(E11) = %q, %q", e, l)
	}
	if e, l := FamilyLike("E11.6"); e != "" || l != "E11.6" {
		t.Errorf("FamilyLike(E11.6) = %q, %q", e, l)
	}
}

func TestParseFHIRValueSet(t *testing.T) {
	v, err := Parse("dm.json", "x", []byte(`{"resourceType":"ValueSet","name":"diabetes","title":"Diabetes mellitus",
 "compose":{"include":[
   {"system":"http://snomed.info/sct","concept":[{"code":"44054006","display":"Diabetes mellitus type 2"},{"code":"46635009"}]},
   {"system":"http://hl7.org/fhir/sid/icd-10-cm","filter":[{"property":"concept","op":"is-a","value":"E11"},{"property":"concept","op":"descendent-of","value":"E10"}]}],
  "exclude":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","concept":[{"code":"E119"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "diabetes" || v.Title != "Diabetes mellitus" {
		t.Errorf("name %q title %q", v.Name, v.Title)
	}
	if got := Codes(v.Include); !reflect.DeepEqual(got, []string{"44054006", "46635009"}) {
		t.Errorf("include %q", got)
	}
	if got := Codes(v.IncludeFamilies); !reflect.DeepEqual(got, []string{"E10", "E11"}) {
		t.Errorf("families %q", got)
	}
	// descendent-of E10 excludes E10 itself; the explicit exclusion is canonical.
	if got := Codes(v.Exclude); !reflect.DeepEqual(got, []string{"E10", "E11.9"}) {
		t.Errorf("exclude %q", got)
	}
	if v.Names()["44054006"] != "Diabetes mellitus type 2" {
		t.Errorf("names %v", v.Names())
	}

	exp, err := Parse("e.json", "fallback", []byte(`{"resourceType":"ValueSet","expansion":{"contains":[
 {"system":"http://snomed.info/sct","code":"73211009","abstract":true,"contains":[{"system":"http://snomed.info/sct","code":"44054006","display":"T2DM"}]},
 {"system":"http://hl7.org/fhir/sid/icd-10","code":"E11"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if exp.Name != "fallback" || !reflect.DeepEqual(Codes(exp.Include), []string{"44054006", "E11"}) || len(exp.IncludeFamilies) != 0 {
		t.Errorf("expansion: %+v", exp)
	}
}

func TestParseOMOPConceptSet(t *testing.T) {
	v, err := Parse("t2dm.json", "t2dm", []byte(`{"name":"Type 2 diabetes","expression":{"items":[
 {"concept":{"CONCEPT_ID":201826,"CONCEPT_NAME":"Type 2 diabetes mellitus","CONCEPT_CODE":"44054006","VOCABULARY_ID":"SNOMED"},"isExcluded":false,"includeDescendants":false},
 {"concept":{"CONCEPT_ID":45576876,"CONCEPT_NAME":"Type 2 diabetes mellitus","CONCEPT_CODE":"E11","VOCABULARY_ID":"ICD10CM"},"includeDescendants":true},
 {"concept":{"CONCEPT_ID":1,"CONCEPT_NAME":"x","CONCEPT_CODE":"E11.9","VOCABULARY_ID":"ICD10CM"},"isExcluded":true}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "t2dm" || v.Title != "Type 2 diabetes" {
		t.Errorf("name %q title %q (an ATLAS title is not a query name: the file's is)", v.Name, v.Title)
	}
	if !reflect.DeepEqual(Codes(v.Include), []string{"44054006"}) || !reflect.DeepEqual(Codes(v.IncludeFamilies), []string{"E11"}) ||
		!reflect.DeepEqual(Codes(v.Exclude), []string{"E11.9"}) || v.Include[0].System != SNOMED {
		t.Errorf("%+v", v)
	}
}

func TestValueSetErrors(t *testing.T) {
	for name, c := range map[string]struct{ src, want string }{
		"snomed descendants": {`{"items":[{"concept":{"CONCEPT_CODE":"73211009","VOCABULARY_ID":"SNOMED"},"includeDescendants":true}]}`,
			"f.json: items[0]: descendants of http://snomed.info/sct code 73211009 need the system's hierarchy"},
		"fhir is-a snomed": {`{"resourceType":"ValueSet","name":"a","compose":{"include":[{"system":"http://snomed.info/sct","filter":[{"property":"concept","op":"is-a","value":"73211009"}]}]}}`,
			"f.json: compose.include[0].filter[0]: descendants of"},
		"whole system": {`{"resourceType":"ValueSet","name":"a","compose":{"include":[{"system":"http://loinc.org"}]}}`, "the whole of http://loinc.org"},
		"valueSet ref": {`{"resourceType":"ValueSet","name":"a","compose":{"include":[{"valueSet":["http://x"]}]}}`, "compose.include[0].valueSet"},
		"other type":   {`{"resourceType":"CodeSystem"}`, "a FHIR CodeSystem, not a ValueSet"},
		"neither":      {`{"foo":1}`, "neither a FHIR ValueSet"},
		"empty":        {`{"items":[]}`, "includes no code"},
		"bad name":     {`{"resourceType":"ValueSet","name":"has space","expansion":{"contains":[{"code":"1"}]}}`, `name "has space"`},
		"not json":     {`{`, "not JSON"},
		"missing code": {`{"items":[{"concept":{"VOCABULARY_ID":"SNOMED"}}]}`, "items[0]: needs concept.CONCEPT_CODE"},
		"unsupported op": {`{"resourceType":"ValueSet","name":"a","compose":{"include":[{"system":"http://hl7.org/fhir/sid/icd-10","filter":[{"property":"concept","op":"regex","value":"E1.*"}]}]}}`,
			"filter concept regex E1.* is not supported"},
	} {
		_, err := Parse("f.json", "f", []byte(c.src))
		if err == nil || !errors.Is(err, ErrValueSet) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ...%s...", name, err, c.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.json", `{"items":[{"concept":{"CONCEPT_CODE":"E11","VOCABULARY_ID":"ICD10"},"includeDescendants":true}]}`)
	write("a.json", `{"resourceType":"ValueSet","name":"asthma","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"195967001"}]}]}}`)
	write("notes.txt", "not read")
	vs, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Name != "asthma" || vs[1].Name != "b" || vs[1].Source != filepath.Join(dir, "b.json") {
		t.Fatalf("%+v", vs)
	}
	if vs[0].Digest() == vs[1].Digest() {
		t.Error("digests of different value sets are equal")
	}
	write("c.json", `{"resourceType":"ValueSet","name":"ASTHMA","expansion":{"contains":[{"code":"1"}]}}`)
	if _, err := Load([]string{dir}); err == nil || !strings.Contains(err.Error(), `name "ASTHMA" is also the name of the value set in`) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := Load([]string{filepath.Join(dir, "missing.json")}); err == nil || !errors.Is(err, ErrValueSet) {
		t.Errorf("missing file: %v", err)
	}
}

func TestSystemForms(t *testing.T) {
	for _, lit := range []string{"ICD-10-CM", "icd10cm", "http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90"} {
		got := SystemForms(lit)
		if got[0] != lit || !slices.Contains(got, ICD10CM) || !slices.Contains(got, "urn:oid:2.16.840.1.113883.6.90") {
			t.Errorf("SystemForms(%q) = %q", lit, got)
		}
	}
	if got := SystemForms("SNOMED CT"); !slices.Contains(got, SNOMED) {
		t.Errorf("SystemForms(SNOMED CT) = %q", got)
	}
	if got := SystemForms("urn:oid:1.2.3"); !reflect.DeepEqual(got, []string{"urn:oid:1.2.3"}) {
		t.Errorf("SystemForms(local) = %q", got)
	}
}

func TestCodeMap(t *testing.T) {
	cm, err := ParseCodeMap("map.csv", strings.NewReader("local_system,local_code,system,code,display\n"+
		"urn:oid:1.2.3,DM2,http://snomed.info/sct,44054006,Diabetes mellitus type 2\n"+
		"urn:oid:1.2.3,DM2,http://hl7.org/fhir/sid/icd-10,E119,\n"+
		"urn:oid:1.2.3,DM2,http://snomed.info/sct,44054006,again\n"+
		"\n"+
		",HTN,http://snomed.info/sct,38341003,\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cm.Len() != 3 {
		t.Errorf("Len = %d, want 3 (a repeated mapping counts once)", cm.Len())
	}
	got := cm.Lookup("urn:oid:1.2.3", "DM2")
	if len(got) != 2 || got[0].Code != "44054006" || got[1].Code != "E11.9" {
		t.Errorf("Lookup(DM2) = %+v", got)
	}
	if got := cm.Lookup("urn:oid:9", "HTN"); len(got) != 1 || got[0].Code != "38341003" {
		t.Errorf("Lookup(any system, HTN) = %+v", got)
	}
	if got := cm.Lookup("urn:oid:9", "DM2"); got != nil {
		t.Errorf("DM2 of another system: %+v", got)
	}
	for src, want := range map[string]string{
		"local_code,system,code\nA,s,1\n":                           `map.csv:1: missing column "local_system"`,
		"local_system,local_code,system,code,extra\n":               `map.csv:1: unknown column "extra"`,
		"local_system,local_code,system,code\ns,A,,1\n":             "map.csv:2: system is empty",
		"local_system,local_code,system,code\ns,A,x,1\ns,B,x,\n":    "map.csv:3: code is empty",
		"local_system,local_code,system,code\n":                     "map.csv: no mappings",
		"local_system,local_code,local_code,system,code\ns,A,x,1\n": `column "local_code" twice`,
	} {
		if _, err := ParseCodeMap("map.csv", strings.NewReader(src)); err == nil || !errors.Is(err, ErrCodeMap) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want ...%s...", src, err, want)
		}
	}
}
