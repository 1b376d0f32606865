package protocol

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"runtime/debug"
	"strconv"

	"github.com/fedstat/fedstat/internal/resultpb"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

// A statistical analysis signed by its analyst (typesv1.AnalysisSpec,
// internal/signedquery) runs as a sequence of ordinary queries, its
// rounds. The coordinator runs the analysis (queries/stats) with a querier
// that submits each round; a node recomputes the query of round r itself
// (AnalysisRound): it runs the same analysis with a querier that answers
// rounds 1 to r-1 with their released results (which the node takes from
// the rounds' release records, after checking them) and stops at round r.
// The round's SQL and budget are then the method's, for the signed table,
// rows, terms and budget split, at the point the released results lead
// to.

// AnalysisOf is the stats analysis of a signed spec: what the coordinator
// runs and each node replays.
func AnalysisOf(spec *typesv1.AnalysisSpec) stats.Analysis {
	a := stats.Analysis{Method: spec.GetMethod(), Table: spec.GetTable(), Where: spec.GetWhere(),
		Budget: stats.Budget{Epsilon: spec.GetEpsilon(), Delta: spec.GetDelta()},
		Time:   spec.GetTime(), Width: spec.GetWidth(), Status: spec.GetStatus(), Event: spec.GetEvent(), Outcome: spec.GetOutcome(),
		Rounds: int(spec.GetRounds()), Model: stats.Model{Factors: spec.GetFactors()}}
	for _, x := range spec.GetCovariates() {
		a.Model.Covariates = append(a.Model.Covariates, stats.Term{Name: x})
	}
	if a.Method == "km" {
		a.Strata = spec.GetStrata()
	}
	if a.Method == "linreg" {
		a.Outcome, a.Model.Outcome = "", stats.Term{Name: spec.GetOutcome()}
	}
	return a
}

// ErrAnalysisRound: a query sent as a round of a signed analysis is not
// that round's query.
var ErrAnalysisRound = errors.New("analysis round")

// AnalysisPanic is AnalysisRound's error when the analysis panicked on the
// results it was given: the round is refused (it matches ErrAnalysisRound)
// and the stack is kept for the node's log, since it may as well be a bug
// in the method as a shape of results the coordinator made up.
type AnalysisPanic struct {
	Round int
	Value any
	Stack []byte
}

func (e *AnalysisPanic) Error() string {
	return fmt.Sprintf("%v: the results of the rounds before round %d do not fit the analysis (%v)", ErrAnalysisRound, e.Round, e.Value)
}

func (e *AnalysisPanic) Unwrap() error { return ErrAnalysisRound }

// errRoundReached stops a replay at the round it recomputes.
var errRoundReached = errors.New("protocol: round reached")

// AnalysisRound recomputes the query of round (from 1) of the analysis
// spec on the catalogue's study schema, given the released results of the
// rounds before it. The errors match ErrAnalysisRound and say why there is
// no such round.
func AnalysisRound(ctx context.Context, spec *typesv1.AnalysisSpec, cat *plan.Catalogue, round int, previous []*typesv1.Result) (req stats.Request, err error) {
	if round < 1 || len(previous) != round-1 {
		return req, fmt.Errorf("%w: round %d comes with the results of %d rounds before it, want %d", ErrAnalysisRound, round, len(previous), max(round-1, 0))
	}
	sc, ok := cat.Study(spec.GetTable())
	if !ok {
		return req, fmt.Errorf("%w: table %q is not a study table of this catalogue", ErrAnalysisRound, spec.GetTable())
	}
	prepared, err := AnalysisOf(spec).Prepare(sc)
	if err != nil {
		return req, fmt.Errorf("%w: the signed analysis is refused: %w", ErrAnalysisRound, err)
	}
	n := 0
	defer func() {
		// The forwarded results are the coordinator's word: a shape the
		// method does not expect must refuse the round, never stop the node.
		if r := recover(); r != nil {
			err = &AnalysisPanic{Round: round, Value: r, Stack: debug.Stack()}
		}
	}()
	_, err = prepared.Run(ctx, stats.QuerierFunc(func(_ context.Context, r stats.Request) (*stats.Release, error) {
		n++
		if n == round {
			req = r
			return nil, errRoundReached
		}
		return stats.FromResult(resultpb.FromProto(previous[n-1])), nil
	}))
	switch {
	case n == round:
		return req, nil
	case err != nil:
		return req, fmt.Errorf("%w: on the results of the rounds before it, the analysis stops before round %d: %w", ErrAnalysisRound, round, err)
	}
	return req, fmt.Errorf("%w: the analysis has %d rounds, and this is round %d", ErrAnalysisRound, n, round)
}

// sqlNumber is a numeric literal in SQL text.
var sqlNumber = regexp.MustCompile(`[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?`)

// CheckAnalysisRound checks that spec, the query sent as a round, is want,
// the round's query recomputed by AnalysisRound, for the signed analysis
// signed: the same SQL, where numeric literals may differ in the last
// digits (machines with fused multiply-add round the method's arithmetic
// differently), the same epsilon as closely, delta exactly, the Gaussian
// mechanism and the signed reference date.
func CheckAnalysisRound(signed *typesv1.AnalysisSpec, want stats.Request, spec *typesv1.QuerySpec) error {
	switch {
	case !sameSQL(want.SQL, spec.GetSql()):
		return fmt.Errorf("%w: the SQL %q is not the signed analysis' (%q)", ErrAnalysisRound, spec.GetSql(), want.SQL)
	case !closeTo(want.Epsilon, spec.GetEpsilon()) || want.Delta != spec.GetDelta():
		return fmt.Errorf("%w: the round's budget is epsilon %v, delta %v; the signed analysis gives it epsilon %v, delta %v",
			ErrAnalysisRound, spec.GetEpsilon(), spec.GetDelta(), want.Epsilon, want.Delta)
	case spec.GetMechanism() != typesv1.Mechanism_MECHANISM_UNSPECIFIED && spec.GetMechanism() != typesv1.Mechanism_MECHANISM_GAUSSIAN:
		return fmt.Errorf("%w: the round's mechanism is %s; an analysis' rounds are Gaussian", ErrAnalysisRound, spec.GetMechanism())
	case spec.GetReferenceDate() != signed.GetReferenceDate():
		return fmt.Errorf("%w: the round's reference date is %s, the signed analysis' %s", ErrAnalysisRound, spec.GetReferenceDate(), signed.GetReferenceDate())
	}
	return nil
}

// closeTo reports whether a and b agree to 1e-9 relative.
func closeTo(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// sameSQL reports whether a and b are the same text but for numeric
// literals that agree to 1e-9 relative.
func sameSQL(a, b string) bool {
	if a == b {
		return true
	}
	ia, ib := sqlNumber.FindAllStringIndex(a, -1), sqlNumber.FindAllStringIndex(b, -1)
	if len(ia) != len(ib) {
		return false
	}
	pa, pb := 0, 0
	for k := range ia {
		if a[pa:ia[k][0]] != b[pb:ib[k][0]] {
			return false
		}
		x, y := a[ia[k][0]:ia[k][1]], b[ib[k][0]:ib[k][1]]
		if x != y {
			fx, errx := strconv.ParseFloat(x, 64)
			fy, erry := strconv.ParseFloat(y, 64)
			if errx != nil || erry != nil || !closeTo(fx, fy) {
				return false
			}
		}
		pa, pb = ia[k][1], ib[k][1]
	}
	return a[pa:] == b[pb:]
}
