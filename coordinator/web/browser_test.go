package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/test/testkit"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/signedquery"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

var screenshots = flag.Bool("screenshots", false, "write the pages' screenshots to docs/screenshots")

// chromium finds Debian's chromium. Missing, the test fails in CI and is
// skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI must install it (scripts/test.sh: apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed: skipping the dashboard's browser test (apt-get install -y chromium to run it)")
	return ""
}

// api calls the coordinator's HTTP/JSON API with a bearer token.
type api struct {
	base string
	c    *http.Client
}

func newAPI(t *testing.T, p *demo.Processes) *api {
	c, err := p.HTTPClient(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return &api{base: p.Env["FEDSTAT_HTTP"], c: c}
}

func (a *api) do(t *testing.T, token, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, a.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestDashboard starts a real coordinator and three nodes as processes,
// signs in to the dashboard in headless Chromium as an analyst, builds and
// runs a weekly-cases-by-region query with the form builder, checks the
// chart and its interval bands, downloads the CSV and compares it with the
// API's result for the same query id (formatted like `fedstat query
// --format csv`), checks a parse error is shown at its position, and that
// the analyst is refused the operator's audit page while an operator sees
// it. With -screenshots it writes every page to docs/screenshots.
func TestDashboard(t *testing.T) {
	chrome := chromium(t)
	if testing.Short() {
		t.Skip("browser test builds the binary and starts processes; skipped with -short")
	}
	start := time.Now()
	bin, err := testkit.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The screenshots show the demo's population (fedstat demo --serve);
	// the test alone runs on a smaller one.
	patients := 500
	if *screenshots {
		patients = demo.DefaultPatients
	}
	data, err := demo.Synthetic(3, patients, 7)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	// A synthetic survival study, split over the three nodes, for the
	// statistics page; the nodes give the analyst room for its epsilons.
	study, err := demo.WriteSurvivalStudy(dir, len(data), 150)
	if err != nil {
		t.Fatal(err)
	}
	p, err := demo.Serve(ctx, demo.ServeOptions{Binary: bin, Dir: dir, Data: data, Studies: []demo.ServeStudy{study},
		NodeConfig: func(int) string { return "\n[budget]\ntotal_rho = 2000\nper_analyst_rho = 1000\n" }})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "coordinator.log"))
		t.Fatalf("%v\ncoordinator.log:\n%s", err, b)
	}
	defer p.Stop()
	analyst := p.Env["FEDSTAT_TOKEN"]

	// Add an operator token and restart the coordinator to load it.
	operator := "fst_operator_" + fmt.Sprint(time.Now().UnixNano())
	tokens := fmt.Sprintf(`[{"name": "analyst", "role": "analyst", "sha256": %q}, {"name": "ops", "role": "operator", "sha256": %q}]`,
		coordinator.HashToken(analyst), coordinator.HashToken(operator))
	if err := os.WriteFile(filepath.Join(dir, "tokens.json"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Coordinator.Stop(10 * time.Second)
	if err := p.StartCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))
	a := newAPI(t, p)
	if code, body := a.do(t, analyst, "GET", "/v1/audit"); code != http.StatusForbidden {
		t.Fatalf("analyst GET /v1/audit: %d %s, want 403", code, body)
	}
	if code, body := a.do(t, operator, "GET", "/v1/audit"); code != http.StatusOK || !strings.Contains(string(body), `"entries"`) {
		t.Fatalf("operator GET /v1/audit: %d %s", code, body)
	}

	downloads := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		// The coordinator's certificate is from the network's own CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 1000),
	}
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	chromedp.ListenTarget(bctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			t.Logf("browser exception: %s", ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			for _, a := range ev.Args {
				t.Logf("browser console %s: %s %s", ev.Type, a.Value, a.Description)
			}
		}
	})
	// Start the browser on bctx itself: a browser started under a
	// per-step timeout context would close with that step.
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	run := func(what string, timeout time.Duration, actions ...chromedp.Action) {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, timeout)
		defer cancel()
		if err := chromedp.Run(c, actions...); err != nil {
			var html string
			hc, hcancel := context.WithTimeout(bctx, 5*time.Second)
			chromedp.Run(hc, chromedp.OuterHTML("main", &html))
			hcancel()
			t.Fatalf("%s: %v\npage: %s", what, err, html)
		}
	}
	shot := func(name string) {
		t.Helper()
		var buf []byte
		run("screenshot "+name, 20*time.Second, chromedp.FullScreenshot(&buf, 100))
		path := filepath.Join(t.TempDir(), name+".png")
		if *screenshots {
			path = filepath.Join("..", "..", "docs", "screenshots", name+".png")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string, out any) chromedp.Action {
		return chromedp.Evaluate(js, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })
	}
	// setValue sets a form field as typing would, with input and change events.
	setValue := func(sel, v string) chromedp.Action {
		js, _ := json.Marshal(v)
		return eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %s; e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true })()`, sel, js), nil)
	}
	goTo := func(hash string) chromedp.Action { return eval(`location.hash = "`+hash+`"; true`, nil) }

	// Sign in as the analyst.
	run("open sign-in", 30*time.Second,
		browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads),
		chromedp.Navigate(p.Env["FEDSTAT_HTTP"]+"/#/signin"),
		chromedp.WaitVisible("#token", chromedp.ByQuery))
	shot("signin")
	run("sign in", 20*time.Second,
		chromedp.SendKeys("#token", analyst, chromedp.ByQuery),
		chromedp.Click("#signin-btn", chromedp.ByQuery),
		chromedp.WaitVisible("#fb-kind", chromedp.ByQuery))
	var auditLinkHidden bool
	run("audit link", 5*time.Second, eval(`document.getElementById("nav-audit").hidden`, &auditLinkHidden))
	if !auditLinkHidden {
		t.Error("the analyst is offered the operator's audit page in the navigation")
	}

	// CSRF: a state-changing request with the cookie but without the header is refused.
	var csrf int
	run("csrf", 10*time.Second, eval(`fetch("/v1/queries", {method: "POST", credentials: "same-origin", body: '{"spec":{"sql":"SELECT COUNT(*) FROM patients"}}'}).then(r => r.status)`, &csrf))
	if csrf != http.StatusForbidden {
		t.Errorf("POST with the session cookie and no X-Fedstat header: %d, want 403", csrf)
	}

	// Build and run weekly cases by region with the form builder.
	const wantSQL = "SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = '840539006' AND onset_date BETWEEN '2021-11-01' AND '2022-02-28' GROUP BY week, region"
	var sql string
	run("form builder", 20*time.Second,
		setValue("#sql", ""),
		setValue("#fb-kind", "weekly"),
		setValue("#fb-code", "840539006"),
		setValue("#fb-from", "2021-11-01"),
		setValue("#fb-to", "2022-02-28"),
		chromedp.Click("#fb-generate", chromedp.ByQuery),
		chromedp.Value("#sql", &sql, chromedp.ByQuery))
	if sql != wantSQL {
		t.Fatalf("form builder wrote\n%s\nwant\n%s", sql, wantSQL)
	}
	qStart := time.Now()
	var id string
	var bands, lines int
	run("run query", 60*time.Second,
		chromedp.Click("#run", chromedp.ByQuery),
		chromedp.WaitVisible(`#chart svg[data-kind="timeseries"] path.band`, chromedp.ByQuery),
		chromedp.AttributeValue("#result", "data-query-id", &id, nil, chromedp.ByQuery),
		eval(`document.querySelectorAll("#chart path.band").length`, &bands),
		eval(`document.querySelectorAll("#chart path.line").length`, &lines))
	t.Logf("query %s done in the browser in %v: %d bands, %d lines", id, time.Since(qStart).Round(time.Millisecond), bands, lines)
	if id == "" || bands == 0 || lines == 0 {
		t.Fatalf("chart: query id %q, %d bands, %d lines", id, bands, lines)
	}
	var answered int
	run("progress", 5*time.Second, eval(`document.querySelectorAll('#progress-nodes tr[data-status="decrypted"], #progress-nodes tr[data-status="answered"]').length`, &answered))
	if answered != 3 {
		t.Errorf("progress shows %d nodes answered, want 3", answered)
	}
	shot("query")

	// Download the CSV and compare it with the API's result, formatted as
	// `fedstat query --format csv` formats it.
	var gotCSV string
	run("download csv", 10*time.Second,
		chromedp.Click("#dl-csv", chromedp.ByQuery),
		eval(`window.fedstatLastDownload.text`, &gotCSV))
	hc, err := p.HTTPClient(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.Dial(client.Config{HTTPURL: p.Env["FEDSTAT_HTTP"], Token: analyst, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	st, err := api.Get(ctx, id)
	if err != nil {
		t.Fatalf("GET /v1/queries/%s: %v", id, err)
	}
	var want bytes.Buffer
	if err := client.Result(st.GetResult()).WriteCSV(&want); err != nil {
		t.Fatal(err)
	}
	if len(st.GetResult().GetRows()) == 0 {
		t.Fatal("the API's result has no rows")
	}
	if gotCSV != want.String() {
		t.Fatalf("dashboard CSV differs from the API's result:\n--- dashboard\n%s\n--- API\n%s", gotCSV, want.String())
	}
	// The browser saved the same bytes as a file.
	file := filepath.Join(downloads, id+".csv")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err == nil && string(b) == want.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("downloaded %s: %v (%d bytes), want the API's CSV", file, err, len(b))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The same question again is answered from that release, and says so.
	var reused string
	run("same question", 30*time.Second,
		chromedp.Click("#run", chromedp.ByQuery),
		chromedp.WaitVisible("#reused-from", chromedp.ByQuery),
		chromedp.Text("#reused-from", &reused, chromedp.ByQuery))
	if !strings.Contains(reused, id) || !strings.Contains(reused, "charged nothing") {
		t.Errorf("the same question again shows %q; want it answered from %s", reused, id)
	}

	// A parse error is shown at its line and column.
	var at string
	run("parse error", 20*time.Second,
		setValue("#sql", "SELECT COUNT(DISTINCT patient_id)\nFROM conditions WHERE cod = '840539006'"),
		chromedp.Click("#run", chromedp.ByQuery),
		chromedp.WaitVisible("#sql-error-at", chromedp.ByQuery),
		chromedp.Text("#sql-error-at", &at, chromedp.ByQuery))
	if !strings.Contains(at, "FROM conditions WHERE cod = '840539006'") || !strings.Contains(at, "^") {
		t.Errorf("parse error shown as %q", at)
	}
	shot("query-error")

	// Statistics: Kaplan-Meier by sex drawn as steps with their bands,
	// then a logistic regression as a table.
	kmStart := time.Now()
	var kmBands, kmSteps, kmRows int
	var medianRow string
	run("kaplan-meier", 60*time.Second, goTo("#/stats"),
		chromedp.WaitVisible("#st-method", chromedp.ByQuery),
		setValue("#st-method", "km"),
		setValue("#st-table", "survival"),
		setValue("#st-time", "time"),
		setValue("#st-status", "status"),
		setValue("#st-event", "2"),
		setValue("#st-width", "30"),
		setValue("#st-strata", "sex"),
		setValue("#st-epsilon", "10"),
		chromedp.Click("#st-run", chromedp.ByQuery),
		chromedp.WaitVisible(`#stats-chart svg[data-kind="km"] path.band`, chromedp.ByQuery),
		eval(`document.querySelectorAll("#stats-chart g.series path.band").length`, &kmBands),
		eval(`document.querySelectorAll("#stats-chart g.series path.step").length`, &kmSteps),
		eval(`document.querySelectorAll("#coef-table tbody tr").length`, &kmRows),
		chromedp.Text(`#coef-table tr[data-term="km.median.sex=2"]`, &medianRow, chromedp.ByQuery))
	t.Logf("Kaplan-Meier in the browser in %v: %d bands, %d step lines; %s", time.Since(kmStart).Round(time.Millisecond), kmBands, kmSteps, medianRow)
	if kmBands != 2 || kmSteps != 2 || kmRows != 4 {
		t.Errorf("Kaplan-Meier by sex: %d bands, %d step lines, %d table rows; want 2, 2 and 4 (median and at risk per stratum)", kmBands, kmSteps, kmRows)
	}
	shot("statistics")
	var kmCSV string
	var kmQueries []string
	run("download km csv", 10*time.Second,
		chromedp.Click("#stats-dl-csv", chromedp.ByQuery),
		eval(`window.fedstatLastDownload.text`, &kmCSV),
		eval(`window.fedstatLastStats.queries`, &kmQueries))
	if !strings.HasPrefix(kmCSV, "statistic,value,se,ci_low,ci_high\nkm.median.sex=1,") || !strings.Contains(kmCSV, "\nkm.survival.sex=2.t=") || len(kmQueries) != 1 {
		t.Errorf("Kaplan-Meier CSV (queries %v):\n%s", kmQueries, kmCSV)
	}
	logitStart := time.Now()
	var terms []string
	run("logistic regression", 90*time.Second,
		setValue("#st-method", "logit"),
		setValue("#st-outcome", "status = 2"),
		setValue(`#st-terms select[data-term="age"]`, "x"),
		setValue(`#st-terms select[data-term="sex"]`, "factor"),
		setValue("#st-epsilon", "100"),
		chromedp.Click("#st-run", chromedp.ByQuery),
		chromedp.WaitVisible(`#stats-result[data-method="logit"] #coef-table tbody tr`, chromedp.ByQuery),
		eval(`[...document.querySelectorAll("#coef-table tbody tr")].map(r => r.dataset.term)`, &terms))
	t.Logf("logistic regression in the browser in %v: %v", time.Since(logitStart).Round(time.Millisecond), terms)
	if strings.Join(terms, " ") != "logit.intercept logit.age logit.sex2" {
		t.Errorf("logistic regression table rows %v, want logit.intercept, logit.age, logit.sex2", terms)
	}
	shot("statistics-regression")

	// A standing series: registered through the API (as the dashboard's
	// fetch would), released at once (its weeks are long over), then its
	// page: the chart with bands and the forecast fan, the periods, the
	// budget.
	var created string
	run("create series", 20*time.Second, goTo("#/series"), chromedp.WaitVisible("main .card", chromedp.ByQuery),
		eval(`fetch("/v1/series", {method: "POST", credentials: "same-origin", headers: {"X-Fedstat": "1", "Content-Type": "application/json"},
			body: JSON.stringify({spec: {name: "dm-weekly", table: "conditions", where: "code = '44054006'", date_column: "onset_date",
			every: "week", start: "2019-01-07", periods: 8, epsilon: 4}})}).then(r => r.text())`, &created))
	if !strings.Contains(created, `"dm-weekly"`) {
		t.Fatalf("POST /v1/series from the dashboard: %s", created)
	}
	for i := 0; ; i++ {
		var done bool
		run("series released", 10*time.Second, eval(`fetch("/v1/series/dm-weekly", {credentials: "same-origin"}).then(r => r.json()).then(s => s.released === 8)`, &done))
		if done {
			break
		}
		if i == 120 {
			t.Fatal("the series did not release its 8 weeks in 2 minutes")
		}
		time.Sleep(time.Second)
	}
	var periods, fanRows int
	run("series page", 30*time.Second,
		goTo("#/series/dm-weekly"),
		chromedp.WaitVisible(`#series svg[data-kind="timeseries"] path.band`, chromedp.ByQuery),
		eval(`document.querySelectorAll("#series-periods tbody tr").length`, &periods),
		eval(`document.querySelectorAll('#series g.series[data-series$="(forecast)"] path.band').length`, &fanRows))
	if periods != 8 || fanRows != 1 {
		t.Errorf("series page: %d period rows, %d forecast fans; want 8 and 1", periods, fanRows)
	}
	shot("series")

	// The other pages.
	var nodes int
	run("network", 20*time.Second, goTo("#/network"),
		chromedp.WaitVisible("#nodes tbody tr", chromedp.ByQuery),
		eval(`document.querySelectorAll("#nodes tbody tr").length`, &nodes))
	if nodes != 3 {
		t.Errorf("network page shows %d nodes, want 3", nodes)
	}
	shot("network")
	run("budget", 20*time.Second, goTo("#/budget"), chromedp.WaitVisible("#budget tbody tr", chromedp.ByQuery))
	shot("budget")
	run("approvals", 20*time.Second, goTo("#/approvals"), chromedp.WaitVisible("#approvals", chromedp.ByQuery))
	shot("approvals")

	// The analyst loads the network certificate and key into the query
	// page, which then signs the query in the browser: the coordinator runs
	// it under the id derived from the signature, the nodes (which check
	// any signature sent) release it, and the signature sent verifies as
	// the analyst's for this coordinator.
	var sessionCoordinator string
	run("the session names the coordinator", 5*time.Second,
		eval(`fetch("/v1/session", {credentials: "same-origin", headers: {"X-Fedstat": "1"}}).then(r => r.json()).then(j => j.coordinator || "")`, &sessionCoordinator))
	if sessionCoordinator != "coordinator" {
		t.Errorf("GET /v1/session names the coordinator %q, want %q (the name a signature is bound to)", sessionCoordinator, "coordinator")
	}
	var signState, signedID string
	run("load the analyst's key", 20*time.Second, goTo("#/query"),
		chromedp.WaitReady("#sign-cert", chromedp.ByQuery),
		eval(`document.getElementById("signing").open = true; true`, nil),
		chromedp.SetUploadFiles("#sign-cert", []string{p.Env["FEDSTAT_CERT"]}, chromedp.ByQuery),
		chromedp.SetUploadFiles("#sign-key", []string{p.Env["FEDSTAT_KEY"]}, chromedp.ByQuery),
		chromedp.Poll(`document.getElementById("sign-state").textContent.includes("signed with")`, nil),
		chromedp.Text("#sign-state", &signState, chromedp.ByQuery))
	run("run a signed query", 60*time.Second,
		eval(`window.__posted = []; const f0 = window.fetch; window.fetch = (u, o) => { if (o && o.method === "POST" && String(u).endsWith("/v1/queries")) window.__posted.push(o.body); return f0(u, o); }; true`, nil),
		setValue("#sql", "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '44054006'"),
		setValue("#epsilon", "0.5"),
		chromedp.Click("#run", chromedp.ByQuery),
		chromedp.Poll(`location.hash.startsWith("#/query/q-")`, nil),
		eval(`decodeURIComponent(location.hash.split("/")[2])`, &signedID))
	var posted string
	run("the signed request", 5*time.Second, eval(`window.__posted[0] || ""`, &posted))
	var req struct {
		Sig json.RawMessage `json:"analyst_signature"`
	}
	if err := json.Unmarshal([]byte(posted), &req); err != nil || len(req.Sig) == 0 {
		t.Fatalf("the dashboard sent no analyst signature (%s): %q", signState, posted)
	}
	var sig typesv1.AnalystSignature
	if err := protojson.Unmarshal(req.Sig, &sig); err != nil {
		t.Fatal(err)
	}
	caCert, err := pki.LoadCert(p.Env["FEDSTAT_CA"])
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signedquery.Open(caCert, &sig, "coordinator", time.Now(), time.Minute)
	if err != nil {
		t.Fatalf("the dashboard's signature does not verify: %v", err)
	}
	if signed.Name != "analyst" || signed.QueryID != signedID || signed.Spec.GetEpsilon() != 0.5 {
		t.Fatalf("signed by %q for query %s (epsilon %v); the dashboard ran %s", signed.Name, signed.QueryID, signed.Spec.GetEpsilon(), signedID)
	}
	waitDone := time.Now().Add(time.Minute)
	for {
		code, body := a.do(t, analyst, "GET", "/v1/queries/"+signedID)
		if code == http.StatusOK && strings.Contains(string(body), "STATE_DONE") {
			break
		}
		if code != http.StatusOK || strings.Contains(string(body), "STATE_FAILED") || time.Now().After(waitDone) {
			t.Fatalf("the signed query %s: %d %s", signedID, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// With the key still loaded, the statistics page signs the analysis
	// once: the coordinator runs its round under the id derived from the
	// signature, and every node recomputed the round from it.
	var statsPosted string
	var statsQueries []string
	run("a signed analysis", 90*time.Second, goTo("#/stats"),
		chromedp.WaitVisible("#st-method", chromedp.ByQuery),
		eval(`window.__statsPosted = []; const f1 = window.fetch; window.fetch = (u, o) => { if (o && o.method === "POST" && String(u).includes("/v1/stats/")) window.__statsPosted.push(o.body); return f1(u, o); }; true`, nil),
		setValue("#st-method", "linreg"),
		setValue("#st-table", "survival"),
		setValue("#st-outcome-col", "time"),
		setValue(`#st-terms select[data-term="age"]`, "x"),
		setValue(`#st-terms select[data-term="sex"]`, "factor"),
		setValue("#st-epsilon", "20"),
		chromedp.Click("#st-run", chromedp.ByQuery),
		chromedp.WaitVisible(`#stats-result[data-method="linreg"] #coef-table tbody tr`, chromedp.ByQuery),
		eval(`window.__statsPosted[0] || ""`, &statsPosted),
		eval(`window.fedstatLastStats.queries`, &statsQueries))
	var statsReq struct {
		Sig json.RawMessage `json:"analyst_signature"`
	}
	if err := json.Unmarshal([]byte(statsPosted), &statsReq); err != nil || len(statsReq.Sig) == 0 {
		t.Fatalf("the dashboard sent no signature with the analysis: %q", statsPosted)
	}
	var asig typesv1.AnalystSignature
	if err := protojson.Unmarshal(statsReq.Sig, &asig); err != nil {
		t.Fatal(err)
	}
	analysis, err := signedquery.OpenAnalysis(caCert, &asig, "coordinator", time.Now(), time.Minute)
	if err != nil {
		t.Fatalf("the dashboard's signature of the analysis does not verify: %v", err)
	}
	if analysis.Name != "analyst" || analysis.Spec.GetMethod() != "linreg" || analysis.Spec.GetEpsilon() != 20 ||
		strings.Join(analysis.Spec.GetCovariates(), ",") != "age" || strings.Join(analysis.Spec.GetFactors(), ",") != "sex" ||
		len(statsQueries) != 1 || statsQueries[0] != signedquery.AnalysisQueryID(&asig, 1) {
		t.Fatalf("the dashboard signed %v for %q and ran queries %v", analysis.Spec, analysis.Name, statsQueries)
	}

	// The analyst is refused the operator's audit page, and gets no entry.
	var refused string
	var rows int
	run("audit refused", 20*time.Second, goTo("#/audit"),
		chromedp.WaitVisible("#refused", chromedp.ByQuery),
		chromedp.Text("#refused", &refused, chromedp.ByQuery),
		eval(`document.querySelectorAll("#audit tbody tr").length`, &rows))
	if !strings.Contains(refused, "403") || rows != 0 {
		t.Errorf("analyst on the audit page: %q, %d rows", refused, rows)
	}
	shot("audit-refused")

	// An operator sees the audit trail, with this query in it.
	var trail string
	run("operator audit", 30*time.Second,
		chromedp.Click("#signout", chromedp.ByQuery),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", operator, chromedp.ByQuery),
		chromedp.Click("#signin-btn", chromedp.ByQuery),
		chromedp.WaitVisible("#fb-kind", chromedp.ByQuery),
		goTo("#/audit"),
		chromedp.WaitVisible("#audit tbody tr", chromedp.ByQuery),
		chromedp.Text("#audit", &trail, chromedp.ByQuery))
	for _, q := range append([]string{id}, kmQueries...) {
		if !strings.Contains(trail, q) {
			t.Errorf("operator's audit trail does not mention query %s", q)
		}
	}
	shot("audit")
	t.Logf("dashboard test took %v", time.Since(start).Round(time.Millisecond))
}
