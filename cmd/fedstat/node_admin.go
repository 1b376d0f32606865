package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// nodeQueryCommand is the admin's exact local answer: it opens the data
// directory directly, so it only works on the node's own machine (and not
// while the daemon has the directory open), and nothing of it is reachable
// over the network.
func nodeQueryCommand() *cobra.Command {
	var dataDir, keyFile, format, ref string
	var regions []string
	c := &cobra.Command{
		Use:   "query --data-dir DIR [--format table|json|csv] \"SQL\"",
		Short: "The node admin's exact local answer to a query (no noise; never leaves this machine)",
		Long: `Runs a query on this node's own data and prints the exact answer, without noise and
without spending privacy budget. It reads the data directory directly: it works only on
the node's machine, for its admin, and no network API can reach it. Stop the node
daemon first (a data directory is open in one process at a time).

Use it to check an import, or to compare with what the network releases.`,
		Example: `  fedstat node query --data-dir /var/lib/fedstat/node \
    "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return &usageError{"--data-dir is required"}
			}
			switch format {
			case "table", "json", "csv":
			default:
				return &usageError{fmt.Sprintf("--format %q: want table, json or csv", format)}
			}
			refDate := cdm.DateOf(time.Now())
			if ref != "" {
				d, err := cdm.ParseDate(ref)
				if err != nil {
					return &usageError{"--reference-date: " + err.Error()}
				}
				refDate = d
			}
			cat := plan.DefaultCatalogue()
			if len(regions) > 0 {
				cat.Regions = regions
			}
			tables, err := admin.OpenTables(cmd.Context(), dataDir, keyFile)
			if err != nil {
				return err
			}
			if len(regions) == 0 {
				cat.Regions = regionsIn(tables)
			}
			// The privacy parameters only shape the plan; nothing is noised.
			p, err := plan.Build(plan.Request{SQL: args[0], Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: refDate}, cat)
			if err != nil {
				return err
			}
			e, err := eval.Evaluate(cmd.Context(), p, tables)
			if err != nil {
				return err
			}
			r, err := dp.Exact(p, e)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return r.WriteJSON(cmd.OutOrStdout())
			case "csv":
				return r.WriteCSV(cmd.OutOrStdout())
			}
			return r.WriteTable(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the node's data directory (required)")
	f.StringVar(&keyFile, "key-file", "", "operator key file, if the store is encrypted")
	f.StringVar(&format, "format", "table", "table, json or csv")
	f.StringVar(&ref, "reference-date", "", "YYYY-MM-DD at which age is computed (default today)")
	f.StringSliceVar(&regions, "regions", nil, "region domain for GROUP BY region (default: the regions in the data)")
	return c
}

func regionsIn(t *cdm.Tables) []string {
	pt, ok := t.Table(cdm.TablePatients)
	if !ok {
		return nil
	}
	col := pt.Strings["region"]
	var out []string
	for _, v := range col.Dict.Values() {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// adminClient talks to a running node's admin socket.
func adminClient(dataDir string) *http.Client {
	sock := node.AdminSocket(dataDir)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func adminDo(dataDir, method, path string) ([]byte, error) {
	req, _ := http.NewRequest(method, "http://node"+path, nil)
	resp, err := adminClient(dataDir).Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node daemon's admin socket %s (is the node running?): %w", node.AdminSocket(dataDir), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, errors.New(strings.TrimSpace(string(b)))
	}
	return b, nil
}

func nodeApprovalCommands() []*cobra.Command {
	var dataDir string
	list := &cobra.Command{
		Use:   "approvals --data-dir DIR",
		Short: "List queries waiting for this node's approval (policy require_approval)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := adminDo(dataDir, http.MethodGet, "/approvals")
			if err != nil {
				return err
			}
			var items []struct {
				QueryID string    `json:"query_id"`
				Analyst string    `json:"analyst"`
				SQL     string    `json:"sql"`
				Epsilon float64   `json:"epsilon"`
				Rho     float64   `json:"rho"`
				Since   time.Time `json:"since"`
			}
			if err := json.Unmarshal(b, &items); err != nil {
				return err
			}
			if len(items) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no queries are waiting")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "QUERY ID\tANALYST\tEPSILON\tRHO\tWAITING\tSQL")
			for _, it := range items {
				fmt.Fprintf(tw, "%s\t%s\t%g\t%.4g\t%s\t%s\n", it.QueryID, it.Analyst, it.Epsilon, it.Rho, time.Since(it.Since).Round(time.Second), it.SQL)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory (required)")
	decide := func(use, short string, approve bool) *cobra.Command {
		var dir string
		c := &cobra.Command{
			Use:   use + " --data-dir DIR QUERY_ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				path := "/approvals/" + args[0] + "/deny"
				if approve {
					path = "/approvals/" + args[0] + "/approve"
				}
				if _, err := adminDo(dir, http.MethodPost, path); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %sd\n", args[0], use)
				return nil
			},
		}
		c.Flags().StringVar(&dir, "data-dir", "", "the node's data directory (required)")
		return c
	}
	return []*cobra.Command{list, decide("approve", "Approve a waiting query", true), decide("deny", "Deny a waiting query", false)}
}

func tokenCommand() *cobra.Command {
	var file, name, role string
	c := &cobra.Command{
		Use:   "token --file tokens.json --name NAME --role ROLE",
		Short: "Make a bearer token for an analyst without a certificate",
		Long: `Makes a random bearer token, prints it once, and appends its SHA-256 hash (never the
token) to the coordinator's tokens file (tokens_file in its configuration; restart the
coordinator to load it). The analyst then uses: fedstat query --http URL --token TOKEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := pki.ParseRole(role)
			if err != nil {
				return &usageError{err.Error()}
			}
			if err := pki.CheckName(name); err != nil {
				return &usageError{err.Error()}
			}
			var entries []coordinator.TokenEntry
			if b, err := os.ReadFile(file); err == nil {
				if err := json.Unmarshal(b, &entries); err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			tok := "fst_" + base64.RawURLEncoding.EncodeToString(raw)
			entries = append(entries, coordinator.TokenEntry{Name: name, Role: r, SHA256: coordinator.HashToken(tok)})
			b, _ := json.MarshalIndent(entries, "", "  ")
			if err := os.WriteFile(file, append(b, '\n'), 0o600); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	c.Flags().StringVar(&file, "file", "tokens.json", "the coordinator's tokens file")
	c.Flags().StringVar(&name, "name", "", "the analyst's name (required)")
	c.Flags().StringVar(&role, "role", "analyst", "analyst, researcher or operator")
	return c
}
