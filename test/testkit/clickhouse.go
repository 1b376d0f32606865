package testkit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ClickHouse is a throw-away ClickHouse server started for one test: an
// unprivileged process of clickhouse-server with its own config and data
// in a temp dir, listening on free loopback ports, with a cluster of two
// shards (both on this server, each its own database) for Distributed
// tables.
type ClickHouse struct {
	URL     string   // the HTTP interface, http://127.0.0.1:port/
	Cluster string   // the remote_servers cluster: "fedstat"
	Shards  []string // each shard's database (its replica's default_database)
}

// ClickHouseServer starts clickhouse-server from PATH (or /usr/sbin, where
// Debian puts it) and stops it when the test ends. Without the binary the
// test fails when CI=true (scripts/test.sh installs Debian's
// clickhouse-server) and skips, saying why, otherwise.
func ClickHouseServer(t testing.TB) ClickHouse {
	t.Helper()
	fail := func(msg string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("ClickHouse needed in CI: "+msg, args...)
		}
		t.Skipf("no ClickHouse (apt-get install clickhouse-server, or run scripts/test.sh): "+msg, args...)
	}
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clickhouse-server"); serr != nil {
			fail("no clickhouse-server on PATH or in /usr/sbin")
			return ClickHouse{}
		}
		bin = "/usr/sbin/clickhouse-server"
	}
	dir := t.TempDir()
	// Three distinct free ports: held open together, closed before the
	// server binds them.
	ports := make([]int, 3)
	ls := make([]net.Listener, 0, len(ports))
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail("no free port: %v", err)
			return ClickHouse{}
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	httpPort, tcpPort, interPort := ports[0], ports[1], ports[2]
	ch := ClickHouse{URL: fmt.Sprintf("http://127.0.0.1:%d/", httpPort), Cluster: "fedstat", Shards: []string{"fedstat_shard1", "fedstat_shard2"}}
	var shards strings.Builder
	for _, db := range ch.Shards {
		fmt.Fprintf(&shards, "<shard><replica><host>127.0.0.1</host><port>%d</port><default_database>%s</default_database></replica></shard>", tcpPort, db)
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>%[2]d</http_port>
  <tcp_port>%[3]d</tcp_port>
  <interserver_http_port>%[4]d</interserver_http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>20</max_concurrent_queries>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <remote_servers><%[5]s>%[6]s</%[5]s></remote_servers>
</yandex>
`, dir, httpPort, tcpPort, interPort, ch.Cluster, shards.String())
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		fail("starting %s: %v", bin, err)
		return ClickHouse{}
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ch.URL+"ping", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return ch
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("clickhouse-server exited at start: %s", log)
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("clickhouse-server did not answer on %s in 30 s: %s", ch.URL, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
