package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/synth"
)

// ServeOptions configure a demo network of separate processes.
type ServeOptions struct {
	// Binary is the fedstat executable to start. Required.
	Binary string
	// Dir holds everything (PKI, configs, stores, logs). Required.
	Dir string
	// Data gives each node its records (nil: none, for a node whose data
	// is only Imports or Studies). Required: one entry per node.
	Data []*cdm.Records
	// Imports gives node i extra inputs (FHIR Bundles or Bulk NDJSON files
	// or directories) that it imports with `fedstat node import`. Defaults
	// to none.
	Imports [][]string
	// Regions is the network's region list; defaults to the regions of
	// Data.
	Regions []string
	// MaxNodesPerPatient is the network's max_nodes_per_patient. Defaults
	// to 1 (the demo gives each patient to exactly one node).
	MaxNodesPerPatient int
	// Network, when set, is TOML appended to every config, coordinator and
	// nodes alike (for example a [linkage] section). Defaults to none.
	Network string
	// NetworkKeys, when set, are top-level TOML keys of the network
	// catalogue put in every config before its sections (for example
	// small_count_threshold = -1). Defaults to none.
	NetworkKeys string
	// Threshold and MinNodes default to nodes-1 and nodes.
	Threshold, MinNodes int
	// ApprovalNodes lists the nodes (0-based) whose policy sets
	// require_approval, so that every query waits at them for
	// `fedstat node approve`. Defaults to none.
	ApprovalNodes []int
	// SignatureNodes lists the nodes (0-based) whose policy sets
	// require_analyst_signature, so that they refuse every query that no
	// analyst's client signed. Defaults to none.
	SignatureNodes []int
	// Progress, when set, is told about each step.
	Progress func(string)
	// NodeConfig, when set, returns extra TOML appended to node i's config
	// file (for example a [warehouse] section).
	NodeConfig func(i int) string
	// Studies, when set, are study tables: every config lists their schema
	// files (studies = [...]) and node i imports its CSV with `fedstat node
	// import --study`. Defaults to none.
	Studies []ServeStudy
	// CoordinatorConfig, when set, is extra TOML appended to the
	// coordinator's config file (top-level keys). Defaults to none.
	CoordinatorConfig string
	// DaemonEnv gives extra environment variables ("K=V") to a daemon by
	// name ("coordinator", "node-1", ...) at every start: the fault tests'
	// way to set test hooks (FEDSTAT_TEST_*, honoured only by a binary built
	// with BuildBinaryTags(dir, "fedstat_testhooks")). Change it through
	// Processes.DaemonEnv before a restart. Defaults to none.
	DaemonEnv map[string][]string
	// NoWait returns as soon as the daemons are started, without waiting
	// for the coordinator to be ready (Processes.WaitReady does that).
	NoWait bool
	// Outbound runs the nodes outbound-only ([network] mode = "outbound"):
	// no node listens on a gRPC port or gossips; each dials the
	// coordinator and keeps a tunnel open, and the coordinator runs without
	// gossip. Defaults to false (nodes listen and gossip).
	Outbound bool
}

// ServeStudy is a study table of a demo network of processes.
type ServeStudy struct {
	// Name is the table's name and Schema its schema file (TOML).
	Name, Schema string
	// CSV gives node i's rows (a CSV file path, "" for none); len(CSV) is
	// the number of nodes.
	CSV []string
}

// Processes is a running demo network of separate processes.
type Processes struct {
	Dir         string
	Binary      string
	Coordinator *Proc
	Nodes       []*Proc
	// GRPC and HTTP are the coordinator's analyst addresses; Ops its
	// /metrics, /healthz, /readyz.
	GRPC, HTTP, Ops string
	// Env holds the analyst's settings for `fedstat query`.
	Env map[string]string
	// OperatorToken is a bearer token of the network operator "operator",
	// who may see what analysts may not (per-node progress and timings,
	// the audit log). It is not written to the env file.
	OperatorToken string
	// DaemonEnv is ServeOptions.DaemonEnv, read at every (re)start.
	DaemonEnv map[string][]string
	// NodeOps are the nodes' ops endpoints (/metrics, /healthz, /readyz).
	NodeOps []string
	nodes   int
}

// freePort returns a port free for TCP and UDP on 127.0.0.1 that this
// process has not handed out before. It picks outside the kernel's
// ephemeral range (ip_local_port_range), so that listeners on port 0 (ours
// or another test's) cannot take it before the daemon binds it; without that
// range it falls back to a port the kernel chooses.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := 10000, ephemeralLow()-1
	for range 200 {
		port := 0
		if hi > lo {
			port = lo + mrand.IntN(hi-lo+1)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		if portsGiven[port] {
			continue
		}
		if u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			u.Close()
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, errors.New("demo: no free port")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the lowest port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 10000 {
		return 32768
	}
	return n
}

// withDefaults is the TOML of extra followed by each default line ("key =
// value") whose key extra does not set.
func withDefaults(extra string, defaults ...string) string {
	set := map[string]bool{}
	for _, line := range strings.Split(extra, "\n") {
		if k, _, ok := strings.Cut(line, "="); ok {
			set[strings.TrimSpace(k)] = true
		}
	}
	out := strings.TrimRight(extra, "\n")
	for _, d := range defaults {
		if k, _, _ := strings.Cut(d, "="); !set[strings.TrimSpace(k)] {
			out += "\n" + d
		}
	}
	return strings.TrimLeft(out, "\n") + "\n"
}

func writeSecret(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// HTTPClient returns a client for the coordinator's HTTPS API
// (Env["FEDSTAT_HTTP"]) that trusts the network's CA.
func (p *Processes) HTTPClient(timeout time.Duration) (*http.Client, error) {
	ca, err := pki.LoadCert(p.Env["FEDSTAT_CA"])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "coordinator"}}}, nil
}

// Serve starts a coordinator and one node per entry of o.Data as separate
// processes of o.Binary on loopback: it makes the PKI, a gossip key and a
// bearer token, writes each node's records as CDM CSV and imports them with
// `fedstat node import`, writes the TOML configs, starts the daemons (nodes
// join the coordinator's gossip; the coordinator admits them and runs the key
// ceremony) and waits until the coordinator is ready.
func Serve(ctx context.Context, o ServeOptions) (_ *Processes, err error) {
	if o.Binary == "" || o.Dir == "" || len(o.Data) == 0 {
		return nil, errors.New("demo: ServeOptions.Binary, Dir and Data are required")
	}
	say := func(f string, a ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(f, a...))
		}
	}
	n := len(o.Data)
	if o.Threshold == 0 {
		o.Threshold = max(1, n-1)
	}
	if o.MinNodes == 0 {
		o.MinNodes = n
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	p := &Processes{Dir: o.Dir, Binary: o.Binary, nodes: n, DaemonEnv: o.DaemonEnv}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()

	// PKI, gossip key, token.
	pkiDir := filepath.Join(o.Dir, "pki")
	ca, err := pki.InitDir(pkiDir, "demo", 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	issue := func(name string, role pki.Role) error {
		id, err := ca.Issue(pki.IssueRequest{Name: name, Role: role})
		if err != nil {
			return err
		}
		return pki.WriteIdentity(pkiDir, id)
	}
	for _, h := range []struct {
		name string
		role pki.Role
	}{{"coordinator", pki.RoleCoordinator}, {"analyst", pki.RoleAnalyst}, {"operator", pki.RoleOperator}} {
		if err := issue(h.name, h.role); err != nil {
			return nil, err
		}
	}
	for i := range n {
		if err := issue(NodeID(i), pki.RoleNode); err != nil {
			return nil, err
		}
	}
	gossipKey := filepath.Join(o.Dir, "gossip.key")
	if err := writeSecret(gossipKey); err != nil {
		return nil, err
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	token := "fst_" + hex.EncodeToString(raw)
	rand.Read(raw)
	p.OperatorToken = "fst_" + hex.EncodeToString(raw)
	tokens := fmt.Sprintf("[{\"name\": \"analyst\", \"role\": \"analyst\", \"sha256\": %q},\n {\"name\": \"operator\", \"role\": \"operator\", \"sha256\": %q}]\n",
		coordinator.HashToken(token), coordinator.HashToken(p.OperatorToken))
	if err := os.WriteFile(filepath.Join(o.Dir, "tokens.json"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	say("made the network CA, certificates, gossip key and analyst and operator tokens in %s", o.Dir)

	// Each node's data, through the real CSV export and `fedstat node import`.
	regions := o.Regions
	if regions == nil {
		regions = RegionsOf(o.Data)
	}
	if o.MaxNodesPerPatient == 0 {
		o.MaxNodesPerPatient = 1
	}
	nodeImport := func(i int, args ...string) error {
		args = append([]string{"node", "import", "--data-dir", filepath.Join(o.Dir, NodeID(i))}, args...)
		if out, err := exec.CommandContext(ctx, o.Binary, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("demo: %s: fedstat %s: %v\n%s", NodeID(i), strings.Join(args, " "), err, out)
		}
		return nil
	}
	for i, recs := range o.Data {
		if recs != nil {
			csvDir := filepath.Join(o.Dir, NodeID(i)+"-import")
			w, err := synth.NewWriter(csvDir, synth.FormatCSV, true)
			if err != nil {
				return nil, err
			}
			if err := w.Write(recs); err != nil {
				return nil, err
			}
			if err := w.Close(); err != nil {
				return nil, err
			}
			if err := nodeImport(i, w.Paths()...); err != nil {
				return nil, err
			}
			say("%s: imported %d patients with `fedstat node import`", NodeID(i), len(recs.Patients))
		}
		if i < len(o.Imports) && len(o.Imports[i]) > 0 {
			if err := nodeImport(i, o.Imports[i]...); err != nil {
				return nil, err
			}
			say("%s: imported %s with `fedstat node import`", NodeID(i), strings.Join(o.Imports[i], ", "))
		}
		for _, st := range o.Studies {
			if len(st.CSV) != n {
				return nil, fmt.Errorf("demo: study %s: %d CSV files for %d nodes", st.Name, len(st.CSV), n)
			}
			if st.CSV[i] == "" {
				continue
			}
			args := []string{"node", "import", "--data-dir", filepath.Join(o.Dir, NodeID(i)), "--study", st.Name, "--schema", st.Schema, st.CSV[i]}
			if out, err := exec.CommandContext(ctx, o.Binary, args...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("demo: %s: fedstat %s: %v\n%s", NodeID(i), strings.Join(args, " "), err, out)
			}
			say("%s: imported study %s with `fedstat node import --study`", NodeID(i), st.Name)
		}
	}
	var schemas []string
	for _, st := range o.Studies {
		schemas = append(schemas, st.Schema)
	}

	// Configs and processes.
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	p.GRPC = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.HTTP = fmt.Sprintf("127.0.0.1:%d", ports[1])
	p.Ops = fmt.Sprintf("127.0.0.1:%d", ports[2])
	gossipAddr := fmt.Sprintf("127.0.0.1:%d", ports[3])
	coordGossip := fmt.Sprintf("[gossip]\nbind = %q\nkey_file = %q\n", gossipAddr, gossipKey)
	if o.Outbound {
		coordGossip = "# No gossip: the nodes are outbound-only and keep tunnels open to listen.\n"
	}
	coordCfg := fmt.Sprintf(`# fedstat demo coordinator
name = "coordinator"
data_dir = %q
pki_dir = %q
listen = %q
http_listen = %q
ops_listen = %q
tokens_file = %q
regions = %s
# How many nodes may hold records of one patient (1 in the demo).
max_nodes_per_patient = %d
studies = %s
%s
threshold = %d
min_nodes = %d
min_members = %d
%s
%s%s`, filepath.Join(o.Dir, "coordinator"), pkiDir, p.GRPC, p.HTTP, p.Ops, filepath.Join(o.Dir, "tokens.json"),
		tomlList(regions), o.MaxNodesPerPatient, tomlList(schemas), o.NetworkKeys, o.Threshold, o.MinNodes, n,
		withDefaults(o.CoordinatorConfig, `epoch_debounce = "1s"`, `ceremony_retry_max = "4s"`, `health_interval = "1s"`, `deadline = "30s"`),
		coordGossip, o.Network)
	if err := os.WriteFile(filepath.Join(o.Dir, "coordinator.toml"), []byte(coordCfg), 0o600); err != nil {
		return nil, err
	}
	for i := range n {
		approval := ""
		if slices.Contains(o.ApprovalNodes, i) {
			approval = "require_approval = true\n"
		}
		if slices.Contains(o.SignatureNodes, i) {
			approval += "require_analyst_signature = true\n"
		}
		// A fixed gRPC port: a node restarted by StartNode is at the address
		// the coordinator already knows (a new port would have to wait for
		// gossip to declare the old incarnation dead).
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		opsPort, err := freePort()
		if err != nil {
			return nil, err
		}
		p.NodeOps = append(p.NodeOps, fmt.Sprintf("127.0.0.1:%d", opsPort))
		listen := fmt.Sprintf("listen = \"127.0.0.1:%d\"\n", port)
		network := fmt.Sprintf("[gossip]\nbind = \"127.0.0.1:0\"\nkey_file = %q\njoin = [%q]\n", gossipKey, gossipAddr)
		if o.Outbound {
			// No listener, no gossip: the node dials the coordinator.
			listen = ""
			network = fmt.Sprintf("[network]\nmode = \"outbound\"\ncoordinator = %q\n", p.GRPC)
		}
		cfg := fmt.Sprintf(`# fedstat demo node
name = %q
data_dir = %q
pki_dir = %q
%sops_listen = "127.0.0.1:%d"
regions = %s
# How many nodes may hold records of one patient (1 in the demo).
max_nodes_per_patient = %d
studies = %s
%s

[policy]
min_nodes = 2
%s
%s%s`, NodeID(i), filepath.Join(o.Dir, NodeID(i)), pkiDir, listen, opsPort, tomlList(regions), o.MaxNodesPerPatient, tomlList(schemas), o.NetworkKeys, approval, network, o.Network)
		if o.NodeConfig != nil {
			cfg += o.NodeConfig(i)
		}
		if err := os.WriteFile(filepath.Join(o.Dir, NodeID(i)+".toml"), []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	if err := p.StartCoordinator(); err != nil {
		return nil, err
	}
	for i := range n {
		if err := p.StartNode(i); err != nil {
			return nil, err
		}
	}
	say("started the coordinator and %d nodes as separate processes (logs in %s)", n, o.Dir)
	p.Env = map[string]string{
		"FEDSTAT_COORDINATOR": p.GRPC,
		"FEDSTAT_CERT":        filepath.Join(pkiDir, "analyst.crt"),
		"FEDSTAT_KEY":         filepath.Join(pkiDir, "analyst.key"),
		"FEDSTAT_CA":          filepath.Join(pkiDir, pki.CACertFile),
		"FEDSTAT_HTTP":        "https://" + p.HTTP,
		"FEDSTAT_DASHBOARD":   "https://" + p.HTTP + "/",
		"FEDSTAT_TOKEN":       token,
	}
	if o.NoWait {
		return p, nil
	}
	if err := p.WaitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	if o.Outbound {
		say("nodes connected outbound (tunnels to the coordinator), key ceremony done: the network is ready")
	} else {
		say("nodes admitted by gossip, key ceremony done: the network is ready")
	}
	return p, nil
}

// Proc is one daemon process.
type Proc struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// Exited is closed when the process has ended.
func (pr *Proc) Exited() <-chan struct{} { return pr.done }

// Kill sends SIGKILL and waits for the process to end.
func (pr *Proc) Kill() {
	if pr == nil {
		return
	}
	pr.Cmd.Process.Kill()
	<-pr.done
}

// Stop sends SIGTERM and waits up to timeout, then kills.
func (pr *Proc) Stop(timeout time.Duration) {
	if pr == nil {
		return
	}
	pr.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(timeout):
		pr.Kill()
	}
}

func (p *Processes) start(name string, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(filepath.Join(p.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.Binary, args...)
	if env := p.DaemonEnv[name]; len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("demo: start %s: %w", name, err)
	}
	pr := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(pr.done) }()
	return pr, nil
}

// StartCoordinator starts (or restarts) the coordinator process.
func (p *Processes) StartCoordinator() error {
	cmd, err := p.start("coordinator", "coordinator", "--config", filepath.Join(p.Dir, "coordinator.toml"))
	if err != nil {
		return err
	}
	p.Coordinator = cmd
	return nil
}

// StartNode starts (or restarts) node i.
func (p *Processes) StartNode(i int) error {
	cmd, err := p.start(NodeID(i), "node", "--config", filepath.Join(p.Dir, NodeID(i)+".toml"))
	if err != nil {
		return err
	}
	if len(p.Nodes) <= i {
		p.Nodes = append(p.Nodes, make([]*Proc, i+1-len(p.Nodes))...)
	}
	p.Nodes[i] = cmd
	return nil
}

// WaitReady waits until the coordinator's /readyz says ready.
func (p *Processes) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-p.Coordinator.Exited():
			return fmt.Errorf("demo: the coordinator exited before it was ready; see %s", filepath.Join(p.Dir, "coordinator.log"))
		default:
		}
		resp, err := http.Get("http://" + p.Ops + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = strings.TrimSpace(string(b))
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("demo: the coordinator was not ready after %s (%s); see the logs in %s", timeout, last, p.Dir)
}

// WriteEnv writes the analyst's settings as a shell env file.
func (p *Processes) WriteEnv(path string) error {
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# fedstat demo network: source this file, then run fedstat query \"SQL\"\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(p.Env[k]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Stop ends every process (SIGTERM, then SIGKILL after 5 seconds).
func (p *Processes) Stop() {
	all := append([]*Proc{p.Coordinator}, p.Nodes...)
	for _, pr := range all {
		if pr != nil {
			pr.Cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, pr := range all {
		pr.Stop(5 * time.Second)
	}
}

// NodeCount is the number of nodes of the network.
func (p *Processes) NodeCount() int { return p.nodes }
