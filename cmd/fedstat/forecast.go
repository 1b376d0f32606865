package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/shareddata"
	"github.com/fedstat/fedstat/queries/forecast"
)

const forecastLong = `forecast gives quantile forecasts of a released weekly series, 1 to 4 weeks after its
last week, in the FluSight format, and scores them. It is post-processing of released
values: it reads no records and spends no privacy budget.

Input: a standing series of the network by name (fedstat forecast NAME: its released
weekly values with their noise variances, from the coordinator; fedstat series --help),
or (--series FILE.csv) a header, then one row per week and location:
  date       the week (YYYY-MM-DD; FluSight: the Saturday ending the week);
             a location's weeks are 7 days apart, none missing
  location   the series' name (FluSight: "US" or a state's FIPS code)
  value      the released value (DP noise included; may be negative)
  variance   the exact variance of that release's noise (0 for exact values)
Other columns are ignored. An error names the file, the line and the column.

Output (FluSight format, to standard output), 23 rows per location and horizon:
  reference_date    the week after the location's last week: the week the
                    forecast is made in
  horizon           0..3: the target is horizon+1 weeks after the last week
  target_end_date   reference_date + 7*horizon days
  location          as in the input
  output_type       quantile
  output_type_id    the quantile level: 0.01, 0.025, 0.05, 0.1, 0.15, ..., 0.9,
                    0.95, 0.975, 0.99
  value             the quantile of the target week's true value (what its
                    release will estimate); non-negative, non-decreasing

Methods (--method):
  ensemble   the default: the level-by-level average of two fits of ar, the
             second with an extra reporting error of estimated variance
  baseline   FluSight's baseline: flat at the last value, spread from the past
             week-to-week changes, symmetrised; needs 3 weeks
  ar         an autoregression of order 2 on the log scale whose fit and
             intervals include the known noise variance of every release;
             needs 12 weeks
  seasonal   the change over the same weeks of earlier years; needs 55 weeks of
             history (a year and 3 weeks)

--evaluate scores instead of forecasting: every week of a location whose reference
date is within --from/--to (or --season) is an origin; the forecast from it sees
only the weeks up to it and is scored against the value of each target week in
--truth (default: the series itself, its releases: each forecast is then widened by
its target release's known noise variance). The FluSight baseline is scored on the same
targets. Columns of the report:
  n          forecasts scored (origins x horizons with a truth)
  wis        mean weighted interval score (FluSight's; lower is better; in the
             units of the series)
  cov50      fraction of targets inside the central 50% interval (ideal 0.50)
  cov95      fraction inside the central 95% interval (ideal 0.95)
  rel_wis    wis of the method / wis of the baseline (below 1: better than it)
After the locations come two pooled rows: every location but --total (FluSight:
the states; their mean WIS and its ratio), and every location.

A location whose history is too short for the method is left out, with a note on
standard error. "fedstat forecast SERIES" (a standing series of a running
coordinator) is not in this build: give the released series as a CSV.

See docs/statistics.md ("Forecasts") for the methods, how intervals account for
the DP noise, and the FluSight evaluation.`

const forecastExample = `  # forecast every label of a standing weekly series, and score its past weeks
  fedstat forecast flu-weekly
  fedstat forecast flu-weekly --evaluate

  # forecast every location of a released series
  fedstat forecast --series released.csv > forecasts.csv

  # simulate fedstat's weekly release at epsilon 1 of FluSight's admissions, then
  # score the 2024-25 season against the published counts
  fedstat forecast release --truth target-hospital-admissions.csv --epsilon 1 --seed 1 > released.csv
  fedstat forecast --series released.csv --evaluate --season 2024-25 --truth target-hospital-admissions.csv`

func forecastCommand() *cobra.Command {
	var o forecastOptions
	var cf clientFlags
	var seriesPath, truthPath, method, season, from, to string
	c := &cobra.Command{
		Use:     "forecast (NAME | --series FILE.csv) [--evaluate] [flags]",
		Short:   "Quantile forecasts (FluSight format) of a released weekly series, and their scores",
		Long:    forecastLong,
		Example: forecastExample,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (seriesPath != "") {
				return &usageError{"forecast: name a standing series (fedstat forecast NAME) or give a released series as --series FILE.csv (see fedstat forecast --help)"}
			}
			o.method = forecast.Method(method)
			if !slices.Contains(forecast.Methods, o.method) {
				return &usageError{fmt.Sprintf("forecast: --method %q: want one of %s", method, joinMethods())}
			}
			var series []forecast.Series
			var err error
			if len(args) == 1 {
				series, err = standingSeries(cmd, &cf, args[0])
			} else {
				series, err = readSeriesFile(seriesPath)
			}
			if err != nil {
				return err
			}
			if !o.evaluate {
				for _, name := range []string{"truth", "from", "to", "season", "format", "total"} {
					if cmd.Flags().Changed(name) {
						return &usageError{fmt.Sprintf("forecast: --%s is for --evaluate", name)}
					}
				}
				return writeForecasts(cmd.OutOrStdout(), cmd.ErrOrStderr(), series, o.method)
			}
			if err := o.window(season, from, to); err != nil {
				return err
			}
			switch o.format {
			case "text", "json", "csv":
			default:
				return &usageError{fmt.Sprintf("forecast: --format %q: want text, json or csv", o.format)}
			}
			if truthPath != "" {
				f, err := os.Open(truthPath)
				if err != nil {
					return err
				}
				o.truth, err = forecast.ReadTruth(f, truthPath)
				f.Close()
				if err != nil {
					return err
				}
			}
			rep, err := evaluateSeries(series, o, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return rep.write(cmd.OutOrStdout(), o.format)
		},
	}
	f := c.Flags()
	f.StringVar(&seriesPath, "series", "", "released series: CSV with columns date,location,value,variance (required)")
	f.StringVar(&method, "method", string(forecast.Ensemble), "forecasting method: "+joinMethods())
	f.BoolVar(&o.evaluate, "evaluate", false, "score rolling-origin forecasts beside the FluSight baseline instead of forecasting")
	f.StringVar(&truthPath, "truth", "", "with --evaluate: observed values to score against, CSV with columns date,location,value (NA: none) (default: the series)")
	f.StringVar(&season, "season", "", "with --evaluate: reference dates from October 1 to May 31 of a season YYYY-YY (2024-25)")
	f.StringVar(&from, "from", "", "with --evaluate: first reference date (YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "with --evaluate: last reference date (YYYY-MM-DD)")
	f.StringVar(&o.format, "format", "text", "with --evaluate: text, json or csv")
	f.StringVar(&o.total, "total", "US", "with --evaluate: the location that is the total of the others (left out of the pooled row of the others)")
	c.AddCommand(forecastReleaseCommand())
	cf.add(c)
	return c
}

// standingSeries fetches a weekly standing series from the coordinator as
// forecast history: each label's released period estimates, dated by the
// period's last day, with their noise variances.
func standingSeries(cmd *cobra.Command, cf *clientFlags, name string) ([]forecast.Series, error) {
	cl, err := cf.connect()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	s, err := cl.Series(cmd.Context(), name)
	if err != nil {
		return nil, err
	}
	if every := s.GetSpec().GetEvery(); every != "week" {
		return nil, fmt.Errorf("forecast %s: the series is released every %s; forecasts are for weekly series", name, every)
	}
	out := make([]forecast.Series, len(s.GetLabels()))
	for li, label := range s.GetLabels() {
		pts, err := coordinator.SeriesPoints(s.GetPeriods(), li)
		if err != nil {
			return nil, fmt.Errorf("forecast %s: %v", name, err)
		}
		out[li] = forecast.Series{Location: label, Points: pts}
	}
	if len(s.GetPeriods()) == 0 {
		return nil, fmt.Errorf("forecast %s: no period released yet", name)
	}
	return out, nil
}

func joinMethods() string {
	names := make([]string, len(forecast.Methods))
	for i, m := range forecast.Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

func readSeriesFile(path string) ([]forecast.Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return forecast.ReadSeries(f, path)
}

// forecastSeries forecasts one location's released series at the FluSight
// horizons 0..3. A standing series of the coordinator is forecast the same
// way.
func forecastSeries(points []forecast.Point, method forecast.Method) ([]forecast.QuantileForecast, error) {
	return forecast.Forecast(points, forecast.Horizons, method)
}

// writeForecasts writes the forecasts of every series as FluSight CSV. A
// location whose history is too short for the method is left out, with a
// note on stderr.
func writeForecasts(w, stderr io.Writer, series []forecast.Series, method forecast.Method) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(forecast.FluSightColumns); err != nil {
		return err
	}
	for _, s := range series {
		fc, err := forecastSeries(s.Points, method)
		if errors.Is(err, forecast.ErrHistory) {
			fmt.Fprintf(stderr, "fedstat: forecast: location %s left out: %v\n", s.Location, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("forecast: location %s: %w", s.Location, err)
		}
		if err := forecast.WriteFluSight(cw, s.Location, fc); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// forecastOptions are the options of --evaluate.
type forecastOptions struct {
	evaluate bool
	method   forecast.Method
	from, to time.Time
	truth    forecast.Truth // nil: the series itself
	format   string
	total    string
}

// window sets from and to from --season or --from/--to.
func (o *forecastOptions) window(season, from, to string) error {
	if season != "" {
		if from != "" || to != "" {
			return &usageError{"forecast: give --season or --from/--to, not both"}
		}
		var y1, y2 int
		if _, err := fmt.Sscanf(season, "%4d-%2d", &y1, &y2); err != nil || (y1+1)%100 != y2 || len(season) != 7 {
			return &usageError{fmt.Sprintf("forecast: --season %q: want YYYY-YY, two consecutive years (2024-25)", season)}
		}
		o.from = time.Date(y1, time.October, 1, 0, 0, 0, 0, time.UTC)
		o.to = time.Date(y1+1, time.May, 31, 0, 0, 0, 0, time.UTC)
		return nil
	}
	for _, d := range []struct {
		flag, s string
		t       *time.Time
	}{{"from", from, &o.from}, {"to", to, &o.to}} {
		if d.s == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.s)
		if err != nil {
			return &usageError{fmt.Sprintf("forecast: --%s %q: want a date YYYY-MM-DD", d.flag, d.s)}
		}
		*d.t = t
	}
	if !o.from.IsZero() && !o.to.IsZero() && o.to.Before(o.from) {
		return &usageError{"forecast: --to is before --from"}
	}
	return nil
}

// scoreRow is one row of an evaluation report.
type scoreRow struct {
	Scope    string           `json:"scope"` // "location", "others" or "all"
	Location string           `json:"location"`
	N        int              `json:"n"`
	Method   forecast.Summary `json:"-"`
	Baseline forecast.Summary `json:"-"`
	Relative float64          `json:"-"`
}

// report is the result of --evaluate.
type report struct {
	Method   forecast.Method
	From, To time.Time
	// AgainstSeries: scored against the released values (no --truth).
	AgainstSeries bool
	Rows          []scoreRow
}

// evaluateSeries scores every location (skipping, with a note on stderr,
// those with no scorable origin), the locations in parallel, and adds the
// pooled rows.
func evaluateSeries(series []forecast.Series, o forecastOptions, stderr io.Writer) (*report, error) {
	evs := make([]*forecast.Evaluation, len(series))
	errs := make([]error, len(series))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(series)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				opt := forecast.EvalOptions{Method: o.method, From: o.from, To: o.to}
				if o.truth != nil {
					loc := series[i].Location
					opt.Truth = func(week time.Time) (float64, bool) { return o.truth.Lookup(loc, week) }
				}
				evs[i], errs[i] = forecast.Evaluate(series[i].Points, opt)
			}
		}()
	}
	for i := range series {
		next <- i
	}
	close(next)
	wg.Wait()

	rep := &report{Method: o.method, From: o.from, To: o.to, AgainstSeries: o.truth == nil}
	var others, all []forecast.Score
	nOthers, nAll := 0, 0
	for i, s := range series {
		ev, err := evs[i], errs[i]
		if errors.Is(err, forecast.ErrHistory) {
			fmt.Fprintf(stderr, "fedstat: forecast: location %s not scored: %v\n", s.Location, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("forecast: location %s: %w", s.Location, err)
		}
		rep.Rows = append(rep.Rows, scoreRow{Scope: "location", Location: s.Location, N: len(ev.Scores),
			Method: ev.Summary, Baseline: ev.BaselineSummary, Relative: ev.RelativeWIS})
		all = append(all, ev.Scores...)
		nAll++
		if s.Location != o.total {
			others = append(others, ev.Scores...)
			nOthers++
		}
	}
	if nAll == 0 {
		return nil, fmt.Errorf("forecast: %w: no location could be scored (see above)", forecast.ErrHistory)
	}
	pooled := func(scope, label string, scores []forecast.Score) {
		m, b, rel := forecast.Summarise(scores)
		rep.Rows = append(rep.Rows, scoreRow{Scope: scope, Location: label, N: len(scores), Method: m, Baseline: b, Relative: rel})
	}
	if nOthers > 0 && nOthers < nAll {
		pooled("others", fmt.Sprintf("all but %s (%d)", o.total, nOthers), others)
	}
	if nAll > 1 {
		pooled("all", fmt.Sprintf("all (%d)", nAll), all)
	}
	return rep, nil
}

var reportColumns = []string{"location", "n", "wis", "cov50", "cov95", "baseline_wis", "baseline_cov50", "baseline_cov95", "rel_wis"}

func (r scoreRow) cells() []string {
	f := func(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	return []string{r.Location, strconv.Itoa(r.N), f(r.Method.MeanWIS, 2), f(r.Method.Coverage50, 3), f(r.Method.Coverage95, 3),
		f(r.Baseline.MeanWIS, 2), f(r.Baseline.Coverage50, 3), f(r.Baseline.Coverage95, 3), f(r.Relative, 3)}
}

func (rep *report) write(w io.Writer, format string) error {
	switch format {
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write(append([]string{"scope"}, reportColumns...))
		for _, r := range rep.Rows {
			cw.Write(append([]string{r.Scope}, r.cells()...))
		}
		cw.Flush()
		return cw.Error()
	case "json":
		type summary struct {
			WIS        float64 `json:"wis"`
			Coverage50 float64 `json:"coverage50"`
			Coverage95 float64 `json:"coverage95"`
		}
		type row struct {
			scoreRow
			Method   summary  `json:"method"`
			Baseline summary  `json:"baseline"`
			Relative *float64 `json:"relative_wis"` // null when undefined
		}
		out := struct {
			Method   forecast.Method `json:"method"`
			Truth    string          `json:"truth"` // "series" or "file"
			From     string          `json:"from,omitempty"`
			To       string          `json:"to,omitempty"`
			Horizons []int           `json:"horizons"`
			Rows     []row           `json:"rows"`
		}{Method: rep.Method, Truth: "file", Horizons: forecast.Horizons}
		if rep.AgainstSeries {
			out.Truth = "series"
		}
		if !rep.From.IsZero() {
			out.From = rep.From.Format(time.DateOnly)
		}
		if !rep.To.IsZero() {
			out.To = rep.To.Format(time.DateOnly)
		}
		for _, r := range rep.Rows {
			jr := row{scoreRow: r,
				Method:   summary{r.Method.MeanWIS, r.Method.Coverage50, r.Method.Coverage95},
				Baseline: summary{r.Baseline.MeanWIS, r.Baseline.Coverage50, r.Baseline.Coverage95}}
			if !math.IsNaN(r.Relative) {
				jr.Relative = &r.Relative
			}
			out.Rows = append(out.Rows, jr)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	window := "every week"
	switch {
	case !rep.From.IsZero() && !rep.To.IsZero():
		window = rep.From.Format(time.DateOnly) + " to " + rep.To.Format(time.DateOnly)
	case !rep.From.IsZero():
		window = "from " + rep.From.Format(time.DateOnly)
	case !rep.To.IsZero():
		window = "to " + rep.To.Format(time.DateOnly)
	}
	against := "the truth"
	if rep.AgainstSeries {
		against = "the released values (give --truth to score against true values)"
	}
	fmt.Fprintf(w, "%s beside the FluSight baseline; reference dates %s; horizons 0-3 (1-4 weeks ahead); scored against %s\n", rep.Method, window, against)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(reportColumns, "\t")+"\t")
	for _, r := range rep.Rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t")+"\t")
	}
	return tw.Flush()
}

func forecastReleaseCommand() *cobra.Command {
	var spec releaseSpec
	var truthPath string
	c := &cobra.Command{
		Use:   "release [--truth FILE.csv] [--epsilon E] [--seed N]",
		Short: "Simulate fedstat's weekly release of a series of counts (one node per location)",
		Long: `release writes the series fedstat would release, week by week, from exact weekly counts:
every location but --total is a node holding that location's patients, and each week
is one query SELECT region, COUNT(DISTINCT patient_id) ... GROUP BY region at --epsilon
and --delta (Gaussian mechanism, sensitivity 1 per cell), planned and decoded by the
same code as a real network's (queries/plan, queries/dp), with min_nodes the number of
locations and decryption threshold --threshold. The noise comes from a generator seeded
by --seed instead of the DP library's crypto/rand, so the release can be reproduced.
A week without a count (NA) is a node holding no records for it (count 0).

Output: CSV with columns date,location,value,variance (the exact noise variance of
each release), every location's weeks in date order, and --total as the sum of the
other locations' releases (its variance the sum of theirs). It is the input of
fedstat forecast --series.

--truth defaults to FluSight's target-hospital-admissions.csv in ../shared/data/flusight.`,
		Example: `  fedstat forecast release --epsilon 1 --seed 1 > released.csv`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if truthPath == "" {
				p, ok := shareddata.Path("flusight/target-hospital-admissions.csv")
				if !ok {
					return &usageError{"forecast release: FluSight data not found in ../shared/data/flusight; give --truth FILE.csv"}
				}
				truthPath = p
			}
			if !(spec.Epsilon > 0) || math.IsInf(spec.Epsilon, 0) {
				return &usageError{fmt.Sprintf("forecast release: --epsilon %v: want a positive number", spec.Epsilon)}
			}
			f, err := os.Open(truthPath)
			if err != nil {
				return err
			}
			locations, truth, err := readTruthOrdered(f, truthPath)
			f.Close()
			if err != nil {
				return err
			}
			series, err := releaseSeries(truth, locations, spec)
			if err != nil {
				return err
			}
			cw := csv.NewWriter(cmd.OutOrStdout())
			cw.Write(forecast.SeriesColumns)
			for _, s := range series {
				if err := forecast.WriteSeries(cw, s); err != nil {
					return err
				}
			}
			cw.Flush()
			return cw.Error()
		},
	}
	f := c.Flags()
	f.StringVar(&truthPath, "truth", "", "exact weekly counts: CSV with columns date,location,value (NA: no records) (default: FluSight's)")
	f.Float64Var(&spec.Epsilon, "epsilon", 1, "privacy loss epsilon of each week's query")
	f.Float64Var(&spec.Delta, "delta", coordinator.DefaultDelta, "privacy loss delta of each week's query")
	f.IntVar(&spec.Threshold, "threshold", 3, "decryption threshold: up to threshold-1 colluding nodes, whose noise does not count")
	f.Uint64Var(&spec.Seed, "seed", 1, "seed of the noise; the same seed gives the same release")
	f.StringVar(&spec.Total, "total", "US", "the location that is the total of the others: written as the sum of their releases")
	return c
}

// readTruthOrdered reads a truth file and the order of its locations: FIPS
// codes sorted, as FluSight lists them, with the total wherever it sorts.
func readTruthOrdered(r io.Reader, name string) ([]string, forecast.Truth, error) {
	truth, err := forecast.ReadTruth(r, name)
	if err != nil {
		return nil, nil, err
	}
	locs := make([]string, 0, len(truth))
	for l := range truth {
		locs = append(locs, l)
	}
	slices.Sort(locs)
	return locs, truth, nil
}
