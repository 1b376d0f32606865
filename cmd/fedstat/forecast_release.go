package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/forecast"
	"github.com/fedstat/fedstat/queries/plan"
)

// releaseSpec describes a simulated weekly release (`fedstat forecast
// release`).
type releaseSpec struct {
	// Epsilon and Delta are the budget of each week's query.
	Epsilon, Delta float64
	// Threshold is the decryption threshold T; every location is a node
	// and every week's release needs all of them (min_nodes = the number of
	// locations), so m − T + 1 honest nodes carry the noise.
	Threshold int
	// Seed selects the noise: the same seed gives the same release.
	Seed uint64
	// Total is the location written as the sum of the others' releases
	// ("US"); it is never a node. Empty: no total.
	Total string
}

// fluQuery is the weekly query whose release is simulated: the patients
// with an influenza condition (SNOMED CT 6142004) whose onset is in the
// week, by region (the layout of `fedstat synth flusight`).
const fluQuery = "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '6142004' AND onset_date BETWEEN '%s' AND '%s' GROUP BY region"

// releaseSeries simulates fedstat's weekly release of the counts in truth:
// every location but the total is a node holding that location's patients;
// each week is one COUNT(DISTINCT patient_id) query grouped by region,
// planned by queries/plan exactly as the coordinator plans it (Gaussian
// mechanism, the spec's ε and δ, max_nodes_per_patient 1, so sensitivity
// 1 per cell), every node adds its share of the noise on the plan's grid
// (as queries/dp.NoiseShare draws it, but from a seeded generator so that
// the release can be reproduced) and queries/dp.Release decodes the sum
// into the released counts and their exact noise variances. A week without
// an observation in truth (NA) is a node holding no records for it: its
// count is 0. The total is the sum of the locations' released values, with
// the sum of their variances. Locations come in the order given, the total
// last; every location has every week from the first to the last date in
// truth.
func releaseSeries(truth forecast.Truth, locations []string, spec releaseSpec) ([]forecast.Series, error) {
	var regions []string
	var first, last time.Time
	for _, loc := range locations {
		if loc == spec.Total {
			continue
		}
		regions = append(regions, loc)
		for d := range truth[loc] {
			if first.IsZero() || d.Before(first) {
				first = d
			}
			if d.After(last) {
				last = d
			}
		}
	}
	if len(regions) == 0 || first.IsZero() {
		return nil, fmt.Errorf("forecast release: no location other than the total %q has an observation", spec.Total)
	}
	if spec.Threshold < 1 || spec.Threshold > len(regions) {
		return nil, fmt.Errorf("forecast release: threshold %d: want 1..%d (the number of nodes)", spec.Threshold, len(regions))
	}
	cat := plan.DefaultCatalogue()
	cat.Regions = regions
	cat.MaxNodesPerPatient = 1
	rng := rand.New(rand.NewPCG(spec.Seed, 0x666f7265636173)) // "forecas"
	out := make([]forecast.Series, len(regions))
	for i, r := range regions {
		out[i].Location = r
	}
	var total forecast.Series
	total.Location = spec.Total
	for week := first; !week.After(last); week = week.AddDate(0, 0, 7) {
		from := week.AddDate(0, 0, -6)
		p, err := plan.Build(plan.Request{
			SQL:     fmt.Sprintf(fluQuery, from.Format(time.DateOnly), week.Format(time.DateOnly)),
			Epsilon: spec.Epsilon, Delta: spec.Delta, Mechanism: plan.Gaussian,
			MinNodes: len(regions), Threshold: spec.Threshold,
			ReferenceDate: cdm.DateFromYMD(week.Year(), week.Month(), week.Day()),
		}, cat)
		if err != nil {
			return nil, fmt.Errorf("forecast release: planning week %s: %w", week.Format(time.DateOnly), err)
		}
		ms := p.Measures()
		if len(ms) != 1 || p.Cells() != len(regions) {
			return nil, fmt.Errorf("forecast release: the plan has %d measures and %d cells, want 1 and %d", len(ms), p.Cells(), len(regions))
		}
		labels := p.Keys()[0].Labels
		scale := ms[0].Scale
		nodeSigma := p.NodeSigmas()[0] // per node, in quanta
		totals := make([]int64, p.VectorLen())
		for c, label := range labels {
			count := truth[label][week] // 0 without an observation
			if count < 0 || count != math.Trunc(count) {
				return nil, fmt.Errorf("forecast release: %s week %s: %v is not a count", label, week.Format(time.DateOnly), count)
			}
			slot := int64(math.Round(count * scale))
			for range regions { // every node adds noise to every cell
				slot += int64(math.Round(nodeSigma * rng.NormFloat64()))
			}
			totals[c] = slot
		}
		res, err := dp.Release(p, totals, len(regions))
		if err != nil {
			return nil, fmt.Errorf("forecast release: week %s: %w", week.Format(time.DateOnly), err)
		}
		var sum forecast.Point
		sum.Date = week
		for _, row := range res.Rows {
			i := slices.Index(regions, row.Keys[0])
			if i < 0 {
				return nil, fmt.Errorf("forecast release: the release has an unknown region %q", row.Keys[0])
			}
			n := row.Values[0]
			out[i].Points = append(out[i].Points, forecast.Point{Date: week, Value: n.Value, Variance: n.Variance})
			sum.Value += n.Value
			sum.Variance += n.Variance
		}
		total.Points = append(total.Points, sum)
	}
	if spec.Total != "" {
		out = append(out, total)
	}
	return out, nil
}
