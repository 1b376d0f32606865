// Package protocol holds what the node and the coordinator must agree on
// beyond the protobuf messages: the kinds of signed envelopes, how an
// envelope travels in a protobuf message, and how the coordinator signs an
// evaluate request. Both sides import it; neither imports the other.
package protocol

import (
	"crypto"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Envelope kinds. Every signed message is bound to one.
const (
	KindCKGShare       = "ckg-share"       // a node's share of the collective public key
	KindThresholdShare = "threshold-share" // a Shamir share sealed to another member
	KindEvaluate       = "evaluate"        // the coordinator's request to evaluate a query
	KindPartial        = "partial"         // a node's encrypted, noised partial result
	KindKeySwitchShare = "keyswitch-share" // a node's key-switch share of a release
	KindReleaseCommit  = "release-commit"  // a node's commitment to the one partial set a query may be released over
)

// EpochQueryID is the query id that binds key-ceremony messages of an epoch.
func EpochQueryID(epoch uint64) string { return fmt.Sprintf("epoch-%d", epoch) }

// ToProto converts an envelope to its wire form.
func ToProto(e *envelope.Envelope) *typesv1.Signed {
	return &typesv1.Signed{Header: e.Header, Payload: e.Payload, Signature: e.Signature}
}

// FromProto converts the wire form of an envelope back.
func FromProto(s *typesv1.Signed) *envelope.Envelope {
	return &envelope.Envelope{Header: s.GetHeader(), Payload: s.GetPayload(), Signature: s.GetSignature()}
}

// SignEvaluate makes the signed request that asks node nodeID to evaluate
// body; the coordinator signs with its certificate key.
func SignEvaluate(signer crypto.Signer, nodeID string, body *nodev1.EvaluateBody, now time.Time) (*nodev1.EvaluateRequest, error) {
	b, err := proto.Marshal(body)
	if err != nil {
		return nil, err
	}
	env, err := envelope.Seal(signer, envelope.Binding{QueryID: body.GetQueryId(), Epoch: body.GetEpoch(), NodeID: nodeID, Kind: KindEvaluate}, b, now)
	if err != nil {
		return nil, err
	}
	return &nodev1.EvaluateRequest{Request: ToProto(env)}, nil
}
