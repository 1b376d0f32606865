package plan

import (
	"errors"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/queries/parse"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run with -update to accept):\n%s", path, got)
	}
}

func cases(t *testing.T, path string) []string {
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range strings.Split(string(in), "\n----\n") {
		out = append(out, strings.TrimRight(q, "\n"))
	}
	return out
}

func TestErrorsGolden(t *testing.T) {
	var out strings.Builder
	for _, q := range cases(t, "testdata/errors.input") {
		_, err := Build(testRequest(q), testCatalogue())
		out.WriteString("== " + strings.ReplaceAll(q, "\n", "\n   ") + "\n")
		if err == nil {
			t.Errorf("no error for %q", q)
			out.WriteString("(no error)\n\n")
			continue
		}
		var pe *parse.Error
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %T is not *parse.Error", q, err)
		}
		out.WriteString(err.Error() + "\n\n")
	}
	golden(t, "testdata/errors.golden", out.String())
}

// TestPlansGolden pins domain, bounds, sensitivity, sigma and cost of the
// DESIGN.md queries and a few more, for both mechanisms.
func TestPlansGolden(t *testing.T) {
	var out strings.Builder
	qs := append(append([]string(nil), DesignQueries...), cases(t, "testdata/plans.input")...)
	for _, q := range qs {
		p, err := Build(testRequest(q), testCatalogue())
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		out.WriteString(p.Describe() + "\n")
	}
	for _, q := range DesignQueries[:1] {
		r := testRequest(q)
		r.Mechanism, r.Epsilon = Laplace, 0.5
		p, err := Build(r, testCatalogue())
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString(p.Describe() + "\n")
	}
	golden(t, "testdata/plans.golden", out.String())
}

func TestRequestValidation(t *testing.T) {
	ok := testRequest(DesignQueries[0])
	bad := []func(*Request){
		func(r *Request) { r.Epsilon = 0 },
		func(r *Request) { r.Epsilon = -1 },
		func(r *Request) { r.Delta = 0 },
		func(r *Request) { r.Delta = 1 },
		func(r *Request) { r.MinNodes = 0 },
		func(r *Request) { r.Threshold = 0 },
		func(r *Request) { r.Threshold = r.MinNodes + 1 },
		func(r *Request) { r.Mechanism = "exponential" },
		func(r *Request) { r.ReferenceDate = -1 << 31 },
	}
	for i, f := range bad {
		r := ok
		f(&r)
		if _, err := Build(r, nil); !errors.Is(err, ErrRequest) {
			t.Errorf("case %d: err = %v, want ErrRequest", i, err)
		}
	}
	r := ok
	r.Mechanism, r.Delta = Laplace, 0
	if _, err := Build(r, nil); err != nil {
		t.Errorf("laplace without delta: %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	for _, q := range DesignQueries {
		a, _ := Build(testRequest(q), testCatalogue())
		b, _ := Build(testRequest(q), testCatalogue())
		if a.Describe() != b.Describe() {
			t.Errorf("%s: plans differ", q)
		}
		if a.Fingerprint() != b.Fingerprint() {
			t.Errorf("%s: fingerprints differ", q)
		}
		c := testCatalogue()
		c.Regions = append(c.Regions, "extra")
		if o, err := Build(testRequest(q), c); err == nil && strings.Contains(q, "region") && o.Fingerprint() == a.Fingerprint() {
			t.Errorf("%s: fingerprint ignores the catalogue regions", q)
		}
		sa, sb := a.NodeSigmas(), b.NodeSigmas()
		for i := range sa {
			if sa[i] != sb[i] {
				t.Errorf("%s: sigma %d differs", q, i)
			}
		}
	}
}

func BenchmarkParsePlan(b *testing.B) {
	cat := testCatalogue()
	for i, q := range DesignQueries {
		req := testRequest(q)
		b.Run([]string{"count-distinct", "cohort", "weekly-by-region", "mean-stddev"}[i], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(req, cat); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestNodesPerPatient(t *testing.T) {
	c := testCatalogue()
	a, _ := Build(testRequest(DesignQueries[0]), c)
	c.MaxNodesPerPatient = 3
	b, err := Build(testRequest(DesignQueries[0]), c)
	if err != nil {
		t.Fatal(err)
	}
	// In natural units: the encoded sigmas also differ by the grid, which
	// follows the noise (Plan.encode).
	if r := b.Measures()[0].NodeSigma / a.Measures()[0].NodeSigma; r < 2.999 || r > 3.001 {
		t.Errorf("sigma ratio %v, want 3", r)
	}
	if r := b.Measures()[0].L2 / a.Measures()[0].L2; r < 2.999 || r > 3.001 {
		t.Errorf("L2 sensitivity ratio %v, want 3", r)
	}
	if r := b.Measures()[0].L1 / a.Measures()[0].L1; r < 2.999 || r > 3.001 {
		t.Errorf("L1 sensitivity ratio %v, want 3", r)
	}
	if a.Rho() != b.Rho() {
		t.Error("cost changed with K")
	}
}

// TestEncodingGrid: every measure's grid is at most a quarter of its node
// noise (so that rounding at the node cannot remove the distributed noise),
// counts stay on a grid that divides 1, and a partial fits the request's
// partial limit, the noise being raised where the limit forbids a finer
// grid (very large epsilon).
func TestEncodingGrid(t *testing.T) {
	for _, eps := range []float64{0.1, 1, 8.4, 1e4, 1e7} {
		for _, limit := range []int64{0, 1 << 30, 1 << 37} {
			for _, m := range []int{2, 52, 300} {
				for _, q := range DesignQueries {
					req := testRequest(q)
					req.Epsilon, req.MinNodes, req.Threshold, req.PartialLimit = eps, m, 2, limit
					p, err := Build(req, testCatalogue())
					if err != nil {
						t.Fatal(err)
					}
					for _, ms := range p.Measures() {
						if ms.NodeSigma*ms.Scale < 4 {
							t.Errorf("eps %g m %d limit %d %s: node sigma %.3g is %.3g quanta, want >= 4", eps, m, limit, ms.Label, ms.NodeSigma, ms.NodeSigma*ms.Scale)
						}
						if count := ms.Kind != Sum && ms.Kind != SumSquares; count && ms.Scale < 1 {
							t.Errorf("%s: count grid %g does not divide 1", ms.Label, 1/ms.Scale)
						}
					}
					want := limit
					if want == 0 {
						want = DefaultPartialLimit
					}
					if got := p.MaxAbsPartial(); got > want && p.Measures()[0].Scale > 1 {
						t.Errorf("eps %g m %d %q: max |partial| %d exceeds the limit %d", eps, m, q, got, want)
					}
				}
			}
		}
	}
}
