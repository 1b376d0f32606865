package ingest_test

// Hand-written exports in the shapes hospitals' systems produce (issue
// 16), each imported through the whole data path (ingest.Read, the patient
// check, the store, the columnar copy) and counted through a query plan.

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
	"github.com/fedstat/fedstat/node/internal/store"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// node is a data store filled by one import.
type node struct {
	t      *testing.T
	res    *ingest.Result
	tables *cdm.Tables
}

// importFiles writes files (name -> content) into a fresh folder, imports
// it and returns the node; bad records are in n.res.Errors (the good ones
// are imported, as with --quarantine).
func importFiles(t *testing.T, files map[string]string) *node {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "export")
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return importPaths(t, filepath.Join(dir, "kv"), src)
}

func importPaths(t *testing.T, kvDir string, paths ...string) *node {
	t.Helper()
	return importWith(t, ingest.Options{}, kvDir, paths...)
}

func importWith(t *testing.T, o ingest.Options, kvDir string, paths ...string) *node {
	t.Helper()
	ctx := context.Background()
	o.Region, _ = fhir.ParseRegionRule("state")
	res, err := ingest.Read(ctx, o, paths)
	if err != nil {
		t.Fatal(err)
	}
	db, err := kv.Open(kv.Options{Dir: kvDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := store.Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.CheckPatients(s.Tables())
	if _, err := s.ImportRecords(ctx, &res.Records, "test"); err != nil {
		t.Fatal(err)
	}
	return &node{t: t, res: res, tables: s.Tables()}
}

// noErrors fails on any bad record.
func (n *node) noErrors() *node {
	n.t.Helper()
	for _, e := range n.res.Errors {
		n.t.Errorf("bad record: %v", e)
	}
	return n
}

// query returns the exact values of sql.
func (n *node) query(sql string) []float64 {
	n.t.Helper()
	cat := &plan.Catalogue{MaxRowsPerPatient: 100, MaxGroupsPerPatient: 10}
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1,
		ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, cat)
	if err != nil {
		n.t.Fatalf("%s: %v", sql, err)
	}
	e, err := eval.Evaluate(context.Background(), p, n.tables)
	if err != nil {
		n.t.Fatalf("%s: %v", sql, err)
	}
	return e.Values()
}

// expect checks each query's values.
func (n *node) expect(cases map[string][]float64) {
	n.t.Helper()
	for sql, want := range cases {
		if got := n.query(sql); !slices.Equal(got, want) {
			n.t.Errorf("%s\n got %v, want %v", sql, got, want)
		}
	}
}

func (n *node) rows(table string) int { return n.res.Records.TableCounts()[table] }

func gzipped(data string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(data))
	w.Close()
	return b.String()
}

func ndjson(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func patient(id string) string {
	return `{"resourceType":"Patient","id":"` + id + `","gender":"female","birthDate":"1970-01-01"}`
}

const (
	snomed = `{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}`
	icd    = `{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"E11.9"}`
	local  = `{"system":"urn:oid:1.2.840.114350.1.13.1.1.7.2.696871","code":"E11.9-LOC","display":"DM2"}`
)

// TestMultiCoding: a Condition coded [local, ICD-10-CM E11.9, SNOMED
// 44054006] in each of the six orders matches code = '44054006' and code =
// 'E11.9', counts once per resource, and matches code AND system on the
// same coding only.
func TestMultiCoding(t *testing.T) {
	codings := []string{local, icd, snomed}
	var lines []string
	perm := [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for i, o := range perm {
		id := string(rune('a' + i))
		lines = append(lines, patient(id), `{"resourceType":"Condition","id":"c`+id+`","subject":{"reference":"Patient/`+id+
			`"},"code":{"coding":[`+codings[o[0]]+","+codings[o[1]]+","+codings[o[2]]+`],"text":"DM2"},"onsetDateTime":"2020-01-01"}`)
	}
	// A seventh resource coded in ICD-10-CM only, an eighth locally only.
	lines = append(lines, patient("g"), `{"resourceType":"Condition","id":"cg","subject":{"reference":"Patient/g"},"code":{"coding":[`+icd+`]}}`,
		patient("h"), `{"resourceType":"Condition","id":"ch","subject":{"reference":"Patient/h"},"code":{"coding":[`+local+`]}}`)
	n := importFiles(t, map[string]string{"export.ndjson": ndjson(lines...)}).noErrors()
	if got := n.rows(cdm.TableConditions); got != 8 {
		t.Fatalf("%d condition rows, want 8 (one per resource)", got)
	}
	icdURI := "'http://hl7.org/fhir/sid/icd-10-cm'"
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions WHERE code = '44054006'":                                                       {6},
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9'":                                                          {7},
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9-LOC'":                                                      {7},
		"SELECT COUNT(*) FROM conditions WHERE code IN ('44054006', 'E11.9', 'E11.9-LOC')":                              {8},
		"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('44054006', 'E11.9')":                         {7},
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9' AND system = " + icdURI:                                   {7},
		"SELECT COUNT(*) FROM conditions WHERE code = '44054006' AND system = " + icdURI:                                {0},
		"SELECT COUNT(*) FROM conditions WHERE system = " + icdURI:                                                      {7},
		"SELECT COUNT(*) FROM conditions WHERE code <> '44054006'":                                                      {2},
		"SELECT code, COUNT(*) FROM conditions WHERE code IN ('44054006', 'E11.9') GROUP BY code":                       {6, 1},
		"SELECT code, COUNT(*) FROM conditions WHERE code IN ('E11.9', '44054006') GROUP BY code":                       {7, 0},
		"SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')": {6},
	})
	// The six orders are one row each, identical but for the id.
	tb, _ := n.tables.Table(cdm.TableConditions)
	code := tb.Strings["code"]
	for r := range tb.Rows {
		if v := code.Dict.Value(code.IDs[r]); r < 6 && v != "44054006" {
			t.Errorf("row %d: primary code %s, want the SNOMED CT one", r, v)
		}
	}
}

// TestComponents: a blood-pressure panel's systolic and diastolic
// components are observations of their own, linked by panel_id.
func TestComponents(t *testing.T) {
	bp := func(id, date string, sys, dia float64) string {
		return `{"resourceType":"Observation","id":"` + id + `","status":"final","subject":{"reference":"Patient/p"},` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel"}]},"effectiveDateTime":"` + date + `",` +
			`"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":` + ftoa(dia) + `,"unit":"mm[Hg]"}},` +
			`{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":` + ftoa(sys) + `,"unit":"mm[Hg]"}}]}`
	}
	n := importFiles(t, map[string]string{
		"Patient.ndjson": ndjson(patient("p")),
		"Observation.ndjson": ndjson(bp("bp1", "2020-01-01", 120, 80), bp("bp2", "2020-06-01", 140, 90),
			// A component without a value still counts as an observation.
			`{"resourceType":"Observation","id":"bp3","subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},`+
				`"effectiveDateTime":"2021-01-01","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"dataAbsentReason":{"text":"refused"}}]}`),
	}).noErrors()
	if got := n.rows(cdm.TableObservations); got != 8 {
		t.Errorf("%d observation rows, want 3 panels + 5 components", got)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM observations WHERE code = '8480-6'":                          {3},
		"SELECT COUNT(*) FROM observations WHERE code = '8462-4'":                          {2},
		"SELECT COUNT(*) FROM observations WHERE code = '85354-9'":                         {3},
		"SELECT SUM(CLAMP(value, 0, 300)) FROM observations WHERE code = '8480-6'":         {260},
		"SELECT COUNT(*) FROM observations WHERE panel_id = 'bp2'":                         {2},
		"SELECT COUNT(*) FROM observations WHERE code = '8480-6' AND date >= '2020-06-01'": {2},
		"SELECT COUNT(*) FROM observations WHERE code = '8462-4' AND status = 'final'":     {2},
	})
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// TestStatuses: entered-in-error is never imported (counted as skipped);
// every other status is stored and selectable.
func TestStatuses(t *testing.T) {
	cond := func(id, clinical, verification string) string {
		s := `{"resourceType":"Condition","id":"` + id + `","subject":{"reference":"Patient/p"},"code":{"coding":[` + snomed + `]},"onsetDateTime":"2020-01-01"`
		if clinical != "" {
			s += `,"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"` + clinical + `"}]}`
		}
		if verification != "" {
			s += `,"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"` + verification + `"}]}`
		}
		return s + "}"
	}
	status := func(rt, id, st, body string) string {
		return `{"resourceType":"` + rt + `","id":"` + id + `","status":"` + st + `",` + body + "}"
	}
	obs := `"subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":7}`
	med := `"subject":{"reference":"Patient/p"},"medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975"}]}`
	proc := `"subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"80146002"}]}`
	imm := `"patient":{"reference":"Patient/p"},"vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"208"}]},"occurrenceDateTime":"2021-05-01"`
	n := importFiles(t, map[string]string{"all.ndjson": ndjson(patient("p"),
		cond("c1", "active", "confirmed"), cond("c2", "resolved", "confirmed"), cond("c3", "inactive", "refuted"),
		cond("c4", "", "entered-in-error"), cond("c5", "", ""), cond("c6", "active", "provisional"),
		// entered-in-error with a bad date: still only skipped.
		`{"resourceType":"Condition","id":"c7","subject":{"reference":"Patient/p"},"code":{"coding":[`+snomed+`]},"onsetDateTime":"2020-02-30","verificationStatus":{"coding":[{"code":"entered-in-error"}]}}`,
		status("Observation", "o1", "final", obs), status("Observation", "o2", "entered-in-error", obs), status("Observation", "o3", "cancelled", obs),
		status("MedicationRequest", "m1", "completed", med), status("MedicationRequest", "m2", "entered-in-error", med), status("MedicationRequest", "m3", "stopped", med),
		status("Procedure", "x1", "completed", proc), status("Procedure", "x2", "entered-in-error", proc), status("Procedure", "x3", "not-done", proc),
		status("Immunization", "i1", "completed", imm), status("Immunization", "i2", "entered-in-error", imm), status("Immunization", "i3", "not-done", imm),
		status("Encounter", "e1", "finished", `"subject":{"reference":"Patient/p"}`), status("Encounter", "e2", "entered-in-error", `"subject":{"reference":"Patient/p"}`),
	)}).noErrors()
	wantSkipped := map[string]int{"Condition (entered-in-error)": 2, "Observation (entered-in-error)": 1, "MedicationRequest (entered-in-error)": 1,
		"Procedure (entered-in-error)": 1, "Immunization (entered-in-error)": 1, "Encounter (entered-in-error)": 1}
	if !mapsEqual(n.res.Skipped, wantSkipped) {
		t.Errorf("skipped %v, want %v", n.res.Skipped, wantSkipped)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions":                                                              {5},
		"SELECT COUNT(*) FROM conditions WHERE verification_status <> 'refuted'":                       {4},
		"SELECT COUNT(*) FROM conditions WHERE verification_status = 'refuted'":                        {1},
		"SELECT COUNT(*) FROM conditions WHERE clinical_status IN ('active', 'recurrence', 'relapse')": {2},
		"SELECT COUNT(*) FROM conditions WHERE clinical_status = 'inactive'":                           {1},
		"SELECT COUNT(*) FROM conditions WHERE clinical_status = ''":                                   {1},
		"SELECT COUNT(*) FROM observations":                                                            {2},
		"SELECT COUNT(*) FROM observations WHERE status = 'final'":                                     {1},
		"SELECT COUNT(*) FROM medications":                                                             {2},
		"SELECT COUNT(*) FROM procedures WHERE status = 'completed'":                                   {1},
		"SELECT COUNT(*) FROM procedures":                                                              {2},
		"SELECT COUNT(*) FROM immunizations":                                                           {2},
		"SELECT COUNT(*) FROM immunizations WHERE status = 'completed' AND code = '208'":               {1},
		"SELECT COUNT(*) FROM encounters":                                                              {1},
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestOnsetFallback: a Condition with only recordedDate has that day as
// its onset; onsetDateTime, then onsetPeriod.start, win over it; onsetAge
// or onsetString fall back to recordedDate too.
func TestOnsetFallback(t *testing.T) {
	c := func(id, onset string) string {
		return `{"resourceType":"Condition","id":"` + id + `","subject":{"reference":"Patient/p"},"code":{"coding":[` + snomed + `]}` + onset + "}"
	}
	n := importFiles(t, map[string]string{"Condition.ndjson": ndjson(patient("p"),
		c("c1", `,"recordedDate":"2020-03-15"`),
		c("c2", `,"recordedDate":"2020-03-20T10:00:00Z","onsetDateTime":"2019-01-01"`),
		c("c3", `,"onsetPeriod":{"start":"2020-03-01"},"recordedDate":"2021-01-01"`),
		c("c4", `,"onsetAge":{"value":50,"unit":"a"},"recordedDate":"2020-03-31"`),
		c("c5", `,"onsetString":"childhood"`),
	)}).noErrors()
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions WHERE onset_date BETWEEN '2020-03-01' AND '2020-03-31'": {3},
		"SELECT COUNT(*) FROM conditions WHERE onset_date < '2020-01-01'":                        {1},
		"SELECT COUNT(*) FROM conditions WHERE onset_date >= '1900-01-01'":                       {4},
	})
}

// TestMedicationReference: a MedicationRequest naming its drug by
// reference gets the Medication's codes: contained, in the same Bundle
// (urn:uuid), in a Bundle read before, and in an NDJSON file read after
// the request; relative, absolute and versioned references. One that
// resolves to nothing is a bad record naming the file, line and field.
func TestMedicationReference(t *testing.T) {
	rx := func(code string) string {
		return `"code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"` + code + `"},{"system":"http://hl7.org/fhir/sid/ndc","code":"0002-8215"}]}`
	}
	req := func(id, ref string) string {
		return `{"resourceType":"MedicationRequest","id":"` + id + `","status":"active","subject":{"reference":"Patient/p"},"authoredOn":"2020-01-01","medicationReference":{"reference":"` + ref + `"}}`
	}
	bundle := `{"resourceType":"Bundle","type":"searchset","entry":[
 {"fullUrl":"urn:uuid:0d1f6d3c-1111-4c55-9a63-5e1b1b0a0001","resource":{"resourceType":"Medication","id":"med-b",` + rx("860975") + `}},
 {"fullUrl":"https://ehr.example.org/fhir/Patient/p","resource":` + patient("p") + `},
 {"resource":{"resourceType":"MedicationRequest","id":"r1","subject":{"reference":"Patient/p"},"authoredOn":"2020-01-01",
   "contained":[{"resourceType":"Organization","id":"org"},{"resourceType":"Medication","id":"m1",` + rx("197361") + `}],
   "medicationReference":{"reference":"#m1"}}},
 {"resource":` + req("r2", "urn:uuid:0d1f6d3c-1111-4c55-9a63-5e1b1b0a0001") + `},
 {"resource":` + req("r3", "Medication/med-b") + `}
]}`
	n := importFiles(t, map[string]string{
		"a-bundle.json": bundle,
		"b/MedicationRequest.ndjson": ndjson(
			req("r4", "https://ehr.example.org/fhir/Medication/med-n/_history/3"),
			req("r5", "Medication/med-b"),
			req("r6", "Medication/nowhere")),
		"c/Medication.ndjson": ndjson(`{"resourceType":"Medication","id":"med-n",` + rx("860975") + `}`),
	})
	if len(n.res.Errors) != 1 {
		t.Fatalf("errors %v, want one", n.res.Errors)
	}
	e := n.res.Errors[0]
	if !strings.HasSuffix(e.File, "MedicationRequest.ndjson") || e.Line != 3 || e.Path != "medicationReference.reference" ||
		!strings.Contains(e.Error(), `"Medication/nowhere" resolves to no Medication`) || len(e.Raw) == 0 {
		t.Errorf("error %v (raw %d bytes), want MedicationRequest.ndjson:3: medicationReference.reference: ...", e, len(e.Raw))
	}
	if n.res.Skipped["Medication"] != 2 {
		t.Errorf("skipped %v, want the two Medication resources", n.res.Skipped)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM medications":                                                                     {5},
		"SELECT COUNT(*) FROM medications WHERE code = '860975'":                                               {4},
		"SELECT COUNT(*) FROM medications WHERE code = '197361'":                                               {1},
		"SELECT COUNT(*) FROM medications WHERE code = '0002-8215' AND system = 'http://hl7.org/fhir/sid/ndc'": {5},
	})
}

// TestMedicationReferenceContainedMissing: "#x" with no contained
// Medication x is a bad record at once, naming the entry.
func TestMedicationReferenceContainedMissing(t *testing.T) {
	n := importFiles(t, map[string]string{"b.json": `{"resourceType":"Bundle","entry":[{"resource":` + patient("p") + `},
 {"resource":{"resourceType":"MedicationRequest","id":"r","subject":{"reference":"Patient/p"},"medicationReference":{"reference":"#x"}}}]}`})
	if len(n.res.Errors) != 1 || !strings.HasSuffix(n.res.Errors[0].Error(), `b.json: entry[1].resource.medicationReference.reference: no contained Medication with id "x" for "#x"`) {
		t.Errorf("errors %v", n.res.Errors)
	}
}

// TestBulkManifest: a Bulk Data export folder with its $export manifest:
// the files are found through the manifest's output urls (even without a
// .ndjson name, gzip-compressed or not); a listed file that is missing is
// a bad record naming the manifest's field.
func TestBulkManifest(t *testing.T) {
	manifest := `{"transactionTime":"2024-01-01T00:00:00Z","request":"https://ehr.example.org/fhir/Patient/$export","requiresAccessToken":true,
 "output":[{"type":"Patient","url":"https://ehr.example.org/bulk/9f2c/Patient.ndjson","count":2},
           {"type":"Condition","url":"https://ehr.example.org/bulk/9f2c/8a7b6c5d?part=1"},
           {"type":"Observation","url":"https://ehr.example.org/bulk/9f2c/Observation.ndjson"}],
 "error":[{"type":"OperationOutcome","url":"https://ehr.example.org/bulk/9f2c/err.ndjson"}]}`
	files := map[string]string{
		"manifest.json":  manifest,
		"Patient.ndjson": ndjson(patient("p1"), patient("p2")),
		"8a7b6c5d": ndjson(`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[`+snomed+`]}}`,
			`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p2"},"code":{"coding":[`+snomed+`]}}`),
		"Observation.ndjson.gz": gzipped(ndjson(`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]}}`)),
	}
	n := importFiles(t, files).noErrors()
	if n.res.Manifests != 1 || n.res.Files != 3 {
		t.Errorf("manifests %d, files %d; want 1 and 3", n.res.Manifests, n.res.Files)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM patients":                                             {2},
		"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'": {2},
		"SELECT COUNT(*) FROM observations":                                         {1},
	})

	// The same folder without the Condition file.
	delete(files, "8a7b6c5d")
	n = importFiles(t, files)
	if len(n.res.Errors) != 1 || !strings.HasSuffix(n.res.Errors[0].File, "manifest.json") || n.res.Errors[0].Path != "output[1].url" {
		t.Fatalf("errors %v, want one naming manifest.json output[1].url", n.res.Errors)
	}
	if got := n.query("SELECT COUNT(*) FROM patients"); got[0] != 2 {
		t.Errorf("patients %v", got)
	}
}

// TestRaceEthnicity: the US Core race and ethnicity extensions become the
// patient columns race and ethnicity (OMB category codes).
func TestRaceEthnicity(t *testing.T) {
	pt := func(id, race, eth string) string {
		ext := func(url string, codes ...string) string {
			s := `{"url":"http://hl7.org/fhir/us/core/StructureDefinition/` + url + `","extension":[`
			for _, c := range codes {
				s += `{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"` + c + `","display":"x"}},`
			}
			return s + `{"url":"detailed","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2108-9"}},{"url":"text","valueString":"t"}]}`
		}
		var exts []string
		if race != "" {
			exts = append(exts, ext("us-core-race", strings.Split(race, ",")...))
		}
		if eth != "" {
			exts = append(exts, ext("us-core-ethnicity", eth))
		}
		exts = append(exts, `{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"X"}`)
		return `{"resourceType":"Patient","id":"` + id + `","gender":"male","extension":[` + strings.Join(exts, ",") + `]}`
	}
	n := importFiles(t, map[string]string{"Patient.ndjson": ndjson(
		pt("p1", "2106-3", "2186-5"), pt("p2", "2054-5", "2135-2"), pt("p3", "2106-3", "2135-2"),
		pt("p4", "2106-3,2028-9", ""), pt("p5", "", ""))}).noErrors()
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM patients WHERE race = '2106-3'":                                  {2},
		"SELECT COUNT(*) FROM patients WHERE race = '2028-9,2106-3'":                           {1},
		"SELECT COUNT(*) FROM patients WHERE ethnicity = '2135-2'":                             {2},
		"SELECT COUNT(*) FROM patients WHERE race = '' AND ethnicity = ''":                     {1},
		"SELECT race, COUNT(*) FROM patients WHERE race IN ('2106-3', '2054-5') GROUP BY race": {2, 1},
	})
}

// TestReferenceForms: subject references in the forms Bulk Data and
// Bundles use all name the same patient.
func TestReferenceForms(t *testing.T) {
	c := func(id, ref string) string {
		return `{"fullUrl":"urn:uuid:` + id + `","resource":{"resourceType":"Condition","id":"` + id + `","subject":{"reference":"` + ref + `"},"code":{"coding":[` + snomed + `]}}}`
	}
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:6c1e4d9e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"p1"}},
 ` + c("c1", "Patient/p1") + `,
 ` + c("c2", "urn:uuid:6c1e4d9e-0000-4000-8000-000000000001") + `,
 ` + c("c3", "https://ehr.example.org/fhir/R4/Patient/p1") + `,
 ` + c("c4", "Patient/p1/_history/2") + `,
 ` + c("c5", "https://ehr.example.org/fhir/R4/Patient/p1/_history/7") + `]}`
	// Bulk NDJSON with a logical reference (the patient's local
	// identifier, a medical record number), in a file read before the
	// Patients; and one naming nobody.
	n := importFiles(t, map[string]string{"bundle.json": bundle,
		"Condition.ndjson": ndjson(`{"resourceType":"Condition","id":"c6","subject":{"identifier":{"system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14","value":"MRN-0042"}},"code":{"coding":[`+snomed+`]}}`,
			`{"resourceType":"Condition","id":"c7","subject":{"identifier":{"system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14","value":"MRN-9999"}},"code":{"coding":[`+snomed+`]}}`),
		"MedicationRequest.ndjson": ndjson(`{"resourceType":"MedicationRequest","id":"r1","subject":{"identifier":{"system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14","value":"MRN-0042"}},"medicationReference":{"reference":"Medication/m1"}}`),
		"z/Medication.ndjson":      ndjson(`{"resourceType":"Medication","id":"m1","code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975"}]}}`),
		"Patient.ndjson":           ndjson(`{"resourceType":"Patient","id":"p2","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-99-9999"},{"use":"usual","system":"urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14","value":"MRN-0042"}]}`),
	})
	if len(n.res.Errors) != 1 || !strings.HasSuffix(n.res.Errors[0].Error(), `Condition.ndjson:2: subject.reference: cdm: unknown patient "identifier:urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14|MRN-9999": not in this import nor in the store`) {
		t.Errorf("errors %v", n.res.Errors)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions":                   {6},
		"SELECT COUNT(DISTINCT patient_id) FROM conditions": {2},
		"SELECT COUNT(*) FROM medications WHERE code = '860975' AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006')": {1},
	})
}

// TestCSVCodings: the CDM CSV format carries other codings and statuses in
// the new, optional columns; a bad codings cell names the file, line and
// column.
func TestCSVCodings(t *testing.T) {
	n := importFiles(t, map[string]string{
		"patients.csv": "patient_id,sex,race\np1,F,2106-3\np2,M,\n",
		"conditions.csv": "id,patient_id,code,system,verification_status,codings\n" +
			"c1,p1,44054006,http://snomed.info/sct,confirmed,\"http://hl7.org/fhir/sid/icd-10-cm|E11.9,urn:oid:1.2.3|DM2\"\n" +
			"c2,p2,E11.9,http://hl7.org/fhir/sid/icd-10-cm,refuted,\n" +
			"c3,p2,1,,,not codings\n",
	})
	if len(n.res.Errors) != 1 || n.res.Errors[0].Line != 4 || n.res.Errors[0].Path != "codings" {
		t.Fatalf("errors %v, want one at conditions.csv:4 codings", n.res.Errors)
	}
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9'":                                      {2},
		"SELECT COUNT(*) FROM conditions WHERE code = 'DM2' AND system = 'urn:oid:1.2.3'":           {1},
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9' AND verification_status <> 'refuted'": {1},
		"SELECT COUNT(*) FROM conditions WHERE race = '2106-3'":                                     {1},
	})
}

// TestCodeMap: the node admin's map of local codes to standard ones is
// applied at import: a condition coded only locally is found by its
// standard codes, and by its local one still.
func TestCodeMap(t *testing.T) {
	cm, err := terminology.ParseCodeMap("map.csv", strings.NewReader("local_system,local_code,system,code,display\n"+
		"urn:oid:1.2.840.114350.1.13.1.1.7.2.696871,E11.9-LOC,http://snomed.info/sct,44054006,Diabetes mellitus type 2\n"+
		"urn:oid:1.2.840.114350.1.13.1.1.7.2.696871,E11.9-LOC,http://hl7.org/fhir/sid/icd-10-cm,E11.9,\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "Condition.ndjson")
	if err := os.WriteFile(src, []byte(ndjson(patient("p"), patient("q"),
		`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p"},"code":{"coding":[`+local+`]}}`,
		`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/q"},"code":{"coding":[{"system":"urn:oid:9","code":"other"}]}}`)), 0o600); err != nil {
		t.Fatal(err)
	}
	n := importWith(t, ingest.Options{CodeMap: cm}, filepath.Join(dir, "kv"), src).noErrors()
	n.expect(map[string][]float64{
		"SELECT COUNT(*) FROM conditions WHERE code = '44054006'":  {1},
		"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'":   {1},
		"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9-LOC'": {1},
		"SELECT COUNT(*) FROM conditions WHERE code = 'other'":     {1},
	})
	if c := n.res.Records.Conditions[0]; c.Code != "44054006" || c.System != cdm.SystemSNOMED {
		t.Errorf("primary coding %s|%s, want the mapped SNOMED CT code", c.System, c.Code)
	}
}

// TestICD10CanonicalAtImport: ICD-10 codes are stored in their canonical
// form whatever the export wrote (undotted, lower case, in a FHIR coding
// or a CSV row), so one code is one value; codes of other systems, and
// codes that merely look like ICD-10 in a local system, are kept as read.
func TestICD10CanonicalAtImport(t *testing.T) {
	n := importFiles(t, map[string]string{
		"Patient.ndjson": ndjson(patient("p1"), patient("p2")),
		"Condition.ndjson": ndjson(
			`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"e119"}]}}`,
			`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p2"},"code":{"coding":[`+snomed+`,{"system":"http://hl7.org/fhir/sid/icd-10","code":"I10"},{"system":"http://fhir.de/CodeSystem/bfarm/icd-10-gm","code":"E1165"}]}}`,
			`{"resourceType":"Condition","id":"c3","subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"urn:oid:1.2.3","code":"J1234"}]}}`),
	}).noErrors()
	n.expect(map[string][]float64{
		`SELECT COUNT(*) FROM conditions WHERE code = 'E11.9'`:                        {1},
		`SELECT code, COUNT(*) FROM conditions WHERE code IN ('E11.9') GROUP BY code`: {1},
		`SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'`:                      {2}, // E11.9 and the GM E11.65 among c2's codings
		`SELECT COUNT(*) FROM conditions WHERE code = 'J1234'`:                        {1},
		`SELECT COUNT(*) FROM conditions WHERE code = 'J12.34'`:                       {0},
	})
	tb, _ := n.tables.Table(cdm.TableConditions)
	if vals := tb.Strings["code"].Dict.Values(); slices.Contains(vals, "e119") || !slices.Contains(vals, "E11.9") {
		t.Errorf("stored codes %q", vals)
	}
	if vals := tb.Strings["codings"].Dict.Values(); !slices.ContainsFunc(vals, func(v string) bool { return strings.Contains(v, "|E11.65") }) {
		t.Errorf("stored codings %q", vals)
	}
}
