package stats

import (
	"context"
	"math"
	"testing"
)

var lungData = SurvivalData{Table: "lung", Time: "time", Status: "status", Event: "2"}

func TestKaplanMeierLungExact(t *testing.T) {
	q := loadStudy(t, "reference/survival_lung.csv", "lung.toml")
	b := Budget{Epsilon: 1e4, Delta: 1e-6}
	all, err := KaplanMeier(context.Background(), q, KMOptions{SurvivalData: lungData, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "median", all[0].Median.Value, 310, 0)
	// survfit: median 310, 95% CI 285-363.
	near(t, "median lower", all[0].Median.CILow, 285, 0)
	near(t, "median upper", all[0].Median.CIHigh, 363, 0)
	bySex, err := KaplanMeier(context.Background(), q, KMOptions{SurvivalData: lungData, Strata: "sex", Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	if len(bySex) != 2 || bySex[0].Stratum != "1" {
		t.Fatalf("strata %+v", bySex)
	}
	near(t, "median sex=1", bySex[0].Median.Value, 270, 0)
	near(t, "median sex=2", bySex[1].Median.Value, 426, 0)
}

func TestCoxLungExact(t *testing.T) {
	q := loadStudy(t, "reference/survival_lung.csv", "lung.toml")
	fit, err := Cox(context.Background(), q, CoxOptions{SurvivalData: lungData, Budget: Budget{Epsilon: 1e4, Delta: 1e-6},
		Covariates: []Covariate{{Name: "age", Expr: "age", Lo: 39, Hi: 82}, {Name: "sex", Expr: "sex", Lo: 1, Hi: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	// coxph(Surv(time, status) ~ age + sex, lung): 0.017045 (se 0.009223), -0.513219 (se 0.167458).
	near(t, "cox.age", fit.Coefficients[0].Value, 0.017045, 1e-4)
	near(t, "cox.sex", fit.Coefficients[1].Value, -0.513219, 1e-4)
	near(t, "cox.age SE", fit.Coefficients[0].SE, 0.009223, 1e-4)
	near(t, "cox.sex SE", fit.Coefficients[1].SE, 0.167458, 1e-3)
}

func TestQuantilesLungExact(t *testing.T) {
	q := loadStudy(t, "reference/survival_lung.csv", "lung.toml")
	_, est, err := Quantiles(context.Background(), q, QuantileOptions{Table: "lung", Column: "age", Probs: []float64{0.25, 0.5, 0.75}, Budget: Budget{Epsilon: 1e4, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	// quantile(lung$age) = 56, 63, 69 (type 7); the histogram reading is
	// within a year of it.
	for i, want := range []float64{56, 63, 69} {
		near(t, est[i].Name, est[i].Value, want, 1)
		if !(est[i].CILow <= est[i].Value && est[i].Value <= est[i].CIHigh) {
			t.Errorf("%s interval [%v, %v] misses %v", est[i].Name, est[i].CILow, est[i].CIHigh, est[i].Value)
		}
	}
}

// TestCoxStepGuards: noise in a late bin whose risk sum is close to 0, or a
// near-singular information matrix, gives a bounded step rather than a wild
// one or a refusal (before the guards, the late bin made the information
// matrix "singular": the CI failure of TestStatsHTTP's Cox fit).
func TestCoxStepGuards(t *testing.T) {
	// One covariate, two bins; per measure (count, Σz, Σe, Σz e, Σz² e)
	// the event values of both bins, then the exit values of both bins.
	cells := func(late [5]float64) []float64 {
		return []float64{
			5, late[0], 10, 0, // count: events 5 and late[0]; exits 10, 0
			1, late[1], 2, 0, // Σz
			5, late[2], 50, late[2], // Σe (β = 0): exits are the risk set
			1, late[3], 5, late[3], // Σz e
			3, late[4], 20, late[4], // Σz² e
		}
	}
	// The late bin: one event, risk sum 1e-9 after noise, Σz e 0.5.
	next, _, ok := coxStep(cells([5]float64{1, 0.5, 1e-9, 0.5, 0.3}), 2, 1, []float64{0})
	if !ok || math.IsNaN(next[0]) || math.Abs(next[0]) > coxMaxStep {
		t.Fatalf("late noisy bin: step to %v (ok %v), want at most %v", next, ok, coxMaxStep)
	}
	// Exact sums where the late bin's mean of z is 0.5: the projection
	// leaves them alone, so the step is the unguarded Newton step.
	exact, _, _ := coxStep(cells([5]float64{1, 0.5, 1, 0.5, 0.3}), 2, 1, []float64{0})
	// Bin 0: d = 5 over s0 = 50 + 1 (bin 1's exit), Efron l = 0..4.
	var u, info float64
	u = 1 + 0.5
	for l := range 5 {
		a := float64(l) / 5
		s0, s1, s2 := 51-a*5, 5.5-a*1, 20.3-a*3
		u -= s1 / s0
		info += s2/s0 - s1*s1/(s0*s0)
	}
	u -= 0.5 / 1 // bin 1: d = 1, s0 = 1, s1 = 0.5
	info += 0.3/1 - 0.25
	if want := u / info; math.Abs(exact[0]-want) > 1e-12 || math.Abs(want) > coxMaxStep {
		t.Errorf("exact sums: step %v, want %v", exact[0], want)
	}
	// A near-singular information matrix: the step is scaled to coxMaxStep.
	flat, _, ok := coxStep([]float64{
		5, 0, 10, 0, // five events in bin 0, none in bin 1
		0.6, 0, 1, 0,
		5, 0, 50, 0,
		0.5, 0, 5, 0, // weighted mean of z 0.1
		0.050005, 0, 0.50005, 0, // weighted variance 1e-6: information 5e-6
	}, 2, 1, []float64{0.5})
	if !ok || math.Abs(flat[0]-0.5) != coxMaxStep {
		t.Errorf("near-singular information: step from 0.5 to %v (ok %v), want a step of ±%v", flat, ok, coxMaxStep)
	}
}
