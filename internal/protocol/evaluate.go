package protocol

import (
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/fedstat/fedstat/crypto/envelope"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// SealEvaluate makes the signed request that asks node nodeID to evaluate
// body; the coordinator signs with its certificate key. The request is
// bound to the body's query id and epoch and addressed to nodeID.
func SealEvaluate(signer crypto.Signer, nodeID string, body *nodev1.EvaluateBody, now time.Time) (*nodev1.EvaluateRequest, error) {
	s, err := evaluateKind.seal(signer, queryBinding(body.GetQueryId(), body.GetEpoch(), nodeID), body, now)
	if err != nil {
		return nil, err
	}
	return &nodev1.EvaluateRequest{Request: s}, nil
}

// SignEvaluate is SealEvaluate.
//
// Deprecated: use SealEvaluate (the name every kind of message shares).
func SignEvaluate(signer crypto.Signer, nodeID string, body *nodev1.EvaluateBody, now time.Time) (*nodev1.EvaluateRequest, error) {
	return SealEvaluate(signer, nodeID, body, now)
}

// OpenEvaluate verifies a signed evaluate request at node self: signed
// under pub (the key of the calling coordinator's certificate), addressed
// to self, fresh in w and not seen before (w.Seen), with a body that
// matches its binding; it returns the body. The error of a replayed or
// stale request is the envelope's (it matches envelope.ErrReplay or
// envelope.ErrStale); every other error begins with "evaluate request".
func OpenEvaluate(pub crypto.PublicKey, req *nodev1.EvaluateRequest, self string, w Window) (*nodev1.EvaluateBody, error) {
	s := req.GetRequest()
	hdr, err := envelope.ParseHeader(s.GetHeader())
	if err != nil {
		return nil, fmt.Errorf("evaluate request: %w", err)
	}
	b := hdr.Binding
	if b.NodeID != self || b.Kind != KindEvaluate {
		return nil, fmt.Errorf("evaluate request addressed to %s (%s)", b.NodeID, b.Kind)
	}
	body, err := evaluateKind.open(pub, s, queryBinding(b.QueryID, b.Epoch, self), w)
	if errors.Is(err, envelope.ErrReplay) || errors.Is(err, envelope.ErrStale) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("evaluate request: %w", err)
	}
	if body.GetQueryId() != b.QueryID || body.GetEpoch() != b.Epoch {
		return nil, errors.New("evaluate request body does not match its binding")
	}
	return body, nil
}
