package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/node/admin"
)

// nodeDirCommands are the `fedstat node` subcommands that take --data-dir,
// but import (which makes a new data directory) and the daemon itself;
// each gets the directory as its last flag and then its arguments.
var nodeDirCommands = []struct {
	name string
	args func(dir string) []string
	// readOnly commands also refuse an empty or foreign directory.
	readOnly bool
}{
	{"status", func(string) []string { return nil }, true},
	{"query", func(string) []string { return []string{"SELECT COUNT(*) FROM patients"} }, true},
	{"check", func(string) []string { return nil }, true},
	{"backup", func(dir string) []string { return []string{filepath.Join(filepath.Dir(dir), "out.fsbk")} }, true},
	{"approvals", func(string) []string { return nil }, true},
	{"approve", func(string) []string { return []string{"q-1"} }, true},
	{"deny", func(string) []string { return []string{"q-1"} }, true},
	{"reset-audit", func(string) []string { return []string{"--reason", "test"} }, true},
	{"restore", func(dir string) []string { return []string{filepath.Join(filepath.Dir(dir), "in.fsbk")} }, false},
}

// Issue 16: `fedstat node query --data-dir /typo "SQL"` printed 0, exited
// 0 and made the directory. Every admin command that takes --data-dir now
// names the missing directory, fails, and creates nothing.
func TestNodeCommandsRefuseMissingDataDir(t *testing.T) {
	for _, c := range nodeDirCommands {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "typo")
			args := append([]string{"node", c.name, "--data-dir", dir}, c.args(dir)...)
			out, err := runFedstat(t, args...)
			if err == nil {
				t.Fatalf("fedstat %s: accepted a data directory that does not exist:\n%s", strings.Join(args, " "), out)
			}
			if !errors.Is(err, admin.ErrDataDirMissing) || !strings.Contains(err.Error(), "data directory "+dir+" does not exist") {
				t.Errorf("fedstat node %s: %v, want it to say that %s does not exist", c.name, err, dir)
			}
			if strings.TrimSpace(out) != "" {
				t.Errorf("fedstat node %s printed %q besides the error", c.name, out)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("fedstat node %s created %s (%v)", c.name, dir, err)
			}
		})
	}
}

// An empty directory or someone else's is not a node's: the commands that
// read a node refuse it, saying what they expected, and write nothing in
// it. Restore fills an empty directory (a new machine) but not a foreign
// one.
func TestNodeCommandsRefuseForeignDataDir(t *testing.T) {
	for _, c := range nodeDirCommands {
		t.Run(c.name, func(t *testing.T) {
			empty := filepath.Join(t.TempDir(), "empty")
			foreign := filepath.Join(t.TempDir(), "home")
			for _, d := range []string{empty, foreign} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, d := range []struct{ dir, want string }{{empty, " is empty: not a fedstat data directory"}, {foreign, " is not a fedstat data directory: it holds notes.txt"}} {
				if !c.readOnly && d.dir == empty {
					continue // restore into an empty directory: TestNodeRestoreIntoNewDirectory
				}
				args := append([]string{"node", c.name, "--data-dir", d.dir}, c.args(d.dir)...)
				_, err := runFedstat(t, args...)
				if err == nil || !errors.Is(err, admin.ErrNotDataDir) || !strings.Contains(err.Error(), d.dir+d.want) || !strings.Contains(err.Error(), "kv/") {
					t.Errorf("fedstat %s: %v, want %q and what a data directory holds", strings.Join(args, " "), err, d.dir+d.want)
				}
				ents, _ := os.ReadDir(d.dir)
				if len(ents) > 1 || (len(ents) == 1 && ents[0].Name() != "notes.txt") {
					t.Errorf("fedstat node %s wrote into %s: %v", c.name, d.dir, ents)
				}
			}
		})
	}
}

// A node's directory whose store is gone (rm -rf kv) is refused by status
// and query, which would otherwise make an empty store and answer 0; check
// still looks at it and names the missing store.
func TestNodeQueryRefusesNodeWithoutStore(t *testing.T) {
	dir := t.TempDir()
	data := importPatients(t, dir)
	if err := os.RemoveAll(filepath.Join(data, "kv")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "audit.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"query", "SELECT COUNT(*) FROM patients"}} {
		out, err := runFedstat(t, append([]string{"node", args[0], "--data-dir", data}, args[1:]...)...)
		if !errors.Is(err, admin.ErrNotDataDir) || !strings.Contains(err.Error(), "has no store") || !strings.Contains(err.Error(), "fedstat node check") {
			t.Errorf("node %s on a node without its store: %v\n%s", args[0], err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "kv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command made the store again (%v)", err)
	}
	if out, err := runFedstat(t, "node", "check", "--data-dir", data); errors.Is(err, admin.ErrNotDataDir) || !strings.Contains(out, "store") {
		t.Errorf("check of a node without its store: %v\n%s", err, out)
	}
}

// Restore onto a new machine: an empty directory the admin made is filled.
func TestNodeRestoreIntoNewDirectory(t *testing.T) {
	dir := t.TempDir()
	data := importPatients(t, dir)
	bk := filepath.Join(dir, "b.fsbk")
	if out, err := runFedstat(t, "node", "backup", "--data-dir", data, bk); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	fresh := filepath.Join(dir, "fresh")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := runFedstat(t, "node", "restore", "--data-dir", fresh, bk); err != nil {
		t.Fatalf("restore into an empty directory: %v\n%s", err, out)
	}
	out, err := runFedstat(t, "node", "query", "--data-dir", fresh, "--format", "csv", "SELECT COUNT(*) FROM patients")
	if err != nil || !strings.Contains(out, "2") {
		t.Fatalf("query of the restored node: %v\n%s", err, out)
	}
}

// importPatients imports two patients into dir/node and returns it.
func importPatients(t *testing.T, dir string) string {
	t.Helper()
	csv := filepath.Join(dir, "patients.csv")
	if err := os.WriteFile(csv, []byte("patient_id,birth_date,sex,region\np1,1950-01-01,F,north\np2,1960-02-02,M,south\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "node")
	if out, err := runFedstat(t, "node", "import", "--data-dir", data, csv); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	return data
}
