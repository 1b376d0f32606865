package releasecheck_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/releasecheck"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

func planOf(t *testing.T, sql string, eps float64) *plan.Plan {
	t.Helper()
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: eps, Delta: 1e-6, MinNodes: 3, Threshold: 2}, plan.DefaultCatalogue())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func released(values ...*typesv1.Number) *typesv1.Result {
	return &typesv1.Result{Rows: []*typesv1.Row{{Values: values}}}
}

// TestDisclosable: the result key is revealed for a count released whole,
// and withheld when the totals hold what the analyst was not given: a
// suppressed small count, a count rounded from a finer grid, the sums
// behind a mean.
func TestDisclosable(t *testing.T) {
	// At ε = 0.1 a node's count noise is wide enough for a grid of 1; at
	// ε = 5 the count is noised on a finer grid and released rounded.
	count := planOf(t, "SELECT COUNT(*) FROM patients", 0.1)
	if err := releasecheck.Disclosable(count, released(&typesv1.Number{Value: 120})); err != nil {
		t.Fatalf("a count released whole: %v", err)
	}
	if err := releasecheck.Disclosable(count, released(&typesv1.Number{Suppressed: true})); err == nil || !strings.Contains(err.Error(), "suppressed") {
		t.Fatalf("a suppressed count: %v", err)
	}
	if err := releasecheck.Disclosable(planOf(t, "SELECT COUNT(*) FROM patients", 5), released(&typesv1.Number{Value: 120})); err == nil || !strings.Contains(err.Error(), "finer grid") {
		t.Fatalf("a rounded count: %v", err)
	}
	mean := planOf(t, "SELECT AVG(CLAMP(age, 0, 110)) AS mean_age FROM patients", 1)
	if err := releasecheck.Disclosable(mean, released(&typesv1.Number{Value: 41.5})); err == nil || !strings.Contains(err.Error(), "not released on their own") {
		t.Fatalf("a mean: %v", err)
	}
}

// TestCheckRefusesIncomplete: a record without a query, or without
// senders, is refused before any cryptography; the inputs are required.
func TestCheckRefusesIncomplete(t *testing.T) {
	if _, err := releasecheck.Check(&coordinatorv1.ReleaseRecord{}, releasecheck.Options{}); err == nil || errors.Is(err, releasecheck.ErrRefused) {
		t.Fatalf("missing options: %v", err)
	}
	o := releasecheck.Options{CA: &x509.Certificate{}, Released: &typesv1.Result{}}
	if _, err := releasecheck.Check(&coordinatorv1.ReleaseRecord{}, o); !errors.Is(err, releasecheck.ErrRefused) {
		t.Fatalf("a record without a query: %v", err)
	}
	rec := &coordinatorv1.ReleaseRecord{QueryId: "q-1", Spec: &typesv1.QuerySpec{MinNodes: 2}}
	if _, err := releasecheck.Check(rec, o); !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), "0 senders") {
		t.Fatalf("a record without senders: %v", err)
	}
}
