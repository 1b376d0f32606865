package forecast

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrCSV marks a CSV file that cannot be read as documented. The error
// names the file, the line and the column.
var ErrCSV = errors.New("forecast: bad CSV")

// Series is one location's released weekly series.
type Series struct {
	// Location names the series (FluSight: "US" or a state FIPS code).
	Location string
	// Points are the weeks, in date order, consecutive.
	Points []Point
}

// SeriesColumns are the columns ReadSeries needs, in the order WriteSeries
// writes them.
var SeriesColumns = []string{"date", "location", "value", "variance"}

// ReadSeries reads a released series from CSV: a header naming at least the
// columns date (YYYY-MM-DD), location, value and variance (the exact noise
// variance of the release, ≥ 0), in any order (other columns are ignored),
// then one row per week and location. A location's weeks must be 7 days
// apart with none missing and none repeated, in any row order. Series come
// in the order of their locations' first rows. name (the file name) starts
// every error, with the line and the column.
func ReadSeries(r io.Reader, name string) ([]Series, error) {
	rows, err := readRows(r, name, SeriesColumns)
	if err != nil {
		return nil, err
	}
	var out []Series
	byLoc := map[string]int{}
	lines := map[string]map[time.Time]int{}
	for _, row := range rows {
		date, err := row.date(0)
		if err != nil {
			return nil, err
		}
		loc := row.fields[1]
		if loc == "" {
			return nil, row.errorf(1, "empty location")
		}
		value, err := row.number(2)
		if err != nil {
			return nil, err
		}
		variance, err := row.number(3)
		if err != nil {
			return nil, err
		}
		if variance < 0 {
			return nil, row.errorf(3, "%v is negative (want the noise variance of the release, ≥ 0)", variance)
		}
		k, ok := byLoc[loc]
		if !ok {
			k = len(out)
			byLoc[loc] = k
			out = append(out, Series{Location: loc})
			lines[loc] = map[time.Time]int{}
		}
		if prev, dup := lines[loc][date]; dup {
			return nil, row.errorf(0, "week %s of location %s is also on line %d", date.Format(time.DateOnly), loc, prev)
		}
		lines[loc][date] = row.line
		out[k].Points = append(out[k].Points, Point{Date: date, Value: value, Variance: variance})
	}
	for k := range out {
		s := &out[k]
		slices.SortFunc(s.Points, func(a, b Point) int { return a.Date.Compare(b.Date) })
		for i := 1; i < len(s.Points); i++ {
			prev, cur := s.Points[i-1].Date, s.Points[i].Date
			if !cur.Equal(prev.AddDate(0, 0, 7)) {
				return nil, fmt.Errorf("%w: %s:%d: column \"date\": location %s has week %s after %s (line %d): weeks must be 7 days apart with none missing",
					ErrCSV, name, lines[s.Location][cur], s.Location, cur.Format(time.DateOnly), prev.Format(time.DateOnly), lines[s.Location][prev])
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s: no rows after the header", ErrCSV, name)
	}
	return out, nil
}

// Truth holds observed values by location and week date.
type Truth map[string]map[time.Time]float64

// Lookup returns the observed value of a location's week, and whether
// there is one.
func (t Truth) Lookup(location string, week time.Time) (float64, bool) {
	v, ok := t[location][week]
	return v, ok
}

// TruthColumns are the columns ReadTruth needs.
var TruthColumns = []string{"date", "location", "value"}

// ReadTruth reads observed values from CSV: a header naming at least the
// columns date, location and value (other columns, such as a series'
// variance or FluSight's location_name and weekly_rate, are ignored), then
// one row per week and location. A value of NA or an empty value is a week
// without an observation. FluSight's target-hospital-admissions.csv is read
// as it is published.
func ReadTruth(r io.Reader, name string) (Truth, error) {
	rows, err := readRows(r, name, TruthColumns)
	if err != nil {
		return nil, err
	}
	out := Truth{}
	lines := map[string]map[time.Time]int{}
	for _, row := range rows {
		date, err := row.date(0)
		if err != nil {
			return nil, err
		}
		loc := row.fields[1]
		if loc == "" {
			return nil, row.errorf(1, "empty location")
		}
		if out[loc] == nil {
			out[loc] = map[time.Time]float64{}
			lines[loc] = map[time.Time]int{}
		}
		if prev, dup := lines[loc][date]; dup {
			return nil, row.errorf(0, "week %s of location %s is also on line %d", date.Format(time.DateOnly), loc, prev)
		}
		lines[loc][date] = row.line
		if v := row.fields[2]; v == "" || v == "NA" {
			continue
		}
		value, err := row.number(2)
		if err != nil {
			return nil, err
		}
		out[loc][date] = value
	}
	return out, nil
}

// csvRow is one data row: the wanted columns' fields, and where they are.
type csvRow struct {
	name    string
	line    int
	columns []string // the wanted column names
	fields  []string
}

func (r csvRow) errorf(col int, format string, args ...any) error {
	return fmt.Errorf("%w: %s:%d: column %q: %s", ErrCSV, r.name, r.line, r.columns[col], fmt.Sprintf(format, args...))
}

func (r csvRow) date(col int) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, r.fields[col])
	if err != nil {
		return time.Time{}, r.errorf(col, "%q is not a date YYYY-MM-DD", r.fields[col])
	}
	return d, nil
}

func (r csvRow) number(col int) (float64, error) {
	v, err := strconv.ParseFloat(r.fields[col], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, r.errorf(col, "%q is not a finite number", r.fields[col])
	}
	return v, nil
}

// readRows reads a CSV with a header and returns the wanted columns of every
// row, by header name.
func readRows(r io.Reader, name string, want []string) ([]csvRow, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: %s: empty file (want a header with the columns %s)", ErrCSV, name, strings.Join(want, ","))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCSV, name, err)
	}
	idx := make([]int, len(want))
	for i, w := range want {
		idx[i] = -1
		for j, h := range header {
			if strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == w {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("%w: %s:1: no column %q in the header (want %s; have %s)", ErrCSV, name, w,
				strings.Join(want, ","), strings.Join(header, ","))
		}
	}
	var out []csvRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			// A *csv.ParseError names the line already.
			return nil, fmt.Errorf("%w: %s: %w", ErrCSV, name, err)
		}
		line, _ := cr.FieldPos(0)
		row := csvRow{name: name, line: line, columns: want, fields: make([]string, len(want))}
		for i, j := range idx {
			row.fields[i] = strings.TrimSpace(rec[j])
		}
		out = append(out, row)
	}
}

// FluSightColumns is the header WriteFluSight writes.
var FluSightColumns = []string{"reference_date", "horizon", "target_end_date", "location", "output_type", "output_type_id", "value"}

// WriteFluSight writes forecasts of a location in the FluSight format, one
// row per quantile level: reference_date, horizon, target_end_date (see
// QuantileForecast), location, output_type "quantile", output_type_id the
// quantile level and value the quantile. It writes no header: write
// FluSightColumns first.
func WriteFluSight(w *csv.Writer, location string, forecasts []QuantileForecast) error {
	for _, f := range forecasts {
		ref, target, h := f.Reference.Format(time.DateOnly), f.Target.Format(time.DateOnly), strconv.Itoa(f.Horizon)
		for i, tau := range Quantiles {
			if err := w.Write([]string{ref, h, target, location, "quantile", strconv.FormatFloat(tau, 'f', -1, 64), formatValue(f.Values[i])}); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteSeries writes a released series as ReadSeries reads it; write
// SeriesColumns first.
func WriteSeries(w *csv.Writer, s Series) error {
	for _, p := range s.Points {
		if err := w.Write([]string{p.Date.Format(time.DateOnly), s.Location, formatValue(p.Value), formatValue(p.Variance)}); err != nil {
			return err
		}
	}
	return nil
}

// formatValue writes v with at most 4 decimals, without trailing zeros.
func formatValue(v float64) string {
	r := math.Round(v*1e4) / 1e4
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}
