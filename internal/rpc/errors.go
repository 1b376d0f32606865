package rpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// Errors that cross a process boundary travel as a gRPC status: a code, the
// error's text, and in the status details one ErrorInfo (domain
// ErrorDomain) per domain sentinel the error matched, whose Reason is the
// sentinel's stable id. The caller's side rebuilds a typed error from it
// (FromStatus), so that errors.Is(err, node.ErrPolicy) holds there as it
// did at the server, and nobody has to take the text apart.
//
// The mapping is a table of rows (sentinel, code, reason). Every package
// whose sentinels cross a process boundary declares its rows in ONE table,
// the value of its one table variable:
//
//	var Errors = rpc.RegisterErrors(rpc.ErrorTable{
//		{Err: ErrPolicy, Code: codes.PermissionDenied, Reason: "node.policy"},
//		...
//	})
//
// and nowhere else: no init function, no registration anywhere else. A
// package lists its own sentinels and those of the packages only it can
// import (node lists node/internal's); sentinels both sides return are
// listed once, by the package both import (internal/protocol). A process
// knows the tables of the packages it links, which are the packages whose
// sentinels its code can name.

// ErrorDomain is the ErrorInfo domain of fedstat's errors.
const ErrorDomain = "fedstat"

// ErrorCode is one row of an error table.
type ErrorCode struct {
	// Err is the domain sentinel, matched with errors.Is.
	Err error
	// Code is the gRPC code an error matching Err travels with.
	Code codes.Code
	// Reason is the sentinel's stable id on the wire, "<package>.<name>"
	// (for example "node.policy"). Never reuse or change one: older
	// callers recognise errors by it.
	Reason string
}

// ErrorTable is one package's error table. Its rows are matched in order:
// list a sentinel whose code must win over another's wrapped in the same
// error first.
type ErrorTable []ErrorCode

// Errors is this package's table: the caller's certificate and role, and
// the call's context.
var Errors = RegisterErrors(ErrorTable{
	{Err: ErrUnauthenticated, Code: codes.Unauthenticated, Reason: "rpc.unauthenticated"},
	{Err: ErrForbidden, Code: codes.PermissionDenied, Reason: "rpc.forbidden"},
	{Err: ErrTunnelTaken, Code: codes.AlreadyExists, Reason: "rpc.tunnel_taken"},
	{Err: ErrNoTunnel, Code: codes.Unavailable, Reason: "rpc.no_tunnel"},
	{Err: ErrMessageTooLarge, Code: codes.ResourceExhausted, Reason: "rpc.message_too_large"},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded, Reason: "context.deadline_exceeded"},
	{Err: context.Canceled, Code: codes.Canceled, Reason: "context.canceled"},
})

// registry holds the tables of the process in the order they were
// registered: a package's after those of the packages it imports.
var registry struct {
	mu       sync.RWMutex
	rows     []ErrorCode
	byReason map[string]error
}

// RegisterErrors adds a package's error table to the process's and returns
// it; it is meant only as the initialiser of that package's one table
// variable (see above). It panics on a row without an error or a reason,
// with code OK, or whose sentinel or reason is already registered: a
// sentinel has one code and one id in the whole process.
func RegisterErrors(t ErrorTable) ErrorTable {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.byReason == nil {
		registry.byReason = map[string]error{}
	}
	rows := append(slices.Clone(registry.rows), t...)
	reasons := map[string]bool{}
	for i, r := range rows {
		if r.Err == nil || r.Reason == "" || r.Code == codes.OK {
			panic(fmt.Sprintf("rpc: error table row %+v: want an error, a reason and a code other than OK", r))
		}
		if reasons[r.Reason] {
			panic(fmt.Sprintf("rpc: error reason %q registered twice", r.Reason))
		}
		reasons[r.Reason] = true
		for _, o := range rows[:i] {
			if o.Err == r.Err {
				panic(fmt.Sprintf("rpc: error %q registered twice (%s, %s)", r.Err, o.Reason, r.Reason))
			}
		}
	}
	for _, r := range t {
		registry.byReason[r.Reason] = r.Err
	}
	registry.rows = rows
	return t
}

// matching returns the registered rows err matches, in order.
func matching(err error) []ErrorCode {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	var out []ErrorCode
	for _, r := range registry.rows {
		if errors.Is(err, r.Err) {
			out = append(out, r)
		}
	}
	return out
}

// Code returns the gRPC code of an error: a status's own code, else the
// code of the first registered sentinel it matches (Unknown if none).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	if rows := matching(err); len(rows) > 0 {
		return rows[0].Code
	}
	return codes.Unknown
}

// ToStatus turns a domain error into a gRPC status error: the code of the
// first registered sentinel it matches (Code), the error's text as the
// message (domain errors are written to be safe for the caller: no raw
// values, no key material), and one ErrorInfo per sentinel it matches. A
// status error is returned as it is.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	rows := matching(err)
	var extra DetailedError
	hasExtra := errors.As(err, &extra)
	if len(rows) == 0 && !hasExtra {
		return status.Error(codes.Unknown, err.Error())
	}
	code := codes.Unknown
	if len(rows) > 0 {
		code = rows[0].Code
	}
	s := status.New(code, err.Error())
	details := make([]protoadapt.MessageV1, len(rows))
	for i, r := range rows {
		details[i] = &errdetails.ErrorInfo{Reason: r.Reason, Domain: ErrorDomain}
	}
	if hasExtra {
		details = append(details, extra.StatusDetails()...)
	}
	if d, derr := s.WithDetails(details...); derr == nil {
		s = d
	}
	return s.Err()
}

// DetailedError is an error that carries evidence for the caller: ToStatus
// adds its details to the status (after the ErrorInfo rows), where the
// caller finds them with status.FromError(err).Details().
type DetailedError interface {
	error
	StatusDetails() []protoadapt.MessageV1
}

// FromStatus rebuilds the error of a call to another fedstat process: nil
// for nil, err itself when it carries no gRPC status, and otherwise an
// *Error that reads as the server's message (without gRPC's "rpc error:
// code = ... desc = " prefix), keeps the status (status.Code and Code give
// its code) and matches, with errors.Is, every sentinel the server's error
// matched whose table this process has registered too.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return e
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{status: s}
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	for _, d := range s.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		e.reasons = append(e.reasons, info.GetReason())
		if sentinel, ok := registry.byReason[info.GetReason()]; ok {
			e.errs = append(e.errs, sentinel)
		}
	}
	return e
}

// Error is an error received from another fedstat process (FromStatus).
type Error struct {
	status  *status.Status
	reasons []string
	errs    []error
}

// Error returns the server's message.
func (e *Error) Error() string { return e.status.Message() }

// GRPCStatus returns the status the error came in.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Code returns the status's code.
func (e *Error) Code() codes.Code { return e.status.Code() }

// Reasons returns the stable ids of the sentinels the server's error
// matched, known to this process or not.
func (e *Error) Reasons() []string { return e.reasons }

// Unwrap returns the sentinels of this process that the server's error
// matched.
func (e *Error) Unwrap() []error { return e.errs }
