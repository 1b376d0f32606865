package rpc_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jhump/grpctunnel/tunnelpb"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
)

// tunnelPair starts a server as srvID with a TunnelHub that admits every
// node, and a TunnelServer as nodeID that serves the health service
// through its tunnel; it returns the tunnel as the hub sees it and the
// callers the node's handlers saw.
func tunnelPair(t *testing.T, srvID, nodeID *pki.Identity) (*rpc.Tunnel, func() []rpc.Peer) {
	t.Helper()
	addr, opened, _ := startHub(t, srvID)
	conn, err := rpc.DialTunnel(addr, nodeID, "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	var seen []rpc.Peer
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, err := rpc.PeerFromContext(ctx)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
		return h(ctx, req)
	}
	ts := rpc.NewTunnelServer(rpc.TunnelServerConfig{Conn: conn, Roles: []pki.Role{pki.RoleCoordinator}, Interceptors: []grpc.UnaryServerInterceptor{record}})
	healthpb.RegisterHealthServer(ts, health.NewServer())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ts.Serve(ctx) }()
	t.Cleanup(func() { cancel(); ts.Stop(); <-done })
	select {
	case tu := <-opened:
		return tu, func() []rpc.Peer { mu.Lock(); defer mu.Unlock(); return append([]rpc.Peer(nil), seen...) }
	case <-time.After(10 * time.Second):
		t.Fatal("no tunnel within 10 s")
	}
	return nil, nil
}

// startHub serves a TunnelHub that admits every node as srvID; it
// returns its address and the tunnels as they open and close.
func startHub(t *testing.T, srvID *pki.Identity) (string, <-chan *rpc.Tunnel, <-chan *rpc.Tunnel) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(srvID, nil, nil, rpc.TunnelKeepalive())
	opened, closed := make(chan *rpc.Tunnel, 1), make(chan *rpc.Tunnel, 1)
	rpc.RegisterTunnelHub(srv, rpc.TunnelHubConfig{
		Admit:  func(context.Context, *rpc.Tunnel) error { return nil },
		Opened: func(tu *rpc.Tunnel) { opened <- tu },
		Closed: func(tu *rpc.Tunnel) { closed <- tu },
	})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), opened, closed
}

// TestTunnelRefusesOversizedAnswers: a node that announces an answer
// above MaxMessageBytes loses its tunnel before the coordinator collects
// any of it (a dialled node's answer has the same bound).
func TestTunnelRefusesOversizedAnswers(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	coord, err := ca.Issue(pki.IssueRequest{Name: "coordinator", Role: pki.RoleCoordinator, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	nodeID, err := ca.Issue(pki.IssueRequest{Name: "node-1", Role: pki.RoleNode, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	addr, opened, closed := startHub(t, coord)
	conn, err := rpc.DialTunnel(addr, nodeID, "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A hand-made node: the raw tunnel stream, with no grpctunnel server.
	st, err := tunnelpb.NewTunnelServiceClient(conn).OpenReverseTunnel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatal(err)
	}
	<-opened
	big := &tunnelpb.ServerToClient{StreamId: 1, Frame: &tunnelpb.ServerToClient_ResponseMessage{
		ResponseMessage: &tunnelpb.MessageData{Size: rpc.MaxMessageBytes + 1, Data: []byte("x")}}}
	if err := st.Send(big); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(rpc.FromStatus(err), rpc.ErrMessageTooLarge) {
				t.Fatalf("the tunnel ended with %v, want rpc.ErrMessageTooLarge", err)
			}
			break
		}
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the hub did not close the tunnel")
	}
}

// TestTunnelServesOnlyTheCoordinator: calls through a node's tunnel reach
// its handlers with the coordinator's verified certificate as the caller;
// a server that passes TLS (network CA, the name "coordinator") but whose
// certificate has another role (node) gets every call refused, before the
// node's own interceptors run.
func TestTunnelServesOnlyTheCoordinator(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string, role pki.Role) *pki.Identity {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	nodeID := issue("node-1", pki.RoleNode)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tu, seen := tunnelPair(t, issue("coordinator", pki.RoleCoordinator), nodeID)
	if tu.Peer.Name != "node-1" || tu.Peer.Role != pki.RoleNode || tu.Cert == nil {
		t.Fatalf("the hub sees the tunnel's node as %+v", tu.Peer)
	}
	resp, err := healthpb.NewHealthClient(tu.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("call through the tunnel: %v %v", resp, err)
	}
	if s := seen(); len(s) != 1 || s[0].Name != "coordinator" || s[0].Role != pki.RoleCoordinator {
		t.Fatalf("the node's handler saw callers %+v, want the coordinator", s)
	}

	// A server named "coordinator" by the network CA, but with a node's
	// role (an analyst's certificate carries no server name at all, so
	// TLS already refuses it).
	tu, seen = tunnelPair(t, issue("coordinator", pki.RoleNode), nodeID)
	_, err = healthpb.NewHealthClient(tu.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	if !errors.Is(rpc.FromStatus(err), rpc.ErrForbidden) {
		t.Fatalf("call from a non-coordinator through the tunnel: %v, want rpc.ErrForbidden", err)
	}
	if s := seen(); len(s) != 0 {
		t.Fatalf("the node's interceptors ran for a refused caller: %+v", s)
	}

	// The hub closing the tunnel ends it at the node.
	tu.Close()
	select {
	case <-tu.Done():
	case <-ctx.Done():
		t.Fatal("a closed tunnel is not done")
	}
}
