package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runFedstat(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestNodeImportStudy(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "trial.toml")
	if err := os.WriteFile(schema, []byte("name = \"trial\"\nid = \"pid\"\n[[columns]]\nname = \"x\"\ntype = \"int\"\nmin = 0\nmax = 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("pid,x\np1,1.5\np2,a\np3,2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	// --max-errors applies to a study import.
	_, err := runFedstat(t, "node", "import", "--data-dir", data, "--study", "trial", "--schema", schema, "--max-errors", "1", bad)
	if err == nil || !strings.Contains(err.Error(), "2 bad record(s)") || !strings.Contains(err.Error(), "and 1 more") {
		t.Fatalf("bad study: %v, want 2 bad records with 1 listed", err)
	}
	if strings.Contains(err.Error(), "--quarantine") {
		t.Errorf("bad study: %v suggests --quarantine, which study imports do not have", err)
	}
	// CDM-only flags are refused rather than ignored.
	var ue *usageError
	if _, err := runFedstat(t, "node", "import", "--data-dir", data, "--study", "trial", "--schema", schema, "--quarantine", filepath.Join(dir, "q.jsonl"), bad); !errors.As(err, &ue) {
		t.Errorf("--quarantine with --study: %v, want a usage error", err)
	}
	good := filepath.Join(dir, "good.csv")
	if err := os.WriteFile(good, []byte("pid,x\np1,1\np2,12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runFedstat(t, "node", "import", "--data-dir", data, "--study", "trial", "--schema", schema, good)
	if err != nil || !strings.Contains(out, "study trial: 2 rows") || !strings.Contains(out, "x: 1 values outside the schema range") {
		t.Fatalf("good study: %v\n%s", err, out)
	}
}
