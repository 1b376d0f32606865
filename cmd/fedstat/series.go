package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/coordinator"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

func seriesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "series",
		Short: "Standing surveillance series: a count released every week (day, month) under one budget",
		Long: `A standing series is a count that the coordinator releases at every period, by itself:
register it once with its query, schedule, lifetime and privacy budget, and it runs
every week (or day, or month), survives restarts of the coordinator and the nodes,
and runs a missed period when the network is back (saying so). Its alerts (EARS C1,
C2, C3, or a forecast above a threshold) go to the dashboard and the webhook.

The whole lifetime costs its budget once at every node, not once per period: the
binary-tree mechanism releases each week and each running total with noise that
grows only with the logarithm of the lifetime (docs/statistics.md, "Continual
release"). The price is a bound: each patient counts in at most
--max-periods-per-patient periods of the series (their first ones).`,
	}
	c.AddCommand(seriesCreateCommand(), seriesListCommand(), seriesShowCommand())
	return c
}

func seriesCreateCommand() *cobra.Command {
	var (
		cf     clientFlags
		spec   typesv1.SeriesSpec
		alerts []string
		format string
	)
	c := &cobra.Command{
		Use:   "create NAME --table T --date COLUMN --start YYYY-MM-DD [flags]",
		Short: "Register a standing series",
		Long: `create registers a standing series NAME. Each period p releases

  SELECT [BY AS key,] COUNT(DISTINCT patient_id) FROM TABLE
  WHERE (WHERE) AND DATE in period p [GROUP BY key]

where a patient counts in at most their first --max-periods-per-patient matching
periods since --start. --epsilon and --delta are the budget of the whole lifetime
(--periods periods), charged once at every node when the series first runs.`,
		Example: `  # weekly influenza admissions by region for a season, alert on EARS C2 and on a forecast above 400
  fedstat series create flu-weekly --table conditions --where "code = '6142004'" \
    --date onset_date --by region --every week --start 2026-09-07 --periods 52 \
    --epsilon 1 --alert C2 --alert forecast:400
  fedstat series show flu-weekly
  fedstat forecast flu-weekly`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			var rules []*coordinatorv1.AlertRule
			for _, a := range alerts {
				rule, thr, hasThr := strings.Cut(a, ":")
				r := &coordinatorv1.AlertRule{Rule: rule}
				if hasThr {
					v, err := strconv.ParseFloat(thr, 64)
					if err != nil {
						return &usageError{fmt.Sprintf("--alert %q: threshold %q is not a number", a, thr)}
					}
					r.Threshold = v
				}
				rules = append(rules, r)
			}
			cl, err := cf.connect()
			if err != nil {
				return err
			}
			defer cl.Close()
			s, err := cl.CreateSeries(cmd.Context(), &spec, rules)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSONProto(cmd.OutOrStdout(), s)
			}
			printSeriesHeader(cmd.OutOrStdout(), s)
			return nil
		},
	}
	cf.add(c)
	f := c.Flags()
	f.StringVar(&spec.Table, "table", "conditions", "the table whose rows are counted")
	f.StringVar(&spec.Where, "where", "", "condition on the rows (the query language's WHERE), e.g. \"code = '6142004'\"")
	f.StringVar(&spec.DateColumn, "date", "", "the date column that places a row in a period (required), e.g. onset_date")
	f.StringVar(&spec.By, "by", "", "a patient-level key to count by, e.g. region (default: one total)")
	f.StringVar(&spec.Every, "every", "week", "the period: day, week (7 days from --start) or month (from a --start on the 1st)")
	f.StringVar(&spec.Start, "start", "", "first day of the first period, YYYY-MM-DD (required)")
	f.Int32Var(&spec.Periods, "periods", 52, "lifetime: the number of periods the series releases")
	f.Int32Var(&spec.MaxPeriodsPerPatient, "max-periods-per-patient", 1, "K: a patient counts in at most their first K matching periods")
	f.Float64Var(&spec.Epsilon, "epsilon", coordinator.DefaultEpsilon, "privacy loss epsilon of the whole lifetime")
	f.Float64Var(&spec.Delta, "delta", coordinator.DefaultDelta, "privacy loss delta of the whole lifetime")
	f.Int32Var(&spec.MinNodes, "min-nodes", 0, "partials each release needs (default: the network's)")
	f.StringArrayVar(&alerts, "alert", nil, "alert rule, repeatable: C1, C2, C3 (EARS) or forecast:THRESHOLD (default: C2)")
	f.StringVar(&format, "format", "table", "table or json")
	_ = c.MarkFlagRequired("date")
	_ = c.MarkFlagRequired("start")
	return c
}

func seriesListCommand() *cobra.Command {
	var cf clientFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "List the standing series you may read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := cf.connect()
			if err != nil {
				return err
			}
			defer cl.Close()
			ss, err := cl.ListSeries(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tEVERY\tSTART\tRELEASED\tSTATE\tOWNER\tEPSILON\tNEXT DUE")
			for _, s := range ss {
				sp := s.GetSpec()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%g\t%s\n", sp.GetName(), sp.GetEvery(), sp.GetStart(), s.GetReleased(), sp.GetPeriods(),
					s.GetState(), s.GetOwner(), sp.GetEpsilon(), s.GetNextDue())
			}
			return tw.Flush()
		},
	}
	cf.add(c)
	return c
}

func seriesShowCommand() *cobra.Command {
	var (
		cf     clientFlags
		format string
	)
	c := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a standing series: every released period with its interval, running totals, alerts and budget",
		Long: `show prints every released period of a series: each label's estimated count with its
95% interval and the running total since the start with its interval. The estimates use
every interval of the binary tree released so far, so earlier periods sharpen as later
ones are released. A period released after it was due says so (late, with the reason).
--format csv writes one row per period and label: first,last,label,value,variance,ci_low,
ci_high,total,total_variance,suppressed,late (numeric columns are numbers).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "table", "json", "csv":
			default:
				return &usageError{fmt.Sprintf("--format %q: want table, json or csv", format)}
			}
			cl, err := cf.connect()
			if err != nil {
				return err
			}
			defer cl.Close()
			s, err := cl.Series(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				return writeJSONProto(out, s)
			case "csv":
				return writeStandingCSV(out, s)
			}
			printSeriesHeader(out, s)
			fmt.Fprintln(out)
			return printSeriesTable(out, s)
		},
	}
	cf.add(c)
	c.Flags().StringVar(&format, "format", "table", "table, json or csv")
	return c
}

func writeJSONProto(w io.Writer, m *coordinatorv1.Series) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func printSeriesHeader(w io.Writer, s *coordinatorv1.Series) {
	sp := s.GetSpec()
	fmt.Fprintf(w, "series %s (%s): %d of %d %s periods released from %s\n", sp.GetName(), s.GetState(), s.GetReleased(), sp.GetPeriods(), sp.GetEvery(), sp.GetStart())
	by := ""
	if sp.GetBy() != "" {
		by = " by " + sp.GetBy()
	}
	where := sp.GetWhere()
	if where == "" {
		where = "(all rows)"
	}
	fmt.Fprintf(w, "  counts COUNT(DISTINCT patient_id) FROM %s WHERE %s%s, placed by %s; at most %d period(s) per patient\n",
		sp.GetTable(), where, by, sp.GetDateColumn(), sp.GetMaxPeriodsPerPatient())
	fmt.Fprintf(w, "  budget: epsilon %g, delta %g for the whole lifetime (rho %.4g), charged once at every node, by %s\n",
		sp.GetEpsilon(), sp.GetDelta(), s.GetRho(), s.GetOwner())
	if s.GetNextDue() != "" {
		fmt.Fprintf(w, "  next period due %s\n", s.GetNextDue())
	}
	if s.GetError() != "" {
		fmt.Fprintf(w, "  waiting: %s\n", s.GetError())
	}
	for _, a := range s.GetAlerts() {
		fmt.Fprintf(w, "  ALERT %s: %s, period of %s, %s = %.1f (statistic %.2f > %.2f)\n", a.GetRule(), a.GetSeries(), a.GetWeek(), a.GetLabel(), a.GetValue(), a.GetStatistic(), a.GetThreshold())
	}
}

func printSeriesTable(w io.Writer, s *coordinatorv1.Series) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PERIOD\tFIRST\tLABEL\tCOUNT\t95% INTERVAL\tRUNNING TOTAL\t95% INTERVAL\t")
	for _, p := range s.GetPeriods() {
		for _, v := range p.GetValues() {
			count := fmt.Sprintf("%.0f", v.GetValue())
			if v.GetSuppressed() {
				count = "small"
			}
			late := ""
			if p.GetLate() {
				late = "late"
			}
			// Counts are shown at 0 when the unbiased, noisy estimate is
			// below it, as their intervals are (the API and CSV keep it).
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t[%.0f, %.0f]\t%.0f\t[%.0f, %.0f]\t%s\n", p.GetIndex(), p.GetFirst(), v.GetLabel(), count,
				v.GetCiLow(), v.GetCiHigh(), math.Max(0, math.Round(v.GetTotal())), v.GetTotalCiLow(), v.GetTotalCiHigh(), late)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range s.GetPeriods() {
		if p.GetNote() != "" {
			fmt.Fprintf(w, "period %d: %s\n", p.GetIndex(), p.GetNote())
		}
	}
	return nil
}

func writeStandingCSV(w io.Writer, s *coordinatorv1.Series) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"first", "last", "label", "value", "variance", "ci_low", "ci_high", "total", "total_variance", "suppressed", "late"})
	num := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, p := range s.GetPeriods() {
		for _, v := range p.GetValues() {
			_ = cw.Write([]string{p.GetFirst(), p.GetLast(), v.GetLabel(), num(v.GetValue()), num(v.GetVariance()), num(v.GetCiLow()), num(v.GetCiHigh()),
				num(v.GetTotal()), num(v.GetTotalVariance()), strconv.FormatBool(v.GetSuppressed()), strconv.FormatBool(p.GetLate())})
		}
	}
	cw.Flush()
	return cw.Error()
}
