package stats

import (
	"context"
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
