package coordinator

import (
	"context"
	"crypto/x509"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/internal/membership"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// regNode is an admitted node. Admission is by certificate: a node whose
// network certificate (role node, issued by the network CA) names it is
// admitted the first time the coordinator reaches it. Liveness comes from
// gossip: a dead node stays admitted and stays a member of its key epoch.
type regNode struct {
	ID         string
	Addr       string
	GossipAddr string
	Alive      bool
	LastSeen   time.Time
	Meta       membership.Meta
	conn       *grpc.ClientConn
	client     nodev1.NodeServiceClient
}

// setNode adds or updates a node's address; static nodes are admitted at
// once, gossip nodes after their certificate is checked.
func (c *Coordinator) setNode(id, addr string, alive bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.reg[id]
	if ok && n.Addr == addr {
		n.Alive = alive
		if alive {
			n.LastSeen = c.cfg.Now()
		}
		return nil
	}
	conn, err := rpc.Dial(addr, c.cfg.Identity, id)
	if err != nil {
		return fmt.Errorf("coordinator: node %s at %s: %w", id, addr, err)
	}
	if ok && n.conn != nil {
		n.conn.Close()
	}
	if !ok {
		n = &regNode{ID: id}
		c.reg[id] = n
	}
	n.Addr, n.conn, n.client, n.Alive = addr, conn, nodev1.NewNodeServiceClient(conn), alive
	if alive {
		n.LastSeen = c.cfg.Now()
	}
	return c.saveNode(nodeRecord{ID: id, Addr: addr, GossipAddr: n.GossipAddr, Admitted: c.cfg.Now().UnixMilli(), LastSeen: n.LastSeen.UnixMilli()})
}

// client returns the gRPC client of an admitted node.
func (c *Coordinator) client(id string) (nodev1.NodeServiceClient, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.reg[id]
	if !ok {
		return nil, fmt.Errorf("coordinator: node %s is not in the registry", id)
	}
	return n.client, nil
}

// registry returns the admitted nodes, sorted by id.
func (c *Coordinator) registry() []regNode {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]regNode, 0, len(c.reg))
	for _, n := range c.reg {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// admit checks a node met through gossip: it must answer Info with a
// certificate of the network CA, role node, naming the advertised id.
func (c *Coordinator) admit(ctx context.Context, m membership.Member) error {
	if m.Role != string(pki.RoleNode) || m.GRPCAddr == "" {
		return nil
	}
	c.mu.RLock()
	known, ok := c.reg[m.ID]
	c.mu.RUnlock()
	if ok && known.Addr == m.GRPCAddr {
		return c.setNode(m.ID, m.GRPCAddr, m.Alive)
	}
	if !m.Alive {
		return nil
	}
	conn, err := rpc.Dial(m.GRPCAddr, c.cfg.Identity, m.ID)
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := nodev1.NewNodeServiceClient(conn).Info(cctx, &nodev1.InfoRequest{})
	if err != nil {
		return fmt.Errorf("coordinator: gossip member %s at %s: %w", m.ID, m.GRPCAddr, err)
	}
	cert, err := x509.ParseCertificate(info.GetCertificateDer())
	if err != nil {
		return fmt.Errorf("coordinator: gossip member %s: certificate: %w", m.ID, err)
	}
	if err := pki.Verify(c.cfg.Identity.CA, cert); err != nil {
		return err
	}
	if role, _ := pki.RoleOf(cert); role != pki.RoleNode || cert.Subject.CommonName != m.ID || info.GetNodeId() != m.ID {
		return fmt.Errorf("coordinator: gossip member %s presents a certificate for %s (%s)", m.ID, cert.Subject.CommonName, role)
	}
	if err := c.setNode(m.ID, m.GRPCAddr, true); err != nil {
		return err
	}
	c.mu.Lock()
	c.reg[m.ID].Meta = m.Meta
	c.reg[m.ID].GossipAddr = m.GossipAddr
	rec := nodeRecord{ID: m.ID, Addr: m.GRPCAddr, GossipAddr: m.GossipAddr, Admitted: c.cfg.Now().UnixMilli(), LastSeen: c.cfg.Now().UnixMilli()}
	changed := c.epoch == nil || !c.epoch.has(m.ID)
	if changed {
		c.pending = true
	}
	c.mu.Unlock()
	if err := c.saveNode(rec); err != nil {
		return err
	}
	if changed {
		c.log.Info("node admitted", "node", m.ID, "addr", m.GRPCAddr)
		select {
		case c.rekey <- struct{}{}:
		default:
		}
	}
	return nil
}

func (e *epoch) has(id string) bool {
	for _, m := range e.Members {
		if m.ID == id {
			return true
		}
	}
	return false
}

// startGossip joins the gossip pool and starts the loop that admits nodes
// and starts key epochs.
func (c *Coordinator) startGossip(ctx context.Context) error {
	gc := *c.cfg.Gossip
	events := make(chan membership.Member, 64)
	gc.OnChange = func(m membership.Member) {
		select {
		case events <- m:
		default:
			c.log.Warn("gossip event dropped", "member", m.ID)
		}
	}
	if gc.Logger == nil {
		gc.Logger = c.log
	}
	gc.Meta = membership.Meta{ID: c.cfg.Identity.Name(), Role: string(pki.RoleCoordinator), GRPCAddr: c.Addr()}
	// After a restart, rejoin the pool through the nodes it knew.
	for _, n := range c.registry() {
		if n.GossipAddr != "" {
			gc.Join = append(gc.Join, n.GossipAddr)
		}
	}
	pool, err := membership.Start(gc)
	if err != nil {
		return err
	}
	c.pool = pool
	c.rekey = make(chan struct{}, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var timer <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-events:
				if err := c.admit(ctx, m); err != nil {
					c.log.Warn("gossip member not admitted", "member", m.ID, "err", err)
				}
			case <-c.rekey:
				timer = time.After(c.cfg.EpochDebounce)
			case <-timer:
				timer = nil
				c.maybeRekey(ctx)
			}
		}
	}()
	return nil
}

// maybeRekey starts a new key epoch among the admitted, alive nodes when the
// admitted set changed and enough nodes are there.
func (c *Coordinator) maybeRekey(ctx context.Context) {
	c.mu.RLock()
	pending := c.pending
	c.mu.RUnlock()
	if !pending {
		return
	}
	alive := 0
	for _, n := range c.registry() {
		if n.Alive {
			alive++
		}
	}
	minMembers := max(c.cfg.MinMembers, 2, c.cfg.Threshold)
	if alive < minMembers {
		c.log.Info("waiting for more nodes before a key epoch", "alive", alive, "needed", minMembers)
		return
	}
	id, err := c.KeyCeremony(ctx)
	if err != nil {
		c.log.Error("key ceremony failed; will retry on the next membership change", "err", err)
		return
	}
	c.log.Info("new key epoch after a membership change", "epoch", id)
}

// GossipAddr returns the coordinator's gossip address (empty without gossip).
func (c *Coordinator) GossipAddr() string {
	if c.pool == nil {
		return ""
	}
	return c.pool.Addr()
}

// touch records that a node answered just now.
func (c *Coordinator) touch(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.reg[id]; ok {
		n.LastSeen = c.cfg.Now()
	}
}
