package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
)

// startNodeDaemon runs `fedstat node --config` in this process on the data
// directory data (already imported) until the test ends, and waits until
// its admin socket answers.
func startNodeDaemon(t *testing.T, dir, data string) {
	t.Helper()
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
	cfg := filepath.Join(dir, "node.toml")
	text := `name = "node-1"
data_dir = "` + data + `"
pki_dir = "` + pkiDir + `"
listen = "127.0.0.1:0"
ops_listen = "off"
log_level = "error"
regions = ["north", "south", "east"]
max_nodes_per_patient = 1
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"node", "--config", cfg})
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node daemon: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("node daemon did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !daemonAnswers(data) {
		select {
		case err := <-done:
			t.Fatalf("node daemon stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the node daemon's admin socket did not answer within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Issue 16: `node status` and `node query` work while the daemon runs, by
// asking it over its admin socket, instead of failing on the store's lock;
// the answers are those of the stopped node.
func TestNodeStatusAndQueryWhileDaemonRuns(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "patients.csv")
	if err := os.WriteFile(csv, []byte("patient_id,birth_date,sex,region\np1,1950-01-01,F,north\np2,1960-02-02,M,south\np3,1970-03-03,F,north\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "node")
	if out, err := runFedstat(t, "node", "import", "--data-dir", data, csv); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	const sql = "SELECT region, COUNT(*) FROM patients GROUP BY region"
	stopped, err := runFedstat(t, "node", "query", "--data-dir", data, "--format", "csv", sql)
	if err != nil {
		t.Fatalf("query of the stopped node: %v\n%s", err, stopped)
	}
	stoppedStatus, err := runFedstat(t, "node", "status", "--data-dir", data)
	if err != nil {
		t.Fatalf("status of the stopped node: %v\n%s", err, stoppedStatus)
	}

	startNodeDaemon(t, dir, data)
	// The daemon holds the store: opening it directly is what used to fail.
	if _, err := admin.OpenTables(context.Background(), data, ""); !errors.Is(err, kv.ErrInUse) {
		t.Fatalf("the store is not held by the daemon (%v): the test would not show anything", err)
	}
	if st, err := os.Stat(node.AdminSocket(data)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	running, err := runFedstat(t, "node", "query", "--data-dir", data, "--format", "csv", sql)
	if err != nil {
		t.Fatalf("query while the daemon runs: %v\n%s", err, running)
	}
	if running != stopped || !strings.Contains(running, "north,2") || !strings.Contains(running, "south,1") {
		t.Errorf("query while the daemon runs:\n%s\nwith it stopped:\n%s", running, stopped)
	}
	for _, format := range []string{"table", "json"} {
		if out, err := runFedstat(t, "node", "query", "--data-dir", data, "--format", format, "SELECT COUNT(*) FROM patients"); err != nil || !strings.Contains(out, "3") {
			t.Errorf("query --format %s while the daemon runs: %v\n%s", format, err, out)
		}
	}
	out, err := runFedstat(t, "node", "query", "--data-dir", data, "SELECT COUNT(*) FROM nowhere")
	if err == nil || !strings.Contains(err.Error(), "nowhere") || !strings.Contains(err.Error(), "running node daemon") {
		t.Errorf("a bad query while the daemon runs: %v\n%s", err, out)
	}

	out, err = runFedstat(t, "node", "status", "--data-dir", data, "--format", "json")
	if err != nil {
		t.Fatalf("status while the daemon runs: %v\n%s", err, out)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --format json: %v\n%s", err, out)
	}
	if st.Tables["patients"] != 3 || st.DataDir != data || st.Generation != 1 || len(st.Imports) != 1 {
		t.Errorf("status while the daemon runs: %+v", st)
	}
	table, err := runFedstat(t, "node", "status", "--data-dir", data)
	if err != nil {
		t.Fatalf("status (table) while the daemon runs: %v\n%s", err, table)
	}
	// Same text but for the time the columnar copy took to build.
	cut := func(s string) string { return s[:strings.LastIndex(s, "columnar copy built in")] }
	if cut(table) != cut(stoppedStatus) {
		t.Errorf("status while the daemon runs:\n%s\nwith it stopped:\n%s", table, stoppedStatus)
	}
}

// A socket file left by a daemon that was killed (SIGKILL leaves it) does
// not answer: status and query read the stopped node's store as before.
func TestNodeQueryAfterDaemonKilled(t *testing.T) {
	dir := t.TempDir()
	data := importPatients(t, dir)
	lis, err := net.Listen("unix", node.AdminSocket(data))
	if err != nil {
		t.Fatal(err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
	if _, err := os.Stat(node.AdminSocket(data)); err != nil {
		t.Fatalf("the stale socket file is gone: %v", err)
	}
	out, err := runFedstat(t, "node", "query", "--data-dir", data, "--format", "csv", "SELECT COUNT(*) FROM patients")
	if err != nil || !strings.Contains(out, "\n2,") {
		t.Errorf("query next to a stale admin socket: %v\n%s", err, out)
	}
	if out, err := runFedstat(t, "node", "status", "--data-dir", data); err != nil || !strings.Contains(out, "patients") {
		t.Errorf("status next to a stale admin socket: %v\n%s", err, out)
	}
}

// TestNodeQueryConfigCatalogue: with the daemon stopped, `node query
// --config` plans with the node's network catalogue (here a value set and
// the region list) and takes the data directory from the config; without
// it the value set is unknown, and the error says where value sets come
// from.
func TestNodeQueryConfigCatalogue(t *testing.T) {
	dir := t.TempDir()
	data := importPatients(t, dir)
	conds := filepath.Join(dir, "conditions.csv")
	if err := os.WriteFile(conds, []byte("patient_id,code,system\np1,E119,http://hl7.org/fhir/sid/icd-10-cm\np2,I10,http://hl7.org/fhir/sid/icd-10-cm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runFedstat(t, "node", "import", "--data-dir", data, conds); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	vs := filepath.Join(dir, "dm.json")
	if err := os.WriteFile(vs, []byte(`{"resourceType":"ValueSet","name":"diabetes","compose":{"include":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","filter":[{"property":"concept","op":"is-a","value":"E11"}]}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "node.toml")
	if err := os.WriteFile(cfg, []byte(`name = "node-1"
data_dir = "`+data+`"
max_nodes_per_patient = 1
regions = ["north", "south", "east"]
value_sets = ["`+vs+`"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	sql := "SELECT COUNT(*) FROM conditions WHERE code IN VALUESET 'diabetes'"
	out, err := runFedstat(t, "node", "query", "--config", cfg, "--format", "csv", sql)
	if err != nil || !strings.Contains(out, "\n1,") {
		t.Errorf("query with --config: %v\n%s", err, out)
	}
	if _, err := runFedstat(t, "node", "query", "--data-dir", data, sql); err == nil || !strings.Contains(err.Error(), "value_sets") {
		t.Errorf("query without the catalogue: %v", err)
	}
}
