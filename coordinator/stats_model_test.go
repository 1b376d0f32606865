package coordinator_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/test/stattest"
)

// TestStatsModelRules runs the shared model cases (stattest.ModelCases,
// which the command line's TestStatsModelRules runs too) through POST
// /v1/stats/{method}: a refused model is a 400 naming the rule, before any
// query; an accepted one goes on to submit its first round (here refused
// with 412: this coordinator has no key epoch).
func TestStatsModelRules(t *testing.T) {
	sc, err := cdm.ParseStudySchema(stattest.ModelSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	h := coordinator.NewOffline(&plan.Catalogue{Studies: []cdm.StudySchema{*sc}}).HTTPHandler(testTokens(t, map[string]string{"ann": "researcher"}))
	for _, c := range stattest.ModelCases {
		body := map[string]any{"table": sc.Name, "outcome": c.Outcome, "covariates": c.Covariates, "factors": c.Factors, "rounds": c.Rounds,
			"time": "time", "status": "status", "event": "2"}
		b, _ := json.Marshal(body)
		r := httptest.NewRequest("POST", "/v1/stats/"+c.Method, strings.NewReader(string(b)))
		r.Header.Set("Authorization", "Bearer tok-ann")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case c.Refused != "" && (w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.Refused)):
			t.Errorf("%s: %d %s, want 400 (%s)", c.Name, w.Code, w.Body, c.Refused)
		case c.Refused == "" && (w.Code != http.StatusPreconditionFailed || !strings.Contains(w.Body.String(), "no key epoch")):
			t.Errorf("%s: %d %s, want the model accepted and its first round submitted", c.Name, w.Code, w.Body)
		}
	}
}
