package stattest

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/fedstat/fedstat/internal/shareddata"
)

// TestReferenceScriptStrepTB runs examples/reference/strep_tb.sh as a
// researcher would (a network of separate processes started with the CLI)
// and checks its JSON lines against the published counts, so that the
// example scripts keep working.
func TestReferenceScriptStrepTB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network of processes; skipped with -short")
	}
	testkit.SharedData(t, "reference/strep_tb.csv")
	dir, _ := shareddata.Dir()
	bin, err := testkit.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../../examples/reference/strep_tb.sh")
	cmd.Env = append(os.Environ(), "FEDSTAT="+bin, "FEDSTAT_SHARED_DATA="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("strep_tb.sh: %v\n%s", err, stderr.String())
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var line struct {
			Dataset   string   `json:"dataset"`
			Statistic string   `json:"statistic"`
			Value     float64  `json:"value"`
			CILow     *float64 `json:"ci_low"`
			CIHigh    *float64 `json:"ci_high"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil || line.Dataset != "strep_tb" || line.Statistic == "" {
			t.Fatalf("not a result line: %q (%v)", sc.Text(), err)
		}
		got[line.Statistic] = line.Value
	}
	for stat, want := range map[string]float64{
		"deaths.Streptomycin": 4, "deaths.Control": 14, "improved.Streptomycin": 28, "improved.Control": 4,
		"n.Streptomycin": 55, "n.Control": 52,
	} {
		if v, ok := got[stat]; !ok || v < want-0.5 || v > want+0.5 {
			t.Errorf("%s = %v (present %v), published %v", stat, v, ok, want)
		}
	}
	if p := got["deaths.chisq.p"]; p <= 0 || p >= 0.05 {
		t.Errorf("deaths.chisq.p = %v, want significant", p)
	}
}
