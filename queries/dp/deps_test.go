package dp

import (
	"flag"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportBoundaries: only queries/dp imports the DP library; eval (node
// side, exact values) does not import dp or result; plan imports neither
// eval nor dp.
func TestImportBoundaries(t *testing.T) {
	forbidden := map[string][]string{
		"parse":  {"github.com/google/differential-privacy", "/queries/plan", "/queries/eval", "/queries/dp"},
		"plan":   {"github.com/google/differential-privacy", "/queries/eval", "/queries/dp", "/queries/result"},
		"eval":   {"github.com/google/differential-privacy", "/queries/dp", "/queries/result"},
		"result": {"github.com/google/differential-privacy", "/queries/"},
		"zcdp":   {"github.com/google/differential-privacy", "/queries/"},
	}
	for pkg, bad := range forbidden {
		files, _ := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range af.Imports {
				path, _ := strconv.Unquote(im.Path.Value)
				for _, b := range bad {
					if strings.Contains(path, b) {
						t.Errorf("%s imports %s", f, path)
					}
				}
			}
		}
	}
}

// TestGlogFlags documents what importing the DP library does to the
// standard flag set: glog registers -v and friends at init, so a binary
// must not register its own -v on flag.CommandLine.
func TestGlogFlags(t *testing.T) {
	for _, name := range []string{"v", "logtostderr", "log_dir", "stderrthreshold", "vmodule"} {
		if flag.Lookup(name) == nil {
			t.Errorf("glog flag -%s not registered (did the DP library drop glog?)", name)
		}
	}
}
