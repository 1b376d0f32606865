package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/node/check"
)

// `fedstat node check`: one line per check, exit status 1 on a failure,
// --format json; `node backup` and `node restore` on an imported node.
func TestNodeCheckBackupRestoreCommands(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "patients.csv")
	os.WriteFile(csv, []byte("patient_id,birth_date,sex,region\np1,1950-01-01,F,north\np2,1960-02-02,M,south\n"), 0o600)
	data := filepath.Join(dir, "node")
	if out, err := runFedstat(t, "node", "import", "--data-dir", data, csv); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err := runFedstat(t, "node", "check", "--data-dir", data)
	if err != nil || !strings.Contains(out, "ok   store") || !strings.Contains(out, "ok   ledger") {
		t.Fatalf("check of a fresh node: %v\n%s", err, out)
	}

	bk := filepath.Join(dir, "b.fsbk")
	if out, err := runFedstat(t, "node", "backup", "--data-dir", data, bk); err != nil || !strings.Contains(out, "NOT encrypted") {
		t.Fatalf("backup: %v\n%s", err, out)
	}

	manifest := filepath.Join(data, "kv", "MANIFEST")
	os.Remove(manifest)
	out, err = runFedstat(t, "node", "check", "--data-dir", data)
	if err == nil || !strings.Contains(out, "FAIL store       "+manifest) || !strings.Contains(out, "fix: `fedstat node restore") ||
		!strings.Contains(out, "[the daemon refuses to start]") {
		t.Fatalf("check without the MANIFEST: %v\n%s", err, out)
	}
	out, _ = runFedstat(t, "node", "check", "--data-dir", data, "--format", "json")
	var r check.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.OK() || r.Results[0].Check == "" {
		t.Fatalf("check --format json: %v\n%s", err, out)
	}

	if out, err := runFedstat(t, "node", "restore", "--data-dir", data, bk); err != nil || !strings.Contains(out, "moved aside") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if out, err := runFedstat(t, "node", "check", "--data-dir", data); err != nil {
		t.Fatalf("check after the restore: %v\n%s", err, out)
	}
	if _, err := runFedstat(t, "node", "check"); err == nil {
		t.Error("check without --data-dir or --config accepted")
	}
}
