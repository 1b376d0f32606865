package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/check"
)

// nodeDurableCommands returns the commands that check, back up and restore
// a node's data directory.
func nodeDurableCommands() []*cobra.Command {
	return []*cobra.Command{nodeCheckCommand(), nodeBackupCommand(), nodeRestoreCommand(), nodeResetAuditCommand()}
}

// nodeDir is where a command finds a node's files: --config, then the
// flags that override it.
type nodeDir struct {
	config, dataDir, keyFile, pkiDir, name, auditLog string
}

func (d *nodeDir) flags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&d.config, "config", "", "the node's configuration file (for data_dir, pki_dir, name, key_file, audit_log)")
	f.StringVar(&d.dataDir, "data-dir", "", "the node's data directory")
	f.StringVar(&d.keyFile, "key-file", "", "operator key file, if the store and shares are encrypted at rest")
	f.StringVar(&d.pkiDir, "pki-dir", "", "directory of ca.crt, NAME.crt and NAME.key (with --name)")
	f.StringVar(&d.name, "name", "", "the node's name in its certificate")
	f.StringVar(&d.auditLog, "audit-log", "", "the node's audit log (default DATA_DIR/audit.log)")
}

// resolve fills the settings from --config where no flag gave them, then
// refuses a data directory that is not what the command needs (need:
// admin.CheckDataDir), before anything is created or opened.
func (d *nodeDir) resolve(cmd *cobra.Command, what string, need admin.DirNeed) error {
	if d.config != "" {
		var cfg config.Node
		if err := config.Load(d.config, &cfg, nil); err != nil {
			return err
		}
		set := func(dst *string, flag, v string) {
			if !cmd.Flags().Changed(flag) {
				*dst = v
			}
		}
		set(&d.dataDir, "data-dir", cfg.DataDir)
		set(&d.keyFile, "key-file", cfg.KeyFile)
		set(&d.pkiDir, "pki-dir", cfg.PKIDir)
		set(&d.name, "name", cfg.Name)
		set(&d.auditLog, "audit-log", cfg.AuditLog)
	}
	if d.dataDir == "" {
		return &usageError{"node " + what + ": --data-dir or --config is required"}
	}
	if err := admin.CheckDataDir(d.dataDir, need); err != nil {
		return fmt.Errorf("node %s: %w", what, err)
	}
	return nil
}

// identity loads the node's certificate and key when --pki-dir and --name
// (or --config) say where; nil otherwise.
func (d *nodeDir) identity() (*pki.Identity, error) {
	if d.pkiDir == "" || d.name == "" {
		return nil, nil
	}
	return pki.LoadIdentityDir(d.pkiDir, d.name)
}

func nodeCheckCommand() *cobra.Command {
	var d nodeDir
	var format string
	c := &cobra.Command{
		Use:   "check --data-dir DIR [--config FILE] [--format text|json]",
		Short: "Check a node's data directory as the daemon does at start: store, ledger, audit log, keys, certificate",
		Long: `Run the node daemon's start-up check on a data directory and print one line per check:
ok, warn or FAIL, the file concerned, what was found, and the fix.

  store        the Badger store's files (MANIFEST, tables, the watermark) and its write-ahead log
  space        free space on the store's file system
  ledger       the budget ledger against the audit log's debits and the high-water mark
               (ledger.hwm), per analyst and in total: a ledger below either is refused
  audit        the audit log's chain, and the heads recorded in the store and in the mark
  mark         the high-water mark file itself
  keys         key files of epochs the store has no record of; the current epoch's share
  certificate  the node's certificate and the network CA at this machine's clock

A FAIL marked "refuses to start" stops the daemon; a FAIL of the current epoch's share lets it
start, answering queries but not decrypting in that epoch. The exit status is 1 when any check
fails. With the daemon running, the store is in use and the command asks the daemon (its admin
socket) whether it is ready instead. With --config (or --pki-dir and --name) the certificate and
the signer of the mark are checked too.

DIR must exist and be a node's data directory (kv/, audit.log, ledger.hwm or keys/ in it): a
mistyped path, an empty or someone else's directory is refused and nothing is created. A node's
directory whose store is missing is checked (and the check says how to repair it).`,
		Example: `  fedstat node check --data-dir /var/lib/fedstat/node
  fedstat node check --config /etc/fedstat/node.toml          # also checks the certificate and the mark's signer
  fedstat node check --config /etc/fedstat/node.toml --format json | jq '.results[] | select(.status == "FAIL")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := d.resolve(cmd, "check", admin.NeedNode); err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return &usageError{"node check: --format must be text or json"}
			}
			rep, err := check.Run(cmd.Context(), check.Options{DataDir: d.dataDir, AuditLog: d.auditLog, KeyFile: d.keyFile,
				PKIDir: d.pkiDir, Name: d.name, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return err
			}
			if rep.InUse {
				r := check.Result{Check: "daemon", Status: check.OK, File: d.dataDir, Problem: "running and ready"}
				if _, err := adminDo(d.dataDir, http.MethodGet, "/ready"); err != nil {
					r.Status, r.Problem = check.Fail, strings.TrimPrefix(err.Error(), "not ready: ")
					r.Fix = "see the daemon's log; stop it and run `fedstat node check` for the full check"
				}
				rep.Results = append(rep.Results, r)
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printCheck(out, rep)
			}
			if !rep.OK() {
				n := 0
				for _, r := range rep.Results {
					if r.Status == check.Fail {
						n++
					}
				}
				return fmt.Errorf("node check: %d check(s) failed", n)
			}
			return nil
		},
	}
	d.flags(c)
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}

func printCheck(w io.Writer, rep *check.Report) {
	for _, r := range rep.Results {
		line := r.Line()
		if r.Status == check.Fail {
			if r.Fatal {
				line += " [the daemon refuses to start]"
			} else if r.Epoch != 0 {
				line += fmt.Sprintf(" [the daemon starts, not ready for epoch %d]", r.Epoch)
			}
		}
		fmt.Fprintln(w, line)
	}
}

func nodeBackupCommand() *cobra.Command {
	var d nodeDir
	var withConfig bool
	c := &cobra.Command{
		Use:   "backup --data-dir DIR [--key-file FILE] [--include-config] OUT",
		Short: "Back up a node's data directory (the daemon must be stopped)",
		Long: `Write a backup of the node's data directory to OUT (a tar file, mode 0600): the store as
Badger's backup stream (sealed under the operator key when the store is encrypted at rest), the
key files, the audit log and the high-water mark, with a manifest of checksums. The node's
configuration is included only with --include-config (and --config).

The daemon must be stopped: the store is open in one process at a time, and the store, the key
files and the audit log are consistent with each other only when nothing writes to them.

The store in a backup cannot be copied back by hand; restore it with ` + "`fedstat node restore`" + `, which
keeps the higher of the backup's spent budget and the one the node proves now. Without an
operator key the backup holds the records in the clear: keep it as safe as the data itself.

DIR must be a node's data directory with its store (DIR/kv); anything else is refused and
nothing is created.`,
		Example: `  fedstat node backup --data-dir /var/lib/fedstat/node /backup/node-$(date +%F).fsbk
  fedstat node backup --config /etc/fedstat/node.toml --include-config /backup/node-$(date +%F).fsbk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.resolve(cmd, "backup", admin.NeedStore); err != nil {
				return err
			}
			o := admin.BackupOptions{DataDir: d.dataDir, AuditLog: d.auditLog, KeyFile: d.keyFile}
			if withConfig {
				if d.config == "" {
					return &usageError{"node backup: --include-config needs --config"}
				}
				o.Config = d.config
			}
			m, err := admin.Backup(cmd.Context(), o, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backed up %s to %s: %d keys in the store (%s), %d key file(s), audit log of %d entries, ledger %v, epoch %d\n",
				d.dataDir, args[0], m.Keys, map[bool]string{true: "sealed", false: "NOT encrypted: protect the file"}[m.Sealed],
				countPrefix(m.Files, "keys/"), m.AuditEntries, m.Ledger, m.Epoch)
			return nil
		},
	}
	d.flags(c)
	c.Flags().BoolVar(&withConfig, "include-config", false, "include the configuration file given with --config")
	return c
}

func countPrefix(m map[string]string, p string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, p) {
			n++
		}
	}
	return n
}

func nodeRestoreCommand() *cobra.Command {
	var d nodeDir
	var format string
	c := &cobra.Command{
		Use:   "restore --data-dir DIR [--config FILE] IN",
		Short: "Restore a node's data directory from a backup, keeping the higher spent budget (the daemon must be stopped)",
		Long: `Restore the backup IN (from ` + "`fedstat node backup`" + `) into the data directory. The spent budget never
goes back: the restored ledger takes, for the total, each analyst and the number of charges, the
highest of the backup's ledger and of what the node proves now: its current store when it still
opens (whose per-query records are kept too), its high-water mark and its audit log. The current
audit log is kept when it verifies (else the backup's is put back), and gets a
budget.carried_forward entry that records the restore. Key files the node lacks are put back.
The replaced store and log are moved aside (NAME.replaced-TIME), never deleted.

This is the fix for a store that is damaged, rolled back, wiped or older than the node's evidence
(` + "`fedstat node check`" + ` says which). The daemon must be stopped.

DIR must exist: a node's data directory, or an empty directory (a new machine: make it first,
mode 0700). A path that does not exist or someone else's directory is refused, so a typo never
gets a restored node that the daemon would not use.`,
		Example: `  fedstat node restore --config /etc/fedstat/node.toml /backup/node-2026-12-01.fsbk

  # onto a new machine
  mkdir -m 700 /var/lib/fedstat/node
  fedstat node restore --data-dir /var/lib/fedstat/node --key-file /etc/fedstat/node.key /backup/node-2026-12-01.fsbk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.resolve(cmd, "restore", admin.NeedDirectory); err != nil {
				return err
			}
			id, err := d.identity()
			if err != nil {
				return err
			}
			sum, err := admin.Restore(cmd.Context(), admin.RestoreOptions{DataDir: d.dataDir, AuditLog: d.auditLog, KeyFile: d.keyFile, Identity: id}, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(sum)
			}
			fmt.Fprintf(out, "restored %s (taken %s) into %s\n", args[0], sum.Backup.Time.Format("2006-01-02 15:04:05Z07:00"), d.dataDir)
			fmt.Fprintf(out, "  spend now:        %v\n", sum.Spend)
			fmt.Fprintf(out, "  backup's ledger:  %v\n", sum.BackupLedger)
			show := func(what string, f interface{ String() string }, ok bool, why string) {
				if ok {
					fmt.Fprintf(out, "  %-17s %v\n", what+":", f)
				} else {
					fmt.Fprintf(out, "  %-17s %s\n", what+":", why)
				}
			}
			show("current ledger", sum.Current, sum.Current != nil, "not readable: "+sum.CurrentStore)
			show("high-water mark", sum.Mark, sum.Mark != nil, "none (or not valid)")
			show("audit log", sum.Audit, sum.Audit != nil, "missing or not verifying: the backup's log was put back")
			if sum.Records > 0 {
				fmt.Fprintf(out, "  kept %d per-query record(s) of the current store\n", sum.Records)
			}
			for _, k := range sum.KeysRestored {
				fmt.Fprintf(out, "  key file put back: %s\n", k)
			}
			for _, a := range sum.Aside {
				fmt.Fprintf(out, "  moved aside: %s\n", a)
			}
			return nil
		},
	}
	d.flags(c)
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}

func nodeResetAuditCommand() *cobra.Command {
	var d nodeDir
	var reason string
	c := &cobra.Command{
		Use:   "reset-audit --data-dir DIR --reason TEXT",
		Short: "Start a new audit log for a node whose log is lost for good (the daemon must be stopped)",
		Long: `For an audit log that is lost and that no backup holds (otherwise use ` + "`fedstat node restore`" + `), or that
no longer holds the head the node recorded: moves what is left of it aside (audit.log.lost-TIME)
and starts a new log whose first entry, budget.carried_forward, records the ledger's spend (raised
first to the high-water mark when that is higher), the last head the node had recorded and the
reason. The spend never goes back, and the loss stays visible. The store must open: DIR must be a
node's data directory with its store (DIR/kv); anything else is refused and nothing is created.`,
		Example: `  fedstat node reset-audit --config /etc/fedstat/node.toml --reason "disk replaced; no backup holds the log"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := d.resolve(cmd, "reset-audit", admin.NeedStore); err != nil {
				return err
			}
			if reason == "" {
				return &usageError{"node reset-audit: --reason is required (it goes into the new log)"}
			}
			id, err := d.identity()
			if err != nil {
				return err
			}
			sum, err := admin.ResetAudit(cmd.Context(), admin.ResetAuditOptions{DataDir: d.dataDir, AuditLog: d.auditLog, KeyFile: d.keyFile, Identity: id, Reason: reason})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "started a new audit log; it opens with the spend %v; the node last recorded head %d (%s)\n", sum.Spend, sum.LostSeq, sum.LostHead)
			if sum.Aside != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "what was left of the old log: %s\n", sum.Aside)
			}
			return nil
		},
	}
	d.flags(c)
	c.Flags().StringVar(&reason, "reason", "", "why the log was lost (recorded in the new log)")
	return c
}
