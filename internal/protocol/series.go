package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/cdm"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/zcdp"
)

// A standing series (typesv1.SeriesSpec) releases, once period t is over,
// every dyadic interval of its periods that ends at t (continual.Ending),
// each as an ordinary query of the network. Coordinator and nodes derive the
// query of an interval from the spec with the functions below, so that a
// node can check that what it is asked is exactly the series' query for
// that interval and nothing else: the SQL, the budget (the lifetime ρ over
// continual.Weight), the reference date and the query id.

// MaxSeriesPeriods bounds a series' lifetime (a weekly series for 20 years).
const MaxSeriesPeriods = 1040

// MaxPeriodsPerPatient bounds K.
const MaxPeriodsPerPatient = 52

var seriesName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// CheckSeries checks a series spec and returns its schedule. Errors name
// the field.
func CheckSeries(s *typesv1.SeriesSpec) (continual.Schedule, error) {
	var sch continual.Schedule
	if s == nil {
		return sch, fmt.Errorf("%w: series: missing", ErrSpec)
	}
	if !seriesName.MatchString(s.GetName()) {
		return sch, fmt.Errorf("%w: series name %q: want lower-case letters, digits and '-', at most 40, starting with a letter or digit", ErrSpec, s.GetName())
	}
	if !identifier(s.GetTable()) {
		return sch, fmt.Errorf("%w: series %s: table %q is not a table name", ErrSpec, s.GetName(), s.GetTable())
	}
	if !identifier(s.GetDateColumn()) {
		return sch, fmt.Errorf("%w: series %s: date_column %q is not a column name", ErrSpec, s.GetName(), s.GetDateColumn())
	}
	if b := s.GetBy(); b != "" && !identifier(b) {
		return sch, fmt.Errorf("%w: series %s: by %q: a series is grouped by one column (e.g. region)", ErrSpec, s.GetName(), b)
	}
	if w := strings.TrimSpace(s.GetWhere()); w != "" {
		// where must be one condition on its own: it is put in parentheses
		// before the date range, which it must not be able to escape.
		if _, err := parse.Parse("SELECT COUNT(*) FROM " + s.GetTable() + " WHERE " + w); err != nil {
			return sch, fmt.Errorf("%w: series %s: where %q is not a condition on its own: %v", ErrSpec, s.GetName(), w, err)
		}
	}
	start, err := cdm.ParseDate(s.GetStart())
	if err != nil {
		return sch, fmt.Errorf("%w: series %s: start: %v", ErrSpec, s.GetName(), err)
	}
	sch = continual.Schedule{Every: s.GetEvery(), Start: start}
	if err := sch.Validate(); err != nil {
		return sch, fmt.Errorf("%w: series %s: %v", ErrSpec, s.GetName(), err)
	}
	if p := s.GetPeriods(); p < 1 || p > MaxSeriesPeriods {
		return sch, fmt.Errorf("%w: series %s: periods %d: want 1 to %d", ErrSpec, s.GetName(), p, MaxSeriesPeriods)
	}
	if k := s.GetMaxPeriodsPerPatient(); k < 1 || k > MaxPeriodsPerPatient {
		return sch, fmt.Errorf("%w: series %s: max_periods_per_patient %d: want 1 to %d", ErrSpec, s.GetName(), k, MaxPeriodsPerPatient)
	}
	if e := s.GetEpsilon(); !(e > 0) || math.IsInf(e, 0) {
		return sch, fmt.Errorf("%w: series %s: epsilon %v: want > 0", ErrSpec, s.GetName(), e)
	}
	if d := s.GetDelta(); !(d > 0 && d < 1) {
		return sch, fmt.Errorf("%w: series %s: delta %v: want in (0, 1)", ErrSpec, s.GetName(), d)
	}
	if s.GetMinNodes() < 1 {
		return sch, fmt.Errorf("%w: series %s: min_nodes %d: want >= 1", ErrSpec, s.GetName(), s.GetMinNodes())
	}
	return sch, nil
}

func identifier(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// SeriesDigest identifies a series' definition: two specs with the same
// name and another definition are different series to a node.
func SeriesDigest(s *typesv1.SeriesSpec) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		panic(err) // a SeriesSpec always marshals
	}
	h := sha256.Sum256(append([]byte("fedstat series v1\x00"), b...))
	return h[:]
}

// SeriesIDPrefix starts the query id of every series interval, and of no
// other query: a node refuses it on a query that is not a series'.
const SeriesIDPrefix = "s-"

// IsSeriesQuery reports whether a query id is a series interval's.
func IsSeriesQuery(queryID string) bool { return strings.HasPrefix(queryID, SeriesIDPrefix) }

// SeriesPartialAge is how old a signed partial of a series interval may be.
// Each interval has one partial per node, stored and replayed to every
// retry (a node down for days, a coordinator restarted), so its timestamp
// says when it was made, not when it was sent; the query id binds it to its
// interval, and a replay of it is the same partial, which is the point.
const SeriesPartialAge = 50 * 366 * 24 * time.Hour

func seriesTag(s *typesv1.SeriesSpec) string {
	return SeriesIDPrefix + s.GetName() + "-" + hex.EncodeToString(SeriesDigest(s)[:6])
}

// SeriesReservationID is the ledger id under which a node charges the
// series' lifetime budget, once.
func SeriesReservationID(s *typesv1.SeriesSpec) string { return seriesTag(s) }

// SeriesQueryID is the query id of interval iv of the series: the same at
// every attempt, so that a node answers (and charges) it once and replays
// its answer to a retry.
func SeriesQueryID(s *typesv1.SeriesSpec, iv continual.Interval) string {
	return seriesTag(s) + "-" + iv.String()
}

// SeriesRho is the series' lifetime zCDP cost.
func SeriesRho(s *typesv1.SeriesSpec) float64 {
	return zcdp.RhoFromEpsilonDelta(s.GetEpsilon(), s.GetDelta())
}

// SeriesQuery is the query of interval iv: its SQL counts the rows from the
// series start to the interval's last day (the node needs the earlier
// periods to apply the K bound; eval.PeriodCounts counts only the
// interval's periods), at the interval's share of the lifetime budget
// (continual.NodeRho), with the series start as reference date for every
// interval (a filter on age then means the same at every period, which the
// K bound needs).
// The caller fills min_nodes, threshold and partial_limit as for any query.
func SeriesQuery(s *typesv1.SeriesSpec, iv continual.Interval) (*typesv1.QuerySpec, error) {
	sch, err := CheckSeries(s)
	if err != nil {
		return nil, err
	}
	T, K := int(s.GetPeriods()), int(s.GetMaxPeriodsPerPatient())
	if iv.Level < 0 || iv.Index < 0 || iv.Last() >= T || iv.Level >= continual.Levels(T) {
		return nil, fmt.Errorf("%w: series %s: interval %s is outside its %d periods", ErrSpec, s.GetName(), iv, T)
	}
	_, last := sch.Bounds(iv.Last())
	w := s.GetDateColumn() + " BETWEEN '" + sch.Start.String() + "' AND '" + last.String() + "'"
	if strings.TrimSpace(s.GetWhere()) != "" {
		w = "(" + s.GetWhere() + ") AND " + w
	}
	sel, group := "", ""
	if b := s.GetBy(); b != "" {
		sel, group = b+" AS "+b+", ", " GROUP BY "+b
	}
	sql := "SELECT " + sel + "COUNT(DISTINCT patient_id) FROM " + s.GetTable() + " WHERE " + w + group
	rho := continual.NodeRho(SeriesRho(s), T, K)
	return &typesv1.QuerySpec{
		Sql:           sql,
		Epsilon:       zcdp.EpsilonFromRho(rho, s.GetDelta()),
		Delta:         s.GetDelta(),
		Mechanism:     typesv1.Mechanism_MECHANISM_GAUSSIAN,
		MinNodes:      s.GetMinNodes(),
		ReferenceDate: sch.Start.String(),
	}, nil
}
