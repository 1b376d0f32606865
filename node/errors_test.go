package node_test

import (
	"testing"

	"github.com/fedstat/fedstat/internal/rpc/rpctest"
	"github.com/fedstat/fedstat/node"
)

// TestErrorsRoundTrip: every sentinel of the node's error table reaches a
// caller (its gRPC status encoded and decoded as gRPC does, then
// rpc.FromStatus) as an error that errors.Is matches, with its code and the
// message as it was.
func TestErrorsRoundTrip(t *testing.T) {
	rpctest.CheckTable(t, node.Errors, "%w: for the test")
}
