package coordinator

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// KeyCeremony runs the key ceremony of a new key epoch among all configured
// nodes: it collects their certificates, gives each a Shamir point, has each
// make its secret share and a signed share of the collective public key (and,
// when T < N, Shamir shares of its secret sealed to each other member),
// aggregates the public key, and has every node verify and install it.
// Secret material never passes through the coordinator in the clear.
func (c *Coordinator) KeyCeremony(ctx context.Context) (uint64, error) {
	c.ceremonyMu.Lock()
	defer c.ceremonyMu.Unlock()
	var ids []string
	clients := map[string]nodev1.NodeServiceClient{}
	for _, n := range c.registry() {
		if n.Alive {
			ids = append(ids, n.ID)
			clients[n.ID] = n.client
		}
	}
	threshold := c.cfg.Threshold
	if threshold == 0 {
		threshold = len(ids)
	}
	if len(ids) < max(threshold, 1) {
		return 0, fmt.Errorf("%w: %d reachable nodes, the threshold is %d", ErrTooFewNodes, len(ids), threshold)
	}
	c.mu.Lock()
	c.pending = false
	c.mu.Unlock()
	members := make([]*nodev1.Member, len(ids))
	certs := make([]*x509.Certificate, len(ids))
	for i, id := range ids {
		info, err := clients[id].Info(ctx, &nodev1.InfoRequest{})
		if err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s: %w", id, err)
		}
		cert, err := x509.ParseCertificate(info.GetCertificateDer())
		if err != nil || info.GetNodeId() != id {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s sent a bad certificate or id %q", id, info.GetNodeId())
		}
		if err := pki.Verify(c.cfg.Identity.CA, cert); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s: %w", id, err)
		}
		certs[i] = cert
		members[i] = &nodev1.Member{NodeId: id, CertificateDer: cert.Raw, ShamirPoint: uint64(i + 1)}
	}
	crs, err := collective.NewCRS()
	if err != nil {
		return 0, err
	}
	c.mu.RLock()
	id := uint64(1)
	if c.epoch != nil {
		id = c.epoch.ID + 1
	}
	c.mu.RUnlock()
	// Epoch ids must also be newer than what any node has seen (a node
	// restarted with an older coordinator state refuses an old id).
	for _, nid := range ids {
		info, err := clients[nid].Info(ctx, &nodev1.InfoRequest{})
		if err == nil && info.GetEpoch() >= id {
			id = info.GetEpoch() + 1
		}
	}

	req := &nodev1.KeyGenRequest{Epoch: id, Params: c.params.Name(), Crs: crs, Members: members, Threshold: int32(threshold)}
	resps := make([]*nodev1.KeyGenResponse, len(ids))
	if err := c.fanout(ctx, ids, func(ctx context.Context, i int, nid string) error {
		r, err := clients[nid].KeyGen(ctx, req)
		resps[i] = r
		return err
	}); err != nil {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: %w", id, err)
	}
	shares := make([][]byte, len(ids))
	signed := make([]*nodev1.NodeSigned, len(ids))
	dealt := map[string][]*nodev1.DealtShare{}
	for i, nid := range ids {
		s := resps[i].GetCkgShare()
		if _, err := envelope.Open(certs[i].PublicKey, protocol.FromProto(s),
			envelope.Binding{QueryID: protocol.EpochQueryID(id), Epoch: id, NodeID: nid, Kind: protocol.KindCKGShare},
			c.cfg.Now(), 5*time.Minute, c.replay); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: CKG share of %s: %w", nid, err)
		}
		shares[i] = s.GetPayload()
		signed[i] = &nodev1.NodeSigned{NodeId: nid, Signed: s}
		for _, d := range resps[i].GetDealt() {
			if d.GetFromNodeId() != nid {
				return 0, fmt.Errorf("coordinator: key ceremony: %s sent a share labelled from %s", nid, d.GetFromNodeId())
			}
			dealt[d.GetToNodeId()] = append(dealt[d.GetToNodeId()], d)
		}
	}
	pk, err := collective.CKGAggregate(c.params, crs, shares)
	if err != nil {
		return 0, err
	}
	pkb, err := pk.MarshalBinary()
	if err != nil {
		return 0, err
	}
	if err := c.fanout(ctx, ids, func(ctx context.Context, i int, nid string) error {
		_, err := clients[nid].InstallKey(ctx, &nodev1.InstallKeyRequest{Epoch: id, CkgShares: signed, PublicKey: pkb, Dealt: dealt[nid]})
		return err
	}); err != nil {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: install: %w", id, err)
	}
	e := &epoch{ID: id, Threshold: threshold, PublicKey: pk, Created: c.cfg.Now()}
	for i, nid := range ids {
		e.Members = append(e.Members, epochMember{ID: nid, Cert: certs[i], Point: uint64(i + 1)})
	}
	if err := c.saveEpoch(e); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.epoch = e
	c.mu.Unlock()
	c.metrics.epoch.Set(float64(id))
	c.record(ctx, c.cfg.Identity.Name(), "epoch.created", "", map[string]any{"epoch": id, "members": ids, "threshold": threshold})
	c.log.Info("key epoch active", "epoch", id, "members", len(ids), "threshold", threshold)
	return id, nil
}

// fanout calls fn for every node concurrently and returns the first error,
// naming the node.
func (c *Coordinator) fanout(ctx context.Context, ids []string, fn func(ctx context.Context, i int, id string) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, i, id); err != nil {
				errs[i] = fmt.Errorf("node %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
