package e2e

// Outbound-only nodes in one process (issue 19): the nodes dial the
// coordinator and serve it through reverse tunnels; the coordinator admits
// a tunnel only from a node certificate of the network CA and keeps one
// live connection per node id. outbound_process_test.go runs the same with
// separate processes and checks their sockets.

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestOutboundInProcess runs the key ceremony and a cohort count over
// outbound nodes' tunnels and checks the release against the exact count,
// as TestEndToEnd does for dialled nodes; then the budgets through the
// tunnels, and the node list's transport.
func TestOutboundInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 3, 400), Threshold: 2, MinNodes: 3, Outbound: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	for _, n := range nw.Nodes {
		if n.Addr() != "" {
			t.Errorf("outbound node %s listens on %s", n.ID(), n.Addr())
		}
		if err := n.TunnelErr(); err != nil {
			t.Errorf("outbound node %s: %v", n.ID(), err)
		}
	}
	c := dialCoordinator(t, nw, nil)
	st, err := runQuery(ctx, c, &typesv1.QuerySpec{Sql: demo.CohortQuery, Epsilon: 1, Delta: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	res := st.GetResult()
	if res.GetNodes() != 3 || len(res.GetRows()) != 1 {
		t.Fatalf("unexpected result: %v", res)
	}
	got := res.GetRows()[0].GetValues()[0].GetValue()
	exact := exactTotal(t, nw, st.Spec)
	sigma := buildPlan(t, nw, st.Spec).NodeSigmas()[0] * math.Sqrt(3)
	if exact < 10 || math.Abs(got-exact) > 3.291*sigma {
		t.Fatalf("released %v, exact %v, 99.9%% bound %v", got, exact, 3.291*sigma)
	}
	b := nw.Coordinator.Budget(ctx, "analyst")
	if len(b.GetNodes()) != 3 {
		t.Fatalf("budgets through the tunnels: %v", b)
	}
	for _, n := range b.GetNodes() {
		if n.GetError() != "" || n.GetSpentRho() <= 0 {
			t.Errorf("budget of %s through its tunnel: spent %v, error %q", n.GetNodeId(), n.GetSpentRho(), n.GetError())
		}
	}
	for _, ni := range nw.Coordinator.NodesStatus(ctx).GetNodes() {
		if ni.GetTransport() != "outbound" || !ni.GetAlive() || ni.GetVersion() == "" {
			t.Errorf("node list: %s transport %q alive %v version %q, want an alive outbound node", ni.GetNodeId(), ni.GetTransport(), ni.GetAlive(), ni.GetVersion())
		}
	}
}

// stubNode answers Info as node id, or never when hang is set (a tunnel
// whose node stopped answering).
type stubNode struct {
	nodev1.UnimplementedNodeServiceServer
	id   string
	hang bool
}

func (s *stubNode) Info(ctx context.Context, _ *nodev1.InfoRequest) (*nodev1.InfoResponse, error) {
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &nodev1.InfoResponse{NodeId: s.id}, nil
}

// tunnelAttempt is a tunnel opened by a test: done yields Serve's error
// when the tunnel could not open or ended, and opened is closed when the
// coordinator accepted it.
type tunnelAttempt struct {
	done   <-chan error
	opened <-chan struct{}
}

// openTunnel opens a tunnel to the coordinator as id, serving impl, in the
// background.
func openTunnel(t *testing.T, ctx context.Context, addr string, id *pki.Identity, impl nodev1.NodeServiceServer) tunnelAttempt {
	t.Helper()
	conn, err := rpc.DialTunnel(addr, id, "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	op := make(chan struct{})
	srv := rpc.NewTunnelServer(rpc.TunnelServerConfig{Conn: conn, Roles: []pki.Role{pki.RoleCoordinator}, Opened: func() { close(op) }})
	nodev1.RegisterNodeServiceServer(srv, impl)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	t.Cleanup(srv.Stop)
	return tunnelAttempt{done: errc, opened: op}
}

// tunnelRefused waits for a tunnel's refusal and returns it; it fails the
// test if the tunnel opened.
func tunnelRefused(t *testing.T, a tunnelAttempt) error {
	t.Helper()
	select {
	case <-a.opened:
		t.Fatal("the coordinator accepted the tunnel")
	case err := <-a.done:
		if err == nil {
			t.Fatal("the tunnel ended without an error")
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to the tunnel within 20 s")
	}
	return nil
}

// TestTunnelAdmission: the coordinator refuses a tunnel from a certificate
// of another role, from a certificate of another CA that names an admitted
// node, and a second tunnel of a node whose tunnel answers; it accepts a
// second tunnel that replaces one that no longer answers, and closes the
// old one. An admitted node's tunnel is untouched by all of it.
func TestTunnelAdmission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: syntheticData(t, 2, 100), Threshold: 2, MinNodes: 2, Outbound: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	addr := nw.Coordinator.Addr()
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("analyst certificate", func(t *testing.T) {
		err := tunnelRefused(t, openTunnelErr(t, ctx, addr, nw.Analyst, "analyst"))
		if !errors.Is(err, rpc.ErrForbidden) {
			t.Fatalf("tunnel with an analyst certificate: %v, want rpc.ErrForbidden", err)
		}
	})
	t.Run("certificate of another CA naming node-1", func(t *testing.T) {
		rogueCA, err := pki.NewCA("rogue", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rogue, err := rogueCA.Issue(pki.IssueRequest{Name: "node-1", Role: pki.RoleNode, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		rogue.CA = ca.Cert // it trusts the real coordinator, which must not trust it
		tunnelRefused(t, openTunnelErr(t, ctx, addr, rogue, "node-1"))
	})
	t.Run("second tunnel of a live node", func(t *testing.T) {
		id, err := pki.LoadIdentityDir(filepath.Join(nw.Dir, "pki"), "node-1")
		if err != nil {
			t.Fatal(err)
		}
		err = tunnelRefused(t, openTunnelErr(t, ctx, addr, id, "node-1"))
		if !errors.Is(err, rpc.ErrTunnelTaken) {
			t.Fatalf("second tunnel of node-1: %v, want rpc.ErrTunnelTaken", err)
		}
	})
	t.Run("replacing a tunnel that no longer answers", func(t *testing.T) {
		id, err := ca.Issue(pki.IssueRequest{Name: "node-9", Role: pki.RoleNode, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		old := openTunnel(t, ctx, addr, id, &stubNode{id: "node-9", hang: true})
		waitOpened(t, old.opened, "node-9's first tunnel")
		live := openTunnel(t, ctx, addr, id, &stubNode{id: "node-9"})
		waitOpened(t, live.opened, "node-9's tunnel replacing one that hangs")
		select {
		case <-old.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the replaced tunnel is still open")
		}
		err = tunnelRefused(t, openTunnelErr(t, ctx, addr, id, "node-9"))
		if !errors.Is(err, rpc.ErrTunnelTaken) {
			t.Fatalf("third tunnel of node-9 while the second answers: %v, want rpc.ErrTunnelTaken", err)
		}
		select {
		case err := <-live.done:
			t.Fatalf("node-9's live tunnel ended: %v", err)
		default:
		}
	})
	// node-1's own tunnel still carries its calls.
	for _, ni := range nw.Coordinator.NodesStatus(ctx).GetNodes() {
		if ni.GetNodeId() == "node-1" && (!ni.GetAlive() || ni.GetVersion() == "") {
			t.Errorf("node-1 after the refused tunnels: %v", ni)
		}
	}
}

// openTunnelErr opens a tunnel as id serving a stub that answers as name.
func openTunnelErr(t *testing.T, ctx context.Context, addr string, id *pki.Identity, name string) tunnelAttempt {
	t.Helper()
	return openTunnel(t, ctx, addr, id, &stubNode{id: name})
}

func waitOpened(t *testing.T, opened <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-opened:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s was not accepted within 20 s", what)
	}
}
