package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/queries/forecast"
	"github.com/fedstat/fedstat/test/testkit"
)

// runForecast runs fedstat with args and returns stdout and stderr apart.
func runForecast(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errb.String(), err
}

var forecastDay0 = time.Date(2023, 1, 7, 0, 0, 0, 0, time.UTC)

// writeSeriesCSV writes a released series of two locations, "A" a wave
// around 200 and "B" around 20, each with noise variance 25 (exact values,
// the noise not actually added: the tests here check the plumbing).
func writeSeriesCSV(t *testing.T, weeks int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("date,location,value,variance\n")
	for _, loc := range []struct {
		name  string
		level float64
	}{{"A", 200}, {"B", 20}} {
		for i := range weeks {
			v := math.Round(loc.level * (1.5 + math.Sin(float64(i)/5)))
			fmt.Fprintf(&b, "%s,%s,%v,25\n", forecastDay0.AddDate(0, 0, 7*i).Format(time.DateOnly), loc.name, v)
		}
	}
	p := filepath.Join(t.TempDir(), "series.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestForecastWritesFluSightCSV(t *testing.T) {
	path := writeSeriesCSV(t, 30)
	out, _, err := runForecast(t, "forecast", "--series", path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "reference_date,horizon,target_end_date,location,output_type,output_type_id,value" {
		t.Fatalf("header %s", got)
	}
	if len(rows) != 1+2*4*23 {
		t.Fatalf("%d rows, want 1 + 2 locations × 4 horizons × 23 levels", len(rows))
	}
	ref := forecastDay0.AddDate(0, 0, 7*30).Format(time.DateOnly) // the week after the last
	prev := -1.0
	for i, r := range rows[1:] {
		h, _ := strconv.Atoi(r[1])
		target := forecastDay0.AddDate(0, 0, 7*(30+h)).Format(time.DateOnly)
		wantLoc := "A"
		if i >= 4*23 {
			wantLoc = "B"
		}
		if r[0] != ref || h != i/23%4 || r[2] != target || r[3] != wantLoc || r[4] != "quantile" || r[5] != strconv.FormatFloat(forecast.Quantiles[i%23], 'f', -1, 64) {
			t.Fatalf("row %d: %v", i+1, r)
		}
		v, err := strconv.ParseFloat(r[6], 64)
		if err != nil || v < 0 || (i%23 > 0 && v < prev) {
			t.Fatalf("row %d: value %q after %v", i+1, r[6], prev)
		}
		prev = v
	}
	// Another method, and a location too short for it is left out, saying so.
	short := filepath.Join(t.TempDir(), "short.csv")
	os.WriteFile(short, []byte("date,location,value,variance\n2024-01-06,X,5,1\n2024-01-13,X,6,1\n2024-01-20,X,4,1\n2024-01-27,X,7,1\n"), 0o600)
	out, stderr, err := runForecast(t, "forecast", "--series", short, "--method", "baseline")
	if err != nil || strings.Count(out, "\n") != 1+4*23 {
		t.Errorf("baseline on 4 weeks: %v, %d lines", err, strings.Count(out, "\n"))
	}
	out, stderr, err = runForecast(t, "forecast", "--series", short)
	if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, "location X left out") || !strings.Contains(stderr, "12 weeks") {
		t.Errorf("ensemble on 4 weeks: %v, output %q, stderr %q", err, out, stderr)
	}
}

func TestForecastCSVErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"bad value", "date,location,value,variance\n2024-01-06,US,12,4\n2024-01-13,US,twelve,4\n", `bad.csv:3: column "value": "twelve" is not a finite number`},
		{"bad date", "date,location,value,variance\n2024-01-06,US,12,4\n06/01/2024,US,1,4\n", `bad.csv:3: column "date"`},
		{"negative variance", "date,location,value,variance\n2024-01-06,US,12,-4\n", `bad.csv:2: column "variance"`},
		{"gap", "date,location,value,variance\n2024-01-06,US,12,4\n2024-01-20,US,1,4\n", `bad.csv:3: column "date": location US has week 2024-01-20 after 2024-01-06`},
		{"no header", "2024-01-06,US,12,4\n", `bad.csv:1: no column "date"`},
	} {
		p := filepath.Join(dir, "bad.csv")
		os.WriteFile(p, []byte(tc.in), 0o600)
		_, _, err := runForecast(t, "forecast", "--series", p)
		if !errors.Is(err, forecast.ErrCSV) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	for _, args := range [][]string{
		{"forecast"},
		{"forecast", "--series", "x.csv", "--method", "arima"},
		{"forecast", "--series", writeSeriesCSV(t, 20), "--truth", "t.csv"},
		{"forecast", "--series", writeSeriesCSV(t, 20), "--evaluate", "--season", "2024-26"},
		{"forecast", "--series", writeSeriesCSV(t, 20), "--evaluate", "--season", "2024-25", "--from", "2024-10-01"},
		{"forecast", "--series", writeSeriesCSV(t, 20), "--evaluate", "--format", "xml"},
	} {
		var ue *usageError
		if _, _, err := runForecast(t, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	// A standing series needs a coordinator (test/e2e's TestSeriesEndToEnd
	// forecasts one); without one, the error says how to name it.
	t.Setenv("FEDSTAT_COORDINATOR", "")
	t.Setenv("FEDSTAT_HTTP", "")
	t.Setenv("FEDSTAT_TOKEN", "")
	var ue *usageError
	if _, _, err := runForecast(t, "forecast", "flu-weekly"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--coordinator") {
		t.Errorf("forecast SERIES without a coordinator: %v, want a usage error saying how to reach one", err)
	}
	if _, _, err := runForecast(t, "forecast", "flu-weekly", "--series", "x.csv"); !errors.As(err, &ue) {
		t.Errorf("forecast SERIES --series FILE: %v, want a usage error", err)
	}
}

func TestForecastEvaluate(t *testing.T) {
	path := writeSeriesCSV(t, 60)
	// Scored against a truth file that has A only, and one week of it NA.
	var b strings.Builder
	b.WriteString("date,location,location_name,value\n")
	for i := range 60 {
		v := strconv.FormatFloat(math.Round(200*(1.5+math.Sin(float64(i)/5)))+3, 'f', -1, 64)
		if i == 50 {
			v = "NA"
		}
		fmt.Fprintf(&b, "%s,A,Alpha,%s\n", forecastDay0.AddDate(0, 0, 7*i).Format(time.DateOnly), v)
	}
	truth := filepath.Join(t.TempDir(), "truth.csv")
	os.WriteFile(truth, []byte(b.String()), 0o600)
	from, to := forecastDay0.AddDate(0, 0, 7*40).Format(time.DateOnly), forecastDay0.AddDate(0, 0, 7*55).Format(time.DateOnly)

	out, _, err := runForecast(t, "forecast", "--series", path, "--evaluate", "--from", from, "--to", to, "--format", "csv", "--total", "none")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "scope,location,n,wis,cov50,cov95,baseline_wis,baseline_cov50,baseline_cov95,rel_wis" {
		t.Errorf("header %s", got)
	}
	// Reference dates weeks 40..55 (16 origins), targets up to week 58:
	// 64 targets per location; no total, so one pooled row.
	if len(rows) != 4 || rows[1][1] != "A" || rows[2][1] != "B" || rows[3][0] != "all" ||
		rows[1][2] != "64" || rows[2][2] != "64" || rows[3][2] != "128" {
		t.Errorf("rows %v", rows)
	}
	// With B as the total of the others, the pooled rows are A alone and all.
	out, _, err = runForecast(t, "forecast", "--series", path, "--evaluate", "--from", from, "--to", to, "--format", "csv", "--total", "B")
	if err != nil {
		t.Fatal(err)
	}
	if rows, _ = csv.NewReader(strings.NewReader(out)).ReadAll(); len(rows) != 5 || rows[3][0] != "others" || rows[3][1] != "all but B (1)" || rows[3][3] != rows[1][3] {
		t.Errorf("rows %v", rows)
	}

	out, _, err = runForecast(t, "forecast", "--series", path, "--evaluate", "--from", from, "--to", to, "--truth", truth, "--format", "json", "--method", "ar")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Method string
		Truth  string
		From   string
		Rows   []struct {
			Scope, Location string
			N               int
			Method          struct{ WIS, Coverage50, Coverage95 float64 }
			Baseline        struct{ WIS float64 }
			Relative        *float64 `json:"relative_wis"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// B has no truth: left out. A loses the 4 targets of week 50.
	if rep.Method != "ar" || rep.Truth != "file" || rep.From != from || len(rep.Rows) != 1 || rep.Rows[0].Location != "A" || rep.Rows[0].N != 64-4 {
		t.Fatalf("report %+v", rep)
	}
	r := rep.Rows[0]
	if r.Relative == nil || math.Abs(*r.Relative-r.Method.WIS/r.Baseline.WIS) > 1e-3*(*r.Relative) {
		t.Errorf("relative WIS %v, method %v, baseline %v", r.Relative, r.Method.WIS, r.Baseline.WIS)
	}

	out, stderr, err := runForecast(t, "forecast", "--series", path, "--evaluate", "--season", "2023-24", "--truth", truth)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "reference dates 2023-10-01 to 2024-05-31") || !strings.Contains(out, "scored against the truth") || !strings.Contains(stderr, "location B not scored") {
		t.Errorf("text report:\n%s\nstderr: %s", out, stderr)
	}
}

// TestForecastRelease: the simulated release is reproducible from its seed,
// the total is the sum of the locations, every release carries the
// variance the plan gives (52 nodes, threshold 3, ε = 1 as in
// examples/reference/flusight.sh), and the noise has that variance.
func TestForecastRelease(t *testing.T) {
	var locs []string
	for i := range 52 {
		locs = append(locs, fmt.Sprintf("%02d", i+1))
	}
	truth := forecast.Truth{}
	const weeks = 40
	for _, l := range locs {
		truth[l] = map[time.Time]float64{}
		for i := range weeks {
			if l == "07" && i == 3 {
				continue // NA: no records
			}
			truth[l][forecastDay0.AddDate(0, 0, 7*i)] = float64(100 + i)
		}
	}
	spec := releaseSpec{Epsilon: 1, Delta: coordinator.DefaultDelta, Threshold: 3, Seed: 7, Total: "US"}
	a, err := releaseSeries(truth, append(locs, "US"), spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := releaseSeries(truth, append(locs, "US"), spec)
	spec.Seed = 8
	c, _ := releaseSeries(truth, append(locs, "US"), spec)
	if len(a) != 53 || a[52].Location != "US" || len(a[0].Points) != weeks {
		t.Fatalf("%d series, last %s, %d weeks", len(a), a[len(a)-1].Location, len(a[0].Points))
	}
	same, differ := true, false
	var sumSq float64
	n := 0
	for i := range a {
		for w := range a[i].Points {
			same = same && a[i].Points[w] == b[i].Points[w]
			differ = differ || a[i].Points[w] != c[i].Points[w]
		}
	}
	if !same || !differ {
		t.Errorf("the same seed gives the same release: %v; another seed another: %v", same, differ)
	}
	// ε = 1, δ = 1e-6: ρ = (√(ln 1e6 + 1) − √(ln 1e6))², σ = 1/√(2ρ) ≈ 5.35
	// for the release; 50 honest nodes of σ/√50 each on a grid of 1/8,
	// 52 partials summed and rounded to an integer: v = 52(σ²/50 + 1/768)
	// + 1/12 ≈ 29.9.
	rho := math.Pow(math.Sqrt(math.Log(1e6)+1)-math.Sqrt(math.Log(1e6)), 2)
	sigma2 := 1 / (2 * rho)
	want := 52*(sigma2/50+1.0/(12*64)) + 1.0/12
	for w := range weeks {
		var total, totalVar float64
		for i, s := range a[:52] {
			p := s.Points[w]
			if math.Abs(p.Variance-want) > 1e-6*want {
				t.Fatalf("%s week %d: variance %v, want %v", s.Location, w, p.Variance, want)
			}
			if p.Value != math.Round(p.Value) {
				t.Fatalf("%s week %d: %v is not a count", s.Location, w, p.Value)
			}
			exact := truth[locs[i]][p.Date] // 0 for the NA week
			sumSq += (p.Value - exact) * (p.Value - exact)
			n++
			total += p.Value
			totalVar += p.Variance
		}
		if us := a[52].Points[w]; us.Value != total || math.Abs(us.Variance-totalVar) > 1e-9 {
			t.Fatalf("US week %d: %v (variance %v), want the sum %v (%v)", w, us.Value, us.Variance, total, totalVar)
		}
	}
	// 2,080 noise draws: the sample variance is within 4 standard errors
	// (√(2/n)·v ≈ 3.1% of v) of v.
	if got := sumSq / float64(n); math.Abs(got-want) > 4*math.Sqrt(2/float64(n))*want {
		t.Errorf("noise variance %.2f over %d releases, want %.2f", got, n, want)
	}
	if v := a[6].Points[3].Value; math.Abs(v) > 6*math.Sqrt(want) {
		t.Errorf("the NA week of location 07 released %v, want 0 plus noise", v)
	}
}

// TestForecastFluSightNational is the evaluation for the national
// series: FluSight's weekly admissions released at ε = 1 per week (seed 1),
// the ensemble scored against the published counts over the 2023-24 and
// 2024-25 seasons beside the baseline; the target is a relative WIS of at
// most 0.85 (docs/statistics.md, "Forecasts", has the whole table).
func TestForecastFluSightNational(t *testing.T) {
	path := testkit.SharedData(t, "flusight/target-hospital-admissions.csv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	locs, truth, err := readTruthOrdered(f, path)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	released, err := releaseSeries(truth, locs, releaseSpec{Epsilon: 1, Delta: coordinator.DefaultDelta, Threshold: 3, Seed: 1, Total: "US"})
	if err != nil {
		t.Fatal(err)
	}
	us := released[len(released)-1]
	if us.Location != "US" {
		t.Fatalf("last series %s, want US", us.Location)
	}
	for _, season := range []int{2023, 2024} {
		ev, err := forecast.Evaluate(us.Points, forecast.EvalOptions{
			From:  time.Date(season, time.October, 1, 0, 0, 0, 0, time.UTC),
			To:    time.Date(season+1, time.May, 31, 0, 0, 0, 0, time.UTC),
			Truth: func(w time.Time) (float64, bool) { return truth.Lookup("US", w) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d-%02d US: %d forecasts, relative WIS %.3f (WIS %.0f, baseline %.0f), coverage 50%% %.2f 95%% %.2f",
			season, (season+1)%100, ev.Summary.N, ev.RelativeWIS, ev.Summary.MeanWIS, ev.BaselineSummary.MeanWIS, ev.Summary.Coverage50, ev.Summary.Coverage95)
		if ev.Origins < 30 || ev.RelativeWIS > 0.85 {
			t.Errorf("%d-%02d: %d origins, relative WIS %.3f: want about 35 and at most 0.85", season, (season+1)%100, ev.Origins, ev.RelativeWIS)
		}
	}
}
