// Package testkit holds what tests need from outside the code under test:
// the fedstat binary built for process tests (BuildBinary), the shared
// reference data (SharedData) and a PostgreSQL server (PostgresDSN). No
// product package imports it.
//
// PostgresDSN gives tests a PostgreSQL server: the one named by
// FEDSTAT_TEST_POSTGRES_DSN (scripts/test.sh starts a throw-away cluster and
// sets it), or a throw-away cluster started with initdb and pg_ctl from PATH
// when not running as root. Without either, tests fail when CI=true and skip,
// saying why, otherwise.
package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
)

// PostgresDSN returns a connection string for a PostgreSQL server the test may use
// (it may create and drop schemas in its database).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("FEDSTAT_TEST_POSTGRES_DSN"); d != "" {
		return d
	}
	fail := func(msg string, args ...any) string {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL needed in CI: "+msg, args...)
		}
		t.Skipf("no PostgreSQL (set FEDSTAT_TEST_POSTGRES_DSN or run scripts/test.sh): "+msg, args...)
		return ""
	}
	if u, err := user.Current(); err != nil || u.Uid == "0" {
		return fail("FEDSTAT_TEST_POSTGRES_DSN unset and running as root")
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return fail("FEDSTAT_TEST_POSTGRES_DSN unset and no initdb on PATH")
	}
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), dir
	if out, err := exec.Command(initdb, "-D", data, "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		return fail("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("no free port: %v", err)
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	if out, err := exec.Command("pg_ctl", "-D", data, "-w", "-o", "-k "+sock+" -p "+port+" -c listen_addresses=''", "start", "-l", filepath.Join(dir, "log")).CombinedOutput(); err != nil {
		return fail("pg_ctl start: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("pg_ctl", "-D", data, "-m", "immediate", "stop").Run() })
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres", sock, port)
}
