package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/pki"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// Environment variables the analyst commands read (flags override them);
// `fedstat demo --serve` writes them into its env file.
const (
	envCoordinator = "FEDSTAT_COORDINATOR" // gRPC address of the coordinator
	envHTTP        = "FEDSTAT_HTTP"        // base URL of the HTTP/JSON API
	envCert        = "FEDSTAT_CERT"
	envKey         = "FEDSTAT_KEY"
	envCA          = "FEDSTAT_CA"
	envToken       = "FEDSTAT_TOKEN"
)

// clientFlags are how an analyst reaches the coordinator.
type clientFlags struct {
	coordinator, httpURL, cert, key, ca, token, serverName string
	// httpCert lets the command reach the HTTP/JSON API with the
	// certificate (mutual TLS) when no gRPC address is given: only for
	// commands that read, since the Go client signs queries over gRPC only.
	httpCert bool
}

func (f *clientFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.coordinator, "coordinator", "", "coordinator gRPC address host:port (env "+envCoordinator+")")
	fl.StringVar(&f.httpURL, "http", "", "coordinator HTTP/JSON API base URL, used with --token (env "+envHTTP+")")
	fl.StringVar(&f.cert, "cert", "", "your certificate (env "+envCert+")")
	fl.StringVar(&f.key, "key", "", "your private key (env "+envKey+")")
	fl.StringVar(&f.ca, "ca", "", "the network CA certificate (env "+envCA+")")
	fl.StringVar(&f.token, "token", "", "bearer token instead of a certificate (env "+envToken+")")
	fl.StringVar(&f.serverName, "server-name", "coordinator", "name in the coordinator's certificate")
}

func (f *clientFlags) fromEnv() {
	def := func(v *string, env string) {
		if *v == "" {
			*v = os.Getenv(env)
		}
	}
	def(&f.coordinator, envCoordinator)
	def(&f.httpURL, envHTTP)
	def(&f.cert, envCert)
	def(&f.key, envKey)
	def(&f.ca, envCA)
	def(&f.token, envToken)
}

// connect dials the coordinator as the flags (or the environment) say: gRPC
// with a certificate, or the HTTP/JSON API with a bearer token (or, for a
// command that sets httpCert, with a certificate: mutual TLS).
func (f *clientFlags) connect() (*client.Client, error) {
	f.fromEnv()
	useCert := f.coordinator != "" && f.cert != "" && f.key != ""
	if f.token != "" && !useCert {
		if f.httpURL == "" {
			return nil, &usageError{"--token needs --http (or " + envHTTP + "): the HTTP/JSON API's base URL"}
		}
		pool := x509.NewCertPool()
		if f.ca != "" {
			ca, err := pki.LoadCert(f.ca)
			if err != nil {
				return nil, err
			}
			pool.AddCert(ca)
		}
		return client.Dial(client.Config{HTTPURL: f.httpURL, Token: f.token, RootCAs: pool, ServerName: f.serverName})
	}
	if f.httpCert && f.coordinator == "" && f.httpURL != "" && f.cert != "" && f.key != "" && f.ca != "" {
		// HTTPS with the client certificate (mutual TLS), as the Python
		// and R clients connect with one.
		id, err := pki.LoadIdentity(f.cert, f.key, f.ca)
		if err != nil {
			return nil, err
		}
		return client.Dial(client.Config{HTTPURL: f.httpURL, Identity: id, ServerName: f.serverName})
	}
	if f.coordinator == "" || f.cert == "" || f.key == "" || f.ca == "" {
		return nil, &usageError{"say where the coordinator is and who you are: --coordinator, --cert, --key and --ca " +
			"(or " + envCoordinator + ", " + envCert + ", " + envKey + ", " + envCA + "; `fedstat demo --serve` writes them), or --token with --http"}
	}
	id, err := pki.LoadIdentity(f.cert, f.key, f.ca)
	if err != nil {
		return nil, err
	}
	return client.Dial(client.Config{Address: f.coordinator, Identity: id, ServerName: f.serverName})
}

func queryCommand() *cobra.Command {
	var (
		cf       clientFlags
		spec     typesv1.QuerySpec
		format   string
		deadline time.Duration
		// approvalWait: how long the query may wait for node admins'
		// approvals (0: the network's default).
		approvalWait time.Duration
		quiet        bool
		laplace      bool
		explain      bool
		fresh        bool
	)
	c := &cobra.Command{
		Use:   "query [flags] \"SQL\"",
		Short: "Run a query on the network and print the released result",
		Long: `Sends a query to the coordinator, shows which nodes have answered while it waits,
and prints the differentially private result with its 95% intervals. At a node
whose admin must approve each query, the query waits (up to --approval-wait) and
shows "waiting for approval at NODE" meanwhile.

The query language is a small SQL dialect over the common data model (patients,
conditions, observations, encounters, medications); see docs/query-language.md.
Each query spends privacy budget (--epsilon, --delta) at every node that answers.
The same question twice costs once: if you had it released before (same SQL,
epsilon, delta, mechanism and reference date) and no node's data changed since,
that release answers it and nothing is charged; --fresh asks the nodes again.

The coordinator and your credentials come from flags or environment variables
(` + envCoordinator + `, ` + envCert + `, ` + envKey + `, ` + envCA + `; or ` + envToken + ` with ` + envHTTP + `).
` + "`fedstat demo --serve`" + ` starts a network and writes them into an env file.`,
		Example: `  fedstat query "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"
  # what it would cost and how wide its interval would be, without spending anything
  fedstat query --explain "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"
  fedstat query --epsilon 0.5 --format csv \
    "SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions
     WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30' GROUP BY week, region"
  # across linked agencies (a network with [linkage]; docs/linkage.md): hospitals x civil registry
  fedstat query "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'
     AND patient_id IN (SELECT patient_id FROM deaths WHERE death_date BETWEEN '2023-01-01' AND '2023-12-31')"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "table", "json", "csv":
			default:
				return &usageError{fmt.Sprintf("--format %q: want table, json or csv", format)}
			}
			if approvalWait != 0 {
				if approvalWait < time.Second || approvalWait%time.Second != 0 {
					return &usageError{fmt.Sprintf("--approval-wait %s: want a whole number of seconds, at least 1s (e.g. 72h)", approvalWait)}
				}
				spec.ApprovalWaitSeconds = int64(approvalWait / time.Second)
			}
			c, err := cf.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			spec.Sql = args[0]
			if laplace {
				spec.Mechanism = typesv1.Mechanism_MECHANISM_LAPLACE
			}
			if explain {
				x, err := c.Explain(cmd.Context(), &spec)
				if err != nil {
					return err
				}
				if format == "json" {
					b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(x)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
					return err
				}
				printExplanation(cmd.OutOrStdout(), x)
				return nil
			}
			var progress func(*coordinatorv1.QueryStatus)
			if !quiet {
				progress = demo.ProgressPrinter(cmd.ErrOrStderr())
			}
			st, err := c.Run(cmd.Context(), &spec, client.RunOptions{Deadline: deadline, Progress: progress, Fresh: fresh})
			if err != nil {
				return err
			}
			if from := st.GetReusedFrom(); from != "" && !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "query %s: the same question as query %s, and no node's data changed since: answered from that release, charged nothing (--fresh asks again)\n", st.QueryId, from)
			}
			r := client.Result(st.GetResult())
			out := cmd.OutOrStdout()
			switch format {
			case "json":
				err = r.WriteJSON(out)
			case "csv":
				err = r.WriteCSV(out)
			default:
				err = r.WriteTable(out)
			}
			if err != nil {
				return err
			}
			// The query's id goes to stderr in every format, so that a script
			// can fetch the same release again (GET /v1/queries/{id}).
			if !quiet {
				fmt.Fprintf(cmd.ErrOrStderr(), "query %s: %d nodes answered\n", st.QueryId, st.GetResult().GetNodes())
			}
			return nil
		},
	}
	cf.add(c)
	f := c.Flags()
	f.Float64Var(&spec.Epsilon, "epsilon", coordinator.DefaultEpsilon, "privacy loss epsilon of this query")
	f.Float64Var(&spec.Delta, "delta", coordinator.DefaultDelta, "privacy loss delta (Gaussian noise)")
	f.BoolVar(&laplace, "laplace", false, "pure epsilon-DP with Laplace noise (delta unused)")
	f.Int32Var(&spec.MinNodes, "min-nodes", 0, "partials the release needs (default: the network's)")
	f.StringVar(&spec.ReferenceDate, "reference-date", "", "YYYY-MM-DD at which age is computed (default today)")
	f.StringVar(&format, "format", "table", "table, json or csv")
	f.DurationVar(&deadline, "deadline", 0, "how long the coordinator waits for nodes (default: the network's)")
	f.DurationVar(&approvalWait, "approval-wait", 0, "how long the query may wait for the admins of nodes that require approval, from submission (default: the network's, often 24h; its max_approval_wait caps it)")
	f.BoolVar(&quiet, "quiet", false, "do not show progress on stderr")
	f.BoolVar(&fresh, "fresh", false, "ask the nodes again at full price, even if you had the same question released before and no node's data changed (by default that release answers it, charged nothing)")
	f.BoolVar(&explain, "explain", false, "do not run the query: show its plan, its cost at each node and the noise its release would carry (charges nothing)")
	return c
}

// printExplanation prints what a query would cost and carry.
func printExplanation(w io.Writer, x *coordinatorv1.Explanation) {
	fmt.Fprintf(w, "plan: %s\n", x.GetPlan())
	fmt.Fprintf(w, "kind %s, %d released cells\n", x.GetKind(), x.GetCells())
	var ids []string
	for _, n := range x.GetNodes() {
		ids = append(ids, n.GetNodeId())
	}
	fmt.Fprintf(w, "cost at each node that answers: rho %.4g zCDP (epsilon %g, delta %g): %s\n", x.GetRho(), x.GetEpsilon(), x.GetDelta(), strings.Join(ids, ", "))
	if len(x.GetNoise()) > 0 {
		fmt.Fprintf(w, "noise of each released total (%d partials):\n", x.GetAssumedNodes())
		for _, n := range x.GetNoise() {
			clip := ""
			if n.GetCount() {
				clip = ", clipped at 0 below"
			}
			fmt.Fprintf(w, "  %s: sd %.3g, 95%% interval ±%.3g%s\n", n.GetMeasure(), n.GetSd(), n.GetHalfWidth(), clip)
		}
	}
	for _, note := range x.GetNotes() {
		fmt.Fprintf(w, "note: %s\n", note)
	}
	fmt.Fprintln(w, "nothing was run or charged")
}

func nodesCommand() *cobra.Command {
	var cf clientFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "nodes",
		Short: "List the network's nodes: liveness, key epoch, data summary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(r)
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key epoch %d, threshold %d of a decryption committee of %d\n", r.Epoch, r.Threshold, r.Committee)
			printCeremony(cmd.OutOrStdout(), r.GetCeremony())
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tALIVE\tEPOCH\tCOMMITTEE\tPATIENTS\tTRANSPORT\tADDRESS\tLAST SEEN")
			for _, n := range r.Nodes {
				seen := "never"
				if n.LastSeenUnixMs > 0 {
					seen = time.UnixMilli(n.LastSeenUnixMs).Format(time.RFC3339)
				}
				committee := "-"
				if n.OnCommittee {
					committee = "yes"
				}
				fmt.Fprintf(tw, "%s\t%v\t%d\t%s\t%d\t%s\t%s\t%s\n", n.NodeId, n.Alive, n.Epoch, committee, n.GetSummary().GetPatients(), n.Transport, n.Address, seen)
			}
			return tw.Flush()
		},
	}
	cf.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// printCeremony prints what the key ceremonies are doing when it is not
// simply idle, and the members that cannot do their part.
func printCeremony(w io.Writer, cs *coordinatorv1.KeyCeremonyStatus) {
	if st := cs.GetState(); st != "" && st != "idle" {
		fmt.Fprintf(w, "key ceremony: %s: %s\n", st, cs.GetReason())
		if cs.GetFailures() > 0 {
			fmt.Fprintf(w, "  %d failed attempt(s), the last at %s: %s\n", cs.GetFailures(),
				time.UnixMilli(cs.GetLastAttemptUnixMs()).Format(time.RFC3339), cs.GetLastError())
		}
		if cs.GetNextAttemptUnixMs() > 0 {
			fmt.Fprintf(w, "  next attempt at %s\n", time.UnixMilli(cs.GetNextAttemptUnixMs()).Format(time.RFC3339))
		}
	}
	for _, m := range cs.GetMembers() {
		what := "cannot do its part"
		if m.GetExcluded() {
			what = "excluded from key epochs"
		}
		fmt.Fprintf(w, "%s %s: %s\n", m.GetNodeId(), what, m.GetProblem())
	}
}

func budgetCommand() *cobra.Command {
	var cf clientFlags
	var analyst string
	var asJSON bool
	c := &cobra.Command{
		Use:   "budget",
		Short: "Show your privacy budget at every node",
		Long: `Shows the privacy budget you have spent and have left at every node, as each node's
own ledger says (the nodes are the authority; zCDP rho, with epsilon at delta 1e-6).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := c.Budget(cmd.Context(), analyst)
			if err != nil {
				return err
			}
			if asJSON {
				b, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.Marshal(r)
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "budget of %s\n", r.Analyst)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tSPENT RHO\tLIMIT RHO\tLEFT (EPSILON AT DELTA 1e-6)\tNODE TOTAL SPENT/LIMIT")
			for _, n := range r.Nodes {
				if n.Error != "" {
					fmt.Fprintf(tw, "%s\t-\t-\t-\t(%s)\n", n.NodeId, n.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.3g\t%.4g/%.4g\n", n.NodeId, n.SpentRho, n.LimitRho, epsilonOf(n.LimitRho-n.SpentRho, 1e-6), n.TotalSpentRho, n.TotalLimitRho)
			}
			return tw.Flush()
		},
	}
	cf.add(c)
	c.Flags().StringVar(&analyst, "analyst", "", "another analyst's budget (operators only)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// epsilonOf converts zCDP rho to epsilon at delta.
func epsilonOf(rho, delta float64) float64 {
	if rho <= 0 {
		return 0
	}
	return rho + 2*math.Sqrt(rho*math.Log(1/delta))
}
