package stats

import (
	"context"
	"errors"
	"testing"
)

// TestRefuseSmallBudget: at a budget that cannot buy a useful answer the
// methods refuse with ErrBudget (docs/statistics.md's table), and the
// Newton methods do so after their first round rather than spending the
// whole budget.
func TestRefuseSmallBudget(t *testing.T) {
	ctx := context.Background()
	small := Budget{Epsilon: 1, Delta: 1e-6}
	check := func(name string, q *exactQuerier, err error, wantQueries int) {
		t.Helper()
		if !errors.Is(err, ErrBudget) {
			t.Errorf("%s at epsilon 1: %v, want ErrBudget", name, err)
		}
		if q.queries != wantQueries {
			t.Errorf("%s: %d queries before refusing, want %d", name, q.queries, wantQueries)
		}
	}
	q := loadStudy(t, "reference/MASS_birthwt.csv", "birthwt.toml")
	q.planVar = true
	_, err := Logistic(ctx, q, LogisticOptions{Table: "birthwt", Outcome: "low", Covariates: birthwtCovariates, Budget: small})
	check("logit", q, err, 1)

	q = loadStudy(t, "reference/survival_lung.csv", "lung.toml")
	q.planVar = true
	_, err = Cox(ctx, q, CoxOptions{SurvivalData: SurvivalData{Table: "lung", Time: "time", Status: "status", Event: "2", Width: 7}, Budget: small,
		Covariates: []Covariate{{Name: "age", Expr: "age", Lo: 39, Hi: 82}, {Name: "sex", Expr: "sex", Lo: 1, Hi: 2}}})
	check("cox", q, err, 1)

	q = loadStudy(t, "reference/survival_lung.csv", "lung.toml")
	q.planVar = true
	_, err = KaplanMeier(ctx, q, KMOptions{SurvivalData: SurvivalData{Table: "lung", Time: "time", Status: "status", Event: "2", Width: 7}, Budget: small})
	check("km", q, err, 1)

	q = loadStudy(t, "reference/strep_tb.csv", "strep_tb.toml")
	q.planVar = true
	_, err = ContingencyTable(ctx, q, ContingencyOptions{Table: "strep_tb", Row: "arm", Col: "radiologic_6m", Budget: small})
	check("contingency", q, err, 1)

	// A large budget is not refused.
	q = loadStudy(t, "reference/MASS_birthwt.csv", "birthwt.toml")
	q.planVar = true
	if _, err := Logistic(ctx, q, LogisticOptions{Table: "birthwt", Outcome: "low", Covariates: birthwtCovariates, Budget: Budget{Epsilon: 1e5, Delta: 1e-6}}); err != nil {
		t.Errorf("logit at epsilon 1e5: %v", err)
	}
}
