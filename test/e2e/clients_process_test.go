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

// clientQuery is one query the CLI ran, handed to the client tests: they
// fetch it by id and compare every number with the CLI's JSON.
type clientQuery struct {
	Name string          `json:"name"`
	ID   string          `json:"id"`
	SQL  string          `json:"sql"`
	CLI  json.RawMessage `json:"cli"`
}

// queryIDLine is the CLI's last line on stderr: "query ID: N nodes answered".
var queryIDLine = regexp.MustCompile(`(?m)^query (\S+): \d+ nodes answered$`)

// TestClientsMatchCLI runs a network of separate processes, runs a cohort
// count, a count by region with an empty region (a suppressed cell) and a
// mean with `fedstat query --format json`, then runs the Python client's
// tests (clients/python) and the R package's tests (clients/r) against the
// same coordinator: they fetch the same query ids over the HTTP/JSON API,
// with a bearer token and with the analyst's client certificate, and assert
// that every value, interval end, suppressed flag and charged cost equals
// the CLI's JSON; then they run queries of their own end to end. With
// CI=true a missing python3 with pandas, httpx, tqdm, pytest and cryptography, or a
// missing R with httr2, jsonlite, tibble and testthat, fails the test;
// elsewhere it skips that client, saying what is missing.
func TestClientsMatchCLI(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	python, whyNoPython := findPython()
	rscript, whyNoR := findR()
	ci := os.Getenv("CI") == "true"
	if ci && (whyNoPython != "" || whyNoR != "") {
		t.Fatalf("CI=true and a client's tools are missing (scripts/test.sh installs them): %s %s", whyNoPython, whyNoR)
	}
	if whyNoPython != "" && whyNoR != "" {
		t.Skipf("no client can run here: %s; %s", whyNoPython, whyNoR)
	}

	data, err := demo.Synthetic(3, 500, 7)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// A survival study beside the patients, for the clients' signed
	// statistical analyses.
	study, err := demo.WriteSurvivalStudy(t.TempDir(), len(data), 200)
	if err != nil {
		t.Fatal(err)
	}
	// "zz-empty" is a region of the catalogue without a patient: its count
	// is noise around 0, far below the small-count threshold of 10.
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 3,
		Regions:    append(demo.RegionsOf(data), "zz-empty"),
		Studies:    []demo.ServeStudy{study},
		NodeConfig: func(int) string { return "\n[budget]\ntotal_rho = 1e6\nper_analyst_rho = 1e6\n" }})

	queries := []clientQuery{
		{Name: "cohort", SQL: demo.CohortQuery},
		{Name: "by_region", SQL: "SELECT region, COUNT(DISTINCT patient_id) AS patients FROM conditions WHERE code = '44054006' GROUP BY region"},
		{Name: "mean", SQL: "SELECT AVG(CLAMP(age, 0, 110)) AS mean_age, COUNT(*) AS n FROM patients"},
	}
	for i, q := range queries {
		out, stderr, err := cli(t, p, "query", "--format", "json", "--epsilon", "1", "--reference-date", "2024-01-01", q.SQL)
		if err != nil {
			t.Fatalf("fedstat query %q: %v\n%s", q.SQL, err, stderr)
		}
		m := queryIDLine.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("fedstat query --format json printed no query id on stderr: %q", stderr)
		}
		var res struct {
			Rows []struct {
				Values []struct {
					Suppressed bool `json:"suppressed"`
				} `json:"values"`
			} `json:"rows"`
			Nodes int `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Nodes != 3 || len(res.Rows) == 0 {
			t.Fatalf("query JSON %q: %v", out, err)
		}
		queries[i].ID, queries[i].CLI = m[1], json.RawMessage(out)
		if q.Name == "by_region" {
			// The clients must see a suppressed cell, or the comparison of
			// missing values is not tested.
			suppressed := 0
			for _, r := range res.Rows {
				if r.Values[0].Suppressed {
					suppressed++
				}
			}
			if suppressed == 0 || suppressed == len(res.Rows) {
				t.Fatalf("%s: %d of %d cells suppressed; want some but not all:\n%s", q.SQL, suppressed, len(res.Rows), out)
			}
		}
	}
	expected := filepath.Join(t.TempDir(), "expected.json")
	b, _ := json.MarshalIndent(map[string]any{"queries": queries}, "", "  ")
	if err := os.WriteFile(expected, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"FEDSTAT_HTTP="+p.Env["FEDSTAT_HTTP"], "FEDSTAT_TOKEN="+p.Env["FEDSTAT_TOKEN"], "FEDSTAT_CA="+p.Env["FEDSTAT_CA"],
		"FEDSTAT_CERT="+p.Env["FEDSTAT_CERT"], "FEDSTAT_KEY="+p.Env["FEDSTAT_KEY"], "FEDSTAT_CLIENT_EXPECTED="+expected,
		"FEDSTAT_BIN="+p.Binary)

	t.Run("python", func(t *testing.T) {
		if whyNoPython != "" {
			t.Skip(whyNoPython)
		}
		cmd := exec.CommandContext(ctx, python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", filepath.Join("clients", "python", "tests"))
		cmd.Dir = root
		// The working tree's package, whatever version pip installed.
		cmd.Env = append(env, "PYTHONPATH="+filepath.Join(root, "clients", "python", "src"), "PYTHONDONTWRITEBYTECODE=1")
		out, err := cmd.CombinedOutput()
		t.Logf("%s -m pytest clients/python/tests:\n%s", python, out)
		if err != nil {
			t.Fatalf("the Python client's tests failed: %v", err)
		}
		if strings.Contains(string(out), "skipped") || !strings.Contains(string(out), "passed") {
			t.Fatal("a Python client test was skipped with the network's settings given, or none passed")
		}
	})

	t.Run("r", func(t *testing.T) {
		if whyNoR != "" {
			t.Skip(whyNoR)
		}
		lib := t.TempDir()
		install := exec.CommandContext(ctx, "R", "CMD", "INSTALL", "--no-docs", "--no-multiarch", "--library="+lib, filepath.Join("clients", "r"))
		install.Dir = root
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("R CMD INSTALL clients/r: %v\n%s", err, out)
		}
		script := `res <- testthat::test_dir("clients/r/tests/testthat", package = "fedstat", load_package = "installed", reporter = "summary", stop_on_failure = TRUE)
df <- as.data.frame(res)
cat(sprintf("R client: %d tests, %d failed, %d skipped\n", sum(df$nb), sum(df$failed), sum(df$skipped)))
if (sum(df$skipped) > 0 || sum(df$failed) > 0 || any(df$error)) quit(status = 1)`
		cmd := exec.CommandContext(ctx, rscript, "-e", script)
		cmd.Dir = root
		cmd.Env = append(env, "R_LIBS="+lib)
		out, err := cmd.CombinedOutput()
		t.Logf("Rscript testthat clients/r:\n%s", out)
		if err != nil {
			t.Fatalf("the R client's tests failed (or one was skipped): %v", err)
		}
	})
}

// findPython returns a python3 that has the Python client's dependencies
// ($FEDSTAT_PYTHON, python3 on PATH, then Debian's /usr/bin/python3), or
// why there is none.
func findPython() (string, string) {
	var tried []string
	for _, c := range []string{os.Getenv("FEDSTAT_PYTHON"), "python3", "/usr/bin/python3"} {
		if c == "" {
			continue
		}
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if out, err := exec.Command(path, "-c", "import pandas, httpx, tqdm, pytest, cryptography").CombinedOutput(); err != nil {
			tried = append(tried, path+": "+strings.TrimSpace(lastLine(string(out))))
			continue
		}
		return path, ""
	}
	if len(tried) == 0 {
		return "", "no python3 found"
	}
	return "", "no python3 with pandas, httpx, tqdm, pytest and cryptography (" + strings.Join(tried, "; ") + ")"
}

// findR returns Rscript if R has the R client's dependencies, or why not.
func findR() (string, string) {
	path, err := exec.LookPath("Rscript")
	if err != nil {
		return "", "no Rscript found (Debian: r-base-core)"
	}
	if _, err := exec.LookPath("R"); err != nil {
		return "", "no R found (Debian: r-base-core)"
	}
	out, err := exec.Command(path, "-e", "for (p in c('httr2', 'jsonlite', 'tibble', 'testthat')) library(p, character.only = TRUE)").CombinedOutput()
	if err != nil {
		return "", "R lacks httr2, jsonlite, tibble or testthat: " + strings.TrimSpace(lastLine(string(out)))
	}
	return path, ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
