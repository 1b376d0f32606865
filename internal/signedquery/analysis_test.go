package signedquery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestSignStats: a client's signed statistics request states the
// network's defaults in the request and the signature, opens as the
// analyst's analysis of exactly the request's fields (but deadline_ms),
// and is not a query's or a series' signature; the round query ids differ
// by round and do not depend on the signature bytes; an old signature or
// one without its budget does not open.
func TestSignStats(t *testing.T) {
	ca, alice := network(t)
	now := time.Now()
	req := &coordinatorv1.StatsRequest{Method: "logit", Table: "trial", Outcome: "status = 2", Covariates: []string{"age", "bmi"},
		Factors: []string{"sex"}, Rounds: 4, DeadlineMs: 5000}
	signed, err := signedquery.SignStats(alice.Key, alice.Cert.Raw, "coordinator", req, now)
	if err != nil {
		t.Fatal(err)
	}
	if signed.GetEpsilon() != signedquery.DefaultEpsilon || signed.GetDelta() != signedquery.DefaultDelta || signed.GetReferenceDate() != now.UTC().Format(time.DateOnly) ||
		signed.GetDeadlineMs() != 5000 || req.GetAnalystSignature() != nil {
		t.Fatalf("signed request %v (the caller's %v)", signed, req)
	}
	a, err := signedquery.OpenAnalysis(ca.Cert, signed.GetAnalystSignature(), "coordinator", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "alice" || !proto.Equal(a.Spec, signedquery.StatsAnalysis(signed)) {
		t.Fatalf("opened %v, want %v", a.Spec, signedquery.StatsAnalysis(signed))
	}
	sig := signed.GetAnalystSignature()
	if signedquery.AnalysisQueryID(sig, 1) == signedquery.AnalysisQueryID(sig, 2) || signedquery.AnalysisQueryID(sig, 1) == signedquery.QueryID(sig) {
		t.Fatal("round ids collide")
	}
	malleated := proto.CloneOf(sig)
	malleated.Request.Signature = append([]byte{}, sig.GetRequest().GetSignature()...)
	malleated.Request.Signature[len(malleated.Request.Signature)-1] ^= 1
	if signedquery.AnalysisQueryID(malleated, 1) != signedquery.AnalysisQueryID(sig, 1) {
		t.Fatal("a round's id depends on the signature bytes")
	}
	if _, err := signedquery.Open(ca.Cert, sig, "coordinator", now, time.Minute); err == nil || !strings.Contains(err.Error(), `"analyst-analysis", not an analyst's query`) {
		t.Errorf("an analysis signature opened as a query's: %v", err)
	}
	if _, err := signedquery.OpenSeries(ca.Cert, sig, "coordinator", now, time.Minute); err == nil {
		t.Error("an analysis signature opened as a series'")
	}
	if _, err := signedquery.OpenAnalysis(ca.Cert, sig, "coordinator", now.Add(time.Hour), time.Minute); !errors.Is(err, signedquery.ErrInvalid) {
		t.Errorf("an hour-old analysis signature with a minute's window: %v", err)
	}
	noBudget := signedquery.StatsAnalysis(req)
	bare, err := signedquery.SealAnalysis(alice.Key, alice.Cert.Raw, "coordinator", noBudget, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signedquery.OpenAnalysis(ca.Cert, bare, "coordinator", now, time.Minute); err == nil || !strings.Contains(err.Error(), "without its epsilon and delta") {
		t.Errorf("an analysis signed without its budget: %v", err)
	}
}
