package fhir

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/cdm"
)

var modelTable = map[string]string{
	"Patient":           cdm.TablePatients,
	"Condition":         cdm.TableConditions,
	"Observation":       cdm.TableObservations,
	"Encounter":         cdm.TableEncounters,
	"MedicationRequest": cdm.TableMedications,
	"Procedure":         cdm.TableProcedures,
	"Immunization":      cdm.TableImmunizations,
}

// firstBundles returns the first n members of a bundles archive.
func firstBundles(t testing.TB, tgz string, n int) map[string][]byte {
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for len(out) < n {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
	return out
}

// countBundles counts entry resources by type with encoding/json, as an
// independent check of the parser.
func countBundles(t testing.TB, bundles map[string][]byte) map[string]int {
	counts := map[string]int{}
	for name, data := range bundles {
		var b struct {
			Entry []struct {
				Resource struct {
					ResourceType string            `json:"resourceType"`
					Component    []json.RawMessage `json:"component"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, e := range b.Entry {
			counts[e.Resource.ResourceType]++
			// Each component of an Observation is an observation too.
			counts[e.Resource.ResourceType] += len(e.Resource.Component)
		}
	}
	return counts
}

// countComponents counts Observation components coded code (any coding)
// with encoding/json.
func countComponents(t testing.TB, bundles map[string][]byte, code string) int {
	n := 0
	for name, data := range bundles {
		var b struct {
			Entry []struct {
				Resource struct {
					Component []struct {
						Code struct {
							Coding []struct{ Code string } `json:"coding"`
						} `json:"code"`
					} `json:"component"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, e := range b.Entry {
			for _, c := range e.Resource.Component {
				for _, cd := range c.Code.Coding {
					if cd.Code == code {
						n++
						break
					}
				}
			}
		}
	}
	return n
}

func checkCounts(t *testing.T, res *Result, want map[string]int) {
	t.Helper()
	got := res.Records.TableCounts()
	for typ, n := range want {
		if table, ok := modelTable[typ]; ok {
			if got[table] != n {
				t.Errorf("%s: parsed %d, independent count %d", table, got[table], n)
			}
		} else if res.Skipped[typ] != n {
			t.Errorf("skipped %s: %d, independent count %d", typ, res.Skipped[typ], n)
		}
	}
	for typ := range res.Skipped {
		if _, ok := want[typ]; !ok {
			t.Errorf("skipped type %s not in the input", typ)
		}
	}
}

// TestSyntheaBundles parses the first 40 Synthea bundles (the admin
// package imports all 309); the whole set is in the benchmarks.
func TestSyntheaBundles(t *testing.T) {
	tgz := testkit.SharedData(t, "fhir-r4-synthea/bundles.tar.gz")
	bundles := firstBundles(t, tgz, 40)
	want := countBundles(t, bundles)
	rule, _ := ParseRegionRule("city")
	p := NewParser(Options{Region: rule})
	for name, data := range bundles {
		p.ParseBundle(name, data)
	}
	res := p.Result()
	if len(res.Errors) > 0 {
		t.Fatalf("%d errors, first: %v", len(res.Errors), res.Errors[0])
	}
	checkCounts(t, res, want)
	if res.Files != 40 {
		t.Errorf("files %d, want 40", res.Files)
	}
	// Every record's patient is a parsed patient (references resolved).
	ids := map[string]bool{}
	for _, p := range res.Records.Patients {
		ids[p.ID] = true
		if p.Region == "" || res.Addresses[p.ID].City != p.Region {
			t.Fatalf("patient %s: region %q, address %+v", p.ID, p.Region, res.Addresses[p.ID])
		}
	}
	for _, c := range res.Records.Conditions {
		if !ids[c.PatientID] {
			t.Fatalf("condition %s names unparsed patient %s", c.ID, c.PatientID)
		}
	}
	var hba1c int
	for _, o := range res.Records.Observations {
		if o.Code == "4548-4" && o.System == cdm.SystemLOINC && o.HasValue && o.Unit == "%" {
			hba1c++
		}
	}
	if hba1c == 0 {
		t.Error("no HbA1c (LOINC 4548-4) values with unit %")
	}
	// Blood-pressure panels: the systolic component of each is an
	// observation of its own, linked to its panel (issue 16).
	var systolic int
	for _, o := range res.Records.Observations {
		if o.Code == "8480-6" && o.PanelID != "" && o.HasValue && strings.HasPrefix(o.ID, o.PanelID+"/component/") {
			systolic++
		}
	}
	if want := countComponents(t, bundles, "8480-6"); systolic != want || want == 0 {
		t.Errorf("systolic components: %d observations, independent count %d", systolic, want)
	}
	t.Logf("%d files, %d MB JSON, counts %v", res.Files, res.JSONBytes>>20, res.Records.TableCounts())
}

const bundle = `{"resourceType": "Bundle", "type": "collection", "entry": [
 {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-02-03",
   "address": [{"use": "old", "city": "Old", "state": "XX", "postalCode": "99999"}, {"use": "home", "city": "Boston", "state": "MA", "postalCode": "02118"}]}},
 {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": "urn:uuid:p1"},
   "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}, {"system": "x", "code": "y"}]},
   "onsetDateTime": "2020-03-04T10:00:00+01:00", "abatementDateTime": "2021-01-01"}, "fullUrl": "urn:uuid:c1"},
 {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"},
   "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "effectiveDateTime": "2020-05-06",
   "valueQuantity": {"value": 7.25, "unit": "%"}}},
 {"resource": {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "http://example.org/fhir/Patient/p1/_history/3"},
   "class": {"code": "AMB"}, "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}]}],
   "period": {"start": "2020-05-06T08:00:00Z", "end": "2020-05-07"}}},
 {"resource": {"resourceType": "MedicationRequest", "id": "m1", "subject": {"reference": "urn:uuid:p1"},
   "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}, "authoredOn": "2020-05-06"}},
 {"resource": {"resourceType": "Claim", "id": "x", "type": {"coding": []}, "text": "a \"quoted\" \u00e9 \ud83d\ude00 \n"}},
 {"request": {"method": "DELETE", "url": "Patient/old"}}
]}`

func TestBundleMapping(t *testing.T) {
	rule, _ := ParseRegionRule("state")
	p := NewParser(Options{Region: rule})
	p.ParseBundle("b.json", []byte(bundle))
	res := p.Result()
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors[0])
	}
	r := res.Records
	want := cdm.Records{
		Patients:     []cdm.Patient{{ID: "p1", BirthDate: cdm.DateFromYMD(1970, 2, 3), Sex: cdm.SexFemale, Region: "MA", DeathDate: cdm.NoDate}},
		Conditions:   []cdm.Condition{{ID: "c1", PatientID: "p1", Code: "44054006", System: cdm.SystemSNOMED, Onset: cdm.DateFromYMD(2020, 3, 4), Abatement: cdm.DateFromYMD(2021, 1, 1), Codings: "x|y"}},
		Observations: []cdm.Observation{{ID: "o1", PatientID: "p1", Code: "4548-4", System: cdm.SystemLOINC, Date: cdm.DateFromYMD(2020, 5, 6), Value: 7.25, HasValue: true, Unit: "%"}},
		Encounters:   []cdm.Encounter{{ID: "e1", PatientID: "p1", Class: "AMB", TypeCode: "185349003", TypeSystem: cdm.SystemSNOMED, Start: cdm.DateFromYMD(2020, 5, 6), End: cdm.DateFromYMD(2020, 5, 7)}},
		Medications:  []cdm.Medication{{ID: "m1", PatientID: "p1", Code: "860975", System: cdm.SystemRxNorm, Authored: cdm.DateFromYMD(2020, 5, 6)}},
	}
	if js(r) != js(want) {
		t.Fatalf("records\n got %s\nwant %s", js(r), js(want))
	}
	if res.Skipped["Claim"] != 1 || res.Skipped["(entry without resource)"] != 1 {
		t.Errorf("skipped %v", res.Skipped)
	}
	if a := res.Addresses["p1"]; a.City != "Boston" || a.PostalCode != "02118" {
		t.Errorf("address %+v", a)
	}
	if res.Origins.Of(cdm.TableConditions)[0] != (cdm.Origin{File: "b.json", Entry: 1}) {
		t.Errorf("origin %+v", res.Origins.Of(cdm.TableConditions)[0])
	}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestRegionRules(t *testing.T) {
	a := Address{City: "Boston", State: "MA", PostalCode: "02118"}
	for rule, want := range map[string]string{"state": "MA", "city": "Boston", "postal:3": "021", "postal:9": "02118", "fixed:N1": "N1"} {
		r, err := ParseRegionRule(rule)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Region(a); got != want || r.String() != rule {
			t.Errorf("%s: %q (%s), want %q", rule, got, r, want)
		}
	}
	for _, bad := range []string{"", "zip", "postal", "postal:0", "postal:x", "fixed:", "state:1"} {
		if _, err := ParseRegionRule(bad); !errors.Is(err, ErrRule) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestErrors checks each kind of bad input: the message names the place
// and what was expected, and good records around it survive.
func TestErrors(t *testing.T) {
	pat := `{"resourceType":"Patient","id":"p1"}`
	for _, tc := range []struct {
		name, file, data string
		kind             error
		want             string
		good             int // records still parsed
	}{
		{"bundle malformed", "b.json", "{\"resourceType\":\"Bundle\",\"entry\":[\n{\"resource\":" + pat + "},\n{\"resource\":{\"resourceType\":\"Condition\",\"id\":\"c\" \"x\":1}}]}",
			ErrSyntax, `b.json: entry[1].resource: malformed JSON at line 3 column 50: want ',' or '}' in object`, 0},
		{"bundle wrong type", "b.json", `{"resourceType":"Bundle","entry":[{"resource":` + pat + `},{"resource":{"resourceType":"Patient","id":"p2","birthDate":19700101}}]}`,
			ErrType, `b.json: entry[1].resource.birthDate: want a string, got number`, 1},
		{"bundle nested wrong type", "b.json", `{"resourceType":"Bundle","entry":[{"resource":` + pat + `},{"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":7}]}}}]}`,
			ErrType, `b.json: entry[1].resource.code.coding[0].code: want a string, got number`, 1},
		{"bundle missing field", "b.json", `{"resourceType":"Bundle","entry":[{"resource":` + pat + `},{"resource":{"resourceType":"Condition","id":"c","code":{"coding":[{"code":"1"}]}}}]}`,
			ErrMissing, `b.json: entry[1].resource: missing required field subject`, 1},
		{"bundle impossible date", "b.json", `{"resourceType":"Bundle","entry":[{"resource":` + pat + `},{"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":"1"}]},"onsetDateTime":"2021-02-30"}}]}`,
			ErrDate, `b.json: entry[1].resource.onsetDateTime: impossible date "2021-02-30"`, 1},
		{"bundle bad reference", "b.json", `{"resourceType":"Bundle","entry":[{"resource":` + pat + `},{"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Group/7"},"code":{"coding":[{"code":"1"}]}}}]}`,
			ErrReference, `b.json: entry[1].resource.subject: bad patient reference "Group/7"`, 1},
		{"bundle missing resourceType", "b.json", `{"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}`,
			ErrMissing, `b.json: entry[0].resource: missing required field resourceType`, 0},
		{"ndjson malformed", "x.ndjson", pat + "\n{\"resourceType\":\"Patient\",\"id\":\"p2\"\n" + `{"resourceType":"Patient","id":"p3"}`,
			ErrSyntax, `x.ndjson:2: malformed JSON at column 37: unexpected end of input in object`, 2},
		{"ndjson wrong type", "x.ndjson", pat + "\n" + `{"resourceType":"Patient","id":"p2","address":{"city":"x"}}`,
			ErrType, `x.ndjson:2: address: want an array, got object`, 1},
		{"ndjson bad gender", "x.ndjson", `{"resourceType":"Patient","id":"p2","gender":"f3"}`,
			ErrValue, `x.ndjson:1: gender: bad gender "f3"`, 0},
		{"ndjson missing id", "x.ndjson", `{"resourceType":"Patient"}`,
			ErrMissing, `x.ndjson:1: missing required field id`, 0},
		{"ndjson trailing data", "x.ndjson", pat + ` 5`,
			ErrSyntax, `x.ndjson:1: malformed JSON at column 38: unexpected data after the top-level value`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParser(Options{})
			if strings.HasSuffix(tc.file, ".json") {
				p.ParseBundle(tc.file, []byte(tc.data))
			} else if err := p.ParseNDJSON(tc.file, strings.NewReader(tc.data)); err != nil {
				t.Fatal(err)
			}
			res := p.Result()
			if len(res.Errors) != 1 {
				t.Fatalf("%d errors: %v", len(res.Errors), res.Errors)
			}
			e := res.Errors[0]
			if !strings.HasPrefix(e.Error(), tc.want) {
				t.Errorf("error\n got %s\nwant %s...", e, tc.want)
			}
			if !errors.Is(e, tc.kind) {
				t.Errorf("error %v is not %v", e, tc.kind)
			}
			if got := res.Records.Len(); got != tc.good {
				t.Errorf("%d good records, want %d", got, tc.good)
			}
		})
	}
}

// FuzzScanner checks that the scanner accepts exactly the valid JSON.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{bundle, `{"a":[1,2.5e-3,true,false,null,"\u00e9\\"]}`, `{"a":01}`, `[1,]`, `"\x01"`, `{"a" 1}`, `-`, `1.`, `"\ud83d"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &scanner{buf: b}
		err := s.skip()
		if err == nil {
			err = s.end()
		}
		if valid := json.Valid(b); valid != (err == nil) {
			t.Fatalf("json.Valid %v, scanner error %v, input %q", valid, err, b)
		}
		// Parsing as a resource or bundle never panics.
		p := NewParser(Options{})
		p.ParseBundle("f.json", b)
		_ = p.ParseNDJSON("f.ndjson", strings.NewReader(string(b)))
	})
}

// TestProcedure maps hand-written FHIR Procedures: code, subject, and the
// day performedDateTime or performedPeriod.start names; a Procedure without
// a code is a bad record naming the field.
func TestProcedure(t *testing.T) {
	p := NewParser(Options{})
	p.ParseBundle("b.json", []byte(`{"resourceType":"Bundle","type":"collection","entry":[
 {"fullUrl":"urn:uuid:pa","resource":{"resourceType":"Patient","id":"pa"}},
 {"resource":{"resourceType":"Procedure","id":"x1","status":"completed","subject":{"reference":"urn:uuid:pa"},
   "code":{"coding":[{"system":"http://snomed.info/sct","code":"80146002","display":"Appendectomy"}],"text":"Appendectomy"},
   "performedPeriod":{"start":"2011-03-04T08:00:00-05:00","end":"2011-03-04T09:00:00-05:00"}}},
 {"resource":{"resourceType":"Procedure","id":"x2","subject":{"reference":"Patient/pa"},
   "code":{"coding":[{"system":"http://snomed.info/sct","code":"73761001"}]},"performedDateTime":"2012-05-06"}},
 {"resource":{"resourceType":"Procedure","id":"x3","subject":{"reference":"Patient/pa"},"code":{"coding":[{"code":"1"}]},"performedString":"last spring"}}
]}`))
	if err := p.ParseNDJSON("Procedure.ndjson", strings.NewReader(`{"resourceType":"Procedure","id":"x4","subject":{"reference":"Patient/pa"},"code":{"text":"no coding"}}`+"\n"+
		`{"resourceType":"Procedure","id":"x5","subject":{"reference":"Patient/pa"},"code":{"coding":[{"code":"1"}]},"performedDateTime":"2021-02-30"}`)); err != nil {
		t.Fatal(err)
	}
	res := p.Result()
	want := []cdm.Procedure{
		{ID: "x1", PatientID: "pa", Code: "80146002", System: cdm.SystemSNOMED, Date: cdm.DateFromYMD(2011, 3, 4), Status: "completed"},
		{ID: "x2", PatientID: "pa", Code: "73761001", System: cdm.SystemSNOMED, Date: cdm.DateFromYMD(2012, 5, 6)},
		{ID: "x3", PatientID: "pa", Code: "1", Date: cdm.NoDate},
	}
	if js(res.Records.Procedures) != js(want) {
		t.Errorf("procedures\n got %s\nwant %s", js(res.Records.Procedures), js(want))
	}
	if o := res.Origins.Of(cdm.TableProcedures); len(o) != 3 || o[1] != (cdm.Origin{File: "b.json", Entry: 2}) {
		t.Errorf("origins %v", o)
	}
	var errs []string
	for _, e := range res.Errors {
		errs = append(errs, e.Error())
	}
	wantErrs := []string{
		"Procedure.ndjson:1: missing required field code.coding[0].code",
		`Procedure.ndjson:2: performedDateTime: impossible date "2021-02-30"`,
	}
	if len(errs) != len(wantErrs) {
		t.Fatalf("errors %q", errs)
	}
	for i := range errs {
		if !strings.HasPrefix(errs[i], wantErrs[i]) {
			t.Errorf("error %d: %s, want %s...", i, errs[i], wantErrs[i])
		}
	}
	if res.Skipped["Procedure"] != 0 {
		t.Errorf("skipped %v", res.Skipped)
	}
}

// TestFallbackDates: recordedDate (Condition) and issued (Observation) are
// read only when the resource has no onset or effective date, and a bad one
// is then a bad record naming it.
func TestFallbackDates(t *testing.T) {
	p := NewParser(Options{})
	in := strings.Join([]string{
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p"},"recordedDate":"2020-02-30","code":{"coding":[{"code":"1"}]}}`,
		`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p"},"recordedDate":"2020-02-30","onsetDateTime":"2020-01-01","code":{"coding":[{"code":"1"}]}}`,
		`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p"},"issued":"2020-03-04T10:00:00.000+01:00","code":{"coding":[{"code":"1"}]}}`,
		`{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p"},"issued":7,"code":{"coding":[{"code":"1"}]}}`,
	}, "\n")
	if err := p.ParseNDJSON("x.ndjson", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	res := p.Result()
	var errs []string
	for _, e := range res.Errors {
		errs = append(errs, e.Error())
	}
	want := []string{`x.ndjson:1: recordedDate: impossible date "2020-02-30"`, `x.ndjson:4: issued: want a string, got number`}
	if len(errs) != 2 || !strings.HasPrefix(errs[0], want[0]) || errs[1] != want[1] {
		t.Errorf("errors %q, want %q", errs, want)
	}
	if len(res.Records.Conditions) != 1 || res.Records.Conditions[0].Onset != cdm.DateFromYMD(2020, 1, 1) {
		t.Errorf("conditions %+v", res.Records.Conditions)
	}
	if len(res.Records.Observations) != 1 || res.Records.Observations[0].Date != cdm.DateFromYMD(2020, 3, 4) {
		t.Errorf("observations %+v", res.Records.Observations)
	}
}

// A MedicationRequest whose medicationReference waits for the end of the
// import still has its bundle-local subject (urn:uuid:) resolved at the
// end of its Bundle: to the id of the Patient with that fullUrl, and a
// urn:uuid: naming no entry to its uuid.
func TestWaitingMedicationPatient(t *testing.T) {
	const b = `{"resourceType": "Bundle", "type": "collection", "entry": [
 {"fullUrl": "urn:uuid:u1", "resource": {"resourceType": "Patient", "id": "pat1", "gender": "female", "birthDate": "1970-01-01"}},
 {"resource": {"resourceType": "MedicationRequest", "id": "r1", "subject": {"reference": "urn:uuid:u1"}, "medicationReference": {"reference": "Medication/med"}}},
 {"resource": {"resourceType": "MedicationRequest", "id": "r2", "subject": {"reference": "urn:uuid:u2"}, "medicationReference": {"reference": "Medication/med"}}}
]}`
	p := NewParser(Options{})
	p.ParseBundle("b.json", []byte(b))
	p.ParseBundle("m.json", []byte(`{"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}`))
	res := p.Result()
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors[0])
	}
	m := res.Records.Medications
	if len(m) != 2 || m[0].PatientID != "pat1" || m[1].PatientID != "u2" || m[0].Code != "860975" {
		t.Fatalf("medications %+v, want r1 of pat1 and r2 of u2, coded 860975", m)
	}
}

// Patient.identifier items with a system and a value become the patient's
// identifiers, sorted and deduplicated, from Bulk NDJSON and Bundles alike;
// items without a value or without a system are left out.
func TestPatientIdentifiers(t *testing.T) {
	const resident = "urn:oid:2.16.156.10011.1.1"
	const patient = `{"resourceType":"Patient","id":"p1","identifier":[` +
		`{"system":"http://hospital.example/mrn","value":"MRN-0042","type":{"text":"MRN"}},` +
		`{"system":"` + resident + `","value":"110101199003074512"},` +
		`{"system":"http://hospital.example/mrn","value":"MRN-0042"},` +
		`{"system":"http://hospital.example/old","use":"old"},` +
		`{"value":"no-system"}]}`
	want := "http://hospital.example/mrn|MRN-0042," + resident + "|110101199003074512"
	if got := cdm.FormatCodings(cdm.SortCodings([]cdm.Coding{{System: resident, Code: "110101199003074512"}, {System: "http://hospital.example/mrn", Code: "MRN-0042"}})); got != want {
		t.Fatalf("test expectation %q is not the SortCodings order %q", want, got)
	}
	p := NewParser(Options{})
	if err := p.ParseNDJSON("Patient.ndjson", strings.NewReader(patient+"\n"+`{"resourceType":"Patient","id":"p2"}`)); err != nil {
		t.Fatal(err)
	}
	p.ParseBundle("b.json", []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":`+strings.Replace(patient, `"p1"`, `"p3"`, 1)+`}]}`))
	res := p.Result()
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors[0])
	}
	got := map[string]string{}
	for _, pt := range res.Records.Patients {
		got[pt.ID] = pt.Identifiers
	}
	if got["p1"] != want || got["p3"] != want || got["p2"] != "" {
		t.Fatalf("identifiers %q, want p1 and p3 %q, p2 none", got, want)
	}
	// A logical reference by an identifier without a system still resolves.
	p = NewParser(Options{})
	_ = p.ParseNDJSON("x.ndjson", strings.NewReader(patient+"\n"+
		`{"resourceType":"Condition","id":"c1","subject":{"identifier":{"value":"no-system"}},"code":{"coding":[{"code":"1"}]}}`))
	if c := p.Result().Records.Conditions; len(c) != 1 || c[0].PatientID != "p1" {
		t.Fatalf("conditions %+v", c)
	}
}
