// Package coordinator is the fedstat coordinator daemon as a library. It
// takes analysts' queries, plans them, fans them out to the nodes of the
// current key epoch, verifies and adds their encrypted partials without being
// able to read any of them, has T nodes key-switch the sum to a fresh result
// key, decrypts only the total and releases it with its intervals.
//
// The coordinator is honest-but-curious by design: it never holds a key that
// decrypts one node's partial (the collective secret is spread over the
// nodes), and every node re-checks what it is asked to release.
package coordinator

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/crypto/envelope"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/membership"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// Errors.
var (
	ErrNoEpoch       = errors.New("coordinator: no key epoch yet")
	ErrNotReady      = errors.New("coordinator: not ready")
	ErrTooFewNodes   = errors.New("coordinator: too few nodes")
	ErrNotFound      = errors.New("coordinator: no such query")
	ErrBadRequest    = errors.New("coordinator: bad request")
	ErrQueryFailed   = errors.New("coordinator: query failed")
	ErrQueryCanceled = errors.New("coordinator: query cancelled")
)

// NodeEndpoint is a node the coordinator can reach.
type NodeEndpoint struct {
	// ID is the node id (the name in its certificate).
	ID string
	// Addr is its gRPC address.
	Addr string
}

// Config configures a coordinator.
type Config struct {
	// Identity is the coordinator's certificate (role coordinator). Required.
	Identity *pki.Identity
	// ListenAddr is the analyst gRPC address. Defaults to 127.0.0.1:0.
	ListenAddr string
	// Nodes are the network's dialled nodes listed statically. Defaults to
	// none: nodes then come by gossip (Gossip) or by the tunnels that
	// outbound nodes open to ListenAddr (tunnel.go), which are always
	// served.
	Nodes []NodeEndpoint
	// Params names the homomorphic parameter set. Defaults to
	// homomorphic.ProductionSet.
	Params string
	// Threshold is T, the number of nodes needed to decrypt. Defaults to
	// the size of the decryption committee (every committee member must
	// take part).
	Threshold int
	// Committee is K, the number of members that hold the key of an epoch
	// (the decryption committee, T of whom decrypt a release); the other
	// members only encrypt under its public key. 0 (the default) puts every
	// member on the committee. committeeOrder says how members are chosen.
	Committee int
	// CommitteeMembers are the nodes the operator wants on the committee,
	// most wanted first; the rest of the seats are filled by the public
	// rule (committeePoints).
	CommitteeMembers []string
	// CommitteeReplaceAfter is how long a committee member may be
	// unreachable before a new key epoch replaces it by a member off the
	// committee (T of K still decrypt meanwhile). Defaults to 10 minutes.
	CommitteeReplaceAfter time.Duration
	// MinNodes is the default number of partials a release needs. Defaults
	// to the number of nodes.
	MinNodes int
	// CompactRelease sends the decryptors the sum of the partials and
	// their fingerprints instead of the partials (docs/crypto.md,
	// "Checking a sum without its partials"): less traffic, but no
	// decryptor can verify the partials' proofs of encryption, so every
	// decryptor must accept unproven partials (node policy
	// accept_unproven_partials). Defaults to false: the decryptors get
	// every partial with its proofs.
	CompactRelease bool
	// SkipRangeProofs lets a release go ahead with partials that carry no
	// range proof (nodes with policy skip_range_proofs); the total is still
	// checked against their commitments. Defaults to false: a member
	// without a range proof is named and nothing is released.
	SkipRangeProofs bool
	// Catalogue is the network catalogue. Defaults to plan.DefaultCatalogue(),
	// which assumes each patient's records are at exactly one node
	// (MaxNodesPerPatient 1).
	Catalogue *plan.Catalogue
	// Populations is the public population of each region (the
	// denominators of incidence rates), part of the catalogue served to
	// analysts. Defaults to none.
	Populations map[string]int64
	// Deadline bounds how long a query waits for partials. Defaults to 60s.
	// A node whose admin must approve the query (node.Policy.
	// RequireApproval) answers "pending" at once; the query then waits for
	// it up to its approval wait instead (ApprovalWait).
	Deadline time.Duration
	// ApprovalWait is how long a query waits for the admins of nodes that
	// require approval, counted from submission, when the analyst does not
	// say (QuerySpec.approval_wait_seconds). Defaults to 24 hours. A
	// standing series' queries never wait longer than Deadline.
	ApprovalWait time.Duration
	// MaxApprovalWait is the longest approval wait an analyst may ask for.
	// Defaults to 7 days; at most protocol.MaxApprovalWait (30 days).
	MaxApprovalWait time.Duration
	// ReleaseRecordRetention is how long the release record of a released
	// query is kept (GetReleaseRecord, `fedstat verify`); older records are
	// deleted as new ones are written. Defaults to 7 days.
	ReleaseRecordRetention time.Duration
	// ApprovalPoll is how often a query asks a node whose admin has not
	// decided yet again (a cheap call: the node answers from its approval
	// record). Defaults to 5s.
	ApprovalPoll time.Duration
	// MaxSkew bounds how far from the coordinator's clock the timestamp of
	// a signed partial, key-switch share or CKG share may be. Defaults to
	// protocol.DefaultMaxSkew (15 minutes), as the nodes' does.
	MaxSkew time.Duration
	// Gossip, when set, makes the coordinator join the network's gossip
	// pool: nodes that appear there with a valid node certificate are
	// admitted, and a change in the admitted set starts a new key epoch once
	// it has been stable for EpochDebounce. Defaults to none (static Nodes).
	Gossip *membership.Config
	// MinMembers is the number of admitted, reachable nodes needed before
	// the first key epoch is made automatically. Defaults to 2.
	MinMembers int
	// EpochDebounce is how long the admitted set must stay unchanged before
	// a new key epoch starts. Defaults to 10s.
	EpochDebounce time.Duration
	// AutoEpoch makes the coordinator keep a usable key epoch by itself: it
	// runs the key ceremony when there is none, when an admitted node is not
	// a member, when a member reports a key epoch newer than the stored one,
	// and when a member lost its keys (LostMember), and it retries a failed
	// or interrupted ceremony with CeremonyRetry's backoff until one
	// succeeds. Always on with Gossip. Defaults to false (the caller runs
	// KeyCeremony or EnsureEpoch).
	AutoEpoch bool
	// CeremonyRetry is the backoff between failed key ceremonies. Defaults
	// to Initial = EpochDebounce and Max = 5 minutes.
	CeremonyRetry Backoff
	// HealthInterval is how often the coordinator asks every admitted node
	// for its readiness report (Info: key epoch, keys usable). Defaults to
	// 10s.
	HealthInterval time.Duration
	// LostMember says what a new key epoch does about a member that reports
	// it lost its keys or its state: LostMemberRejoin (the default) or
	// LostMemberExclude.
	LostMember LostMemberPolicy
	// AtStep, when set, is called at the named steps of admission and of
	// the key ceremony (see Step): the fault tests make the process exit
	// there. The daemon's configuration has no way to set it (a binary built
	// with the fedstat_testhooks tag reads it from its environment).
	// Defaults to none.
	AtStep func(Step)
	// DB, when set, keeps the query history, results and key epochs across
	// restarts. Defaults to none (memory only).
	DB *kv.DB
	// BenchmarkPlaintext takes partials unencrypted (from nodes in the same
	// mode) and releases their plain sum. Only `fedstat bench` sets it, to
	// measure what encryption costs; the daemon's configuration cannot.
	// Defaults to false, and then any plaintext partial is rejected.
	BenchmarkPlaintext bool
	// Audit, when set, receives an entry for every step: queries
	// submitted, released and failed, key epochs.
	Audit *audit.Log
	// Metrics, when set, receives the coordinator's Prometheus metrics.
	Metrics prometheus.Registerer
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// SeriesClock is the clock that decides when a period of a standing
	// series is over and due. Defaults to Now; tests and drills advance it.
	SeriesClock func() time.Time
	// SeriesInterval is how often the scheduler looks for due periods (and
	// retries one that failed). Defaults to 1 minute.
	SeriesInterval time.Duration
	// SeriesDelay is how long after a period's last day it becomes due
	// (time for late records to arrive at the nodes). Defaults to 0: the
	// day after the period.
	SeriesDelay time.Duration
	// AlertWebhook, when set, receives every alert of a standing series as
	// a JSON POST (coordinatorv1.SeriesAlert in JSON).
	AlertWebhook string
}

// Coordinator is a running coordinator. Its methods are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	params homomorphic.Params
	replay envelope.ReplayCache

	mu      sync.RWMutex
	reg     map[string]*regNode // the node registry: admitted nodes
	epoch   *epoch
	queries map[string]*query
	// records: release records, when there is no store (record.go).
	records records
	order   []string

	reuseMu sync.Mutex
	reuse   map[string]releaseRecord // the releases a same question may reuse (reuse.go)

	metrics    *metrics
	pool       *membership.Pool
	ceremonyMu sync.Mutex    // one key ceremony at a time
	kick       chan struct{} // tells the epoch keeper that something changed
	series     seriesState
	gen        uint64 // guarded by mu: counts epoch changes and ceremonies (nodeHealth.Gen)
	ceremony   ceremonyStatus

	// toResume: queries stored while they waited for approval, resumed
	// by Run (waiting.go); guarded by mu.
	toResume []storedWait
	// closing is set by Close: a query waiting for approval that it
	// cancels stays stored as it is, to resume at the next start.
	closing atomic.Bool

	// tunnels serves outbound nodes' reverse tunnels on srv (tunnel.go);
	// tunnelMu serialises their admission.
	tunnels  *rpc.TunnelHub
	tunnelMu sync.Mutex

	lis net.Listener
	srv *grpc.Server
	wg  sync.WaitGroup
	// lastCeremony is the cost of the last key ceremony (under mu).
	lastCeremony CeremonyCost
}

// epoch is a key epoch as the coordinator records it: public information only.
type epoch struct {
	ID        uint64
	Members   []epochMember
	Threshold int
	PublicKey *homomorphic.PublicKey
	// Link is the epoch's linkage public key with every committee
	// member's verification key (crypto/linkage), from the members' signed
	// Feldman commitments: what the proofs of their decryption shares of a
	// linked query are checked against. Nil for an epoch without a
	// linkage key, or one stored by a version that did not keep it.
	Link    *linkage.PublicKey
	Created time.Time
	// CRS and CKGShares (by member id) are the key ceremony's public
	// inputs: what the proofs of the decryptors' key-switch shares are
	// checked against in an epoch with threshold = committee. Nil in
	// epochs stored by versions before those proofs.
	CRS       []byte
	CKGShares map[string][]byte
	// ThresholdImages (by member id) are the committee members' threshold
	// images (collective.ThresholdImage) in an epoch with threshold <
	// committee whose dealing was checked: what the proofs of their
	// key-switch shares are checked against. Nil otherwise.
	ThresholdImages map[string][]byte
}

type epochMember struct {
	ID   string
	Cert *x509.Certificate
	// Point is the member's Shamir point on the decryption committee, 0
	// for a member that only encrypts.
	Point uint64
}

// committee is the members of e that hold a share of its key, in member
// order.
func (e *epoch) committee() []epochMember {
	var out []epochMember
	for _, m := range e.Members {
		if m.Point != 0 {
			out = append(out, m)
		}
	}
	return out
}

// points returns the Shamir points of the members ids, in order.
func (e *epoch) points(ids []string) []uint64 {
	out := make([]uint64, len(ids))
	for i, id := range ids {
		out[i] = e.member(id).Point
	}
	return out
}

// onCommittee reports whether id holds a share of e's key.
func (e *epoch) onCommittee(id string) bool { return e.member(id).Point != 0 }

// New validates cfg, connects to the nodes (lazily) and listens.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Identity == nil {
		return nil, errors.New("coordinator: Config.Identity is required")
	}
	if cfg.Identity.Role() != pki.RoleCoordinator {
		return nil, fmt.Errorf("coordinator: certificate of %s has role %s, want coordinator", cfg.Identity.Name(), cfg.Identity.Role())
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.Params == "" {
		cfg.Params = homomorphic.ProductionSet
	}
	if cfg.Threshold < 0 || cfg.MinNodes < 0 || (cfg.Threshold > 0 && cfg.MinNodes > 0 && cfg.MinNodes < cfg.Threshold) {
		return nil, fmt.Errorf("coordinator: threshold %d and min_nodes %d: want 0 (default) or 1 <= threshold <= min_nodes", cfg.Threshold, cfg.MinNodes)
	}
	if cfg.Committee < 0 || (cfg.Committee > 0 && cfg.Threshold > cfg.Committee) {
		return nil, fmt.Errorf("coordinator: committee %d and threshold %d: want 0 (every member) or threshold <= committee", cfg.Committee, cfg.Threshold)
	}
	if cfg.Committee > 0 && len(cfg.CommitteeMembers) > cfg.Committee {
		return nil, fmt.Errorf("coordinator: committee_members names %d nodes for a committee of %d", len(cfg.CommitteeMembers), cfg.Committee)
	}
	if cfg.EpochDebounce == 0 {
		cfg.EpochDebounce = 10 * time.Second
	}
	if cfg.CommitteeReplaceAfter <= 0 {
		cfg.CommitteeReplaceAfter = 10 * time.Minute
	}
	if cfg.CeremonyRetry.Initial <= 0 {
		cfg.CeremonyRetry.Initial = cfg.EpochDebounce
	}
	if cfg.CeremonyRetry.Max <= 0 {
		cfg.CeremonyRetry.Max = 5 * time.Minute
	}
	cfg.CeremonyRetry.Max = max(cfg.CeremonyRetry.Max, cfg.CeremonyRetry.Initial)
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 10 * time.Second
	}
	switch cfg.LostMember {
	case "":
		cfg.LostMember = LostMemberRejoin
	case LostMemberRejoin, LostMemberExclude:
	default:
		return nil, fmt.Errorf("coordinator: rekey_on_lost_member %q: want %q or %q", cfg.LostMember, LostMemberRejoin, LostMemberExclude)
	}
	if cfg.Gossip != nil {
		cfg.AutoEpoch = true
	}
	if cfg.Catalogue == nil {
		cfg.Catalogue = plan.DefaultCatalogue()
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = 60 * time.Second
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = protocol.DefaultMaxSkew
	}
	if cfg.MaxApprovalWait == 0 {
		cfg.MaxApprovalWait = 7 * 24 * time.Hour
	}
	if cfg.ReleaseRecordRetention <= 0 {
		cfg.ReleaseRecordRetention = 7 * 24 * time.Hour
	}
	if cfg.ApprovalWait == 0 {
		cfg.ApprovalWait = min(24*time.Hour, cfg.MaxApprovalWait)
	}
	if cfg.ApprovalPoll == 0 {
		cfg.ApprovalPoll = 5 * time.Second
	}
	switch {
	case cfg.MaxApprovalWait < 0 || cfg.MaxApprovalWait > protocol.MaxApprovalWait:
		return nil, fmt.Errorf("coordinator: max_approval_wait %s: want at most %s", cfg.MaxApprovalWait, protocol.MaxApprovalWait)
	case cfg.ApprovalWait < 0 || cfg.ApprovalWait > cfg.MaxApprovalWait:
		return nil, fmt.Errorf("coordinator: approval_wait %s: want between 0 and max_approval_wait (%s)", cfg.ApprovalWait, cfg.MaxApprovalWait)
	case cfg.ApprovalPoll < 0:
		return nil, fmt.Errorf("coordinator: approval_poll %s is negative", cfg.ApprovalPoll)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SeriesClock == nil {
		cfg.SeriesClock = cfg.Now
	}
	if cfg.SeriesInterval <= 0 {
		cfg.SeriesInterval = time.Minute
	}
	params, err := homomorphic.NewParams(cfg.Params)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "coordinator"),
		params:  params,
		replay:  envelope.NewMemoryReplayCache(max(time.Hour, 2*cfg.MaxSkew)),
		reg:     map[string]*regNode{},
		metrics: newMetrics(cfg.Metrics),
		queries: map[string]*query{},
		kick:    make(chan struct{}, 1),
	}
	if err := c.loadState(); err != nil {
		return nil, err
	}
	if err := c.loadReleases(); err != nil {
		return nil, err
	}
	if err := c.loadSeries(); err != nil {
		return nil, err
	}
	for _, n := range cfg.Nodes {
		if _, dup := c.reg[n.ID]; dup {
			return nil, fmt.Errorf("coordinator: node %s listed twice", n.ID)
		}
		if err := c.setNode(n.ID, n.Addr, true); err != nil {
			c.Close()
			return nil, err
		}
	}
	lis, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("coordinator: listen %s: %w", cfg.ListenAddr, err)
	}
	c.lis = lis
	c.srv = rpc.NewServer(cfg.Identity, c.log, func(ctx context.Context, method string, err error) {
		c.record(ctx, "unauthenticated", "call.refused", "", map[string]any{"method": method, "reason": err.Error(), "remote": rpc.RemoteAddr(ctx)})
	}, rpc.TunnelKeepalive())
	coordinatorv1.RegisterCoordinatorServiceServer(c.srv, &service{c: c})
	c.startTunnels()
	return c, nil
}

// Addr returns the analyst API address.
func (c *Coordinator) Addr() string { return c.lis.Addr().String() }

// Params returns the homomorphic parameter set of the network.
func (c *Coordinator) Params() homomorphic.Params { return c.params }

// Run serves the analyst API until ctx ends, then stops gracefully. It
// also watches the nodes' readiness (every HealthInterval) and, with
// AutoEpoch, keeps a usable key epoch.
func (c *Coordinator) Run(ctx context.Context) error {
	if c.cfg.Gossip != nil {
		if err := c.startGossip(ctx); err != nil {
			return err
		}
	}
	c.resumeWaiting()
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.monitor(ctx) }()
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.seriesLoop(ctx) }()
	if c.cfg.AutoEpoch {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.keeper().run(ctx) }()
	}
	errc := make(chan error, 1)
	go func() { errc <- c.srv.Serve(c.lis) }()
	c.log.Info("coordinator serving", "addr", c.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	// Outbound nodes' tunnels are streams that never end on their own.
	c.tunnels.Shutdown()
	c.closeTunnels()
	stopped := make(chan struct{})
	go func() { c.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		c.srv.Stop()
	}
	return nil
}

// Close stops serving, waits for running queries to end and closes the
// node connections.
func (c *Coordinator) Close() error {
	c.closeTunnels()
	if c.srv != nil {
		c.srv.Stop()
	}
	if c.pool != nil {
		c.pool.Leave(2 * time.Second)
	}
	c.closing.Store(true)
	c.mu.RLock()
	for _, q := range c.queries {
		q.cancel()
	}
	c.mu.RUnlock()
	c.wg.Wait()
	c.mu.Lock()
	for _, n := range c.reg {
		if n.conn != nil {
			n.conn.Close()
		}
	}
	c.mu.Unlock()
	return nil
}

// PublicKey returns the collective public key of the current key epoch
// and the epoch's id. The key is public: every member encrypts under it.
func (c *Coordinator) PublicKey() (*homomorphic.PublicKey, uint64, error) {
	e, err := c.currentEpoch()
	if err != nil {
		return nil, 0, err
	}
	return e.PublicKey, e.ID, nil
}

func (c *Coordinator) currentEpoch() (*epoch, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.epoch == nil {
		return nil, ErrNoEpoch
	}
	return c.epoch, nil
}

// callError is the error of a call to a node as the coordinator reports
// it: the node's own message, typed (rpc.FromStatus), and the call's gRPC
// code, as "message (Code)".
func callError(err error) error {
	return fmt.Errorf("%w (%s)", rpc.FromStatus(err), rpc.Code(err))
}

// record appends an audit entry (failures are logged loudly).
func (c *Coordinator) record(ctx context.Context, actor, action, queryID string, details map[string]any) {
	if c.cfg.Audit == nil {
		return
	}
	// Not cancelled with ctx: a client that hangs up right after a step
	// does not undo the step, so it must not lose its audit entry.
	if err := c.cfg.Audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: actor, Action: action, QueryID: queryID, Details: details}); err != nil {
		c.log.Error("audit log append failed", "action", action, "query_id", queryID, "err", err)
	}
}

// Ready reports whether the coordinator can run queries: it has a key
// epoch, and no more than N-T of its members reported that they cannot do
// their part in it (members that did not answer count as able: liveness is
// not membership). The error says why not, and what the key ceremony is
// doing about it.
func (c *Coordinator) Ready() error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	now := c.cfg.Now()
	e := c.epoch
	if e == nil {
		return fmt.Errorf("%w: %s", ErrNoEpoch, c.ceremony.describe(now))
	}
	able := 0
	committee := e.committee()
	for _, m := range committee {
		if _, problem := c.memberProblemLocked(e, m.ID); problem == "" {
			able++
		}
	}
	if able < e.Threshold {
		who := "members"
		if len(committee) < len(e.Members) {
			who = "committee members"
		}
		return fmt.Errorf("%w: %d of the %d %s of key epoch %d can decrypt, the threshold is %d; %s",
			ErrNotReady, able, len(committee), who, e.ID, e.Threshold, c.ceremony.describe(now))
	}
	return nil
}

// EnsureEpoch makes sure there is a key epoch whose members are the admitted
// nodes: it keeps the stored epoch when every node still holds it, and runs
// the key ceremony otherwise.
func (c *Coordinator) EnsureEpoch(ctx context.Context) (uint64, error) {
	if e, err := c.currentEpoch(); err == nil {
		same := len(e.Members) == len(c.registry())
		for _, n := range c.registry() {
			if !same || !e.has(n.ID) {
				same = false
				break
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := n.client.Info(cctx, &nodev1.InfoRequest{})
			cancel()
			if err != nil || info.GetEpoch() != e.ID {
				same = false
				break
			}
		}
		if same {
			return e.ID, nil
		}
	}
	return c.KeyCeremony(ctx)
}
