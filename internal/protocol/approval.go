package protocol

import (
	"fmt"
	"time"

	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// MaxApprovalWait is the longest approval wait (QuerySpec.
// approval_wait_seconds) any node accepts: a query that may wait longer for
// a node admin is refused. It also bounds how far past the clock skew a
// partial of such a query may be presented for release.
const MaxApprovalWait = 30 * 24 * time.Hour

// ApprovalWait is the approval wait of spec. It fails, wrapping ErrSpec,
// when the wait is negative or above MaxApprovalWait.
func ApprovalWait(spec *typesv1.QuerySpec) (time.Duration, error) {
	s := spec.GetApprovalWaitSeconds()
	if s < 0 || s > int64(MaxApprovalWait/time.Second) {
		return 0, fmt.Errorf("%w: approval_wait_seconds %d is outside [0, %d] (%s)", ErrSpec, s, int64(MaxApprovalWait/time.Second), MaxApprovalWait)
	}
	return time.Duration(s) * time.Second, nil
}

// PartialAge is how old a partial of a query with spec may be when it is
// presented for release, given the usual freshness window maxSkew: the
// partials of the nodes that answered at once are held while the query
// waits for the others' admins, so the window grows by the spec's approval
// wait (a spec outside ApprovalWait's range adds nothing).
func PartialAge(spec *typesv1.QuerySpec, maxSkew time.Duration) time.Duration {
	w, err := ApprovalWait(spec)
	if err != nil {
		return maxSkew
	}
	return maxSkew + w
}
