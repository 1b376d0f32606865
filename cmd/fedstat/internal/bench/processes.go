package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/pki"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// ProcessOptions configure RunProcesses.
type ProcessOptions struct {
	// Binary is the fedstat executable the daemons run. Required.
	Binary string
	// Options: Nodes and Patients (required), Repeats (measured queries
	// per query shape), Queries, Seed, Progress, with Run's defaults.
	Options
	// Idle is how long the idle CPU of the daemons is measured, with no
	// query running. Defaults to 10s.
	Idle time.Duration
	// Dir holds the network's files (PKI, stores, logs). Defaults to a new
	// temporary directory, removed at the end.
	Dir string
	// ProfileDir, when set, receives CPU and allocation profiles of the
	// coordinator and of node-1 over a separate batch of ProfileSeconds of
	// the first query (coordinator.cpu.pprof, coordinator.allocs.pprof,
	// node-1.cpu.pprof, node-1.allocs.pprof), taken after the measured
	// batches so that profiling does not change the figures. Defaults to
	// none.
	ProfileDir string
	// ProfileSeconds defaults to 20.
	ProfileSeconds int
}

// ProcessCell is one query shape measured on a network of processes.
type ProcessCell struct {
	Query    string `json:"query"`
	Nodes    int    `json:"nodes"`
	Patients int    `json:"patients"`
	// End-to-end latency (submit to released result, at the analyst).
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	// CPUMsPerQuery is the CPU time (user + system) of all server processes
	// per query, their idle CPU over the same time subtracted.
	CPUMsPerQuery float64 `json:"cpu_ms_per_query"`
	// CoordinatorCPUMs is the coordinator's share of it.
	CoordinatorCPUMs float64 `json:"coordinator_cpu_ms"`
	// NodeCPUMs is a node's share, the mean over the nodes; NodeCPUMaxMs
	// the largest (a decryptor does more than an ordinary node) and
	// NodeCPUMinMs the smallest (with a committee smaller than the
	// network, a node that never decrypts).
	NodeCPUMs    float64 `json:"node_cpu_ms"`
	NodeCPUMaxMs float64 `json:"node_cpu_max_ms"`
	NodeCPUMinMs float64 `json:"node_cpu_min_ms"`
	// UploadBytesPerNode is the mean protobuf size of what one node sends
	// per query (as the coordinator counts it).
	UploadBytesPerNode int64 `json:"upload_bytes_per_node"`
	// NodeReadBytes and NodeWriteBytes are a node's read and write system
	// calls per query (sockets and files; /proc/PID/io rchar and wchar),
	// NodeStorageBytes what it wrote to storage (write_bytes), all means
	// over the nodes.
	NodeReadBytes    int64 `json:"node_read_bytes"`
	NodeWriteBytes   int64 `json:"node_write_bytes"`
	NodeStorageBytes int64 `json:"node_storage_bytes"`
}

// ProcessRun is the result of RunProcesses.
type ProcessRun struct {
	Nodes    int `json:"nodes"`
	Patients int `json:"patients"`
	// IdleCPUMsPerSec is the CPU the server processes spend per second
	// with no query: all of them, the coordinator, and a node (mean).
	IdleCPUMsPerSec            float64       `json:"idle_cpu_ms_per_s"`
	IdleCoordinatorCPUMsPerSec float64       `json:"idle_coordinator_cpu_ms_per_s"`
	IdleNodeCPUMsPerSec        float64       `json:"idle_node_cpu_ms_per_s"`
	Queries                    []ProcessCell `json:"queries"`
	// Profiles lists the profile files written (ProfileDir).
	Profiles []string `json:"profiles,omitempty"`
}

// procSample is what /proc says of one process at one time.
type procSample struct {
	cpu                   time.Duration
	rchar, wchar, written int64
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on Linux for every architecture Go supports).
const clockTick = 10 * time.Millisecond

// readProc reads a process's CPU time (user + system, all threads) and its
// I/O counters.
func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name is in parentheses and may contain spaces: the
	// fields are counted after its closing parenthesis (field 3 is first).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("bench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("bench: /proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
	}
	s.cpu = time.Duration(utime+stime) * clockTick
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "rchar":
				s.rchar = n
			case "wchar":
				s.wchar = n
			case "write_bytes":
				s.written = n
			}
		}
	}
	return s, nil
}

// sampleAll reads every process (coordinator first, then the nodes).
func sampleAll(pids []int) ([]procSample, error) {
	out := make([]procSample, len(pids))
	for i, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// RunProcesses starts a coordinator and o.Nodes nodes as separate processes
// of o.Binary (demo.Serve: mutual TLS, gossip, each node with its own store
// of o.Patients synthetic patients imported with `fedstat node import`),
// measures their idle CPU, then asks every query o.Repeats times (Fresh, so
// every repeat is really asked) and reports per query the latency and the
// CPU each process spent, from /proc.
func RunProcesses(ctx context.Context, o ProcessOptions) (*ProcessRun, error) {
	if o.Binary == "" {
		return nil, errors.New("bench: ProcessOptions.Binary is required")
	}
	var err error
	if o.Options, err = o.Options.withDefaults(); err != nil {
		return nil, err
	}
	if o.Idle == 0 {
		o.Idle = 10 * time.Second
	}
	if o.ProfileSeconds == 0 {
		o.ProfileSeconds = 20
	}
	say := o.say
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "fedstat-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	t0 := time.Now()
	data, err := demo.Synthetic(o.Nodes, o.Patients, o.Seed)
	if err != nil {
		return nil, err
	}
	threshold := o.threshold() // as the in-process benchmark
	p, err := demo.Serve(ctx, demo.ServeOptions{
		Binary: o.Binary, Dir: dir, Data: data, Threshold: threshold, MinNodes: o.Nodes,
		// The production health interval (the demo's is 1s), so that idle
		// CPU is what a deployed network spends.
		CoordinatorConfig: fmt.Sprintf("health_interval = \"10s\"\ncommittee = %d\n", o.Committee),
		NodeConfig: func(int) string {
			// Every repeat is a fresh query at full price: a budget no
			// benchmark can spend.
			return "\n[budget]\ntotal_rho = 1e12\nper_analyst_rho = 1e12\n"
		},
		// Profiles on the loopback ops endpoints (ProfileDir).
		NetworkKeys: "ops_pprof = true",
	})
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	say("network of %d node processes up in %s (committee %d, threshold %d)", o.Nodes, time.Since(t0).Round(time.Millisecond), o.Committee, threshold)

	pids := []int{p.Coordinator.Cmd.Process.Pid}
	for _, n := range p.Nodes {
		pids = append(pids, n.Cmd.Process.Pid)
	}
	op, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), "operator")
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(client.Config{Address: p.GRPC, Identity: op, ServerName: "coordinator"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ask := func(q Query) (float64, int64, error) {
		start := time.Now()
		st, err := c.Run(ctx, &typesv1.QuerySpec{Sql: q.SQL, Epsilon: 1, Delta: 1e-6}, client.RunOptions{Fresh: true})
		if err != nil {
			return 0, 0, fmt.Errorf("bench: %s: %w", q.Name, err)
		}
		return float64(time.Since(start).Microseconds()) / 1000, uploadBytes(st), nil
	}

	// Warm up every query (connections, caches), then measure idle.
	for _, q := range o.Queries {
		for range 2 {
			if _, _, err := ask(q); err != nil {
				return nil, err
			}
		}
	}
	run := &ProcessRun{Nodes: o.Nodes, Patients: o.Patients}
	s0, err := sampleAll(pids)
	if err != nil {
		return nil, err
	}
	i0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.Idle):
	}
	s1, err := sampleAll(pids)
	if err != nil {
		return nil, err
	}
	idleSecs := time.Since(i0).Seconds()
	idleRate := make([]float64, len(pids)) // ms of CPU per second
	for i := range pids {
		idleRate[i] = float64((s1[i].cpu - s0[i].cpu).Microseconds()) / 1000 / idleSecs
		run.IdleCPUMsPerSec += idleRate[i]
		if i > 0 {
			run.IdleNodeCPUMsPerSec += idleRate[i] / float64(o.Nodes)
		}
	}
	run.IdleCoordinatorCPUMsPerSec = idleRate[0]
	say("idle: %.1f ms CPU/s in all (coordinator %.1f, a node %.1f)", run.IdleCPUMsPerSec, idleRate[0], run.IdleNodeCPUMsPerSec)

	for _, q := range o.Queries {
		cell := ProcessCell{Query: q.Name, Nodes: o.Nodes, Patients: o.Patients}
		var lat []float64
		var upload int64
		b0, err := sampleAll(pids)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		for range o.Repeats {
			ms, up, err := ask(q)
			if err != nil {
				return nil, err
			}
			lat = append(lat, ms)
			upload += up
		}
		secs := time.Since(t0).Seconds()
		b1, err := sampleAll(pids)
		if err != nil {
			return nil, err
		}
		reps := float64(o.Repeats)
		for i := range pids {
			ms := (float64((b1[i].cpu-b0[i].cpu).Microseconds())/1000 - idleRate[i]*secs) / reps
			cell.CPUMsPerQuery += ms
			if i == 0 {
				cell.CoordinatorCPUMs = ms
				continue
			}
			cell.NodeCPUMs += ms / float64(o.Nodes)
			cell.NodeCPUMaxMs = math.Max(cell.NodeCPUMaxMs, ms)
			if i == 1 || ms < cell.NodeCPUMinMs {
				cell.NodeCPUMinMs = ms
			}
			perNode := func(a, b int64) int64 { return int64(float64(b-a) / reps / float64(o.Nodes)) }
			cell.NodeReadBytes += perNode(b0[i].rchar, b1[i].rchar)
			cell.NodeWriteBytes += perNode(b0[i].wchar, b1[i].wchar)
			cell.NodeStorageBytes += perNode(b0[i].written, b1[i].written)
		}
		cell.P50Ms, cell.P95Ms = percentile(lat, 50), percentile(lat, 95)
		cell.UploadBytesPerNode = upload / int64(o.Repeats) / int64(o.Nodes)
		say("%-17s p50 %7.1f ms  p95 %7.1f ms  cpu %6.1f ms/query (coordinator %.1f, node %.1f, min node %.1f, max node %.1f)",
			q.Name, cell.P50Ms, cell.P95Ms, cell.CPUMsPerQuery, cell.CoordinatorCPUMs, cell.NodeCPUMs, cell.NodeCPUMinMs, cell.NodeCPUMaxMs)
		run.Queries = append(run.Queries, cell)
	}

	if o.ProfileDir != "" {
		files, err := profile(ctx, o, p, ask)
		run.Profiles = files
		if err != nil {
			return run, err
		}
		say("profiles of %s over %ds of %s queries in %s", strings.Join([]string{"coordinator", demo.NodeID(0)}, " and "), o.ProfileSeconds, o.Queries[0].Name, o.ProfileDir)
	}
	return run, nil
}

// profile takes CPU and allocation profiles of the coordinator and node-1
// while the first query is asked again and again.
func profile(ctx context.Context, o ProcessOptions, p *demo.Processes, ask func(Query) (float64, int64, error)) ([]string, error) {
	if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	targets := []struct{ name, ops string }{{"coordinator", p.Ops}, {demo.NodeID(0), p.NodeOps[0]}}
	hc := &http.Client{Timeout: time.Duration(o.ProfileSeconds+30) * time.Second}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		files []string
		errs  []error
	)
	for _, t := range targets {
		for _, kind := range []string{"profile", "allocs"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := t.name + ".cpu.pprof"
				if kind == "allocs" {
					name = t.name + ".allocs.pprof"
				}
				path := filepath.Join(o.ProfileDir, name)
				err := fetchProfile(ctx, hc, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", t.ops, kind, o.ProfileSeconds), path)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("bench: %s profile of %s: %w", kind, t.name, err))
					return
				}
				files = append(files, path)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return files, errors.Join(errs...)
		default:
		}
		if _, _, err := ask(o.Queries[0]); err != nil {
			<-done
			return files, err
		}
	}
}

func fetchProfile(ctx context.Context, hc *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
