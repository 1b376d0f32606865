package plan

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/queries/parse"
)

// FuzzBuild: planning arbitrary text never panics, and every refusal is a
// *parse.Error pointing into the query.
func FuzzBuild(f *testing.F) {
	for _, q := range DesignQueries {
		f.Add(q)
	}
	for _, path := range []string{"testdata/errors.input", "testdata/plans.input"} {
		in, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, q := range strings.Split(string(in), "\n----\n") {
			f.Add(q)
		}
	}
	cat := testCatalogue()
	f.Fuzz(func(t *testing.T, sql string) {
		p, err := Build(testRequest(sql), cat)
		if err != nil {
			var pe *parse.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *parse.Error: %v", err, err)
			}
			return
		}
		if p.VectorLen() < 1 || p.VectorLen() > cat.MaxSlots && cat.MaxSlots > 0 {
			t.Fatalf("vector length %d", p.VectorLen())
		}
		for _, s := range p.NodeSigmas() {
			if !(s > 0) {
				t.Fatalf("sigma %v", s)
			}
		}
		_ = p.Describe()
	})
}
