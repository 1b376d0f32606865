package stats

import (
	"context"
	"testing"
)

// birthwtCovariates is low ~ age + lwt + race + ftv with race as a factor.
var birthwtCovariates = []Covariate{
	{Name: "age", Expr: "age", Lo: 14, Hi: 45},
	{Name: "lwt", Expr: "lwt", Lo: 80, Hi: 250},
	{Name: "race2", Expr: "race = 2", Lo: 0, Hi: 1},
	{Name: "race3", Expr: "race = 3", Lo: 0, Hi: 1},
	{Name: "ftv", Expr: "ftv", Lo: 0, Hi: 6},
}

func TestLogisticBirthwtExact(t *testing.T) {
	q := loadStudy(t, "reference/MASS_birthwt.csv", "birthwt.toml")
	fit, err := Logistic(context.Background(), q, LogisticOptions{Table: "birthwt", Outcome: "low", Covariates: birthwtCovariates, Budget: Budget{Epsilon: 1e4, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	// MASS: glm(low ~ age + lwt + race + ftv, binomial, birthwt).
	want := []float64{1.295366, -0.023823, -0.014245, 1.003898, 0.433108, -0.049308}
	wantSE := []float64{1.071203, 0.033732, 0.006541, 0.497858, 0.362240, 0.167239}
	for i, c := range fit.Coefficients {
		near(t, c.Name, c.Value, want[i], 1e-4)
		near(t, c.Name+" SE", c.SE, wantSE[i], 1e-3)
	}
	if q.queries != 6 {
		t.Errorf("%d queries, want 6 rounds", q.queries)
	}
}

func TestLinearBirthwtExact(t *testing.T) {
	q := loadStudy(t, "reference/MASS_birthwt.csv", "birthwt.toml")
	fit, err := Linear(context.Background(), q, LinearOptions{Table: "birthwt", Outcome: Covariate{Name: "bwt", Expr: "bwt", Lo: 500, Hi: 5000},
		Covariates: []Covariate{{Name: "age", Expr: "age", Lo: 14, Hi: 45}, {Name: "lwt", Expr: "lwt", Lo: 80, Hi: 250}}, Budget: Budget{Epsilon: 1e4, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	// lm(bwt ~ age + lwt, birthwt)
	want := []float64{2214.412075, 8.089169, 4.176706} // checked with a direct least-squares solve
	for i, c := range fit.Coefficients {
		near(t, c.Name, c.Value, want[i], 0.01)
	}
}
