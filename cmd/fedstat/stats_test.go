package main

import (
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

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
