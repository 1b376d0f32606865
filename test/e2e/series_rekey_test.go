package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
)

// TestSeriesIntervalAcrossRekey: a series interval the nodes answered in one
// key epoch, and that was not released before two key ceremonies, is
// released in the newest epoch. A node that did not reveal its partial
// sends the same noisy share under the new key, charging nothing. A node
// that revealed its partial for a release that did not finish refuses,
// naming that. A node asked while the old epoch is still in its grace
// refuses, saying until when. An interval a node answered without keeping
// its share (an older version) is refused in the new epoch. Before this, the nodes replayed the old
// epoch's partial to every retry, and the interval could never be released.
func TestSeriesIntervalAcrossRekey(t *testing.T) {
	nw := startNetwork(t, 3, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := coordinatorClients(t, nw)
	coord, err := pki.LoadIdentityDir(nw.Dir+"/pki", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	s := &typesv1.SeriesSpec{Name: "rekey", Table: "conditions", Where: "code = '44054006'", DateColumn: "onset_date",
		Every: "week", Start: "2024-01-01", Periods: 2, MaxPeriodsPerPatient: 1, Epsilon: 1, Delta: 1e-6, MinNodes: 2}
	iv := continual.Interval{Level: 0, Index: 0}
	qid := protocol.SeriesQueryID(s, iv)
	spec, err := protocol.SeriesQuery(s, iv)
	if err != nil {
		t.Fatal(err)
	}
	spec.Threshold, spec.PartialLimit = 2, nw.Coordinator.Params().MaxAbs()/3
	// askAs asks node for interval iv of series ss as analyst, in epoch.
	askAs := func(ss *typesv1.SeriesSpec, analyst, node string, epoch uint64) (*nodev1.EvaluateResponse, error) {
		q, err := protocol.SeriesQuery(ss, iv)
		if err != nil {
			t.Fatal(err)
		}
		q.Threshold, q.PartialLimit = spec.Threshold, spec.PartialLimit
		req, err := protocol.SignEvaluate(coord.Key, node, &nodev1.EvaluateBody{QueryId: protocol.SeriesQueryID(ss, iv), Epoch: epoch, Spec: q,
			Analyst: analyst, Role: "analyst", Series: &nodev1.SeriesInterval{Spec: ss, Level: int32(iv.Level), Index: int32(iv.Index)}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return nodes[node].Evaluate(ctx, req)
	}
	ask := func(node string, epoch uint64) (*nodev1.EvaluateResponse, error) {
		return askAs(s, "analyst", node, epoch)
	}
	// Another series, of another analyst, whose interval node-1 answered
	// without keeping its share (a node of an older version): it cannot
	// move to a new epoch.
	old := proto.Clone(s).(*typesv1.SeriesSpec)
	old.Name = "rekey-old"
	epochOf := func(node string, a *nodev1.EvaluateResponse) uint64 {
		t.Helper()
		e, err := protocol.PartialEpoch(a.GetPartial().GetHeader(), qid, node)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	// Epoch 1: every node answers the interval; node-3 also reveals its
	// partial within the set of the three (a release that got no further).
	e1 := nw.Epoch
	var set []*nodev1.NodeSigned
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		a, err := ask(id, e1)
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, &nodev1.NodeSigned{NodeId: id, Signed: a.GetPartial()})
	}
	if _, err := nodes["node-3"].Reveal(ctx, &nodev1.RevealRequest{QueryId: qid, Epoch: e1, Spec: spec, Partials: set}); err != nil {
		t.Fatal(err)
	}
	if _, err := askAs(old, "analyst-2", "node-1", e1); err != nil {
		t.Fatal(err)
	}
	if err := nw.DB(0).Update(func(tx *kv.Txn) error {
		return tx.Delete([]byte("n/series-share/" + protocol.SeriesQueryID(old, iv)))
	}); err != nil {
		t.Fatal(err)
	}
	// Each node keeps its noisy share of the interval until it fixes the
	// partial in a set: node-3 did, so its share is gone.
	shareKey := []byte("n/series-share/" + qid)
	for i, want := range []bool{true, true, false} {
		_, err := nw.DB(i).Get(shareKey)
		if kept := err == nil; kept != want {
			t.Errorf("node-%d keeps the interval's share: %v (%v), want %v", i+1, kept, err, want)
		}
	}
	keptShare, err := nw.DB(0).Get(shareKey)
	if err != nil {
		t.Fatal(err)
	}
	rho := protocol.SeriesRho(s)
	spent := func(node string) float64 { return budgetAt(t, ctx, nodes[node], "analyst") }
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		if got := spent(id); !sameFloat(got, rho) {
			t.Fatalf("%s spent %v, want the series' lifetime rho %v", id, got, rho)
		}
	}

	// A key ceremony: epoch 1 is still served for its grace, so the nodes
	// do not move the interval to epoch 2 yet.
	e2, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ask("node-1", e2)
	wantCode(t, "asked in epoch 2 within epoch 1's grace", err, codes.FailedPrecondition, "epoch 1", "serves until")

	// Another one: epoch 1 is over at every node.
	e3, err := nw.Coordinator.KeyCeremony(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nw.Epoch = e3
	a, err := ask("node-1", e3)
	if err != nil {
		t.Fatalf("node-1 asked in epoch %d: %v", e3, err)
	}
	if got := epochOf("node-1", a); got != e3 || !a.GetReplayed() {
		t.Fatalf("node-1 sent a partial of epoch %d (replayed %v), want epoch %d and no new charge", got, a.GetReplayed(), e3)
	}
	// The same noisy share, not a fresh draw: a draw would have replaced
	// the kept one.
	if now, err := nw.DB(0).Get(shareKey); err != nil || !bytes.Equal(now, keptShare) {
		t.Fatalf("node-1's kept share after the re-encryption: %v (same %v); want the share of epoch %d", err, bytes.Equal(now, keptShare), e1)
	}
	again, err := ask("node-1", e3)
	if err != nil || !proto.Equal(again.GetPartial(), a.GetPartial()) {
		t.Fatalf("node-1 asked again: %v (same partial %v); want the stored epoch-%d partial", err, proto.Equal(again.GetPartial(), a.GetPartial()), e3)
	}
	_, err = ask("node-3", e3)
	wantCode(t, "node-3, which revealed in epoch 1", err, codes.AlreadyExists, "revealed its partial of epoch 1", "second release")
	_, err = askAs(old, "analyst-2", "node-1", e3)
	wantCode(t, "an interval answered without keeping its share", err, codes.FailedPrecondition, "without keeping its noisy share", "epoch 1")

	// The coordinator runs the series: the interval is released in epoch 3
	// from node-1 and node-2 (min_nodes 2), and so is the next period.
	cl := dialCoordinator(t, nw, nil)
	if _, err := cl.CreateSeries(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the series to release both periods", func() bool {
		got, err := cl.Series(ctx, s.GetName())
		return err == nil && got.GetReleased() == s.GetPeriods()
	})
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		if got := spent(id); !sameFloat(got, rho) {
			t.Errorf("%s spent %v after the re-keys, want the lifetime rho %v once", id, got, rho)
		}
	}
}

func sameFloat(a, b float64) bool { return a >= b*(1-1e-9) && a <= b*(1+1e-9) }
