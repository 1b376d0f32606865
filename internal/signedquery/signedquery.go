// Package signedquery is the analyst-signed query (typesv1.AnalystSignature):
// the analyst's own statement of what to ask, made by the analyst's client
// with the key of the analyst's network certificate, so that the nodes need
// not take the coordinator's word for who asked, in which role, and what.
// The analyst's client seals it (Seal), the coordinator and every node open
// it (Open) and compare the spec they run with it (CheckSettled).
//
//   - The message is a crypto/envelope envelope of kind Kind. Its binding's
//     node id is the name of the coordinator's certificate, so a request is
//     good for one network's coordinator only; its query id is empty and its
//     epoch 0. The envelope's header holds the payload's digest, the signing
//     time and a 16-byte random nonce.
//   - Its payload is the QuerySpec the analyst submitted. The coordinator
//     settles it (network defaults, the epoch's threshold, the encoding
//     range); CheckSettled says what it may fill in and what must stay.
//   - The query id is derived from the signed header (QueryID). A node's
//     ledger charges a query id once, so one signature pays for at most one
//     query at each node. The id is not derived from the signature bytes:
//     an ECDSA signature can be altered into another valid signature of the
//     same message, which would give a second id.
//
// The package depends only on the standard library, crypto/envelope (which
// uses only the standard library), internal/pki and the protos, so that an
// analyst's program can link it without the cryptography of the network.
package signedquery

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Kind is the envelope kind of an analyst-signed query. A wire value: never
// change it.
const Kind = "analyst-request"

// The network's defaults for the privacy parameters of a query: the
// coordinator fills them into a spec that leaves them unset, and an
// analyst's client fills them in before it signs (WithDefaults).
const (
	DefaultEpsilon = 1.0
	DefaultDelta   = 1e-6
)

// ErrInvalid: an analyst-signed query that does not verify (the
// certificate, the role, the signature, the coordinator it was made for,
// its time, or its query id), whose spec is not the one run, or that is
// missing where a node requires one. The error's text says which.
var ErrInvalid = errors.New("analyst signature")

// Errors is the table of this package's errors (see rpc.ErrorTable).
var Errors = rpc.RegisterErrors(rpc.ErrorTable{
	{Err: ErrInvalid, Code: codes.PermissionDenied, Reason: "signedquery.invalid"},
})

// roles are the roles whose certificates may sign a query.
var roles = []pki.Role{pki.RoleAnalyst, pki.RoleResearcher, pki.RoleOperator}

// WithDefaults returns a copy of spec with what the coordinator would fill
// in for an analyst stated explicitly, so that it is signed: epsilon and
// delta (DefaultEpsilon; DefaultDelta unless the mechanism is Laplace) and
// the reference date (today, UTC, at now).
func WithDefaults(spec *typesv1.QuerySpec, now time.Time) *typesv1.QuerySpec {
	spec = proto.Clone(spec).(*typesv1.QuerySpec)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 && spec.Mechanism != typesv1.Mechanism_MECHANISM_LAPLACE {
		spec.Delta = DefaultDelta
	}
	if spec.ReferenceDate == "" {
		spec.ReferenceDate = cdm.DateOf(now).String()
	}
	return spec
}

// Seal signs spec for coordinator (the name of the coordinator's
// certificate) at now with the analyst's certificate key; certDER is the
// analyst's certificate, carried with the signature.
func Seal(signer crypto.Signer, certDER []byte, coordinator string, spec *typesv1.QuerySpec, now time.Time) (*typesv1.AnalystSignature, error) {
	return seal(signer, certDER, coordinator, Kind, spec, now)
}

// seal signs msg (protobuf) as an envelope of kind for coordinator at now;
// certDER is the analyst's certificate, carried with the signature.
func seal(signer crypto.Signer, certDER []byte, coordinator, kind string, msg proto.Message, now time.Time) (*typesv1.AnalystSignature, error) {
	if coordinator == "" {
		return nil, fmt.Errorf("%w: no coordinator name to sign for", ErrInvalid)
	}
	payload, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	env, err := envelope.Seal(signer, envelope.Binding{NodeID: coordinator, Kind: kind}, payload, now)
	if err != nil {
		return nil, err
	}
	return &typesv1.AnalystSignature{
		Request:     &typesv1.Signed{Header: env.Header, Payload: env.Payload, Signature: env.Signature},
		Certificate: certDER,
	}, nil
}

// QueryID is the query id an analyst-signed query runs under: "q-" and the
// first 16 bytes, in hex, of SHA-256 over a domain string and the signed
// header. It verifies nothing.
func QueryID(sig *typesv1.AnalystSignature) string {
	h := sha256.New()
	h.Write([]byte("fedstat/analyst-request/v1 query id\x00"))
	h.Write(sig.GetRequest().GetHeader())
	return "q-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Request is a verified analyst-signed query.
type Request struct {
	// Cert is the analyst's certificate; Name and Role are its name and role.
	Cert *x509.Certificate
	Name string
	Role pki.Role
	// Spec is the spec the analyst signed (before the coordinator settled it).
	Spec *typesv1.QuerySpec
	// Issued is when the analyst's client signed it.
	Issued time.Time
	// QueryID is QueryID of the signature.
	QueryID string
}

// Open verifies an analyst-signed query: a certificate issued by ca and
// valid at now, with an analyst, researcher or operator role; a signature
// by its key; made for coordinator; signed within maxAge of now. It keeps
// no replay cache: the same request reaches a node again when a call is
// retried, and a node's ledger charges its query id once. Every error
// matches ErrInvalid and says what is wrong.
func Open(ca *x509.Certificate, sig *typesv1.AnalystSignature, coordinator string, now time.Time, maxAge time.Duration) (*Request, error) {
	o, err := open(ca, sig, coordinator, now, maxAge, Kind, "query")
	if err != nil {
		return nil, err
	}
	var spec typesv1.QuerySpec
	if err := proto.Unmarshal(o.payload, &spec); err != nil {
		return nil, fmt.Errorf("%w: the signed spec does not decode: %v", ErrInvalid, err)
	}
	return &Request{Cert: o.cert, Name: o.name, Role: o.role, Spec: &spec, Issued: o.issued, QueryID: QueryID(sig)}, nil
}

// opened is what open verified: the signer's certificate, name and role,
// the signing time and the signed payload.
type opened struct {
	cert    *x509.Certificate
	name    string
	role    pki.Role
	issued  time.Time
	payload []byte
}

// open runs the checks Open and OpenSeries share, for a message of kind
// (what names it in the errors): the certificate of the network CA valid at
// now with a role that may sign, the signature, the coordinator it was made
// for, and its time within maxAge of now.
func open(ca *x509.Certificate, sig *typesv1.AnalystSignature, coordinator string, now time.Time, maxAge time.Duration, kind, what string) (*opened, error) {
	if sig.GetRequest() == nil || len(sig.GetCertificate()) == 0 {
		return nil, fmt.Errorf("%w: the signed request or the analyst's certificate is missing", ErrInvalid)
	}
	cert, err := x509.ParseCertificate(sig.GetCertificate())
	if err != nil {
		return nil, fmt.Errorf("%w: the analyst's certificate does not parse: %v", ErrInvalid, err)
	}
	name := cert.Subject.CommonName
	if err := pki.VerifyAt(ca, cert, now); err != nil {
		return nil, fmt.Errorf("%w: the certificate of %q is not one of this network's CA valid now: %v", ErrInvalid, name, err)
	}
	role, err := pki.RoleOf(cert)
	if err != nil || !slices.Contains(roles, role) {
		return nil, fmt.Errorf("%w: the certificate of %q has role %q, which may not sign a %s", ErrInvalid, name, role, what)
	}
	// The header is read only to word the errors: envelope.Open checks the
	// signature before the binding and the time.
	hdr, err := envelope.ParseHeader(sig.GetRequest().GetHeader())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	env := &envelope.Envelope{Header: sig.GetRequest().GetHeader(), Payload: sig.GetRequest().GetPayload(), Signature: sig.GetRequest().GetSignature()}
	_, err = envelope.Open(cert.PublicKey, env, envelope.Binding{NodeID: coordinator, Kind: kind}, now, maxAge, nil)
	switch {
	case errors.Is(err, envelope.ErrBadSignature):
		return nil, fmt.Errorf("%w: the signature is not by the key of %q's certificate, or the signed %s was changed", ErrInvalid, name, what)
	case errors.Is(err, envelope.ErrBindingMismatch) && (hdr.Kind != kind || hdr.QueryID != "" || hdr.Epoch != 0):
		return nil, fmt.Errorf("%w: the signed message is a %q, not an analyst's %s", ErrInvalid, hdr.Kind, what)
	case errors.Is(err, envelope.ErrBindingMismatch):
		return nil, fmt.Errorf("%w: %q signed the %s for coordinator %q, not for %q", ErrInvalid, name, what, hdr.NodeID, coordinator)
	case errors.Is(err, envelope.ErrStale):
		return nil, fmt.Errorf("%w: %q signed the %s at %s, further than %s from now (%s)", ErrInvalid, name, what,
			hdr.Timestamp.Format(time.RFC3339), maxAge, now.UTC().Format(time.RFC3339))
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &opened{cert: cert, name: name, role: role, issued: hdr.Timestamp, payload: env.Payload}, nil
}

// CheckSettled checks that settled, the spec a query runs with, is the
// analyst's signed spec as the coordinator may settle it: the SQL,
// epsilon, delta and mechanism exactly as signed (a signed query states its
// epsilon: a signed epsilon of 0 is refused); min_nodes, threshold,
// reference_date and approval_wait_seconds as signed, or the network's
// choice where the analyst left them unset (each node checks the threshold
// against its key epoch and min_nodes against its policy); partial_limit
// and link_holders as signed where set (they are the network's, and each
// node checks them itself). The error matches ErrInvalid and names the
// first field that differs.
func CheckSettled(signed, settled *typesv1.QuerySpec) error {
	differs := func(field string, s, v any) error {
		return fmt.Errorf("%w: the query's %s is %v, the analyst signed %v", ErrInvalid, field, v, s)
	}
	if signed.GetEpsilon() <= 0 {
		return fmt.Errorf("%w: the analyst signed no epsilon (a signed query states its privacy parameters)", ErrInvalid)
	}
	switch {
	case signed.GetSql() != settled.GetSql():
		return differs("SQL", fmt.Sprintf("%q", signed.GetSql()), fmt.Sprintf("%q", settled.GetSql()))
	case signed.GetEpsilon() != settled.GetEpsilon():
		return differs("epsilon", signed.GetEpsilon(), settled.GetEpsilon())
	case signed.GetDelta() != settled.GetDelta():
		return differs("delta", signed.GetDelta(), settled.GetDelta())
	case signed.GetMechanism() != settled.GetMechanism():
		return differs("mechanism", signed.GetMechanism(), settled.GetMechanism())
	case signed.GetMinNodes() != 0 && signed.GetMinNodes() != settled.GetMinNodes():
		return differs("min_nodes", signed.GetMinNodes(), settled.GetMinNodes())
	case signed.GetThreshold() != 0 && signed.GetThreshold() != settled.GetThreshold():
		return differs("threshold", signed.GetThreshold(), settled.GetThreshold())
	case signed.GetReferenceDate() != "" && signed.GetReferenceDate() != settled.GetReferenceDate():
		return differs("reference_date", signed.GetReferenceDate(), settled.GetReferenceDate())
	case signed.GetApprovalWaitSeconds() != 0 && signed.GetApprovalWaitSeconds() != settled.GetApprovalWaitSeconds():
		return differs("approval_wait_seconds", signed.GetApprovalWaitSeconds(), settled.GetApprovalWaitSeconds())
	case signed.GetPartialLimit() != 0 && signed.GetPartialLimit() != settled.GetPartialLimit():
		return differs("partial_limit", signed.GetPartialLimit(), settled.GetPartialLimit())
	case signed.GetLinkHolders() != 0 && signed.GetLinkHolders() != settled.GetLinkHolders():
		return differs("link_holders", signed.GetLinkHolders(), settled.GetLinkHolders())
	}
	// A field added to QuerySpec later must be compared above too: with
	// the fields above taken from the signed spec, the two must be equal.
	known := proto.Clone(settled).(*typesv1.QuerySpec)
	known.MinNodes, known.Threshold, known.ReferenceDate = signed.GetMinNodes(), signed.GetThreshold(), signed.GetReferenceDate()
	known.ApprovalWaitSeconds, known.PartialLimit, known.LinkHolders = signed.GetApprovalWaitSeconds(), signed.GetPartialLimit(), signed.GetLinkHolders()
	if !proto.Equal(known, signed) {
		return fmt.Errorf("%w: the query's spec differs from the signed one in a field this version does not compare", ErrInvalid)
	}
	return nil
}
