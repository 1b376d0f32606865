package stats

import (
	"context"
	"math"
	"testing"
)

func TestFisherAndChiSquare(t *testing.T) {
	// R: fisher.test(matrix(c(3,1,1,3),2))$p.value = 0.4857
	near(t, "fisher", fisher2x2(3, 1, 1, 3), 0.485714, 1e-5)
	// chisq.test(matrix(c(4,14,51,38),2), correct=FALSE), checked by hand: E = 9.252, 45.75, 8.748, 43.25; p = erfc(√(X²/2))
	x2, p := chiSquare([][]float64{{4, 51}, {14, 38}})
	near(t, "X2", x2, 7.37612, 1e-4)
	near(t, "p", p, 0.0066102, 1e-6)
	near(t, "Q(1, 3.841459)", ChiSquareSurvival(3.841459, 1), 0.05, 1e-6)
	near(t, "Q(10, 18.307)", ChiSquareSurvival(18.307038, 10), 0.05, 1e-6)
}

func TestStrepExact(t *testing.T) {
	q := loadStudy(t, "reference/strep_tb.csv", "strep_tb.toml")
	tab, err := ContingencyTable(context.Background(), q, ContingencyOptions{Table: "strep_tb", Row: "arm", Col: "radiologic_6m", Budget: Budget{Epsilon: 1, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(arm, col string, want float64) {
		v, _ := tab.Count(arm, col)
		near(t, arm+" "+col, v.Value, want, 0)
	}
	check("Streptomycin", "1_Death", 4)
	check("Control", "1_Death", 14)
	check("Streptomycin", "6_Considerable_improvement", 28)
	check("Control", "6_Considerable_improvement", 4)
	deaths := tab.Dichotomise(func(c string) bool { return c == "1_Death" }, "dead", "alive")
	if !(deaths.ChiSquareP < 0.05 && deaths.FisherP < 0.05) {
		t.Errorf("deaths: chi-square p %v and Fisher p %v should both be < 0.05", deaths.ChiSquareP, deaths.FisherP)
	}
	if math.Abs(deaths.ChiSquareP-0.00661) > 1e-4 {
		t.Errorf("deaths chi-square p = %v", deaths.ChiSquareP)
	}
}
