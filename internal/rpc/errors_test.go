package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/protoadapt"

	"github.com/fedstat/fedstat/internal/rpc"
)

// Sentinels of a domain package of this test, and their table.
var (
	errOuter = errors.New("test: outer")
	errInner = errors.New("test: inner")
	errOther = errors.New("test: other")

	testErrors = rpc.RegisterErrors(rpc.ErrorTable{
		{Err: errInner, Code: codes.ResourceExhausted, Reason: "test.inner"},
		{Err: errOuter, Code: codes.FailedPrecondition, Reason: "test.outer"},
	})
)

// failing is a gRPC server whose one method fails with the error it is
// given, mapped as fedstat's servers map it (rpc.ToStatus).
type failing struct {
	healthpb.UnimplementedHealthServer
	err error
}

func (f *failing) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return nil, rpc.ToStatus(f.err)
}

// overTheWire returns the error a gRPC client gets from a server whose
// handler fails with err.
func overTheWire(t *testing.T, err error) error {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, &failing{err: err})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, cerr := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if cerr != nil {
		t.Fatal(cerr)
	}
	t.Cleanup(func() { conn.Close() })
	_, got := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if got == nil {
		t.Fatal("the call succeeded")
	}
	return got
}

// TestErrorTableOverTheWire: every sentinel of this package's table and of
// a test table comes back from a gRPC call as an error that errors.Is
// matches, with the server's message and the sentinel's code.
func TestErrorTableOverTheWire(t *testing.T) {
	for _, row := range slices.Concat(rpc.Errors, testErrors) {
		t.Run(row.Reason, func(t *testing.T) {
			sent := fmt.Errorf("handler: %w", row.Err)
			got := rpc.FromStatus(overTheWire(t, sent))
			if !errors.Is(got, row.Err) {
				t.Errorf("FromStatus: %v does not match %v", got, row.Err)
			}
			if got.Error() != sent.Error() {
				t.Errorf("message %q, want %q", got, sent)
			}
			if rpc.Code(got) != row.Code || status.Code(got) != row.Code {
				t.Errorf("code %v, want %v", rpc.Code(got), row.Code)
			}
			var re *rpc.Error
			if !errors.As(got, &re) || !slices.Equal(re.Reasons(), []string{row.Reason}) || re.Code() != row.Code {
				t.Errorf("FromStatus: %#v, want an *rpc.Error with reason %s", got, row.Reason)
			}
		})
	}
}

// TestToStatus: the code of the first sentinel in the table order, every
// matching sentinel typed on the other side, no details for an error of no
// table, and statuses passed through.
func TestToStatus(t *testing.T) {
	if rpc.ToStatus(nil) != nil || rpc.FromStatus(nil) != nil || rpc.Code(nil) != codes.OK {
		t.Fatal("nil is not an error")
	}
	// Both sentinels in one error: the table lists errInner first.
	both := fmt.Errorf("%w: because %w", errOuter, errInner)
	if rpc.Code(both) != codes.ResourceExhausted {
		t.Errorf("Code %v, want the first row's", rpc.Code(both))
	}
	got := rpc.FromStatus(overTheWire(t, both))
	if status.Code(got) != codes.ResourceExhausted || !errors.Is(got, errOuter) || !errors.Is(got, errInner) || errors.Is(got, errOther) {
		t.Errorf("both: %v (%v)", got, status.Code(got))
	}
	var re *rpc.Error
	if !errors.As(got, &re) || !slices.Equal(re.Reasons(), []string{"test.inner", "test.outer"}) {
		t.Errorf("reasons of both: %v", re)
	}
	// An error of no table: Unknown, the text, nothing typed.
	got = rpc.FromStatus(overTheWire(t, errOther))
	if status.Code(got) != codes.Unknown || got.Error() != errOther.Error() || errors.Is(got, errOther) {
		t.Errorf("an error of no table: %v (%v)", got, status.Code(got))
	}
	// A status is passed through as it is.
	st := status.Error(codes.Aborted, "as it is")
	if rpc.ToStatus(st) != st {
		t.Error("ToStatus changed a status")
	}
	// FromStatus: idempotent, and an error without a status is left alone.
	if again := rpc.FromStatus(got); again != got {
		t.Error("FromStatus of its own result changed it")
	}
	plain := errors.New("no status")
	if rpc.FromStatus(plain) != plain {
		t.Error("FromStatus changed an error without a status")
	}
	// A reason this process has no table for (a newer peer's) is kept, not
	// typed.
	s, err := status.New(codes.PermissionDenied, "elsewhere").WithDetails(&errdetails.ErrorInfo{Reason: "elsewhere.unknown", Domain: rpc.ErrorDomain})
	if err != nil {
		t.Fatal(err)
	}
	unknown := rpc.FromStatus(overTheWire(t, s.Err()))
	if !errors.As(unknown, &re) || !slices.Equal(re.Reasons(), []string{"elsewhere.unknown"}) || len(re.Unwrap()) != 0 || re.Error() != "elsewhere" {
		t.Errorf("an unknown reason: %#v", unknown)
	}
}

// TestRegisterErrors: a sentinel and a reason have one row in the process;
// a bad table registers nothing.
func TestRegisterErrors(t *testing.T) {
	fresh := errors.New("test: fresh")
	for name, table := range map[string]rpc.ErrorTable{
		"a reason again":   {{Err: fresh, Code: codes.Internal, Reason: "test.fresh"}, {Err: errOther, Code: codes.Internal, Reason: "test.inner"}},
		"a sentinel again": {{Err: fresh, Code: codes.Internal, Reason: "test.fresh"}, {Err: errInner, Code: codes.Internal, Reason: "test.inner2"}},
		"twice in a table": {{Err: fresh, Code: codes.Internal, Reason: "test.fresh"}, {Err: fresh, Code: codes.Internal, Reason: "test.fresh2"}},
		"no reason":        {{Err: fresh, Code: codes.Internal}},
		"no error":         {{Code: codes.Internal, Reason: "test.fresh"}},
		"code OK":          {{Err: fresh, Code: codes.OK, Reason: "test.fresh"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", name)
				}
			}()
			rpc.RegisterErrors(table)
		}()
	}
	if rpc.Code(fresh) != codes.Unknown {
		t.Errorf("a refused table left its first row registered: %v", rpc.Code(fresh))
	}
}

// detailed is a DetailedError: evidence sent with the error.
type detailed struct{ err error }

func (d detailed) Error() string { return d.err.Error() }
func (d detailed) Unwrap() error { return d.err }
func (d detailed) StatusDetails() []protoadapt.MessageV1 {
	return []protoadapt.MessageV1{&errdetails.ResourceInfo{ResourceName: "evidence"}}
}

// TestDetailedErrorOverTheWire: the details of a DetailedError anywhere in
// an error's chain reach the caller with the status, after the ErrorInfo of
// its sentinels, and not in its message; a DetailedError of no table keeps
// its details too (code Unknown).
func TestDetailedErrorOverTheWire(t *testing.T) {
	for name, err := range map[string]error{
		"with a sentinel": fmt.Errorf("wrapped: %w", detailed{fmt.Errorf("%w: the dealer's share", errOuter)}),
		"of no table":     detailed{errors.New("plain")},
	} {
		s, _ := status.FromError(overTheWire(t, err))
		var found bool
		for _, d := range s.Details() {
			if r, ok := d.(*errdetails.ResourceInfo); ok && r.GetResourceName() == "evidence" {
				found = true
			}
		}
		if !found || strings.Contains(s.Message(), "evidence") {
			t.Errorf("%s: details %v, message %q", name, s.Details(), s.Message())
		}
		if name == "with a sentinel" && (s.Code() != codes.FailedPrecondition || !errors.Is(rpc.FromStatus(s.Err()), errOuter)) {
			t.Errorf("%s: code %v, want the sentinel's", name, s.Code())
		}
	}
}
