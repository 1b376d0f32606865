package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

// statsFlags are the flags every stats command shares.
type statsFlags struct {
	cf       clientFlags
	epsilon  float64
	delta    float64
	format   string
	dataset  string
	schemas  []string
	regions  []string
	refDate  string
	deadline time.Duration
	quiet    bool
	table    string
	where    string
}

func (s *statsFlags) add(c *cobra.Command, epsilon float64) {
	s.cf.add(c)
	f := c.Flags()
	f.Float64Var(&s.epsilon, "epsilon", epsilon, "privacy loss epsilon of the whole analysis (all its queries)")
	f.Float64Var(&s.delta, "delta", coordinator.DefaultDelta, "privacy loss delta")
	f.StringVar(&s.format, "format", "table", "table, or json: one {\"dataset\",\"statistic\",\"value\",\"ci_low\",\"ci_high\"} per line")
	f.StringVar(&s.dataset, "dataset", "", "dataset name in the output (default: the table)")
	f.StringArrayVar(&s.schemas, "schema", nil, "study schema file (the network catalogue's; gives column ranges and factor levels); repeatable")
	f.StringSliceVar(&s.regions, "regions", nil, "the catalogue's region list (no longer needed: every release carries its exact noise variances)")
	f.StringVar(&s.refDate, "reference-date", "", "YYYY-MM-DD at which age is computed (default today)")
	f.DurationVar(&s.deadline, "deadline", 0, "how long the coordinator waits for nodes (default: the network's)")
	f.BoolVar(&s.quiet, "quiet", false, "do not show the queries on stderr")
	f.StringVar(&s.table, "table", "", "the table (a study name or a CDM table) (required)")
	f.StringVar(&s.where, "where", "", "SQL condition selecting the rows")
}

// catalogue returns the local copy of the public catalogue: the schemas
// and regions given.
func (s *statsFlags) catalogue() (*plan.Catalogue, error) {
	cat := plan.DefaultCatalogue()
	cat.Regions = s.regions
	for _, p := range s.schemas {
		sc, err := cdm.ReadStudySchema(p, "")
		if err != nil {
			return nil, err
		}
		cat.Studies = append(cat.Studies, *sc)
	}
	return cat, nil
}

// study returns the schema of the table, if given.
func (s *statsFlags) study(cat *plan.Catalogue) *cdm.StudySchema {
	sc, _ := cat.Study(s.table)
	return sc
}

func (s *statsFlags) budget() stats.Budget { return stats.Budget{Epsilon: s.epsilon, Delta: s.delta} }

// cliQuerier runs stats queries through the coordinator, as the caller.
type cliQuerier struct {
	*client.Querier
	c *client.Client
	n int
}

func abbreviate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// statLine is one output line.
type statLine struct {
	Dataset   string   `json:"dataset"`
	Statistic string   `json:"statistic"`
	Value     *float64 `json:"value"`
	CILow     *float64 `json:"ci_low"`
	CIHigh    *float64 `json:"ci_high"`
}

func fp(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// run connects, runs fn with a querier and prints its estimates.
func (s *statsFlags) run(cmd *cobra.Command, fn func(ctx context.Context, q stats.Querier, cat *plan.Catalogue) ([]stats.Estimate, error)) error {
	if s.table == "" {
		return &usageError{"--table is required"}
	}
	if s.format != "table" && s.format != "json" {
		return &usageError{fmt.Sprintf("--format %q: want table or json", s.format)}
	}
	cat, err := s.catalogue()
	if err != nil {
		return err
	}
	c, err := s.cf.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	q := &cliQuerier{c: c}
	q.Querier = c.Querier(client.QuerierOptions{ReferenceDate: s.refDate, Deadline: s.deadline, OnQuery: func(n int, r stats.Request) {
		q.n = n
		if !s.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "query %d (epsilon %.4g): %s\n", n, r.Epsilon, abbreviate(r.SQL, 160))
		}
	}})
	est, err := fn(cmd.Context(), q, cat)
	if err != nil {
		return err
	}
	ds := s.dataset
	if ds == "" {
		ds = s.table
	}
	out := cmd.OutOrStdout()
	if s.format == "json" {
		enc := json.NewEncoder(out)
		for _, e := range est {
			if err := enc.Encode(statLine{Dataset: ds, Statistic: e.Name, Value: fp(e.Value), CILow: fp(e.CILow), CIHigh: fp(e.CIHigh)}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATISTIC\tVALUE\tSE\t95% INTERVAL")
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 5, 64) }
	for _, e := range est {
		se, ci := "-", "-"
		if !math.IsNaN(e.SE) {
			se = g(e.SE)
		}
		if !math.IsNaN(e.CILow) && !math.IsNaN(e.CIHigh) {
			ci = "[" + g(e.CILow) + ", " + g(e.CIHigh) + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, g(e.Value), se, ci)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%d queries; total cost epsilon %g, delta %g; intervals include the DP noise\n", q.n, s.epsilon, s.delta)
	return nil
}

// model reads --outcome (linreg's, else ""), --x and --factor into a
// model: --x NAME uses the study column NAME and its range; --x
// NAME=EXPR a SQL expression, with @LO,HI its range (default [0, 1]: a
// condition such as race = 2); --factor COL adds one indicator per level of
// COL but the first (stats.ParseTerm, stats.Model).
func model(outcome string, xs, factors []string) (stats.Model, error) {
	m := stats.Model{Factors: factors}
	if outcome != "" {
		t, err := stats.ParseTerm(outcome)
		if err != nil {
			return m, err
		}
		m.Outcome = t
	}
	for _, x := range xs {
		t, err := stats.ParseTerm(x)
		if err != nil {
			return m, err
		}
		m.Covariates = append(m.Covariates, t)
	}
	return m, nil
}

// analyse prepares a (the same rules and limits as the coordinator's
// POST /v1/stats/{method}: stats.Analysis) and runs it. A request it refuses
// is a usage error: no query ran.
func (s *statsFlags) analyse(ctx context.Context, q stats.Querier, cat *plan.Catalogue, a stats.Analysis) (*stats.Report, error) {
	a.Table, a.Where, a.Budget = s.table, s.where, s.budget()
	p, err := a.Prepare(s.study(cat))
	if err != nil {
		var re *stats.RequestError
		if errors.As(err, &re) {
			return nil, &usageError{re.Error()}
		}
		return nil, err
	}
	return p.Run(ctx, q)
}

const statsLong = `Research statistics through the same encrypted, differentially private path as
` + "`fedstat query`" + `: each method sends one or more aggregate queries (sums of sufficient
statistics) to the coordinator, the nodes answer with noisy encrypted partials, and the
method solves on the released totals. --epsilon and --delta are the budget of the whole
analysis: methods with several rounds split it (see docs/statistics.md), and every
estimate's interval includes the DP noise. A method refuses when the budget cannot buy
a useful answer.

Give the study's schema file (--schema, the network catalogue's) so that covariates get
their public ranges and the noise variances are exact. Output: a table, or with
--format json one {"dataset","statistic","value","ci_low","ci_high"} per line.`

func statsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "stats",
		Short: "Regression, survival, contingency tables, quantiles and rates on the network",
		Long:  statsLong,
	}
	c.AddCommand(statsLogitCommand(), statsLinregCommand(), statsKMCommand(), statsCoxCommand(), statsChisqCommand(), statsQuantileCommand(), statsIncidenceCommand())
	return c
}

func statsLogitCommand() *cobra.Command {
	var s statsFlags
	var outcome string
	var xs, factors []string
	var rounds int
	c := &cobra.Command{
		Use:   "logit --table T --outcome Y --x X... [--factor F...]",
		Short: "Logistic regression by federated Newton-Raphson",
		Long: statsLong + `

logit fits P(Y = 1) = 1/(1 + exp(-(b0 + b·x))) in --rounds Newton steps, one query each
(gradient and Hessian sums at the current coefficients); the last round gets half the
budget. Y is a 0/1 column or condition. Statistics: logit.intercept, logit.<x>.`,
		Example: `  fedstat stats logit --schema birthwt.toml --table birthwt --outcome low \
    --x age --x lwt --factor race --x ftv --epsilon 1e6 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, cat *plan.Catalogue) ([]stats.Estimate, error) {
				m, err := model("", xs, factors)
				if err != nil {
					return nil, &usageError{err.Error()}
				}
				r, err := s.analyse(ctx, q, cat, stats.Analysis{Method: "logit", Outcome: outcome, Model: m, Rounds: rounds})
				if err != nil {
					return nil, err
				}
				return r.Estimates, nil
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&outcome, "outcome", "", "0/1 outcome: a column or a condition (required)")
	c.Flags().StringArrayVar(&xs, "x", nil, "covariate: COLUMN, or NAME=EXPR[@LO,HI] (default range 0,1 for a condition); repeatable")
	c.Flags().StringArrayVar(&factors, "factor", nil, "categorical column: one indicator per level but the first; repeatable")
	c.Flags().IntVar(&rounds, "rounds", 6, "Newton-Raphson rounds (queries)")
	return c
}

func statsLinregCommand() *cobra.Command {
	var s statsFlags
	var outcome string
	var xs, factors []string
	c := &cobra.Command{
		Use:   "linreg --table T --outcome Y --x X... [--factor F...]",
		Short: "Linear regression in one round (X'X and X'y)",
		Long: statsLong + `

linreg releases N, the sums of the covariates, their cross products and with Y, and Y²
in one query and solves the normal equations. Y is a number column with a range in the
schema (or NAME=EXPR@LO,HI). Statistics: linreg.intercept, linreg.<x>.`,
		Example: `  fedstat stats linreg --schema birthwt.toml --table birthwt --outcome bwt --x age --x lwt --factor race`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, cat *plan.Catalogue) ([]stats.Estimate, error) {
				m, err := model(outcome, xs, factors)
				if err != nil {
					return nil, &usageError{err.Error()}
				}
				r, err := s.analyse(ctx, q, cat, stats.Analysis{Method: "linreg", Model: m})
				if err != nil {
					return nil, err
				}
				return r.Estimates, nil
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&outcome, "outcome", "", "outcome column (or NAME=EXPR@LO,HI) (required)")
	c.Flags().StringArrayVar(&xs, "x", nil, "covariate: COLUMN, or NAME=EXPR[@LO,HI]; repeatable")
	c.Flags().StringArrayVar(&factors, "factor", nil, "categorical column: one indicator per level but the first; repeatable")
	return c
}

type survFlags struct {
	time, status, event string
	width               float64
}

func (f *survFlags) add(c *cobra.Command, width float64) {
	c.Flags().StringVar(&f.time, "time", "time", "follow-up time column (a study number column)")
	c.Flags().StringVar(&f.status, "status", "status", "status column (public domain)")
	c.Flags().StringVar(&f.event, "event", "", "the status value that is an event, e.g. 2 (required)")
	c.Flags().Float64Var(&f.width, "width", width, "time bin width; risk sets are suffix sums over the bins, so wider bins mean less noise")
}

// analysis starts a survival analysis of method from the flags.
func (f *survFlags) analysis(s *statsFlags, method string) (stats.Analysis, error) {
	if f.event == "" {
		return stats.Analysis{}, &usageError{"--event is required (the status value of an event)"}
	}
	return stats.Analysis{Method: method, Time: f.time, Status: f.status, Event: f.event, Width: f.width}, nil
}

func statsKMCommand() *cobra.Command {
	var s statsFlags
	var sf survFlags
	var strata string
	var curve bool
	c := &cobra.Command{
		Use:   "km --table T --time C --status C --event V [--strata C]",
		Short: "Kaplan-Meier survival: median survival with its interval, by stratum",
		Long: statsLong + `

km releases events and censorings per time bin (one query) and computes the Kaplan-Meier
curve with Greenwood intervals. Statistics: km.median (or km.median.<strata>=<value>),
km.at_risk, and with --curve km.survival[.<strata>=<value>].t=<time> at every event time
(the survival just after it, with its interval).`,
		Example: `  fedstat stats km --schema lung.toml --table lung --time time --status status --event 2 --strata sex --epsilon 1e4`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, cat *plan.Catalogue) ([]stats.Estimate, error) {
				a, err := sf.analysis(&s, "km")
				if err != nil {
					return nil, err
				}
				a.Strata = strata
				r, err := s.analyse(ctx, q, cat, a)
				if err != nil {
					return nil, err
				}
				var out []stats.Estimate
				for i, k := range r.Curves {
					// The median and the number at risk, then the curve.
					out = append(out, r.Estimates[2*i:2*i+2]...)
					if curve {
						suffix := stats.StratumSuffix(strata, k.Stratum)
						for i, t := range k.Times {
							out = append(out, stats.Estimate{Name: "km.survival" + suffix + ".t=" + strconv.FormatFloat(t, 'g', -1, 64),
								Value: k.Survival[i], SE: math.NaN(), CILow: k.Lower[i], CIHigh: k.Upper[i]})
						}
					}
				}
				return out, nil
			})
		},
	}
	s.add(c, 1)
	sf.add(c, 1)
	c.Flags().StringVar(&strata, "strata", "", "stratify by this column")
	c.Flags().BoolVar(&curve, "curve", false, "print the whole curve, not only the median")
	return c
}

func statsCoxCommand() *cobra.Command {
	var s statsFlags
	var sf survFlags
	var xs, factors []string
	var rounds int
	c := &cobra.Command{
		Use:   "cox --table T --time C --status C --event V --x X...",
		Short: "Cox proportional hazards (Efron ties) by federated Newton-Raphson",
		Long: statsLong + `

cox runs --rounds Newton steps, one query each: per (status, time bin), the sums of
exp(b·x), x·exp(b·x), x·x'·exp(b·x) and of x. Statistics: cox.<x> (log hazard ratios).`,
		Example: `  fedstat stats cox --schema lung.toml --table lung --event 2 --x age --x sex --width 7 --epsilon 1e6`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, cat *plan.Catalogue) ([]stats.Estimate, error) {
				a, err := sf.analysis(&s, "cox")
				if err != nil {
					return nil, err
				}
				if a.Model, err = model("", xs, factors); err != nil {
					return nil, &usageError{err.Error()}
				}
				a.Rounds = rounds
				r, err := s.analyse(ctx, q, cat, a)
				if err != nil {
					return nil, err
				}
				return r.Estimates, nil
			})
		},
	}
	s.add(c, 1)
	sf.add(c, 7)
	c.Flags().StringArrayVar(&xs, "x", nil, "covariate: COLUMN, or NAME=EXPR[@LO,HI]; repeatable")
	c.Flags().StringArrayVar(&factors, "factor", nil, "categorical column: one indicator per level but the first; repeatable")
	c.Flags().IntVar(&rounds, "rounds", 5, "Newton-Raphson rounds (queries)")
	return c
}

func statsChisqCommand() *cobra.Command {
	var s statsFlags
	var row, col, yes, name string
	c := &cobra.Command{
		Use:   "chisq --table T --row C --col C [--yes V --name N]",
		Short: "Contingency table with chi-square and Fisher exact tests",
		Long: statsLong + `

chisq releases the counts of a two-way table (one query) and tests independence on them
(Pearson chi-square; Fisher exact for 2x2). With --yes V the columns are collapsed into
V and not-V first. Statistics: <row value>.<col value> (counts), or with --yes
<name>.<row value> and n.<row value>; [<name>.]chisq.p and [<name>.]fisher.p (the
p-values' intervals come from the noise).`,
		Example: `  fedstat stats chisq --schema strep_tb.toml --table strep_tb --row arm --col radiologic_6m \
    --yes 1_Death --name deaths`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, _ *plan.Catalogue) ([]stats.Estimate, error) {
				if row == "" || col == "" {
					return nil, &usageError{"--row and --col are required"}
				}
				t, err := stats.ContingencyTable(ctx, q, stats.ContingencyOptions{Table: s.table, Where: s.where, Row: row, Col: col, Budget: s.budget()})
				if err != nil {
					return nil, err
				}
				var out []stats.Estimate
				count := func(label string, v stats.Noisy) stats.Estimate {
					sd := math.Sqrt(v.Var)
					return stats.Estimate{Name: label, Value: v.Value, SE: sd, CILow: v.Value - 1.96*sd, CIHigh: v.Value + 1.96*sd}
				}
				if yes != "" {
					if name == "" {
						name = yes
					}
					t = t.Dichotomise(func(c string) bool { return c == yes }, yes, "other")
					for i, r := range t.RowLabels {
						out = append(out, count(name+"."+r, t.Counts[i][0]))
						n, _ := t.RowTotal(r)
						out = append(out, count("n."+r, n))
					}
				} else {
					for i, r := range t.RowLabels {
						for j, cl := range t.ColLabels {
							out = append(out, count(r+"."+cl, t.Counts[i][j]))
						}
					}
				}
				pre := ""
				if name != "" {
					pre = name + "."
				}
				out = append(out, stats.Estimate{Name: pre + "chisq.statistic", Value: t.ChiSquare, SE: math.NaN(), CILow: math.NaN(), CIHigh: math.NaN()},
					stats.Estimate{Name: pre + "chisq.p", Value: t.ChiSquareP, SE: math.NaN(), CILow: t.ChiSquarePCI[0], CIHigh: t.ChiSquarePCI[1]})
				if !math.IsNaN(t.FisherP) {
					out = append(out, stats.Estimate{Name: pre + "fisher.p", Value: t.FisherP, SE: math.NaN(), CILow: t.FisherPCI[0], CIHigh: t.FisherPCI[1]})
				}
				return out, nil
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&row, "row", "", "row column (public domain)")
	c.Flags().StringVar(&col, "col", "", "column column (public domain)")
	c.Flags().StringVar(&yes, "yes", "", "collapse the columns into this value and the others (a 2-column table)")
	c.Flags().StringVar(&name, "name", "", "statistic name of the --yes counts (default: the value)")
	return c
}

func statsQuantileCommand() *cobra.Command {
	var s statsFlags
	var column string
	var width float64
	var probs []float64
	c := &cobra.Command{
		Use:   "quantile --table T --column C [--prob P...]",
		Short: "DP quantiles (median, IQR) from a released histogram",
		Long: statsLong + `

quantile releases a histogram of a study number column (bins of --width over its public
range, one query) and reads the quantiles off it. Statistics: quantile.<p>.`,
		Example: `  fedstat stats quantile --schema lung.toml --table lung --column age --prob 0.25 --prob 0.5 --prob 0.75`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, _ *plan.Catalogue) ([]stats.Estimate, error) {
				_, est, err := stats.Quantiles(ctx, q, stats.QuantileOptions{Table: s.table, Where: s.where, Column: column, Width: width, Probs: probs, Budget: s.budget()})
				return est, err
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&column, "column", "", "number column (required)")
	c.Flags().Float64Var(&width, "width", 1, "histogram bin width")
	c.Flags().Float64SliceVar(&probs, "prob", []float64{0.25, 0.5, 0.75}, "probabilities")
	return c
}

func statsIncidenceCommand() *cobra.Command {
	var s statsFlags
	var by, popFile, exclude string
	var per float64
	c := &cobra.Command{
		Use:   "incidence --table T --where COND [--by region] [--populations FILE]",
		Short: "Incidence rates per 100,000 with population denominators",
		Long: statsLong + `

incidence counts the patients matching --where (one query), by --by (e.g. region) or in
total, and divides by the public populations: those of the network catalogue (the
coordinator's populations_file), or --populations FILE (a CSV with region or abbreviation
and population columns, such as FluSight's locations.csv). The interval adds the Poisson
variance of the count to the noise. Statistics: cases.<label>, rate.<label>.`,
		Example: `  fedstat stats incidence --table conditions --by region --populations locations.csv \
    --where "code = '6142004' AND onset_date BETWEEN '2025-02-02' AND '2025-02-08'"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, _ *plan.Catalogue) ([]stats.Estimate, error) {
				var pops map[string]float64
				if popFile != "" {
					var err error
					if pops, err = stats.ReadPopulations(popFile); err != nil {
						return nil, err
					}
				} else {
					// The network catalogue's populations (the coordinator's
					// populations_file).
					cat, err := q.(*cliQuerier).c.Catalogue(ctx)
					if err != nil {
						return nil, fmt.Errorf("populations from the network catalogue: %w; or give --populations FILE", err)
					}
					if len(cat.GetPopulations()) == 0 {
						return nil, &usageError{"the network catalogue has no populations (the coordinator's populations_file): give --populations FILE"}
					}
					pops = map[string]float64{}
					for k, v := range cat.GetPopulations() {
						pops[k] = float64(v)
					}
				}
				for _, x := range strings.Split(exclude, ",") {
					delete(pops, strings.TrimSpace(x))
				}
				rates, err := stats.Incidence(ctx, q, stats.IncidenceOptions{Table: s.table, Where: s.where, By: by, Populations: pops, Per: per, Budget: s.budget()})
				if err != nil {
					return nil, err
				}
				var out []stats.Estimate
				for _, r := range rates {
					sd := math.Sqrt(r.Cases.Var)
					out = append(out, stats.Estimate{Name: "cases." + r.Label, Value: r.Cases.Value, SE: sd, CILow: r.Cases.Value - 1.96*sd, CIHigh: r.Cases.Value + 1.96*sd})
					e := r.Rate
					e.Name = "rate." + r.Label
					out = append(out, e)
				}
				return out, nil
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&by, "by", "", "group by this key (e.g. region); default one total")
	c.Flags().StringVar(&popFile, "populations", "", "CSV of populations (region or abbreviation, population); default: the network catalogue's")
	c.Flags().StringVar(&exclude, "exclude", "US", "population rows to leave out (comma-separated), e.g. a national total")
	c.Flags().Float64Var(&per, "per", 100000, "rate unit")
	return c
}

func alertCommand() *cobra.Command {
	var s statsFlags
	var dateCol, from, to, method, count string
	c := &cobra.Command{
		Use:   "alert --table T --where COND --date C --from D --to D [--method C2]",
		Short: "Surveillance alerts (EARS C1, C2, C3) on a weekly series",
		Long: `alert releases a weekly count series (ISO weeks, one query with the whole budget) and
runs the CDC's EARS method on it: C1 compares each week with the 7 weeks just before,
C2 with the 7 weeks ending two weeks before, C3 sums C2's excesses over three weeks.
C1 and C2 alert above 3 standard deviations, C3 above 2; the baseline variance is
corrected for the DP noise. Statistics: count.<week> (the released counts),
ears.<method>.<week> (the statistic; .ALERT appended when it fires), and
alert.<method>.first=<week> (the first week that alerts, with its statistic).

Connection flags and --format as in ` + "`fedstat stats`" + `.`,
		Example: `  fedstat alert --table conditions --where "code = '6142004'" --date onset_date \
    --from 2024-08-05 --to 2024-12-08 --method C2 --epsilon 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.run(cmd, func(ctx context.Context, q stats.Querier, _ *plan.Catalogue) ([]stats.Estimate, error) {
				if dateCol == "" || from == "" || to == "" {
					return nil, &usageError{"--date, --from and --to are required"}
				}
				series, err := stats.WeeklySeries(ctx, q, s.table, count, s.where, dateCol, from, to, s.budget())
				if err != nil {
					return nil, err
				}
				alerts, err := stats.EARS(series, strings.ToUpper(method))
				if err != nil {
					return nil, err
				}
				var out []stats.Estimate
				first := ""
				for i, c := range series.Counts {
					sd := math.Sqrt(c.Var)
					out = append(out, stats.Estimate{Name: "count." + series.Labels[i], Value: c.Value, SE: sd, CILow: c.Value - 1.96*sd, CIHigh: c.Value + 1.96*sd})
				}
				for _, a := range alerts {
					name := "ears." + strings.ToUpper(method) + "." + a.Label
					if a.Fired {
						name += ".ALERT"
						if first == "" {
							first = a.Label
						}
					}
					out = append(out, stats.Estimate{Name: name, Value: a.Statistic, SE: math.NaN(), CILow: math.NaN(), CIHigh: math.NaN()})
				}
				if first != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "first %s alert: week %s\n", strings.ToUpper(method), first)
					for _, a := range alerts {
						if a.Label == first {
							out = append(out, stats.Estimate{Name: "alert." + strings.ToUpper(method) + ".first=" + first, Value: a.Statistic, SE: math.NaN(), CILow: math.NaN(), CIHigh: math.NaN()})
						}
					}
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "no %s alert\n", strings.ToUpper(method))
				}
				return out, nil
			})
		},
	}
	s.add(c, 1)
	c.Flags().StringVar(&dateCol, "date", "", "date column of the events (required)")
	c.Flags().StringVar(&from, "from", "", "first day YYYY-MM-DD (required)")
	c.Flags().StringVar(&to, "to", "", "last day YYYY-MM-DD (required)")
	c.Flags().StringVar(&method, "method", "C2", "EARS method: C1, C2 or C3")
	c.Flags().StringVar(&count, "count", "COUNT(DISTINCT patient_id)", "the count aggregate")
	return c
}
