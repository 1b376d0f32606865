package node

import (
	"google.golang.org/grpc/codes"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node/internal/keystore"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// Errors is the node's error table (see rpc.ErrorTable): every sentinel a
// node's RPCs return, of this package and of the packages only the node
// uses, with its gRPC code and stable id. It is the one place these codes
// are set; a coordinator or client that links this package gets
// errors.Is(rpc.FromStatus(err), ErrPolicy) and the like across the wire.
// The errors both sides return (a query that does not plan, a spec, the
// plaintext range, ErrPlaintextOverrun among them) are in protocol.Errors.
// Rows are matched in order: a full disk (kv.ErrNoSpace) comes before
// ErrNotReady, so that a node not ready because of it answers
// ResourceExhausted.
var Errors = rpc.RegisterErrors(rpc.ErrorTable{
	{Err: ErrWrongEpoch, Code: codes.FailedPrecondition, Reason: "node.wrong_epoch"},
	{Err: ErrNoEpoch, Code: codes.FailedPrecondition, Reason: "node.no_epoch"},
	{Err: ErrNotMember, Code: codes.FailedPrecondition, Reason: "node.not_member"},
	{Err: ErrNotOnCommittee, Code: codes.FailedPrecondition, Reason: "node.not_on_committee"},
	{Err: ErrBadPartial, Code: codes.InvalidArgument, Reason: "node.bad_partial"},
	{Err: ErrTooFewPartials, Code: codes.FailedPrecondition, Reason: "node.too_few_partials"},
	{Err: ErrAlreadyReleased, Code: codes.AlreadyExists, Reason: "node.already_released"},
	{Err: ErrPolicy, Code: codes.PermissionDenied, Reason: "node.policy"},
	{Err: ErrBadRequest, Code: codes.InvalidArgument, Reason: "node.bad_request"},
	{Err: ErrSeries, Code: codes.InvalidArgument, Reason: "node.series"},
	{Err: ErrReplayed, Code: codes.PermissionDenied, Reason: "node.replayed"},
	{Err: ErrDenied, Code: codes.PermissionDenied, Reason: "node.denied"},
	{Err: ErrApprovalExpired, Code: codes.DeadlineExceeded, Reason: "node.approval_expired"},
	{Err: ledger.ErrBudgetExhausted, Code: codes.ResourceExhausted, Reason: "ledger.budget_exhausted"},
	{Err: ledger.ErrQueryIDReuse, Code: codes.AlreadyExists, Reason: "ledger.query_id_reuse"},
	// A node that cannot write safely (durable.go).
	{Err: kv.ErrNoSpace, Code: codes.ResourceExhausted, Reason: "kv.no_space"},
	{Err: ErrNotReady, Code: codes.FailedPrecondition, Reason: "node.not_ready"},
	{Err: kv.ErrDamaged, Code: codes.FailedPrecondition, Reason: "kv.damaged"},
	{Err: kv.ErrWatermark, Code: codes.FailedPrecondition, Reason: "kv.watermark"},
	{Err: audit.ErrTampered, Code: codes.FailedPrecondition, Reason: "audit.tampered"},
	{Err: ledger.ErrCommittedNotConfirmed, Code: codes.FailedPrecondition, Reason: "ledger.committed_not_confirmed"},
	{Err: errMark, Code: codes.FailedPrecondition, Reason: "node.mark"},
	{Err: keystore.ErrNotFound, Code: codes.FailedPrecondition, Reason: "keystore.not_found"},
	{Err: keystore.ErrDamaged, Code: codes.FailedPrecondition, Reason: "keystore.damaged"},
	{Err: keystore.ErrSealed, Code: codes.FailedPrecondition, Reason: "keystore.sealed"},
	{Err: keystore.ErrUnreadable, Code: codes.FailedPrecondition, Reason: "keystore.unreadable"},
	{Err: keystore.ErrInsecure, Code: codes.FailedPrecondition, Reason: "keystore.insecure"},
	// Readiness and the two-step release (readiness.go, release.go).
	{Err: ErrKeysUnavailable, Code: codes.FailedPrecondition, Reason: "node.keys_unavailable"},
	{Err: ErrNotPrepared, Code: codes.FailedPrecondition, Reason: "node.not_prepared"},
})
