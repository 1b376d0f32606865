package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/cmd/fedstat/internal/bench"
)

// benchOutput is one (nodes, patients) cell: the first query's figures at
// the top level (so scripts can read p50_ms directly) and every query's in
// Queries.
type benchOutput struct {
	bench.Cell
	Queries []bench.Cell `json:"queries"`
}

func benchCommand() *cobra.Command {
	var (
		nodes, patients []int
		repeats         int
		committee       int
		rows            int
		dataDir         string
		format, query   string
		grid            bool
		processes       bool
		compact         bool
		threshold       int
		profileDir      string
		idle            time.Duration
	)
	c := &cobra.Command{
		Use:   "bench [--nodes N] [--patients P] [--format table|json]",
		Short: "Measure end-to-end latency, CPU and bytes per node, encrypted vs plaintext",
		Long: `Runs a coordinator and N in-process nodes over real gRPC with mutual TLS on loopback,
each with P synthetic patients (shared read-only in memory so that large sizes fit in one
process; every node still evaluates, noises, encrypts and signs on its own), and times
three queries from submission to released result: a cohort count, a weekly-by-region
count over a year and a mean. Each runs encrypted (the product path) and in a
benchmark-only plaintext mode that the daemons cannot enable, so the cost of encryption
shows as a ratio.

Output per query: p50/p95 latency, the same in plaintext, their ratio, bytes each node
uploads per query, each node's answer time, the coordinator-only phases (adding,
combining, decrypting, releasing) and the process's CPU time per query.
--format json prints one object per size with the first query's figures at the top level
(p50_ms, p95_ms, plaintext_p50_ms, upload_bytes_per_node, ...) and all in "queries".

The network has a decryption committee of K = min(N, 10) members (--committee K; -1 puts
every node on it) of which T = max(2, 2K/3) decrypt each release (--threshold T; with T < K
the members deal checked Shamir shares; key-switch shares are proven only when a total is
refused, which a benchmark's never is); a second table gives the
key ceremony's time and the bytes one node sent and received in it, off the committee and on
it. --compact runs compact releases, in which the decryptors get the sum and not the
partials and verify no proof of encryption: the default against it is the proofs' cost.
--rows R serves every node one node of R condition rows on the embedded column store (a
bulk import mapped from disk) and reports the process's peak RSS.

--processes runs the coordinator and every node as separate processes of this binary
(each node with its own store, imported with 'fedstat node import'; mutual TLS, gossip,
the production health interval), encrypted only, and reads each process's CPU time from
/proc before and after a batch of queries: CPU per query of all servers, of the
coordinator and of a node, the daemons' idle CPU (measured first with no query and
subtracted), and a node's read, write and disk bytes per query. --profile DIR also
writes CPU and allocation profiles of the coordinator and node-1 (served on their
loopback ops endpoints, ops_pprof) over a further batch; read them with
'go tool pprof -top DIR/node-1.cpu.pprof'.`,
		Example: `  fedstat bench --nodes 10 --patients 1000000
  fedstat bench --nodes 3 --patients 10000 --format json
  fedstat bench --grid        # N = 3, 10, 30 and P = 10^4, 10^5, 10^6 (long)
  fedstat bench --nodes 100 --patients 1000 --committee 10 --query cohort --repeats 10
  fedstat bench --nodes 10 --patients 1000 --query cohort --compact   # proofs of encryption off
  fedstat bench --nodes 2 --rows 100000000 --query cohort --repeats 5   # nodes larger than memory
  fedstat bench --processes --nodes 3,10 --patients 1000 --query cohort --profile /tmp/prof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return &usageError{fmt.Sprintf("--format %q: want table or json", format)}
			}
			if grid {
				nodes, patients = []int{3, 10, 30}, []int{10_000, 100_000, 1_000_000}
			}
			var qs []bench.Query
			if query != "" {
				for _, name := range strings.Split(query, ",") {
					i := slices.IndexFunc(bench.Queries, func(q bench.Query) bool { return q.Name == name })
					if i < 0 {
						return &usageError{fmt.Sprintf("--query %q: want cohort, weekly-by-region or mean", name)}
					}
					qs = append(qs, bench.Queries[i])
				}
			}
			progress := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "  "+s) }
			if rows > 0 && (processes || grid) {
				return &usageError{"--rows runs in one process: not with --processes or --grid"}
			}
			if rows > 0 {
				patients = []int{0} // from --rows
			}
			if (compact || threshold != 0) && processes {
				return &usageError{"--compact and --threshold run in one process: not with --processes"}
			}
			if processes {
				return benchProcesses(cmd, nodes, patients, repeats, committee, qs, idle, profileDir, format, progress)
			}
			if profileDir != "" {
				return &usageError{"--profile needs --processes"}
			}
			var outs []benchOutput
			for _, n := range nodes {
				for _, p := range patients {
					fmt.Fprintf(cmd.ErrOrStderr(), "bench: %d nodes x %d patients\n", n, p)
					cells, err := bench.Run(cmd.Context(), bench.Options{Nodes: n, Patients: p, Repeats: repeats, Queries: qs, Committee: committee, Threshold: threshold, Rows: rows, DataDir: dataDir, Compact: compact, Progress: progress})
					if err != nil {
						return err
					}
					outs = append(outs, benchOutput{Cell: cells[0], Queries: cells})
				}
			}
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if len(outs) == 1 {
					return enc.Encode(outs[0])
				}
				return enc.Encode(outs)
			}
			return writeBenchTable(cmd.OutOrStdout(), outs)
		},
	}
	f := c.Flags()
	f.IntSliceVar(&nodes, "nodes", []int{3}, "number of nodes (comma-separated for several)")
	f.IntSliceVar(&patients, "patients", []int{10_000}, "patients per node (comma-separated for several)")
	f.IntVar(&repeats, "repeats", 20, "timed runs per query and mode")
	f.IntVar(&rows, "rows", 0, "serve every node one node of this many condition rows on the embedded column store (a bulk import mapped from disk), instead of --patients")
	f.StringVar(&dataDir, "data-dir", "", "with --rows: keep the node's data directory here (empty or absent; default a temporary one)")
	f.IntVar(&committee, "committee", 0, "size K of the decryption committee (T = max(2, 2K/3) of it decrypt); 0: min(nodes, 10), -1: every node")
	f.StringVar(&query, "query", "", "only these queries: cohort, weekly-by-region, mean (comma-separated)")
	f.StringVar(&format, "format", "table", "table or json")
	f.IntVar(&threshold, "threshold", 0, "T, the decryptors of each release (0: max(2, 2K/3)); with T < K the members deal checked Shamir shares")
	f.BoolVar(&compact, "compact", false, "compact releases: decryptors get the sum, not the partials, and verify no proof of encryption (proofs off, to compare)")
	f.BoolVar(&grid, "grid", false, "run N = 3, 10, 30 by P = 10^4, 10^5, 10^6")
	f.BoolVar(&processes, "processes", false, "run the coordinator and every node as separate processes of this binary and report each one's CPU per query (from /proc; Linux)")
	f.DurationVar(&idle, "idle", 10*time.Second, "with --processes: how long to measure the daemons' idle CPU")
	f.StringVar(&profileDir, "profile", "", "with --processes: write CPU and allocation profiles of the coordinator and node-1 over a batch of the first query into this directory")
	return c
}

// benchProcesses is `fedstat bench --processes`: every size as a network of
// separate processes of this very binary.
func benchProcesses(cmd *cobra.Command, nodes, patients []int, repeats, committee int, qs []bench.Query, idle time.Duration, profileDir, format string, progress func(string)) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	var runs []*bench.ProcessRun
	for _, n := range nodes {
		for _, p := range patients {
			fmt.Fprintf(cmd.ErrOrStderr(), "bench: %d node processes x %d patients\n", n, p)
			dir := profileDir
			if dir != "" && (len(nodes) > 1 || len(patients) > 1) {
				dir = filepath.Join(profileDir, fmt.Sprintf("n%d-p%d", n, p))
			}
			r, err := bench.RunProcesses(cmd.Context(), bench.ProcessOptions{Binary: bin,
				Options: bench.Options{Nodes: n, Patients: p, Repeats: repeats, Queries: qs, Committee: committee, Progress: progress}, Idle: idle, ProfileDir: dir})
			if err != nil {
				return err
			}
			runs = append(runs, r)
		}
	}
	if format == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if len(runs) == 1 {
			return enc.Encode(runs[0])
		}
		return enc.Encode(runs)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tpatients/node\tquery\tp50 ms\tp95 ms\tcpu ms/query\tcoord cpu ms\tnode cpu ms\tmin node ms\tmax node ms\tupload/node\tnode read/q\tnode write/q\tnode disk/q\tidle cpu ms/s\t")
	for _, r := range runs {
		for _, c := range r.Queries {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%.1f\t\n", c.Nodes, c.Patients, c.Query, c.P50Ms, c.P95Ms,
				c.CPUMsPerQuery, c.CoordinatorCPUMs, c.NodeCPUMs, c.NodeCPUMinMs, c.NodeCPUMaxMs, kib(c.UploadBytesPerNode),
				kib(c.NodeReadBytes), kib(c.NodeWriteBytes), kib(c.NodeStorageBytes), r.IdleCPUMsPerSec)
		}
	}
	return tw.Flush()
}

func writeBenchTable(w io.Writer, outs []benchOutput) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tpatients/node\tquery\tslots\tp50 ms\tp95 ms\tplain p50\tplain p95\tenc/plain\tupload/node\tnode ms\tcoord ms\tcpu ms/query\t")
	for _, o := range outs {
		for _, c := range o.Queries {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.2fx\t%s\t%.1f\t%.1f\t%.1f\t\n", c.Nodes, c.Patients, c.Query, c.Slots,
				c.P50Ms, c.P95Ms, c.PlaintextP50Ms, c.PlaintextP95Ms, c.Ratio, kib(c.UploadBytesPerNode), c.NodeMs, c.CoordinatorMs, c.CPUMsPerQuery)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nnodes\tcommittee K\tthreshold T\tceremony ms\tceremony bytes/node\tceremony bytes/committee member\trows/node\tpeak RSS\t")
	for _, o := range outs {
		c := o.Cell
		rows, rss := "-", "-"
		if c.Rows > 0 {
			rows, rss = fmt.Sprint(c.Rows), fmt.Sprintf("%d MiB", c.PeakRSSMiB)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", c.Nodes, c.Committee, c.Threshold, c.CeremonyMs, kib(c.CeremonyBytesPerNode), kib(c.CeremonyBytesPerCommitteeMember), rows, rss)
	}
	return tw.Flush()
}

func kib(n int64) string { return fmt.Sprintf("%.0f KiB", float64(n)/1024) }
