package protocol_test

import (
	"errors"
	"fmt"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
)

// throughStatus is err as a server sends it (rpc.ToStatus), encoded and
// decoded as gRPC does, and rebuilt on the caller's side (rpc.FromStatus).
func throughStatus(t *testing.T, err error) error {
	t.Helper()
	b, merr := proto.Marshal(status.Convert(rpc.ToStatus(err)).Proto())
	if merr != nil {
		t.Fatal(merr)
	}
	var p spb.Status
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return rpc.FromStatus(status.ErrorProto(&p))
}

// TestErrorsRoundTrip: every sentinel of the table of the errors both sides
// return comes back typed, with its code and message.
func TestErrorsRoundTrip(t *testing.T) {
	for _, row := range protocol.Errors {
		sent := fmt.Errorf("while planning: %w", row.Err)
		got := throughStatus(t, sent)
		if !errors.Is(got, row.Err) || got.Error() != sent.Error() || rpc.Code(got) != row.Code {
			t.Errorf("%s: %v (%v), want %q matching the sentinel with code %v", row.Reason, got, rpc.Code(got), sent, row.Code)
		}
	}
	p := testPlan(t, testSpec())
	params := testParams(t)
	err := protocol.CheckPlaintextRange(p, params, int(params.MaxAbs()/p.MaxAbsPartial())+1)
	if got := throughStatus(t, err); !errors.Is(got, protocol.ErrPlaintextRange) || got.Error() != err.Error() {
		t.Errorf("the range check's refusal: %v", got)
	}
}
