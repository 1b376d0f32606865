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

// TestNodeNetwork: [network] mode = "outbound" needs the coordinator's
// address and refuses every key that would open something reachable from
// another machine, naming it; dialled mode (the default) refuses the
// outbound keys.
func TestNodeNetwork(t *testing.T) {
	const outbound = "[network]\nmode = \"outbound\"\ncoordinator = \"coord.example.org:7443\"\n"
	for text, want := range map[string]string{
		"":                                "",
		"[network]\nmode = \"dialled\"\n": "",
		outbound:                          "",
		"ops_listen = \"127.0.0.1:9091\"\n" + outbound:                          "",
		"ops_listen = \"[::1]:9091\"\n" + outbound:                              "",
		"ops_listen = \"off\"\n" + outbound:                                     "",
		"[network]\nmode = \"outbound\"\n":                                      "[network] coordinator is required",
		"[network]\nmode = \"outbound\"\ncoordinator = \"coord.example.org\"\n": "want host:port",
		"listen = \"0.0.0.0:7444\"\n" + outbound:                                "listen is \"0.0.0.0:7444\"",
		"advertise = \"10.0.0.5:7444\"\n" + outbound:                            "advertise is",
		"ops_listen = \"0.0.0.0:9091\"\n" + outbound:                            "ops_listen \"0.0.0.0:9091\" is not a loopback address",
		outbound + "[gossip]\nkey_file = \"k\"\n":                               "[gossip] is present",
		"[network]\nmode = \"inbound\"\n":                                       "[network] mode \"inbound\"",
		"[network]\ncoordinator = \"c:7443\"\n":                                 "are for mode = \"outbound\"",
	} {
		var n Node
		if err := load(t, "data_dir = \"d\"\n"+text, &n); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		err := n.CheckNetwork()
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", text, err)
		case want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want ErrInvalid with %q", text, err, want)
		}
	}
	var n Node
	if err := load(t, "data_dir = \"d\"\n"+outbound, &n); err != nil || !n.Outbound() || n.Network.Coordinator != "coord.example.org:7443" {
		t.Fatalf("outbound: %v %+v", err, n.Network)
	}
}
