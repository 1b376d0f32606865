package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, text string, cfg any) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path, cfg, []string{})
}

// TestLinkage: [linkage] identifier_system is read by both daemons' configs
// (the common network section), validated when the table is present, and
// absent means no linkage.
func TestLinkage(t *testing.T) {
	const sys = "urn:oid:2.16.156.10011.1.1"
	var n Node
	if err := load(t, "data_dir = \"d\"\n[linkage]\nidentifier_system = \""+sys+"\"\n", &n); err != nil {
		t.Fatal(err)
	}
	if n.IdentifierSystem() != sys || n.Linkage == nil {
		t.Fatalf("node: %q", n.IdentifierSystem())
	}
	var c Coordinator
	if err := load(t, "[linkage]\nidentifier_system = \""+sys+"\"\n", &c); err != nil || c.IdentifierSystem() != sys {
		t.Fatalf("coordinator: %q, %v", c.IdentifierSystem(), err)
	}
	var none Node
	if err := load(t, "data_dir = \"d\"\n", &none); err != nil || none.IdentifierSystem() != "" || none.Linkage != nil {
		t.Fatalf("no [linkage]: %q, %v", none.IdentifierSystem(), err)
	}
	for text, want := range map[string]string{
		"[linkage]\n":                                          "identifier_system is required",
		"[linkage]\nidentifier_system = \"\"\n":                "identifier_system is required",
		"[linkage]\nidentifier_system = \"urn:oid:1 2\"\n":     "white space",
		"[linkage]\nidentifier_system = \"urn:x\"\nmode = 1\n": "unknown keys linkage.mode",
		"[linkage]\nidentifier_system = 7\n":                   "",
	} {
		var n Node
		err := load(t, text, &n)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want ErrInvalid with %q", text, err, want)
		}
	}
}
