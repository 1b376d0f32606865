package protocol

import (
	"errors"
	"fmt"

	"github.com/fedstat/fedstat/internal/cdm"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// ErrSpec marks a query spec that cannot be turned into a planner request.
var ErrSpec = errors.New("protocol: bad query spec")

// PlanRequest converts a wire QuerySpec into the planner's request. It is
// the one conversion: the coordinator, every node and every client that
// re-plans a released query use it, so that all of them build the same plan
// (a node re-plans every query from its spec, and its partial carries the
// spec's digest, SpecDigest).
func PlanRequest(spec *typesv1.QuerySpec) (plan.Request, error) {
	if spec == nil {
		return plan.Request{}, fmt.Errorf("%w: missing", ErrSpec)
	}
	ref, err := cdm.ParseDate(spec.GetReferenceDate())
	if err != nil {
		return plan.Request{}, fmt.Errorf("%w: reference_date: %v", ErrSpec, err)
	}
	mech := plan.Gaussian
	if spec.GetMechanism() == typesv1.Mechanism_MECHANISM_LAPLACE {
		mech = plan.Laplace
	}
	return plan.Request{
		SQL:           spec.GetSql(),
		Epsilon:       spec.GetEpsilon(),
		Delta:         spec.GetDelta(),
		Mechanism:     mech,
		MinNodes:      int(spec.GetMinNodes()),
		Threshold:     int(spec.GetThreshold()),
		ReferenceDate: ref,
		PartialLimit:  spec.GetPartialLimit(),
		LinkHolders:   int(spec.GetLinkHolders()),
	}, nil
}
