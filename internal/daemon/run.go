package daemon

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

// Started reports the addresses a daemon serves on once it is up.
type Started struct {
	GRPC, HTTP, Ops, Gossip string
}

// networkCatalogue is the network catalogue of a daemon's config: its
// regions, max_nodes_per_patient (required: see
// config.Common.RequireMaxNodesPerPatient) and study schemas.
func networkCatalogue(c *config.Common) (*plan.Catalogue, error) {
	if err := c.RequireMaxNodesPerPatient(); err != nil {
		return nil, err
	}
	cat := plan.DefaultCatalogue()
	if len(c.Regions) > 0 {
		cat.Regions = c.Regions
	}
	cat.MaxNodesPerPatient = c.MaxNodesPerPatient
	for _, path := range c.Studies {
		s, err := cdm.ReadStudySchema(path, "")
		if err != nil {
			return nil, err
		}
		cat.Studies = append(cat.Studies, *s)
	}
	return cat, nil
}

// RunCoordinator runs a coordinator until ctx ends.
func RunCoordinator(ctx context.Context, cfg *config.Coordinator, log *slog.Logger, started func(Started)) error {
	if err := checkCommon(&cfg.Common, "coordinator"); err != nil {
		return err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7443"
	}
	if cfg.HTTPListen == "" {
		cfg.HTTPListen = "127.0.0.1:8443"
	}
	if cfg.OpsListen == "" {
		cfg.OpsListen = "127.0.0.1:9090"
	}
	id, err := pki.LoadIdentityDir(cfg.PKIDir, cfg.Name)
	if err != nil {
		return err
	}
	var nodes []coordinator.NodeEndpoint
	for _, n := range cfg.Nodes {
		nid, addr, ok := strings.Cut(n, "=")
		if !ok {
			return fmt.Errorf("%w: nodes entry %q: want id=host:port", config.ErrInvalid, n)
		}
		nodes = append(nodes, coordinator.NodeEndpoint{ID: nid, Addr: addr})
	}
	gossip, err := gossipConfig(cfg.Gossip, cfg.Name, log)
	if err != nil {
		return err
	}
	var tokens *coordinator.Tokens
	if cfg.TokensFile != "" {
		if tokens, err = coordinator.LoadTokens(cfg.TokensFile); err != nil {
			return err
		}
	}
	db, err := kv.Open(kv.Options{Dir: cfg.DataDir + "/kv", Logger: log})
	if err != nil {
		return fmt.Errorf("coordinator data dir %s: %w (is another coordinator using it?)", cfg.DataDir, err)
	}
	defer db.Close()
	alog, err := audit.Open(auditPath(&cfg.Common))
	if err != nil {
		return err
	}
	defer alog.Close()
	reg := newRegistry()
	cat, err := networkCatalogue(&cfg.Common)
	if err != nil {
		return err
	}
	var pops map[string]int64
	if cfg.PopulationsFile != "" {
		p, err := stats.ReadPopulations(cfg.PopulationsFile)
		if err != nil {
			return fmt.Errorf("populations_file: %w", err)
		}
		pops = map[string]int64{}
		for k, v := range p {
			pops[k] = int64(math.Round(v))
		}
	}
	c, err := coordinator.New(coordinator.Config{
		Identity: id, ListenAddr: cfg.Listen, Nodes: nodes, Params: cfg.Params, Threshold: cfg.Threshold,
		MinNodes: cfg.MinNodes, Catalogue: cat, Populations: pops, Deadline: cfg.Deadline.Duration,
		Gossip: gossip, MinMembers: cfg.MinMembers, EpochDebounce: cfg.EpochDebounce.Duration,
		AutoEpoch: true, CeremonyRetry: coordinator.Backoff{Initial: cfg.CeremonyRetryMin.Duration, Max: cfg.CeremonyRetryMax.Duration},
		HealthInterval: cfg.HealthInterval.Duration, LostMember: coordinator.LostMemberPolicy(cfg.RekeyOnLostMember),
		AtStep: testCoordinatorStep(log),
		DB:     db, Audit: alog, Metrics: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	o, err := startOps(cfg.OpsListen, reg, log)
	if err != nil {
		return err
	}
	defer o.close()
	o.setReady(c.Ready)

	var httpAddr string
	if cfg.HTTPListen != "off" {
		lis, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			return fmt.Errorf("http_listen %s: %w", cfg.HTTPListen, err)
		}
		srv := &http.Server{Handler: c.HTTPHandler(tokens), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		tl := tls.NewListener(lis, c.HTTPTLS())
		httpAddr = lis.Addr().String()
		go func() {
			if err := srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP API stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		log.Info("HTTP/JSON API serving", "addr", httpAddr)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }() // keeps a key epoch (AutoEpoch), retrying failed ceremonies
	if started != nil {
		// Run starts gossip; give it a moment to bind before reporting.
		for range 50 {
			if gossip == nil || c.GossipAddr() != "" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		started(Started{GRPC: c.Addr(), HTTP: httpAddr, Ops: o.Addr(), Gossip: c.GossipAddr()})
	}
	return <-runErr
}

// RunNode runs a node until ctx ends.
func RunNode(ctx context.Context, cfg *config.Node, log *slog.Logger, started func(Started)) error {
	if err := checkCommon(&cfg.Common, "node"); err != nil {
		return err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7444"
	}
	if cfg.OpsListen == "" {
		cfg.OpsListen = "127.0.0.1:9091"
	}
	id, err := pki.LoadIdentityDir(cfg.PKIDir, cfg.Name)
	if err != nil {
		return err
	}
	var secretKey []byte
	if cfg.KeyFile != "" {
		op, err := admin.ReadKeyFile(cfg.KeyFile)
		if err != nil {
			return err
		}
		if secretKey, err = hkdf.Key(sha256.New, op, nil, "fedstat keystore v1", 32); err != nil {
			return err
		}
	}
	gossip, err := gossipConfig(cfg.Gossip, cfg.Name, log)
	if err != nil {
		return err
	}
	pol := node.DefaultPolicy()
	if len(cfg.Policy.Roles) > 0 {
		pol.Roles = nil
		for _, r := range cfg.Policy.Roles {
			role, err := pki.ParseRole(r)
			if err != nil {
				return fmt.Errorf("%w: policy.roles: %v", config.ErrInvalid, err)
			}
			pol.Roles = append(pol.Roles, role)
		}
	}
	pol.Kinds = cfg.Policy.Kinds
	if cfg.Policy.MinNodes > 0 {
		pol.MinNodes = cfg.Policy.MinNodes
	}
	pol.MinCohort = cfg.Policy.MinCohort
	if cfg.Policy.MinCohortRho < 0 {
		return fmt.Errorf("%w: policy.min_cohort_rho must not be negative, got %v", config.ErrInvalid, cfg.Policy.MinCohortRho)
	}
	pol.MinCohortRho = cfg.Policy.MinCohortRho
	pol.RequireApproval = cfg.Policy.RequireApproval

	cat, err := networkCatalogue(&cfg.Common)
	if err != nil {
		return err
	}
	st, db, err := admin.OpenStore(ctx, admin.OpenOptions{DataDir: cfg.DataDir, KeyFile: cfg.KeyFile, Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()
	var data node.DataSource = st
	if cfg.Warehouse.DSN != "" {
		w, err := admin.OpenWarehouse(ctx, admin.WarehouseOptions{DSN: cfg.Warehouse.DSN, Dialect: cfg.Warehouse.Dialect, Schema: cfg.Warehouse.Schema})
		if err != nil {
			return fmt.Errorf("%w: warehouse: %v", config.ErrInvalid, err)
		}
		defer w.Close()
		data = w
		log.Info("answering from the OMOP warehouse", "dialect", cfg.Warehouse.Dialect, "schema", cfg.Warehouse.Schema)
	}
	alog, err := audit.Open(auditPath(&cfg.Common))
	if err != nil {
		return err
	}
	defer alog.Close()
	reg := newRegistry()
	n, err := node.New(node.Config{
		Identity: id, ListenAddr: cfg.Listen, AdvertiseAddr: cfg.Advertise, StateDir: cfg.DataDir, DB: db, Data: data,
		OperatorKey: secretKey, Catalogue: cat, Policy: pol, Gossip: gossip,
		Budget: node.Budget{TotalRho: cfg.Budget.TotalRho, PerAnalystRho: cfg.Budget.PerAnalystRho, Analysts: cfg.Budget.Analysts},
		Audit:  alog, Metrics: reg, Logger: log, Now: testNodeClock(log),
	})
	if err != nil {
		return err
	}
	defer n.Close()
	o, err := startOps(cfg.OpsListen, reg, log)
	if err != nil {
		return err
	}
	defer o.close()
	o.setReady(n.Ready)
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	if started != nil {
		started(Started{GRPC: n.Addr(), Ops: o.Addr()})
	}
	return <-runErr
}
