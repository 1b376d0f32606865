// Package node is the fedstat node daemon as a library: it keeps an
// institution's records local, takes part in the key ceremony of each key
// epoch, answers queries with signed, encrypted, differentially private
// partial results, and returns key-switch shares for released totals.
//
// Use New, then Run until the context ends, then Close. The daemon's raw
// data, budget ledger and secret shares live under node/internal, so nothing
// outside this package tree (the coordinator in particular) can reach them.
package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/fedstat/fedstat/crypto/linkage"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/buildinfo"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/membership"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node/internal/keystore"
	"github.com/fedstat/fedstat/node/internal/ledger"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// Version is the node software version, advertised to the coordinator.
const Version = buildinfo.Version

// Errors a node returns to the coordinator. Their text is safe to show to
// the analyst.
var (
	ErrWrongEpoch       = errors.New("node: query is for another key epoch")
	ErrNoEpoch          = errors.New("node: no key epoch is active at this node")
	ErrNotMember        = errors.New("node: not a member of the key epoch")
	ErrNotOnCommittee   = errors.New("node: not on the key epoch's decryption committee")
	ErrBadPartial       = errors.New("node: partial rejected")
	ErrTooFewPartials   = errors.New("node: fewer partials than min_nodes")
	ErrAlreadyReleased  = errors.New("node: a different release for this query id was already made")
	ErrPolicy           = errors.New("node: refused by node policy")
	ErrPlaintextOverrun = protocol.ErrPlaintextRange // the coordinator's check too (protocol.CheckPlaintextRange)
	ErrBadRequest       = errors.New("node: bad request")
	ErrReplayed         = errors.New("node: replayed or stale request refused")
	ErrDenied           = errors.New("node: the node's admin denied the query")
	ErrApprovalExpired  = errors.New("node: the query's wait for the node admin's approval ended without a decision")
)

// DataSource is the node's data at the level the query path needs it, as
// Prometheus's engine sees only storage.Queryable: the exact aggregates of
// a plan, and the exact size of the data. The node uses nothing else of
// it; where the records live (the embedded store and its columnar copy,
// an OMOP warehouse the plan is pushed down to as SQL) is the data
// source's business. Implementations: *store.Store (queries/eval on its
// current snapshot) and *admin.Warehouse (push-down), both handed out by
// node/admin, and TablesFunc (eval on the tables a function returns) for
// benchmarks and tests.
//
// Both methods are called concurrently, from any goroutine.
type DataSource interface {
	// Evaluate computes p's exact aggregates, enforcing the plan's
	// contribution bounds exactly as queries/eval does (rows outside the
	// public domain dropped, at most G cells and R rows per patient and
	// cell, values clamped). The result must never leave the node: the
	// node only noises it (dp.NoiseShare, dp.NoisyCohort).
	Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error)
	// Summary returns the exact number of patients and of rows per
	// table, for the node's own admin and the network operator only; the
	// node coarsens it (CoarseSummary) for everyone else. It is called
	// when gossip metadata changes and on every Info call, so it must be
	// cheap or cached. It never returns nil.
	Summary() *typesv1.DataSummary
}

// Config configures a node.
type Config struct {
	// Identity is the node's network certificate and key; its name is the
	// node id and its key signs partials and shares. Required.
	Identity *pki.Identity
	// ListenAddr is the gRPC address to serve on. Defaults to 127.0.0.1:0;
	// must be empty for an outbound node (Coordinator).
	ListenAddr string
	// Coordinator, when set, makes the node outbound-only (outbound.go):
	// it opens no gRPC listener, dials the coordinator's gRPC address
	// (host:port) and keeps one reverse tunnel open through which the
	// coordinator calls it, reconnecting with backoff. ListenAddr,
	// AdvertiseAddr, Gossip and ServerOptions must then be unset. Defaults
	// to none: the node listens on ListenAddr.
	Coordinator string
	// CoordinatorName is the name the coordinator's certificate must carry
	// (outbound nodes only). Defaults to "coordinator".
	CoordinatorName string
	// Reconnect bounds the wait between attempts to open the tunnel
	// (outbound nodes only): capped exponential backoff with jitter.
	// Defaults to 500ms and 10s.
	Reconnect Backoff
	// StateDir holds the node's secret shares (StateDir/keys). Required.
	StateDir string
	// DB is the node's store for its ledger and epoch records. Required.
	DB *kv.DB
	// Data is the node's data. Required.
	Data DataSource
	// OperatorKey, when set (32 bytes), encrypts secret shares at rest.
	OperatorKey []byte
	// Catalogue is the network catalogue used to plan queries. Defaults to
	// plan.DefaultCatalogue(), which assumes each patient's records are at
	// exactly one node (MaxNodesPerPatient 1).
	Catalogue *plan.Catalogue
	// Budget limits the privacy loss this node allows. Zero fields take the
	// ledger's defaults (rho 4 in total, rho 1 per analyst).
	Budget Budget
	// Policy is the node admin's policy. Defaults to DefaultPolicy().
	Policy *Policy
	// MaxSkew bounds how far from this node's clock the timestamp of a
	// signed message may be: how old a partial may be when it is presented
	// for release, how stale an evaluate request. Defaults to
	// protocol.DefaultMaxSkew (15 minutes), as the coordinator's does.
	MaxSkew time.Duration
	// Gossip, when set, makes the node join the network's gossip pool and
	// advertise its id, gRPC address, key epoch, version and its coarse data
	// summary (CoarseSummary). Defaults to none.
	Gossip *membership.Config
	// AdvertiseAddr is the gRPC address others reach this node at. Defaults
	// to the address it listens on.
	AdvertiseAddr string
	// BenchmarkPlaintext sends partials unencrypted. It exists only so that
	// `fedstat bench` can measure what encryption costs: the daemon's
	// configuration has no way to set it, and a coordinator that is not
	// itself in this mode rejects such partials. Defaults to false.
	BenchmarkPlaintext bool
	// Audit, when set, receives an entry for every step the node takes:
	// queries received, refused, debited and answered, releases, epochs.
	// Its head is recorded in DB with every debit and at start.
	Audit *audit.Log
	// MarkFile, when set, is the ledger's high-water mark file
	// (StateDir/ledger.hwm for the daemon): rewritten after every debit
	// and at start, and New refuses a ledger below the mark it finds
	// there. See durable.go. Defaults to none.
	MarkFile string
	// Local, when set, answers the node admin's requests about the node's
	// data on the admin socket, under /local/ (node/admin.Local: the
	// status and the exact local answer to a query while the daemon holds
	// the store). What it serves is exact and stays on the node's machine:
	// it is never mounted anywhere but the admin socket (AdminSocket).
	// Defaults to none (404).
	Local http.Handler
	// Metrics, when set, receives the node's Prometheus metrics.
	Metrics prometheus.Registerer
	// ServerOptions are added to the node's gRPC server options, after the
	// defaults (TLS, message limits, the authenticating interceptor): the
	// fault tests use them to slow a node down or to make it answer with a
	// corrupted partial. The daemon's configuration has no way to set them.
	// Defaults to none.
	ServerOptions []grpc.ServerOption
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Budget is a node's privacy budget in zCDP rho; zero fields take the
// defaults.
type Budget struct {
	TotalRho      float64
	PerAnalystRho float64
	Analysts      map[string]float64
}

// Node is a running node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	id     string
	log    *slog.Logger
	keys   *keystore.Store
	ledger *ledger.Ledger
	replay envelope.ReplayCache
	// staged: the stages of linked queries this node has mixed.
	staged stagedSet
	// linkChecked: the release evidence of recent linked queries checked.
	linkChecked linkCheckedSet

	mu      sync.RWMutex
	epoch   *epochState // the active epoch; nil until the first key ceremony
	pending *epochState // an epoch between KeyGen and InstallKey (node/epoch.go)
	// previous is the epoch the active one replaced, served until
	// previousUntil to queries that started in it (epochFor), so that a new
	// epoch (a committee rotation) does not fail the queries in flight.
	previous      *epochState
	previousUntil time.Time

	releaseMu sync.Mutex // serialises release decisions
	// prepared holds the key-switch shares prepared for a RELEASE step, by
	// query id (under releaseMu; node/release.go).
	prepared map[string]*shareRecord
	// sent holds the payloads of the partials this node stored last, for
	// their commit step (node/release.go, sentCache).
	sent     sentCache
	seriesMu sync.Mutex // serialises standing-series evaluations (their memory: seriesExact)

	health health     // what keeps the node from being ready (durable.go)
	markMu sync.Mutex // serialises writes of the mark file

	pool    *membership.Pool
	metrics *metrics

	approvalMu sync.Mutex // serialises reads and writes of approval records (approval.go)
	adminSrv   *http.Server

	lis  net.Listener
	srv  *grpc.Server
	out  *outbound // an outbound node's tunnel (outbound.go); nil for a listening node
	done chan struct{}
}

// New validates cfg, opens the node's secrets and state, and listens on
// cfg.ListenAddr. It does not serve until Run.
func New(cfg Config) (*Node, error) {
	if cfg.Identity == nil || cfg.DB == nil || cfg.Data == nil || cfg.StateDir == "" {
		return nil, errors.New("node: Config.Identity, DB, Data and StateDir are required")
	}
	if cfg.Identity.Role() != pki.RoleNode {
		return nil, fmt.Errorf("node: certificate of %s has role %s, want node", cfg.Identity.Name(), cfg.Identity.Role())
	}
	if cfg.Coordinator != "" {
		if err := checkOutbound(&cfg); err != nil {
			return nil, err
		}
	} else if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.Catalogue == nil {
		cfg.Catalogue = plan.DefaultCatalogue()
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = protocol.DefaultMaxSkew
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys, err := keystore.Open(filepath.Join(cfg.StateDir, "keys"), cfg.OperatorKey)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		id:      cfg.Identity.Name(),
		log:     cfg.Logger.With("node", cfg.Identity.Name()),
		keys:    keys,
		metrics: newMetrics(cfg.Metrics),
		replay:  envelope.NewMemoryReplayCache(2 * cfg.MaxSkew),
		done:    make(chan struct{}),
	}
	n.ledger = ledger.NewWithHooks(cfg.DB, ledger.Limits{TotalRho: cfg.Budget.TotalRho, PerAnalystRho: cfg.Budget.PerAnalystRho, Analysts: cfg.Budget.Analysts},
		ledger.Hooks{InDebit: n.anchorAudit, AfterDebit: func(ledger.Figures) error { return n.writeMark() }})
	if err := n.loadEpoch(); err != nil {
		return nil, err
	}
	if err := n.startDurable(); err != nil {
		return nil, err
	}
	if cfg.Coordinator != "" {
		if err := n.newOutbound(); err != nil {
			return nil, err
		}
		return n, nil
	}
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("node: listen %s: %w", cfg.ListenAddr, err)
	}
	n.lis = lis
	n.srv = rpc.NewServer(cfg.Identity, n.log, n.refused, append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(n.guard)}, cfg.ServerOptions...)...)
	nodev1.RegisterNodeServiceServer(n.srv, &service{n: n})
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// Addr returns the address the node serves gRPC on ("" for an outbound
// node, which listens on nothing).
func (n *Node) Addr() string {
	if n.lis == nil {
		return ""
	}
	return n.lis.Addr().String()
}

// refused audits a call refused because its caller is not authenticated.
func (n *Node) refused(ctx context.Context, method string, err error) {
	n.record(ctx, "unauthenticated", "call.refused", "", map[string]any{"method": method, "reason": err.Error(), "remote": rpc.RemoteAddr(ctx)})
}

// Run serves until ctx ends, then stops gracefully (in-flight calls get up
// to 10 seconds). An outbound node keeps its tunnel to the coordinator
// open instead (runOutbound).
func (n *Node) Run(ctx context.Context) error {
	if n.out != nil {
		return n.runOutbound(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- n.srv.Serve(n.lis) }()
	n.log.Info("node serving", "addr", n.Addr())
	if err := n.startAdmin(); err != nil {
		n.srv.Stop()
		return err
	}
	defer n.stopAdmin()
	if n.cfg.Gossip != nil {
		gc := *n.cfg.Gossip
		gc.Meta = n.meta()
		if gc.Logger == nil {
			gc.Logger = n.log
		}
		pool, err := membership.Start(gc)
		if err != nil {
			n.srv.Stop()
			return err
		}
		n.mu.Lock()
		n.pool = pool
		n.mu.Unlock()
		defer pool.Leave(2 * time.Second)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	stopped := make(chan struct{})
	go func() { n.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		n.srv.Stop()
	}
	return nil
}

// Close releases the node's resources (not the DB, which the caller owns).
func (n *Node) Close() error {
	if n.srv != nil {
		n.srv.Stop()
	}
	if n.out != nil {
		n.out.close()
	}
	return nil
}

// epochState is one key epoch as this node knows it.
type epochState struct {
	Epoch     uint64
	Params    homomorphic.Params
	Threshold int
	Members   []member
	CRS       []byte
	// CKGShare is this member's own CKG share (public), kept from
	// InstallKey: what its key-switch shares are proven against.
	CKGShare []byte
	// ThresholdImage is this member's public threshold image
	// (collective.ThresholdImage) in an epoch with threshold < committee
	// whose dealing was checked: what its key-switch shares are proven
	// against. Nil otherwise (or when the committee is too large for a
	// proof).
	ThresholdImage []byte
	PublicKey      *homomorphic.PublicKey // nil until installed
	// Link is the epoch's linkage public key (crypto/linkage), nil for an
	// epoch made before record linkage; the share is in the keystore
	// (linkShareName).
	Link   *linkage.PublicKey
	secret *homomorphic.SecretKeyShare
	// secretErr says why secret is nil after a restart (its file is missing
	// or damaged): the node then cannot decrypt in this epoch.
	secretErr error
	// ckgShare is this committee member's signed CKG share of a pending
	// epoch, kept in memory from KeyGen until it is revealed (RevealKeyGen);
	// ckgSet is the digest of the one set of commitments it was revealed
	// in. Both are lost on a restart: the ceremony then fails at this node,
	// and the coordinator starts a new epoch.
	ckgShare *typesv1.Signed
	ckgProof []byte // the proof of ckgShare (collective.CKGShareProven)
	ckgSet   []byte
	// dealing holds this dealer's Shamir shares of a pending epoch with
	// threshold below its committee, by recipient point, from KeyGen until
	// RevealKeyGen seals each to its recipient's dealing key (lost on a
	// restart, as ckgShare is).
	dealing map[uint64][]byte
	// linkDealing holds this dealer's linkage-key shares of a pending
	// epoch, by recipient point, for RevealKeyGen as dealing does.
	linkDealing map[uint64][]byte
	// keyCheck is the answer to the epoch's one key-check challenge
	// (CheckKey), kept in memory until it is opened.
	keyCheck *keyCheck
}

type member struct {
	ID   string
	Cert *x509.Certificate
	// Point is the member's Shamir point when it is on the epoch's
	// decryption committee (it holds a share of the key), 0 when it only
	// encrypts under the committee's public key.
	Point uint64
}

// committee is the members of e that hold a share of its key (a nonzero
// Shamir point), in member order. An epoch made before committees has every
// member on it.
func (e *epochState) committee() []member { return committeeOf(e.Members) }

// onCommittee reports whether id holds a share of e's key.
func (e *epochState) onCommittee(id string) bool {
	m, ok := e.member(id)
	return ok && m.Point != 0
}

// thresholdShared reports whether the committee holds the key T-of-K (each
// member decrypts with its threshold share) rather than K-of-K.
func (e *epochState) thresholdShared() bool { return e.Threshold < len(e.committee()) }

func (e *epochState) member(id string) (member, bool) {
	for _, m := range e.Members {
		if m.ID == id {
			return m, true
		}
	}
	return member{}, false
}

// current returns the active epoch (with an installed public key).
func (n *Node) current() (*epochState, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.epoch == nil || n.epoch.PublicKey == nil {
		return nil, ErrNoEpoch
	}
	return n.epoch, nil
}

// PreviousEpochGrace is how long after a new key epoch is installed a node
// still answers, commits and decrypts for queries of the epoch it replaced:
// the longest a query runs from its first call to its release without an
// approval wait (its deadline and release timeout).
const PreviousEpochGrace = 15 * time.Minute

// epochFor returns the key epoch id for a query call: the active epoch, or
// the one it replaced while PreviousEpochGrace has not passed since.
func (n *Node) epochFor(id uint64) (*epochState, error) {
	e, err := n.current()
	if err != nil || e.Epoch == id {
		return e, err
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if p := n.previous; p != nil && p.Epoch == id && n.cfg.Now().Before(n.previousUntil) {
		return p, nil
	}
	return e, nil
}

// Epoch returns the active key epoch (0 if none).
func (n *Node) Epoch() uint64 {
	e, err := n.current()
	if err != nil {
		return 0
	}
	return e.Epoch
}

// meta is what the node advertises by gossip.
func (n *Node) meta() membership.Meta {
	addr := n.cfg.AdvertiseAddr
	if addr == "" {
		addr = n.Addr()
	}
	sum := n.CoarseSummary()
	return membership.Meta{ID: n.id, Role: string(pki.RoleNode), GRPCAddr: addr, Epoch: n.Epoch(), Version: Version,
		Patients: sum.Patients, Rows: sum.Rows}
}

// advertise gossips the node's current metadata (after an epoch change).
func (n *Node) advertise() {
	n.mu.RLock()
	pool := n.pool
	n.mu.RUnlock()
	if pool == nil {
		return
	}
	if err := pool.SetMeta(n.meta()); err != nil {
		n.log.Warn("could not gossip new metadata", "err", err)
	}
}

// record appends an audit entry; a failure to audit is logged loudly (the
// step itself already happened or was refused). The entry is written even
// when ctx was cancelled (a coordinator that hung up or passed its deadline):
// the step it records happened all the same.
func (n *Node) record(ctx context.Context, actor, action, queryID string, details map[string]any) {
	if n.cfg.Audit == nil {
		return
	}
	if err := n.cfg.Audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: actor, Action: action, QueryID: queryID, Details: details}); err != nil {
		n.log.Error("audit log append failed", "action", action, "query_id", queryID, "err", err)
		n.noteFault(err)
	}
}
