package eval

import (
	"fmt"

	"github.com/fedstat/fedstat/queries/plan"
)

// FromValues wraps exact slot values (measure-major, plan.VectorLen long)
// that a node back end computed itself, e.g. by pushing the plan down to a
// SQL warehouse (node/internal/warehouse). It is only for node back ends:
// the result is as secret as one from Evaluate and never leaves the node
// (queries/dp turns it into a noisy share). The back end is responsible for
// enforcing the plan's contribution bounds exactly as Evaluate does.
func FromValues(p *plan.Plan, values []float64) (*Exact, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil plan", ErrData)
	}
	if len(values) != p.VectorLen() {
		return nil, fmt.Errorf("%w: %d values for a plan of %d slots", ErrData, len(values), p.VectorLen())
	}
	return &Exact{plan: p, values: append([]float64(nil), values...)}, nil
}
