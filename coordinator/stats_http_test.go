package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node"
)

type statsEstimate struct {
	Name    string   `json:"name"`
	Value   *float64 `json:"value"`
	SE      *float64 `json:"se"`
	CILow   *float64 `json:"ci_low"`
	CIHigh  *float64 `json:"ci_high"`
	NoiseSE *float64 `json:"noise_se"`
}

type statsResponse struct {
	Method    string          `json:"method"`
	Reference string          `json:"reference_date"`
	Queries   []string        `json:"queries"`
	Estimates []statsEstimate `json:"estimates"`
	Curves    []struct {
		Stratum  string        `json:"stratum"`
		Times    []float64     `json:"times"`
		Survival []float64     `json:"survival"`
		Lower    []float64     `json:"lower"`
		Upper    []float64     `json:"upper"`
		AtRisk   float64       `json:"at_risk"`
		Median   statsEstimate `json:"median"`
	} `json:"curves"`
}

// TestStatsHTTP runs Kaplan-Meier, logistic and linear regression through
// POST /v1/stats/{method} on an in-process network whose three nodes hold
// a synthetic survival study, and checks the answers' shape, that every
// round is an ordinary query of the caller, and the refusals.
func TestStatsHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	homomorphic.AllowInsecureForTests()
	start := time.Now()
	schema, err := cdm.ParseStudySchema(demo.SurvivalSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data := []*cdm.Records{{}, {}, {}}
	// The analyses' vectors run to hundreds of slots (Cox: 666), whose
	// range proofs take a node tens of seconds under the race detector:
	// this test is about the statistics, and runs without them
	// (demo.Options.SkipRangeProofs; the proofs are under test in
	// crypto/rangeproof and test/e2e, e.g. TestAnalystSignedAnalysis).
	nw, err := demo.Start(ctx, demo.Options{Data: data, Studies: []cdm.StudySchema{*schema}, Params: homomorphic.InsecureTestSet,
		Budget: node.Budget{TotalRho: 1e4, PerAnalystRho: 1e4}, SkipRangeProofs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	if err := nw.ImportSurvival(200); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(testTokens(t, map[string]string{"ann": "researcher"})))
	defer srv.Close()
	t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))

	call := func(token, method, path, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	// The study's public schema, without CSV headers or the id column.
	code, body := call("tok-ann", "GET", "/v1/studies", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"name":"survival"`) || !strings.Contains(string(body), `"name":"age","type":"int","min":39,"max":82`) {
		t.Fatalf("GET /v1/studies: %d %s", code, body)
	}
	if bytes.Contains(body, []byte(`"csv"`)) || bytes.Contains(body, []byte(`"id"`)) {
		t.Errorf("GET /v1/studies sends more than the public schema: %s", body)
	}

	// Refusals, before any query is run.
	for _, c := range []struct {
		token, path, body string
		want              int
	}{
		{"", "/v1/stats/km", `{"table": "survival"}`, http.StatusUnauthorized},
		{"tok-ann", "/v1/stats/anova", `{"table": "survival"}`, http.StatusNotFound},
		{"tok-ann", "/v1/stats/km", `{"table": "patients"}`, http.StatusBadRequest},
		{"tok-ann", "/v1/stats/km", `{"table": "survival", "bogus": 1}`, http.StatusBadRequest},
		{"tok-ann", "/v1/stats/logit", `{"table": "survival", "outcome": "status = 2", "covariates": ["nope"]}`, http.StatusBadRequest},
		{"tok-ann", "/v1/stats/logit", `{"table": "survival", "outcome": "status = 2", "covariates": ["age"], "rounds": 99}`, http.StatusBadRequest},
	} {
		if code, body := call(c.token, "POST", c.path, c.body); code != c.want {
			t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, code, body, c.want)
		}
	}

	run := func(method, body string) statsResponse {
		t.Helper()
		t0 := time.Now()
		code, b := call("tok-ann", "POST", "/v1/stats/"+method, body)
		if code != http.StatusOK {
			t.Fatalf("POST /v1/stats/%s: %d %s", method, code, b)
		}
		var r statsResponse
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d queries in %v", method, len(r.Queries), time.Since(t0).Round(time.Millisecond))
		return r
	}

	km := run("km", `{"table": "survival", "time": "time", "status": "status", "event": "2", "width": 30, "strata": "sex", "epsilon": 20}`)
	if len(km.Queries) != 1 || len(km.Curves) != 2 {
		t.Fatalf("km: %d queries, %d curves", len(km.Queries), len(km.Curves))
	}
	medians := map[string]float64{}
	for _, c := range km.Curves {
		if len(c.Times) < 5 || len(c.Survival) != len(c.Times) || len(c.Lower) != len(c.Times) || len(c.Upper) != len(c.Times) {
			t.Fatalf("km stratum %s: %d times, %d survival, %d lower, %d upper", c.Stratum, len(c.Times), len(c.Survival), len(c.Lower), len(c.Upper))
		}
		for i := range c.Times {
			if i > 0 && (c.Times[i] <= c.Times[i-1] || c.Survival[i] > c.Survival[i-1]+1e-12) {
				t.Errorf("km stratum %s: not a step curve at %d", c.Stratum, i)
			}
			if !(c.Lower[i] <= c.Survival[i] && c.Survival[i] <= c.Upper[i]) {
				t.Errorf("km stratum %s at t=%g: %g not in [%g, %g]", c.Stratum, c.Times[i], c.Survival[i], c.Lower[i], c.Upper[i])
			}
		}
		if c.Median.Value == nil || c.Median.CILow == nil || c.Median.CIHigh == nil {
			t.Fatalf("km stratum %s: median %+v", c.Stratum, c.Median)
		}
		medians[c.Stratum] = *c.Median.Value
		t.Logf("km median sex=%s: %g [%g, %g], at risk %g", c.Stratum, *c.Median.Value, *c.Median.CILow, *c.Median.CIHigh, c.AtRisk)
	}
	// Synthetic medians 270 and 430 at age 62 (the mean age); 300 rows per sex.
	if !(medians["1"] > 150 && medians["1"] < 400 && medians["2"] > medians["1"]) {
		t.Errorf("km medians %v: want sex=1 about 270 and sex=2 longer", medians)
	}

	logit := run("logit", `{"table": "survival", "outcome": "status = 2", "covariates": ["age"], "factors": ["sex"], "epsilon": 200}`)
	names := []string{}
	for _, e := range logit.Estimates {
		names = append(names, e.Name)
		if e.Value == nil || e.SE == nil || e.CILow == nil || e.CIHigh == nil || e.NoiseSE == nil || !(*e.CILow < *e.Value && *e.Value < *e.CIHigh) {
			t.Errorf("logit %s: %+v", e.Name, e)
		}
	}
	if strings.Join(names, " ") != "logit.intercept logit.age logit.sex2" || len(logit.Queries) != 6 {
		t.Errorf("logit: estimates %v from %d queries, want intercept, age, sex2 from 6", names, len(logit.Queries))
	}

	lin := run("linreg", `{"table": "survival", "outcome": "time", "covariates": ["age"], "factors": ["sex"], "epsilon": 20}`)
	if len(lin.Estimates) != 3 || lin.Estimates[2].Name != "linreg.sex2" || lin.Estimates[2].Value == nil || !(*lin.Estimates[2].Value > 0) {
		t.Errorf("linreg: %+v", lin.Estimates)
	}

	cox := run("cox", `{"table": "survival", "time": "time", "status": "status", "event": "2", "width": 30, "covariates": ["age"], "factors": ["sex"], "epsilon": 1000}`)
	if len(cox.Estimates) != 2 || cox.Estimates[1].Name != "cox.sex2" || cox.Estimates[1].Value == nil || !(*cox.Estimates[1].Value < 0) || len(cox.Queries) != 5 {
		t.Errorf("cox (%d queries): %+v", len(cox.Queries), cox.Estimates)
	} else {
		t.Logf("cox: age %g, sex2 %g (synthetic: 0.02 and log(270/430) = -0.47)", *cox.Estimates[0].Value, *cox.Estimates[1].Value)
	}

	// Every round was an ordinary query of the caller.
	code, body = call("tok-ann", "GET", "/v1/queries?limit=100", "")
	for _, id := range append(append(append(km.Queries, logit.Queries...), lin.Queries...), cox.Queries...) {
		if !strings.Contains(string(body), id) {
			t.Errorf("query %s of the analyses is not in the caller's history", id)
		}
	}
	if !strings.Contains(string(body), `"analyst":"ann"`) {
		t.Errorf("history: %d %s", code, body)
	}
	// The rounds of an analysis share one reference date, the response's.
	if _, err := time.Parse("2006-01-02", logit.Reference); err != nil {
		t.Errorf("logit reference_date %q: %v", logit.Reference, err)
	}
	for _, id := range logit.Queries {
		if code, body := call("tok-ann", "GET", "/v1/queries/"+id, ""); code != http.StatusOK || !strings.Contains(string(body), `"reference_date":"`+logit.Reference+`"`) {
			t.Errorf("query %s of the logistic regression: %d, want reference date %s: %s", id, code, logit.Reference, body)
		}
	}

	// The budget cannot buy a useful curve at a tiny epsilon: refused (412).
	code, body = call("tok-ann", "POST", "/v1/stats/km", `{"table": "survival", "time": "time", "status": "status", "event": "2", "epsilon": 0.01}`)
	if code != http.StatusPreconditionFailed || !strings.Contains(string(body), "budget") {
		t.Errorf("km at epsilon 0.01: %d %s, want 412 (budget)", code, body)
	}
	if math.IsNaN(medians["1"]) {
		t.Error("NaN median")
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}
