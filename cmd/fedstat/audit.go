package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/audit"
)

// auditCommand returns `fedstat audit`.
func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Check and read hash-chained audit logs",
		Long: `Every fedstat party (node, coordinator) keeps an append-only audit log: one JSON line
per step it took (who asked what, what was debited, what was released), each entry
carrying the SHA-256 hash of the one before. "audit verify" checks a log and names
the first bad entry; "audit show" prints entries. docs/audit.md describes the format.`,
	}
	c.AddCommand(auditVerifyCommand(), auditShowCommand())
	return c
}

func auditVerifyCommand() *cobra.Command {
	var expectHead string
	c := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a log's hash chain and name the first bad entry",
		Long: `verify reads the whole log and checks every entry: well-formed canonical JSON, the
hash over its content, seq contiguous from 1, prev equal to the hash of the entry
before, time strictly increasing, the file ending in a newline.

On success it prints "ok: N entries, head HASH" and exits 0. Write the head down
somewhere else (another party's log, your notes): removing entries from the end of
a log leaves a valid shorter chain, and only a head recorded elsewhere shows it.
--expect-head HASH checks that an entry with that hash (a head recorded earlier) is
still in the chain, so the log was neither cut below it nor rewritten before it.

On failure it prints the first bad entry (line, seq, reason) to stderr and exits 1.`,
		Example: `  fedstat audit verify /var/lib/fedstat/node/audit.log
  fedstat audit verify audit.log && echo intact
  fedstat audit verify audit.log --expect-head 944f0f51429ea01c50f3209cdab87e95c4135ab8edb2503d719eb60f03ebc224`,
		Args: auditArgs(1, "audit verify FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, head, err := audit.VerifyHead(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if expectHead != "" {
				if _, err := f.Seek(0, 0); err != nil {
					return err
				}
				found := 0
				err := audit.Scan(f, func(_ int, e audit.Entry) error {
					if e.Hash == strings.ToLower(expectHead) {
						found = int(e.Seq)
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				if found == 0 {
					return fmt.Errorf("%s: the %d entries verify, but no entry has the expected head %s: the log was cut below it or rewritten", args[0], n, expectHead)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok: %d entries, head %s; expected head found at seq %d\n", n, head, found)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d entries, head %s\n", n, head)
			return nil
		},
	}
	c.Flags().StringVar(&expectHead, "expect-head", "", "hash of an entry recorded earlier that must still be in the chain")
	return c
}

func auditShowCommand() *cobra.Command {
	var (
		queryID string
		action  string
		actor   string
		format  string
	)
	c := &cobra.Command{
		Use:   "show FILE",
		Short: "Print a log's entries, optionally only one query's",
		Long: `show prints the entries of a log in order: as a table (seq, time, actor, action, query
id, details), or with --format json as JSON lines exactly as the log holds them.
Filters select entries by query id, action or actor.

show checks each entry it prints, and the whole chain after printing: if the log does
not verify it says so on stderr and exits 1 (run "audit verify" for the details).`,
		Example: `  fedstat audit show audit.log
  fedstat audit show audit.log --query-id q-20261123-0042
  fedstat audit show audit.log --action budget.debit --format json | jq .details`,
		Args: auditArgs(1, "audit show FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return &usageError{fmt.Sprintf("audit show: --format %q: want table or json", format)}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if format == "table" {
				fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tQUERY\tDETAILS")
			}
			shown := 0
			scanErr := audit.Scan(f, func(_ int, e audit.Entry) error {
				if (queryID != "" && e.QueryID != queryID) || (action != "" && e.Action != action) || (actor != "" && e.Actor != actor) {
					return nil
				}
				shown++
				if format == "json" {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(out, "%s\n", b)
					return err
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339Nano), e.Actor, e.Action, e.QueryID, auditDetailsText(e.Details))
				return nil
			})
			if format == "table" {
				tw.Flush()
			}
			if scanErr != nil {
				return fmt.Errorf("%s: %w", args[0], scanErr)
			}
			if _, err := f.Seek(0, 0); err != nil {
				return err
			}
			if _, err := audit.Verify(f); err != nil {
				return fmt.Errorf("%s does not verify (entries above may be altered): %w", args[0], err)
			}
			if shown == 0 && format == "table" {
				fmt.Fprintln(cmd.ErrOrStderr(), "no matching entries")
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&queryID, "query-id", "", "show only this query's entries")
	fl.StringVar(&action, "action", "", "show only entries with this action")
	fl.StringVar(&actor, "actor", "", "show only entries by this actor")
	fl.StringVar(&format, "format", "table", "output format: table or json")
	return c
}

// auditDetailsText renders details as key=value pairs in key order.
func auditDetailsText(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := d[k]
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		default:
			b, _ := json.Marshal(v)
			s = string(b)
		}
		parts = append(parts, k+"="+s)
	}
	return strings.Join(parts, " ")
}

// auditArgs is cobra.ExactArgs with a usage error (exit status 2).
func auditArgs(n int, usage string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{fmt.Sprintf("usage: fedstat %s", usage)}
		}
		return nil
	}
}
