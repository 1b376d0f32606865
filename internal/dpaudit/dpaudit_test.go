package dpaudit

import (
	"errors"
	"go/parser"
	"go/token"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The estimator is tested on mechanisms whose privacy is known exactly,
// with seeded randomness (math/rand/v2), so every test here is
// deterministic.

func normalCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

// gaussianDelta is the exact δ(ε) of the Gaussian mechanism whose outputs on
// the two neighbours are N(0, 1) and N(mu, 1) (Balle and Wang 2018):
// Φ(μ/2 − ε/μ) − e^ε·Φ(−μ/2 − ε/μ).
func gaussianDelta(mu, eps float64) float64 {
	return normalCDF(mu/2-eps/mu) - math.Exp(eps)*normalCDF(-mu/2-eps/mu)
}

// gaussianEpsilon is the smallest ε with gaussianDelta(mu, ε) ≤ delta.
func gaussianEpsilon(mu, delta float64) float64 {
	lo, hi := 0.0, 100.0
	for range 200 {
		mid := (lo + hi) / 2
		if gaussianDelta(mu, mid) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

func gaussianRuns(r *rand.Rand, n int, mean float64) []Outcome {
	out := make([]Outcome, n)
	for i := range out {
		out[i] = Value(mean + r.NormFloat64())
	}
	return out
}

func mustAudit(t *testing.T, x, y []Outcome, o Options) Result {
	t.Helper()
	r, err := Audit(x, y, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestGaussianMechanism: the bound stays below the exact ε of a Gaussian
// mechanism and comes reasonably close to it with 400,000 runs; it grows
// with the number of runs.
func TestGaussianMechanism(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const mu, delta = 1.0, 1e-3
	truth := gaussianEpsilon(mu, delta)
	prev := math.Inf(-1)
	for _, n := range []int{4_000, 40_000, 400_000} {
		res := mustAudit(t, gaussianRuns(r, n, 0), gaussianRuns(r, n, mu), Options{Delta: delta, Epsilon: truth})
		t.Logf("n=%d: %v (exact ε %.4g)", n, res, truth)
		if res.EpsilonLB > truth || res.Exceeds() {
			t.Errorf("n=%d: lower bound %.4g above the exact ε %.4g", n, res.EpsilonLB, truth)
		}
		if res.EpsilonLB <= prev {
			t.Errorf("n=%d: lower bound %.4g did not grow from %.4g", n, res.EpsilonLB, prev)
		}
		prev = res.EpsilonLB
		if b := res.Best(); b.Set.Kind != AtLeast && b.Set.Kind != AtMost {
			t.Errorf("n=%d: chose %v, want a threshold set", n, b.Set)
		}
	}
	if prev < 0.75*truth {
		t.Errorf("with 400,000 runs the lower bound %.4g is below 75%% of the exact ε %.4g", prev, truth)
	}
}

// TestDiscreteStatistic: an integer-valued release (a count on a grid of 1)
// has long runs of ties; the auditor must still try thresholds all along
// the distribution, and bound it about as well as the same noise unrounded.
// (Skipping a threshold whenever it tied with its neighbour once left only
// the extreme tails as candidates: at confidence 1 − 1e-9 the bound fell
// from about 0.21 to below 0.)
func TestDiscreteStatistic(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const n, sigma, shift = 200_000, 26.7, 5
	x, y, xr, yr := make([]Outcome, n), make([]Outcome, n), make([]Outcome, n), make([]Outcome, n)
	for i := range x {
		a, b := sigma*r.NormFloat64(), sigma*r.NormFloat64()
		x[i], y[i] = Value(a), Value(b+shift)
		xr[i], yr[i] = Value(math.Round(a)), Value(math.Round(b)+shift)
	}
	o := Options{Delta: 1e-6, Epsilon: 1, Confidence: 1 - 1e-9}
	cont, disc := mustAudit(t, x, y, o), mustAudit(t, xr, yr, o)
	t.Logf("continuous: %v\ndiscrete: %v", cont, disc)
	if disc.EpsilonLB < cont.EpsilonLB-0.05 || disc.EpsilonLB < 0.15 {
		t.Errorf("rounded to integers the bound is %.3g, unrounded %.3g", disc.EpsilonLB, cont.EpsilonLB)
	}
}

// TestCoverage: over many small audits of randomized response at its exact
// ε (where the optimal set is easy to find, so the bound can reach the
// truth), the bound exceeds the truth in at most 1 − Confidence of them.
func TestCoverage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const eps, conf, audits = 1.0, 0.8, 500
	keep := math.Exp(eps) / (1 + math.Exp(eps))
	over := 0
	for range audits {
		x, y := make([]Outcome, 400), make([]Outcome, 400)
		for i := range x {
			x[i], y[i] = Value(0), Value(1)
			if r.Float64() >= keep {
				x[i] = Value(1)
			}
			if r.Float64() >= keep {
				y[i] = Value(0)
			}
		}
		if res := mustAudit(t, x, y, Options{Epsilon: eps, Confidence: conf}); res.Exceeds() {
			over++
		}
	}
	t.Logf("%d of %d audits at confidence %v put the bound above the exact ε", over, audits, conf)
	if float64(over) > (1-conf)*audits {
		t.Errorf("%d of %d audits at confidence %v put the bound above the exact ε %v", over, audits, conf, eps)
	}
}

// TestDeterministicMechanism: a mechanism without noise (D gives 0, D'
// gives 1) has no finite ε; the bound grows like ln(n) and equals the closed
// form of Clopper–Pearson with all (or none) of the runs in the set.
func TestDeterministicMechanism(t *testing.T) {
	prev := 0.0
	for _, n := range []int{100, 1000, 10_000, 100_000} {
		x := make([]Outcome, n)
		y := make([]Outcome, n)
		for i := range y {
			y[i] = Value(1)
		}
		res := mustAudit(t, x, y, Options{Delta: 1e-6, Epsilon: 1})
		a := 0.05 / 4
		ne := float64(n / 2)
		pLo := math.Pow(a, 1/ne)
		pHi := 1 - math.Pow(a, 1/ne)
		want := math.Log((pLo - 1e-6) / pHi)
		if math.Abs(res.EpsilonLB-want) > 1e-6 {
			t.Errorf("n=%d: lower bound %.8g, closed form %.8g", n, res.EpsilonLB, want)
		}
		if res.EpsilonLB <= prev {
			t.Errorf("n=%d: lower bound %.4g did not grow", n, res.EpsilonLB)
		}
		if !res.Exceeds() {
			t.Errorf("n=%d: a noiseless mechanism passed at ε 1: %v", n, res)
		}
		prev = res.EpsilonLB
	}
	// With a tenth of the runs choosing the set, nine tenths measure it.
	x, y := make([]Outcome, 10_000), make([]Outcome, 10_000)
	for i := range y {
		y[i] = Value(1)
	}
	res := mustAudit(t, x, y, Options{Delta: 1e-6, Epsilon: 1, SelectionShare: 0.1})
	if b := res.Best(); b.N != 9000 || b.N2 != 9000 {
		t.Errorf("selection share 0.1 of 10,000 runs: %d and %d measured, want 9000", b.N, b.N2)
	}
	if want := math.Log((math.Pow(0.05/4, 1.0/9000) - 1e-6) / (1 - math.Pow(0.05/4, 1.0/9000))); math.Abs(res.EpsilonLB-want) > 1e-6 {
		t.Errorf("selection share 0.1: lower bound %.8g, closed form %.8g", res.EpsilonLB, want)
	}
}

// TestRandomizedResponse: randomized response with ε = 1 (the true bit with
// probability e/(1+e)) is exactly 1-DP with δ = 0; 200,000 runs bound ε
// within 0.1 of it, from below.
func TestRandomizedResponse(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const eps = 1.0
	keep := math.Exp(eps) / (1 + math.Exp(eps))
	rr := func(bit float64, n int) []Outcome {
		out := make([]Outcome, n)
		for i := range out {
			v := bit
			if r.Float64() >= keep {
				v = 1 - bit
			}
			out[i] = Value(v)
		}
		return out
	}
	res := mustAudit(t, rr(0, 200_000), rr(1, 200_000), Options{Delta: 0, Epsilon: eps})
	t.Logf("%v", res)
	if res.Exceeds() || res.EpsilonLB < eps-0.1 {
		t.Errorf("randomized response at ε %v: lower bound %.4g, want in [%.2g, %v]", eps, res.EpsilonLB, eps-0.1, eps)
	}
	// Claimed 0.5 (false): the audit must refute it.
	res = mustAudit(t, rr(0, 200_000), rr(1, 200_000), Options{Delta: 0, Epsilon: 0.5})
	if !res.Exceeds() || res.DeltaLB <= 0 {
		t.Errorf("randomized response at ε 1 claimed as 0.5 was not refuted: %v", res)
	}
}

// TestRefusal: a mechanism that refuses with probability 0.5 on D and 0.2
// on D' (and otherwise outputs the same noise) leaks ln 2.5 through the
// refusal alone; the auditor finds the refusal event.
func TestRefusal(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	runs := func(pRefuse float64, n int) []Outcome {
		out := make([]Outcome, n)
		for i := range out {
			if r.Float64() < pRefuse {
				out[i] = Refusal
			} else {
				out[i] = Value(r.NormFloat64())
			}
		}
		return out
	}
	truth := math.Log(0.5 / 0.2)
	res := mustAudit(t, runs(0.5, 100_000), runs(0.2, 100_000), Options{Delta: 1e-6, Epsilon: truth})
	t.Logf("%v", res)
	if b := res.Best(); b.Set.Kind != Refused || b.Reversed {
		t.Errorf("best set %v (reversed %v), want the refusal event", b.Set, b.Reversed)
	}
	if res.Exceeds() || res.EpsilonLB < truth-0.05 {
		t.Errorf("lower bound %.4g, want in [%.4g, %.4g]", res.EpsilonLB, truth-0.05, truth)
	}
	// An answered run on D' and refused on D: the complement finds it in the
	// other direction too.
	res = mustAudit(t, runs(0.2, 100_000), runs(0.5, 100_000), Options{Delta: 1e-6, Epsilon: truth})
	if b := res.Best(); b.Set.Kind != Refused || !b.Reversed {
		t.Errorf("swapped inputs: best set %v (reversed %v), want the refusal event reversed", b.Set, b.Reversed)
	}
}

// TestClopperPearson checks the bounds against closed forms and the
// binomial tail they invert.
func TestClopperPearson(t *testing.T) {
	binomTail := func(k, n int, p float64, upper bool) float64 {
		// P(Bin(n,p) >= k) when upper, else P(Bin(n,p) <= k), summed in logs.
		var s float64
		lo, hi := k, n
		if !upper {
			lo, hi = 0, k
		}
		for j := lo; j <= hi; j++ {
			lg, _ := math.Lgamma(float64(n + 1))
			a, _ := math.Lgamma(float64(j + 1))
			b, _ := math.Lgamma(float64(n - j + 1))
			s += math.Exp(lg - a - b + float64(j)*math.Log(p) + float64(n-j)*math.Log1p(-p))
		}
		return s
	}
	for _, c := range []struct {
		k, n  int
		alpha float64
	}{{1, 10, 0.05}, {5, 10, 0.05}, {9, 10, 0.0125}, {3, 1000, 1e-9}, {990, 1000, 1e-9}, {50, 200, 0.3}} {
		lo := LowerBound(c.k, c.n, c.alpha)
		hi := UpperBound(c.k, c.n, c.alpha)
		if got := binomTail(c.k, c.n, lo, true); math.Abs(got-c.alpha) > 1e-9*c.alpha+1e-15 {
			t.Errorf("k=%d n=%d: P(X >= k | p_lo) = %.6g, want %.6g", c.k, c.n, got, c.alpha)
		}
		if got := binomTail(c.k, c.n, hi, false); math.Abs(got-c.alpha) > 1e-9*c.alpha+1e-15 {
			t.Errorf("k=%d n=%d: P(X <= k | p_hi) = %.6g, want %.6g", c.k, c.n, got, c.alpha)
		}
		if !(lo < float64(c.k)/float64(c.n) && float64(c.k)/float64(c.n) < hi) {
			t.Errorf("k=%d n=%d: [%.4g, %.4g] does not contain k/n", c.k, c.n, lo, hi)
		}
	}
	if got, want := UpperBound(0, 1000, 0.05), 1-math.Pow(0.05, 1.0/1000); math.Abs(got-want) > 1e-15 {
		t.Errorf("upper bound for 0 of 1000: %v, want %v", got, want)
	}
	if got := LowerBound(0, 1000, 0.05); got != 0 {
		t.Errorf("lower bound for 0 of 1000: %v", got)
	}
	if got := UpperBound(1000, 1000, 0.05); got != 1 {
		t.Errorf("upper bound for 1000 of 1000: %v", got)
	}
}

func TestAuditErrors(t *testing.T) {
	two := []Outcome{Value(0), Value(1)}
	for _, c := range []struct {
		x, y []Outcome
		o    Options
	}{
		{two[:1], two, Options{Delta: 1e-6}},
		{two, two, Options{Delta: 1}},
		{two, two, Options{Delta: 1e-6, Epsilon: -1}},
		{two, two, Options{Delta: 1e-6, Confidence: 1}},
		{two, two, Options{Delta: 1e-6, SelectionShare: 1}},
		{[]Outcome{Value(math.NaN()), Value(0)}, two, Options{Delta: 1e-6}},
	} {
		if _, err := Audit(c.x, c.y, c.o); !errors.Is(err, ErrInput) {
			t.Errorf("Audit(%v, %v, %+v): %v, want ErrInput", c.x, c.y, c.o, err)
		}
	}
}

// TestGroundFloor: dpaudit imports only the standard library and gonum, so
// any package's tests can use it.
func TestGroundFloor(t *testing.T) {
	files, _ := filepath.Glob("*.go")
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
			if strings.Contains(path, ".") && !strings.HasPrefix(path, "gonum.org/") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
