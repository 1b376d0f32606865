package demo

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// CohortQuery is the demo's default query: patients with type-2 diabetes.
const CohortQuery = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"

// RunOptions configure Run.
type RunOptions struct {
	Options
	// Queries to run. Defaults to CohortQuery.
	Queries []string
	// Epsilon and Delta of each query. Default to the network defaults.
	Epsilon, Delta float64
	// ShowExact prints, labelled as demo-only, the exact answer computed in
	// the clear from every node's data, for comparison.
	ShowExact bool
	// DataNote describes where the data came from.
	DataNote string
}

// Run starts a network, runs the queries as the demo analyst and prints
// what happens to w.
func Run(ctx context.Context, o RunOptions, w io.Writer) error {
	start := time.Now()
	fmt.Fprintf(w, "fedstat demo: a private network of 1 coordinator and %d nodes on this machine\n", len(o.Data))
	if o.DataNote != "" {
		fmt.Fprintf(w, "  data: %s\n", o.DataNote)
	}
	for i, r := range o.Data {
		fmt.Fprintf(w, "  %s: %d patients, %d conditions, %d observations\n", NodeID(i), len(r.Patients), len(r.Conditions), len(r.Observations))
	}
	o.Progress = func(step string, d time.Duration) { fmt.Fprintf(w, "  %-34s %8s\n", step, round(d)) }
	nw, err := Start(ctx, o.Options)
	if err != nil {
		return err
	}
	defer nw.Close()
	p := nw.Coordinator.Params()
	thr := o.Threshold
	if thr == 0 {
		thr = len(o.Data)
	}
	fmt.Fprintf(w, "  key epoch %d: %d-of-%d threshold, BGV parameter set %s (%d slots, plaintext modulus %d)\n",
		nw.Epoch, thr, len(o.Data), p.Name(), p.Slots(), p.PlaintextModulus())
	if nw.keep {
		fmt.Fprintf(w, "  files kept in %s\n", nw.Dir)
	}

	c, err := nw.Dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	queries := o.Queries
	if len(queries) == 0 {
		queries = []string{CohortQuery}
	}
	for _, sql := range queries {
		fmt.Fprintf(w, "\nquery (as analyst %q): %s\n", nw.Analyst.Name(), sql)
		st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: sql, Epsilon: o.Epsilon, Delta: o.Delta}, client.RunOptions{Progress: ProgressPrinter(w)})
		if err != nil {
			return err
		}
		if err := PrintStatus(w, st); err != nil {
			return err
		}
		if o.ShowExact {
			exact, err := nw.Exact(ctx, st.Spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "  exact answer, DEMO ONLY (computed in the clear from all nodes' data, never available in a real network): %s\n", exact)
		}
	}
	fmt.Fprintf(w, "\ndemo finished in %s\n", round(time.Since(start)))
	return nil
}

// PrintStatus prints a finished query: result with intervals, privacy cost,
// nodes that answered and the time of each phase.
func PrintStatus(w io.Writer, st *coordinatorv1.QueryStatus) error {
	r := st.GetResult()
	res := client.Result(r)
	fmt.Fprintln(w, "  released (differentially private, 95% intervals from the noise actually added):")
	if err := res.WriteTable(indent(w, "    ")); err != nil {
		return err
	}
	fmt.Fprintf(w, "  nodes answered: %d of %d (min_nodes %d, decryption threshold %d)\n", r.GetNodes(), len(st.Nodes), st.Spec.GetMinNodes(), st.Spec.GetThreshold())
	fmt.Fprintf(w, "  privacy cost: epsilon=%g delta=%g (zCDP rho=%.4g)\n", r.GetEpsilon(), r.GetDelta(), r.GetRho())
	var phases []string
	for _, ph := range st.Phases {
		phases = append(phases, fmt.Sprintf("%s %.1f ms", ph.Name, ph.ElapsedMs))
	}
	fmt.Fprintf(w, "  phases: %s\n", strings.Join(phases, ", "))
	return nil
}

// ProgressPrinter returns a progress callback for client.Run that prints
// each node's status once as it changes.
func ProgressPrinter(w io.Writer) func(*coordinatorv1.QueryStatus) {
	seen := map[string]string{}
	waiting := ""
	return func(st *coordinatorv1.QueryStatus) {
		// Whom the query waits for (approvals that wait): printed when it
		// changes, to every caller (coordinator.WaitingLine).
		if line := coordinator.WaitingLine(st); line != waiting {
			waiting = line
			if line != "" {
				fmt.Fprintf(w, "  %s\n", line)
			}
		}
		for _, n := range st.Nodes {
			if n.Status == "waiting" || seen[n.NodeId] == n.Status {
				continue
			}
			seen[n.NodeId] = n.Status
			switch n.Status {
			case "answered":
				// Per-node timings reach operators only (coordinator.StatusFor).
				if n.ElapsedMs > 0 {
					fmt.Fprintf(w, "  %s answered with its encrypted partial (%.1f ms)\n", n.NodeId, n.ElapsedMs)
				} else {
					fmt.Fprintf(w, "  %s answered with its encrypted partial\n", n.NodeId)
				}
			case "decrypted":
				fmt.Fprintf(w, "  %s returned its key-switch share\n", n.NodeId)
			case "failed":
				fmt.Fprintf(w, "  %s did not answer: %s\n", n.NodeId, n.Error)
			}
		}
	}
}

// ExactValues returns the exact aggregates of a query over all nodes' data,
// computed in the clear from the union of the records. Only the demo and
// tests can do this: a real network has no place where all the data is.
func (nw *Network) ExactValues(ctx context.Context, spec *typesv1.QuerySpec) (*plan.Plan, *eval.Exact, error) {
	preq, err := protocol.PlanRequest(spec)
	if err != nil {
		return nil, nil, err
	}
	p, err := plan.Build(preq, nw.Catalogue)
	if err != nil {
		return nil, nil, err
	}
	b := cdm.NewBuilder()
	for _, r := range nw.data {
		b.AddRecords(r)
	}
	e, err := eval.Evaluate(ctx, p, b.Build())
	if err != nil {
		return nil, nil, err
	}
	return p, e, nil
}

// Exact formats the exact answer of a query (see ExactValues): the number
// for a one-cell result, else one line per group.
func (nw *Network) Exact(ctx context.Context, spec *typesv1.QuerySpec) (string, error) {
	p, exact, err := nw.ExactValues(ctx, spec)
	if err != nil {
		return "", err
	}
	r, err := dp.Exact(p, exact)
	if err != nil {
		return "", err
	}
	format := func(row result.Row) string {
		var vals []string
		for _, v := range row.Values {
			vals = append(vals, result.FormatValue(v.Value, false))
		}
		return strings.Join(vals, ", ")
	}
	if len(r.Rows) == 1 && len(r.Rows[0].Keys) == 0 {
		return format(r.Rows[0]), nil
	}
	var b strings.Builder
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "\n    %s: %s", strings.Join(row.Keys, ", "), format(row))
	}
	return b.String(), nil
}

type indentWriter struct {
	w      io.Writer
	prefix string
	bol    bool
}

func indent(w io.Writer, prefix string) io.Writer {
	return &indentWriter{w: w, prefix: prefix, bol: true}
}

func (iw *indentWriter) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		if iw.bol {
			if _, err := io.WriteString(iw.w, iw.prefix); err != nil {
				return 0, err
			}
		}
		if _, err := io.WriteString(iw.w, line); err != nil {
			return 0, err
		}
		iw.bol = strings.HasSuffix(line, "\n")
	}
	return len(p), nil
}

func round(d time.Duration) string {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d > time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.String()
}

func sortStrings(s []string) { sort.Strings(s) }
