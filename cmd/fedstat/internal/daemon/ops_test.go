package daemon

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedstat/fedstat/internal/config"
)

// TestOpsPprofOnlyOnLoopback: runtime profiles are served only when asked
// for, and only on a loopback ops listener.
func TestOpsPprofOnlyOnLoopback(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	get := func(o *ops, path string) int {
		t.Helper()
		resp, err := http.Get("http://" + o.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	off, err := startOps("127.0.0.1:0", false, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer off.close()
	if code := get(off, "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("without ops_pprof: /debug/pprof/heap answered %d", code)
	}

	on, err := startOps("127.0.0.1:0", true, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer on.close()
	if code := get(on, "/debug/pprof/heap"); code != http.StatusOK {
		t.Errorf("with ops_pprof: /debug/pprof/heap answered %d", code)
	}
	if code := get(on, "/healthz"); code != http.StatusOK {
		t.Errorf("with ops_pprof: /healthz answered %d", code)
	}

	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:9091", ":9091", "off"} {
		o, err := startOps(addr, true, prometheus.NewRegistry(), log)
		if o != nil {
			o.close()
		}
		if !errors.Is(err, config.ErrInvalid) || !errors.Is(err, errPprofNotLoopback) {
			t.Errorf("ops_pprof on %q: %v", addr, err)
		}
	}
}
