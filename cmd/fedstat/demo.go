package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
)

func demoCommand() *cobra.Command {
	var (
		o        demo.RunOptions
		nodes    int
		data     string
		patients int
		seed     int64
		verbose  bool
		noExact  bool
		serve    bool
		outbound bool
		envFile  string
	)
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole private network on this machine and answer a query",
		Long: `Runs a complete fedstat network on loopback, with nothing to set up:

  1. makes a throw-away network CA and certificates (as 'fedstat ca' does),
  2. starts a coordinator and --nodes nodes speaking gRPC with mutual TLS,
  3. gives each node its own data: synthetic patients generated on the spot
     (--patients per node, enough that the answers are real numbers; or, with
     --data synthea, the Synthea FHIR bundles in
     ../shared/data/fhir-r4-synthea/bundles.tar.gz split by city),
  4. runs the collective key generation (multiparty BGV, Lattigo v5) among the
     nodes, with a T-of-N threshold,
  5. runs the query: each node counts locally, adds its share of Gaussian noise,
     encrypts under the collective key and signs; the coordinator adds the
     ciphertexts without being able to read them; T nodes return key-switch
     shares and only the total is decrypted,
  6. prints the released answer with its 95% interval, the privacy cost, the
     nodes that answered and the time of each phase.

For comparison only, the demo also prints the exact answer computed in the clear
(a real network has no place where that could be computed).`,
		Example: `  fedstat demo
  fedstat demo --nodes 5 --threshold 3
  fedstat demo --serve --env-file /tmp/fedstat.env    # then, in another shell:
      source /tmp/fedstat.env && fedstat query "SELECT COUNT(*) FROM patients"
  fedstat demo --data synthea
  fedstat demo --patients 20000 \
      --query "SELECT COUNT(*) FROM patients WHERE sex = 'female' AND age BETWEEN 40 AND 64"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 2 {
				return &usageError{"--nodes must be at least 2"}
			}
			if o.Threshold == 0 {
				o.Threshold = nodes - 1
			}
			if o.Threshold < 1 || o.Threshold > nodes {
				return &usageError{fmt.Sprintf("--threshold must lie in 1..%d", nodes)}
			}
			if o.MinNodes == 0 {
				o.MinNodes = nodes
			}
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			recs, note, err := demo.LoadData(cmd.Context(), data, nodes, patients, seed)
			if err != nil {
				return err
			}
			o.Data, o.DataNote = recs, note
			o.ShowExact = !noExact
			if serve {
				return serveDemo(cmd, o, envFile, outbound)
			}
			return demo.Run(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.IntVar(&o.Threshold, "threshold", 0, "decryption threshold T: any T nodes can release a total (default nodes-1)")
	f.IntVar(&o.MinNodes, "min-nodes", 0, "partials a release needs (default: all nodes). With m partials and threshold T,\neach node adds noise of variance sigma^2/(m-T+1): a larger m means less noise")
	f.Float64Var(&o.Epsilon, "epsilon", 1.0, "privacy loss epsilon of each query")
	f.Float64Var(&o.Delta, "delta", 1e-6, "privacy loss delta of each query (Gaussian noise)")
	f.StringArrayVar(&o.Queries, "query", nil, "query to run (repeatable; default: the type-2 diabetes cohort count)")
	f.StringVar(&data, "data", "synthetic", "synthetic, synthea (the Synthea bundles of ../shared/data, a few hundred patients), or auto (synthea when present)")
	f.IntVar(&patients, "patients", demo.DefaultPatients, "synthetic patients per node")
	f.Int64Var(&seed, "seed", 1, "seed of the synthetic data")
	f.StringVar(&o.Dir, "dir", "", "keep the network's files (PKI, stores) in this directory instead of a temporary one")
	f.StringVar(&o.Params, "params", "", "homomorphic parameter set (default: the production set)")
	f.BoolVar(&verbose, "verbose", false, "print the daemons' logs to stderr")
	f.BoolVar(&noExact, "no-exact", false, "do not print the exact answer computed in the clear")
	f.BoolVar(&serve, "serve", false, "keep the network running as separate processes until Ctrl-C, for fedstat query from another shell")
	f.StringVar(&envFile, "env-file", "", "with --serve: where to write the shell env file (default DIR/env)")
	f.BoolVar(&outbound, "outbound", false, "with --serve: run the nodes outbound-only ([network] mode = \"outbound\"): they dial the coordinator\nand listen on nothing but loopback ops endpoints")
	return c
}

// serveDemo runs the demo network as separate processes until interrupted.
func serveDemo(cmd *cobra.Command, o demo.RunOptions, envFile string, outbound bool) error {
	out := cmd.OutOrStdout()
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fedstat-serve-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if envFile == "" {
		envFile = filepath.Join(dir, "env")
	}
	fmt.Fprintf(out, "fedstat demo --serve: a network of 1 coordinator and %d nodes as separate processes\n  data: %s\n", len(o.Data), o.DataNote)
	// A synthetic survival study beside the patients, for `fedstat stats`.
	study, err := demo.WriteSurvivalStudy(dir, len(o.Data), 300)
	if err != nil {
		return err
	}
	p, err := demo.Serve(cmd.Context(), demo.ServeOptions{Binary: bin, Dir: dir, Data: o.Data, Threshold: o.Threshold, MinNodes: o.MinNodes,
		Studies: []demo.ServeStudy{study}, Outbound: outbound, Progress: func(s string) { fmt.Fprintln(out, "  "+s) }})
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := p.WriteEnv(envFile); err != nil {
		return err
	}
	seriesNote := "  fedstat series show " + demoSeries + "      # a standing weekly series, released by the coordinator\n  fedstat forecast " + demoSeries + "         # its forecast, 1-4 weeks ahead\n"
	if err := createDemoSeries(p); err != nil {
		seriesNote = "  (the demo's standing series could not be registered: " + err.Error() + ")\n"
	}
	fmt.Fprintf(out, `
The network is running. In another shell:

  source %s
  fedstat query "%s"
`+seriesNote+`  fedstat nodes
  fedstat budget
  fedstat stats km --schema %s --table survival --time time --status status --event 2 --strata sex --width 30 --epsilon 2
  curl --cacert "$FEDSTAT_CA" -H "Authorization: Bearer $FEDSTAT_TOKEN" "$FEDSTAT_HTTP/v1/nodes"

Dashboard: %s (sign in with the token in FEDSTAT_TOKEN; the browser warns
about the demo's own CA, %s)
Coordinator: gRPC %s, HTTP/JSON https://%s, metrics http://%s/metrics
Press Ctrl-C to stop the network.
`, envFile, demo.CohortQuery, study.Schema, p.Env["FEDSTAT_DASHBOARD"], p.Env["FEDSTAT_CA"], p.GRPC, p.HTTP, p.Ops)
	select {
	case <-cmd.Context().Done():
	case <-p.Coordinator.Exited():
		return fmt.Errorf("the coordinator stopped; see %s", filepath.Join(dir, "coordinator.log"))
	}
	fmt.Fprintln(out, "stopping the network")
	return nil
}

// demoSeries is the standing series a served demo registers: weekly new
// COVID-19 patients by region for a year from July 2021, over the synthetic
// population's Delta and Omicron waves (real numbers, not small counts).
const demoSeries = "covid-weekly"

// createDemoSeries registers demoSeries as the demo's analyst through the
// HTTP/JSON API; its weeks are long over, so the coordinator releases them
// all at once (a backfill) and the dashboard's Series page shows them.
func createDemoSeries(p *demo.Processes) error {
	hc, err := p.HTTPClient(30 * time.Second)
	if err != nil {
		return err
	}
	body := `{"spec": {"name": "` + demoSeries + `", "table": "conditions", "where": "code = '840539006'", "date_column": "onset_date",
		"by": "region", "every": "week", "start": "2021-07-05", "periods": 52, "epsilon": 1}, "alerts": [{"rule": "C2"}]}`
	req, err := http.NewRequest(http.MethodPost, "https://"+p.HTTP+"/v1/series", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.Env["FEDSTAT_TOKEN"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}
