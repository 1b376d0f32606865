package coordinator

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
)

const refuseSchema = `name = "trial"
unit = "row"
[[columns]]
name = "age"
type = "int"
min = 18
max = 90
[[columns]]
name = "arm"
type = "string"
values = ["a", "b"]
[[columns]]
name = "grade"
type = "int"
min = 0
max = 100
[[columns]]
name = "visit"
type = "date"
`

// TestStatsRefusals checks, without a network, the requests POST
// /v1/stats/{method} refuses before any query runs (nothing is submitted:
// the coordinator here has no key epoch), and that only analyst roles may
// use the statistics and catalogue routes.
func TestStatsRefusals(t *testing.T) {
	sc, err := cdm.ParseStudySchema(refuseSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	toks := `[{"name": "ann", "role": "researcher", "sha256": "` + HashToken("tok-ann") + `"},
		{"name": "n1", "role": "node", "sha256": "` + HashToken("tok-node") + `"}]`
	if err := os.WriteFile(path, []byte(toks), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{cfg: Config{Catalogue: &plan.Catalogue{Studies: []cdm.StudySchema{*sc}}, Now: time.Now}}
	h := c.HTTPHandler(tokens)
	do := func(token, method, target, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// A node's token is refused every analyst route.
	for _, rt := range []struct{ method, path, body string }{
		{"POST", "/v1/stats/km", `{"table": "trial"}`},
		{"GET", "/v1/studies", ""},
		{"GET", "/v1/catalogue", ""},
	} {
		if w := do("tok-node", rt.method, rt.path, rt.body); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "trial") {
			t.Errorf("node %s %s: %d %s, want 403 and nothing of the catalogue", rt.method, rt.path, w.Code, w.Body)
		}
	}
	// The studies list each categorical column's levels as a factor.
	w := do("tok-ann", "GET", "/v1/studies", "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"name":"trial"`) ||
		!strings.Contains(w.Body.String(), `"values":["a","b"],"levels":["a","b"]`) || !strings.Contains(w.Body.String(), `"min":18,"max":90,"levels":["18","19",`) ||
		strings.Contains(w.Body.String(), `"type":"date","levels"`) {
		t.Errorf("researcher GET /v1/studies: %d %s", w.Code, w.Body)
	}

	many := `"age"` + strings.Repeat(`, "age"`, stats.MaxTerms)
	for _, c := range []struct{ path, body, want string }{
		{"/v1/stats/logit", `{"table": "trial", "outcome": "arm = 'b'", "covariates": ["age", "age"]}`, "twice"},
		{"/v1/stats/logit", `{"table": "trial", "outcome": "arm = 'b'", "covariates": ["age"], "factors": ["age"]}`, "twice"},
		{"/v1/stats/linreg", `{"table": "trial", "outcome": "age", "covariates": ["age"]}`, "twice"},
		{"/v1/stats/linreg", `{"table": "trial", "covariates": ["age"]}`, "outcome"},
		{"/v1/stats/logit", `{"table": "trial", "outcome": "arm = 'b'", "factors": ["grade"]}`, "at most"},
		{"/v1/stats/logit", `{"table": "trial", "outcome": "arm = 'b'", "covariates": [` + many + `]}`, "at most"},
		{"/v1/stats/cox", `{"table": "trial", "covariates": ["arm"]}`, "not a number column"},
		{"/v1/stats/cox", `{"table": "trial", "factors": ["visit"]}`, "factor"},
		{"/v1/stats/km", `{"table": "trial", "reference_date": "yesterday"}`, "reference_date"},
	} {
		w := do("tok-ann", "POST", c.path, c.body)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("POST %s %s: %d %s, want 400 (%s)", c.path, c.body, w.Code, w.Body, c.want)
		}
	}
}
