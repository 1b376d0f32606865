package signedquery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/signedquery"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

func testSeries() *typesv1.SeriesSpec {
	return &typesv1.SeriesSpec{Name: "flu", Table: "conditions", Where: "code = '6142004'", DateColumn: "onset_date",
		Every: "week", Start: "2026-01-05", Periods: 52}
}

// TestOpenSeries: a signed series opens with its analyst, role and the
// series as signed with the defaults stated; a series signature is not a
// query's and the other way round; a signature of any age opens (a series
// runs on it for its lifetime), one dated in the future does not.
func TestOpenSeries(t *testing.T) {
	ca, alice := network(t)
	now := time.Now()
	spec := signedquery.SeriesWithDefaults(testSeries())
	if spec.GetEpsilon() != signedquery.DefaultEpsilon || spec.GetDelta() != signedquery.DefaultDelta || spec.GetMaxPeriodsPerPatient() != 1 || spec.GetMinNodes() != 0 {
		t.Fatalf("defaults: %v", spec)
	}
	old, err := signedquery.SealSeries(alice.Key, alice.Cert.Raw, "coordinator", spec, now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signedquery.OpenSeries(ca.Cert, old, "coordinator", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "alice" || !proto.Equal(s.Spec, spec) {
		t.Fatalf("opened %+v", s)
	}
	future, _ := signedquery.SealSeries(alice.Key, alice.Cert.Raw, "coordinator", spec, now.Add(time.Hour))
	query, _ := signedquery.Seal(alice.Key, alice.Cert.Raw, "coordinator", testSpec(), now)
	openSeries := func(sig *typesv1.AnalystSignature, coordinator string) error {
		_, err := signedquery.OpenSeries(ca.Cert, sig, coordinator, now, time.Minute)
		return err
	}
	_, asQuery := signedquery.Open(ca.Cert, old, "coordinator", now, 365*24*time.Hour)
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"dated in the future", openSeries(future, "coordinator"), "later than now"},
		{"a query's signature as a series'", openSeries(query, "coordinator"), "not an analyst's series"},
		{"a series' signature as a query's", asQuery, "not an analyst's query"},
		{"another coordinator", openSeries(old, "coordinator-2"), `for coordinator "coordinator"`},
	} {
		if !errors.Is(c.err, signedquery.ErrInvalid) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", c.name, c.err, c.want)
		}
	}
}

// TestCheckSeriesSettled: the series run must be the signed one, field for
// field, except a min_nodes the analyst left to the network.
func TestCheckSeriesSettled(t *testing.T) {
	signed := signedquery.SeriesWithDefaults(testSeries())
	settled := proto.Clone(signed).(*typesv1.SeriesSpec)
	settled.MinNodes = 3
	if err := signedquery.CheckSeriesSettled(signed, settled); err != nil {
		t.Fatalf("min_nodes settled by the network: %v", err)
	}
	for name, f := range map[string]func(*typesv1.SeriesSpec){
		"where":     func(s *typesv1.SeriesSpec) { s.Where = "" },
		"epsilon":   func(s *typesv1.SeriesSpec) { s.Epsilon = 2 },
		"periods":   func(s *typesv1.SeriesSpec) { s.Periods = 104 },
		"K":         func(s *typesv1.SeriesSpec) { s.MaxPeriodsPerPatient = 3 },
		"by":        func(s *typesv1.SeriesSpec) { s.By = "region" },
		"start":     func(s *typesv1.SeriesSpec) { s.Start = "2025-01-06" },
		"min_nodes": func(s *typesv1.SeriesSpec) { s.MinNodes = 2 },
	} {
		s := proto.Clone(settled).(*typesv1.SeriesSpec)
		f(s)
		sig := signed
		if name == "min_nodes" {
			sig = proto.Clone(signed).(*typesv1.SeriesSpec)
			sig.MinNodes = 3
		}
		if err := signedquery.CheckSeriesSettled(sig, s); !errors.Is(err, signedquery.ErrInvalid) {
			t.Errorf("a series with another %s passed: %v", name, err)
		}
	}
	unsigned := proto.Clone(signed).(*typesv1.SeriesSpec)
	unsigned.Epsilon = 0
	if err := signedquery.CheckSeriesSettled(unsigned, settled); err == nil || !strings.Contains(err.Error(), "no epsilon") {
		t.Errorf("a signed series without epsilon: %v", err)
	}
}
