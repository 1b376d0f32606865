package coordinator_test

import (
	"errors"
	"fmt"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/rpc"
)

// TestErrorsRoundTrip: every sentinel of the coordinator's error table
// reaches a caller (its gRPC status encoded and decoded as gRPC does, then
// rpc.FromStatus) as an error that errors.Is matches, with its code and the
// message as it was.
func TestErrorsRoundTrip(t *testing.T) {
	for _, row := range coordinator.Errors {
		sent := fmt.Errorf("%w: for the test", row.Err)
		b, err := proto.Marshal(status.Convert(rpc.ToStatus(sent)).Proto())
		if err != nil {
			t.Fatal(err)
		}
		var p spb.Status
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		got := rpc.FromStatus(status.ErrorProto(&p))
		if !errors.Is(got, row.Err) || got.Error() != sent.Error() || rpc.Code(got) != row.Code {
			t.Errorf("%s: %v (%v), want %q matching the sentinel with code %v", row.Reason, got, rpc.Code(got), sent, row.Code)
		}
	}
}
