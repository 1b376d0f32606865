package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/config"
	"github.com/fedstat/fedstat/internal/pki"
)

// TestNodeRefusesUnreachableWarehouse: a node configured with a [warehouse]
// it cannot reach does not start; the error names the warehouse and does
// not repeat the DSN's password.
func TestNodeRefusesUnreachableWarehouse(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.InitDir(pkiDir, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Issue(pki.IssueRequest{Name: "node-1", Role: pki.RoleNode, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteIdentity(pkiDir, id); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Node{Common: config.Common{Name: "node-1", DataDir: filepath.Join(dir, "data"), PKIDir: pkiDir,
		Listen: "127.0.0.1:0", OpsListen: "off", MaxNodesPerPatient: 1}}
	// Nothing listens on this socket directory.
	cfg.Warehouse.DSN = "host=" + filepath.Join(dir, "no-server") + " port=5432 user=fedstat password=s3cret-pw dbname=omop connect_timeout=2"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = RunNode(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "warehouse") {
		t.Fatalf("RunNode with an unreachable warehouse: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the error repeats the DSN's password: %v", err)
	}
}
