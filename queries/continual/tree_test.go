package continual_test

import (
	"math"
	"math/bits"
	"testing"

	"github.com/fedstat/fedstat/queries/continual"
)

func TestInterval(t *testing.T) {
	for _, c := range []struct {
		v           continual.Interval
		first, last int
		s           string
	}{
		{continual.Interval{0, 0}, 0, 0, "L0.0"},
		{continual.Interval{0, 7}, 7, 7, "L0.7"},
		{continual.Interval{2, 3}, 12, 15, "L2.3"},
		{continual.Interval{5, 1}, 32, 63, "L5.1"},
	} {
		if c.v.First() != c.first || c.v.Last() != c.last || c.v.String() != c.s || c.v.Len() != c.last-c.first+1 {
			t.Errorf("%+v: %d..%d %q, want %d..%d %q", c.v, c.v.First(), c.v.Last(), c.v.String(), c.first, c.last, c.s)
		}
	}
	if !(continual.Interval{2, 3}).Within(16) || (continual.Interval{2, 3}).Within(15) || (continual.Interval{-1, 0}).Within(16) {
		t.Error("Within")
	}
}

// TestLevels: the levels that hold an interval inside the lifetime.
func TestLevels(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {1, 1}, {2, 2}, {3, 2}, {4, 3}, {7, 3}, {8, 4}, {52, 6}, {64, 7}, {365, 9}} {
		if got := continual.Levels(c[0]); got != c[1] {
			t.Errorf("Levels(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}

// TestEnding: over a lifetime, Ending returns every dyadic interval inside
// the lifetime exactly once, at its last period, lowest level first, and
// nothing else; the intervals at each level partition a prefix of the
// periods.
func TestEnding(t *testing.T) {
	for T := 1; T <= 70; T++ {
		seen := map[continual.Interval]bool{}
		for tt := -2; tt < T+3; tt++ {
			got := continual.Ending(tt, T)
			if tt < 0 || tt >= T {
				if got != nil {
					t.Fatalf("T=%d: Ending(%d) = %v outside the lifetime", T, tt, got)
				}
				continue
			}
			for i, v := range got {
				if v.Last() != tt || v.Level != i || !v.Within(T) || seen[v] {
					t.Fatalf("T=%d: Ending(%d) = %v", T, tt, got)
				}
				seen[v] = true
			}
		}
		want := 0
		for j := 0; j < continual.Levels(T); j++ {
			if T>>j < 1 {
				t.Fatalf("T=%d: level %d holds no interval", T, j)
			}
			want += T >> j
		}
		if len(seen) != want {
			t.Fatalf("T=%d: %d intervals released, want %d", T, len(seen), want)
		}
		if T>>continual.Levels(T) != 0 {
			t.Fatalf("T=%d: level %d would hold an interval", T, continual.Levels(T))
		}
	}
}

// worstSquaredNorm returns, by brute force over every set S of at most K
// periods of a lifetime of T (a patient's counted periods), the largest
// Σ_v |S ∩ v|² over the released intervals v.
func worstSquaredNorm(T, K int) float64 {
	var ivs []continual.Interval
	for tt := range T {
		ivs = append(ivs, continual.Ending(tt, T)...)
	}
	worst := 0
	for s := uint(0); s < 1<<T; s++ {
		if bits.OnesCount(s) > K {
			continue
		}
		n := 0
		for _, v := range ivs {
			c := bits.OnesCount(s >> v.First() & (1<<v.Len() - 1))
			n += c * c
		}
		worst = max(worst, n)
	}
	return float64(worst)
}

// TestWeightBoundsEveryPatient is the sensitivity proof checked by brute
// force: for every lifetime T ≤ 14 and K ≤ 5, no set of at most K periods
// moves the released intervals by more than Weight(T, K) in squared L2
// norm, and the bound is attained when K is a power of two at most T.
func TestWeightBoundsEveryPatient(t *testing.T) {
	for T := 1; T <= 14; T++ {
		for K := 1; K <= 5; K++ {
			w, worst := continual.Weight(T, K), worstSquaredNorm(T, K)
			if worst > w {
				t.Errorf("T=%d K=%d: a patient moves the release by %v > Weight %v", T, K, worst, w)
			}
			if K&(K-1) == 0 && K <= T && worst != w {
				t.Errorf("T=%d K=%d: the worst patient moves it by %v, Weight %v is not attained", T, K, worst, w)
			}
			if a := continual.AnyWeight(T, K); a < worst {
				t.Errorf("T=%d K=%d: AnyWeight %v below the worst patient's %v", T, K, a, worst)
			}
		}
	}
	for _, c := range []struct {
		T, K int
		w    float64
	}{{52, 1, 6}, {52, 2, 22}, {52, 4, 76}, {64, 1, 7}, {1, 3, 1}, {0, 1, 0}, {5, 0, 0}} {
		if got := continual.Weight(c.T, c.K); got != c.w {
			t.Errorf("Weight(%d, %d) = %v, want %v", c.T, c.K, got, c.w)
		}
	}
	// K=1 at T=52: 52+26+13+6+3+1 intervals of one period each.
	if got := continual.AnyWeight(52, 1); got != 101 {
		t.Errorf("AnyWeight(52, 1) = %v, want 101", got)
	}
}

// TestNodeRho: the intervals of a lifetime, each at NodeRho, cost the
// lifetime budget for the worst patient (Gaussian mechanism: cost of an
// interval = c_v²·ρ_node for a patient who moves it by c_v per-query
// sensitivities).
func TestNodeRho(t *testing.T) {
	const rho = 0.0189
	for _, c := range [][2]int{{16, 1}, {16, 2}, {16, 4}, {52, 2}, {13, 4}} {
		T, K := c[0], c[1]
		node := continual.NodeRho(rho, T, K)
		if math.Abs(node*continual.Weight(T, K)-rho) > 1e-15 {
			t.Errorf("T=%d K=%d: NodeRho·W = %v, want %v", T, K, node*continual.Weight(T, K), rho)
		}
		// The worst patient for a power-of-two K: its first K periods.
		cost := 0.0
		for tt := range T {
			for _, v := range continual.Ending(tt, T) {
				cv := float64(max(0, min(v.Last(), K-1)-v.First()+1))
				cost += cv * cv * node
			}
		}
		if cost > rho*(1+1e-12) {
			t.Errorf("T=%d K=%d: the worst patient costs %v > %v", T, K, cost, rho)
		}
	}
	for _, bad := range [][3]float64{{0, 10, 1}, {-1, 10, 1}, {math.NaN(), 10, 1}, {1, 0, 1}, {1, 10, 0}} {
		if got := continual.NodeRho(bad[0], int(bad[1]), int(bad[2])); got != 0 {
			t.Errorf("NodeRho%v = %v, want 0", bad, got)
		}
	}
}
