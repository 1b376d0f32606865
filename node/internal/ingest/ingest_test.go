package ingest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/test/testkit"
)

var modelTable = map[string]string{
	"Patient":           cdm.TablePatients,
	"Condition":         cdm.TableConditions,
	"Observation":       cdm.TableObservations,
	"Encounter":         cdm.TableEncounters,
	"MedicationRequest": cdm.TableMedications,
	"Procedure":         cdm.TableProcedures,
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

// TestBulkNDJSON reads a directory of gzip-compressed FHIR Bulk Data files
// (moved here from the fhir package with the reading of directories).
func TestBulkNDJSON(t *testing.T) {
	dir := testkit.SharedData(t, "fhir-bulk-ndjson-10")
	want := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.gz"))
	for _, fn := range files {
		f, err := os.Open(fn)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var r struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			want[r.ResourceType]++
		}
		f.Close()
	}
	rule, _ := fhir.ParseRegionRule("postal:3")
	res, err := Read(context.Background(), Options{Region: rule}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("%d errors, first: %v", len(res.Errors), res.Errors[0])
	}
	if want["Patient"] == 0 {
		t.Fatalf("independent count: %v", want)
	}
	checkCounts(t, res, want)
	for _, p := range res.Records.Patients {
		if len(p.Region) > 3 {
			t.Errorf("region %q longer than the postal:3 rule allows", p.Region)
		}
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]format{
		"b.json": formatFHIRJSON, "B.JSON.GZ": formatFHIRJSON, "Patient.ndjson": formatFHIRNDJSON,
		"Condition.000.ndjson.gz": formatFHIRNDJSON, "x.jsonl": formatFHIRNDJSON, "patients.ndjson": formatCDMNDJSON,
		"site1_conditions.jsonl": formatCDMNDJSON, "a-medications.ndjson.gz": formatCDMNDJSON, "conditions.csv": formatCDMCSV,
		"stuff.csv.gz": formatCDMCSV, "all.tar.gz": formatTar, "all.tgz": formatTar, "all.tar": formatTar,
		"notes.txt": formatUnknown, "x.gz": formatUnknown,
	} {
		if got, _ := formatOf(name); got != want {
			t.Errorf("formatOf(%q) = %d, want %d", name, got, want)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func gz(data string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(data))
	w.Close()
	return b.String()
}

// TestSources reads every kind of source and format into one batch: a
// directory (dot files skipped) holding a CSV file, a gzip-compressed FHIR
// Bundle, and a .tar.gz of FHIR NDJSON and CDM-row NDJSON; the patient
// check names the field of each format.
func TestSources(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "patients.csv"), "patient_id,sex\np1,F\n")
	writeFile(t, filepath.Join(dir, ".hidden.csv"), "garbage")
	writeFile(t, filepath.Join(dir, "b.json.gz"), gz(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p2"}},`+
		`{"resource":{"resourceType":"Condition","id":"c9","subject":{"reference":"Patient/ghost"},"code":{"coding":[{"code":"1"}]}}}]}`))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, m := range []struct{ name, data string }{
		{"Condition.ndjson", `{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"code":"1"}]}}` + "\n" +
			`{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/nobody"},"code":{"coding":[{"code":"1"}]}}` + "\n"},
		{"x/observations.ndjson", `{"id":"o1","patient_id":"p2","code":"4548-4","value":7}` + "\n"},
		{"x/conditions.csv", "patient_id,code\np2,5\nzz,6\n"},
		{"x/notes.txt", "?"},
	} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(m.data))
	}
	tw.Close()
	writeFile(t, filepath.Join(dir, "more.tar.gz"), gz(tb.String()))

	var read int64
	res, err := Read(context.Background(), Options{OnRead: func(n int64) { read += n }}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	// The dot file counts in the size on disk but is not read.
	if res.Files != 5 || read != res.Bytes-int64(len("garbage")) {
		t.Errorf("files %d (want 5), bytes read %d of %d", res.Files, read, res.Bytes)
	}
	if len(res.Errors) != 1 || !errors.Is(res.Errors[0], ErrFormat) || !strings.HasSuffix(res.Errors[0].File, "more.tar.gz/x/notes.txt") {
		t.Fatalf("errors %v", res.Errors)
	}
	res.CheckPatients(nil)
	var got []string
	for _, e := range res.Errors[1:] {
		got = append(got, filepath.Base(e.File)+" "+e.Path)
	}
	want := []string{"b.json.gz resource.subject.reference", "Condition.ndjson subject.reference", "conditions.csv patient_id"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("unknown patients named\n got %v\nwant %v", got, want)
	}
	counts := res.Records.TableCounts()
	if counts[cdm.TablePatients] != 2 || counts[cdm.TableConditions] != 2 || counts[cdm.TableObservations] != 1 {
		t.Errorf("counts %v", counts)
	}
	if o := res.Origins.Of(cdm.TableConditions); len(o) != 2 || !strings.HasSuffix(o[1].File, "x/conditions.csv") || o[1].Line != 2 {
		t.Errorf("origins of the kept conditions %v", o)
	}
}

// TestIdentifiersColumn: the patients' optional identifiers column is read
// from CDM CSV and CDM NDJSON (declared once in the table registry), with
// its system|value items as written; files without it still import.
func TestIdentifiersColumn(t *testing.T) {
	dir := t.TempDir()
	const ids = `http://hospital.example/mrn|MRN-1,urn:oid:2.16.156.10011.1.1|110101199003074512`
	files := map[string]string{
		"a_patients.csv":    "patient_id,sex,identifiers\np1,female,\"" + ids + "\"\np2,male,\n",
		"b_patients.ndjson": `{"patient_id":"p3","identifiers":"` + ids + `"}` + "\n",
		"c_patients.csv":    "patient_id,sex\np4,female\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Read(context.Background(), Options{}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors[0])
	}
	got := map[string]string{}
	for _, p := range res.Records.Patients {
		got[p.ID] = p.Identifiers
	}
	want := map[string]string{"p1": ids, "p2": "", "p3": ids, "p4": ""}
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			t.Errorf("%s: identifiers %q (present %v), want %q", id, g, ok, w)
		}
	}
}
