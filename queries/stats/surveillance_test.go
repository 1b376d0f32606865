package stats

import (
	"context"
	"fmt"
	"testing"
)

func TestEARS(t *testing.T) {
	s := &Series{}
	for i, v := range []float64{100, 104, 98, 101, 99, 103, 97, 100, 102, 99, 150, 240} {
		s.Labels = append(s.Labels, fmt.Sprintf("w%d", i))
		s.Counts = append(s.Counts, Noisy{Value: v, Var: 1})
	}
	for _, m := range []string{C1, C2, C3} {
		alerts, err := EARS(s, m)
		if err != nil {
			t.Fatal(err)
		}
		first := ""
		for _, a := range alerts {
			if a.Fired {
				first = a.Label
				break
			}
		}
		want := "w10"
		if m == C3 {
			want = "w11" // C3 needs baselines for t, t-1 and t-2
		}
		if first != want {
			t.Errorf("%s: first alert %q, want %s (%+v)", m, first, want, alerts)
		}
	}
	if _, err := EARS(s, "C4"); err == nil {
		t.Error("C4 accepted")
	}
}

func TestIncidence(t *testing.T) {
	q := QuerierFunc(func(ctx context.Context, r Request) (*Release, error) {
		return &Release{Columns: []string{"grp", "n"}, KeyColumns: 1, Rows: []Row{
			{Keys: []string{"A"}, Values: []Noisy{{Value: 50, Var: 4}}},
			{Keys: []string{"B"}, Values: []Noisy{{Value: 10, Var: 4}}},
		}}, nil
	})
	rates, err := Incidence(context.Background(), q, IncidenceOptions{Table: "conditions", By: "region", Populations: map[string]float64{"A": 1e6, "B": 2e5}, Budget: Budget{Epsilon: 1, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "A", rates[0].Rate.Value, 5, 1e-12)
	near(t, "B se", rates[1].Rate.SE, 5*0.1*3.7416573867739413, 1e-9) // 100000/2e5 · √(10+4)
	if _, err := Incidence(context.Background(), q, IncidenceOptions{Table: "conditions", By: "region", Populations: map[string]float64{"A": 1e6}, Budget: Budget{Epsilon: 1, Delta: 1e-6}}); err == nil {
		t.Error("a group without population was accepted")
	}
}
