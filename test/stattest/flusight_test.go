package stattest

import (
	"context"
	"encoding/csv"
	"math"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/queries/stats"
)

// FluSight: the states' admissions as patient records (internal/synth),
// one node per state: the 52 locations of the data other than the national
// 'US' aggregate (50 states, DC and Puerto Rico), each a node with its own
// store, key share and TLS identity, all in one process over gRPC with
// mutual TLS. Threshold T = 3 (any 3 nodes decrypt; up to 2 colluding
// nodes learn nothing) and min_nodes = 52, every state: a national total
// with a state missing would not be the national total. Each node then adds
// noise of variance sigma^2/(m-T+1) = sigma^2/50, so the released total
// carries 52/50 sigma^2 (with 3 nodes and T = 3 it carried 3 sigma^2).
// Only two windows are converted: the rise of the 2024-25 season (August to
// mid-December) and the week ending 2025-02-08.
func TestFluSight(t *testing.T) {
	admissions := testkit.SharedData(t, "flusight/target-hospital-admissions.csv")
	locations := testkit.SharedData(t, "flusight/locations.csv")
	d := func(s string) cdm.Date { x, _ := cdm.ParseDate(s); return x }
	rise, err := synth.FluSight(admissions, locations, synth.FluOptions{Seed: 1, From: d("2024-08-01"), To: d("2024-12-14")})
	if err != nil {
		t.Fatal(err)
	}
	peak, err := synth.FluSight(admissions, locations, synth.FluOptions{Seed: 1, From: d("2025-02-08"), To: d("2025-02-08"), IDPrefix: "peak-"})
	if err != nil {
		t.Fatal(err)
	}
	pops, err := synth.FluPopulations(locations)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for s := range pops {
		if s != "US" {
			states = append(states, s)
		}
	}
	sort.Strings(states)
	recs := make([]*cdm.Records, len(states))
	for i, s := range states {
		recs[i] = &cdm.Records{}
		for _, src := range []map[string]*cdm.Records{rise, peak} {
			if r := src[s]; r != nil {
				recs[i].Append(r)
			}
		}
	}
	const threshold = 3
	nodes := len(states)
	if nodes < 50 {
		t.Fatalf("%d locations besides US in locations.csv, want one node for each of about 52", nodes)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	nw, err := Start(ctx, Options{Records: recs, Regions: states, Threshold: threshold, MinNodes: nodes,
		Progress: func(step string, d time.Duration) {
			t.Logf("network set-up: %s in %v", step, d.Round(time.Millisecond))
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes (one per state), threshold %d, min_nodes %d: network up in %v", nodes, threshold, nodes, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	defer nw.Close()
	c, err := nw.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := &Querier{Client: c, Nodes: nodes, MinNodes: nodes, Threshold: threshold}
	defer func() { t.Logf("%d queries in %v", q.Queries, time.Since(t0).Round(time.Millisecond)) }()
	b := stats.Budget{Epsilon: 1, Delta: 1e-6}
	popf := map[string]float64{}
	for _, s := range states {
		popf[s] = float64(pops[s])
	}
	week := "code = '6142004' AND onset_date BETWEEN '2025-02-02' AND '2025-02-08'"

	// The national total of the week ending 2025-02-08, at epsilon 1.
	nat, err := stats.Incidence(ctx, q, stats.IncidenceOptions{Table: "conditions", Where: week, Populations: popf, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	cases := nat[0].Cases
	lo, hi := cases.Value-1.96*math.Sqrt(cases.Var), cases.Value+1.96*math.Sqrt(cases.Var)
	t.Logf("national admissions, week ending 2025-02-08: %.0f [%.1f, %.1f] (published 55,757); rate %.2f per 100,000", cases.Value, lo, hi, nat[0].Rate.Value)
	// A 95% interval misses 5% of the time by design: log it, and fail only
	// beyond 4.5 standard deviations (a broken release, not bad luck).
	if !(lo <= 55757 && 55757 <= hi) {
		t.Logf("55,757 is outside this release's 95%% interval (expected in 5%% of runs)")
	}
	if math.Abs(cases.Value-55757) > 4.5*math.Sqrt(cases.Var) {
		t.Errorf("released %.0f is %.1f standard deviations from 55,757", cases.Value, math.Abs(cases.Value-55757)/math.Sqrt(cases.Var))
	}
	// At a large epsilon the count is exact and its interval holds it.
	exact, err := stats.Incidence(ctx, q, stats.IncidenceOptions{Table: "conditions", Where: week, Populations: popf, Budget: stats.Budget{Epsilon: 1e5, Delta: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	if c := exact[0].Cases; math.Abs(c.Value-55757) > 1.96*math.Sqrt(c.Var)+0.5 {
		t.Errorf("at epsilon 1e5 the national total is %.1f ± %.2f, want 55,757", c.Value, 1.96*math.Sqrt(c.Var))
	}

	// Incidence per 100,000 by state, against FluSight's weekly_rate.
	rates, err := stats.Incidence(ctx, q, stats.IncidenceOptions{Table: "conditions", Where: week, By: "region", Populations: popf, Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	published := publishedRates(t, admissions, locations, "2025-02-08")
	misses := 0
	for _, r := range rates {
		want, ok := published[r.Label]
		if !ok {
			continue
		}
		if want < r.Rate.CILow || want > r.Rate.CIHigh {
			misses++
			t.Logf("%s: rate %.2f [%.2f, %.2f], published %.2f", r.Label, r.Rate.Value, r.Rate.CILow, r.Rate.CIHigh, want)
		}
	}
	// 95% intervals: about 2.6 of 52 states miss by chance.
	if len(rates) != len(states) || misses > 8 {
		t.Errorf("%d states released, %d of them miss the published rate", len(rates), misses)
	}

	// EARS C2 on the weekly national series of the 2024-25 rise.
	s, err := stats.WeeklySeries(ctx, q, "conditions", "COUNT(DISTINCT patient_id)", "code = '6142004'", "onset_date", "2024-08-05", "2024-12-08", b)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := stats.EARS(s, stats.C2)
	if err != nil {
		t.Fatal(err)
	}
	first := ""
	for _, a := range alerts {
		if a.Fired {
			first = a.Label
			t.Logf("EARS C2 alert in week %s: %.0f admissions, C2 = %.1f", a.Label, a.Count, a.Statistic)
			break
		}
	}
	// The rise starts in the week ending 2024-10-19 (556 admissions after
	// about 300 a week; 1,087 in the next). ISO week 2024-W41 (October
	// 7-13) holds that week's first day, W42 most of it; the first alert
	// must fall in W41-W45.
	if first < "2024-W41" || first > "2024-W45" {
		t.Errorf("first EARS C2 alert in %q, want 2024-W41..W45", first)
	}
}

// publishedRates reads FluSight's value per state for one week and
// returns it per 100,000 of the locations' populations, by state code.
func publishedRates(t *testing.T, admissions, locations, date string) map[string]float64 {
	t.Helper()
	locs, err := synth.FluLocations(locations)
	if err != nil {
		t.Fatal(err)
	}
	code := map[string]synth.FluLocation{}
	for _, l := range locs {
		code[l.FIPS] = l
	}
	f, err := os.Open(admissions)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, r := range rows[1:] {
		if r[0] != date || r[1] == "US" {
			continue
		}
		v, err := strconv.ParseFloat(r[3], 64)
		if err != nil {
			continue
		}
		l := code[r[1]]
		out[l.Code] = v / float64(l.Population) * 1e5
	}
	return out
}
