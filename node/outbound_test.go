package node

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/internal/membership"
)

// TestOutboundConfig: an outbound node (Config.Coordinator) refuses every
// field that would make it listen or gossip, naming it, and takes its
// defaults.
func TestOutboundConfig(t *testing.T) {
	for field, cfg := range map[string]Config{
		"ListenAddr":    {Coordinator: "c:7443", ListenAddr: "0.0.0.0:7444"},
		"AdvertiseAddr": {Coordinator: "c:7443", AdvertiseAddr: "n:7444"},
		"Gossip":        {Coordinator: "c:7443", Gossip: &membership.Config{}},
		"ServerOptions": {Coordinator: "c:7443", ServerOptions: []grpc.ServerOption{grpc.MaxRecvMsgSize(1)}},
	} {
		if err := checkOutbound(&cfg); err == nil || !strings.Contains(err.Error(), "Config."+field) {
			t.Errorf("%s set on an outbound node: %v", field, err)
		}
	}
	cfg := Config{Coordinator: "c:7443"}
	if err := checkOutbound(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.CoordinatorName != "coordinator" || cfg.Reconnect.Initial != 500*time.Millisecond || cfg.Reconnect.Max != 10*time.Second {
		t.Errorf("defaults: %q %+v", cfg.CoordinatorName, cfg.Reconnect)
	}
}

// TestReconnectBackoff: the wait doubles from Initial up to Max, is never
// below a tenth of its ceiling nor above it.
func TestReconnectBackoff(t *testing.T) {
	b := Backoff{Initial: 500 * time.Millisecond, Max: 10 * time.Second}
	for n, ceiling := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 5: 8 * time.Second, 6: 10 * time.Second, 40: 10 * time.Second} {
		if lo, hi := b.delay(n, 0), b.delay(n, 0.999999); lo != ceiling/10 || hi > ceiling || hi < ceiling*99/100 {
			t.Errorf("attempt %d: waits %v..%v, want %v..%v", n, lo, hi, ceiling/10, ceiling)
		}
	}
}
