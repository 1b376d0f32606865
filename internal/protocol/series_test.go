package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/protocol"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
	"github.com/fedstat/fedstat/queries/zcdp"
)

func seriesSpec() *typesv1.SeriesSpec {
	return &typesv1.SeriesSpec{Name: "flu", Table: "conditions", Where: "code = '6142004'", DateColumn: "onset_date", By: "region",
		Every: "week", Start: "2025-01-06", Periods: 52, MaxPeriodsPerPatient: 1, Epsilon: 1, Delta: 1e-6, MinNodes: 3}
}

// TestSeriesQuery: an interval's query is the series' count over the
// series start to the interval's last day, at ρ_lifetime / W(T, K), with
// the series start as reference date and a fixed id.
func TestSeriesQuery(t *testing.T) {
	s := seriesSpec()
	iv := continual.Interval{Level: 2, Index: 1} // weeks 4-7
	q, err := protocol.SeriesQuery(s, iv)
	if err != nil {
		t.Fatal(err)
	}
	want := "SELECT region AS region, COUNT(DISTINCT patient_id) FROM conditions WHERE (code = '6142004') AND onset_date BETWEEN '2025-01-06' AND '2025-03-02' GROUP BY region"
	if q.Sql != want {
		t.Errorf("SQL\n%s\nwant\n%s", q.Sql, want)
	}
	rho := zcdp.RhoFromEpsilonDelta(q.Epsilon, q.Delta)
	if w := continual.NodeRho(protocol.SeriesRho(s), 52, 1); rho < w*(1-1e-9) || rho > w*(1+1e-9) {
		t.Errorf("interval rho %v, want %v", rho, w)
	}
	if q.ReferenceDate != "2025-01-06" || q.MinNodes != 3 {
		t.Errorf("reference date %s, min_nodes %d", q.ReferenceDate, q.MinNodes)
	}
	id := protocol.SeriesQueryID(s, iv)
	if !strings.HasPrefix(id, "s-flu-") || !strings.HasSuffix(id, "-L2.1") || !protocol.IsSeriesQuery(id) || protocol.IsSeriesQuery("q-0123") {
		t.Errorf("query id %s", id)
	}
	other := proto.Clone(s).(*typesv1.SeriesSpec)
	other.Epsilon = 2
	if protocol.SeriesQueryID(other, iv) == id || protocol.SeriesReservationID(other) == protocol.SeriesReservationID(s) {
		t.Error("another definition under the same name has the same ids")
	}
	if _, err := protocol.SeriesQuery(s, continual.Interval{Level: 0, Index: 52}); err == nil {
		t.Error("an interval past the lifetime was planned")
	}
}

// TestCheckSeriesRefuses: each bad field is named.
func TestCheckSeriesRefuses(t *testing.T) {
	for _, c := range []struct {
		change func(*typesv1.SeriesSpec)
		want   string
	}{
		{func(s *typesv1.SeriesSpec) { s.Name = "Flu Weekly" }, "name"},
		{func(s *typesv1.SeriesSpec) { s.Table = "conditions; drop" }, "table"},
		{func(s *typesv1.SeriesSpec) { s.DateColumn = "" }, "date_column"},
		{func(s *typesv1.SeriesSpec) { s.By = "region, sex" }, "by"},
		{func(s *typesv1.SeriesSpec) { s.Where = "code = '1') OR (code = '2'" }, "where"},
		{func(s *typesv1.SeriesSpec) { s.Start = "2025-13-01" }, "start"},
		{func(s *typesv1.SeriesSpec) { s.Every = "fortnight" }, "fortnight"},
		{func(s *typesv1.SeriesSpec) { s.Periods = 0 }, "periods"},
		{func(s *typesv1.SeriesSpec) { s.MaxPeriodsPerPatient = 0 }, "max_periods_per_patient"},
		{func(s *typesv1.SeriesSpec) { s.Epsilon = -1 }, "epsilon"},
		{func(s *typesv1.SeriesSpec) { s.Delta = 1 }, "delta"},
		{func(s *typesv1.SeriesSpec) { s.MinNodes = 0 }, "min_nodes"},
	} {
		s := seriesSpec()
		c.change(s)
		_, err := protocol.CheckSeries(s)
		if !errors.Is(err, protocol.ErrSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an ErrSpec naming %q", s, err, c.want)
		}
	}
	if _, err := protocol.CheckSeries(seriesSpec()); err != nil {
		t.Fatal(err)
	}
}
