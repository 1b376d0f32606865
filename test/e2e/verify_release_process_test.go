package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
)

// TestVerifiableReleaseProcesses: the built `fedstat verify` checks the
// release of a query the built `fedstat query` ran on a network of
// processes, with the analyst's CA file only, and prints the nodes whose
// partials are in the result and the decryptors; the same question asked
// again is answered from that release, and verify checks it against it; a
// query id without a record is an error; its --help says what is checked.
// A query on a study table plans only with the network catalogue: verify
// without it checks nothing and asks for --network-config, with the
// coordinator's config file it verifies.
func TestVerifiableReleaseProcesses(t *testing.T) {
	data, err := demo.Synthetic(3, 300, 11)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	study, err := demo.WriteSurvivalStudy(t.TempDir(), len(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2, Studies: []demo.ServeStudy{study}})

	_, stderr := cliQueryJSON(t, p, 3, demo.CohortQuery)
	m := regexp.MustCompile(`query (q-[0-9a-f]+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no query id in %q", stderr)
	}
	out, errOut, err := cli(t, p, "verify", m[1])
	if err != nil {
		t.Fatalf("fedstat verify: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"partials in the sum (signed and committed): node-1, node-2, node-3", "decryptors (signed shares, threshold 2): ", "VERIFIED"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify printed %q, without %q", out, want)
		}
	}
	// The same question again is answered from that release; verify
	// checks it against that release and its record.
	_, stderr2 := cliQueryJSON(t, p, 3, demo.CohortQuery)
	m2 := regexp.MustCompile(`query (q-[0-9a-f]+)`).FindStringSubmatch(stderr2)
	if m2 == nil || m2[1] == m[1] {
		t.Fatalf("no second query id in %q", stderr2)
	}
	out, errOut, err = cli(t, p, "verify", m2[1])
	if err != nil {
		t.Fatalf("fedstat verify of a reused answer: %v\n%s%s", err, out, errOut)
	}
	for _, want := range []string{"was answered from the release of " + m[1], "VERIFIED"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify of a reused answer printed %q, without %q", out, want)
		}
	}
	// A query on the study table.
	_, stderr3 := cliQueryJSON(t, p, 3, "--epsilon", "2", "SELECT COUNT(*) AS n FROM survival")
	m3 := regexp.MustCompile(`query (q-[0-9a-f]+)`).FindStringSubmatch(stderr3)
	if m3 == nil {
		t.Fatalf("no query id in %q", stderr3)
	}
	out, errOut, err = cli(t, p, "verify", m3[1])
	if err == nil || !strings.Contains(out, "NOT CHECKED") || !strings.Contains(errOut, "--network-config") {
		t.Errorf("verify of a study-table query without the network catalogue: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = cli(t, p, "verify", "--network-config", filepath.Join(p.Dir, "coordinator.toml"), m3[1])
	if err != nil || !strings.Contains(out, "VERIFIED") || strings.Contains(out, "NOT ") || strings.Contains(out, "did not commit to their plan") {
		t.Errorf("verify --network-config of a study-table query: %v\n%s%s", err, out, errOut)
	}
	if out, _, err := cli(t, p, "verify", "q-nosuch"); err == nil {
		t.Errorf("verify of an unknown query passed: %s", out)
	}
	help, _, _ := cli(t, p, "verify", "--help")
	for _, want := range []string{"network CA", "min_nodes", "result key", "does not prove", "--network-config"} {
		if !strings.Contains(help, want) {
			t.Errorf("verify --help does not say %q", want)
		}
	}
}
