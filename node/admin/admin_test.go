package admin

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
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

// independentCounts counts rows per table of a Synthea bundles archive with
// encoding/json.
func independentCounts(t *testing.T, tgz string) map[string]int {
	f, err := os.Open(tgz)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Error(err)
		return nil
	}
	tr := tar.NewReader(zr)
	counts := map[string]int{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return counts
		}
		if err != nil {
			t.Error(err)
			return nil
		}
		var b struct {
			Entry []struct {
				Resource struct {
					ResourceType string            `json:"resourceType"`
					Component    []json.RawMessage `json:"component"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.NewDecoder(tr).Decode(&b); err != nil {
			t.Errorf("%s: %v", h.Name, err)
			return nil
		}
		for _, e := range b.Entry {
			if table, ok := modelTable[e.Resource.ResourceType]; ok {
				counts[table] += 1 + len(e.Resource.Component) // each component an observation
			}
		}
	}
}

func tablesOf(t *testing.T, dir string) map[string]int {
	t.Helper()
	st, err := GetStatus(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return st.Tables
}

func TestImportSyntheaBundles(t *testing.T) {
	tgz := testkit.SharedData(t, "fhir-r4-synthea/bundles.tar.gz")
	if raceEnabled {
		// 340 MB of single-threaded parsing, about ten times slower with
		// the race detector and nothing concurrent to check:
		// scripts/test.sh runs it without.
		t.Skip("the whole Synthea import runs without the race detector (scripts/test.sh)")
	}
	// Count independently while the import runs (the machine has 2 cores).
	counted := make(chan map[string]int)
	go func() { counted <- independentCounts(t, tgz) }()
	dir := t.TempDir()
	ctx := context.Background()
	sum, err := Import(ctx, ImportOptions{DataDir: dir, RegionRule: "city"}, []string{tgz})
	want := <-counted
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range want {
		if sum.Added[table] != n {
			t.Errorf("%s: added %d, independent count %d", table, sum.Added[table], n)
		}
	}
	st, err := GetStatus(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range want {
		if st.Tables[table] != n {
			t.Errorf("%s: %d rows stored, independent count %d", table, st.Tables[table], n)
		}
	}
	if len(st.Regions) < 10 || st.Generation != 1 {
		t.Errorf("regions %d, generation %d", len(st.Regions), st.Generation)
	}
	t.Logf("counts %v; parse %v write %v build %v; status build %v", st.Tables, sum.Parse, sum.Write, sum.Build, st.BuildTime)

}

func TestImportBulkNDJSON(t *testing.T) {
	src := testkit.SharedData(t, "fhir-bulk-ndjson-10")
	want := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(src, "*.ndjson.gz"))
	for _, fn := range files {
		f, _ := os.Open(fn)
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if table, ok := modelTable[r["resourceType"].(string)]; ok {
				want[table]++
			}
		}
		f.Close()
	}
	dir := t.TempDir()
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{src}); err != nil {
		t.Fatal(err)
	}
	got := tablesOf(t, dir)
	for table, n := range want {
		if got[table] != n {
			t.Errorf("%s: %d rows, independent count %d", table, got[table], n)
		}
	}
	if want[cdm.TablePatients] == 0 || want[cdm.TableConditions] == 0 {
		t.Fatalf("independent count %v", want)
	}

	// Re-importing the same files changes nothing.
	sum, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{src})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Generation != 0 || sum.Unchanged[cdm.TableEncounters] != want[cdm.TableEncounters] {
		t.Fatalf("re-import: %+v", sum)
	}
	if again := tablesOf(t, dir); !reflect.DeepEqual(again, got) {
		t.Fatalf("re-import changed rows: %v", again)
	}
}

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const basePatients = `{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1970-01-01","address":[{"state":"MA","city":"Boston","postalCode":"02118"}]}
{"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1980-06-30","deceasedDateTime":"2020-01-02T03:04:05Z"}
`
const baseConditions = `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2019-01-01"}
{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"38341003"}]},"onsetDateTime":"2018-05-05"}
`

// baseStore returns a data directory holding two patients and two
// conditions, and its status.
func baseStore(t *testing.T) (string, *Status) {
	t.Helper()
	dir := t.TempDir()
	in := t.TempDir()
	paths := []string{write(t, in, "Patient.ndjson", basePatients), write(t, in, "Condition.ndjson", baseConditions)}
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, paths); err != nil {
		t.Fatal(err)
	}
	st, err := GetStatus(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

func sameStatus(t *testing.T, dir string, before *Status) {
	t.Helper()
	after, err := GetStatus(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	after.BuildTime, before.BuildTime = 0, 0
	if a, b := js(after), js(before); a != b {
		t.Fatalf("store changed:\n before %s\n after  %s", b, a)
	}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

const goodPatient = `{"resourceType":"Patient","id":"p9","gender":"other"}`

// TestBadInputChangesNothing covers each kind of bad input: the import
// fails naming the place, and the store is unchanged.
func TestBadInputChangesNothing(t *testing.T) {
	dir, before := baseStore(t)
	for _, tc := range []struct {
		name, file, data string
		kind             error
		want             string
	}{
		{"malformed JSON (bundle)", "bundle.json", "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[\n{\"resource\":" + goodPatient + "},\n{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p8\",}}]}",
			ErrBadInput, `bundle.json: entry[1].resource: malformed JSON at line 3 column 49: want a member name in quotes`},
		{"malformed JSON (ndjson)", "more.ndjson", goodPatient + "\n{\"resourceType\":\"Patient\",\"id\":\"p8\",\n",
			ErrBadInput, `more.ndjson:2: malformed JSON`},
		{"wrong type", "bundle.json", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + goodPatient + `},{"resource":{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":"4548-4"}]},"valueQuantity":{"value":"7.1"}}}]}`,
			ErrBadInput, `bundle.json: entry[1].resource.valueQuantity.value: want a number, got string`},
		{"missing required field", "bundle.json", `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + goodPatient + `},{"resource":{"resourceType":"MedicationRequest","id":"m","subject":{"reference":"Patient/p1"}}}]}`,
			ErrBadInput, `bundle.json: entry[1].resource: missing required field medicationCodeableConcept.coding[0].code`},
		{"impossible date", "bundle.json", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + goodPatient + `},{"resource":{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":"1"}]},"onsetDateTime":"2021-02-30"}}]}`,
			ErrBadInput, `bundle.json: entry[1].resource.onsetDateTime: impossible date "2021-02-30"`},
		{"unknown patient (ndjson)", "Condition.ndjson", `{"resourceType":"Condition","id":"c9","subject":{"reference":"Patient/p9"},"code":{"coding":[{"code":"1"}]}}` + "\n" +
			`{"resourceType":"Condition","id":"c8","subject":{"reference":"Patient/nobody"},"code":{"coding":[{"code":"1"}]}}` + "\n" + goodPatient + "\n",
			cdm.ErrUnknownPatient, `Condition.ndjson:2: subject.reference: cdm: unknown patient "nobody": not in this import nor in the store`},
		{"unknown patient (bundle)", "bundle.json", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:x","resource":{"resourceType":"Encounter","id":"e","subject":{"reference":"urn:uuid:y"}}}]}`,
			cdm.ErrUnknownPatient, `bundle.json: entry[0].resource.subject.reference: cdm: unknown patient "y"`},
		{"unknown patient (csv)", "conditions.csv", "id,patient_id,code,system,onset_date\nc1,p1,1,s,2020-01-01\nc2,ghost,1,s,2020-01-01\n",
			cdm.ErrUnknownPatient, `conditions.csv:3: patient_id: cdm: unknown patient "ghost"`},
		{"csv too few columns", "conditions.csv", "id,patient_id,code,system,onset_date,abatement_date\nc1,p1,1,s,2020-01-01,\nc2,p1,1,s\n",
			ErrBadInput, `conditions.csv:3: want 6 columns (id,patient_id,code,system,onset_date,abatement_date), got 4`},
		{"csv impossible date", "site_patients.csv", "patient_id,birth_date,sex,region\np7,1999-13-01,female,R1\n",
			ErrBadInput, `site_patients.csv:2: birth_date: impossible date "1999-13-01"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, t.TempDir(), tc.file, tc.data)
			_, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{p})
			var ie *ImportError
			if !errors.As(err, &ie) || !errors.Is(err, tc.kind) || !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(err.Error(), p+tc.want[len(tc.file):]) {
				t.Errorf("error\n got %v\nwant %s", err, tc.want)
			}
			if ie.Total != 1 {
				t.Errorf("%d bad records, want 1: %v", ie.Total, err)
			}
			sameStatus(t, dir, before)
		})
	}
}

func TestErrorsCapped(t *testing.T) {
	dir, before := baseStore(t)
	var b strings.Builder
	b.WriteString("id,patient_id,code\n")
	for range 30 {
		b.WriteString("x,p1\n")
	}
	p := write(t, t.TempDir(), "conditions.csv", b.String())
	_, err := Import(context.Background(), ImportOptions{DataDir: dir, MaxErrors: 5}, []string{p})
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Total != 30 || len(ie.Errors) != 5 || !strings.Contains(err.Error(), "... and 25 more") {
		t.Fatalf("err = %v", err)
	}
	sameStatus(t, dir, before)
}

func TestQuarantine(t *testing.T) {
	dir, _ := baseStore(t)
	in := t.TempDir()
	p := write(t, in, "mixed.ndjson", goodPatient+"\n"+
		`{"resourceType":"Condition","id":"c5","subject":{"reference":"Patient/p9"},"code":{"coding":[{"code":"1"}]},"onsetDateTime":"2021-02-30"}`+"\n"+
		`{"resourceType":"Condition","id":"c6","subject":{"reference":"Patient/p9"},"code":{"coding":[{"code":"2"}]}}`+"\n"+
		`{"resourceType":"Condition","id":"c7","subject":{"reference":"Patient/zz"},"code":{"coding":[{"code":"3"}]}}`+"\n"+
		"not json\n")
	q := filepath.Join(in, "bad.jsonl")
	sum, err := Import(context.Background(), ImportOptions{DataDir: dir, Quarantine: q}, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Quarantined != 3 || sum.Added[cdm.TablePatients] != 1 || sum.Added[cdm.TableConditions] != 1 {
		t.Fatalf("summary %+v", sum)
	}
	st, _ := os.Stat(q)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("quarantine mode %v", st.Mode().Perm())
	}
	data, _ := os.ReadFile(q)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("quarantine:\n%s", data)
	}
	var first quarantineLine
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Line != 2 || first.Path != "onsetDateTime" || !strings.Contains(string(first.JSON), `"c5"`) || !strings.Contains(first.Error, "impossible date") {
		t.Errorf("first quarantined: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"record_text":"not json"`) || !strings.Contains(lines[2], `"zz"`) {
		t.Errorf("quarantine:\n%s", data)
	}
	if got := tablesOf(t, dir); got[cdm.TableConditions] != 3 || got[cdm.TablePatients] != 3 {
		t.Fatalf("rows %v", got)
	}
}

func TestChangedRecordReplaces(t *testing.T) {
	dir, _ := baseStore(t)
	in := t.TempDir()
	p := write(t, in, "Condition.ndjson", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"73211009"}]},"onsetDateTime":"2019-01-01"}`+"\n")
	sum, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{p})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replaced[cdm.TableConditions] != 1 || sum.Generation != 2 {
		t.Fatalf("summary %+v", sum)
	}
	st, err := GetStatus(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, c := range st.TopCodes[cdm.TableConditions] {
		codes[c.Value] = c.Rows
	}
	if st.Tables[cdm.TableConditions] != 2 || codes["73211009"] != 1 || codes["44054006"] != 0 {
		t.Fatalf("tables %v codes %v", st.Tables, codes)
	}
}

func TestCSVImport(t *testing.T) {
	dir := t.TempDir()
	in := t.TempDir()
	paths := []string{
		write(t, in, "patients.csv", "patient_id,birth_date,sex,region,death_date\np1,1970-01-01,F,North,\np2,1980-02-02,male,South,2020-01-01\n"),
		write(t, in, "conditions.csv", "patient_id,code,system,onset_date\np1,44054006,http://snomed.info/sct,2020-01-01\np2,44054006,http://snomed.info/sct,2020-02-01\n"),
		write(t, in, "observations.csv", "id,patient_id,code,system,date,value,unit\no1,p1,4548-4,http://loinc.org,2020-01-01,7.5,%\no2,p1,4548-4,http://loinc.org,2020-02-01,,\n"),
		write(t, in, "encounters.csv", "id,patient_id,class,type_code,type_system,start_date,end_date\ne1,p1,AMB,185349003,http://snomed.info/sct,2020-01-01,2020-01-01\n"),
		write(t, in, "medications.csv", "id,patient_id,code,system,authored_date\nm1,p2,860975,http://www.nlm.nih.gov/research/umls/rxnorm,2020-01-01\n"),
	}
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, paths); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"patients": 2, "conditions": 2, "observations": 2, "encounters": 1, "medications": 1, "procedures": 0, "immunizations": 0}
	if got := tablesOf(t, dir); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v", got)
	}
	// Rows without ids get content-derived ids: a re-import changes nothing.
	sum, err := Import(context.Background(), ImportOptions{DataDir: dir}, paths)
	if err != nil || sum.Generation != 0 {
		t.Fatalf("re-import: %+v %v", sum, err)
	}
	// Unknown column and unknown table name are errors.
	bad := write(t, in, "conditions.csv", "patient_id,code,onset\np1,1,2020-01-01\n")
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{bad}); err == nil || !strings.Contains(err.Error(), `conditions.csv:1: unknown column "onset"`) {
		t.Fatalf("err = %v", err)
	}
	bad = write(t, in, "stuff.csv", "patient_id\np1\n")
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{bad}); err == nil || !strings.Contains(err.Error(), "cannot tell the table") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir, Table: "patients"}, []string{bad}); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFile(t *testing.T) {
	in := t.TempDir()
	key := bytes.Repeat([]byte{0xab}, 32)
	hexFile := write(t, in, "hex.key", hex.EncodeToString(key)+"\n")
	rawFile := write(t, in, "raw.key", string(key))
	for _, f := range []string{hexFile, rawFile} {
		k, err := ReadKeyFile(f)
		if err != nil || !bytes.Equal(k, key) {
			t.Fatalf("%s: %x %v", f, k, err)
		}
	}
	loose := write(t, in, "loose.key", hex.EncodeToString(key))
	os.Chmod(loose, 0o640)
	if _, err := ReadKeyFile(loose); !errors.Is(err, ErrInsecureKey) {
		t.Fatalf("group-readable key: %v", err)
	}
	short := write(t, in, "short.key", "abcd")
	if _, err := ReadKeyFile(short); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("short key: %v", err)
	}

	// An encrypted store opens only with its key.
	dir := t.TempDir()
	p := write(t, in, "Patient.ndjson", basePatients)
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir, KeyFile: hexFile}, []string{p}); err != nil {
		t.Fatal(err)
	}
	if st, err := GetStatus(context.Background(), dir, rawFile); err != nil || st.Tables[cdm.TablePatients] != 2 {
		t.Fatalf("status with key: %v", err)
	}
	if _, err := GetStatus(context.Background(), dir, ""); err == nil {
		t.Fatal("opened an encrypted store without the key")
	}
	// The data is not on disk in the clear.
	filepath.WalkDir(KVDir(dir), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte("1980-06-30")) || bytes.Contains(b, []byte("d/r/ap1")) {
				t.Errorf("%s holds plaintext", path)
			}
		}
		return nil
	})
}

func TestSplitByCity(t *testing.T) {
	// The demo's use: parse without a store, split by city, import parts.
	in := t.TempDir()
	p := write(t, in, "Patient.ndjson", basePatients)
	c := write(t, in, "Condition.ndjson", baseConditions)
	res, err := ParseFiles(ParseOptions{RegionRule: "city"}, p, c)
	if err != nil {
		t.Fatal(err)
	}
	boston, _ := res.Records.FilterPatients(&res.Origins, func(id string) bool { return res.Addresses[id].City == "Boston" })
	if len(boston.Patients) != 1 || len(boston.Conditions) != 1 {
		t.Fatalf("split %+v", boston)
	}
	s, db, err := OpenStore(context.Background(), OpenOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := s.ImportRecords(context.Background(), boston, "boston"); err != nil {
		t.Fatal(err)
	}
	if s.Tables().NumPatients() != 1 {
		t.Fatal("patients")
	}
}

func TestCDMNDJSON(t *testing.T) {
	dir := t.TempDir()
	in := t.TempDir()
	paths := []string{
		write(t, in, "patients.ndjson", `{"patient_id":"p1","birth_date":"1970-01-01","sex":"female","region":"north","death_date":""}`+"\n"),
		write(t, in, "observations.ndjson", `{"id":"o1","patient_id":"p1","code":"4548-4","system":"http://loinc.org","date":"2020-01-01","value":7.5,"unit":"%"}`+"\n"+
			`{"id":"o2","patient_id":"p1","code":"4548-4","system":"http://loinc.org","date":"2020-02-01","value":null,"unit":""}`+"\n"),
	}
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, paths); err != nil {
		t.Fatal(err)
	}
	if got := tablesOf(t, dir); got[cdm.TablePatients] != 1 || got[cdm.TableObservations] != 2 {
		t.Fatalf("rows %v", got)
	}
	bad := write(t, in, "conditions.ndjson", `{"id":"c1","patient_id":"p1","code":"1","onset":"2020-01-01"}`+"\n")
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir}, []string{bad}); err == nil || !strings.Contains(err.Error(), `conditions.ndjson:1: onset: unknown key "onset"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestProcedures imports a hand-written FHIR Procedure and queries it as the
// node does: the procedures table is one declaration in cdm plus the FHIR
// decoder's mapping, and is then stored, listed and queryable like
// conditions.
func TestProcedures(t *testing.T) {
	dir := t.TempDir()
	in := t.TempDir()
	paths := []string{
		write(t, in, "Patient.ndjson", basePatients),
		write(t, in, "Procedure.ndjson",
			`{"resourceType":"Procedure","id":"x1","status":"completed","subject":{"reference":"Patient/p1"},`+
				`"code":{"coding":[{"system":"http://snomed.info/sct","code":"80146002","display":"Appendectomy"}]},"performedDateTime":"2019-04-05T10:00:00Z"}`+"\n"+
				`{"resourceType":"Procedure","id":"x2","status":"completed","subject":{"reference":"Patient/p2"},`+
				`"code":{"coding":[{"system":"http://snomed.info/sct","code":"80146002"}]},"performedPeriod":{"start":"2020-01-02","end":"2020-01-03"}}`+"\n"+
				`{"resourceType":"Procedure","id":"x3","subject":{"reference":"Patient/p2"},`+
				`"code":{"coding":[{"system":"http://snomed.info/sct","code":"73761001"}]}}`+"\n"),
	}
	sum, err := Import(context.Background(), ImportOptions{DataDir: dir}, paths)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Added[cdm.TableProcedures] != 3 || sum.Skipped["Procedure"] != 0 {
		t.Fatalf("summary %+v", sum)
	}
	st, err := GetStatus(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if top := st.TopCodes[cdm.TableProcedures]; st.Tables[cdm.TableProcedures] != 3 || len(top) != 2 || top[0].Value != "80146002" || top[0].Rows != 2 {
		t.Fatalf("status: %d procedures, top codes %v", st.Tables[cdm.TableProcedures], top)
	}
	if r := st.Dates[cdm.TableProcedures]["date"]; r.Min != "2019-04-05" || r.Max != "2020-01-02" || r.Missing != 1 {
		t.Errorf("procedure dates %+v", r)
	}
	s, db, err := OpenStore(context.Background(), OpenOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for sql, want := range map[string]float64{
		`SELECT COUNT(DISTINCT patient_id) FROM procedures WHERE code = '80146002'`:                                     2,
		`SELECT COUNT(*) FROM procedures WHERE code = '80146002' AND date >= '2020-01-01'`:                              1,
		`SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM procedures WHERE code = '73761001')`: 1,
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, plan.DefaultCatalogue())
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		e, err := s.Evaluate(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if got := e.Values()[0]; got != want {
			t.Errorf("%s: exact %v, want %v", sql, got, want)
		}
	}
}

// TestImportCodeMap: `node import --code-map` applies the admin's map, so a
// condition coded only in a local system is found by its SNOMED CT and its
// ICD-10 code; a bad map fails the import naming the file and line, before
// anything is written.
func TestImportCodeMap(t *testing.T) {
	dir, in := t.TempDir(), t.TempDir()
	paths := []string{
		write(t, in, "Patient.ndjson", basePatients),
		write(t, in, "Condition.ndjson", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},`+
			`"code":{"coding":[{"system":"urn:oid:1.2.3.4","code":"DM2"}]},"onsetDateTime":"2020-01-01"}`+"\n"),
	}
	bad := write(t, in, "bad.csv", "local_system,local_code,system,code\nurn:oid:1.2.3.4,DM2,,44054006\n")
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir, CodeMap: bad}, paths); err == nil || !strings.Contains(err.Error(), "bad.csv:2: system is empty") {
		t.Fatalf("bad map: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kv")); err == nil {
		t.Fatal("a bad code map left a store behind")
	}
	cm := write(t, in, "map.csv", "local_system,local_code,system,code,display\n"+
		"urn:oid:1.2.3.4,DM2,http://snomed.info/sct,44054006,Diabetes mellitus type 2\n"+
		"urn:oid:1.2.3.4,DM2,http://hl7.org/fhir/sid/icd-10,E119,\n")
	if _, err := Import(context.Background(), ImportOptions{DataDir: dir, CodeMap: cm}, paths); err != nil {
		t.Fatal(err)
	}
	s, db, err := OpenStore(context.Background(), OpenOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, sql := range []string{
		`SELECT COUNT(*) FROM conditions WHERE code = '44054006'`,
		`SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'`,
		`SELECT COUNT(*) FROM conditions WHERE code = 'DM2'`,
	} {
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, plan.DefaultCatalogue())
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		e, err := s.Evaluate(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if got := e.Values()[0]; got != 1 {
			t.Errorf("%s: %v, want 1", sql, got)
		}
	}
}

// TestStatusNamesCodes: the status a running daemon serves names the top
// codes that the network catalogue's value sets name.
func TestStatusNamesCodes(t *testing.T) {
	st := &Status{TopCodes: map[string][]Count{cdm.TableConditions: {{Value: "44054006", Rows: 3}, {Value: "X", Rows: 1}}}}
	v, err := terminology.Parse("dm.json", "dm", []byte(`{"resourceType":"ValueSet","name":"dm","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"44054006","display":"Diabetes mellitus type 2"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.ValueSets = []terminology.ValueSet{*v}
	st.NameCodes(cat)
	if cs := st.TopCodes[cdm.TableConditions]; cs[0].Name != "Diabetes mellitus type 2" || cs[1].Name != "" {
		t.Errorf("%+v", cs)
	}
}
