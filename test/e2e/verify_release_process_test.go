package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
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
// coordinator's config file it verifies. A mean's result key is withheld:
// verify checks up to the key switch, and the range proofs. --format json
// prints the verdict as one object, over the HTTP/JSON API with the
// analyst's certificate.
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
	for _, want := range []string{"partials in the sum (signed and committed): node-1, node-2, node-3", "decryptors (signed shares, threshold 2): ", "VERIFIED",
		"the sum of the values they committed to and proved within the plan's bounds"} {
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
	// A mean releases a ratio, not the sums behind it: the coordinator
	// withholds the result key, and verify checks up to the key switch,
	// the range proofs included (they need no key).
	_, stderrMean := cliQueryJSON(t, p, 3, "SELECT AVG(CLAMP(value, 0, 100)) FROM observations")
	mMean := regexp.MustCompile(`query (q-[0-9a-f]+)`).FindStringSubmatch(stderrMean)
	if mMean == nil {
		t.Fatalf("no query id in %q", stderrMean)
	}
	out, errOut, err = cli(t, p, "verify", mMean[1])
	if err != nil || !strings.Contains(out, "VERIFIED up to the key switch") || !strings.Contains(out, "every sender's range proof verified here") {
		t.Errorf("verify of a mean (key withheld): %v\n%s%s", err, out, errOut)
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
	// --format json, over the HTTP/JSON API with the analyst's certificate
	// (how the Python and R clients connect, and run verify).
	verifyJSON := func(id string) (verifyReport, error) {
		t.Helper()
		cmd := exec.Command(p.Binary, "verify", "--format", "json", id)
		cmd.Env = os.Environ()
		for k, v := range p.Env {
			if k != "FEDSTAT_TOKEN" && k != "FEDSTAT_COORDINATOR" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		var rep verifyReport
		if jerr := json.Unmarshal(b, &rep); jerr != nil {
			t.Fatalf("verify --format json printed %q (%v): %v\n%s", b, err, jerr, stderr.String())
		}
		return rep, err
	}
	rep, err := verifyJSON(m2[1])
	if err != nil || rep.Verdict != "verified" || rep.QueryID != m2[1] || rep.CheckedQueryID != m[1] ||
		strings.Join(rep.Senders, ",") != "node-1,node-2,node-3" || len(rep.Decryptors) != 2 || rep.Threshold != 2 || !rep.PlanBound ||
		!rep.RangesProven || !rep.RangesChecked {
		t.Errorf("verify --format json of a reused answer: %+v (%v)", rep, err)
	}
	if rep, err := verifyJSON(m3[1]); err == nil || rep.Verdict != "not_checked" || !strings.Contains(rep.Reason, "catalogue") {
		t.Errorf("verify --format json of a study-table query without the network catalogue: %+v (%v)", rep, err)
	}
	if out, _, err := cli(t, p, "verify", "q-nosuch"); err == nil {
		t.Errorf("verify of an unknown query passed: %s", out)
	}
	help, _, _ := cli(t, p, "verify", "--help")
	for _, want := range []string{"network CA", "min_nodes", "result key", "does not prove", "--network-config", "--format json", "range proof", "ranges_proven"} {
		if !strings.Contains(help, want) {
			t.Errorf("verify --help does not say %q", want)
		}
	}
}

// verifyReport is what `fedstat verify --format json` prints.
type verifyReport struct {
	QueryID        string   `json:"query_id"`
	CheckedQueryID string   `json:"checked_query_id"`
	Verdict        string   `json:"verdict"`
	Reason         string   `json:"reason"`
	Epoch          uint64   `json:"epoch"`
	Senders        []string `json:"senders"`
	Decryptors     []string `json:"decryptors"`
	Threshold      int      `json:"threshold"`
	PlanBound      bool     `json:"plan_bound"`
	RangesProven   bool     `json:"ranges_proven"`
	RangesChecked  bool     `json:"ranges_checked"`
	Withheld       string   `json:"withheld"`
}
