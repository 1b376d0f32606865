package protocol_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

const trialSchema = `name = "trial"
unit = "row"
[[columns]]
name = "time"
type = "int"
min = 0
max = 1000
[[columns]]
name = "status"
type = "int"
min = 1
max = 2
[[columns]]
name = "age"
type = "int"
min = 40
max = 80
`

func trialCatalogue(t *testing.T) *plan.Catalogue {
	t.Helper()
	sc, err := cdm.ParseStudySchema(trialSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.Studies = []cdm.StudySchema{*sc}
	return cat
}

// TestAnalysisRound: a node recomputes the query of a round of a signed
// analysis exactly as the coordinator's run of the same analysis asks it,
// and there is no round past the analysis' last, none for another number
// of results before it, and none from results that do not fit (refused,
// not a panic).
func TestAnalysisRound(t *testing.T) {
	ctx := context.Background()
	cat := trialCatalogue(t)
	km := &typesv1.AnalysisSpec{Method: "km", Table: "trial", Time: "time", Status: "status", Event: "2", Width: 50,
		Epsilon: 2, Delta: 1e-6, ReferenceDate: "2026-01-01"}
	// What the coordinator's run asks first.
	var asked []stats.Request
	sc, _ := cat.Study("trial")
	prepared, err := protocol.AnalysisOf(km).Prepare(sc)
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	_, _ = prepared.Run(ctx, stats.QuerierFunc(func(_ context.Context, r stats.Request) (*stats.Release, error) {
		asked = append(asked, r)
		return nil, stop
	}))
	if len(asked) != 1 {
		t.Fatalf("km asked %d queries before the first answer", len(asked))
	}
	got, err := protocol.AnalysisRound(ctx, km, cat, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != asked[0] {
		t.Fatalf("round 1 recomputed as %+v, the run asks %+v", got, asked[0])
	}
	spec := &typesv1.QuerySpec{Sql: got.SQL, Epsilon: got.Epsilon, Delta: got.Delta, ReferenceDate: km.ReferenceDate}
	if err := protocol.CheckAnalysisRound(km, got, spec); err != nil {
		t.Fatalf("the round's own query: %v", err)
	}

	for _, c := range []struct {
		name     string
		round    int
		previous []*typesv1.Result
		want     string
	}{
		{"round 0", 0, nil, "results of 0 rounds before it, want 0"},
		{"round 2 without results", 2, nil, "results of 0 rounds before it, want 1"},
		{"round 1 with a result", 1, []*typesv1.Result{{}}, "results of 1 rounds before it, want 0"},
		{"round 2 of a one-round analysis, on an empty result", 2, []*typesv1.Result{{}}, "round 2"},
		{"round 2 on a result of another shape", 2, []*typesv1.Result{{Columns: []string{"x"}, Rows: []*typesv1.Row{{Values: []*typesv1.Number{{Value: 1}}}}}}, "round 2"},
		// Before the shape check, this one panicked in the method (index
		// out of range), recovered as a refusal.
		{"round 2 on rows with fewer keys than key columns", 2, []*typesv1.Result{{Columns: []string{"status", "t", "n"}, KeyColumns: 2,
			Rows: []*typesv1.Row{{Keys: []string{"2"}, Values: []*typesv1.Number{{Value: 1}}}}}}, "row 1 has 1 keys and 1 values, the columns 2 and 1"},
	} {
		_, err := protocol.AnalysisRound(ctx, km, cat, c.round, c.previous)
		if _, panicked := errors.AsType[*protocol.AnalysisPanic](err); panicked || !errors.Is(err, protocol.ErrAnalysisRound) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrAnalysisRound saying %q", c.name, err, c.want)
		}
	}
	if _, err := protocol.AnalysisRound(ctx, &typesv1.AnalysisSpec{Method: "km", Table: "nope", Epsilon: 1, Delta: 1e-6}, cat, 1, nil); err == nil ||
		!strings.Contains(err.Error(), `table "nope" is not a study table`) {
		t.Errorf("an analysis of an unknown table: %v", err)
	}
	if _, err := protocol.AnalysisRound(ctx, &typesv1.AnalysisSpec{Method: "anova", Table: "trial", Epsilon: 1, Delta: 1e-6}, cat, 1, nil); err == nil {
		t.Error("an analysis of an unknown method has a round 1")
	}
}

// TestCheckAnalysisRound: the query sent as a round must be the round's,
// but for the last digits of a numeric literal or of epsilon.
func TestCheckAnalysisRound(t *testing.T) {
	signed := &typesv1.AnalysisSpec{Method: "logit", ReferenceDate: "2026-01-01"}
	want := stats.Request{SQL: "SELECT SUM(CLAMP(age * 0.0123456789, -1, 1)) FROM trial WHERE x2 = 1", Epsilon: 0.25, Delta: 1e-6}
	ok := &typesv1.QuerySpec{Sql: want.SQL, Epsilon: want.Epsilon, Delta: want.Delta, ReferenceDate: "2026-01-01"}
	if err := protocol.CheckAnalysisRound(signed, want, ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*typesv1.QuerySpec)
		ok   bool
	}{
		{"a literal in its 12th digit", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "0.0123456789", "0.012345678900001", 1) }, true},
		{"epsilon in its 12th digit", func(s *typesv1.QuerySpec) { s.Epsilon = 0.25000000000001 }, true},
		{"a literal in its 4th digit", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "0.0123456789", "0.0124", 1) }, false},
		{"a clamp widened", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "-1, 1", "-100, 100", 1) }, false},
		{"another column", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "age", "time", 1) }, false},
		{"another condition", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "x2 = 1", "x2 = 1 OR 1 = 1", 1) }, false},
		{"another identifier digit", func(s *typesv1.QuerySpec) { s.Sql = strings.Replace(s.Sql, "x2", "x3", 1) }, false},
		{"a larger epsilon", func(s *typesv1.QuerySpec) { s.Epsilon = 0.5 }, false},
		{"another delta", func(s *typesv1.QuerySpec) { s.Delta = 1e-5 }, false},
		{"Laplace", func(s *typesv1.QuerySpec) { s.Mechanism = typesv1.Mechanism_MECHANISM_LAPLACE }, false},
		{"another reference date", func(s *typesv1.QuerySpec) { s.ReferenceDate = "2026-06-01" }, false},
	} {
		s := &typesv1.QuerySpec{Sql: ok.Sql, Epsilon: ok.Epsilon, Delta: ok.Delta, ReferenceDate: ok.ReferenceDate}
		c.edit(s)
		err := protocol.CheckAnalysisRound(signed, want, s)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, protocol.ErrAnalysisRound)) {
			t.Errorf("%s: %v, want accepted %v", c.name, err, c.ok)
		}
	}
}
