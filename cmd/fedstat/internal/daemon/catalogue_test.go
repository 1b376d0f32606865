package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/queries/plan"
)

// writePKI makes a CA and the identities names in dir/pki.
func writePKI(t *testing.T, dir string, names map[string]pki.Role) string {
	t.Helper()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.InitDir(pkiDir, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, role := range names {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteIdentity(pkiDir, id); err != nil {
			t.Fatal(err)
		}
	}
	return pkiDir
}

// TestDaemonsRefuseConfigWithoutMaxNodesPerPatient (issue 13, item 3): a
// coordinator or node config without max_nodes_per_patient is refused,
// naming the key, the file and the reason, and nothing starts.
func TestDaemonsRefuseConfigWithoutMaxNodesPerPatient(t *testing.T) {
	dir := t.TempDir()
	pkiDir := writePKI(t, dir, map[string]pki.Role{"node-1": pki.RoleNode, "coordinator": pki.RoleCoordinator})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name string
		run  func(ctx context.Context, path string) error
	}{
		{"node-1", func(ctx context.Context, path string) error {
			var cfg config.Node
			if err := config.Load(path, &cfg, []string{}); err != nil {
				return err
			}
			return RunNode(ctx, &cfg, log, nil)
		}},
		{"coordinator", func(ctx context.Context, path string) error {
			var cfg config.Coordinator
			if err := config.Load(path, &cfg, []string{}); err != nil {
				return err
			}
			return RunCoordinator(ctx, &cfg, log, nil)
		}},
	} {
		path := filepath.Join(dir, c.name+".toml")
		text := `name = "` + c.name + `"
data_dir = "` + filepath.Join(dir, c.name) + `"
pki_dir = "` + pkiDir + `"
listen = "127.0.0.1:0"
http_listen = "off"
ops_listen = "off"
regions = ["north", "south"]
`
		if c.name != "coordinator" {
			text = strings.Replace(text, "http_listen = \"off\"\n", "", 1)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.run(ctx, path)
		cancel()
		if !errors.Is(err, config.ErrInvalid) {
			t.Fatalf("%s without max_nodes_per_patient: got %v, want a refusal", c.name, err)
		}
		for _, want := range []string{"max_nodes_per_patient", path, "hospital and an insurer", "noise", "exactly one node"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: the refusal does not say %q: %v", c.name, want, err)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, c.name)); !os.IsNotExist(err) {
			t.Errorf("%s: the refused daemon made its data directory (%v)", c.name, err)
		}
	}
}

// TestMaxNodesPerPatientScalesNoise: the config's max_nodes_per_patient
// reaches the catalogue the daemons plan with; with K = 3 a query's
// sensitivities and every node's sigma are 3 times those with K = 1, and
// K = 0 or below is refused.
func TestMaxNodesPerPatientScalesNoise(t *testing.T) {
	build := func(k int) *plan.Plan {
		t.Helper()
		cat, err := NetworkCatalogue(&config.Common{Regions: []string{"north", "south"}, MaxNodesPerPatient: k})
		if err != nil {
			t.Fatal(err)
		}
		if cat.MaxNodesPerPatient != k {
			t.Fatalf("catalogue has MaxNodesPerPatient %d, want %d", cat.MaxNodesPerPatient, k)
		}
		p, err := plan.Build(plan.Request{SQL: "SELECT region, COUNT(*) FROM conditions WHERE code = '44054006' GROUP BY region",
			Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2025, 1, 1)}, cat)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	one, three := build(1), build(3)
	near := func(a, b float64) bool { return a > b*0.9999 && a < b*1.0001 }
	for i, m := range three.Measures() {
		m1 := one.Measures()[i]
		if !near(m.L2, 3*m1.L2) || !near(m.L1, 3*m1.L1) {
			t.Errorf("measure %d: sensitivities L2 %v, L1 %v with K = 3; %v, %v with K = 1: want 3 times", i, m.L2, m.L1, m1.L2, m1.L1)
		}
		if !near(three.NodeSigmas()[i], 3*one.NodeSigmas()[i]) {
			t.Errorf("measure %d: node sigma %v with K = 3, %v with K = 1: want 3 times", i, three.NodeSigmas()[i], one.NodeSigmas()[i])
		}
	}
	if one.Rho() != three.Rho() {
		t.Errorf("the charged rho changed with K: %v, %v", one.Rho(), three.Rho())
	}
	for _, k := range []int{0, -1} {
		if _, err := NetworkCatalogue(&config.Common{MaxNodesPerPatient: k}); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "max_nodes_per_patient") {
			t.Errorf("max_nodes_per_patient %d: %v, want a refusal naming the key", k, err)
		}
	}
}

// TestCatalogueValueSets: value_sets files become the catalogue's value
// sets, and a bad one stops the daemon naming the config and the file.
func TestCatalogueValueSets(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "asthma.json")
	if err := os.WriteFile(good, []byte(`{"resourceType":"ValueSet","name":"asthma","compose":{"include":[{"system":"http://snomed.info/sct","concept":[{"code":"195967001"}]}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := NetworkCatalogue(&config.Common{MaxNodesPerPatient: 1, ValueSets: []string{good}})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := cat.ValueSet("asthma"); !ok || len(v.Include) != 1 {
		t.Fatalf("value sets %+v", cat.ValueSets)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"items":[{"concept":{"CONCEPT_CODE":"73211009","VOCABULARY_ID":"SNOMED"},"includeDescendants":true}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = NetworkCatalogue(&config.Common{MaxNodesPerPatient: 1, ValueSets: []string{bad}, Source: "node.toml"})
	if err == nil || !strings.Contains(err.Error(), "node.toml: value_sets:") || !strings.Contains(err.Error(), "bad.json: items[0]") {
		t.Errorf("err = %v", err)
	}
}
