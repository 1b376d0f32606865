package stats

import (
	"context"
	"errors"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
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

func TestFactor(t *testing.T) {
	lo, hi := 1.0, 3.0
	got, err := Factor(&cdm.StudyColumn{Name: "race", Type: cdm.StudyInt, Min: &lo, Max: &hi})
	if err != nil || len(got) != 2 || got[0] != (Covariate{Name: "race2", Expr: "race = 2", Lo: 0, Hi: 1}) || got[1].Expr != "race = 3" {
		t.Errorf("int factor: %+v, %v", got, err)
	}
	got, err = Factor(&cdm.StudyColumn{Name: "arm", Type: cdm.StudyString, Values: []string{"a", "o'b"}})
	if err != nil || len(got) != 1 || got[0].Name != "armo'b" || got[0].Expr != "arm = 'o''b'" {
		t.Errorf("string factor: %+v, %v", got, err)
	}
	hi = 500
	if _, err := Factor(&cdm.StudyColumn{Name: "x", Type: cdm.StudyInt, Min: &lo, Max: &hi}); !errors.Is(err, ErrInput) {
		t.Errorf("500 levels: %v, want ErrInput", err)
	}
	if _, err := Factor(&cdm.StudyColumn{Name: "s", Type: cdm.StudyString}); !errors.Is(err, ErrInput) {
		t.Errorf("string without values: %v, want ErrInput", err)
	}
}
