package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestAnalystSignedQueriesProcesses: with every node's policy
// require_analyst_signature, the built binary's `fedstat query` (gRPC with
// the analyst's certificate) signs its query, which is released by all
// three node processes under the id derived from the signature; a query
// submitted over the HTTP/JSON API with a bearer token (unsigned) is
// refused by every node, the failure naming the policy.
func TestAnalystSignedQueriesProcesses(t *testing.T) {
	data, err := demo.Synthetic(3, 300, 11)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := serve(t, ctx, demo.ServeOptions{Data: data, Threshold: 2, MinNodes: 2, SignatureNodes: []int{0, 1, 2}})

	_, stderr := cliQueryJSON(t, p, 3, demo.CohortQuery)
	if !regexp.MustCompile(`query q-[0-9a-f]{32}: 3 nodes answered`).MatchString(stderr) {
		t.Errorf("the CLI's query did not run under a signature's id: %s", stderr)
	}
	for id, rho := range budgets(t, p) {
		if rho <= 0 {
			t.Errorf("%s charged nothing for the signed query", id)
		}
	}

	qid := submit(t, p, demo.CohortQuery, 2, 20*time.Second)
	st := waitQuery(t, p, qid)
	if st.GetState() != coordinatorv1.State_STATE_FAILED || !strings.Contains(st.GetError(), "require_analyst_signature") {
		t.Fatalf("an unsigned query over HTTP/JSON at nodes that require signatures: %s %s", st.GetState(), st.GetError())
	}
}
