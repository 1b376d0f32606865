package rpc

// Reverse tunnels (github.com/jhump/grpctunnel, imported nowhere else): a
// node that must not listen opens one long-lived gRPC stream to the
// coordinator's ordinary mTLS listener, and the coordinator calls the
// node's services over that stream as if it had dialled the node. Both
// ends keep fedstat's rules: the coordinator admits a tunnel only from a
// verified node certificate (TunnelHub), and the node runs the same
// authenticating, logging and error-mapping interceptor on every call that
// arrives through the tunnel as on calls to its listener (TunnelServer),
// with the coordinator's verified TLS certificate as the caller.

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fullstorydev/grpchan"
	"github.com/jhump/grpctunnel"
	"github.com/jhump/grpctunnel/tunnelpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/fedstat/fedstat/internal/pki"
)

// Tunnel keepalives. The coordinator pings an idle tunnel's connection
// every TunnelPingInterval and drops it when no answer comes within
// TunnelPingTimeout, so a node that vanished without closing its
// connection (power cut, firewall dropping state) is noticed within their
// sum; a node's process that ends closes its connection and is noticed at
// once. Those pings also keep the node's side busy, so the node pings
// the coordinator itself only after nodePingInterval without a frame from
// it, to notice a dead coordinator and reconnect: well above the
// coordinator's enforcement minimum (10 s, NewServer), so that jitter never
// makes a node's pings count as abuse there.
const (
	TunnelPingInterval = 10 * time.Second
	TunnelPingTimeout  = 20 * time.Second
	nodePingInterval   = 15 * time.Second
)

// TunnelKeepalive is the server option that makes a gRPC server (the
// coordinator's) ping idle connections as described above. It applies to
// every connection, analysts' too, which is why the timeout is generous: an
// analyst's client on a loaded machine or a slow link that is late to
// answer a ping by a few seconds must not lose its queries' watches (with
// 5 s, 100 concurrent queries under the race detector lost a connection).
func TunnelKeepalive() grpc.ServerOption {
	return grpc.KeepaliveParams(keepalive.ServerParameters{Time: TunnelPingInterval, Timeout: TunnelPingTimeout})
}

// DialTunnel is Dial for a node's connection to the coordinator that will
// carry its reverse tunnel: it adds the node's keepalive pings and keeps
// gRPC's reconnection backoff short.
func DialTunnel(addr string, id *pki.Identity, serverName string) (*grpc.ClientConn, error) {
	return Dial(addr, id, serverName,
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: nodePingInterval, Timeout: TunnelPingTimeout, PermitWithoutStream: true}),
		// The node's own loop backs off between tunnels; the connection
		// must not wait longer than it (gRPC's default reaches 2 minutes).
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 10 * time.Second,
			Backoff: backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second}}))
}

// Tunnel is one reverse tunnel as the coordinator sees it: a node,
// authenticated by its TLS client certificate, that the coordinator can
// call through Conn until Done is closed.
type Tunnel struct {
	// Peer and Cert are the node's verified identity and certificate.
	Peer Peer
	Cert *x509.Certificate
	// Remote is the address the tunnel came from (for logs).
	Remote string
	// Opened is when the tunnel was admitted.
	Opened time.Time

	mu     sync.Mutex
	ch     grpctunnel.TunnelChannel // set when the tunnel opens
	closed bool                     // Close was called (perhaps before ch was set)
}

// Conn returns the connection that calls the node's services through the
// tunnel. Call it only once TunnelHubConfig.Opened was told of t.
func (t *Tunnel) Conn() grpc.ClientConnInterface {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

// Done is closed when the tunnel has ended. Call it only once
// TunnelHubConfig.Opened was told of t.
func (t *Tunnel) Done() <-chan struct{} { return t.Conn().(grpctunnel.TunnelChannel).Done() }

// Close ends the tunnel (the node's stream ends with an error and it
// reconnects, with backoff, if it still runs). A tunnel closed between its
// admission and its opening ends as it opens, and Opened is not told of
// it.
func (t *Tunnel) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.ch != nil {
		t.ch.Close()
	}
}

// open sets the tunnel's channel; it reports false, closing ch, when the
// tunnel was closed before.
func (t *Tunnel) open(ch grpctunnel.TunnelChannel) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ch = ch
	if t.closed {
		ch.Close()
		return false
	}
	return true
}

// TunnelHubConfig says what a TunnelHub does with tunnels.
type TunnelHubConfig struct {
	// Admit decides whether a tunnel whose caller presented a verified
	// certificate of role node may open; an error refuses it and is what
	// the node is told (translated by ToStatus). Admit runs on the
	// tunnel's own goroutine before the tunnel carries anything; the
	// tunnel's Conn is not usable yet. Required.
	Admit func(ctx context.Context, t *Tunnel) error
	// Opened is told of every admitted tunnel once Conn is usable, and
	// Closed once it has ended (after Done is closed). Both are required,
	// are called on the tunnel's goroutine and must not block for long.
	Opened, Closed func(t *Tunnel)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// TunnelHub serves the tunnel service on a coordinator's gRPC server.
type TunnelHub struct {
	tunnelpb.UnimplementedTunnelServiceServer
	cfg   TunnelHubConfig
	inner tunnelpb.TunnelServiceServer
	h     *grpctunnel.TunnelServiceHandler
}

type tunnelKey struct{}

// RegisterTunnelHub registers the reverse-tunnel service on s (a server
// from NewServer, whose interceptors have already refused callers without
// a certificate of the network CA).
func RegisterTunnelHub(s *grpc.Server, cfg TunnelHubConfig) *TunnelHub {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hub := &TunnelHub{cfg: cfg}
	hub.h = grpctunnel.NewTunnelServiceHandler(grpctunnel.TunnelServiceHandlerOptions{
		OnReverseTunnelOpen: func(ch grpctunnel.TunnelChannel) {
			t, _ := ch.Context().Value(tunnelKey{}).(*Tunnel)
			if t == nil { // not admitted by OpenReverseTunnel below: cannot happen
				ch.Close()
				return
			}
			if t.open(ch) {
				cfg.Opened(t)
			}
		},
		OnReverseTunnelClose: func(ch grpctunnel.TunnelChannel) {
			if t, _ := ch.Context().Value(tunnelKey{}).(*Tunnel); t != nil {
				cfg.Closed(t)
			}
		},
	})
	hub.inner = hub.h.Service()
	tunnelpb.RegisterTunnelServiceServer(s, hub)
	return hub
}

// Shutdown stops new calls through every tunnel (before the server's
// GracefulStop, which then waits for the calls in flight).
func (h *TunnelHub) Shutdown() { h.h.InitiateShutdown() }

// OpenTunnel is the forward direction, which fedstat does not use.
func (h *TunnelHub) OpenTunnel(stream tunnelpb.TunnelService_OpenTunnelServer) error {
	return fmt.Errorf("%w: fedstat serves nothing through forward tunnels", ErrForbidden)
}

// OpenReverseTunnel admits a node's tunnel: the caller must present a
// verified certificate of role node, and Admit must accept it.
func (h *TunnelHub) OpenReverseTunnel(stream tunnelpb.TunnelService_OpenReverseTunnelServer) error {
	ctx := stream.Context()
	p, cert, err := RequireCert(ctx, pki.RoleNode)
	if err != nil {
		h.cfg.Logger.Warn("tunnel refused", "peer", p.Name, "role", p.Role, "remote", RemoteAddr(ctx), "err", err)
		return err
	}
	t := &Tunnel{Peer: p, Cert: cert, Remote: RemoteAddr(ctx), Opened: time.Now()}
	if err := h.cfg.Admit(ctx, t); err != nil {
		h.cfg.Logger.Warn("tunnel refused", "node", p.Name, "remote", t.Remote, "err", err)
		return err
	}
	return h.inner.OpenReverseTunnel(&taggedStream{TunnelService_OpenReverseTunnelServer: stream,
		ctx: context.WithValue(ctx, tunnelKey{}, t)})
}

// taggedStream carries its Tunnel in its context, where the handler's
// callbacks find it.
type taggedStream struct {
	tunnelpb.TunnelService_OpenReverseTunnelServer
	ctx context.Context
}

func (s *taggedStream) Context() context.Context { return s.ctx }

// Recv holds a node's answers to MaxMessageBytes, as gRPC holds those of a
// dialled node: the tunnel collects a message to the size its first frame
// announces, so a larger announcement ends the tunnel before anything is
// collected.
func (s *taggedStream) Recv() (*tunnelpb.ServerToClient, error) {
	m, err := s.TunnelService_OpenReverseTunnelServer.Recv()
	if err == nil && m.GetResponseMessage().GetSize() > MaxMessageBytes {
		return nil, fmt.Errorf("%w: the node announces an answer of %d bytes, above the limit of %d", ErrMessageTooLarge, m.GetResponseMessage().GetSize(), MaxMessageBytes)
	}
	return m, err
}

// TunnelServerConfig configures the node's end of its tunnels.
type TunnelServerConfig struct {
	// Conn is the connection to the coordinator (DialTunnel). Required;
	// the TunnelServer does not close it.
	Conn *grpc.ClientConn
	// Roles are the callers' roles allowed through the tunnel; the caller
	// is the peer that presented its certificate when Conn connected.
	// Required.
	Roles []pki.Role
	// Interceptors run in order on every call, after the authenticating
	// one of NewServer and the role check. Defaults to none.
	Interceptors []grpc.UnaryServerInterceptor
	// OnRefuse, when set, is told of every call refused for its caller.
	OnRefuse RefusalHook
	// Opened, when set, is told when the coordinator has accepted a
	// tunnel (Serve then serves it until it ends).
	Opened func()
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// TunnelServer is the node's end: it opens reverse tunnels to the
// coordinator and serves its registered services through them, with the
// same authenticating interceptor as NewServer.
type TunnelServer struct {
	rts *grpctunnel.ReverseTunnelServer
	reg grpchan.ServiceRegistry
}

// NewTunnelServer returns a TunnelServer; register services, then Serve.
func NewTunnelServer(cfg TunnelServerConfig) *TunnelServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	stub := &openedStub{TunnelServiceClient: tunnelpb.NewTunnelServiceClient(cfg.Conn), opened: cfg.Opened}
	rts := grpctunnel.NewReverseTunnelServer(stub)
	chain := append([]grpc.UnaryServerInterceptor{unaryInterceptor(cfg.Logger, cfg.OnRefuse), requireRoles(cfg.Roles, cfg.OnRefuse)}, cfg.Interceptors...)
	return &TunnelServer{rts: rts, reg: grpchan.WithInterceptor(rts, chainUnary(chain), nil)}
}

// RegisterService implements grpc.ServiceRegistrar.
func (s *TunnelServer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.reg.RegisterService(desc, impl)
}

// Serve opens one tunnel and serves calls through it until it ends or ctx
// does. err says why the tunnel could not open (the coordinator's refusal,
// typed: errors.Is(err, ErrTunnelTaken)) or why it ended; it is nil when
// ctx ended or the server was stopped.
func (s *TunnelServer) Serve(ctx context.Context) error {
	_, err := s.rts.Serve(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return FromStatus(err)
	}
	return nil
}

// GracefulStop refuses new calls and waits until every Serve has
// returned; Stop ends the tunnels and their calls at once.
func (s *TunnelServer) GracefulStop() { s.rts.GracefulStop() }

// Stop ends every tunnel and the calls in flight.
func (s *TunnelServer) Stop() { s.rts.Stop() }

// openedStub tells opened when the coordinator accepts a tunnel (its
// handler sends the negotiation header only after TunnelHub's admission;
// a refused tunnel ends with a status and no such header), and holds the
// coordinator's requests to MaxMessageBytes.
type openedStub struct {
	tunnelpb.TunnelServiceClient
	opened func()
}

func (s *openedStub) OpenReverseTunnel(ctx context.Context, opts ...grpc.CallOption) (tunnelpb.TunnelService_OpenReverseTunnelClient, error) {
	st, err := s.TunnelServiceClient.OpenReverseTunnel(ctx, opts...)
	if err != nil {
		return st, err
	}
	return &headerHook{TunnelService_OpenReverseTunnelClient: st, opened: s.opened}, nil
}

type headerHook struct {
	tunnelpb.TunnelService_OpenReverseTunnelClient
	opened func()
}

// Recv holds the coordinator's requests to MaxMessageBytes, as NewServer
// does (see taggedStream.Recv).
func (h *headerHook) Recv() (*tunnelpb.ClientToServer, error) {
	m, err := h.TunnelService_OpenReverseTunnelClient.Recv()
	if err == nil && m.GetRequestMessage().GetSize() > MaxMessageBytes {
		return nil, fmt.Errorf("%w: the coordinator announces a request of %d bytes, above the limit of %d", ErrMessageTooLarge, m.GetRequestMessage().GetSize(), MaxMessageBytes)
	}
	return m, err
}

func (h *headerHook) Header() (metadata.MD, error) {
	md, err := h.TunnelService_OpenReverseTunnelClient.Header()
	if err == nil && h.opened != nil && len(md.Get(tunnelNegotiateHeader)) > 0 {
		h.opened()
	}
	return md, err
}

// tunnelNegotiateHeader is the header grpctunnel's handler sends when it
// starts serving a reverse tunnel.
const tunnelNegotiateHeader = "grpctunnel-negotiate"

// requireRoles refuses calls whose caller has none of roles.
func requireRoles(roles []pki.Role, onRefuse RefusalHook) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if _, err := Require(ctx, roles...); err != nil {
			if onRefuse != nil {
				onRefuse(ctx, info.FullMethod, err)
			}
			return nil, ToStatus(err)
		}
		return h(ctx, req)
	}
}

// chainUnary runs interceptors in order, the first outermost.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return h
			}
			return func(ctx context.Context, req any) (any, error) { return ics[i](ctx, req, info, next(i+1)) }
		}
		return next(0)(ctx, req)
	}
}
