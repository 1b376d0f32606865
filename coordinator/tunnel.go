package coordinator

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/internal/membership"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// How the coordinator reaches a node (regNode.Transport, the node list's
// transport column).
const (
	// TransportDialled: the coordinator dials the node's gRPC listener
	// (static nodes and nodes admitted by gossip).
	TransportDialled = "dialled"
	// TransportOutbound: the node dials the coordinator and keeps one
	// reverse tunnel open, through which the coordinator calls it; the
	// node listens on nothing reachable from outside. The tunnel's life is
	// the node's liveness.
	TransportOutbound = "outbound"
)

// outboundAddr is the registry address of an outbound node (it has none
// that can be dialled); it has no port, so no real address equals it.
const outboundAddr = "outbound"

// tunnelProbeTimeout bounds the Info call that decides whether a node's
// existing connection is still alive when a new tunnel claims its id.
const tunnelProbeTimeout = 3 * time.Second

// noTunnel is the connection of an outbound node while it has no tunnel
// open: every call fails at once with rpc.ErrNoTunnel (Unavailable).
type noTunnel struct{ id string }

func (n noTunnel) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	return rpc.ToStatus(fmt.Errorf("%w: node %s", rpc.ErrNoTunnel, n.id))
}

func (n noTunnel) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, rpc.ToStatus(fmt.Errorf("%w: node %s", rpc.ErrNoTunnel, n.id))
}

var _ grpc.ClientConnInterface = noTunnel{}

// setOutboundLocked makes n an outbound node without a tunnel (at a
// restart, from its stored record). Callers hold c.mu.
func (c *Coordinator) setOutboundLocked(n *regNode) {
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
	n.Addr, n.Transport = outboundAddr, TransportOutbound
	if n.tunnel == nil {
		n.client, n.Alive = nodev1.NewNodeServiceClient(noTunnel{n.ID}), false
	}
}

// admitTunnel decides whether a node may open a tunnel. The TLS handshake
// verified the certificate against the network CA and the hub its role;
// here it gets the same check as a node met by gossip (network CA, role
// node, the node's id as its name) and must not take over a connection of
// the same node that still answers: a second tunnel for an id is refused
// unless the one it replaces (or the dialled connection) no longer
// answers Info within tunnelProbeTimeout. Admissions are serialised.
func (c *Coordinator) admitTunnel(ctx context.Context, t *rpc.Tunnel) error {
	id := t.Peer.Name
	if !c.validNodeCert(id, t.Cert.Raw) {
		return fmt.Errorf("%w: tunnel from %s: the certificate is not a node certificate of the network CA naming %q", rpc.ErrForbidden, t.Remote, id)
	}
	c.tunnelMu.Lock()
	defer c.tunnelMu.Unlock()
	c.mu.RLock()
	n, ok := c.reg[id]
	var old *rpc.Tunnel
	var client nodev1.NodeServiceClient
	var transport, addr string
	if ok {
		old, client, transport, addr = n.tunnel, n.client, n.Transport, n.Addr
	}
	c.mu.RUnlock()
	if ok && (old != nil || (transport == TransportDialled && addr != "")) {
		pctx, cancel := context.WithTimeout(ctx, tunnelProbeTimeout)
		info, err := client.Info(pctx, &nodev1.InfoRequest{})
		cancel()
		if err == nil && info.GetNodeId() == id {
			what := "a tunnel from " + remoteOf(old)
			if old == nil {
				what = "dialled at " + addr
			}
			return fmt.Errorf("%w: node %s is connected (%s) and answers; a second connection is refused", rpc.ErrTunnelTaken, id, what)
		}
		if old != nil {
			c.log.Warn("node opens a new tunnel; its old one no longer answers and is closed", "node", id, "old", old.Remote, "new", t.Remote, "err", err)
			old.Close()
		} else {
			c.log.Warn("node now connects outbound; its dialled address no longer answers", "node", id, "addr", addr, "err", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok = c.reg[id]
	if !ok {
		n = &regNode{ID: id, Admitted: c.cfg.Now()}
		c.reg[id] = n
	}
	n.tunnel = nil
	c.setOutboundLocked(n) // down, with no usable client until tunnelOpened
	n.tunnel = t
	return nil
}

func remoteOf(t *rpc.Tunnel) string {
	if t == nil {
		return ""
	}
	return t.Remote
}

// tunnelOpened makes an admitted tunnel the node's connection: the node is
// alive from now until tunnelClosed. Its coarse metadata (version, epoch,
// data summary, which the gossip of a dialled node carries) comes from an
// Info call through the tunnel, now and with every health check.
func (c *Coordinator) tunnelOpened(t *rpc.Tunnel) {
	id := t.Peer.Name
	c.mu.Lock()
	n, ok := c.reg[id]
	if !ok || n.tunnel != t {
		c.mu.Unlock()
		t.Close()
		return
	}
	n.client = nodev1.NewNodeServiceClient(t.Conn())
	n.Alive, n.LastSeen = true, c.cfg.Now()
	rec := recordOf(n)
	member := c.epoch != nil && c.epoch.has(id)
	client := n.client
	c.mu.Unlock()
	if err := c.saveNode(rec); err != nil {
		c.log.Error("could not store an outbound node", "node", id, "err", err)
	}
	c.log.Info("node connected outbound", "node", id, "remote", t.Remote)
	c.record(context.Background(), id, "node.tunnel_opened", "", map[string]any{"node": id, "remote": t.Remote})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
		defer cancel()
		if info, err := client.Info(ctx, &nodev1.InfoRequest{}); err == nil {
			c.setTunnelMeta(id, t, info)
		}
		if !member {
			c.log.Info("node admitted", "node", id, "transport", TransportOutbound)
			c.step(StepAdmitted)
		}
		c.poke()
	}()
}

// setTunnelMeta keeps an outbound node's coarse metadata from its Info
// answer, if the answer came through its current tunnel and names it.
func (c *Coordinator) setTunnelMeta(id string, t *rpc.Tunnel, info *nodev1.InfoResponse) {
	if info.GetNodeId() != id {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.reg[id]
	if !ok || n.tunnel != t {
		return
	}
	n.Meta = infoMeta(id, info)
}

// setDialledMeta keeps the coarse metadata of a node the coordinator dials
// and that does not gossip (a static [[nodes]] entry in a network without
// memberlist) from its Info answer: without it, such a node would announce
// no tables, and no query across linked agencies could be planned with it.
// A node that gossips keeps what it gossips.
func (c *Coordinator) setDialledMeta(id string, info *nodev1.InfoResponse) {
	if info.GetNodeId() != id {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.reg[id]; ok && n.tunnel == nil && n.GossipAddr == "" {
		n.Meta = infoMeta(id, info)
	}
}

// infoMeta is node id's coarse metadata as its Info answer gives it.
func infoMeta(id string, info *nodev1.InfoResponse) membership.Meta {
	sum := info.GetSummary()
	return membership.Meta{ID: id, Role: string(pki.RoleNode), Epoch: info.GetEpoch(), Version: info.GetVersion(),
		Patients: sum.GetPatients(), Rows: sum.GetRows()}
}

// tunnelClosed marks an outbound node down when its tunnel ends (unless a
// newer tunnel already replaced it).
func (c *Coordinator) tunnelClosed(t *rpc.Tunnel) {
	id := t.Peer.Name
	c.mu.Lock()
	n, ok := c.reg[id]
	if !ok || n.tunnel != t {
		c.mu.Unlock()
		return
	}
	n.tunnel = nil
	n.client, n.Alive = nodev1.NewNodeServiceClient(noTunnel{id}), false
	c.mu.Unlock()
	c.log.Warn("outbound node's tunnel closed: node down until it reconnects", "node", id, "remote", t.Remote, "open_for", time.Since(t.Opened).Round(time.Millisecond))
	c.record(context.Background(), id, "node.tunnel_closed", "", map[string]any{"node": id, "remote": t.Remote})
	c.poke()
}

// closeTunnels ends every node's tunnel (at shutdown: the nodes reconnect
// to the next coordinator).
func (c *Coordinator) closeTunnels() {
	c.mu.RLock()
	var ts []*rpc.Tunnel
	for _, n := range c.reg {
		if n.tunnel != nil {
			ts = append(ts, n.tunnel)
		}
	}
	c.mu.RUnlock()
	for _, t := range ts {
		t.Close()
	}
}

// startTunnels registers the tunnel service on the coordinator's gRPC
// server.
func (c *Coordinator) startTunnels() {
	c.tunnels = rpc.RegisterTunnelHub(c.srv, rpc.TunnelHubConfig{
		Admit: c.admitTunnel, Opened: c.tunnelOpened, Closed: c.tunnelClosed, Logger: c.log,
	})
}

// WaitConnected waits until every node of ids has its tunnel open (it is
// an outbound node and alive), or ctx ends.
func (c *Coordinator) WaitConnected(ctx context.Context, ids ...string) error {
	for {
		var missing []string
		c.mu.RLock()
		for _, id := range ids {
			if n, ok := c.reg[id]; !ok || n.tunnel == nil || !n.Alive {
				missing = append(missing, id)
			}
		}
		c.mu.RUnlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coordinator: no tunnel open from %v: %w", missing, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
