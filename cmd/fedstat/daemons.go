package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/cmd/fedstat/internal/daemon"
	"github.com/fedstat/fedstat/internal/config"
)

func coordinatorCommand() *cobra.Command {
	var (
		path string
		cfg  config.Coordinator
		dump bool
	)
	c := &cobra.Command{
		Use:   "coordinator --config FILE",
		Short: "Run the coordinator daemon",
		Long: `Runs the coordinator: the analysts' gRPC and HTTP/JSON APIs, the node registry (nodes
found by gossip are admitted when they present a node certificate of the network CA),
key ceremonies, query planning, aggregation and release, and the audit log.

Configuration comes from the TOML file, then FEDSTAT_* environment variables (for
top-level keys: FEDSTAT_DATA_DIR, FEDSTAT_LISTEN, ...), then the flags below.
See deploy/coordinator.example.toml and docs/operations.md.

Ops endpoints (plain HTTP, ops_listen): /metrics, /healthz, /readyz (ready once a
key epoch exists). SIGINT/SIGTERM stop it gracefully.`,
		Example: `  fedstat coordinator --config /etc/fedstat/coordinator.toml
  FEDSTAT_LOG_FORMAT=json fedstat coordinator --config coordinator.toml --print-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var fileCfg config.Coordinator
			if err := config.Load(path, &fileCfg, nil); err != nil {
				return err
			}
			overlay(cmd, &fileCfg.Common, &cfg.Common)
			if cmd.Flags().Changed("http-listen") {
				fileCfg.HTTPListen = cfg.HTTPListen
			}
			if dump {
				s, err := config.Dump(fileCfg)
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), s)
				return nil
			}
			log, err := daemon.NewLogger(os.Stderr, fileCfg.LogLevel, fileCfg.LogFormat)
			if err != nil {
				return err
			}
			return daemon.RunCoordinator(cmd.Context(), &fileCfg, log, func(s daemon.Started) {
				log.Info("coordinator started", "grpc", s.GRPC, "http", s.HTTP, "ops", s.Ops, "gossip", s.Gossip)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&path, "config", "", "TOML configuration file")
	commonFlags(c, &cfg.Common)
	f.StringVar(&cfg.HTTPListen, "http-listen", "", "HTTP/JSON API address (overrides http_listen)")
	f.BoolVar(&dump, "print-config", false, "print the effective configuration and exit")
	return c
}

// commonFlags adds the flags both daemons share.
func commonFlags(c *cobra.Command, cfg *config.Common) {
	f := c.Flags()
	f.StringVar(&cfg.Name, "name", "", "name in the certificate (overrides name)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "state directory (overrides data_dir)")
	f.StringVar(&cfg.PKIDir, "pki-dir", "", "directory with ca.crt, NAME.crt, NAME.key (overrides pki_dir)")
	f.StringVar(&cfg.Listen, "listen", "", "gRPC address (overrides listen)")
	f.StringVar(&cfg.OpsListen, "ops-listen", "", "address of /metrics, /healthz, /readyz, or off (overrides ops_listen)")
	f.StringVar(&cfg.LogLevel, "log-level", "", "debug, info, warn or error (overrides log_level)")
}

// overlay copies the common flags that were set onto the file's values.
func overlay(cmd *cobra.Command, dst, flags *config.Common) {
	set := func(name string, d *string, v string) {
		if cmd.Flags().Changed(name) {
			*d = v
		}
	}
	set("name", &dst.Name, flags.Name)
	set("data-dir", &dst.DataDir, flags.DataDir)
	set("pki-dir", &dst.PKIDir, flags.PKIDir)
	set("listen", &dst.Listen, flags.Listen)
	set("ops-listen", &dst.OpsListen, flags.OpsListen)
	set("log-level", &dst.LogLevel, flags.LogLevel)
}

// nodeRun configures `fedstat node` itself: the node daemon.
func nodeRun(c *cobra.Command) {
	var (
		path string
		cfg  config.Node
		dump bool
	)
	c.Use = "node --config FILE | node COMMAND"
	c.Long = `Without a subcommand, runs the node daemon: it serves the node API to the coordinator
(mutual TLS), joins the network's gossip, takes part in key ceremonies, and answers
queries with signed, encrypted, differentially private partials after checking its
policy and debiting its privacy budget. Every step goes to its audit log.

With [network] mode = "outbound" the node opens no inbound port and joins no gossip:
it dials the coordinator ([network] coordinator = "host:port") and serves the node API
through one long-lived tunnel on that connection, reconnecting by itself. Its ops
endpoint stays on loopback and its admin socket is a unix socket.

Configuration comes from the TOML file, then FEDSTAT_* environment variables, then
flags. See deploy/node.example.toml and docs/operations.md.

The subcommands administer the node's local data and queue on the node's machine.`
	c.Example = `  fedstat node --config /etc/fedstat/node.toml
  fedstat node import --dry-run --data-dir /var/lib/fedstat/node bundles.tar.gz
  fedstat node import --data-dir /var/lib/fedstat/node bundles.tar.gz
  fedstat node status --data-dir /var/lib/fedstat/node      # also while the daemon runs
  fedstat node approvals --data-dir /var/lib/fedstat/node`
	c.Args = cobra.NoArgs
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		var fileCfg config.Node
		if err := config.Load(path, &fileCfg, nil); err != nil {
			return err
		}
		overlay(cmd, &fileCfg.Common, &cfg.Common)
		if cmd.Flags().Changed("key-file") {
			fileCfg.KeyFile = cfg.KeyFile
		}
		if dump {
			s, err := config.Dump(fileCfg)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s)
			return nil
		}
		log, err := daemon.NewLogger(os.Stderr, fileCfg.LogLevel, fileCfg.LogFormat)
		if err != nil {
			return err
		}
		return daemon.RunNode(cmd.Context(), &fileCfg, log, func(s daemon.Started) {
			if fileCfg.Outbound() {
				log.Info("node started, outbound", "name", fileCfg.Name, "coordinator", fileCfg.Network.Coordinator, "ops", s.Ops)
				return
			}
			log.Info("node started", "name", fileCfg.Name, "grpc", s.GRPC, "ops", s.Ops)
		})
	}
	f := c.Flags()
	f.StringVar(&path, "config", "", "TOML configuration file")
	commonFlags(c, &cfg.Common)
	f.StringVar(&cfg.KeyFile, "key-file", "", "operator key file: encrypts data and key shares at rest (overrides key_file)")
	f.BoolVar(&dump, "print-config", false, "print the effective configuration and exit")
}
