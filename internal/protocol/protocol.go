// Package protocol is the contract between the node and the coordinator,
// beyond the protobuf messages: every kind of signed message with the one
// function that seals it and the one that opens and checks it (message.go,
// evaluate.go, partial.go), what a partial must be (OpenPartial), how a
// query spec becomes a plan (PlanRequest) and is identified (SpecDigest,
// CommitDigest), the plaintext range check and the freshness window both
// sides use (contract.go), and the errors both sides return with their
// gRPC codes (errors.go). Both sides import it; neither imports the other.
// The one message an analyst's client makes, the analyst-signed query, is
// sealed and opened by internal/signedquery instead, which the client can
// link without this package's cryptography.
package protocol

import (
	"fmt"

	"github.com/fedstat/fedstat/crypto/envelope"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Envelope kinds. Every signed message is bound to one. They are wire
// values: never change one.
const (
	KindCKGShare       = "ckg-share"       // a node's share of the collective public key
	KindThresholdShare = "threshold-share" // a Shamir share sealed to another member
	KindEvaluate       = "evaluate"        // the coordinator's request to evaluate a query
	KindPartial        = "partial"         // a node's encrypted, noised partial result
	KindKeySwitchShare = "keyswitch-share" // a node's key-switch share of a release
	KindReleaseCommit  = "release-commit"  // a node's commitment to the one partial set a query may be released over
	KindCKGReveal      = "ckg-reveal"      // a committee member's record of the one set of CKG share commitments it revealed its share in
	// KindReleaseCommitment is a node's commitment to the partial set and
	// the sum of a compact release, with its partial's fingerprint.
	KindReleaseCommitment = "release-commitment"
	// KindKeyCheck is a committee member's commitment to what a key-check
	// challenge under its CKG share decrypts to (KeyCheckDigest).
	KindKeyCheck = "key-check"
	// KindShamirImages is a dealer's images of its Shamir polynomial's
	// coefficients (collective.ThresholdDealChecked), which every
	// recipient checks its share against.
	KindShamirImages = "shamir-images"
	// KindDealingKey is a committee member's public key for the threshold
	// shares dealt to it in one key ceremony (DHKEM(P-256), made for that
	// ceremony), which the dealers seal its shares to.
	KindDealingKey = "dealing-key"
	// KindKeyInstalled is a committee member's statement that it installed
	// an epoch (over KeyDigest of its public key), which a member off the
	// committee requires of threshold committee members before it installs.
	KindKeyInstalled = "key-installed"
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
