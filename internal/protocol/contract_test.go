package protocol_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/queries/plan"
)

// TestDefaultMaxSkew pins the freshness window both sides default to
// (docs/threat-model.md and docs/operations.md state it).
func TestDefaultMaxSkew(t *testing.T) {
	if protocol.DefaultMaxSkew != 15*time.Minute {
		t.Fatalf("DefaultMaxSkew %s, the documents say 15 minutes", protocol.DefaultMaxSkew)
	}
}

// TestCheckPlaintextRange: a plan whose sum over the members fits passes;
// one that could wrap is refused with the one message both sides give.
func TestCheckPlaintextRange(t *testing.T) {
	params := testParams(t)
	p := testPlan(t, testSpec())
	if err := protocol.CheckPlaintextRange(p, params, 3); err != nil {
		t.Fatalf("3 members: %v", err)
	}
	members := int(params.MaxAbs()/p.MaxAbsPartial()) + 1
	err := protocol.CheckPlaintextRange(p, params, members)
	if !errors.Is(err, protocol.ErrPlaintextRange) {
		t.Fatalf("%d members: %v, want ErrPlaintextRange", members, err)
	}
	want := fmt.Sprintf("the worst-case sum %d over %d nodes could wrap around the plaintext modulus (at most %d): "+
		"narrow the clamps or the groups, or lower the catalogue's patients per node", p.MaxAbsTotal(members), members, params.MaxAbs())
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	// The limbs of the range commitments' blindings sum too: with a
	// catalogue of one patient a node the values fit, the limbs of more
	// than rangeproof.MaxMembers members do not.
	cat := plan.DefaultCatalogue()
	cat.MaxPatientsPerNode = 1
	req, err := protocol.PlanRequest(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	small, err := plan.Build(req, cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.CheckPlaintextRange(small, params, rangeproof.MaxMembers); err != nil {
		t.Fatalf("%d members of one patient each: %v", rangeproof.MaxMembers, err)
	}
	err = protocol.CheckPlaintextRange(small, params, rangeproof.MaxMembers+1)
	if !errors.Is(err, protocol.ErrPlaintextRange) || !strings.Contains(err.Error(), "limbs of their range commitments' blindings") {
		t.Fatalf("%d members of one patient each: %v, want the limbs refused", rangeproof.MaxMembers+1, err)
	}
}

// TestOnlyProtocolSealsAndOpens keeps the contract in one place: outside
// internal/protocol (and the envelope package itself), no Go file other
// than a test signs or opens an envelope, builds a binding, or compares a
// plan's worst-case sum with the plaintext range. Node and coordinator
// therefore check partials, bindings, freshness (one skew setting) and the
// range with the same functions. Tests may forge messages; the
// analyst-signed query is internal/signedquery's.
func TestOnlyProtocolSealsAndOpens(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Skip("module root not found")
	}
	// internal/signedquery seals and opens the one message an analyst's
	// client makes (the analyst-signed query): the client links it, and
	// must not link internal/protocol's cryptography (client's
	// TestDependencies).
	allowed := map[string]bool{"internal/protocol": true, "crypto/envelope": true, "queries/plan": true, "internal/signedquery": true}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // files may come and go while others edit the tree
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if allowed[rel] || (strings.HasPrefix(d.Name(), ".") && rel != ".") || d.Name() == "testdata" || d.Name() == "vendor" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return nil // a file mid-edit elsewhere is not this test's concern
		}
		envelopeName := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/fedstat/fedstat/crypto/envelope" {
				envelopeName = "envelope"
				if imp.Name != nil {
					envelopeName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && envelopeName != "" && x.Name == envelopeName {
				switch sel.Sel.Name {
				case "Seal", "Open", "Binding":
					t.Errorf("%s: envelope.%s: seal and open protocol messages with internal/protocol's functions", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			if sel.Sel.Name == "MaxAbsTotal" {
				t.Errorf("%s: MaxAbsTotal: check the plaintext range with protocol.CheckPlaintextRange", fset.Position(sel.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
