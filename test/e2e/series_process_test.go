package e2e

// Standing series over separate processes (issue 18): a weekly series runs
// for simulated weeks on a clock the test advances (the coordinator's series
// clock, FEDSTAT_TEST_SERIES_CLOCK in a test-hooks binary); a node is killed
// in the middle and restarted, and so is the coordinator. No week is lost,
// none is charged twice, the missed weeks say they ran late, the series and
// its forecast are served, and an alert reaches the webhook.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// seriesStart is the first Monday of the test series.
var seriesStart = cdm.DateFromYMD(2025, 1, 6)

// seriesData makes nodes of patients in two regions with influenza onsets
// that rise over the weeks from seriesStart; some patients have a second
// onset (counted only at their first, K = 1) and some an onset before the
// start (not in the series). It returns the records and, per region, the
// exact count of each week: patients whose first onset since the start is in
// that week.
func seriesData(nodes, patients, weeks int) ([]*cdm.Records, map[string][]float64) {
	rng := rand.New(rand.NewPCG(18, 1))
	exact := map[string][]float64{"north": make([]float64, weeks), "south": make([]float64, weeks)}
	out := make([]*cdm.Records, nodes)
	for i := range out {
		r := &cdm.Records{}
		for j := range patients {
			region := []string{"north", "south"}[j%2]
			id := fmt.Sprintf("%s-p%d", demo.NodeID(i), j)
			r.Patients = append(r.Patients, cdm.Patient{ID: id, BirthDate: cdm.DateFromYMD(1950+rng.IntN(60), time.Month(1+rng.IntN(12)), 1+rng.IntN(28)),
				Sex: cdm.SexFemale, Region: region, DeathDate: cdm.NoDate})
			if rng.Float64() < 0.1 {
				r.Conditions = append(r.Conditions, cdm.Condition{PatientID: id, Code: "6142004", System: cdm.SystemSNOMED,
					Onset: seriesStart - cdm.Date(1+rng.IntN(60)), Abatement: cdm.NoDate})
			}
			// An epidemic that grows: week w has onset probability rising
			// with w (and more in the north).
			first := -1
			for w := range weeks {
				p := 0.004 * float64(w+1)
				if region == "north" {
					p *= 1.5
				}
				if rng.Float64() < p {
					onset := seriesStart + cdm.Date(7*w+rng.IntN(7))
					r.Conditions = append(r.Conditions, cdm.Condition{PatientID: id, Code: "6142004", System: cdm.SystemSNOMED, Onset: onset, Abatement: cdm.NoDate})
					if first < 0 {
						first = w
					}
				}
			}
			if first >= 0 {
				exact[region][first]++
			}
		}
		out[i] = r
	}
	return out, exact
}

// webhook collects the alerts POSTed to it.
type webhook struct {
	mu     sync.Mutex
	alerts []map[string]any
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var a map[string]any
	if json.Unmarshal(b, &a) == nil {
		h.mu.Lock()
		h.alerts = append(h.alerts, a)
		h.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *webhook) received() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.alerts...)
}

func TestSeriesEndToEnd(t *testing.T) {
	const weeks = 14
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	data, exact := seriesData(3, 600, weeks)
	hook := &webhook{}
	hs := httptest.NewServer(hook)
	defer hs.Close()

	clockDir := t.TempDir()
	clock := filepath.Join(clockDir, "series-clock")
	setClock := func(d cdm.Date) {
		t.Helper()
		if err := os.WriteFile(clock+".tmp", []byte(d.Time().UTC().Format(time.RFC3339)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(clock+".tmp", clock); err != nil {
			t.Fatal(err)
		}
	}
	setClock(seriesStart)
	p := serveHooked(t, ctx, demo.ServeOptions{
		Data: data, Threshold: 2, MinNodes: 3,
		CoordinatorConfig: fmt.Sprintf("series_interval = \"250ms\"\nalert_webhook = %q\n", hs.URL),
		DaemonEnv:         map[string][]string{"coordinator": {"FEDSTAT_TEST_SERIES_CLOCK=" + clock}},
	})

	spec := &typesv1.SeriesSpec{Name: "flu-weekly", Table: "conditions", Where: "code = '6142004'", DateColumn: "onset_date", By: "region",
		Every: "week", Start: seriesStart.String(), Periods: 16, MaxPeriodsPerPatient: 1, Epsilon: 4, Delta: 1e-6, MinNodes: 3}
	body, _ := json.Marshal(map[string]any{
		"spec": map[string]any{"name": spec.Name, "table": spec.Table, "where": spec.Where, "date_column": spec.DateColumn, "by": spec.By,
			"every": spec.Every, "start": spec.Start, "periods": spec.Periods, "max_periods_per_patient": spec.MaxPeriodsPerPatient,
			"epsilon": spec.Epsilon, "delta": spec.Delta, "min_nodes": spec.MinNodes},
		"alerts": []map[string]any{{"rule": "C1"}, {"rule": "forecast", "threshold": 1}},
	})
	var created coordinatorv1.Series
	apiCall(t, p, "POST", "/v1/series", string(body), &created)
	if created.State != "running" || created.Released != 0 || len(created.Labels) != 2 {
		t.Fatalf("created series: %v", &created)
	}
	// A second series of the same name is refused, naming it.
	if code, b := httpJSON(t, p, "POST", "/v1/series", string(body)); code != http.StatusConflict || !strings.Contains(string(b), "flu-weekly") {
		t.Errorf("second create of flu-weekly: %d %s; want 409 naming it", code, b)
	}

	get := func() *coordinatorv1.Series {
		var s coordinatorv1.Series
		apiCall(t, p, "GET", "/v1/series/flu-weekly", "", &s)
		return &s
	}
	due := func(w int) cdm.Date { return seriesStart + cdm.Date(7*(w+1)) } // the Monday after week w
	waitReleased := func(n int) *coordinatorv1.Series {
		t.Helper()
		var s *coordinatorv1.Series
		waitFor(t, ctx, fmt.Sprintf("%d periods released", n), func() bool { s = get(); return s.Released >= int32(n) })
		if s.Released != int32(n) {
			t.Fatalf("released %d periods, want %d (clock at the due time of period %d)", s.Released, n, n-1)
		}
		return s
	}

	// Weeks 0-3 on time.
	for w := range 4 {
		setClock(due(w))
		waitReleased(w + 1)
	}

	// Node-2 dies; weeks 4 and 5 fall due: the series waits, saying why.
	p.Nodes[1].Kill()
	setClock(due(5))
	waitFor(t, ctx, "the series to wait for node-2", func() bool {
		s := get()
		return s.State == "waiting" && strings.Contains(s.Error, "period 4")
	})
	if s := get(); s.Released != 4 {
		t.Fatalf("released %d periods with node-2 down and min_nodes 3, want 4", s.Released)
	}
	if err := p.StartNode(1); err != nil {
		t.Fatal(err)
	}
	waitReachable(t, ctx, p)
	s := waitReleased(6)
	for _, w := range []int{4, 5} {
		if pr := s.Periods[w]; !pr.Late || !strings.Contains(pr.Note, "late") {
			t.Errorf("period %d, run after node-2 was back: late %v, note %q; want late with a note", w, pr.Late, pr.Note)
		}
	}
	if s.Periods[3].Late {
		t.Errorf("period 3 ran on time but is marked late: %q", s.Periods[3].Note)
	}

	// The coordinator dies; weeks 6 and 7 fall due while it is down; it
	// comes back a day later and runs them, saying they are late.
	p.Coordinator.Kill()
	setClock(due(7) + 1)
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	s = waitReleased(8)
	for _, w := range []int{6, 7} {
		if !s.Periods[w].Late {
			t.Errorf("period %d, due while the coordinator was down: not marked late", w)
		}
	}
	for w := 8; w < weeks; w++ {
		setClock(due(w))
		s = waitReleased(w + 1)
	}

	// No gaps; the estimates are near the exact counts (K = 1).
	for w, pr := range s.Periods {
		if int(pr.Index) != w || pr.First != (seriesStart+cdm.Date(7*w)).String() {
			t.Fatalf("period %d is %d (%s)", w, pr.Index, pr.First)
		}
		for _, v := range pr.Values {
			want := exact[v.Label][w]
			if sd := math.Sqrt(v.Variance); math.Abs(v.Value-want) > 5*sd+1 {
				t.Errorf("week %d %s: %.1f ± %.1f, exact %v", w, v.Label, v.Value, sd, want)
			}
		}
	}
	last := s.Periods[weeks-1].Values[0]
	var total float64
	for w := range weeks {
		total += exact[last.Label][w]
	}
	if sd := math.Sqrt(last.TotalVariance); math.Abs(last.Total-total) > 5*sd+1 {
		t.Errorf("running total of %s: %.1f ± %.1f, exact %v", last.Label, last.Total, sd, total)
	}

	// Charged once: every node spent exactly the lifetime budget, and its
	// audit log shows each query id debited at most once.
	rho := protocol.SeriesRho(spec)
	for id, spent := range budgetsOf(t, p) {
		if math.Abs(spent-rho) > 1e-9 {
			t.Errorf("%s spent rho %v on the series, want its lifetime rho %v once", id, spent, rho)
		}
	}

	// The forecast is served: 4 horizons × 23 quantiles per region.
	code, fb := httpJSON(t, p, "GET", "/v1/series/flu-weekly/forecast", "")
	var fc struct {
		Rows []struct {
			Location string  `json:"location"`
			Horizon  int     `json:"horizon"`
			Value    float64 `json:"value"`
		} `json:"rows"`
	}
	if code != http.StatusOK || json.Unmarshal(fb, &fc) != nil || len(fc.Rows) != 2*4*23 {
		t.Errorf("forecast: %d, %d rows (%.300s); want 184", code, len(fc.Rows), fb)
	}
	csvOut, stderr, err := cli(t, p, "forecast", "flu-weekly")
	if err != nil || !strings.HasPrefix(csvOut, "reference_date,horizon,target_end_date,location,output_type,output_type_id,value\n") ||
		strings.Count(csvOut, "\n") != 1+2*4*23 {
		t.Errorf("fedstat forecast flu-weekly: %v\n%.400s%s", err, csvOut, stderr)
	}
	out, stderr, err := cli(t, p, "series", "show", "flu-weekly")
	if err != nil || !strings.Contains(out, "north") || !strings.Contains(out, "late") {
		t.Errorf("fedstat series show: %v\n%s%s", err, out, stderr)
	}

	// An alert reached the webhook, naming the series, week, value and rule.
	waitFor(t, ctx, "an alert at the webhook", func() bool { return len(hook.received()) > 0 })
	a := hook.received()[0]
	if len(get().Alerts) == 0 {
		t.Errorf("the series lists no alert, the webhook got %v", a)
	}
	for _, k := range []string{"series", "week", "value", "rule"} {
		if _, ok := a[k]; !ok {
			t.Errorf("webhook alert %v has no %q", a, k)
		}
	}

	p.Stop()
	for node, per := range auditDebits(t, p) {
		for qid, n := range per {
			if n > 1 {
				t.Errorf("%s debited %s %d times", node, qid, n)
			}
		}
		if per[protocol.SeriesReservationID(spec)] != 1 {
			t.Errorf("%s debited the series reservation %d times, want 1", node, per[protocol.SeriesReservationID(spec)])
		}
	}
}
