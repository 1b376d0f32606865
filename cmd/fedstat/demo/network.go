// Package demo runs a whole fedstat network on loopback: a throw-away CA and
// certificates, a coordinator and N nodes speaking gRPC with mutual TLS, each
// node with its own data, the key ceremony, and queries. `fedstat demo` and
// the end-to-end tests use it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

// Options configure a demo network.
type Options struct {
	// Dir holds the network's files (PKI, node data). Defaults to a new
	// temporary directory, removed by Close unless Keep.
	Dir  string
	Keep bool
	// Data gives each node its records; len(Data) is the number of nodes.
	// Required.
	Data []*cdm.Records
	// Regions is the network catalogue's public region list. Defaults to
	// the regions found in Data (the demo's data is public by construction).
	Regions []string
	// Studies are the catalogue's study table schemas. Defaults to none.
	Studies []cdm.StudySchema
	// Linkage makes the network a linked one (plan.Catalogue.Linkage;
	// docs/linkage.md): the patients' identifiers of its system identify
	// residents across nodes. Defaults to nil: not linked.
	Linkage *plan.Linkage
	// MaxNodesPerPatient is the catalogue's max_nodes_per_patient.
	// Defaults to the default catalogue's.
	MaxNodesPerPatient int
	// Populations are the catalogue's public populations by region, served
	// to analysts (coordinator.Config.Populations). Defaults to none.
	Populations map[string]int64
	// Threshold is T (decryption threshold). Defaults to the committee's
	// size.
	Threshold int
	// Committee is K, the size of the decryption committee. Defaults to 0:
	// every node.
	Committee int
	// MinNodes defaults to the number of nodes.
	MinNodes int
	// Params is the homomorphic parameter set. Defaults to the production set.
	Params string
	// Shared, when set, gives every one of NodeCount nodes this same data
	// (read-only) and an in-memory store, instead of Data: the benchmark's
	// way to run many large nodes in one process. Defaults to nil.
	Shared    *cdm.Tables
	NodeCount int
	// Budget is every node's privacy budget. Defaults to the ledger's.
	Budget node.Budget
	// BenchmarkPlaintext runs the network without encryption (benchmark
	// only; see node.Config.BenchmarkPlaintext).
	BenchmarkPlaintext bool
	// NodePolicy is every node's policy. Defaults to node.DefaultPolicy().
	NodePolicy *node.Policy
	// CompactRelease makes the coordinator send decryptors the sum of the
	// partials, not the partials, and every node accept that (its policy's
	// AcceptUnprovenPartials): the release without the proofs of
	// encryption being verified (`fedstat bench --compact`). Defaults to
	// false.
	CompactRelease bool
	// SkipRangeProofs runs the network with every node's policy
	// skip_range_proofs and the coordinator's: partials carry commitments
	// but no range proofs. For tests whose analyses have vectors of
	// hundreds of slots (a range proof costs tens of seconds a partial
	// under the race detector), not about the proofs. Defaults to false.
	SkipRangeProofs bool
	// AuditLogs gives every node and the coordinator an audit log in its
	// directory (Dir/node-1/audit.log, ..., Dir/coordinator/audit.log).
	// Defaults to false.
	AuditLogs bool
	// NodeServerOptions, when set, gives extra gRPC server options for the
	// node with the given id (see node.Config.ServerOptions): the fault
	// tests' way to make one node slow or malicious. Defaults to none.
	NodeServerOptions func(nodeID string) []grpc.ServerOption
	// CoordinatorConfig, when set, may change the coordinator's
	// configuration before it starts (the liveness tests turn on AutoEpoch,
	// shorten HealthInterval, choose LostMember). Defaults to none.
	CoordinatorConfig func(*coordinator.Config)
	// NodeCatalogue, when set, gives the catalogue of the node with the
	// given index (the network's is passed in; return it unchanged or a
	// changed copy): the tests' way to make a node disagree with the
	// coordinator. Defaults to the network's catalogue everywhere.
	NodeCatalogue func(i int, network *plan.Catalogue) *plan.Catalogue
	// NodeData, when set, gives the data source of the node with the given
	// id (its own store is passed in; return it unchanged or wrapped): the
	// tests' way to give one node a compromised data step, a node that
	// runs the real protocol on values it should not have. Network.Stores
	// keeps the stores themselves. Defaults to none.
	NodeData func(nodeID string, own node.DataSource) node.DataSource
	// Outbound runs every node outbound-only (node.Config.Coordinator):
	// the coordinator starts first with no static nodes, and each node
	// dials it and keeps a tunnel open. NodeServerOptions cannot apply
	// then. Defaults to false: the coordinator dials the nodes.
	Outbound bool
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Progress, when set, is told about each set-up step.
	Progress func(step string, elapsed time.Duration)
}

// Network is a running demo network.
type Network struct {
	Dir         string
	Coordinator *coordinator.Coordinator
	Nodes       []*node.Node
	Stores      []node.DataSource
	dbs         []*kv.DB
	Analyst     *pki.Identity
	Operator    *pki.Identity
	Catalogue   *plan.Catalogue
	Epoch       uint64

	data   []*cdm.Records
	audits []*audit.Log // the audit logs it opened, closed last by Close
	keep   bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// Import adds records to node i's store as an admin's import would (a new
// data version at that node). It fails for networks on shared tables
// (admin.ErrNotStore).
func (nw *Network) Import(ctx context.Context, i int, recs *cdm.Records) error {
	if i < 0 || i >= len(nw.Stores) {
		return fmt.Errorf("demo: no node %d", i)
	}
	return admin.ImportRecordsIn(ctx, nw.Stores[i], recs, "demo")
}

// NodeID returns the id of node i (0-based).
func NodeID(i int) string { return fmt.Sprintf("node-%d", i+1) }

// Start makes the PKI, starts the nodes and the coordinator and runs the key
// ceremony. Close stops everything.
func Start(ctx context.Context, o Options) (_ *Network, err error) {
	count := len(o.Data)
	if o.Shared != nil {
		count = o.NodeCount
	}
	if count == 0 {
		return nil, errors.New("demo: Options.Data (or Shared and NodeCount) is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	step := func(name string, t0 time.Time) {
		if o.Progress != nil {
			o.Progress(name, time.Since(t0))
		}
	}
	nw := &Network{keep: o.Keep || o.Dir != "", data: o.Data}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "fedstat-demo-"); err != nil {
			return nil, err
		}
	}
	nw.Dir = o.Dir
	defer func() {
		if err != nil {
			nw.Close()
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	nw.cancel = cancel

	// 1. A throw-away network CA and certificates, through the files that
	// `fedstat ca init` and `fedstat ca issue` write.
	t0 := time.Now()
	pkiDir := filepath.Join(o.Dir, "pki")
	ca, err := pki.InitDir(pkiDir, "demo", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	issue := func(name string, role pki.Role) (*pki.Identity, error) {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role, Validity: 24 * time.Hour})
		if err != nil {
			return nil, err
		}
		if err := pki.WriteIdentity(pkiDir, id); err != nil {
			return nil, err
		}
		return pki.LoadIdentityDir(pkiDir, name)
	}
	coordID, err := issue("coordinator", pki.RoleCoordinator)
	if err != nil {
		return nil, err
	}
	if nw.Analyst, err = issue("analyst", pki.RoleAnalyst); err != nil {
		return nil, err
	}
	if nw.Operator, err = issue("operator", pki.RoleOperator); err != nil {
		return nil, err
	}
	nodeIDs := make([]*pki.Identity, count)
	for i := range count {
		if nodeIDs[i], err = issue(NodeID(i), pki.RoleNode); err != nil {
			return nil, err
		}
	}
	step("certificates", t0)

	// 2. The catalogue: public regions.
	nw.Catalogue = plan.DefaultCatalogue()
	switch {
	case len(o.Regions) > 0:
		nw.Catalogue.Regions = o.Regions
	case o.Shared != nil:
		nw.Catalogue.Regions = regionsOfTables(o.Shared)
	default:
		nw.Catalogue.Regions = RegionsOf(o.Data)
	}
	nw.Catalogue.Studies = o.Studies
	nw.Catalogue.Linkage = o.Linkage
	if o.MaxNodesPerPatient > 0 {
		nw.Catalogue.MaxNodesPerPatient = o.MaxNodesPerPatient
	}

	// 3. Nodes, each with its own store and data. Outbound nodes dial the
	// coordinator, which then starts first.
	var coordinatorAddr string
	if o.Outbound {
		if err := nw.startCoordinator(runCtx, o, coordID, nil); err != nil {
			return nil, err
		}
		coordinatorAddr = nw.Coordinator.Addr()
	}
	t0 = time.Now()
	endpoints := make([]coordinator.NodeEndpoint, count)
	nw.Stores = make([]node.DataSource, count)
	nw.dbs = make([]*kv.DB, count)
	nw.Nodes = make([]*node.Node, count)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for i := range count {
		var recs *cdm.Records
		if o.Shared == nil {
			recs = o.Data[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cat := nw.Catalogue
			if o.NodeCatalogue != nil {
				cat = o.NodeCatalogue(i, nw.Catalogue)
			}
			st, db, alog, n, err := startNode(ctx, o, filepath.Join(o.Dir, NodeID(i)), nodeIDs[i], recs, cat, coordinatorAddr)
			mu.Lock()
			defer mu.Unlock()
			if db != nil {
				nw.dbs[i] = db
			}
			if alog != nil {
				nw.audits = append(nw.audits, alog)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("demo: %s: %w", NodeID(i), err)
				}
				return
			}
			nw.Stores[i], nw.Nodes[i] = st, n
			endpoints[i] = coordinator.NodeEndpoint{ID: n.ID(), Addr: n.Addr()}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for _, n := range nw.Nodes {
		nw.wg.Add(1)
		go func() { defer nw.wg.Done(); _ = n.Run(runCtx) }()
	}
	step("nodes started and data imported", t0)

	// 4. The coordinator (outbound: already started; wait until every
	// node's tunnel is open).
	if o.Outbound {
		ids := make([]string, count)
		for i := range ids {
			ids[i] = NodeID(i)
		}
		if err := nw.Coordinator.WaitConnected(ctx, ids...); err != nil {
			return nil, err
		}
		step("nodes connected outbound", t0)
	} else if err := nw.startCoordinator(runCtx, o, coordID, endpoints); err != nil {
		return nil, err
	}

	// 5. The key ceremony.
	t0 = time.Now()
	if nw.Epoch, err = nw.Coordinator.KeyCeremony(ctx); err != nil {
		return nil, err
	}
	step("key ceremony", t0)
	return nw, nil
}

// startCoordinator starts the coordinator with the given static nodes.
func (nw *Network) startCoordinator(runCtx context.Context, o Options, id *pki.Identity, endpoints []coordinator.NodeEndpoint) error {
	ccfg := coordinator.Config{
		Identity: id, Nodes: endpoints, Params: o.Params, Threshold: o.Threshold, Committee: o.Committee,
		MinNodes: o.MinNodes, Catalogue: nw.Catalogue, Logger: o.Logger, BenchmarkPlaintext: o.BenchmarkPlaintext, Populations: o.Populations,
		CompactRelease: o.CompactRelease, SkipRangeProofs: o.SkipRangeProofs,
	}
	if o.AuditLogs {
		dir := filepath.Join(o.Dir, "coordinator")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		alog, err := audit.Open(filepath.Join(dir, "audit.log"))
		if err != nil {
			return err
		}
		ccfg.Audit = alog
		nw.audits = append(nw.audits, alog)
	}
	if o.CoordinatorConfig != nil {
		o.CoordinatorConfig(&ccfg)
	}
	c, err := coordinator.New(ccfg)
	if err != nil {
		return err
	}
	nw.Coordinator = c
	nw.wg.Add(1)
	go func() { defer nw.wg.Done(); _ = c.Run(runCtx) }()
	return nil
}

func startNode(ctx context.Context, o Options, dir string, id *pki.Identity, recs *cdm.Records, cat *plan.Catalogue, coordinatorAddr string) (_ node.DataSource, _ *kv.DB, alog *audit.Log, _ *node.Node, err error) {
	var st node.DataSource
	var db *kv.DB
	if o.Shared != nil {
		if db, err = kv.Open(kv.Options{InMemory: true}); err != nil {
			return nil, nil, nil, nil, err
		}
		st = node.TablesOf(o.Shared) // the same read-only tables for every benchmark node
	} else {
		s, d, err := admin.OpenStore(ctx, admin.OpenOptions{DataDir: dir, Logger: o.Logger})
		if err != nil {
			return nil, nil, nil, nil, err
		}
		db, st = d, s
		if _, err := s.ImportRecords(ctx, recs, "demo"); err != nil {
			return nil, db, alog, nil, err
		}
	}
	if o.AuditLogs {
		if alog, err = audit.Open(filepath.Join(dir, "audit.log")); err != nil {
			return nil, db, alog, nil, err
		}
	}
	var srvOpts []grpc.ServerOption
	if o.NodeServerOptions != nil {
		srvOpts = o.NodeServerOptions(id.Name())
	}
	data := st
	if o.NodeData != nil {
		data = o.NodeData(id.Name(), st)
	}
	n, err := node.New(node.Config{
		Identity: id, StateDir: dir, DB: db, Data: data, Catalogue: cat, Policy: o.nodePolicy(), Audit: alog, ServerOptions: srvOpts,
		Coordinator: coordinatorAddr,
		Budget:      o.Budget, BenchmarkPlaintext: o.BenchmarkPlaintext,
		Logger: o.Logger.With("node", id.Name()),
	})
	if err != nil {
		return nil, db, alog, nil, err
	}
	return st, db, alog, n, nil
}

// RegionsOf lists the regions of the patients in data, sorted: the
// catalogue's regions of a network over that data.
func RegionsOf(data []*cdm.Records) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range data {
		if r == nil {
			continue
		}
		for _, p := range r.Patients {
			if p.Region != "" && !seen[p.Region] {
				seen[p.Region] = true
				out = append(out, p.Region)
			}
		}
	}
	sortStrings(out)
	return out
}

// Dial returns a client of the coordinator authenticated as id (the analyst
// by default), over gRPC with mutual TLS. Close it when done.
func (nw *Network) Dial(id *pki.Identity) (*client.Client, error) {
	if id == nil {
		id = nw.Analyst
	}
	return client.Dial(client.Config{Address: nw.Coordinator.Addr(), Identity: id, ServerName: "coordinator"})
}

// Client returns the raw gRPC API of the coordinator authenticated as id
// (the analyst by default), for tests of the API itself; analysts' code uses
// Dial. Close the connection when done.
func (nw *Network) Client(id *pki.Identity) (coordinatorv1.CoordinatorServiceClient, func() error, error) {
	if id == nil {
		id = nw.Analyst
	}
	conn, err := rpc.Dial(nw.Coordinator.Addr(), id, "coordinator")
	if err != nil {
		return nil, nil, err
	}
	return coordinatorv1.NewCoordinatorServiceClient(conn), conn.Close, nil
}

// Close stops the network and removes its directory unless it was kept.
func (nw *Network) Close() {
	if nw.closed {
		return
	}
	nw.closed = true
	if nw.cancel != nil {
		nw.cancel()
	}
	nw.wg.Wait()
	if nw.Coordinator != nil {
		nw.Coordinator.Close()
	}
	for _, n := range nw.Nodes {
		if n != nil {
			n.Close()
		}
	}
	for _, db := range nw.dbs {
		if db != nil {
			db.Close()
		}
	}
	for _, l := range nw.audits {
		l.Close()
	}
	if !nw.keep && nw.Dir != "" {
		os.RemoveAll(nw.Dir)
	}
}

func regionsOfTables(t *cdm.Tables) []string {
	var out []string
	if pt, ok := t.Table(cdm.TablePatients); ok {
		for _, v := range pt.Strings["region"].Dict.Values() {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	sortStrings(out)
	return out
}

// DB is node i's kv store (tests that restart a node in place need it).
func (nw *Network) DB(i int) *kv.DB { return nw.dbs[i] }

// Records are node i's records as given to Start (nil with Options.Shared).
func (nw *Network) Records(i int) *cdm.Records { return nw.data[i] }

// nodePolicy is every node's policy: NodePolicy, accepting compact releases
// when CompactRelease is set.
func (o Options) nodePolicy() *node.Policy {
	if !o.CompactRelease && !o.SkipRangeProofs {
		return o.NodePolicy
	}
	pol := node.DefaultPolicy()
	if o.NodePolicy != nil {
		cp := *o.NodePolicy
		pol = &cp
	}
	pol.AcceptUnprovenPartials = pol.AcceptUnprovenPartials || o.CompactRelease
	pol.SkipRangeProofs = pol.SkipRangeProofs || o.SkipRangeProofs
	return pol
}
