package coordinator

import (
	"context"
	"fmt"
	"net/http"

	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
)

// Explain plans a query exactly as Submit would (the same defaults, checks
// and plan, so that it refuses what Submit refuses, with the same errors)
// and says what it would cost at each node and how much noise its release
// would carry, assuming every member of the key epoch answers. No node is
// asked and nothing is charged or recorded as a query.
func (c *Coordinator) Explain(ctx context.Context, who Analyst, spec *typesv1.QuerySpec) (*coordinatorv1.Explanation, error) {
	e, err := c.currentEpoch()
	if err != nil {
		return nil, err
	}
	spec, p, link, err := c.settle(spec, e, nil)
	if err != nil {
		return nil, err
	}
	out := &coordinatorv1.Explanation{Spec: spec, Plan: p.Describe(), Kind: p.Kind(), Cells: int32(p.Cells()),
		Epsilon: p.Epsilon(), Delta: p.Delta(), Rho: p.Rho(), AssumedNodes: int32(len(e.Members))}
	charged := e.Members
	if link != nil {
		// Only the participants of a linked query answer it.
		charged = nil
		for _, id := range link.GetParticipants() {
			charged = append(charged, e.member(id))
		}
		out.Notes = append(out.Notes, "a query across linked agencies: its noise is that of the match histogram and payload sums (docs/linkage.md); the prediction below is not given")
	} else {
		noise, err := dp.Expected(p, len(e.Members))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		for _, n := range noise {
			out.Noise = append(out.Noise, &coordinatorv1.ExpectedNoise{Measure: n.Measure, Count: n.Count, Variance: n.Variance, Sd: n.SD, HalfWidth: n.HalfWidth})
		}
		if int(spec.GetMinNodes()) < len(e.Members) {
			out.Notes = append(out.Notes, fmt.Sprintf("the noise assumes all %d members answer; with fewer (min_nodes %d) the released noise is a little smaller and is reported with the result", len(e.Members), spec.GetMinNodes()))
		}
	}
	for _, m := range charged {
		out.Nodes = append(out.Nodes, &coordinatorv1.NodeCost{NodeId: m.ID, Rho: p.Rho()})
	}
	out.Notes = append(out.Notes, "a node whose policy sets min_cohort also charges its minimum-cohort check (min_cohort_rho) with the query; an identical earlier query is charged again (each query is a fresh release)")
	c.record(ctx, who.Name, "query.explained", "", map[string]any{"sql": spec.GetSql(), "epsilon": spec.GetEpsilon(), "delta": spec.GetDelta(), "role": who.Role})
	return out, nil
}

func (s *service) Explain(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.Explanation, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return s.c.Explain(ctx, Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec())
}

// explain is POST /v1/explain with a SubmitRequest in JSON.
func (h *httpAPI) explain(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	var req coordinatorv1.SubmitRequest
	if !readBody(w, r, &req) {
		return
	}
	x, err := h.c.Explain(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec())
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, x)
}
