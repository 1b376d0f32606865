package admin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CheckDataDir: what each kind of command accepts, and that the refusal
// says what was found and what was expected.
func TestCheckDataDir(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			p := filepath.Join(d, f)
			if strings.HasSuffix(f, "/") {
				err := os.Mkdir(p, 0o700)
				if err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	missing := filepath.Join(root, "missing")
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o600)
	empty, foreign := mk("empty"), mk("foreign", "notes.txt")
	noStore, node := mk("nostore", "audit.log", "ledger.hwm"), mk("node", "kv/", "audit.log")
	for _, c := range []struct {
		dir  string
		need DirNeed
		kind error // nil: accepted
		says string
	}{
		{missing, NeedStore, ErrDataDirMissing, "fedstat node import --data-dir " + missing},
		{missing, NeedDirectory, ErrDataDirMissing, "mkdir -m 700 " + missing},
		{file, NeedNode, ErrNotDataDir, "is a file"},
		{empty, NeedStore, ErrNotDataDir, "is empty"},
		{empty, NeedNode, ErrNotDataDir, "expected a node's data directory: kv/"},
		{empty, NeedDirectory, nil, ""},
		{foreign, NeedDirectory, ErrNotDataDir, "it holds notes.txt"},
		{noStore, NeedNode, nil, ""},
		{noStore, NeedStore, ErrNotDataDir, "has no store (" + filepath.Join(noStore, "kv") + " is missing)"},
		{node, NeedStore, nil, ""},
		{node, NeedDirectory, nil, ""},
	} {
		err := CheckDataDir(c.dir, c.need)
		if c.kind == nil {
			if err != nil {
				t.Errorf("%s (need %d): %v, want it accepted", filepath.Base(c.dir), c.need, err)
			}
			continue
		}
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), c.dir) {
			t.Errorf("%s (need %d): %v, want %v saying %q", filepath.Base(c.dir), c.need, err, c.kind, c.says)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckDataDir made %s", missing)
	}
}
