// Package daemon turns a configuration into a running coordinator or node:
// identity, stores, logs, the ops endpoints (/metrics, /healthz, /readyz),
// the HTTP/JSON API and gossip. cmd/fedstat calls it; tests start the same
// daemons in-process.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedstat/fedstat/internal/buildinfo"
	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/membership"
)

// NewLogger returns a slog logger for the configured level and format.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("%w: log_level %q: want debug, info, warn or error", config.ErrInvalid, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: log_format %q: want text or json", config.ErrInvalid, format)
}

// ops serves /metrics, /healthz (the process is up) and /readyz (ready for
// traffic: ready() returns nil).
type ops struct {
	srv   *http.Server
	lis   net.Listener
	ready atomic.Pointer[func() error]
}

// errPprofNotLoopback is returned when ops_pprof is set on an ops endpoint
// that is not bound to a loopback address.
var errPprofNotLoopback = errors.New("ops_pprof needs ops_listen on a loopback address")

func startOps(addr string, withPprof bool, reg *prometheus.Registry, log *slog.Logger) (*ops, error) {
	if addr == "off" {
		if withPprof {
			return nil, fmt.Errorf("%w: %w (ops_listen is off)", config.ErrInvalid, errPprofNotLoopback)
		}
		return nil, nil
	}
	if withPprof && !loopbackAddr(addr) {
		return nil, fmt.Errorf("%w: %w, not %q", config.ErrInvalid, errPprofNotLoopback, addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops endpoint %s: %w", addr, err)
	}
	o := &ops{lis: lis}
	mux := http.NewServeMux()
	if withPprof {
		// Registered by hand on this mux only: the package's init also
		// registers on http.DefaultServeMux, which nothing here serves.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		log.Warn("ops endpoint serves runtime profiles (ops_pprof)", "addr", lis.Addr().String())
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if f := o.ready.Load(); f != nil {
			if err := (*f)(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
			return
		}
		http.Error(w, "not ready: starting", http.StatusServiceUnavailable)
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := o.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops endpoint stopped", "err", err)
		}
	}()
	log.Info("ops endpoint serving", "addr", lis.Addr().String())
	return o, nil
}

// loopbackAddr reports whether host:port names a loopback host (an IP in
// 127.0.0.0/8 or ::1, or "localhost").
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (o *ops) setReady(f func() error) {
	if o != nil {
		o.ready.Store(&f)
	}
}

func (o *ops) close() {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	o.srv.Shutdown(ctx)
}

// Addr returns the ops endpoint address, if any.
func (o *ops) Addr() string {
	if o == nil {
		return ""
	}
	return o.lis.Addr().String()
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fedstat_build_info",
		Help: "Always 1; the labels say which fedstat this is (release version, commit, Go version)."},
		[]string{"version", "revision", "modified", "go_version"})
	build.WithLabelValues(bi.Version, bi.Revision, strconv.FormatBool(bi.Modified), bi.GoVersion).Set(1)
	reg.MustRegister(build)
	return reg
}

// gossipConfig turns the gossip section into a membership config.
func gossipConfig(g *config.Gossip, name string, log *slog.Logger) (*membership.Config, error) {
	if g == nil {
		return nil, nil
	}
	if g.KeyFile == "" {
		return nil, fmt.Errorf("%w: gossip.key_file is required (gossip is always encrypted)", config.ErrInvalid)
	}
	key, err := config.ReadSecretFile(g.KeyFile)
	if err != nil {
		return nil, err
	}
	bind := g.Bind
	if bind == "" {
		bind = "0.0.0.0:7946"
	}
	return &membership.Config{Name: name, BindAddr: bind, AdvertiseAddr: g.Advertise, Key: key, Join: g.Join, Logger: log, Fast: testGossipFast(log)}, nil
}

func auditPath(c *config.Common) string {
	if c.AuditLog != "" {
		return c.AuditLog
	}
	return filepath.Join(c.DataDir, "audit.log")
}

func checkCommon(c *config.Common, role string) error {
	if c.Name == "" {
		return fmt.Errorf("%w: name is required (the %s's name in its certificate)", config.ErrInvalid, role)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: data_dir is required", config.ErrInvalid)
	}
	if c.PKIDir == "" {
		return fmt.Errorf("%w: pki_dir is required (it holds ca.crt, %s.crt and %s.key)", config.ErrInvalid, c.Name, c.Name)
	}
	if err := c.RequireMaxNodesPerPatient(); err != nil {
		return err
	}
	return os.MkdirAll(c.DataDir, 0o700)
}
