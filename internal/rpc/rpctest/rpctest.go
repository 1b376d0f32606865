// Package rpctest has the test helpers every package with an error table
// (rpc.ErrorTable) shares.
package rpctest

import (
	"errors"
	"fmt"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/rpc"
)

// ThroughStatus is err as a server sends it (rpc.ToStatus), encoded and
// decoded as gRPC does, and rebuilt on the caller's side (rpc.FromStatus).
func ThroughStatus(t testing.TB, err error) error {
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

// CheckTable: every sentinel of table, wrapped as format wraps it (a
// fmt.Errorf format with one %w), reaches a caller (ThroughStatus) as an
// error that errors.Is matches, with its code and the message as it was.
func CheckTable(t testing.TB, table rpc.ErrorTable, format string) {
	t.Helper()
	for _, row := range table {
		sent := fmt.Errorf(format, row.Err)
		got := ThroughStatus(t, sent)
		if !errors.Is(got, row.Err) || got.Error() != sent.Error() || rpc.Code(got) != row.Code {
			t.Errorf("%s: %v (%v), want %q matching the sentinel with code %v", row.Reason, got, rpc.Code(got), sent, row.Code)
		}
	}
}
