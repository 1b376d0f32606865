package continual_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/queries/continual"
)

// TestSavingTable computes the table of docs/statistics.md ("Continual
// release"): a season of T = 52 weekly releases by the tree against
// independent weekly releases at equal error, for K = 1, 2, 4. Run it with
// -v to print the table. The figures are pinned so that the document and
// the code cannot drift apart.
func TestSavingTable(t *testing.T) {
	want := map[int][4]float64{ // FreshPeriod, FreshTotal, BoundedPeriod, BoundedTotal
		1: {8.6667, 137.08, 0.16667, 2.6362},
		2: {2.3636, 37.386, 0.090909, 1.4379},
		4: {0.68421, 10.822, 0.052632, 0.83248},
	}
	var b strings.Builder
	b.WriteString("| K | W(52, K) | tree: worst variance, week / running total (at publication; at season end) | independent, 52 queries charged in full: budget for weeks / totals / both | independent with the K bound: budget for weeks / totals / both |\n|---|---|---|---|---|\n")
	for _, K := range []int{1, 2, 4} {
		s, err := continual.Compare(52, K)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "| %d | %g | %.1f / %.1f (%.1f / %.1f) | %.3g / %.3g / %.3g | %.3g / %.3g / %.3g |\n",
			K, s.Weight, s.TreePeriod, s.TreeTotal, s.FinalPeriod, s.FinalTotal,
			s.FreshPeriod, s.FreshTotal, s.FreshBoth, s.BoundedPeriod, s.BoundedTotal, s.BoundedBoth)
		w := want[K]
		for i, got := range []float64{s.FreshPeriod, s.FreshTotal, s.BoundedPeriod, s.BoundedTotal} {
			if !near(got, w[i], 1e-4) {
				t.Errorf("K=%d: figure %d is %.5g, the document says %.5g", K, i, got, w[i])
			}
		}
		// Both must hold: the running totals decide for every K here.
		if s.FreshBoth != max(s.FreshPeriod, s.FreshTotal) || s.BoundedBoth != max(s.BoundedPeriod, s.BoundedTotal) {
			t.Errorf("K=%d: 'both' is not the larger of the two", K)
		}
		// The tree's period value at publication is its leaf alone, at
		// even t: variance W.
		if !near(s.TreePeriod, s.Weight, 1e-9) {
			t.Errorf("K=%d: worst period variance %v, want W = %v", K, s.TreePeriod, s.Weight)
		}
	}
	t.Logf("budgets in multiples of the tree's lifetime budget; variances in units of one query at the whole budget\n%s", b.String())
	if _, err := continual.Compare(0, 1); err == nil {
		t.Error("Compare(0, 1) accepted")
	}
}
