package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
)

// TestSeriesNodeChecks plays a coordinator that asks a node for intervals of
// a standing series, honestly and not: the node answers the series' own
// query for an interval that is over, charges the series' lifetime budget
// once however many intervals and retries it answers, replays an interval
// instead of drawing it afresh, and refuses (naming what is wrong) a query
// whose SQL, budget, reference date or id is not the series', an interval
// outside the lifetime or not over yet, and a plain query under a series id.
func TestSeriesNodeChecks(t *testing.T) {
	nw := startNetwork(t, 3, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := coordinatorClients(t, nw)
	coord, err := pki.LoadIdentityDir(nw.Dir+"/pki", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	s := &typesv1.SeriesSpec{Name: "checks", Table: "conditions", Where: "code = '44054006'", DateColumn: "onset_date", By: "region",
		Every: "week", Start: "2024-01-01", Periods: 8, MaxPeriodsPerPatient: 1, Epsilon: 1, Delta: 1e-6, MinNodes: 2}
	limit := nw.Coordinator.Params().MaxAbs() / 3
	query := func(spec *typesv1.SeriesSpec, iv continual.Interval) *typesv1.QuerySpec {
		q, err := protocol.SeriesQuery(spec, iv)
		if err != nil {
			t.Fatal(err)
		}
		q.Threshold, q.PartialLimit = 2, limit
		return q
	}
	ask := func(qid string, spec *typesv1.QuerySpec, in *nodev1.SeriesInterval) (*nodev1.EvaluateResponse, error) {
		req, err := protocol.SignEvaluate(coord.Key, "node-1", &nodev1.EvaluateBody{QueryId: qid, Epoch: nw.Epoch, Spec: spec,
			Analyst: "analyst", Role: "analyst", Series: in}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return nodes["node-1"].Evaluate(ctx, req)
	}
	interval := func(spec *typesv1.SeriesSpec, iv continual.Interval) *nodev1.SeriesInterval {
		return &nodev1.SeriesInterval{Spec: spec, Level: int32(iv.Level), Index: int32(iv.Index)}
	}
	spent := func() float64 {
		t.Helper()
		return budgetAt(t, ctx, nodes["node-1"], "analyst")
	}

	// Every interval of periods 0-3, honestly, each twice.
	var first []*nodev1.EvaluateResponse
	for tt := range 4 {
		for _, iv := range continual.Ending(tt, int(s.Periods)) {
			a, err := ask(protocol.SeriesQueryID(s, iv), query(s, iv), interval(s, iv))
			if err != nil || a.Replayed {
				t.Fatalf("interval %s: %v (replayed %v)", iv, err, a.GetReplayed())
			}
			b, err := ask(protocol.SeriesQueryID(s, iv), query(s, iv), interval(s, iv))
			if err != nil || !b.Replayed || !proto.Equal(a.Partial, b.Partial) {
				t.Fatalf("interval %s again: %v (replayed %v, same %v); want the stored partial", iv, err, b.GetReplayed(), proto.Equal(a.GetPartial(), b.GetPartial()))
			}
			first = append(first, a)
		}
	}
	rho := protocol.SeriesRho(s)
	if got := spent(); got < rho*(1-1e-9) || got > rho*(1+1e-9) {
		t.Fatalf("node-1 spent %v for 7 intervals asked twice, want the lifetime rho %v once", got, rho)
	}

	iv := continual.Interval{Level: 0, Index: 4}
	good := query(s, iv)
	refusals := []struct {
		name string
		qid  string
		spec *typesv1.QuerySpec
		in   *nodev1.SeriesInterval
		want string
	}{
		{"other SQL", protocol.SeriesQueryID(s, iv), func() *typesv1.QuerySpec {
			q := proto.Clone(good).(*typesv1.QuerySpec)
			q.Sql = strings.Replace(q.Sql, "44054006", "38341003", 1)
			return q
		}(), interval(s, iv), "SQL"},
		{"more budget", protocol.SeriesQueryID(s, iv), func() *typesv1.QuerySpec {
			q := proto.Clone(good).(*typesv1.QuerySpec)
			q.Epsilon *= 4
			return q
		}(), interval(s, iv), "budget"},
		{"other reference date", protocol.SeriesQueryID(s, iv), func() *typesv1.QuerySpec {
			q := proto.Clone(good).(*typesv1.QuerySpec)
			q.ReferenceDate = "2024-02-01"
			return q
		}(), interval(s, iv), "reference date"},
		{"other id", "s-checks-000000000000-L0.4", good, interval(s, iv), "query id"},
		{"outside the lifetime", "x", good, interval(s, continual.Interval{Level: 0, Index: 8}), "outside"},
		{"a plain query under a series id", protocol.SeriesQueryID(s, iv), good, nil, "series"},
	}
	for _, r := range refusals {
		_, err := ask(r.qid, r.spec, r.in)
		if err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: %v; want a refusal naming %q", r.name, err, r.want)
		}
	}
	// An interval that is not over at the node.
	now := &typesv1.SeriesSpec{}
	proto.Merge(now, s)
	now.Name, now.Start = "checks-now", cdm.DateOf(time.Now()).String()
	nowIV := continual.Interval{}
	if _, err := ask(protocol.SeriesQueryID(now, nowIV), query(now, nowIV), interval(now, nowIV)); err == nil || !strings.Contains(err.Error(), "not over") {
		t.Errorf("an interval that ends today: %v; want refused as not over", err)
	}
	if got := spent(); got < rho*(1-1e-9) || got > rho*(1+1e-9) {
		t.Errorf("node-1 spent %v after the refusals, want %v", got, rho)
	}
}

// budgetAt is what a node's ledger says analyst spent.
func budgetAt(t *testing.T, ctx context.Context, n nodev1.NodeServiceClient, analyst string) float64 {
	t.Helper()
	r, err := n.Budget(ctx, &nodev1.BudgetRequest{Analyst: analyst})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetSpentRho()
}
