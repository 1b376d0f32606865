package coordinator_test

import (
	"testing"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/rpc/rpctest"
)

// TestErrorsRoundTrip: every sentinel of the coordinator's error table reaches a
// caller (its gRPC status encoded and decoded as gRPC does, then
// rpc.FromStatus) as an error that errors.Is matches, with its code and the
// message as it was.
func TestErrorsRoundTrip(t *testing.T) {
	rpctest.CheckTable(t, coordinator.Errors, "%w: for the test")
}
