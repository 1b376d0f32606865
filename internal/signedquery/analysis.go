package signedquery

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// A statistical analysis (a model fit the coordinator runs for POST
// /v1/stats/{method}) asks several queries, and the later rounds' queries
// depend on the results of the earlier ones (a Newton-Raphson step starts
// where the previous one ended), so the analyst cannot sign each round's
// query ahead. The analyst signs the analysis instead (typesv1.AnalysisSpec:
// method, table, rows, terms, rounds and the budget of the whole analysis);
// round r runs under AnalysisQueryID(signature, r), and every node
// recomputes round r's query from the signed analysis and the results of
// rounds 1 to r-1 (protocol.AnalysisRound), refusing any other. A node's
// ledger charges a query id once, so one signature pays for each round of
// the analysis at most once: at most the signed budget in all.

// AnalysisKind is the envelope kind of an analyst-signed analysis. A wire
// value: never change it.
const AnalysisKind = "analyst-analysis"

// AnalysisMaxAge is how long after signing the rounds of a signed analysis
// may run at a node (the coordinator accepts the signature only within the
// skew window, when the analysis starts; its rounds may then wait for
// approvals). A replay within it reruns rounds under the ids already
// charged, which costs nothing more.
const AnalysisMaxAge = 24 * time.Hour

// AnalysisWithDefaults returns a copy of spec with what the coordinator
// would fill in for the analyst stated explicitly, so that it is signed:
// epsilon and delta (DefaultEpsilon, DefaultDelta) and the reference date
// (today, UTC, at now).
func AnalysisWithDefaults(spec *typesv1.AnalysisSpec, now time.Time) *typesv1.AnalysisSpec {
	spec = proto.Clone(spec).(*typesv1.AnalysisSpec)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 {
		spec.Delta = DefaultDelta
	}
	if spec.ReferenceDate == "" {
		spec.ReferenceDate = cdm.DateOf(now).String()
	}
	return spec
}

// StatsAnalysis is the analysis a statistics request asks for: its fields
// but deadline_ms and the signature, as the analyst signs them.
func StatsAnalysis(req *coordinatorv1.StatsRequest) *typesv1.AnalysisSpec {
	return &typesv1.AnalysisSpec{Method: req.GetMethod(), Table: req.GetTable(), Where: req.GetWhere(),
		Epsilon: req.GetEpsilon(), Delta: req.GetDelta(), ReferenceDate: req.GetReferenceDate(),
		Time: req.GetTime(), Status: req.GetStatus(), Event: req.GetEvent(), Width: req.GetWidth(), Strata: req.GetStrata(),
		Outcome: req.GetOutcome(), Covariates: req.GetCovariates(), Factors: req.GetFactors(), Rounds: req.GetRounds()}
}

// SignStats returns a copy of req with the network's defaults stated
// (AnalysisWithDefaults) and the analysis signed for coordinator at now
// with the analyst's certificate key: what an analyst's client sends.
func SignStats(signer crypto.Signer, certDER []byte, coordinator string, req *coordinatorv1.StatsRequest, now time.Time) (*coordinatorv1.StatsRequest, error) {
	spec := AnalysisWithDefaults(StatsAnalysis(req), now)
	sig, err := SealAnalysis(signer, certDER, coordinator, spec, now)
	if err != nil {
		return nil, err
	}
	req = proto.Clone(req).(*coordinatorv1.StatsRequest)
	req.Epsilon, req.Delta, req.ReferenceDate, req.AnalystSignature = spec.Epsilon, spec.Delta, spec.ReferenceDate, sig
	return req, nil
}

// SealAnalysis signs spec for coordinator at now with the analyst's
// certificate key; certDER is the analyst's certificate.
func SealAnalysis(signer crypto.Signer, certDER []byte, coordinator string, spec *typesv1.AnalysisSpec, now time.Time) (*typesv1.AnalystSignature, error) {
	return seal(signer, certDER, coordinator, AnalysisKind, spec, now)
}

// Analysis is a verified analyst-signed analysis.
type Analysis struct {
	Cert   *x509.Certificate
	Name   string
	Role   pki.Role
	Spec   *typesv1.AnalysisSpec
	Issued time.Time
}

// OpenAnalysis verifies an analyst-signed analysis for coordinator: the
// certificate of the network CA valid at now, with a role that may sign,
// the signature, the coordinator it was made for, signed within maxAge of
// now, and a spec that states its budget and reference date. Every error
// matches ErrInvalid and says what is wrong.
func OpenAnalysis(ca *x509.Certificate, sig *typesv1.AnalystSignature, coordinator string, now time.Time, maxAge time.Duration) (*Analysis, error) {
	o, err := open(ca, sig, coordinator, now, maxAge, AnalysisKind, "analysis")
	if err != nil {
		return nil, err
	}
	var spec typesv1.AnalysisSpec
	if err := proto.Unmarshal(o.payload, &spec); err != nil {
		return nil, fmt.Errorf("%w: the signed analysis does not decode: %v", ErrInvalid, err)
	}
	switch {
	case spec.GetEpsilon() <= 0 || spec.GetDelta() <= 0:
		return nil, fmt.Errorf("%w: %q signed an analysis without its epsilon and delta (a signed analysis states its privacy parameters)", ErrInvalid, o.name)
	case spec.GetReferenceDate() == "":
		return nil, fmt.Errorf("%w: %q signed an analysis without its reference date", ErrInvalid, o.name)
	}
	return &Analysis{Cert: o.cert, Name: o.name, Role: o.role, Spec: &spec, Issued: o.issued}, nil
}

// AnalysisQueryID is the query id round (from 1) of an analyst-signed
// analysis runs under: "q-" and the first 16 bytes, in hex, of SHA-256
// over a domain string, the signed header and the round. Like QueryID it
// is not derived from the signature bytes. It verifies nothing.
func AnalysisQueryID(sig *typesv1.AnalystSignature, round int) string {
	h := sha256.New()
	h.Write([]byte("fedstat/analyst-analysis/v1 round query id\x00"))
	h.Write(sig.GetRequest().GetHeader())
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(round)))
	return "q-" + hex.EncodeToString(h.Sum(nil)[:16])
}
