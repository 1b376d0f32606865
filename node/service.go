package node

import (
	"context"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// service adapts the node to its gRPC API.
type service struct {
	nodev1.UnimplementedNodeServiceServer
	n *Node
}

// Info describes the node. The data summary is exact only for a network
// operator calling the node directly; the coordinator (and through it every
// analyst and the dashboard) gets CoarseSummary.
func (s *service) Info(ctx context.Context, _ *nodev1.InfoRequest) (*nodev1.InfoResponse, error) {
	p, err := rpc.Require(ctx, pki.RoleCoordinator, pki.RoleOperator)
	if err != nil {
		return nil, err
	}
	sum := s.n.CoarseSummary()
	if p.Role == pki.RoleOperator {
		sum = s.n.Summary()
	}
	return &nodev1.InfoResponse{
		NodeId:         s.n.id,
		Version:        Version,
		Epoch:          s.n.Epoch(),
		CertificateDer: s.n.cfg.Identity.Cert.Raw,
		Summary:        sum,
		EpochStatus:    s.n.epochStatus(),
		DataVersion:    dataVersion(s.n.cfg.Data),
	}, nil
}

func (s *service) KeyGen(ctx context.Context, req *nodev1.KeyGenRequest) (*nodev1.KeyGenResponse, error) {
	return s.n.keyGen(ctx, req)
}

func (s *service) RevealKeyGen(ctx context.Context, req *nodev1.RevealKeyGenRequest) (*nodev1.RevealKeyGenResponse, error) {
	return s.n.revealKeyGen(ctx, req)
}

func (s *service) CheckKey(ctx context.Context, req *nodev1.CheckKeyRequest) (*nodev1.CheckKeyResponse, error) {
	return s.n.checkKey(ctx, req)
}

func (s *service) InstallKey(ctx context.Context, req *nodev1.InstallKeyRequest) (*nodev1.InstallKeyResponse, error) {
	return s.n.installKey(ctx, req)
}

func (s *service) Evaluate(ctx context.Context, req *nodev1.EvaluateRequest) (*nodev1.EvaluateResponse, error) {
	return s.n.evaluate(ctx, req)
}

func (s *service) Reveal(ctx context.Context, req *nodev1.RevealRequest) (*nodev1.RevealResponse, error) {
	return s.n.reveal(ctx, req)
}

func (s *service) Commit(ctx context.Context, req *nodev1.CommitRequest) (*nodev1.CommitResponse, error) {
	return s.n.commit(ctx, req)
}

func (s *service) KeySwitch(ctx context.Context, req *nodev1.KeySwitchRequest) (*nodev1.KeySwitchResponse, error) {
	return s.n.keySwitch(ctx, req)
}

func (s *service) ProveKeySwitch(ctx context.Context, req *nodev1.ProveKeySwitchRequest) (*nodev1.ProveKeySwitchResponse, error) {
	return s.n.proveKeySwitch(ctx, req)
}

func (s *service) ProveLimbs(ctx context.Context, req *nodev1.ProveLimbsRequest) (*nodev1.ProveLimbsResponse, error) {
	return s.n.proveLimbs(ctx, req)
}

func (s *service) LinkStage(ctx context.Context, req *nodev1.LinkStageRequest) (*nodev1.LinkStageResponse, error) {
	return audited(ctx, s.n, "stage", req, s.n.linkStage)
}

func (s *service) LinkFinish(ctx context.Context, req *nodev1.LinkFinishRequest) (*nodev1.LinkFinishResponse, error) {
	return audited(ctx, s.n, "finish", req, s.n.linkFinish)
}

func (s *service) LinkDecrypt(ctx context.Context, req *nodev1.LinkDecryptRequest) (*nodev1.LinkDecryptResponse, error) {
	return audited(ctx, s.n, "decrypt", req, s.n.linkDecrypt)
}

func (s *service) LinkAttest(ctx context.Context, req *nodev1.LinkAttestRequest) (*nodev1.LinkAttestResponse, error) {
	return audited(ctx, s.n, "attest", req, s.n.linkAttest)
}

// audited runs a link call and records its refusal in the audit log.
func audited[Req interface{ GetQueryId() string }, Resp any](ctx context.Context, n *Node, call string, req Req, fn func(context.Context, Req) (Resp, error)) (Resp, error) {
	resp, err := fn(ctx, req)
	if err != nil {
		n.record(ctx, "coordinator", "link.refused", req.GetQueryId(), map[string]any{"call": call, "reason": err.Error()})
	}
	return resp, err
}

func (s *service) Budget(ctx context.Context, req *nodev1.BudgetRequest) (*nodev1.BudgetResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	if req.GetAnalyst() == "" {
		return nil, ErrBadRequest
	}
	spent, limit, err := s.n.ledger.Spent(req.GetAnalyst())
	if err != nil {
		return nil, err
	}
	tspent, tlimit, err := s.n.ledger.Total()
	if err != nil {
		return nil, err
	}
	return &nodev1.BudgetResponse{NodeId: s.n.id, SpentRho: spent, LimitRho: limit, TotalSpentRho: tspent, TotalLimitRho: tlimit}, nil
}
