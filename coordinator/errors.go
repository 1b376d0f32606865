package coordinator

import (
	"google.golang.org/grpc/codes"

	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/queries/stats"
)

// Errors is the coordinator's error table (see rpc.ErrorTable): every
// sentinel of its gRPC and HTTP APIs, of this package and of the statistics
// methods it runs, with its gRPC code (the HTTP status follows from it) and
// stable id. It is the one place these codes are set. The errors both sides
// return (a query that does not plan, a spec, the plaintext range) are in
// protocol.Errors.
var Errors = rpc.RegisterErrors(rpc.ErrorTable{
	{Err: ErrNoEpoch, Code: codes.FailedPrecondition, Reason: "coordinator.no_epoch"},
	{Err: ErrNotReady, Code: codes.Unavailable, Reason: "coordinator.not_ready"},
	{Err: ErrTooFewNodes, Code: codes.FailedPrecondition, Reason: "coordinator.too_few_nodes"},
	{Err: ErrNotFound, Code: codes.NotFound, Reason: "coordinator.not_found"},
	{Err: ErrBadRequest, Code: codes.InvalidArgument, Reason: "coordinator.bad_request"},
	{Err: ErrSeriesExists, Code: codes.AlreadyExists, Reason: "coordinator.series_exists"},
	{Err: ErrKeyCheck, Code: codes.FailedPrecondition, Reason: "coordinator.key_check"},
	// The statistics endpoints (stats_http.go).
	{Err: ErrStatsRound, Code: codes.FailedPrecondition, Reason: "coordinator.stats_round"},
	{Err: stats.ErrBudget, Code: codes.FailedPrecondition, Reason: "stats.budget"},
	{Err: stats.ErrRelease, Code: codes.FailedPrecondition, Reason: "stats.release"},
	{Err: stats.ErrInput, Code: codes.InvalidArgument, Reason: "stats.input"},
})
