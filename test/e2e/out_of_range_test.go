package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// forgedData is a node's data step changed by an attacker: while value is
// set, every slot of every plan evaluates to it.
type forgedData struct {
	node.DataSource
	value *atomic.Int64
}

func (f forgedData) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	e, err := f.DataSource.Evaluate(ctx, p)
	v := f.value.Load()
	if err != nil || v == 0 {
		return e, err
	}
	vals := e.Values()
	for i := range vals {
		vals[i] = float64(v)
	}
	return eval.FromValues(p, vals)
}

// TestOutOfRangePartialRefused: node-3 runs the real protocol on forged
// data, a count of minus a million (within what its own clamp lets
// through: the plan allows 10 million patients a node). Its partial is a
// well-formed encryption, so nothing before the decryption can tell (there
// are no proofs of well-formed partials); the decrypted total is below
// what three well-formed partials can sum to, and the coordinator releases
// nothing, saying so. The same query from honest data is released before
// and after.
func TestOutOfRangePartialRefused(t *testing.T) {
	var forged atomic.Int64
	nw := startFault(t, demo.Options{MinNodes: 3, NodeData: func(id string, own node.DataSource) node.DataSource {
		if id != "node-3" {
			return own
		}
		return forgedData{DataSource: own, value: &forged}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := dialCoordinator(t, nw, nil)
	run := func() *coordinatorv1.QueryStatus {
		return runDeadline(t, ctx, client, &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}, time.Minute)
	}
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query: %v %s", st.GetState(), st.GetError())
	}
	forged.Store(-1_000_000)
	st := run()
	if st.GetState() != coordinatorv1.State_STATE_FAILED || st.GetResult() != nil {
		t.Fatalf("a count of minus a million from node-3: %v, result %v", st.GetState(), st.GetResult())
	}
	for _, want := range []string{"outside", "what 3 well-formed partials can sum to", "a member encrypted a value outside the plan's bounds", "nothing is released"} {
		if !strings.Contains(st.GetError(), want) {
			t.Errorf("the failure %q does not say %q", st.GetError(), want)
		}
	}
	t.Logf("refused: %s", st.GetError())
	forged.Store(0)
	if st := run(); st.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("honest query after: %v %s", st.GetState(), st.GetError())
	}
}
