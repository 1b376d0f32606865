package e2e

// Outbound-only nodes as separate OS processes (issue 19): the coordinator
// and three nodes started with [network] mode = "outbound", no gossip. The
// test reads each node process's sockets from /proc and fails if any of
// them listens anywhere but on loopback (its ops endpoint; the admin
// endpoint is a unix socket), or talks TCP to anything but the
// coordinator's gRPC address.

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// inetSocket is one line of /proc/PID/net/{tcp,tcp6,udp,udp6}.
type inetSocket struct {
	Proto         string // tcp, tcp6, udp, udp6
	Local, Remote net.TCPAddr
	State         string // hex: 0A is LISTEN (TCP), 07 is unconnected (UDP)
	Inode         string
}

func (s inetSocket) String() string {
	return fmt.Sprintf("%s %s -> %s state %s", s.Proto, s.Local.String(), s.Remote.String(), s.State)
}

// procSockets returns the IP sockets that process pid holds open: its
// descriptors' socket inodes matched against the socket tables of its
// network namespace.
func procSockets(t *testing.T, pid int) []inetSocket {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []inetSocket
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			t.Fatalf("pid %d: %v", pid, err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			s := inetSocket{Proto: proto, State: fields[3], Inode: fields[9]}
			var e1, e2 error
			s.Local, e1 = parseProcAddr(fields[1])
			s.Remote, e2 = parseProcAddr(fields[2])
			if e1 != nil || e2 != nil {
				f.Close()
				t.Fatalf("pid %d: %s line %q: %v %v", pid, proto, sc.Text(), e1, e2)
			}
			out = append(out, s)
		}
		f.Close()
	}
	return out
}

// parseProcAddr parses "0100007F:1F90" (IPv4) or 32 hex digits and a
// port (IPv6): the address is stored as 32-bit words in host byte order.
func parseProcAddr(s string) (net.TCPAddr, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return net.TCPAddr{}, fmt.Errorf("no port in %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return net.TCPAddr{}, fmt.Errorf("bad address %q", h)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return net.TCPAddr{}, err
	}
	ip := make(net.IP, len(raw))
	for w := 0; w < len(raw); w += 4 { // each word is little-endian on the hosts this runs on
		ip[w], ip[w+1], ip[w+2], ip[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	if v4 := ip.To4(); v4 != nil { // an IPv4-mapped address of a tcp6 socket
		ip = v4
	}
	return net.TCPAddr{IP: ip, Port: int(port)}, nil
}

// TestParseProcAddr pins the decoding of /proc/net addresses the socket
// check relies on.
func TestParseProcAddr(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("little-endian words assumed")
	}
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:1CEC":                         "0.0.0.0:7404",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"00000000000000000000000000000000:1D12": "[::]:7442",
		"0000000000000000FFFF00000100007F:01BB": "127.0.0.1:443",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got.String(), err, want)
		}
	}
}

// checkOutboundSockets fails the test, naming the process and the socket,
// for every violation outboundViolations finds in node process pid's
// sockets, and returns its listeners.
func checkOutboundSockets(t *testing.T, name string, pid int, coord string) []inetSocket {
	t.Helper()
	listeners, problems := outboundViolations(procSockets(t, pid), coord)
	for _, p := range problems {
		t.Errorf("%s (pid %d) %s", name, pid, p)
	}
	return listeners
}

// outboundViolations checks the sockets of an outbound node: it must not
// listen (TCP LISTEN, or an unconnected UDP socket) anywhere but on
// loopback, must have a TCP connection to the coordinator's gRPC address
// coord, and none to anything else (but those its own loopback listeners
// accepted). It returns the listeners and the problems.
func outboundViolations(socks []inetSocket, coord string) (listeners []inetSocket, problems []string) {
	coordAddr, err := net.ResolveTCPAddr("tcp", coord)
	if err != nil {
		return nil, []string{err.Error()}
	}
	ownPorts := map[int]bool{}
	for _, s := range socks {
		if s.Proto[:3] == "tcp" && s.State == "0A" {
			ownPorts[s.Local.Port] = true
		}
	}
	toCoordinator := 0
	for _, s := range socks {
		listening := (s.Proto[:3] == "tcp" && s.State == "0A") || (s.Proto[:3] == "udp" && s.Remote.Port == 0)
		switch {
		case listening:
			listeners = append(listeners, s)
			if !s.Local.IP.IsLoopback() {
				problems = append(problems, fmt.Sprintf("listens on %s, reachable from other machines: %v", s.Local.String(), s))
			}
		case s.Proto[:3] == "tcp" && s.Remote.IP.Equal(coordAddr.IP) && s.Remote.Port == coordAddr.Port:
			toCoordinator++
		case s.Proto[:3] == "tcp" && s.Local.IP.IsLoopback() && ownPorts[s.Local.Port]:
			// a connection accepted by its own loopback listener
		case s.Proto[:3] == "tcp" && s.State == "01":
			problems = append(problems, fmt.Sprintf("has a TCP connection to %s, not the coordinator's %s: %v", s.Remote.String(), coord, s))
		}
	}
	if toCoordinator == 0 {
		problems = append(problems, fmt.Sprintf("has no TCP connection to the coordinator at %s; its sockets: %v", coord, socks))
	}
	return listeners, problems
}

// TestOutboundViolations: the socket check, run on this test process,
// names a listener on all interfaces and a connection to another address,
// and passes loopback listeners and the coordinator connection.
func TestOutboundViolations(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	coord, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c1, err := net.Dial("tcp", coord.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	socksOf := func() []inetSocket {
		var out []inetSocket
		for _, s := range procSockets(t, os.Getpid()) {
			// This process also holds the accepting ends: keep the client
			// ends and the listeners, as a node would have them.
			if s.State == "0A" || s.Remote.Port == coord.Addr().(*net.TCPAddr).Port || s.Remote.Port == other.Addr().(*net.TCPAddr).Port {
				out = append(out, s)
			}
		}
		return out
	}
	if _, problems := outboundViolations(socksOf(), coord.Addr().String()); len(problems) != 0 {
		t.Fatalf("loopback listeners and a connection to the coordinator: %v", problems)
	}
	wide, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	c2, err := net.Dial("tcp", other.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, problems := outboundViolations(socksOf(), coord.Addr().String())
	wport := ":" + strconv.Itoa(wide.Addr().(*net.TCPAddr).Port)
	var sawWide, sawOther bool
	for _, p := range problems {
		sawWide = sawWide || (strings.Contains(p, "listens on") && strings.Contains(p, wport))
		sawOther = sawOther || strings.Contains(p, "connection to "+other.Addr().String())
	}
	if !sawWide || !sawOther {
		t.Fatalf("a listener on all interfaces (%s) and a connection to %s: problems %v", wport, other.Addr(), problems)
	}
}

// exactCohort is the exact number of patients with demo.CohortQuery's
// condition in data.
func exactCohort(data []*cdm.Records) float64 {
	total := 0
	for _, r := range data {
		seen := map[string]bool{}
		for _, c := range r.Conditions {
			if c.Code == "44054006" && !seen[c.PatientID] {
				seen[c.PatientID] = true
				total++
			}
		}
	}
	return float64(total)
}

// outboundRelease runs demo.CohortQuery through the CLI and checks that all
// three nodes answered and that the release is within 4.5 standard
// deviations of its noise of the exact count.
func outboundRelease(t *testing.T, p *demo.Processes, exact float64) {
	t.Helper()
	// --fresh: the nodes answer every time (not an earlier release reused).
	out, stderr, err := cli(t, p, "query", "--format", "json", "--fresh", demo.CohortQuery)
	if err != nil {
		t.Fatalf("fedstat query: %v\n%s", err, stderr)
	}
	var res struct {
		Rows []struct {
			Values []struct {
				Value    float64 `json:"value"`
				Variance float64 `json:"variance"`
			} `json:"values"`
		} `json:"rows"`
		Nodes int `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Rows) != 1 || len(res.Rows[0].Values) != 1 || res.Nodes != 3 {
		t.Fatalf("query JSON %q: %v", out, err)
	}
	v := res.Rows[0].Values[0]
	if sd := math.Sqrt(v.Variance); sd <= 0 || math.Abs(v.Value-exact) > 4.5*sd {
		t.Fatalf("released %v (sd %v), exact %v", v.Value, sd, exact)
	}
}

// nodeAlive returns the coordinator's view of node id: alive and its
// transport.
func nodeAlive(t *testing.T, p *demo.Processes, id string) (bool, string) {
	t.Helper()
	for _, n := range nodesView(t, p).GetNodes() {
		if n.GetNodeId() == id {
			return n.GetAlive(), n.GetTransport()
		}
	}
	t.Fatalf("%s is not in the coordinator's node list", id)
	return false, ""
}

// nodeReadyz fetches node i's /readyz.
func nodeReadyz(p *demo.Processes, i int) (int, string) {
	resp, err := http.Get("http://" + p.NodeOps[i] + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tunnelClosedLines counts the coordinator's log lines that mark node id
// down because its tunnel closed.
func tunnelClosedLines(t *testing.T, p *demo.Processes, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "coordinator.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "tunnel closed: node down") && strings.Contains(l, "node="+id+" ") {
			n++
		}
	}
	return n
}

// waitTunnelClosed waits until the coordinator logs that node id's tunnel
// closed (more lines than before) and returns how long that took.
func waitTunnelClosed(t *testing.T, p *demo.Processes, id string, before int, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	for tunnelClosedLines(t, p, id) <= before {
		if time.Since(since) > bound {
			t.Fatalf("the coordinator did not mark %s down within %v", id, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(since)
}

// TestOutboundOnlyNodes: a coordinator and three outbound-only nodes as
// separate processes. The key ceremony runs, a query releases the known
// synthetic answer within its noise, and a standing series releases its
// periods; no node process listens on anything but loopback or connects
// to anything but the coordinator's gRPC port; the node list shows every
// node's transport as outbound. A node gone silent (SIGSTOP) is marked
// down by the keepalives within 45 s and reconnects when it resumes; a
// node killed is marked down within 5 s and comes back, with its keys,
// after a restart; while the coordinator is down a node's /readyz says it
// has no tunnel, and after the coordinator's restart every node
// reconnects by itself.
func TestOutboundOnlyNodes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	data, err := demo.Synthetic(3, 500, 7)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3, Outbound: true})
	exact := exactCohort(data)
	if exact < 20 {
		t.Fatalf("the synthetic data has only %v patients in the cohort", exact)
	}

	outboundRelease(t, p, exact)

	// A standing series, which the coordinator runs by itself through the
	// tunnels: four weekly periods, all over, released at once.
	code, body := httpJSON(t, p, "POST", "/v1/series", `{"spec": {"name": "outbound-weekly", "table": "conditions",
		"where": "code = '44054006'", "date_column": "onset_date", "every": "week", "start": "2020-01-06", "periods": 4, "epsilon": 1}}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/series: %d %s", code, body)
	}
	for since := time.Now(); ; {
		var s coordinatorv1.Series
		apiCall(t, p, "GET", "/v1/series/outbound-weekly", "", &s)
		if s.GetReleased() == 4 && len(s.GetPeriods()) == 4 {
			break
		}
		if time.Since(since) > 90*time.Second {
			t.Fatalf("series over the tunnels: %d of 4 periods released after 90 s (state %s, error %q)", s.GetReleased(), s.GetState(), s.GetError())
		}
		time.Sleep(500 * time.Millisecond)
	}

	for i, pr := range p.Nodes {
		ls := checkOutboundSockets(t, demo.NodeID(i), pr.Cmd.Process.Pid, p.GRPC)
		// The one listener is its ops endpoint, on loopback.
		if len(ls) != 1 || ls[0].Local.String() != p.NodeOps[i] {
			t.Errorf("%s listens on %v, want only its ops endpoint %s", demo.NodeID(i), ls, p.NodeOps[i])
		}
		if _, err := os.Stat(filepath.Join(p.Dir, demo.NodeID(i), "admin.sock")); err != nil {
			t.Errorf("%s: admin socket: %v", demo.NodeID(i), err)
		}
	}
	out, stderr, err := cli(t, p, "nodes")
	if err != nil || strings.Count(out, "outbound") != 3 {
		t.Errorf("fedstat nodes: %v %s\n%s", err, stderr, out)
	}

	// Stop node-2 without closing anything (SIGSTOP: its machine gone
	// silent): the coordinator's keepalive notices within about 30 s
	// (rpc.TunnelPingInterval + rpc.TunnelPingTimeout).
	before := tunnelClosedLines(t, p, "node-2")
	if err := p.Nodes[1].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	took := waitTunnelClosed(t, p, "node-2", before, stopped, 45*time.Second)
	t.Logf("node-2 (SIGSTOP) marked down %v after it went silent", took.Round(time.Millisecond))
	if err := p.Nodes[1].Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	for {
		if alive, _ := nodeAlive(t, p, "node-2"); alive {
			break
		}
		if time.Since(resumed) > 30*time.Second {
			t.Fatal("node-2 did not reconnect within 30 s of SIGCONT")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node-2 reconnected %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))

	// Kill node-3: the end of its tunnel marks it down at once.
	before = tunnelClosedLines(t, p, "node-3")
	p.Nodes[2].Kill()
	killed := time.Now()
	t.Logf("node-3 (SIGKILL) marked down in the registry %v after", waitTunnelClosed(t, p, "node-3", before, killed, 5*time.Second).Round(time.Millisecond))
	for {
		alive, transport := nodeAlive(t, p, "node-3")
		if !alive {
			if transport != "outbound" {
				t.Errorf("node-3's transport after its death: %q", transport)
			}
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatal("the coordinator still lists node-3 alive 5 s after it was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node-3 marked down %v after SIGKILL", time.Since(killed).Round(time.Millisecond))

	// Restart it: it reconnects, and the network answers with all three.
	if err := p.StartNode(2); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for {
		if alive, _ := nodeAlive(t, p, "node-3"); alive {
			break
		}
		if time.Since(started) > 60*time.Second {
			t.Fatal("node-3 did not come back within 60 s of its restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("node-3 back %v after its restart", time.Since(started).Round(time.Millisecond))
	outboundRelease(t, p, exact)
	checkOutboundSockets(t, "node-3 (restarted)", p.Nodes[2].Cmd.Process.Pid, p.GRPC)

	// Kill and restart the coordinator: every node reconnects by itself
	// (backoff of at most 10 s), and the stored key epoch still serves.
	p.Coordinator.Kill()
	// Meanwhile a node's /readyz says it has no tunnel.
	for since := time.Now(); ; {
		code, body := nodeReadyz(p, 0)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "no tunnel to the coordinator") {
			break
		}
		if time.Since(since) > 10*time.Second {
			t.Fatalf("node-1's /readyz with the coordinator down: %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for i := range p.Nodes {
		for {
			alive, transport := nodeAlive(t, p, demo.NodeID(i))
			if alive && transport == "outbound" {
				break
			}
			if time.Since(restarted) > 30*time.Second {
				t.Fatalf("%s did not reconnect within 30 s of the coordinator's restart", demo.NodeID(i))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("all nodes reconnected %v after the coordinator's restart", time.Since(restarted).Round(time.Millisecond))
	if code, body := nodeReadyz(p, 0); code != http.StatusOK {
		t.Errorf("node-1's /readyz with its tunnel back: %d %q", code, body)
	}
	outboundRelease(t, p, exact)
}

// TestLinkedNetworkOutbound is TestLinkedNetworkEndToEnd with every agency's
// node outbound-only: the coordinator plans linked queries from the tables
// the nodes announce in their Info answers through the tunnels (as gossip
// would carry them), and the mix stages, finishing and decryption all run
// through the tunnels. It runs with -outbound.linked (about a minute and a
// half under the race detector; TestOutboundOnlyNodes covers the tunnels in
// CI, and the linked protocol's calls are the same NodeService calls).
func TestLinkedNetworkOutbound(t *testing.T) {
	if !*outboundLinked {
		t.Skip("the linked city over tunnels runs with -outbound.linked")
	}
	linkedNetworkEndToEnd(t, true)
}

var outboundLinked = flag.Bool("outbound.linked", false, "run TestLinkedNetworkOutbound: the linked-city test with outbound-only nodes")
