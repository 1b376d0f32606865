package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
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
	Admitted   time.Time
	Meta       membership.Meta
	// Health is the node's last readiness report (monitor).
	Health nodeHealth
	// Excluded is set while the node is left out of key epochs
	// (LostMemberExclude).
	Excluded *exclusion
	// Transport is how the coordinator reaches the node: TransportDialled
	// (conn, to Addr) or TransportOutbound (tunnel, opened by the node;
	// Addr is outboundAddr).
	Transport string
	conn      *grpc.ClientConn
	tunnel    *rpc.Tunnel
	// client calls the node over whichever transport it has (an outbound
	// node without a tunnel: every call fails with rpc.ErrNoTunnel).
	client nodev1.NodeServiceClient
	// overdue is set once the keeper was told that this committee member
	// is due for replacement (setHealth), so that it is told once, not at
	// every failed readiness call (which would keep restarting its
	// debounce).
	overdue bool
}

// nodeHealth is a node's answer to the monitor's Info call.
type nodeHealth struct {
	At  time.Time
	Gen uint64 // Coordinator.gen when the call started: a report is trusted only while gen is unchanged
	// Err is set when the node did not answer.
	Err string
	// Epoch is the node's active epoch, Latest the newest it made keys for.
	Epoch, Latest uint64
	// Ready and Problem are its report on its keys of Epoch.
	Ready   bool
	Problem string
	// CertSHA256 is the digest of the certificate it presented.
	CertSHA256 []byte
}

// exclusion records why and when a node was left out of key epochs, and the
// certificate it had then: a new certificate ends the exclusion.
type exclusion struct {
	Reason     string
	At         time.Time
	CertSHA256 []byte
}

// recordOf is n's durable registry entry. Callers hold c.mu.
func recordOf(n *regNode) nodeRecord {
	r := nodeRecord{ID: n.ID, Addr: n.Addr, GossipAddr: n.GossipAddr, Admitted: n.Admitted.UnixMilli()}
	if !n.LastSeen.IsZero() {
		r.LastSeen = n.LastSeen.UnixMilli()
	}
	if x := n.Excluded; x != nil {
		r.Excluded, r.ExcludedAt, r.ExcludedCert = x.Reason, x.At.UnixMilli(), x.CertSHA256
	}
	return r
}

// setNode adds or updates a node's address; static nodes are admitted at
// once, gossip nodes after their certificate is checked. The address
// outboundAddr (from a stored record) makes an outbound node that waits for
// its tunnel.
func (c *Coordinator) setNode(id, addr string, alive bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.reg[id]
	if addr == outboundAddr {
		if !ok {
			n = &regNode{ID: id, Admitted: c.cfg.Now()}
			c.reg[id] = n
		}
		c.setOutboundLocked(n)
		return c.saveNode(recordOf(n))
	}
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
	if ok && n.tunnel != nil {
		// A node met by gossip at an address that answered with its
		// certificate: it connects dialled now.
		n.tunnel.Close()
		n.tunnel = nil
	}
	if !ok {
		n = &regNode{ID: id, Admitted: c.cfg.Now()}
		c.reg[id] = n
	}
	n.Addr, n.conn, n.client, n.Alive, n.Transport = addr, conn, nodev1.NewNodeServiceClient(conn), alive, TransportDialled
	if alive {
		n.LastSeen = c.cfg.Now()
	}
	return c.saveNode(recordOf(n))
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
		c.mu.RLock()
		wasAlive := known.Alive
		c.mu.RUnlock()
		if err := c.setNode(m.ID, m.GRPCAddr, m.Alive); err != nil {
			return err
		}
		if m.Alive != wasAlive {
			c.poke()
		}
		return nil
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
	n := c.reg[m.ID]
	n.Meta = m.Meta
	n.GossipAddr = m.GossipAddr
	rec := recordOf(n)
	changed := c.epoch == nil || !c.epoch.has(m.ID)
	c.mu.Unlock()
	if err := c.saveNode(rec); err != nil {
		return err
	}
	if changed {
		c.log.Info("node admitted", "node", m.ID, "addr", m.GRPCAddr)
		c.step(StepAdmitted)
	}
	c.poke()
	return nil
}

// poke tells the epoch keeper that membership or readiness changed.
func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
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
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-events:
				if err := c.admit(ctx, m); err != nil {
					c.log.Warn("gossip member not admitted", "member", m.ID, "err", err)
				}
			}
		}
	}()
	return nil
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

// monitor asks every admitted node for its readiness report now and every
// HealthInterval, until ctx ends.
func (c *Coordinator) monitor(ctx context.Context) {
	t := time.NewTicker(c.cfg.HealthInterval)
	defer t.Stop()
	for {
		c.pollHealth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthTimeout bounds one node's answer to the monitor.
const healthTimeout = 5 * time.Second

// pollHealth takes every admitted node's readiness report (Info) and tells
// the epoch keeper when one changed. A node presenting a new certificate
// ends its exclusion.
func (c *Coordinator) pollHealth(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range c.registry() {
		wg.Add(1)
		go func() { defer wg.Done(); c.checkNode(ctx, n) }()
	}
	wg.Wait()
}

// checkNode takes one node's readiness report.
func (c *Coordinator) checkNode(ctx context.Context, n regNode) {
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	cctx, cancel := context.WithTimeout(ctx, healthTimeout)
	info, err := n.client.Info(cctx, &nodev1.InfoRequest{})
	cancel()
	if ctx.Err() != nil {
		return
	}
	h := nodeHealth{At: c.cfg.Now(), Gen: gen}
	if err != nil {
		h.Err = callError(err).Error()
	} else {
		st := info.GetEpochStatus()
		h.Epoch, h.Ready, h.Problem = info.GetEpoch(), st.GetReady(), st.GetProblem()
		h.Latest = max(h.Epoch, st.GetLatestEpoch())
		if info.GetNodeId() == n.ID {
			d := sha256.Sum256(info.GetCertificateDer())
			h.CertSHA256 = d[:]
		}
		if n.tunnel != nil {
			c.setTunnelMeta(n.ID, n.tunnel, info)
		} else {
			c.setDialledMeta(n.ID, info)
		}
		c.touch(n.ID)
	}
	c.setHealth(ctx, n.ID, h, info.GetCertificateDer())
}

// recheck takes the readiness report of node id now (after it failed a
// step of a release), in the background.
func (c *Coordinator) recheck(id string) {
	c.mu.RLock()
	n, ok := c.reg[id]
	var cp regNode
	if ok {
		cp = *n
	}
	c.mu.RUnlock()
	if !ok {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
		defer cancel()
		c.checkNode(ctx, cp)
	}()
}

// setHealth stores a readiness report and pokes the keeper when it changed
// what the coordinator knows.
func (c *Coordinator) setHealth(ctx context.Context, id string, h nodeHealth, certDER []byte) {
	c.mu.Lock()
	n, ok := c.reg[id]
	if !ok {
		c.mu.Unlock()
		return
	}
	old := n.Health
	n.Health = h
	changed := old.Gen != h.Gen || old.Err != h.Err || old.Epoch != h.Epoch || old.Ready != h.Ready || old.Problem != h.Problem
	var readmit bool
	if x := n.Excluded; x != nil && h.CertSHA256 != nil && !bytes.Equal(x.CertSHA256, h.CertSHA256) {
		readmit = c.validNodeCert(id, certDER)
		if readmit {
			n.Excluded = nil
		}
	}
	rec := recordOf(n)
	c.mu.Unlock()
	if readmit {
		if err := c.saveNode(rec); err != nil {
			c.log.Error("could not store a re-admission", "node", id, "err", err)
		}
		c.log.Info("excluded node re-admitted: it presents a new certificate", "node", id)
		c.record(ctx, c.cfg.Identity.Name(), "node.readmitted", "", map[string]any{"node": id})
	}
	if changed || readmit || c.newlyOverdue(id, h) {
		if h.Err == "" && !h.Ready && h.Epoch != 0 {
			c.log.Warn("node reports it cannot use its keys", "node", id, "epoch", h.Epoch, "problem", h.Problem)
		}
		c.poke()
	}
}

// validNodeCert checks a certificate a node presents: network CA, role
// node, the node's id.
func (c *Coordinator) validNodeCert(id string, der []byte) bool {
	cert, err := x509.ParseCertificate(der)
	if err != nil || pki.Verify(c.cfg.Identity.CA, cert) != nil {
		return false
	}
	role, _ := pki.RoleOf(cert)
	return role == pki.RoleNode && cert.Subject.CommonName == id
}

// lostMember is a member of the current epoch that reported it cannot do
// its part in it.
type lostMember struct {
	ID, Problem string
	CertSHA256  []byte
}

// assessment says whether the network needs a new key epoch and why.
type assessment struct {
	need   bool
	reason string
	// waiting, when set, says why a needed epoch cannot be made now (too
	// few nodes); the keeper waits for a change instead of retrying.
	waiting string
	// lost are the members that lost their keys (handled by LostMember).
	lost []lostMember
}

// assess decides whether a new key epoch is needed: there is none; an
// admitted, alive node is not a member; a member reports a newer active
// epoch than the stored one (a ceremony finished at the nodes but was not
// stored here); a member reports it lost its keys; or an excluded node is
// still a member. A member that does not answer is no reason: liveness is
// not membership.
func (c *Coordinator) assess() assessment {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var a assessment
	var reasons []string
	e := c.epoch
	able := 0 // admitted, alive, not excluded: who would take part
	for _, id := range c.sortedIDsLocked() {
		n := c.reg[id]
		if !c.takesPart(n) {
			continue
		}
		able++
		if e != nil && !e.has(id) {
			reasons = append(reasons, fmt.Sprintf("%s is not a member of key epoch %d", id, e.ID))
		}
	}
	if e == nil {
		reasons = append(reasons, "no key epoch")
	} else {
		for _, m := range e.Members {
			n, ok := c.reg[m.ID]
			switch {
			case !ok:
			case n.Excluded != nil:
				reasons = append(reasons, fmt.Sprintf("%s is excluded (%s)", m.ID, n.Excluded.Reason))
			case c.fresh(n.Health) && n.Health.Epoch > e.ID:
				reasons = append(reasons, fmt.Sprintf("%s is at key epoch %d, newer than the stored %d (a ceremony was not stored)", m.ID, n.Health.Epoch, e.ID))
			default:
				if _, problem := c.memberProblemLocked(e, m.ID); problem != "" {
					a.lost = append(a.lost, lostMember{ID: m.ID, Problem: problem, CertSHA256: n.Health.CertSHA256})
					verb := "with"
					if c.cfg.LostMember == LostMemberExclude {
						verb, able = "without", able-btoi(n.Alive)
					}
					reasons = append(reasons, fmt.Sprintf("re-key %s %s, which %s", verb, m.ID, problem))
				}
			}
		}
	}
	if e != nil {
		for _, o := range c.overdueCommitteeLocked(e) {
			reasons = append(reasons, fmt.Sprintf("replace committee member %s, unreachable since %s", o.id, o.since.UTC().Format(time.RFC3339)))
		}
	}
	if len(reasons) == 0 {
		return a
	}
	a.need, a.reason = true, strings.Join(reasons, "; ")
	if need := max(c.cfg.MinMembers, 2, c.cfg.Threshold); able < need {
		a.waiting = fmt.Sprintf("%s: waiting for %d nodes that can take part in a key epoch (%d now)", a.reason, need, able)
	}
	return a
}

// takesPart reports whether node n would be a member of a new key epoch:
// alive and not excluded and, with a decryption committee, not known to be
// unreachable (a member that is down would stop the ceremony, and must
// give up its committee seat; it rejoins with the next epoch when it is
// back). Without a committee every admitted node must take part. Callers
// hold c.mu (or own n).
func (c *Coordinator) takesPart(n *regNode) bool {
	return n.Alive && n.Excluded == nil && !(c.cfg.Committee > 0 && n.Health.Err != "")
}

// unreachable reports whether a node is known to be down: not alive (its
// gossip or tunnel says so) or its last readiness call failed. Callers hold
// c.mu.
func unreachable(n *regNode) bool { return !n.Alive || n.Health.Err != "" }

// overdueMember is a committee member due for replacement.
type overdueMember struct {
	id    string
	since time.Time // unreachable since
}

// overdueCommitteeLocked lists the members of e's decryption committee that
// have been unreachable for CommitteeReplaceAfter while a reachable member
// off the committee could take their seat (none when every member is on the
// committee): each is a reason for a new key epoch. Callers hold c.mu.
func (c *Coordinator) overdueCommitteeLocked(e *epoch) []overdueMember {
	committee := e.committee()
	if len(committee) == len(e.Members) {
		return nil
	}
	spare := 0
	for _, m := range e.Members {
		if n, ok := c.reg[m.ID]; ok && m.Point == 0 && n.Excluded == nil && !unreachable(n) {
			spare++
		}
	}
	var out []overdueMember
	now := c.cfg.Now()
	for _, m := range committee {
		n, ok := c.reg[m.ID]
		if !ok || n.Excluded != nil || !unreachable(n) || spare == 0 {
			continue
		}
		since := n.LastSeen
		if since.IsZero() {
			since = n.Admitted
		}
		if now.Sub(since) >= c.cfg.CommitteeReplaceAfter {
			out = append(out, overdueMember{m.ID, since})
			spare--
		}
	}
	return out
}

// newlyOverdue reports whether node id, with the readiness report h just
// stored, has just become an unreachable committee member due for
// replacement: setHealth then pokes the keeper (once; the replacement must
// not wait for another change of the network).
func (c *Coordinator) newlyOverdue(id string, h nodeHealth) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.reg[id]
	if !ok {
		return false
	}
	if h.Err == "" {
		n.overdue = false
		return false
	}
	e := c.epoch
	if n.overdue || e == nil || !e.onCommittee(id) ||
		!slices.ContainsFunc(c.overdueCommitteeLocked(e), func(o overdueMember) bool { return o.id == id }) {
		return false
	}
	n.overdue = true
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fresh reports whether a readiness report can be trusted: it was taken
// since the last key ceremony started and the node answered. Callers hold
// c.mu.
func (c *Coordinator) fresh(h nodeHealth) bool {
	return !h.At.IsZero() && h.Gen == c.gen && h.Err == ""
}

// memberProblemLocked says why member id cannot do its part in epoch e,
// from its last trusted report ("" when it can, or is not known not to),
// and since when. Callers hold c.mu.
func (c *Coordinator) memberProblemLocked(e *epoch, id string) (time.Time, string) {
	n, ok := c.reg[id]
	if !ok {
		return time.Time{}, ""
	}
	if n.Excluded != nil {
		return n.Excluded.At, "is excluded: " + n.Excluded.Reason
	}
	h := n.Health
	switch {
	case !c.fresh(h):
		return time.Time{}, ""
	case h.Epoch == 0:
		return h.At, fmt.Sprintf("lost its keys of key epoch %d (it has no key epoch)", e.ID)
	case h.Epoch < e.ID:
		return h.At, fmt.Sprintf("lost its keys of key epoch %d (it is at epoch %d)", e.ID, h.Epoch)
	case h.Epoch == e.ID && !h.Ready:
		return h.At, fmt.Sprintf("cannot use its keys of key epoch %d: %s", e.ID, h.Problem)
	case h.Epoch > e.ID:
		return h.At, fmt.Sprintf("is at key epoch %d, newer than %d", h.Epoch, e.ID)
	}
	return time.Time{}, ""
}

// exclude leaves a lost member out of key epochs (LostMemberExclude) until
// it presents another certificate.
func (c *Coordinator) exclude(ctx context.Context, l lostMember) error {
	c.mu.Lock()
	n, ok := c.reg[l.ID]
	if !ok || n.Excluded != nil {
		c.mu.Unlock()
		return nil
	}
	n.Excluded = &exclusion{Reason: l.Problem, At: c.cfg.Now(), CertSHA256: l.CertSHA256}
	rec := recordOf(n)
	c.mu.Unlock()
	if err := c.saveNode(rec); err != nil {
		return err
	}
	c.log.Warn("node excluded from key epochs until it presents a new certificate", "node", l.ID, "reason", l.Problem)
	c.record(ctx, c.cfg.Identity.Name(), "node.excluded", "", map[string]any{"node": l.ID, "reason": l.Problem})
	return nil
}

// sortedIDsLocked returns the registry's ids in order. Callers hold c.mu.
func (c *Coordinator) sortedIDsLocked() []string {
	ids := make([]string, 0, len(c.reg))
	for id := range c.reg {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
