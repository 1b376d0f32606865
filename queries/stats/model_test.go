package stats

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// covariates reads terms as `fedstat stats --x` and --factor give them and
// builds the model (the command line's path before it became ParseTerm and
// Model.Build).
func covariates(xs, factors []string, sc *cdm.StudySchema) ([]Covariate, error) {
	m := Model{Factors: factors}
	for _, x := range xs {
		t, err := ParseTerm(x)
		if err != nil {
			return nil, err
		}
		m.Covariates = append(m.Covariates, t)
	}
	_, cov, err := m.Build(sc)
	return cov, err
}

// TestCovariates (moved from cmd/fedstat): the command line's terms.
func TestCovariates(t *testing.T) {
	sc, err := cdm.ReadStudySchema("../../examples/reference/schemas/birthwt.toml", "")
	if err != nil {
		t.Fatal(err)
	}
	cov, err := covariates([]string{"age", "r2=race = 2", "bmi=lwt / 2@40,125"}, []string{"race"}, sc)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, expr string
		lo, hi     float64
	}{{"age", "age", 14, 45}, {"r2", "race = 2", 0, 1}, {"bmi", "lwt / 2", 40, 125}, {"race2", "race = 2", 0, 1}, {"race3", "race = 3", 0, 1}}
	if len(cov) != len(want) {
		t.Fatalf("got %+v", cov)
	}
	for i, w := range want {
		if c := cov[i]; c.Name != w.name || c.Expr != w.expr || c.Lo != w.lo || c.Hi != w.hi {
			t.Errorf("covariate %d = %+v, want %+v", i, c, w)
		}
	}
	for _, bad := range [][]string{{"nosuch"}, {"age@1"}} {
		if _, err := covariates(bad, nil, sc); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := covariates(nil, []string{"bwt"}, sc); err == nil {
		t.Error("a factor with 4500 levels was accepted")
	}
}

// TestModelRules: the rules of Model.Build and Analysis.Prepare that the
// shared cases (test/stattest.ModelCases) do not reach: terms without a
// schema, a column under another name, ranges, and the errors' kinds.
func TestModelRules(t *testing.T) {
	sc, err := cdm.ReadStudySchema("../../examples/reference/schemas/birthwt.toml", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		xs, factors []string
		sc          *cdm.StudySchema
		refused     string
	}{
		{xs: []string{"age"}, refused: "give its range"},
		{xs: []string{"age@14,45", "bmi=lwt / 2@40,125"}},
		{factors: []string{"race"}, refused: "no such column"},
		{xs: []string{"a=age@14,45", "age"}, sc: sc, refused: "twice"},
		{xs: []string{"age@45,14"}, sc: sc, refused: "lo < hi"},
		{xs: []string{"r2=race = 2", "r3=race = 3"}, sc: sc},
	} {
		_, err := covariates(c.xs, c.factors, c.sc)
		var re *RequestError
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%v %v: %v", c.xs, c.factors, err)
		case c.refused != "" && (!errors.As(err, &re) || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%v %v: %v, want a refusal (%s)", c.xs, c.factors, err, c.refused)
		}
	}
	if _, err := (Analysis{Method: "anova"}).Prepare(sc); !errors.Is(err, ErrMethod) || errors.Is(err, ErrInput) {
		t.Errorf("unknown method: %v", err)
	}
	p, err := Analysis{Method: "linreg", Model: Model{Outcome: Term{Name: "bwt"}, Covariates: []Term{{Name: "age"}}, Factors: []string{"race"}}}.Prepare(sc)
	if err != nil {
		t.Fatal(err)
	}
	if names := covNames(p.Covariates()); strings.Join(names, ",") != "age,race2,race3" {
		t.Errorf("linreg terms %v", names)
	}
}
