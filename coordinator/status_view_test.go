package coordinator_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestNodeTimingsOperatorOnly (issue 13, item 2): how long each node took
// depends on its data size, so an analyst's view of a query (gRPC Submit,
// Watch, Get, List; HTTP the same) carries no per-node elapsed time, and
// while partials are collected no node's progress either (a Watch stream
// would time it); an operator's view has the timings.
func TestNodeTimingsOperatorOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	homomorphic.AllowInsecureForTests()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(2, 200, 5)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	analyst, closeA, err := nw.Client(nw.Analyst)
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	operator, closeO, err := nw.Client(nw.Operator)
	if err != nil {
		t.Fatal(err)
	}
	defer closeO()

	noTimings := func(where string, st *coordinatorv1.QueryStatus) {
		t.Helper()
		for _, n := range st.GetNodes() {
			if n.GetElapsedMs() != 0 {
				t.Errorf("%s: the analyst sees %s's elapsed time %v ms", where, n.GetNodeId(), n.GetElapsedMs())
			}
			if (st.GetState() == coordinatorv1.State_STATE_PLANNED || st.GetState() == coordinatorv1.State_STATE_COLLECTING) &&
				(n.GetStatus() != "waiting" || n.GetUploadBytes() != 0) {
				t.Errorf("%s: while collecting, the analyst sees %s as %q (%d bytes)", where, n.GetNodeId(), n.GetStatus(), n.GetUploadBytes())
			}
		}
	}
	timings := func(where string, st *coordinatorv1.QueryStatus) {
		t.Helper()
		for _, n := range st.GetNodes() {
			if n.GetStatus() != "answered" && n.GetStatus() != "decrypted" || n.GetElapsedMs() <= 0 {
				t.Errorf("%s: the operator sees %s as %q with elapsed %v ms, want its time", where, n.GetNodeId(), n.GetStatus(), n.GetElapsedMs())
			}
		}
	}

	// gRPC: Submit and Watch as the analyst.
	sub, err := analyst.Submit(ctx, &coordinatorv1.SubmitRequest{Spec: &typesv1.QuerySpec{Sql: demo.CohortQuery}})
	if err != nil {
		t.Fatal(err)
	}
	noTimings("gRPC Submit", sub)
	qid := sub.GetQueryId()
	stream, err := analyst.Watch(ctx, &coordinatorv1.GetRequest{QueryId: qid})
	if err != nil {
		t.Fatal(err)
	}
	var last *coordinatorv1.QueryStatus
	for {
		st, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		noTimings("gRPC Watch", st)
		last = st
	}
	if last.GetState() != coordinatorv1.State_STATE_DONE {
		t.Fatalf("query ended %v: %s", last.GetState(), last.GetError())
	}
	for _, n := range last.GetNodes() {
		if n.GetStatus() == "waiting" {
			t.Errorf("gRPC Watch: after the release the analyst still sees %s waiting", n.GetNodeId())
		}
	}
	st, err := analyst.Get(ctx, &coordinatorv1.GetRequest{QueryId: qid})
	if err != nil {
		t.Fatal(err)
	}
	noTimings("gRPC Get", st)
	list, err := analyst.List(ctx, &coordinatorv1.ListRequest{})
	if err != nil || len(list.GetQueries()) != 1 {
		t.Fatalf("gRPC List: %v %v", list, err)
	}
	noTimings("gRPC List", list.GetQueries()[0])

	// gRPC as the operator: the timings are there.
	if st, err = operator.Get(ctx, &coordinatorv1.GetRequest{QueryId: qid}); err != nil {
		t.Fatal(err)
	}
	timings("gRPC Get", st)
	if list, err = operator.List(ctx, &coordinatorv1.ListRequest{}); err != nil || len(list.GetQueries()) != 1 {
		t.Fatalf("gRPC List as operator: %v %v", list, err)
	}
	timings("gRPC List", list.GetQueries()[0])
	ostream, err := operator.Watch(ctx, &coordinatorv1.GetRequest{QueryId: qid})
	if err != nil {
		t.Fatal(err)
	}
	if st, err = ostream.Recv(); err != nil {
		t.Fatal(err)
	}
	timings("gRPC Watch", st)

	// HTTP/JSON: the analyst (the same name as the certificate) and an
	// operator, with bearer tokens.
	dir := t.TempDir()
	tokPath := filepath.Join(dir, "tokens.json")
	toks := `[{"name": "analyst", "role": "analyst", "sha256": "` + coordinator.HashToken("tok-analyst") + `"},
	{"name": "olga", "role": "operator", "sha256": "` + coordinator.HashToken("tok-olga") + `"}]`
	if err := os.WriteFile(tokPath, []byte(toks), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := coordinator.LoadTokens(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(tokens))
	defer srv.Close()
	call := func(token, method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	// nodesJSON returns the raw JSON of each node's progress in one status.
	nodesJSON := func(b []byte) []map[string]any {
		t.Helper()
		var v struct {
			Nodes []map[string]any `json:"nodes"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		return v.Nodes
	}
	status := func(where string, b []byte) *coordinatorv1.QueryStatus {
		t.Helper()
		var st coordinatorv1.QueryStatus
		if err := protojson.Unmarshal(b, &st); err != nil {
			t.Fatalf("%s: %v: %s", where, err, b)
		}
		return &st
	}
	analystHTTP := func(where string, b []byte) {
		t.Helper()
		for _, n := range nodesJSON(b) {
			if _, ok := n["elapsed_ms"]; ok {
				t.Errorf("%s: the analyst's JSON has a per-node elapsed_ms: %v", where, n)
			}
		}
		noTimings(where, status(where, b))
	}
	analystHTTP("HTTP GET", call("tok-analyst", "GET", "/v1/queries/"+qid, ""))
	for line := range strings.SplitSeq(strings.TrimSpace(string(call("tok-analyst", "GET", "/v1/queries/"+qid+"/watch", ""))), "\n") {
		analystHTTP("HTTP watch", []byte(line))
	}
	var hl struct {
		Queries []json.RawMessage `json:"queries"`
	}
	if err := json.Unmarshal(call("tok-analyst", "GET", "/v1/queries", ""), &hl); err != nil || len(hl.Queries) != 1 {
		t.Fatalf("HTTP list: %v %d", err, len(hl.Queries))
	}
	analystHTTP("HTTP list", hl.Queries[0])
	timings("HTTP GET as operator", status("HTTP GET as operator", call("tok-olga", "GET", "/v1/queries/"+qid, "")))

	// A query submitted over HTTP: the analyst's answer to the submit has
	// no timings either.
	analystHTTP("HTTP submit", call("tok-analyst", "POST", "/v1/queries", `{"spec": {"sql": "SELECT COUNT(*) FROM patients"}}`))
}

// TestStatusForKeepsTheOriginal: StatusFor does not modify the status it is
// given (the coordinator's own copy keeps every timing).
func TestStatusForKeepsTheOriginal(t *testing.T) {
	st := &coordinatorv1.QueryStatus{State: coordinatorv1.State_STATE_COLLECTING,
		Nodes: []*coordinatorv1.NodeProgress{{NodeId: "node-1", Status: "answered", ElapsedMs: 12.5, UploadBytes: 100}}}
	v := coordinator.StatusFor(rpc.Peer{Name: "ann", Role: pki.RoleAnalyst}, st)
	if n := v.GetNodes()[0]; n.GetElapsedMs() != 0 || n.GetStatus() != "waiting" || n.GetUploadBytes() != 0 {
		t.Errorf("analyst's view while collecting: %v", n)
	}
	if n := st.GetNodes()[0]; n.GetElapsedMs() != 12.5 || n.GetStatus() != "answered" {
		t.Errorf("StatusFor modified the original: %v", n)
	}
	if n := coordinator.StatusFor(rpc.Peer{Name: "olga", Role: pki.RoleOperator}, st).GetNodes()[0]; n.GetElapsedMs() != 12.5 {
		t.Errorf("operator's view: %v", n)
	}
}
