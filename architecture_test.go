package fedstat_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/fedstat/fedstat"

// importRule says which packages may import a path: Path matches an import
// path (a module or package prefix); only packages under one of Allowed (of
// this module, as paths relative to its root) may import it.
type importRule struct {
	Path    string
	Allowed []string
	Why     string
}

// heavyDeps: one wrapper package (tree) per heavy dependency (STYLE.md,
// habit 3). The README's layout section says the same.
var heavyDeps = []importRule{
	{"github.com/tuneinsight/lattigo", []string{"crypto"}, "only crypto/ sees Lattigo, so the move to v6 stays there"},
	{"github.com/gtank/ristretto255", []string{"crypto/linkage", "crypto/rangeproof"}, "crypto/linkage and crypto/rangeproof own the prime-order group (ristretto255)"},
	{"filippo.io/edwards25519", []string{"crypto/linkage"}, "crypto/linkage owns the record-linkage group (edwards25519 under ristretto255)"},
	{"filippo.io/nistec", []string{"crypto/dleq"}, "crypto/dleq owns the P-256 group arithmetic of a complaint's proof"},
	{"github.com/google/differential-privacy", []string{"queries/dp"}, "queries/dp is the one place that draws DP noise"},
	{"github.com/dgraph-io/badger", []string{"internal/kv"}, "internal/kv owns Badger (damage, disk space, watermarks)"},
	{"github.com/hashicorp/memberlist", []string{"internal/membership"}, "internal/membership owns gossip"},
	{"github.com/jhump/grpctunnel", []string{"internal/rpc"}, "internal/rpc owns the outbound nodes' reverse tunnels"},
	{"github.com/fullstorydev/grpchan", []string{"internal/rpc"}, "internal/rpc owns the outbound nodes' reverse tunnels (grpctunnel's handler maps)"},
	{"github.com/jackc/pgx", []string{"node/internal/warehouse", "test/testkit"}, "the OMOP warehouse back end"},
	{"github.com/duckdb/duckdb-go", []string{"node/internal/warehouse"}, "the OMOP warehouse's DuckDB dialect (build tag duckdb)"},
}

// floorRule: packages under From never import packages under To.
type floorRule struct {
	From, To []string
	Why      string
}

var floors = []floorRule{
	{[]string{"coordinator"}, []string{"node"}, "the coordinator never sees node internals; the contract is internal/protocol"},
	{[]string{"node"}, []string{"coordinator"}, "nodes trust no coordinator code either"},
	{[]string{"queries"}, []string{"proto"}, "the query engine knows no wire format"},
	{[]string{"queries", "crypto"}, []string{"node", "coordinator", "cmd", "test"}, "the engines point nowhere back up"},
	{[]string{"internal"}, []string{"node", "coordinator", "cmd", "test"}, "internal/ is the ground floor: plumbing only"},
	{[]string{"client"}, []string{"node", "coordinator", "crypto"}, "an analyst's client speaks the public API only"},
	{[]string{"crypto", "queries", "internal", "node", "coordinator", "proto", "client", "deploy"}, []string{"cmd", "test"}, "nothing in the product imports the binary's assembly or the test tree"},
}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// listPackages returns every package of the module with its direct
// (non-test) imports.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", "duckdb", "-json=ImportPath,Imports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 40 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// under reports whether the module package pkg (an import path) lies in one
// of the trees (paths relative to the module root).
func under(pkg string, trees []string) bool {
	rel, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return false
	}
	for _, t := range trees {
		if rel == t || strings.HasPrefix(rel, t+"/") {
			return true
		}
	}
	return false
}

// violations checks the rules against a package list.
func violations(pkgs []goPackage) []string {
	var out []string
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			for _, r := range heavyDeps {
				if (imp == r.Path || strings.HasPrefix(imp, r.Path+"/")) && !under(p.ImportPath, r.Allowed) {
					out = append(out, fmt.Sprintf("%s imports %s: only %s may (%s)", p.ImportPath, imp, strings.Join(r.Allowed, ", "), r.Why))
				}
			}
			for _, f := range floors {
				if under(p.ImportPath, f.From) && under(imp, f.To) {
					out = append(out, fmt.Sprintf("%s imports %s: %s must not import %s (%s)", p.ImportPath, imp, strings.Join(f.From, ", "), strings.Join(f.To, ", "), f.Why))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestArchitecture: the dependency rules of the layout (README, "Layout";
// docs/architecture.md) hold for every package of the module.
func TestArchitecture(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestArchitectureCatchesBadImports: the check is not vacuous. Each rule,
// fed a package list with one deliberate bad import, reports it.
func TestArchitectureCatchesBadImports(t *testing.T) {
	bad := []goPackage{
		{module + "/coordinator", []string{module + "/node"}},
		{module + "/node/internal/store", []string{"github.com/tuneinsight/lattigo/v5/ring"}},
		{module + "/crypto/collective", []string{"github.com/gtank/ristretto255"}},
		{module + "/node", []string{"filippo.io/edwards25519/field"}},
		{module + "/coordinator", []string{"github.com/google/differential-privacy/go/v3/noise"}},
		{module + "/node/internal/ledger", []string{"github.com/dgraph-io/badger/v4"}},
		{module + "/coordinator", []string{"github.com/hashicorp/memberlist"}},
		{module + "/node", []string{"github.com/jackc/pgx/v5"}},
		{module + "/queries/plan", []string{module + "/proto/fedstat/types/v1"}},
		{module + "/internal/rpc", []string{module + "/node"}},
		{module + "/internal/protocol", []string{module + "/coordinator"}},
		{module + "/node", []string{module + "/test/testkit"}},
		{module + "/coordinator", []string{module + "/cmd/fedstat/demo"}},
		{module + "/queries/eval", []string{module + "/node/internal/store"}},
		{module + "/client", []string{module + "/coordinator"}},
	}
	for _, p := range bad {
		if v := violations([]goPackage{p}); len(v) == 0 {
			t.Errorf("%s importing %s was not reported", p.ImportPath, p.Imports[0])
		}
	}
	// And the allowed ones pass.
	good := []goPackage{
		{module + "/crypto/collective", []string{"github.com/tuneinsight/lattigo/v5/mhe"}},
		{module + "/crypto/linkage", []string{"github.com/gtank/ristretto255", "filippo.io/edwards25519"}},
		{module + "/queries/dp", []string{"github.com/google/differential-privacy/go/v3/noise"}},
		{module + "/internal/kv", []string{"github.com/dgraph-io/badger/v4"}},
		{module + "/node", []string{module + "/internal/protocol"}},
		{module + "/test/e2e", []string{module + "/cmd/fedstat/demo", module + "/node"}},
		{module + "/client", []string{module + "/queries/stats", module + "/internal/rpc"}},
	}
	for _, p := range good {
		if v := violations([]goPackage{p}); len(v) > 0 {
			t.Errorf("allowed import reported: %v", v)
		}
	}
}

// TestLayoutTableMatchesTree: the README's layout table names every
// top-level folder of the module that holds Go code or deployment files,
// and nothing that does not exist.
func TestLayoutTableMatchesTree(t *testing.T) {
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([a-z0-9_./-]+)/?` \\|")
	listed := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Layout"
			continue
		}
		if m := row.FindStringSubmatch(line); in && m != nil {
			listed[strings.TrimSuffix(m[1], "/")] = true
		}
	}
	if len(listed) == 0 {
		t.Fatal(`README.md has no "## Layout" table`)
	}
	for name := range listed {
		if st, err := os.Stat(name); err != nil || !st.IsDir() {
			t.Errorf("README's layout lists %s/, which is not a folder", name)
		}
	}
	top := map[string]bool{}
	for _, p := range listPackages(t) {
		rel, _ := strings.CutPrefix(p.ImportPath, module+"/")
		if rel == p.ImportPath || rel == module {
			continue
		}
		first := strings.Split(rel, "/")[0]
		if first == "cmd" || first == "test" || first == "internal" {
			// These are listed by their second level too when it matters.
			top[first] = true
			continue
		}
		top[path.Clean(first)] = true
	}
	for name := range top {
		found := listed[name]
		for l := range listed {
			if strings.HasPrefix(l, name+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("folder %s/ holds Go packages but README's layout table does not list it", name)
		}
	}
}
