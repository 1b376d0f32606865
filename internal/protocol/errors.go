package protocol

import (
	"google.golang.org/grpc/codes"

	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/plan"
)

// Errors is the table of the errors both sides return (see rpc.ErrorTable):
// a query that does not plan (both sides plan every spec), a spec that does
// not convert, a plan that could wrap the plaintext modulus, a message
// whose payload does not decode. The node's and the coordinator's own
// errors are in node.Errors and coordinator.Errors.
var Errors = rpc.RegisterErrors(rpc.ErrorTable{
	{Err: plan.ErrRequest, Code: codes.InvalidArgument, Reason: "plan.request"},
	{Err: parse.ErrSyntax, Code: codes.InvalidArgument, Reason: "parse.syntax"},
	{Err: parse.ErrUnknownName, Code: codes.InvalidArgument, Reason: "parse.unknown_name"},
	{Err: parse.ErrInvalid, Code: codes.InvalidArgument, Reason: "parse.invalid"},
	{Err: ErrSpec, Code: codes.InvalidArgument, Reason: "protocol.spec"},
	{Err: ErrPlaintextRange, Code: codes.InvalidArgument, Reason: "protocol.plaintext_range"},
	{Err: ErrMalformedPayload, Code: codes.InvalidArgument, Reason: "protocol.malformed_payload"},
	{Err: ErrShareOfAnother, Code: codes.InvalidArgument, Reason: "protocol.share_of_another"},
	{Err: ErrKeyCheck, Code: codes.FailedPrecondition, Reason: "protocol.key_check"},
	{Err: ErrLinkShareProof, Code: codes.FailedPrecondition, Reason: "protocol.link_share_proof"},
	{Err: ErrLinkStageProof, Code: codes.FailedPrecondition, Reason: "protocol.link_stage_proof"},
	{Err: ErrLinkSum, Code: codes.FailedPrecondition, Reason: "protocol.link_sum"},
})
