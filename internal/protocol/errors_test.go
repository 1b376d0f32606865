package protocol_test

import (
	"errors"
	"testing"

	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc/rpctest"
)

// TestErrorsRoundTrip: every sentinel of the table of the errors both sides
// return comes back typed, with its code and message.
func TestErrorsRoundTrip(t *testing.T) {
	rpctest.CheckTable(t, protocol.Errors, "while planning: %w")
	p := testPlan(t, testSpec())
	params := testParams(t)
	err := protocol.CheckPlaintextRange(p, params, int(params.MaxAbs()/p.MaxAbsPartial())+1)
	if got := rpctest.ThroughStatus(t, err); !errors.Is(got, protocol.ErrPlaintextRange) || got.Error() != err.Error() {
		t.Errorf("the range check's refusal: %v", got)
	}
}
