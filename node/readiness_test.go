package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/node"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestEpochReady: a node reports, per epoch, whether it can do its part: it
// reads its key files at every call, so a threshold share deleted or damaged
// after start is seen, in EpochReady and in Info's epoch_status (which
// carries no key material and no file path).
func TestEpochReady(t *testing.T) {
	dir := t.TempDir()
	nw := startKept(t, dir, 3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n1 := nw.Nodes[0]
	info := func() *nodev1.EpochStatus {
		t.Helper()
		r, err := dialNode(t, n1.Addr(), identity(t, dir, "coordinator"), "node-1").Info(ctx, &nodev1.InfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetEpochStatus()
	}
	if err := n1.EpochReady(nw.Epoch); err != nil {
		t.Fatalf("EpochReady(%d) after the ceremony: %v", nw.Epoch, err)
	}
	if st := info(); !st.GetReady() || st.GetEpoch() != nw.Epoch || st.GetLatestEpoch() != nw.Epoch || st.GetProblem() != "" {
		t.Fatalf("epoch_status after the ceremony: %v", st)
	}
	if err := n1.EpochReady(nw.Epoch + 1); !errors.Is(err, node.ErrWrongEpoch) {
		t.Fatalf("EpochReady of another epoch: %v, want ErrWrongEpoch", err)
	}

	share := filepath.Join(dir, "node-1", "keys", "epoch-1-threshold.secret")
	good, err := os.ReadFile(share)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		damage     func() error
	}{
		{"a damaged threshold share", "threshold share of epoch 1: damaged", func() error {
			bad := append([]byte(nil), good[:len(good)/2]...) // the header survives, the checksum fails
			return os.WriteFile(share, bad, 0o600)
		}},
		{"a deleted threshold share", "threshold share of epoch 1: missing", func() error { return os.Remove(share) }},
	} {
		if err := tc.damage(); err != nil {
			t.Fatal(err)
		}
		err := n1.EpochReady(nw.Epoch)
		if !errors.Is(err, node.ErrKeysUnavailable) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("EpochReady with %s: %v, want ErrKeysUnavailable naming %q", tc.name, err, tc.want)
		}
		if n1.Ready() == nil {
			t.Fatalf("Ready (readyz) with %s: nil", tc.name)
		}
		st := info()
		if st.GetReady() || !strings.Contains(st.GetProblem(), tc.want) || strings.Contains(st.GetProblem(), dir) {
			t.Fatalf("epoch_status with %s: %v; want not ready, naming %q and no path", tc.name, st, tc.want)
		}
	}
	if err := os.WriteFile(share, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n1.EpochReady(nw.Epoch); err != nil {
		t.Fatalf("EpochReady with the share restored: %v", err)
	}
	// The linkage-key share: without it the node cannot mix or decrypt a
	// query across linked agencies, and says so.
	link := filepath.Join(dir, "node-1", "keys", "epoch-1-link.secret")
	lgood, err := os.ReadFile(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := n1.EpochReady(nw.Epoch); !errors.Is(err, node.ErrKeysUnavailable) || !strings.Contains(err.Error(), "linkage-key share of epoch 1: missing") {
		t.Fatalf("EpochReady without the linkage-key share: %v", err)
	}
	if err := os.WriteFile(link, lgood, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n1.EpochReady(nw.Epoch); err != nil {
		t.Fatalf("EpochReady with the linkage-key share restored: %v", err)
	}
}
