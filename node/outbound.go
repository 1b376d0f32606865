package node

// Outbound-only nodes (Config.Coordinator). A hospital that may open no
// inbound port runs its node in this mode: the node dials the
// coordinator's gRPC address with its network certificate (mutual TLS, the
// coordinator's certificate checked against the network CA and
// CoordinatorName) and keeps one reverse tunnel open on that connection;
// the coordinator calls the node's NodeService through it exactly as it
// would call a listening node. Nothing else changes at the node: every
// call passes the same authenticating interceptor (the caller is the peer
// whose certificate the node verified when it connected, and it must have
// role coordinator), the same guard, and the same checks of signatures,
// commitments, policy and budget in the handlers. The node opens no gRPC
// listener and joins no gossip; its ops endpoint and admin socket stay
// local as in the other mode.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// Backoff bounds a capped exponential backoff with jitter: the n-th wait
// is uniform between a tenth of its ceiling and the ceiling,
// min(Initial·2^(n-1), Max).
type Backoff struct {
	Initial, Max time.Duration
}

// ErrNoTunnel is the readiness error of an outbound node whose tunnel to
// the coordinator is not open.
var ErrNoTunnel = errors.New("node: no tunnel to the coordinator")

// outbound is an outbound node's tunnel state.
type outbound struct {
	conn interface{ Close() error }
	srv  *rpc.TunnelServer
	up   atomic.Bool
	// inflight counts calls being served through the tunnel (graceful
	// stop waits for them).
	inflight atomic.Int64

	mu      sync.Mutex
	lastErr error // why the last tunnel failed or ended
}

// checkOutbound validates the outbound fields of cfg and sets their
// defaults.
func checkOutbound(cfg *Config) error {
	switch {
	case cfg.ListenAddr != "":
		return fmt.Errorf("node: Config.ListenAddr must be empty for an outbound node (Coordinator is set): it opens no listener")
	case cfg.AdvertiseAddr != "":
		return fmt.Errorf("node: Config.AdvertiseAddr must be empty for an outbound node (Coordinator is set): nobody dials it")
	case cfg.Gossip != nil:
		return fmt.Errorf("node: Config.Gossip must be nil for an outbound node (Coordinator is set): its tunnel is its membership")
	case len(cfg.ServerOptions) > 0:
		return fmt.Errorf("node: Config.ServerOptions cannot apply to an outbound node (Coordinator is set): it runs no gRPC server")
	}
	if cfg.CoordinatorName == "" {
		cfg.CoordinatorName = "coordinator"
	}
	if cfg.Reconnect.Initial <= 0 {
		cfg.Reconnect.Initial = 500 * time.Millisecond
	}
	if cfg.Reconnect.Max < cfg.Reconnect.Initial {
		cfg.Reconnect.Max = max(10*time.Second, cfg.Reconnect.Initial)
	}
	return nil
}

// newOutbound prepares the tunnel (the connection is made lazily, by Run).
func (n *Node) newOutbound() error {
	conn, err := rpc.DialTunnel(n.cfg.Coordinator, n.cfg.Identity, n.cfg.CoordinatorName)
	if err != nil {
		return fmt.Errorf("node: coordinator %s: %w", n.cfg.Coordinator, err)
	}
	o := &outbound{conn: conn}
	o.srv = rpc.NewTunnelServer(rpc.TunnelServerConfig{
		Conn: conn,
		// Only the coordinator is at the other end of the tunnel.
		Roles:        []pki.Role{pki.RoleCoordinator},
		Interceptors: []grpc.UnaryServerInterceptor{o.count, n.guard},
		OnRefuse:     n.refused,
		Opened: func() {
			o.up.Store(true)
			n.log.Info("tunnel to the coordinator open", "coordinator", n.cfg.Coordinator)
		},
		Logger: n.log,
	})
	nodev1.RegisterNodeServiceServer(o.srv, &service{n: n})
	n.out = o
	return nil
}

// count keeps the number of calls in flight through the tunnel.
func (o *outbound) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	o.inflight.Add(1)
	defer o.inflight.Add(-1)
	return h(ctx, req)
}

func (o *outbound) close() {
	o.srv.Stop()
	o.conn.Close()
}

// TunnelErr returns nil for a listening node and for an outbound node
// whose tunnel to the coordinator is open; otherwise an error wrapping
// ErrNoTunnel that says why (for /readyz).
func (n *Node) TunnelErr() error {
	o := n.out
	if o == nil || o.up.Load() {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lastErr != nil {
		return fmt.Errorf("%w at %s: %w", ErrNoTunnel, n.cfg.Coordinator, o.lastErr)
	}
	return fmt.Errorf("%w at %s yet", ErrNoTunnel, n.cfg.Coordinator)
}

// runOutbound keeps a tunnel open until ctx ends, reconnecting with
// backoff (reset once a tunnel was accepted), then stops gracefully: no new
// calls, and those in flight get up to 10 seconds.
func (n *Node) runOutbound(ctx context.Context) error {
	o := n.out
	if err := n.startAdmin(); err != nil {
		return err
	}
	defer n.stopAdmin()
	// The tunnel's own context outlives ctx by the graceful stop.
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		attempt := 0
		for {
			err := o.srv.Serve(tctx)
			opened := o.up.Swap(false)
			if ctx.Err() != nil || tctx.Err() != nil {
				return
			}
			if opened {
				attempt = 0
			}
			attempt++
			if err == nil {
				err = errors.New("the coordinator ended the tunnel")
			}
			o.mu.Lock()
			o.lastErr = err
			o.mu.Unlock()
			wait := n.cfg.Reconnect.delay(attempt, rand.Float64())
			if errors.Is(err, rpc.ErrTunnelTaken) {
				n.log.Error("the coordinator refuses the tunnel: another connection of this node id is open and answers (is this node running twice?)",
					"coordinator", n.cfg.Coordinator, "err", err, "retry_in", wait)
			} else {
				n.log.Warn("no tunnel to the coordinator: reconnecting", "coordinator", n.cfg.Coordinator, "was_open", opened, "err", err, "retry_in", wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	<-ctx.Done()
	// Graceful stop: refuse new calls, wait for those in flight.
	go o.srv.GracefulStop()
	deadline := time.Now().Add(10 * time.Second)
	for o.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	o.srv.Stop()
	<-served
	return nil
}

// delay is the wait before attempt n (1-based), for u uniform in [0, 1).
func (b Backoff) delay(n int, u float64) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	// At least a tenth of the ceiling, so a refusing coordinator is not
	// hammered when u is near 0.
	return d/10 + time.Duration(u*float64(d-d/10))
}
