package e2e

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestExplainChargesNothing: explaining a query asks no node and charges
// nothing; its predicted cost is what every node then charges for the same
// query, and its predicted noise is what the release reports (variance and
// 95% half-width of each total); a query Submit refuses, Explain refuses
// the same way.
func TestExplainChargesNothing(t *testing.T) {
	nw := startNetwork(t, 3, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dialCoordinator(t, nw, nil)
	spent := func() map[string]float64 { return spentRho(t, ctx, c) }
	for _, sql := range []string{demo.CohortQuery, "SELECT region, COUNT(*) FROM conditions GROUP BY region"} {
		spec := &typesv1.QuerySpec{Sql: sql, Epsilon: 0.5, Delta: 1e-6}
		before := spent()
		x, err := c.Explain(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if after := spent(); !equalSpend(before, after) {
			t.Fatalf("%s: explain charged: %v -> %v", sql, before, after)
		}
		if len(x.GetNodes()) != 3 || len(x.GetNoise()) != 1 || x.GetAssumedNodes() != 3 || !strings.Contains(x.GetPlan(), "COUNT") {
			t.Fatalf("%s: explanation %v", sql, x)
		}
		st, err := c.Run(ctx, spec, client.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		after := spent()
		for id, r := range after {
			if d := r - before[id]; math.Abs(d-x.GetRho()) > 1e-12 {
				t.Errorf("%s: %s charged %v, explain said %v", sql, id, d, x.GetRho())
			}
		}
		want := x.GetNoise()[0]
		checked := 0
		for _, row := range st.GetResult().GetRows() {
			n := row.GetValues()[0]
			if n.GetSuppressed() {
				continue // a small count travels without its value
			}
			checked++
			if math.Abs(n.GetVariance()-want.GetVariance()) > 1e-9*want.GetVariance() || n.GetCiHigh()-n.GetValue() != want.GetHalfWidth() {
				t.Errorf("%s %v: released variance %v, half-width %v; explain predicted %v, %v", sql, row.GetKeys(), n.GetVariance(),
					n.GetCiHigh()-n.GetValue(), want.GetVariance(), want.GetHalfWidth())
			}
		}
		if checked == 0 {
			t.Errorf("%s: every cell was suppressed; nothing to compare", sql)
		}
	}
	bad := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM nowhere"}
	_, errX := c.Explain(ctx, bad)
	_, errS := c.Submit(ctx, bad, 0)
	if errX == nil || errS == nil || errX.Error() != errS.Error() || !errors.Is(errX, client.ErrBadQuery) {
		t.Errorf("a bad query: explain %v, submit %v; want the same refusal", errX, errS)
	}
}

// spentRho returns what c's analyst has spent at each node (rho).
func spentRho(t *testing.T, ctx context.Context, c *client.Client) map[string]float64 {
	t.Helper()
	b, err := c.Budget(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, n := range b.GetNodes() {
		out[n.GetNodeId()] = n.GetSpentRho()
	}
	return out
}

func equalSpend(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
