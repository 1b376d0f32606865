package stattest

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/queries/stats"
)

// large is the "large epsilon" of the reference checks: a real run through
// the encrypted path whose noise is small next to the published precision.
var large = stats.Budget{Epsilon: 1e7, Delta: 1e-6}

func readStudy(t *testing.T, rel, schema string) *cdm.Study {
	t.Helper()
	path := testkit.SharedData(t, "reference/"+rel)
	sc, err := cdm.ReadStudySchema("../../examples/reference/schemas/"+schema, "")
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := admin.ReadStudy(path, sc)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func start(t *testing.T, studies ...*cdm.Study) (*demo.Network, *Querier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	nw, err := Start(ctx, Options{Studies: studies})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	c, err := nw.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return nw, &Querier{Client: c, Nodes: 3}
}

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol || math.IsNaN(got) {
		t.Errorf("%s = %.5f, want %.5f ± %g", name, got, want, tol)
	} else {
		t.Logf("%s = %.5f (published %.5f, error %.2g)", name, got, want, got-want)
	}
}

func TestStrepTB(t *testing.T) {
	st := readStudy(t, "strep_tb.csv", "strep_tb.toml")
	_, q := start(t, st)
	ctx := context.Background()
	tab, err := stats.ContingencyTable(ctx, q, stats.ContingencyOptions{Table: "strep_tb", Row: "arm", Col: "radiologic_6m", Budget: large})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		arm, col string
		want     float64
	}{
		{"Streptomycin", "1_Death", 4}, {"Control", "1_Death", 14},
		{"Streptomycin", "6_Considerable_improvement", 28}, {"Control", "6_Considerable_improvement", 4},
	} {
		v, _ := tab.Count(c.arm, c.col)
		near(t, c.arm+" "+c.col, math.Round(v.Value), c.want, 0)
	}
	for _, arm := range []struct {
		name string
		n    float64
	}{{"Streptomycin", 55}, {"Control", 52}} {
		v, _ := tab.RowTotal(arm.name)
		near(t, arm.name+" total", math.Round(v.Value), arm.n, 0)
	}
	for _, d := range []struct {
		name string
		col  string
	}{{"deaths", "1_Death"}, {"considerable improvement", "6_Considerable_improvement"}} {
		two := tab.Dichotomise(func(c string) bool { return c == d.col }, "yes", "no")
		t.Logf("%s: chi-square %.3f p=%.4g [%.3g, %.3g]; Fisher p=%.4g [%.3g, %.3g]", d.name, two.ChiSquare, two.ChiSquareP, two.ChiSquarePCI[0], two.ChiSquarePCI[1], two.FisherP, two.FisherPCI[0], two.FisherPCI[1])
		if (two.ChiSquareP < 0.05) != (two.FisherP < 0.05) || two.ChiSquareP >= 0.05 {
			t.Errorf("%s: chi-square p %.4g and Fisher p %.4g should agree (both < 0.05)", d.name, two.ChiSquareP, two.FisherP)
		}
	}
}

var birthwtCovariates = []stats.Covariate{
	{Name: "age", Expr: "age", Lo: 14, Hi: 45},
	{Name: "lwt", Expr: "lwt", Lo: 80, Hi: 250},
	{Name: "race2", Expr: "race = 2", Lo: 0, Hi: 1},
	{Name: "race3", Expr: "race = 3", Lo: 0, Hi: 1},
	{Name: "ftv", Expr: "ftv", Lo: 0, Hi: 6},
}

// MASS: glm(low ~ age + lwt + race + ftv, family = binomial, data = birthwt).
var birthwtPublished = []float64{1.295, -0.024, -0.014, 1.004, 0.433, -0.049}

func TestBirthwtLogistic(t *testing.T) {
	st := readStudy(t, "MASS_birthwt.csv", "birthwt.toml")
	_, q := start(t, st)
	ctx := context.Background()
	fit, err := stats.Logistic(ctx, q, stats.LogisticOptions{Table: "birthwt", Outcome: "low", Covariates: birthwtCovariates, Budget: large})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range fit.Coefficients {
		// The published values are rounded to 3 decimals: allow 0.01.
		near(t, c.Name, c.Value, birthwtPublished[i], 0.01)
		t.Logf("  %s: SE %.4f (noise part %.2g)", c.Name, c.SE, fit.NoiseSE[i])
	}
	if q.Queries != fit.Rounds {
		t.Errorf("%d queries for %d rounds", q.Queries, fit.Rounds)
	}
	// At epsilon 1 over all rounds the noise swamps 189 births: the method
	// must refuse, or answer with intervals wide enough to say so.
	for _, eps := range []float64{1, 10, 100} {
		fit, err := stats.Logistic(ctx, q, stats.LogisticOptions{Table: "birthwt", Outcome: "low", Covariates: birthwtCovariates, Budget: stats.Budget{Epsilon: eps, Delta: 1e-6}})
		if err != nil {
			t.Logf("epsilon %g: %v", eps, err)
			continue
		}
		var worst float64
		for i, c := range fit.Coefficients {
			worst = math.Max(worst, math.Abs(c.Value-birthwtPublished[i]))
			if c.CILow > birthwtPublished[i]+0.01 || c.CIHigh < birthwtPublished[i]-0.01 {
				t.Logf("epsilon %g: %s interval [%.3f, %.3f] misses %.3f", eps, c.Name, c.CILow, c.CIHigh, birthwtPublished[i])
			}
		}
		t.Logf("epsilon %g: largest coefficient error %.3g; %s = %.3f [%.3f, %.3f]", eps, worst, fit.Coefficients[1].Name, fit.Coefficients[1].Value, fit.Coefficients[1].CILow, fit.Coefficients[1].CIHigh)
	}
}

var lungData = stats.SurvivalData{Table: "lung", Time: "time", Status: "status", Event: "2"}

func TestLungSurvival(t *testing.T) {
	st := readStudy(t, "survival_lung.csv", "lung.toml")
	_, q := start(t, st)
	ctx := context.Background()
	all, err := stats.KaplanMeier(ctx, q, stats.KMOptions{SurvivalData: lungData, Budget: large})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "km.median", all[0].Median.Value, 310, 0)
	bySex, err := stats.KaplanMeier(ctx, q, stats.KMOptions{SurvivalData: lungData, Strata: "sex", Budget: large})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "km.median.sex=1", bySex[0].Median.Value, 270, 0)
	near(t, "km.median.sex=2", bySex[1].Median.Value, 426, 0)
	// Weekly bins: the risk-set sums are suffix sums over the bins, so
	// fewer bins mean less noise; Efron's tie correction on weekly bins
	// moves the coefficients by less than 0.0005 on this data.
	weekly := lungData
	weekly.Width = 7
	cox, err := stats.Cox(ctx, q, stats.CoxOptions{SurvivalData: weekly, Budget: large,
		Covariates: []stats.Covariate{{Name: "age", Expr: "age", Lo: 39, Hi: 82}, {Name: "sex", Expr: "sex", Lo: 1, Hi: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "cox.age", cox.Coefficients[0].Value, 0.01705, 0.005)
	near(t, "cox.sex", cox.Coefficients[1].Value, -0.5132, 0.005)
	t.Logf("cox noise SE: age %.2g, sex %.2g", cox.NoiseSE[0], cox.NoiseSE[1])
	for _, eps := range []float64{1, 100, 1e4} {
		fit, err := stats.Cox(ctx, q, stats.CoxOptions{SurvivalData: weekly, Budget: stats.Budget{Epsilon: eps, Delta: 1e-6},
			Covariates: []stats.Covariate{{Name: "age", Expr: "age", Lo: 39, Hi: 82}, {Name: "sex", Expr: "sex", Lo: 1, Hi: 2}}})
		if err != nil {
			t.Logf("cox at epsilon %g: %v", eps, err)
			continue
		}
		t.Logf("cox at epsilon %g: age %.4f [%.4f, %.4f], sex %.4f [%.4f, %.4f]", eps, fit.Coefficients[0].Value, fit.Coefficients[0].CILow, fit.Coefficients[0].CIHigh,
			fit.Coefficients[1].Value, fit.Coefficients[1].CILow, fit.Coefficients[1].CIHigh)
	}
	// At epsilon 1 the risk sets (suffix sums over ~1000 daily bins) are
	// mostly noise: Kaplan-Meier must refuse.
	if _, err := stats.KaplanMeier(ctx, q, stats.KMOptions{SurvivalData: lungData, Budget: stats.Budget{Epsilon: 1, Delta: 1e-6}}); err == nil {
		t.Error("Kaplan-Meier at epsilon 1 with daily bins should refuse")
	} else {
		t.Logf("epsilon 1: %v", err)
	}
}
