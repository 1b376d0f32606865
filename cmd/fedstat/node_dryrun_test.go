package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/node/admin"
)

// `fedstat node import --dry-run`: readable text or JSON, exit status 1
// when the import would fail, and no data directory made.
func TestNodeImportDryRun(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "patients.csv")
	if err := os.WriteFile(csv, []byte("patient_id,birth_date,sex,region\np1,1950-01-01,F,north\np2,1960-13-02,M,south\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "node")
	out, err := runFedstat(t, "node", "import", "--dry-run", "--data-dir", data, csv)
	if err == nil || !strings.Contains(err.Error(), "would fail: 1 bad record(s)") {
		t.Errorf("dry run of a file with a bad record: %v, want a failure", err)
	}
	for _, want := range []string{"DRY RUN: nothing was written.", data + " does not exist yet", "patients  1  impossible date (birth_date)",
		patientsLine(csv), "outcome: the import would FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run text lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^patients +1 +Patient$`).MatchString(out) {
		t.Errorf("dry run text lacks the patients row:\n%s", out)
	}
	out, err = runFedstat(t, "node", "import", "--dry-run", "--format", "json", "--quarantine", filepath.Join(dir, "q.jsonl"), "--data-dir", data, csv)
	var d admin.DryRun
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.BadTotal != 1 || d.Records() != 1 || d.WouldFail {
		t.Errorf("dry run --format json with a quarantine: %v %+v\n%s", err, d, out)
	}
	for _, p := range []string{data, filepath.Join(dir, "q.jsonl")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the dry run made %s (%v)", p, err)
		}
	}
	if _, err := runFedstat(t, "node", "import", "--dry-run", "--data-dir", data, "--study", "s", "--schema", "s.toml", csv); err == nil {
		t.Error("--dry-run with --study accepted")
	}
}

// patientsLine is the located error of the bad row.
func patientsLine(csv string) string { return csv + ":3: birth_date" }
