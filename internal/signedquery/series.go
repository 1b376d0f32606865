package signedquery

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/pki"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// A standing series is signed once, when the analyst creates it: the
// signature covers the series' definition (typesv1.SeriesSpec), which fixes
// every interval's query (protocol.SeriesQuery) and the lifetime budget
// each node reserves for it once. The coordinator forwards the same
// signature with every interval, for as long as the series runs, so it has
// no upper bound on its age; a replay can only run that series again, which
// costs nothing more (the reservation is charged once per definition).

// SeriesKind is the envelope kind of an analyst-signed series. A wire
// value: never change it.
const SeriesKind = "analyst-series"

// SeriesWithDefaults returns a copy of spec with what the coordinator would
// fill in for the analyst stated explicitly, so that it is signed: the
// lifetime epsilon and delta (DefaultEpsilon, DefaultDelta) and K = 1.
// min_nodes is left to the network, as for a query.
func SeriesWithDefaults(spec *typesv1.SeriesSpec) *typesv1.SeriesSpec {
	spec = proto.Clone(spec).(*typesv1.SeriesSpec)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 {
		spec.Delta = DefaultDelta
	}
	if spec.MaxPeriodsPerPatient == 0 {
		spec.MaxPeriodsPerPatient = 1
	}
	return spec
}

// SealSeries signs spec for coordinator at now with the analyst's
// certificate key; certDER is the analyst's certificate.
func SealSeries(signer crypto.Signer, certDER []byte, coordinator string, spec *typesv1.SeriesSpec, now time.Time) (*typesv1.AnalystSignature, error) {
	return seal(signer, certDER, coordinator, SeriesKind, spec, now)
}

// Series is a verified analyst-signed series.
type Series struct {
	Cert   *x509.Certificate
	Name   string
	Role   pki.Role
	Spec   *typesv1.SeriesSpec
	Issued time.Time
}

// seriesMaxAge bounds nothing in practice: a series' signature is
// forwarded for its whole lifetime.
const seriesMaxAge = 100 * 365 * 24 * time.Hour

// OpenSeries verifies an analyst-signed series for coordinator: the
// certificate of the network CA valid at now, with a role that may sign,
// the signature, the coordinator it was made for, and a signing time no
// later than now plus maxSkew (there is no bound on its age). Every error
// matches ErrInvalid and says what is wrong.
func OpenSeries(ca *x509.Certificate, sig *typesv1.AnalystSignature, coordinator string, now time.Time, maxSkew time.Duration) (*Series, error) {
	o, err := open(ca, sig, coordinator, now, seriesMaxAge, SeriesKind, "series")
	if err != nil {
		return nil, err
	}
	if o.issued.After(now.Add(maxSkew)) {
		return nil, fmt.Errorf("%w: %q signed the series at %s, later than now (%s)", ErrInvalid, o.name, o.issued.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	var spec typesv1.SeriesSpec
	if err := proto.Unmarshal(o.payload, &spec); err != nil {
		return nil, fmt.Errorf("%w: the signed series does not decode: %v", ErrInvalid, err)
	}
	return &Series{Cert: o.cert, Name: o.name, Role: o.role, Spec: &spec, Issued: o.issued}, nil
}

// CheckSeriesSettled checks that settled, the series the coordinator runs,
// is the analyst's signed series as the coordinator may settle it: every
// field exactly as signed, except min_nodes, which the network chooses
// where the analyst left it unset (each node checks it against its
// policy). A signed series states its epsilon. The error matches
// ErrInvalid and names the first field that differs.
func CheckSeriesSettled(signed, settled *typesv1.SeriesSpec) error {
	if signed.GetEpsilon() <= 0 {
		return fmt.Errorf("%w: the analyst signed no epsilon (a signed series states its privacy parameters)", ErrInvalid)
	}
	if signed.GetMinNodes() != 0 && signed.GetMinNodes() != settled.GetMinNodes() {
		return fmt.Errorf("%w: the series' min_nodes is %d, the analyst signed %d", ErrInvalid, settled.GetMinNodes(), signed.GetMinNodes())
	}
	known := proto.Clone(settled).(*typesv1.SeriesSpec)
	known.MinNodes = signed.GetMinNodes()
	if !proto.Equal(known, signed) {
		return fmt.Errorf("%w: series %q is not the one the analyst signed (its definition or privacy parameters differ)", ErrInvalid, settled.GetName())
	}
	return nil
}
