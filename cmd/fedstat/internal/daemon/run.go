package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/node/check"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

// Started reports the addresses a daemon serves on once it is up.
type Started struct {
	GRPC, HTTP, Ops, Gossip string
}

// NetworkCatalogue is the network catalogue a daemon with config c plans
// with: its regions, max_nodes_per_patient (required: see
// config.Common.RequireMaxNodesPerPatient), study schemas, value sets and
// record linkage ([linkage]).
// The daemons and the admin commands that plan like them (node query
// --config) use it.
func NetworkCatalogue(c *config.Common) (*plan.Catalogue, error) {
	if err := c.RequireMaxNodesPerPatient(); err != nil {
		return nil, err
	}
	cat := plan.DefaultCatalogue()
	if len(c.Regions) > 0 {
		cat.Regions = c.Regions
	}
	cat.MaxNodesPerPatient = c.MaxNodesPerPatient
	if c.SmallCountThreshold != 0 {
		cat.SmallCountThreshold = c.SmallCountThreshold
	}
	for _, path := range c.Studies {
		s, err := cdm.ReadStudySchema(path, "")
		if err != nil {
			return nil, err
		}
		cat.Studies = append(cat.Studies, *s)
	}
	vs, err := terminology.Load(c.ValueSets)
	if err != nil {
		return nil, fmt.Errorf("%s: value_sets: %w", c.Source, err)
	}
	cat.ValueSets = vs
	if sys := c.IdentifierSystem(); sys != "" {
		// A linked network: patient_id is the resident (docs/linkage.md).
		cat.Linkage = &plan.Linkage{IdentifierSystem: sys}
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
	cat, err := NetworkCatalogue(&cfg.Common)
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
		Identity: id, ListenAddr: cfg.Listen, Nodes: nodes, Params: cfg.Params, Threshold: cfg.Threshold, Committee: cfg.Committee, CommitteeMembers: cfg.CommitteeMembers, CommitteeReplaceAfter: cfg.CommitteeReplaceAfter.Duration,
		MinNodes: cfg.MinNodes, CompactRelease: cfg.CompactRelease, SkipRangeProofs: cfg.SkipRangeProofs, Catalogue: cat, Populations: pops, Deadline: cfg.Deadline.Duration,
		ApprovalWait: cfg.ApprovalWait.Duration, MaxApprovalWait: cfg.MaxApprovalWait.Duration, ReleaseRecordRetention: cfg.ReleaseRecordRetention.Duration, ApprovalPoll: cfg.ApprovalPoll.Duration,
		Gossip: gossip, MinMembers: cfg.MinMembers, EpochDebounce: cfg.EpochDebounce.Duration,
		AutoEpoch: true, CeremonyRetry: coordinator.Backoff{Initial: cfg.CeremonyRetryMin.Duration, Max: cfg.CeremonyRetryMax.Duration},
		HealthInterval: cfg.HealthInterval.Duration, LostMember: coordinator.LostMemberPolicy(cfg.RekeyOnLostMember),
		AtStep:         testCoordinatorStep(log),
		SeriesInterval: cfg.SeriesInterval.Duration, SeriesDelay: cfg.SeriesDelay.Duration, AlertWebhook: cfg.AlertWebhook,
		SeriesClock: testSeriesClock(log),
		DB:          db, Audit: alog, Metrics: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	o, err := startOps(cfg.OpsListen, cfg.OpsPprof, reg, log)
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
	if err := cfg.CheckNetwork(); err != nil {
		return err
	}
	if cfg.Listen == "" && !cfg.Outbound() {
		cfg.Listen = "127.0.0.1:7444"
	}
	if cfg.OpsListen == "" {
		cfg.OpsListen = "127.0.0.1:9091"
	}
	id, err := pki.LoadIdentityDir(cfg.PKIDir, cfg.Name)
	if err != nil {
		return err
	}
	_, secretKey, err := admin.Keys(cfg.KeyFile)
	if err != nil {
		return err
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
	pol.RequireAnalystSignature = cfg.Policy.RequireAnalystSignature
	pol.AcceptUnprovenPartials = cfg.Policy.AcceptUnprovenPartials
	pol.SkipRangeProofs = cfg.Policy.SkipRangeProofs
	pol.ApprovalWebhook = cfg.Policy.ApprovalWebhook

	cat, err := NetworkCatalogue(&cfg.Common)
	if err != nil {
		return err
	}
	// The start-up check (node/check): the store, the ledger against the
	// audit log and the high-water mark, the key files against the epoch
	// record, the certificate. A fatal failure stops here, naming the
	// files and the fix; it leaves the store open for the node.
	rep, err := check.Run(ctx, check.Options{DataDir: cfg.DataDir, AuditLog: auditPath(&cfg.Common), KeyFile: cfg.KeyFile,
		Identity: id, PKIDir: cfg.PKIDir, Keep: true, Logger: log})
	if err != nil {
		return err
	}
	logCheck(log, rep)
	if err := rep.Fatal(); err != nil {
		rep.Close()
		return err
	}
	db := rep.DB
	defer db.Close()
	if rep.BadMark {
		setAsideMark(log, filepath.Join(cfg.DataDir, check.MarkFile))
	}
	t0 := time.Now()
	st, err := admin.OpenStoreOn(ctx, db, log)
	if err != nil {
		return err
	}
	build := time.Since(t0)
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
	alog, err := audit.OpenWith(auditPath(&cfg.Common), audit.Options{ExpectHead: rep.ExpectHead, Logger: log})
	if err != nil {
		return err
	}
	defer alog.Close()
	reg := newRegistry()
	n, err := node.New(node.Config{
		Identity: id, ListenAddr: cfg.Listen, AdvertiseAddr: cfg.Advertise, StateDir: cfg.DataDir, DB: db, Data: data,
		Coordinator: cfg.Network.Coordinator, CoordinatorName: cfg.Network.CoordinatorName,
		OperatorKey: secretKey, Catalogue: cat, Policy: pol, Gossip: gossip,
		Budget: node.Budget{TotalRho: cfg.Budget.TotalRho, PerAnalystRho: cfg.Budget.PerAnalystRho, Analysts: cfg.Budget.Analysts},
		Audit:  alog, Metrics: reg, Logger: log, Now: testNodeClock(log),
		MarkFile: filepath.Join(cfg.DataDir, check.MarkFile),
		// `fedstat node status` and `fedstat node query` while the daemon
		// holds the store: on the admin socket only.
		Local: (&admin.Local{DataDir: cfg.DataDir, Store: st, Data: data, Catalogue: cat, BuildTime: build}).Handler(),
	})
	if err != nil {
		return err
	}
	defer n.Close()
	o, err := startOps(cfg.OpsListen, cfg.OpsPprof, reg, log)
	if err != nil {
		return err
	}
	defer o.close()
	o.setReady(func() error {
		if err := n.Ready(); err != nil {
			return err
		}
		return n.TunnelErr() // an outbound node without its tunnel cannot be reached
	})
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	if started != nil {
		started(Started{GRPC: n.Addr(), Ops: o.Addr()})
	}
	return <-runErr
}

// logCheck logs the start-up check: failures as errors, warnings as
// warnings, the rest at debug.
func logCheck(log *slog.Logger, rep *check.Report) {
	for _, r := range rep.Results {
		args := []any{"check", r.Check, "file", r.File, "problem", r.Problem}
		if r.Fix != "" {
			args = append(args, "fix", r.Fix)
		}
		switch {
		case r.Status == check.Fail && r.Fatal:
			log.Error("start-up check failed: refusing to start", args...)
		case r.Status == check.Fail:
			log.Error("start-up check failed: starting, but not ready", args...)
		case r.Status == check.Warn:
			log.Warn("start-up check", args...)
		default:
			log.Debug("start-up check", args...)
		}
	}
}

// setAsideMark moves an invalid high-water mark file out of the way (the
// node writes a new one from the ledger, which the check found covers the
// audit log); a missing one needs nothing.
func setAsideMark(log *slog.Logger, path string) {
	if _, err := os.Stat(path); err != nil {
		log.Warn("the ledger's high-water mark file is missing: re-creating it from the ledger (which covers the audit log)", "file", path)
		return
	}
	to := fmt.Sprintf("%s.invalid-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, to); err != nil {
		log.Error("cannot move the invalid high-water mark aside", "file", path, "err", err)
		return
	}
	log.Warn("the ledger's high-water mark file was invalid: moved aside, re-creating it from the ledger (which covers the audit log)", "file", path, "moved_to", to)
}
