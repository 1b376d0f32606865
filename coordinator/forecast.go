package coordinator

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	"github.com/fedstat/fedstat/queries/forecast"
	"github.com/fedstat/fedstat/queries/stats"
)

// Forecasts of standing series: post-processing of the released period
// estimates (no budget), by queries/forecast, whose intervals take the
// known noise variance of each released value into account. Weekly series
// only (the FluSight methods are weekly).

// ForecastRow is one FluSight row: a quantile of the forecast of one week
// for one label.
type ForecastRow struct {
	ReferenceDate string  `json:"reference_date"`
	Horizon       int     `json:"horizon"`
	TargetEndDate string  `json:"target_end_date"`
	Location      string  `json:"location"`
	OutputType    string  `json:"output_type"`
	OutputTypeID  float64 `json:"output_type_id"`
	Value         float64 `json:"value"`
}

// SeriesForecast is the forecast of every label of a series.
type SeriesForecast struct {
	Series string        `json:"series"`
	Method string        `json:"method"`
	Rows   []ForecastRow `json:"rows"`
	// Notes names labels forecast by the baseline instead of method, or
	// not at all, with the reason (too short a history).
	Skipped map[string]string `json:"notes,omitempty"`
}

// SeriesPoints turns the released period estimates of a series' label li
// into forecast history, dated by each period's last day, with each
// estimate's noise variance (the coordinator's forecasts and `fedstat
// forecast NAME` both read a series this way).
func SeriesPoints(periods []*coordinatorv1.SeriesPeriod, li int) ([]forecast.Point, error) {
	var out []forecast.Point
	for _, p := range periods {
		if li >= len(p.GetValues()) {
			break
		}
		d, err := time.Parse(time.DateOnly, p.GetLast())
		if err != nil {
			return nil, err
		}
		v := p.GetValues()[li]
		out = append(out, forecast.Point{Date: d, Value: v.GetValue(), Variance: v.GetVariance()})
	}
	return out, nil
}

// ForecastSeries forecasts 1 to 4 periods ahead of a weekly series' last
// released period, for every label, with method (empty: the ensemble).
func (c *Coordinator) ForecastSeries(p rpc.Peer, name string, method forecast.Method) (*SeriesForecast, error) {
	if method == "" {
		method = forecast.Ensemble
	}
	c.series.mu.Lock()
	r, ok := c.series.byName[name]
	if !ok || !mayReadSeries(p, r) {
		c.series.mu.Unlock()
		return nil, fmt.Errorf("%w: no series %q", ErrNotFound, name)
	}
	if r.spec.GetEvery() != "week" {
		c.series.mu.Unlock()
		return nil, fmt.Errorf("%w: series %s is released every %s; forecasts are for weekly series", ErrBadRequest, name, r.spec.GetEvery())
	}
	periods, labels := r.estimates(), r.Labels
	c.series.mu.Unlock()
	out := &SeriesForecast{Series: name, Method: string(method), Rows: []ForecastRow{}}
	for li, label := range labels {
		pts, err := SeriesPoints(periods, li)
		if err != nil {
			return nil, err
		}
		fs, err := forecast.Forecast(pts, forecast.Horizons, method)
		if errors.Is(err, forecast.ErrHistory) && method != forecast.Baseline {
			// Too short for the method: the FluSight baseline needs only
			// a few weeks; say which was used.
			if fs, err = forecast.Forecast(pts, forecast.Horizons, forecast.Baseline); err == nil {
				if out.Skipped == nil {
					out.Skipped = map[string]string{}
				}
				out.Skipped[label] = fmt.Sprintf("%d weeks are too few for %s; the baseline forecast is given", len(pts), method)
			}
		}
		if err != nil {
			if out.Skipped == nil {
				out.Skipped = map[string]string{}
			}
			out.Skipped[label] = err.Error()
			continue
		}
		for _, f := range fs {
			for i, tau := range forecast.Quantiles {
				out.Rows = append(out.Rows, ForecastRow{ReferenceDate: f.Reference.Format(time.DateOnly), Horizon: f.Horizon,
					TargetEndDate: f.Target.Format(time.DateOnly), Location: label, OutputType: "quantile", OutputTypeID: tau, Value: f.Values[i]})
			}
		}
	}
	if len(out.Rows) == 0 && len(out.Skipped) > 0 {
		return out, fmt.Errorf("%w: series %s: no label has a history long enough to forecast (%d periods released)", stats.ErrInput, name, len(periods))
	}
	return out, nil
}

// upperLevel is the forecast alert's quantile: the upper end of the 90%
// prediction interval.
const upperLevel = 0.95

// forecastUpper is the upper end of the 90% interval of next period's
// forecast of a weekly label series (false when there is none: not weekly,
// or too short a history).
func (c *Coordinator) forecastUpper(r *seriesRecord, s *stats.Series) (float64, bool) {
	if r.spec.GetEvery() != "week" {
		return 0, false
	}
	pts := make([]forecast.Point, len(s.Counts))
	for i, n := range s.Counts {
		_, last := r.sched.Bounds(i)
		pts[i] = forecast.Point{Date: last.Time(), Value: n.Value, Variance: n.Var}
	}
	fs, err := forecast.Forecast(pts, []int{0}, forecast.Ensemble)
	if err != nil || len(fs) != 1 {
		return 0, false
	}
	for i, tau := range forecast.Quantiles {
		if tau == upperLevel {
			return fs[0].Values[i], true
		}
	}
	return 0, false
}

// seriesForecast is GET /v1/series/{name}/forecast[?method=...].
func (h *httpAPI) seriesForecast(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	f, err := h.c.ForecastSeries(p, r.PathValue("name"), forecast.Method(r.URL.Query().Get("method")))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, f)
}
