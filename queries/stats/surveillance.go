package stats

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// IncidenceOptions configure Incidence.
type IncidenceOptions struct {
	// Table and Where select the cases, e.g. conditions with a code and an
	// onset range. Required.
	Table, Where string
	// Count is the aggregate that counts cases. Defaults to
	// "COUNT(DISTINCT patient_id)" (each person once per group).
	Count string
	// By is the grouping key (e.g. "region"); its labels must be keys of
	// Populations. Empty: one national rate over the sum of Populations.
	By string
	// Populations are the public denominators by label (the network
	// catalogue's populations, e.g. FluSight's locations.csv). Required.
	Populations map[string]float64
	// Per is the rate's unit. Defaults to 100,000.
	Per    float64
	Budget Budget
}

// Rate is an incidence rate per Per persons.
type Rate struct {
	Label string
	Cases Noisy
	// Rate per Per with its standard error and 95% interval: the noise
	// variance plus the Poisson variance of the count.
	Rate Estimate
}

// Incidence computes incidence rates in one round: `SELECT [by,] count
// ... GROUP BY by`, one count measure (sensitivity 1 for COUNT(DISTINCT
// patient_id) with a patient-level key, the whole budget). rate =
// cases/population·Per; its variance (Per/pop)²·(cases + σ²) adds the
// Poisson sampling variance of the count to the noise. Groups without a
// population are refused.
func Incidence(ctx context.Context, q Querier, o IncidenceOptions) ([]Rate, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if o.Table == "" || len(o.Populations) == 0 {
		return nil, fmt.Errorf("%w: a table and populations are required", ErrInput)
	}
	if o.Count == "" {
		o.Count = "COUNT(DISTINCT patient_id)"
	}
	if o.Per == 0 {
		o.Per = 100000
	}
	sel, group := "", ""
	if o.By != "" {
		sel, group = o.By+" AS grp, ", " GROUP BY grp"
	}
	rel, err := q.Query(ctx, o.Budget.request("SELECT "+sel+o.Count+from(o.Table, o.Where)+group))
	if err != nil {
		return nil, err
	}
	var out []Rate
	for _, row := range rel.Rows {
		label, pop := "total", 0.0
		if o.By != "" {
			label = row.Keys[0]
			var ok bool
			if pop, ok = o.Populations[label]; !ok || !(pop > 0) {
				return nil, fmt.Errorf("%w: no population for %q", ErrInput, label)
			}
		} else {
			for _, p := range o.Populations {
				pop += p
			}
		}
		if len(row.Values) != 1 || row.Values[0].Missing {
			return nil, fmt.Errorf("%w: the count of %s was withheld", ErrRelease, label)
		}
		c := row.Values[0]
		f := o.Per / pop
		se := f * math.Sqrt(math.Max(c.Value, 0)+c.Var)
		out = append(out, Rate{Label: label, Cases: c, Rate: normalEstimate(label, c.Value*f, se)})
	}
	return out, nil
}

// Series is a released time series of counts.
type Series struct {
	Labels []string
	Counts []Noisy
}

// WeeklySeries releases a weekly count series in one round: `SELECT
// week(dateCol) AS week, count ... WHERE where AND dateCol BETWEEN from
// AND to GROUP BY week` (ISO weeks, Monday to Sunday), one count measure,
// the whole budget.
func WeeklySeries(ctx context.Context, q Querier, table, count, where, dateCol, fromDate, toDate string, b Budget) (*Series, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if count == "" {
		count = "COUNT(DISTINCT patient_id)"
	}
	w := dateCol + " BETWEEN '" + fromDate + "' AND '" + toDate + "'"
	if strings.TrimSpace(where) != "" {
		w = "(" + where + ") AND " + w
	}
	rel, err := q.Query(ctx, b.request("SELECT week("+dateCol+") AS week, "+count+from(table, w)+" GROUP BY week"))
	if err != nil {
		return nil, err
	}
	s := &Series{}
	for _, row := range rel.Rows {
		if row.Values[0].Missing {
			return nil, fmt.Errorf("%w: the count of week %s was withheld", ErrRelease, row.Keys[0])
		}
		s.Labels = append(s.Labels, row.Keys[0])
		s.Counts = append(s.Counts, row.Values[0])
	}
	return s, nil
}

// EARS methods.
const (
	C1 = "C1" // baseline: the 7 periods just before; alert when C1 > 3
	C2 = "C2" // baseline: 7 periods ending 2 periods before; alert when C2 > 3
	C3 = "C3" // Σ of max(0, C2 − 1) over this and the 2 previous periods; alert when C3 > 2
)

// Alert is one period's EARS statistic.
type Alert struct {
	Label     string
	Count     float64
	Statistic float64
	Threshold float64
	Fired     bool
}

// EARS runs the CDC's Early Aberration Reporting System method C1, C2 or C3
// on a released series (post-processing, no budget): for period t the
// baseline is 7 earlier periods (C1: t−7..t−1; C2 and C3: t−9..t−3), the
// statistic (y_t − mean)/sd, with the sample variance of the baseline minus
// the noise variance (the noise inflates it), and sd at least 0.2·mean and
// at least 1 so that a flat baseline does not alert on one case. C1 and C2
// alert above 3, C3 (the sum of max(0, C2 − 1) over t, t−1, t−2) above 2.
// Periods without a full baseline are left out.
func EARS(s *Series, method string) ([]Alert, error) {
	lag, thr := 0, 3.0
	switch method {
	case C1:
	case C2, C3:
		lag = 2
	default:
		return nil, fmt.Errorf("%w: EARS method %q: want C1, C2 or C3", ErrInput, method)
	}
	if method == C3 {
		thr = 2
	}
	stat := func(t int) (float64, bool) {
		end := t - lag // baseline is [end-7, end)
		if end-7 < 0 {
			return 0, false
		}
		var m, v, nv float64
		for i := end - 7; i < end; i++ {
			m += s.Counts[i].Value
			nv += s.Counts[i].Var
		}
		m /= 7
		nv /= 7
		for i := end - 7; i < end; i++ {
			d := s.Counts[i].Value - m
			v += d * d
		}
		// The underlying variance is the baseline's sample variance less
		// the noise's; y_t − mean carries y_t's noise and a seventh of the
		// baseline's on top of it.
		v = math.Max(v/6-nv, 0) + s.Counts[t].Var + nv/7
		sd := math.Max(math.Sqrt(v), 1)
		return (s.Counts[t].Value - m) / sd, true
	}
	var out []Alert
	for t := range s.Counts {
		st, ok := stat(t)
		if !ok {
			continue
		}
		if method == C3 {
			var sum float64
			for k := range 3 {
				c, ok := stat(t - k)
				if !ok {
					sum = math.NaN()
					break
				}
				sum += math.Max(0, c-1)
			}
			if math.IsNaN(sum) {
				continue
			}
			st = sum
		}
		out = append(out, Alert{Label: s.Labels[t], Count: s.Counts[t].Value, Statistic: st, Threshold: thr, Fired: st > thr})
	}
	return out, nil
}
