package main

import (
	"bytes"
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

	"github.com/fedstat/fedstat/cmd/fedstat/internal/daemon"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/queries/plan"
)

// nodeQueryCommand is the admin's exact local answer. With the daemon
// stopped it opens the data directory directly; with the daemon running
// it asks the daemon over its admin socket. Either way it works only on
// the node's own machine, for the node's own user, and nothing of it is
// reachable over the network.
func nodeQueryCommand() *cobra.Command {
	var dataDir, keyFile, format, ref, cfgPath string
	var regions []string
	c := &cobra.Command{
		Use:   "query --data-dir DIR [--format table|json|csv] \"SQL\"",
		Short: "The node admin's exact local answer to a query (no noise; never leaves this machine)",
		Long: `Runs a query on this node's own data and prints the exact answer, without noise and
without spending privacy budget. Use it to check an import, or to compare with what the
network releases.

It works only on the node's machine, for its admin: with the node daemon stopped it
reads the data directory directly; with the daemon running it asks the daemon through
its admin socket (DIR/admin.sock, mode 0600: only the node's own user can use it, and
nothing about it is reachable over the network), which answers from the data the node
serves. No network API can reach this answer.

DIR must be a node's data directory with its store (DIR/kv): a path that does not
exist, an empty directory or someone else's directory is refused, and nothing is
created.

Tables: patients, conditions, observations, encounters, medications, procedures,
immunizations, and the study tables and value sets (code IN VALUESET 'name') of the
network catalogue: the running daemon plans with its own; with the daemon stopped, give
the node's config with --config to plan with the same catalogue (without it, none).
See docs/query-language.md.`,
		Example: `  # how many patients have type 2 diabetes (SNOMED 44054006)?
  fedstat node query --data-dir /var/lib/fedstat/node \
    "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"

  # patients by region and sex, as CSV, ages at a fixed date
  fedstat node query --data-dir /var/lib/fedstat/node --format csv --reference-date 2026-01-01 \
    "SELECT region, sex, COUNT(*) FROM patients GROUP BY region, sex"

  # the same question with the daemon running: nothing to stop, same command
  fedstat node query --data-dir /var/lib/fedstat/node "SELECT COUNT(*) FROM patients"

  # daemon stopped, a value set of the network catalogue
  fedstat node query --config /etc/fedstat/node.toml \
    "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code IN VALUESET 'diabetes'"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cat := plan.DefaultCatalogue()
			if cfgPath != "" {
				cfg, err := loadNodeConfig(cmd, cfgPath, &dataDir, &keyFile)
				if err != nil {
					return err
				}
				c, err := daemon.NetworkCatalogue(&cfg.Common)
				if err != nil {
					return fmt.Errorf("node query: %w", err)
				}
				cat = c
			}
			if dataDir == "" {
				return &usageError{"node query: --data-dir (or --config) is required"}
			}
			switch format {
			case "table", "json", "csv":
			default:
				return &usageError{fmt.Sprintf("--format %q: want table, json or csv", format)}
			}
			if ref != "" {
				if _, err := cdm.ParseDate(ref); err != nil {
					return &usageError{"--reference-date: " + err.Error()}
				}
			}
			if err := admin.CheckDataDir(dataDir, admin.NeedStore); err != nil {
				return fmt.Errorf("node query: %w", err)
			}
			q := admin.Query{SQL: args[0], ReferenceDate: ref, Regions: regions}
			if daemonAnswers(dataDir) {
				body, _ := json.Marshal(admin.LocalQuery{Query: q, Format: format})
				b, err := adminRequest(cmd.Context(), dataDir, http.MethodPost, "/local/query", body, localQueryTimeout)
				if err != nil {
					return fmt.Errorf("node query (asked the running node daemon): %w", err)
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			tables, err := admin.OpenTables(cmd.Context(), dataDir, keyFile)
			if err != nil {
				return err
			}
			r, err := admin.ExactAnswer(cmd.Context(), q, *cat, node.TablesOf(tables), tables)
			if err != nil {
				return err
			}
			return admin.WriteResult(cmd.OutOrStdout(), r, format)
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", "", "the node's data directory (required unless --config gives it)")
	f.StringVar(&keyFile, "key-file", "", "operator key file, if the store is encrypted (not needed while the daemon runs)")
	f.StringVar(&cfgPath, "config", "", "the node's config: its data_dir, key_file and network catalogue (studies, value sets) when the daemon is stopped")
	f.StringVar(&format, "format", "table", "table, json or csv")
	f.StringVar(&ref, "reference-date", "", "YYYY-MM-DD at which age is computed (default today)")
	f.StringSliceVar(&regions, "regions", nil, "region domain for GROUP BY region (default: the regions in the data)")
	return c
}

// localQueryTimeout bounds an exact query asked of the running daemon (a
// large node's scan takes a while; the admin can interrupt it).
const localQueryTimeout = 10 * time.Minute

// daemonAnswers reports whether a node daemon listens on dataDir's admin
// socket. A socket file left by a daemon that was killed does not answer.
func daemonAnswers(dataDir string) bool {
	c, err := net.DialTimeout("unix", node.AdminSocket(dataDir), 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// adminClient talks to a running node's admin socket.
func adminClient(dataDir string, timeout time.Duration) *http.Client {
	sock := node.AdminSocket(dataDir)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func adminDo(dataDir, method, path string) ([]byte, error) {
	return adminRequest(context.Background(), dataDir, method, path, nil, 10*time.Second)
}

// adminRequest makes one request of the daemon's admin socket; an answer
// that is not a success is an error with the daemon's text.
func adminRequest(ctx context.Context, dataDir, method, path string, body []byte, timeout time.Duration) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://node"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient(dataDir, timeout).Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node daemon's admin socket %s (is the node running?): %w", node.AdminSocket(dataDir), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/local/") {
		return nil, fmt.Errorf("the node daemon on %s does not answer %s (an older fedstat version?): stop it and run the command again", dataDir, path)
	}
	if resp.StatusCode >= 300 {
		return nil, errors.New(strings.TrimSpace(string(b)))
	}
	return b, nil
}

// socketDir refuses, for `fedstat node what`, a data directory that is
// missing or not a node's before its admin socket is looked for, so that
// a mistyped path is named as such.
func socketDir(what, dataDir string) error {
	if dataDir == "" {
		return &usageError{"node " + what + ": --data-dir is required"}
	}
	if err := admin.CheckDataDir(dataDir, admin.NeedNode); err != nil {
		return fmt.Errorf("node %s: %w", what, err)
	}
	return nil
}

func nodeApprovalCommands() []*cobra.Command {
	var dataDir string
	list := &cobra.Command{
		Use:   "approvals --data-dir DIR",
		Short: "List queries waiting for this node's approval (policy require_approval)",
		Long: `Lists the queries that wait for this node admin's decision (policy require_approval =
true): query id, analyst, privacy cost, how long it has waited and the SQL. It asks the
running node daemon through its admin socket (DIR/admin.sock, mode 0600: only the node's
own user); the daemon must be running. Decide with ` + "`fedstat node approve`" + ` or ` + "`fedstat node deny`" + `
before the coordinator's deadline.`,
		Example: `  fedstat node approvals --data-dir /var/lib/fedstat/node
  fedstat node approve   --data-dir /var/lib/fedstat/node q-3f2a...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := socketDir("approvals", dataDir); err != nil {
				return err
			}
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
			Long: short + ` (listed by ` + "`fedstat node approvals`" + `), through the running daemon's admin socket
(DIR/admin.sock, mode 0600: only the node's own user). The decision is written to the audit log.`,
			Example: "  fedstat node " + use + " --data-dir /var/lib/fedstat/node q-3f2a...",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := socketDir(use, dir); err != nil {
					return err
				}
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

// loadNodeConfig reads the node config at path for an admin command that
// takes --config: its data_dir and key_file fill --data-dir and --key-file
// unless those were given on the command line.
func loadNodeConfig(cmd *cobra.Command, path string, dataDir, keyFile *string) (*config.Node, error) {
	var cfg config.Node
	if err := config.Load(path, &cfg, nil); err != nil {
		return nil, err
	}
	if !cmd.Flags().Changed("data-dir") {
		*dataDir = cfg.DataDir
	}
	if !cmd.Flags().Changed("key-file") {
		*keyFile = cfg.KeyFile
	}
	return &cfg, nil
}
