package coordinator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// analystRoles may run queries.
var analystRoles = []pki.Role{pki.RoleAnalyst, pki.RoleResearcher, pki.RoleOperator}

// service adapts the coordinator to its gRPC API.
type service struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	c *Coordinator
}

func (s *service) Submit(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.QueryStatus, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	st, err := s.c.SubmitWith(ctx, Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec(), SubmitOptions{
		Deadline: time.Duration(req.GetDeadlineMs()) * time.Millisecond, Fresh: req.GetFresh(), Signature: req.GetAnalystSignature()})
	if err != nil {
		return nil, err
	}
	return StatusFor(p, st), nil
}

// mayRead reports whether p may see query st: its analyst, or an operator.
func mayRead(p rpc.Peer, st *coordinatorv1.QueryStatus) bool {
	return p.Role == pki.RoleOperator || st.Analyst == p.Name
}

// readableBy returns the status of query id when p may see it (mayRead);
// to anyone else the query does not exist. Callers show it with StatusFor.
func (c *Coordinator) readableBy(p rpc.Peer, id string) (*coordinatorv1.QueryStatus, error) {
	st, err := c.Get(id)
	if err != nil {
		return nil, err
	}
	if !mayRead(p, st) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st, nil
}

func (s *service) Get(ctx context.Context, req *coordinatorv1.GetRequest) (*coordinatorv1.QueryStatus, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	st, err := s.c.readableBy(p, req.GetQueryId())
	if err != nil {
		return nil, err
	}
	return StatusFor(p, st), nil
}

func (s *service) GetReleaseRecord(ctx context.Context, req *coordinatorv1.GetRequest) (*coordinatorv1.ReleaseRecord, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return s.c.releaseRecordFor(p, req.GetQueryId())
}

func (s *service) Watch(req *coordinatorv1.GetRequest, stream coordinatorv1.CoordinatorService_WatchServer) error {
	p, err := rpc.Require(stream.Context(), analystRoles...)
	if err != nil {
		return err
	}
	return s.c.watchAs(stream.Context(), p, req.GetQueryId(), stream.Send)
}

func (s *service) Cancel(ctx context.Context, req *coordinatorv1.GetRequest) (*coordinatorv1.QueryStatus, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	if _, err := s.c.readableBy(p, req.GetQueryId()); err != nil {
		return nil, err
	}
	st, err := s.c.Cancel(req.GetQueryId())
	if err != nil {
		return nil, err
	}
	return StatusFor(p, st), nil
}

func (s *service) List(ctx context.Context, req *coordinatorv1.ListRequest) (*coordinatorv1.ListResponse, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	who := p.Name
	if p.Role == pki.RoleOperator {
		who = ""
	}
	return &coordinatorv1.ListResponse{Queries: s.c.listFor(p, int(req.GetLimit()), who)}, nil
}

func (s *service) Nodes(ctx context.Context, _ *coordinatorv1.NodesRequest) (*coordinatorv1.NodesResponse, error) {
	if _, err := rpc.Require(ctx, analystRoles...); err != nil {
		return nil, err
	}
	return s.c.NodesStatus(ctx), nil
}

func (s *service) Catalogue(ctx context.Context, _ *coordinatorv1.CatalogueRequest) (*coordinatorv1.CatalogueResponse, error) {
	if _, err := rpc.Require(ctx, analystRoles...); err != nil {
		return nil, err
	}
	return s.c.CatalogueInfo(), nil
}

// CatalogueInfo is the public catalogue served to analysts: regions, study
// tables, value sets and populations.
func (c *Coordinator) CatalogueInfo() *coordinatorv1.CatalogueResponse {
	out := &coordinatorv1.CatalogueResponse{Populations: map[string]int64{}}
	if cat := c.cfg.Catalogue; cat != nil {
		out.Regions = append(out.Regions, cat.Regions...)
		for _, st := range cat.Studies {
			out.Studies = append(out.Studies, st.Name)
		}
		for _, v := range cat.ValueSets {
			out.ValueSets = append(out.ValueSets, &coordinatorv1.ValueSetInfo{Name: v.Name, Title: v.Title,
				Codes: int32(len(v.Include)), Families: int32(len(v.IncludeFamilies)), Excluded: int32(len(v.Exclude) + len(v.ExcludeFamilies)),
				Names: v.Names(), Digest: v.Digest()})
		}
	}
	for k, v := range c.cfg.Populations {
		out.Populations[k] = v
	}
	return out
}

// NodesStatus asks every node for its info (a short timeout each).
func (c *Coordinator) NodesStatus(ctx context.Context) *coordinatorv1.NodesResponse {
	out := &coordinatorv1.NodesResponse{}
	e, _ := c.currentEpoch()
	if e != nil {
		out.Epoch, out.Threshold, out.Committee = e.ID, int32(e.Threshold), int32(len(e.committee()))
	}
	reg := c.registry()
	infos := make([]*coordinatorv1.NodeInfo, len(reg))
	var wg sync.WaitGroup
	for i, n := range reg {
		ni := &coordinatorv1.NodeInfo{NodeId: n.ID, Address: n.Addr, Transport: n.Transport, OnCommittee: e != nil && e.onCommittee(n.ID)}
		if n.Transport == TransportOutbound {
			ni.Address = "" // nobody can dial it; while connected, where its tunnel comes from
			if n.tunnel != nil {
				ni.Address = n.tunnel.Remote
			}
		}
		if !n.LastSeen.IsZero() {
			ni.LastSeenUnixMs = n.LastSeen.UnixMilli()
		}
		infos[i] = ni
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			info, err := n.client.Info(cctx, &nodev1.InfoRequest{})
			cancel()
			if err == nil {
				ni.Alive, ni.Version, ni.Epoch, ni.Summary = true, info.GetVersion(), info.GetEpoch(), info.GetSummary()
				ni.LastSeenUnixMs = c.cfg.Now().UnixMilli()
				c.touch(n.ID)
			}
		}()
	}
	wg.Wait()
	out.Nodes = infos
	out.Ceremony = c.CeremonyStatus()
	return out
}

func (s *service) Budget(ctx context.Context, req *coordinatorv1.BudgetRequest) (*coordinatorv1.BudgetResponse, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	who := req.GetAnalyst()
	if who == "" {
		who = p.Name
	}
	if who != p.Name && p.Role != pki.RoleOperator {
		return nil, fmt.Errorf("%w: only operators may see another analyst's budget", rpc.ErrForbidden)
	}
	return s.c.Budget(ctx, who), nil
}

// Budget asks every node for an analyst's budget.
func (c *Coordinator) Budget(ctx context.Context, analyst string) *coordinatorv1.BudgetResponse {
	reg := c.registry()
	out := &coordinatorv1.BudgetResponse{Analyst: analyst, Nodes: make([]*coordinatorv1.NodeBudget, len(reg))}
	var wg sync.WaitGroup
	for i, n := range reg {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nb := &coordinatorv1.NodeBudget{NodeId: n.ID}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			r, err := n.client.Budget(cctx, &nodev1.BudgetRequest{Analyst: analyst})
			if err != nil {
				nb.Error = callError(err).Error()
			} else {
				nb.SpentRho, nb.LimitRho, nb.TotalSpentRho, nb.TotalLimitRho = r.GetSpentRho(), r.GetLimitRho(), r.GetTotalSpentRho(), r.GetTotalLimitRho()
			}
			out.Nodes[i] = nb
		}()
	}
	wg.Wait()
	return out
}

func (s *service) CreateSeries(ctx context.Context, req *coordinatorv1.CreateSeriesRequest) (*coordinatorv1.Series, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return s.c.CreateSeries(ctx, Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec(), req.GetAlerts(), req.GetAnalystSignature())
}

func (s *service) GetSeries(ctx context.Context, req *coordinatorv1.GetSeriesRequest) (*coordinatorv1.Series, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return s.c.GetSeries(p, req.GetName())
}

func (s *service) ListSeries(ctx context.Context, _ *coordinatorv1.ListSeriesRequest) (*coordinatorv1.ListSeriesResponse, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.ListSeriesResponse{Series: s.c.ListSeries(p)}, nil
}
