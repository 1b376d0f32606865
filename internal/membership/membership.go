// Package membership tells who is alive in a fedstat network and what each
// member advertises, by gossip (hashicorp/memberlist, encrypted with a shared
// keyring). It is the only package that imports memberlist.
//
// Liveness is not membership: a member that gossip sees as dead is still a
// member of its key epoch (the threshold covers its absence). The
// coordinator's registry decides membership; this package only reports who
// is reachable now and what they say about themselves.
package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Errors.
var (
	ErrBadKey   = errors.New("membership: gossip key must be 16, 24 or 32 bytes")
	ErrMetaSize = errors.New("membership: advertised metadata too large")
	ErrWrongKey = errors.New("membership: the pool uses another gossip key")
)

// Meta is what a member advertises. It must encode to at most 512 bytes.
type Meta struct {
	// ID is the node id (or "coordinator").
	ID string `json:"id"`
	// Role is "node" or "coordinator".
	Role string `json:"role"`
	// GRPCAddr is where the member serves gRPC.
	GRPCAddr string `json:"grpc"`
	// Epoch is the member's active key epoch (0 if none).
	Epoch uint64 `json:"epoch,omitempty"`
	// Version is the software version.
	Version string `json:"version,omitempty"`
	// Patients and Rows are a coarse summary of a node's data (rounded by the
	// node with node.CoarseCount before it advertises them; never exact).
	Patients int64 `json:"patients,omitempty"`
	// A table with Rows above 0 (a coarse count is 0 only for no rows) is
	// one the node holds: its announcement of what it can answer about, from
	// which the coordinator plans queries across linked agencies (who holds
	// the outer table, who each filter's).
	Rows map[string]int64 `json:"rows,omitempty"`
}

// Member is a member as gossip sees it.
type Member struct {
	Meta
	// Alive is false once gossip has declared the member dead or gone.
	Alive bool
	// LastSeen is when gossip last reported the member alive or updated.
	LastSeen time.Time
	// GossipAddr is the member's gossip address.
	GossipAddr string
}

// Config configures a gossip member.
type Config struct {
	// Name is the member's unique name in the gossip pool (its id). Required.
	Name string
	// BindAddr is the gossip address (host:port). Defaults to 127.0.0.1:0
	// (a free port).
	BindAddr string
	// AdvertiseAddr is the address others reach this member at. Defaults to
	// the bound address.
	AdvertiseAddr string
	// Key encrypts and authenticates gossip (AES-GCM, 16, 24 or 32 bytes).
	// Required: an unencrypted pool is refused.
	Key []byte
	// Meta is what this member advertises; update it with SetMeta.
	Meta Meta
	// Join are gossip addresses of existing members (seeds). The pool joins
	// them at start and keeps re-joining, in the background, every seed that
	// is not an alive member: one that was not up yet, and one that went
	// away and came back (memberlist never contacts a member it declared
	// dead again, so a coordinator restarted without its state would
	// otherwise never see the nodes). Defaults to none (a new pool).
	Join []string
	// Fast uses loopback-tuned timings (tests and the demo). Defaults to
	// LAN timings.
	Fast bool
	// OnChange, when set, is called (from a single goroutine, never
	// concurrently) after each join, leave or update.
	OnChange func(Member)
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// fastGossipToTheDead is how long a Fast pool keeps gossiping to a member
// it declared dead (so that it can refute), then forgets it.
const fastGossipToTheDead = time.Second

// Pool is this process's view of the gossip pool. It is safe for concurrent use.
type Pool struct {
	ml       *memberlist.Memberlist
	stop     chan struct{}
	stopOnce sync.Once
	cfg      Config
	mu       sync.RWMutex
	meta     []byte
	seen     map[string]*Member
	// addr is this member's gossip address, read once at Start: memberlist
	// changes its local node's fields under its own lock in UpdateNode, so
	// reading LocalNode() later races with SetMeta.
	addr string
}

// Start joins (or starts) the gossip pool.
func Start(cfg Config) (*Pool, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: Config.Name is required")
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	default:
		return nil, ErrBadKey
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: bind address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("membership: bind port %q: %w", portStr, err)
	}
	if port == 0 {
		// memberlist needs the same free port for TCP and UDP.
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	p := &Pool{cfg: cfg, seen: map[string]*Member{}}
	if err := p.setMeta(cfg.Meta); err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 2
		mc.PushPullInterval = 2 * time.Second
		mc.GossipToTheDeadTime = fastGossipToTheDead
	}
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("membership: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr = ah
		if mc.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return nil, fmt.Errorf("membership: advertise port %q: %w", ap, err)
		}
	}
	mc.EnableCompression = compressGossip
	mc.SecretKey = cfg.Key
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = (*delegate)(p)
	mc.Events = (*events)(p)
	mc.Logger = log.New(slogWriter{cfg.Logger}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	p.ml = ml
	n := ml.LocalNode()
	p.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	p.stop = make(chan struct{})
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "no installed keys could decrypt") {
				ml.Shutdown()
				return nil, fmt.Errorf("%w: join %v: %v", ErrWrongKey, cfg.Join, err)
			}
			// The others may not be up yet: keepJoined keeps trying.
			cfg.Logger.Warn("gossip join failed; retrying", "join", cfg.Join, "err", err)
		}
		go p.keepJoined()
	}
	return p, nil
}

// compressGossip is whether this member LZW-compresses what it gossips.
// Off: the messages are a few hundred bytes, compressing them was about a
// quarter of an idle coordinator's CPU, and a member reads compressed
// messages whatever it sends, so members of releases that compress and
// members that do not gossip together. Tests turn it on to play an older
// release.
var compressGossip = false

// Intervals of keepJoined: how often it looks, and the longest wait between
// failed joins.
func (p *Pool) rejoinIntervals() (check, ceiling time.Duration) {
	if p.cfg.Fast {
		return 200 * time.Millisecond, 2 * time.Second
	}
	return 5 * time.Second, 30 * time.Second
}

// keepJoined joins, until the pool stops, every seed (Config.Join) that is
// not an alive member, backing off (doubling up to a ceiling) while joins
// fail.
func (p *Pool) keepJoined() {
	check, ceiling := p.rejoinIntervals()
	delay := check
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(delay):
		}
		missing := p.missingSeeds()
		if len(missing) == 0 {
			delay = check
			continue
		}
		n, err := p.ml.Join(missing)
		if n == 0 {
			p.cfg.Logger.Debug("gossip join failed; retrying", "join", missing, "err", err, "retry_in", delay)
			delay = min(2*delay, ceiling)
			continue
		}
		p.cfg.Logger.Info("gossip joined", "join", missing)
		delay = check
	}
}

// missingSeeds returns the seeds that are not alive members (by resolved
// address), leaving out this member's own address.
func (p *Pool) missingSeeds() []string {
	// From the pool's own record of gossip events (memberlist's Members()
	// hands out its internal nodes, whose fields change under its lock).
	alive := map[string]bool{}
	p.mu.RLock()
	for _, m := range p.seen {
		if m.Alive {
			alive[m.GossipAddr] = true
		}
	}
	p.mu.RUnlock()
	self := p.Addr()
	var out []string
	for _, seed := range p.cfg.Join {
		a, err := net.ResolveTCPAddr("tcp", seed)
		if err != nil {
			out = append(out, seed)
			continue
		}
		if addr := a.String(); addr != self && !alive[addr] {
			out = append(out, seed)
		}
	}
	return out
}

func freePort(host string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("membership: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("membership: no free port for gossip")
}

// Addr returns this member's gossip address (for others to join).
func (p *Pool) Addr() string { return p.addr }

// SetMeta changes what this member advertises and gossips it.
func (p *Pool) SetMeta(m Meta) error {
	if err := p.setMeta(m); err != nil {
		return err
	}
	return p.ml.UpdateNode(5 * time.Second)
}

func (p *Pool) setMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMetaSize, len(b), memberlist.MetaMaxSize)
	}
	p.mu.Lock()
	p.meta = b
	p.mu.Unlock()
	return nil
}

// Members returns every member seen so far, alive or not, sorted by id.
func (p *Pool) Members() []Member {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]Member, 0, len(p.seen))
	for _, m := range p.seen {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Alive returns the alive members with the given role ("" for all).
func (p *Pool) Alive(role string) []Member {
	var out []Member
	for _, m := range p.Members() {
		if m.Alive && (role == "" || m.Role == role) {
			out = append(out, m)
		}
	}
	return out
}

// Leave announces that this member leaves, then stops gossip.
func (p *Pool) Leave(timeout time.Duration) error {
	p.stopOnce.Do(func() { close(p.stop) })
	err := p.ml.Leave(timeout)
	if serr := p.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Shutdown stops gossip without announcing it (others will see the member
// fail).
func (p *Pool) Shutdown() error {
	p.stopOnce.Do(func() { close(p.stop) })
	return p.ml.Shutdown()
}

func (p *Pool) record(n *memberlist.Node, alive bool) {
	var meta Meta
	if err := json.Unmarshal(n.Meta, &meta); err != nil || meta.ID == "" {
		p.cfg.Logger.Warn("gossip member with unreadable metadata", "name", n.Name, "err", err)
		return
	}
	if meta.ID != n.Name {
		p.cfg.Logger.Warn("gossip member advertises another id", "name", n.Name, "id", meta.ID)
		return
	}
	p.mu.Lock()
	m, ok := p.seen[n.Name]
	if !ok {
		m = &Member{}
		p.seen[n.Name] = m
	}
	wasAlive := m.Alive
	m.Meta, m.Alive, m.GossipAddr = meta, alive, n.Address()
	if alive {
		m.LastSeen = time.Now()
	}
	snapshot := *m
	p.mu.Unlock()
	if wasAlive && !alive && n.Name != p.cfg.Name {
		p.cfg.Logger.Info("gossip member gone", "member", n.Name, "addr", n.Address())
	}
	if p.cfg.OnChange != nil {
		p.cfg.OnChange(snapshot)
	}
}

type delegate Pool

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if len(d.meta) > limit {
		return nil
	}
	return append([]byte(nil), d.meta...)
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

type events Pool

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Pool)(e).record(n, true) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Pool)(e).record(n, false) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Pool)(e).record(n, true) }

// slogWriter adapts memberlist's log.Logger output to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	msg := string(b)
	lvl := slog.LevelDebug
	switch {
	case len(msg) > 7 && msg[:7] == "[ERR] m":
		lvl = slog.LevelError
	case len(msg) > 8 && msg[:8] == "[WARN] m":
		lvl = slog.LevelWarn
	}
	w.l.Log(context.Background(), lvl, trimNL(msg), "component", "memberlist")
	return len(b), nil
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
