package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// dryRunBundle: 2 patients (one without a city), 3 conditions (one of an
// unknown patient, one with an impossible date), 2 Claims, and an NDJSON
// file with an observation, a malformed line and an observation of the
// unknown patient.
func dryRunInput(t *testing.T, dir string) []string {
	t.Helper()
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[
{"resource":{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1950-01-01","address":[{"state":"MA","city":"Boston"}]}},
{"resource":{"resourceType":"Patient","id":"p2","gender":"male","birthDate":"1960-01-01","address":[{"state":"MA"}]}},
{"resource":{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2020-01-01"}},
{"resource":{"resourceType":"Condition","id":"c2","subject":{"reference":"Patient/p9"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2020-01-01"}},
{"resource":{"resourceType":"Condition","id":"c3","subject":{"reference":"Patient/p1"},"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]},"onsetDateTime":"2020-13-01"}},
{"resource":{"resourceType":"Claim","id":"x1"}},
{"resource":{"resourceType":"Claim","id":"x2"}}
]}`
	obs := `{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p2"},"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"effectiveDateTime":"2021-05-01","valueQuantity":{"value":120,"unit":"mm[Hg]"}}
{"resourceType":"Observation", "id":
{"resourceType":"Observation","id":"o2","status":"final","subject":{"reference":"Patient/p9"},"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"effectiveDateTime":"2021-05-01","valueQuantity":{"value":130,"unit":"mm[Hg]"}}
`
	paths := []string{filepath.Join(dir, "bundle.json"), filepath.Join(dir, "Observation.ndjson")}
	for i, text := range []string{bundle, obs} {
		if err := os.WriteFile(paths[i], []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// A dry run into a directory that does not exist: exact counts by table,
// skips and bad records by type and reason, and nothing written (no
// directory, no quarantine file).
func TestDryRunImportWritesNothing(t *testing.T) {
	dir := t.TempDir()
	paths := dryRunInput(t, dir)
	data := filepath.Join(dir, "node")
	quarantine := filepath.Join(dir, "bad.jsonl")
	d, err := DryRunImport(context.Background(), ImportOptions{DataDir: data, RegionRule: "city", Quarantine: quarantine}, paths)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, tb := range d.Tables {
		got[tb.Table] = tb.Records
	}
	if got["patients"] != 2 || got["conditions"] != 1 || got["observations"] != 1 || d.Records() != 4 {
		t.Errorf("would import %v, want 2 patients, 1 condition, 1 observation", got)
	}
	if want := []DryRunCount{{"Claim", reasonNotInModel, 2}}; !reflect.DeepEqual(d.Skipped, want) {
		t.Errorf("skipped %v, want %v", d.Skipped, want)
	}
	unknown := "its patient is not in these files (and the data directory has no store yet)"
	want := []DryRunCount{
		{"Condition", unknown, 1},
		{"Condition", "impossible date (resource.onsetDateTime)", 1},
		{"Observation", unknown, 1},
		{"Observation", "malformed JSON", 1},
	}
	if d.BadTotal != 4 || !sameCounts(d.Bad, want) || len(d.Errors) != 4 {
		t.Errorf("bad %d %v (%d listed), want 4: %v", d.BadTotal, d.Bad, len(d.Errors), want)
	}
	if d.Store != "missing" || d.NoRegion != 1 || d.UnknownPatients != 2 || d.WouldFail {
		t.Errorf("store %q, no region %d, unknown patients %d, would fail %v", d.Store, d.NoRegion, d.UnknownPatients, d.WouldFail)
	}
	for _, p := range []string{data, quarantine} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a dry run made %s (%v)", p, err)
		}
	}

	// Without a quarantine file the import would fail; the real import
	// then reads what the dry run said.
	d, err = DryRunImport(context.Background(), ImportOptions{DataDir: data, RegionRule: "city"}, paths)
	if err != nil || !d.WouldFail {
		t.Fatalf("dry run without a quarantine: %v, would fail %v", err, d.WouldFail)
	}
	sum, err := Import(context.Background(), ImportOptions{DataDir: data, RegionRule: "city", Quarantine: quarantine}, paths)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range d.Tables {
		if sum.Read[tb.Table] != tb.Records || sum.Added[tb.Table] != tb.Records {
			t.Errorf("%s: the dry run said %d, the import read %d and added %d", tb.Table, tb.Records, sum.Read[tb.Table], sum.Added[tb.Table])
		}
	}
	if sum.Bad != d.BadTotal || !reflect.DeepEqual(sum.Skipped, map[string]int{"Claim": 2}) {
		t.Errorf("the import had %d bad records and skipped %v; the dry run said %d", sum.Bad, sum.Skipped, d.BadTotal)
	}
}

// A dry run next to a store: it does not open it (it works while the
// store is held, as by a running daemon), changes none of its files, and
// counts records of patients not in the files apart instead of as bad.
func TestDryRunImportLeavesStoreAlone(t *testing.T) {
	dir := t.TempDir()
	paths := dryRunInput(t, dir)
	data := filepath.Join(dir, "node")
	if _, err := Import(context.Background(), ImportOptions{DataDir: data, RegionRule: "city", Quarantine: filepath.Join(dir, "q.jsonl")}, paths); err != nil {
		t.Fatal(err)
	}
	_, db, err := OpenStore(context.Background(), OpenOptions{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	before := listing(t, data)
	d, err := DryRunImport(context.Background(), ImportOptions{DataDir: data, RegionRule: "city"}, paths)
	if err != nil {
		t.Fatalf("dry run while the store is open elsewhere: %v", err)
	}
	if after := listing(t, data); !reflect.DeepEqual(before, after) {
		t.Errorf("the dry run changed the data directory:\nbefore %v\nafter  %v", before, after)
	}
	if d.Store != "present" || d.UnknownPatients != 2 || d.BadTotal != 2 || d.Records() != 6 {
		t.Errorf("store %q, unknown patients %d, bad %d (%v), records %d; want present, 2, 2, 6", d.Store, d.UnknownPatients, d.BadTotal, d.Bad, d.Records())
	}
}

func sameCounts(a, b []DryRunCount) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[DryRunCount]int{}
	for _, c := range a {
		m[c]++
	}
	for _, c := range b {
		if m[c]--; m[c] < 0 {
			return false
		}
	}
	return true
}

// listing is every file under dir with its size and modification time.
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		out[path] = fmt.Sprintf("%d %s", info.Size(), info.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDryRunSkipReasons: the dry run says why each kind of skip happens.
func TestDryRunSkipReasons(t *testing.T) {
	for key, want := range map[string]DryRunCount{
		"Claim":                        {"Claim", reasonNotInModel, 2},
		"Condition (entered-in-error)": {"Condition", "status entered-in-error: not imported (docs/data.md, FHIR elements)", 2},
		"Medication":                   {"Medication", reasonMedication, 2},
		"(entry without resource)":     {"(entry without resource)", reasonNoResource, 2},
	} {
		if got := skipReason(key, 2); got != want {
			t.Errorf("%s: %+v, want %+v", key, got, want)
		}
	}
}
