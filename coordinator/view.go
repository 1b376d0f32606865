package coordinator

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// StatusFor is what caller p may see of a query's status, and the one place
// that rule lives: every exit of a QueryStatus (gRPC Submit, Get, Watch,
// Cancel, List; the same over HTTP/JSON; history read back from the store)
// passes through it.
//
// How long a node took to answer depends on how much data it holds, so
// per-node timings are for operators only. For any other caller:
//
//   - NodeProgress.elapsed_ms is zero (absent in JSON);
//   - while the query is planned or collecting partials, every node shows
//     as "waiting" with no error and no upload: otherwise the moment at
//     which each node turns "answered" in a Watch stream would be its
//     timing. Each node's outcome (answered or failed, and why) shows once
//     collection is over, all at once.
//
// Phase timings stay visible: they are the network's, not one node's (the
// collect phase ends with the last node to answer or the deadline). st is
// not modified; the result may share no memory with it.
func StatusFor(p rpc.Peer, st *coordinatorv1.QueryStatus) *coordinatorv1.QueryStatus {
	out := proto.Clone(st).(*coordinatorv1.QueryStatus)
	if p.Role == pki.RoleOperator {
		return out
	}
	collecting := out.State == coordinatorv1.State_STATE_PLANNED || out.State == coordinatorv1.State_STATE_COLLECTING
	for _, n := range out.Nodes {
		n.ElapsedMs = 0
		if collecting {
			n.Status, n.Error, n.UploadBytes = "waiting", "", 0
		}
	}
	return out
}

// watchAs follows query id for p (its analyst or an operator), calling send
// with what p may see (StatusFor) now and whenever that changes. A change
// that p may not see (a node answering while partials are collected) sends
// nothing, so the stream's timing does not tell it either.
func (c *Coordinator) watchAs(ctx context.Context, p rpc.Peer, id string, send func(*coordinatorv1.QueryStatus) error) error {
	var last *coordinatorv1.QueryStatus
	return c.Watch(ctx, id, func(st *coordinatorv1.QueryStatus) error {
		if !mayRead(p, st) {
			return ErrNotFound
		}
		v := StatusFor(p, st)
		if last != nil && proto.Equal(last, v) {
			return nil
		}
		last = v
		return send(v)
	})
}
