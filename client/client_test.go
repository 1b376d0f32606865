package client_test

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

// testNetwork is an in-process network of three nodes (insecure, test-only
// parameters; threshold 2, min_nodes 2), with the coordinator's HTTP/JSON
// API served too, and a switch that makes node-3 hold every Evaluate until
// the coordinator gives up on it.
type testNetwork struct {
	nw   *demo.Network
	http string // base URL of the HTTP/JSON API
	hold *atomic.Bool
}

// Tokens of the HTTP/JSON API: the analyst (the same name as the demo's
// analyst certificate, so both transports share one budget).
const analystToken = "tok-analyst"

// startNetwork starts the test network with the analyst's budget at every
// node (ρ): with ρ = 1, a query at ε = 1 (ρ ≈ 0.017) fits many times, one at
// ε = 100 (ρ ≈ 48) never.
func startNetwork(t testing.TB, rho float64) *testNetwork {
	t.Helper()
	homomorphic.AllowInsecureForTests()
	data, err := demo.Synthetic(3, 120, 11)
	if err != nil {
		t.Fatal(err)
	}
	var hold atomic.Bool
	held := func(id string) []grpc.ServerOption {
		if id != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod == nodev1.NodeService_Evaluate_FullMethodName && hold.Load() {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return h(ctx, req)
		})}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet, Threshold: 2, MinNodes: 2,
		Budget: node.Budget{TotalRho: 2 * rho, PerAnalystRho: rho}, NodeServerOptions: held})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	path := filepath.Join(t.TempDir(), "tokens.json")
	toks := `[{"name": "analyst", "role": "analyst", "sha256": "` + coordinator.HashToken(analystToken) + `"}]`
	if err := os.WriteFile(path, []byte(toks), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := coordinator.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(tokens))
	t.Cleanup(srv.Close)
	return &testNetwork{nw: nw, http: srv.URL, hold: &hold}
}

// transports dials the network as its analyst over gRPC and over HTTP/JSON.
func (n *testNetwork) transports(t *testing.T) map[string]*client.Client {
	t.Helper()
	g, err := n.nw.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := client.Dial(client.Config{HTTPURL: n.http, Token: analystToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); h.Close() })
	return map[string]*client.Client{"grpc": g, "http": h}
}

// TestClient runs the client over both APIs against an in-process network:
// a query followed to its release with progress, its status again by Get
// and Watch, the caller's history, the nodes, the budget, the catalogue,
// and every typed error.
func TestClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	n := startNetwork(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for name, c := range n.transports(t) {
		t.Run(name, func(t *testing.T) {
			// Run: progress is called in order and ends with the release.
			var seen []*coordinatorv1.QueryStatus
			st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: "SELECT region, COUNT(*) FROM patients GROUP BY region"},
				client.RunOptions{Progress: func(s *coordinatorv1.QueryStatus) { seen = append(seen, s) }})
			if err != nil {
				t.Fatal(err)
			}
			if st.GetState() != coordinatorv1.State_STATE_DONE || st.GetResult().GetNodes() != 3 || len(st.GetResult().GetRows()) == 0 {
				t.Fatalf("run: %v", st)
			}
			if len(seen) == 0 || seen[len(seen)-1].GetState() != coordinatorv1.State_STATE_DONE {
				t.Fatalf("progress saw %d statuses, not ending with the release", len(seen))
			}
			for i := 1; i < len(seen); i++ {
				if seen[i].GetState() < seen[i-1].GetState() || seen[i].GetQueryId() != st.GetQueryId() {
					t.Errorf("progress out of order: %v after %v", seen[i].GetState(), seen[i-1].GetState())
				}
			}
			if r := client.Result(st.GetResult()); len(r.Rows) != len(st.GetResult().GetRows()) || r.Nodes != 3 {
				t.Errorf("decoded result %+v", r)
			}
			// Get and Watch of the released query; it is in the history.
			got, err := c.Get(ctx, st.GetQueryId())
			if err != nil || got.GetState() != coordinatorv1.State_STATE_DONE || got.GetResult() == nil {
				t.Errorf("get: %v %v", got, err)
			}
			calls := 0
			w, err := c.Watch(ctx, st.GetQueryId(), func(*coordinatorv1.QueryStatus) { calls++ })
			if err != nil || w.GetState() != coordinatorv1.State_STATE_DONE || calls != 1 {
				t.Errorf("watch of a released query: %v after %d statuses, %v", w.GetState(), calls, err)
			}
			list, err := c.List(ctx, 0)
			if err != nil || len(list) == 0 || list[0].GetQueryId() == "" {
				t.Errorf("list: %d queries, %v", len(list), err)
			}

			// Submit alone returns at once with the planned query.
			sub, err := c.Submit(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients"}, time.Minute)
			if err != nil || sub.GetQueryId() == "" || sub.GetPlan() == "" {
				t.Fatalf("submit: %v %v", sub, err)
			}
			if w, err := c.Watch(ctx, sub.GetQueryId(), nil); err != nil || w.GetState() != coordinatorv1.State_STATE_DONE {
				t.Errorf("watch after submit: %v %v", w.GetState(), err)
			}

			nodes, err := c.Nodes(ctx)
			if err != nil || len(nodes.GetNodes()) != 3 || nodes.GetThreshold() != 2 {
				t.Fatalf("nodes: %v %v", nodes, err)
			}
			for _, nd := range nodes.GetNodes() {
				if !nd.GetAlive() {
					t.Errorf("node %s not alive", nd.GetNodeId())
				}
			}
			b, err := c.Budget(ctx, "")
			if err != nil || b.GetAnalyst() != "analyst" || len(b.GetNodes()) != 3 {
				t.Fatalf("budget: %v %v", b, err)
			}
			for _, nb := range b.GetNodes() {
				if nb.GetError() != "" || !(nb.GetSpentRho() > 0) || nb.GetLimitRho() != 1 {
					t.Errorf("budget at %s: %v", nb.GetNodeId(), nb)
				}
			}
			cat, err := c.Catalogue(ctx)
			if err != nil || len(cat.GetRegions()) == 0 {
				t.Errorf("catalogue: %v %v", cat, err)
			}

			// A query the parser refuses: ErrBadQuery, with its position.
			_, err = c.Run(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*)\nFROM patients WHERE nosuch = 1"}, client.RunOptions{})
			var ce *client.Error
			if !errors.Is(err, client.ErrBadQuery) || !errors.As(err, &ce) || ce.Line != 2 || ce.Column != 21 || ce.Code != codes.InvalidArgument {
				t.Errorf("unknown column: %v (%+v)", err, ce)
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("status.Code of a bad query: %v", status.Code(err))
			}
			// A privacy parameter out of range: ErrBadQuery without position.
			_, err = c.Submit(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: -1}, 0)
			if !errors.Is(err, client.ErrBadQuery) || !errors.As(err, &ce) || ce.Line != 0 {
				t.Errorf("negative epsilon: %v", err)
			}
			// Another analyst's budget: ErrPermissionDenied.
			if _, err := c.Budget(ctx, "someone-else"); !errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrBadQuery) {
				t.Errorf("another analyst's budget: %v", err)
			}
			if _, err := c.Get(ctx, "q-nosuch"); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("unknown query: %v", err)
			}
			// A query no ledger can pay for: refused at every node, so too
			// few nodes answered; nothing was spent.
			st, err = c.Run(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 100}, client.RunOptions{})
			var qe *client.QueryError
			if !errors.As(err, &qe) || !errors.Is(err, client.ErrBudgetExhausted) || !errors.Is(err, client.ErrTooFewNodes) ||
				!errors.Is(err, client.ErrNoRelease) || errors.Is(err, client.ErrCancelled) || errors.Is(err, client.ErrPermissionDenied) {
				t.Errorf("query beyond the budget: %v", err)
			} else if qe.Status != st || st.GetState() != coordinatorv1.State_STATE_FAILED {
				t.Errorf("query beyond the budget: status %v", st.GetState())
			}
			// A query cancelled while node-3 holds it: ErrCancelled (a
			// question not asked before, or its release would answer it).
			n.hold.Store(true)
			sub, err = c.Submit(ctx, &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", Epsilon: 0.9}, time.Minute)
			if err != nil {
				n.hold.Store(false)
				t.Fatal(err)
			}
			if _, err := c.Cancel(ctx, sub.GetQueryId()); err != nil {
				t.Errorf("cancel: %v", err)
			}
			st, err = c.Watch(ctx, sub.GetQueryId(), nil)
			n.hold.Store(false)
			if err != nil || st.GetState() != coordinatorv1.State_STATE_CANCELLED {
				t.Errorf("cancelled query: %v %v", st.GetState(), err)
			} else if qe := (&client.QueryError{Status: st}); !errors.Is(qe, client.ErrCancelled) || errors.Is(qe, client.ErrTooFewNodes) {
				t.Errorf("cancelled query's error: %v", qe)
			}
		})
	}

	// A wrong token, and a coordinator that is not there.
	bad, err := client.Dial(client.Config{HTTPURL: n.http, Token: "tok-wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Nodes(ctx); !errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("wrong token: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for name, cfg := range map[string]client.Config{
		"grpc": {Address: addr, Identity: n.nw.Analyst},
		"http": {HTTPURL: "http://" + addr, Token: analystToken},
	} {
		c, err := client.Dial(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Nodes(ctx); !errors.Is(err, client.ErrUnavailable) {
			t.Errorf("%s: no coordinator: %v", name, err)
		}
		c.Close()
	}
	if _, err := client.Dial(client.Config{Token: analystToken}); !errors.Is(err, client.ErrConfig) {
		t.Errorf("a token without a URL: %v", err)
	}
}

// TestVarianceRoundTrip: the noise variance of every released count and
// sum, received over gRPC and over HTTP/JSON, is the one dp.Release computes
// for the query's plan (the plan the coordinator made, rebuilt here from the
// settled spec and the public catalogue), and the client's Querier hands it
// to queries/stats unchanged.
func TestVarianceRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	n := startNetwork(t, 1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sql := "SELECT region, COUNT(*), SUM(CLAMP(value, 0, 20)), AVG(CLAMP(value, 0, 20)) FROM observations WHERE code = '4548-4' GROUP BY region WITH max_rows = 1"
	for name, c := range n.transports(t) {
		t.Run(name, func(t *testing.T) {
			for _, eps := range []float64{1, 1e5} {
				st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: sql, Epsilon: eps}, client.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				preq, err := protocol.PlanRequest(st.GetSpec())
				if err != nil {
					t.Fatal(err)
				}
				p, err := plan.Build(preq, n.nw.Catalogue)
				if err != nil {
					t.Fatal(err)
				}
				want, err := dp.Release(p, make([]int64, p.VectorLen()), int(st.GetResult().GetNodes()))
				if err != nil {
					t.Fatal(err)
				}
				got := client.Result(st.GetResult())
				rel := stats.FromResult(got)
				checked := 0
				for i, row := range got.Rows {
					for j, v := range row.Values {
						w := want.Rows[i].Values[j].Variance
						switch {
						case v.Suppressed:
							if !math.IsNaN(v.Variance) {
								t.Errorf("ε %g: suppressed %s has variance %v", eps, got.Columns[got.KeyColumns+j], v.Variance)
							}
						case math.IsNaN(w):
							if !math.IsNaN(v.Variance) {
								t.Errorf("ε %g: %s (a ratio) has variance %v", eps, got.Columns[got.KeyColumns+j], v.Variance)
							}
						default:
							checked++
							if v.Variance != w || rel.Rows[i].Values[j].Var != w {
								t.Errorf("ε %g: row %d %s: variance %v (to stats %v), dp.Release computed %v", eps, i, got.Columns[got.KeyColumns+j], v.Variance, rel.Rows[i].Values[j].Var, w)
							}
						}
					}
				}
				if checked == 0 {
					t.Errorf("ε %g: no count or sum to check", eps)
				}
			}
		})
	}
	// The client's Querier: a stats round gets the same variances.
	c := n.transports(t)["grpc"]
	q := c.Querier(client.QuerierOptions{})
	rel, err := q.Query(ctx, stats.Request{SQL: "SELECT COUNT(*) FROM patients", Epsilon: 1, Delta: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Queries()) != 1 || len(rel.Rows) != 1 || rel.Rows[0].Values[0].Missing || !(rel.Rows[0].Values[0].Var > 0) {
		t.Errorf("querier: %d queries, release %+v", len(q.Queries()), rel)
	}
}
