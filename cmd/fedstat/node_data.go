package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/admin"
)

// nodeDataCommands returns the node's local data commands (import, status).
func nodeDataCommands() []*cobra.Command {
	return []*cobra.Command{nodeImportCommand(), nodeStatusCommand()}
}

func nodeImportCommand() *cobra.Command {
	var o admin.ImportOptions
	var format, study, schema string
	var dryRun bool
	c := &cobra.Command{
		Use:   "import --data-dir DIR [flags] PATH...",
		Short: "Import FHIR R4 or CSV records into a node's local store",
		Long: fmt.Sprintf(`Import patient records into the node's local store (DIR/kv), atomically: the whole
import lands, or nothing does (also if the process is killed). Importing the same files
again changes nothing; a record with a stored id but new content replaces the old one.

Inputs (files, directories walked in name order, or .tar.gz/.tgz archives of these):
  *.json                 FHIR R4 Bundle (transaction, collection, searchset, ...) or one resource
  *.ndjson, *.jsonl      FHIR Bulk Data NDJSON, one resource per line, any types mixed
  *.csv                  the CDM columns with a header row; the table comes from the file
                         name (patients.csv, site1_conditions.csv, ...) or --table
  any of these + .gz     gzip-compressed

FHIR %s are imported; other
resource types are skipped and counted. A patient's region comes from the address by
--region-rule: state, city, postal:N (first N characters of the postal code) or
fixed:CODE (one region for the whole node).

Bad records (malformed JSON, wrong types, missing fields, impossible dates, records of
unknown patients, short CSV rows) are listed with file:line or file: entry[N].field. By
default any bad record fails the import and nothing is written; with --quarantine FILE
the bad records go to FILE (JSON lines, mode 0600) and the rest is imported.

--code-map FILE applies the node's map from local codes to standard ones (a CSV with
local_system, local_code, system, code and optionally display; see docs/data.md): a record
coded only in a local system then also carries the SNOMED CT, ICD-10 or LOINC codes it maps
to, so queries written in those find it. An empty local_system matches the code in any
system.

With --key-file the store is encrypted at rest. The key file holds 32 random bytes, raw or
as 64 hex digits, and must be mode 0600. Every later command on DIR needs the same key.

Study tables: --study NAME --schema FILE imports one research CSV as the study table NAME,
described by a schema file (columns, types, the patient id column, public value ranges;
see docs/statistics.md). The same schema file must be listed under studies = [...] in the
network config of the coordinator and every node. Any bad cell fails the import (file:line,
column, what was expected); importing it again replaces the whole study atomically.

--dry-run reads the files and says what the import would do, writing nothing (no
directory, store or quarantine file is made, the store is not opened, so it also works
while the node runs): the records it would store by table, what it would skip and why,
the bad records by resource type and reason with the first of them located, and whether
the import would go through. Records of patients that are not in the files are bad when
the directory has no store yet; with a store they are counted apart (the import accepts
them if the store has their patient). The exit status is 1 when the import would fail.`, andList(admin.FHIRResources())),
		Example: `  # first see what a new export holds and what would be refused, writing nothing
  fedstat node import --dry-run --data-dir /var/lib/fedstat/node --region-rule city export/
  fedstat node import --dry-run --format json --data-dir /var/lib/fedstat/node export/ | jq .bad

  fedstat node import --data-dir /var/lib/fedstat/node bundles.tar.gz
  fedstat node import --data-dir ./node1 --study lung --schema lung.toml site1_lung.csv
  fedstat node import --data-dir ./node1 --region-rule postal:3 export/*.ndjson.gz
  fedstat node import --data-dir ./node1 --region-rule fixed:MA-01 patients.csv conditions.csv
  fedstat node import --data-dir ./node1 --quarantine bad.jsonl --key-file node.key fhir/
  fedstat node import --data-dir ./node1 --code-map local-codes.csv lab-export/`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.DataDir == "" {
				return &usageError{"node import: --data-dir is required"}
			}
			if len(args) == 0 {
				return &usageError{"node import: give at least one file or directory to import"}
			}
			if format != "text" && format != "json" {
				return &usageError{"node import: --format must be text or json"}
			}
			if (study != "" || schema != "") && dryRun {
				return &usageError{"node import: --dry-run is for CDM and FHIR records, not --study (a study is checked whole by its import, which writes nothing when a cell is bad)"}
			}
			stderr := cmd.ErrOrStderr()
			o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if isTerminal(stderr) {
				o.Progress = stderr
			} else {
				o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			if study != "" || schema != "" {
				return importStudy(cmd, o, study, schema, format, args)
			}
			if dryRun {
				d, err := admin.DryRunImport(cmd.Context(), o, args)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if format == "json" {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					if err := enc.Encode(d); err != nil {
						return err
					}
				} else {
					printDryRun(out, d)
				}
				if d.WouldFail {
					return fmt.Errorf("node import --dry-run: the import would fail: %d bad record(s) and no --quarantine", d.BadTotal)
				}
				return nil
			}
			sum, err := admin.Import(cmd.Context(), o, args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			printImportSummary(out, sum)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.DataDir, "data-dir", "", "node data directory (required)")
	f.StringVar(&o.KeyFile, "key-file", "", "operator key file: encrypts the store at rest (32 bytes raw or 64 hex digits, mode 0600)")
	f.StringVar(&o.RegionRule, "region-rule", "state", "region from a FHIR patient's address: state, city, postal:N or fixed:CODE")
	f.StringVar(&o.Quarantine, "quarantine", "", "write bad records to this file and import the rest (default: any bad record aborts the import)")
	f.StringVar(&o.CodeMap, "code-map", "", "CSV map of local codes to standard ones (local_system, local_code, system, code[, display]) applied to the records")
	f.StringVar(&o.Table, "table", "", "table of CSV files whose name does not tell it ("+strings.Join(cdm.TableNames(), ", ")+")")
	f.IntVar(&o.MaxErrors, "max-errors", 20, "how many bad records to list (the total is always given)")
	f.StringVar(&format, "format", "text", "summary format: text or json")
	f.StringVar(&study, "study", "", "import one CSV file as the study table NAME (with --schema)")
	f.StringVar(&schema, "schema", "", "study schema file (TOML) for --study")
	f.BoolVar(&dryRun, "dry-run", false, "say what the import would do, writing nothing")
	f.BoolVar(&o.Bulk, "bulk", false, "for nodes larger than memory: stream the CDM CSV/NDJSON files (not patients) into memory-mapped column files with bounded memory; append-only (correct by dropping the import), not encrypted at rest, no --quarantine (operations.md, \"Nodes larger than memory\")")
	return c
}

// printDryRun writes a dry run for a node's admin.
func printDryRun(w io.Writer, d *admin.DryRun) {
	fmt.Fprintln(w, "DRY RUN: nothing was written.")
	switch d.Store {
	case "missing":
		fmt.Fprintf(w, "%s does not exist yet: the import would create it.\n", d.DataDir)
	case "empty":
		fmt.Fprintf(w, "%s has no store yet: everything below would be new.\n", d.DataDir)
	default:
		fmt.Fprintf(w, "%s has a store; a dry run does not open it, so records already stored are counted as read (the import says which are added, replaced or unchanged).\n", d.DataDir)
	}
	fmt.Fprintf(w, "read %d file(s), %s\n\n", d.Files, human(d.Bytes))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "would import\trecords\tfrom FHIR")
	for _, t := range d.Tables {
		res := t.Resource
		if res == "" {
			res = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", t.Table, t.Records, res)
	}
	tw.Flush()
	counts := func(title string, cs []admin.DryRunCount) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range cs {
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", c.Type, c.Count, c.Reason)
		}
		tw.Flush()
	}
	counts("would skip (not an error):", d.Skipped)
	counts(fmt.Sprintf("bad records: %d", d.BadTotal), d.Bad)
	if len(d.Errors) > 0 {
		fmt.Fprintln(w, "\nfirst bad records:")
		for _, e := range d.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
		if d.BadTotal > len(d.Errors) {
			fmt.Fprintf(w, "  ... and %d more (--max-errors)\n", d.BadTotal-len(d.Errors))
		}
	}
	if d.Store == "present" && d.UnknownPatients > 0 {
		fmt.Fprintf(w, "\nrecords whose patient is not in these files: %d (accepted only if the store has the patient; otherwise bad)\n", d.UnknownPatients)
	}
	if d.Duplicates > 0 {
		fmt.Fprintf(w, "duplicates in the input (the last would be kept): %d\n", d.Duplicates)
	}
	if d.NoRegion > 0 {
		fmt.Fprintf(w, "patients without a region (the address lacks what the region rule needs): %d\n", d.NoRegion)
	}
	fmt.Fprintln(w)
	switch {
	case d.WouldFail:
		fmt.Fprintf(w, "outcome: the import would FAIL and import nothing: %d bad record(s); fix them, or add --quarantine FILE to import the other %d record(s)\n", d.BadTotal, d.Records())
	case d.BadTotal > 0:
		fmt.Fprintf(w, "outcome: the import would store %d record(s) and write %d bad record(s) to %s\n", d.Records(), d.BadTotal, d.Quarantine)
	default:
		fmt.Fprintf(w, "outcome: the import would store %d record(s)\n", d.Records())
	}
}

func printImportSummary(w io.Writer, s *admin.ImportSummary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "read %d file(s), %s in %v\n", s.Files, human(s.Bytes), s.Parse.Round(time.Millisecond))
	fmt.Fprintln(tw, "table\tread\tadded\treplaced\tunchanged\t")
	for _, t := range tableOrder {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", t, s.Read[t], s.Added[t], s.Replaced[t], s.Unchanged[t])
	}
	tw.Flush()
	if len(s.Skipped) > 0 {
		var parts []string
		for _, k := range sortedKeys(s.Skipped) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.Skipped[k]))
		}
		fmt.Fprintf(w, "skipped (not in the data model): %s\n", strings.Join(parts, ", "))
	}
	if s.Duplicates > 0 {
		fmt.Fprintf(w, "duplicates in the input (last kept): %d\n", s.Duplicates)
	}
	if s.NoRegion > 0 {
		fmt.Fprintf(w, "patients without a region (address lacks what the region rule needs): %d\n", s.NoRegion)
	}
	if s.Quarantined > 0 {
		fmt.Fprintf(w, "quarantined: %d bad record(s) written to %s\n", s.Quarantined, s.Quarantine)
	}
	if s.Generation == 0 {
		fmt.Fprintln(w, "nothing changed")
	} else {
		fmt.Fprintf(w, "committed import %d (write %v, columnar copy %v)\n", s.Generation, s.Write.Round(time.Millisecond), s.Build.Round(time.Millisecond))
	}
}

// tableOrder lists the tables of the data model in the order of cdm.Schema.
var tableOrder = cdm.TableNames()

func nodeStatusCommand() *cobra.Command {
	var dataDir, keyFile, format, cfgPath string
	c := &cobra.Command{
		Use:   "status --data-dir DIR [--format table|json]",
		Short: "Show what a node stores: rows, date ranges, regions, top codes (admin only)",
		Long: `Summarise the node's local store: rows per table, the range of every date column,
patients per region, the most frequent codes, and the recent imports. The numbers are
exact and for the node's admin only; nothing is sent anywhere.

With the node daemon stopped it reads the data directory directly; with the daemon
running it asks the daemon through its admin socket (DIR/admin.sock, mode 0600: only the
node's own user; never reachable over the network). DIR must be a node's data directory
with its store (DIR/kv): a missing path, an empty or someone else's directory is refused
and nothing is created.

The JSON form has at least {"tables": {"patients": N, "conditions": N, ...}} plus
"dates", "regions", "top_codes", "imports" and "generation".`,
		Example: `  fedstat node status --data-dir /var/lib/fedstat/node
  fedstat node status --data-dir /var/lib/fedstat/node --format json | jq .tables
  fedstat node status --data-dir ./node1 --key-file node.key    # an encrypted store, daemon stopped`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var identifierSystem string
			if cfgPath != "" {
				cfg, err := loadNodeConfig(cmd, cfgPath, &dataDir, &keyFile)
				if err != nil {
					return err
				}
				identifierSystem = cfg.IdentifierSystem()
			}
			if dataDir == "" {
				return &usageError{"node status: --data-dir is required (or --config with data_dir)"}
			}
			if format != "table" && format != "json" {
				return &usageError{"node status: --format must be table or json"}
			}
			if err := admin.CheckDataDir(dataDir, admin.NeedStore); err != nil {
				return fmt.Errorf("node status: %w", err)
			}
			var st *admin.Status
			if daemonAnswers(dataDir) {
				b, err := adminRequest(cmd.Context(), dataDir, http.MethodGet, "/local/status", nil, localQueryTimeout)
				if err != nil {
					return fmt.Errorf("node status (asked the running node daemon): %w", err)
				}
				if err := json.Unmarshal(b, &st); err != nil {
					return fmt.Errorf("node status: the daemon's answer: %w", err)
				}
			} else {
				var err error
				if st, err = admin.GetStatusFor(cmd.Context(), dataDir, keyFile, identifierSystem); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(out, st)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data-dir", "", "node data directory (required)")
	f.StringVar(&keyFile, "key-file", "", "operator key file, if the store is encrypted")
	f.StringVar(&format, "format", "table", "output format: table or json")
	f.StringVar(&cfgPath, "config", "", "the node's config: its data_dir, key_file and [linkage] identifier_system (patients with that identifier are counted) when the daemon is stopped")
	return c
}

func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "data directory %s, import generation %d\n\n", st.DataDir, st.Generation)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "table\trows\tdates")
	for _, t := range tableOrder {
		var ds []string
		for _, col := range sortedKeys(st.Dates[t]) {
			r := st.Dates[t][col]
			if r.Min == "" {
				ds = append(ds, fmt.Sprintf("%s: none", col))
				continue
			}
			ds = append(ds, fmt.Sprintf("%s %s..%s (%d missing)", col, r.Min, r.Max, r.Missing))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", t, st.Tables[t], strings.Join(ds, "; "))
	}
	tw.Flush()
	if len(st.Studies) > 0 {
		fmt.Fprintln(w, "\nstudy tables:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  table\trows\tpersons")
		for _, sc := range st.Studies {
			fmt.Fprintf(tw, "  %s\t%d\t%d\n", sc.Name, sc.Rows, sc.Persons)
		}
		tw.Flush()
	}
	if ic := st.Identifiers; ic != nil {
		fmt.Fprintf(w, "\npatients with an identifier of %s: %d of %d\n", ic.System, ic.With, ic.Patients)
	}
	if len(st.Regions) > 0 {
		fmt.Fprintln(w, "\npatients by region:")
		for i, r := range st.Regions {
			if i == 20 {
				fmt.Fprintf(w, "  ... %d more regions\n", len(st.Regions)-20)
				break
			}
			name := r.Value
			if name == "" {
				name = "(none)"
			}
			fmt.Fprintf(w, "  %-30s %d\n", name, r.Rows)
		}
	}
	for _, t := range tableOrder {
		cs := st.TopCodes[t]
		if len(cs) == 0 {
			continue
		}
		fmt.Fprintf(w, "\ntop codes in %s:\n", t)
		for _, c := range cs {
			fmt.Fprintf(w, "  %-14s %-45s %d", c.Value, c.System, c.Rows)
			if c.Name != "" {
				fmt.Fprintf(w, "  %s", c.Name)
			}
			fmt.Fprintln(w)
		}
	}
	if len(st.Imports) > 0 {
		fmt.Fprintln(w, "\nimports:")
		for _, im := range st.Imports {
			fmt.Fprintf(w, "  %d  %s  %s\n", im.Generation, im.Time.Format(time.RFC3339), im.Source)
		}
	}
	fmt.Fprintf(w, "\ncolumnar copy built in %v\n", st.BuildTime.Round(time.Millisecond))
}

// andList writes a list as "a, b and c".
func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
