package coordinator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// swaggerDoc is the part of the OpenAPI document the tests read.
type swaggerDoc struct {
	Paths       map[string]map[string]swaggerOp `json:"paths"`
	Definitions map[string]swaggerSchema        `json:"definitions"`
}

type swaggerOp struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		Name   string         `json:"name"`
		In     string         `json:"in"`
		Schema *swaggerSchema `json:"schema"`
	} `json:"parameters"`
	Responses map[string]struct {
		Schema *swaggerSchema `json:"schema"`
	} `json:"responses"`
	// Security is nil when the operation has the document's (a bearer
	// token), empty when it needs none.
	Security *[]map[string][]string `json:"security"`
}

type swaggerSchema struct {
	Ref        string                     `json:"$ref"`
	Properties map[string]json.RawMessage `json:"properties"`
}

func readSwagger(t *testing.T, b []byte) swaggerDoc {
	t.Helper()
	var d swaggerDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func methodDesc(t *testing.T, rpc string) protoreflect.MethodDescriptor {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(rpc))
	if err != nil {
		t.Fatalf("%s: %v", rpc, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		t.Fatalf("%s is a %T, not an RPC", rpc, d)
	}
	return md
}

// definition is the name the document gives a message of this package.
func definition(m protoreflect.MessageDescriptor) string {
	return "#/definitions/v1" + string(m.Name())
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// TestOpenAPIDocumentMatchesRoutes checks that the HTTP handler's routes and
// the OpenAPI document's operations are the same set, and that each
// operation names its RPC's messages: the response is the RPC's output, the
// body its input (or, with path parameters, its other fields), and every
// path and query parameter a field of the input.
func TestOpenAPIDocumentMatchesRoutes(t *testing.T) {
	doc := readSwagger(t, coordinatorv1.OpenAPI())
	inDoc := map[string]swaggerOp{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			inDoc[strings.ToUpper(method)+" "+path] = op
		}
	}
	routes := coordinator.HTTPRoutes()
	if len(routes) != len(inDoc) {
		t.Errorf("the handler has %d routes, the OpenAPI document %d operations", len(routes), len(inDoc))
	}
	seen := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + r.Path
		seen[key] = true
		op, ok := inDoc[key]
		if !ok {
			t.Errorf("%s (%s) is served but not in the OpenAPI document", key, r.RPC)
			continue
		}
		md := methodDesc(t, r.RPC)
		if want := string(md.Parent().Name()) + "_" + string(md.Name()); op.OperationID != want {
			t.Errorf("%s: operation %s, the handler serves %s", key, op.OperationID, want)
		}
		if res, ok := op.Responses["200"]; !ok || res.Schema == nil || res.Schema.Ref != definition(md.Output()) {
			t.Errorf("%s: the 200 response is %+v, want %s", key, res.Schema, definition(md.Output()))
		}
		if _, ok := op.Responses["default"]; !ok {
			t.Errorf("%s: no default (error) response", key)
		}
		fields := md.Input().Fields()
		inPath := map[string]bool{}
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			inPath[m[1]] = true
			if fields.ByName(protoreflect.Name(m[1])) == nil {
				t.Errorf("%s: path parameter %s is not a field of %s", key, m[1], md.Input().FullName())
			}
		}
		for _, p := range op.Parameters {
			switch p.In {
			case "path", "query":
				if fields.ByName(protoreflect.Name(p.Name)) == nil {
					t.Errorf("%s: %s parameter %s is not a field of %s", key, p.In, p.Name, md.Input().FullName())
				}
				if p.In == "path" && !inPath[p.Name] {
					t.Errorf("%s: path parameter %s is not in the handler's path", key, p.Name)
				}
			case "body":
				if p.Schema.Ref == definition(md.Input()) {
					continue
				}
				// A body without the path parameters: an inline schema
				// with the input's other fields.
				body, ok := doc.Definitions[strings.TrimPrefix(p.Schema.Ref, "#/definitions/")]
				if !ok {
					t.Errorf("%s: body %s is not defined", key, p.Schema.Ref)
					continue
				}
				var want, got []string
				for i := range fields.Len() {
					if name := string(fields.Get(i).Name()); !inPath[name] {
						want = append(want, name)
					}
				}
				for name := range body.Properties {
					got = append(got, name)
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: body fields %v, want %s's %v", key, got, md.Input().FullName(), want)
				}
			}
		}
	}
	for key := range inDoc {
		if !seen[key] {
			t.Errorf("%s is in the OpenAPI document but not served", key)
		}
	}
}

// TestOpenAPIServed fetches the document without credentials and checks it
// is the embedded one, which is the generated file, and that it lists every
// route.
func TestOpenAPIServed(t *testing.T) {
	h := coordinator.NewOffline(nil).HTTPHandler(nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", coordinator.OpenAPIPath, nil))
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s", coordinator.OpenAPIPath, w.Code, w.Header().Get("Content-Type"))
	}
	if !bytes.Equal(w.Body.Bytes(), coordinatorv1.OpenAPI()) {
		t.Error("the served document is not the embedded one")
	}
	file, err := os.ReadFile("../proto/fedstat/coordinator/v1/coordinator.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, w.Body.Bytes()) {
		t.Error("the served document is not proto/fedstat/coordinator/v1/coordinator.swagger.json")
	}
	doc := readSwagger(t, w.Body.Bytes())
	for _, r := range coordinator.HTTPRoutes() {
		if _, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("the served document lacks %s %s", r.Method, r.Path)
		}
	}
}

// TestOpenAPISecurity checks the document's authentication against the
// handler: every route that the document says needs a token answers 401
// without one, and the two that need none (sign-in and sign-out) do not.
func TestOpenAPISecurity(t *testing.T) {
	doc := readSwagger(t, coordinatorv1.OpenAPI())
	h := coordinator.NewOffline(nil).HTTPHandler(nil)
	for _, r := range coordinator.HTTPRoutes() {
		op := doc.Paths[r.Path][strings.ToLower(r.Method)]
		path := pathParam.ReplaceAllString(r.Path, "x")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(r.Method, path, strings.NewReader("{}")))
		open := op.Security != nil && len(*op.Security) == 0
		if open == (w.Code == http.StatusUnauthorized) {
			t.Errorf("%s %s without credentials: %d, and the document says a token is needed: %v", r.Method, path, w.Code, !open)
		}
	}
}

// TestSubmitSpecHint: the commonest wrong body, the query's fields at the
// top level, is refused with a message that shows the right one; the right
// one is not refused for its shape.
func TestSubmitSpecHint(t *testing.T) {
	h := coordinator.NewOffline(nil).HTTPHandler(testTokens(t, map[string]string{"ann": "analyst"}))
	do := func(target, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", target, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer tok-ann")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, target := range []string{"/v1/queries", "/v1/explain"} {
		w := do(target, `{"sql": "SELECT COUNT(*) FROM patients", "epsilon": 1}`)
		var e coordinatorv1.ErrorResponse
		if err := protojson.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("POST %s: %v: %s", target, err, w.Body)
		}
		t.Logf("POST %s: %d %s", target, w.Code, w.Body)
		if w.Code != http.StatusBadRequest || e.GetCode() != "InvalidArgument" ||
			!strings.Contains(e.GetError(), `{"spec": {"sql": ...}}`) || !strings.Contains(e.GetError(), `["epsilon" "sql"]`) ||
			!strings.Contains(e.GetError(), coordinator.OpenAPIPath) {
			t.Errorf("POST %s with a top-level sql: %d %q", target, w.Code, e.GetError())
		}
		if w := do(target, `{"epsilon": 1}`); !strings.Contains(w.Body.String(), `{\"spec\": {\"epsilon\": ...}}`) {
			t.Errorf("POST %s with a top-level epsilon: %d %s", target, w.Code, w.Body)
		}
		// Another wrong body gets no hint.
		if w := do(target, `{"query": "x"}`); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "spec") {
			t.Errorf("POST %s {\"query\": ...}: %d %s", target, w.Code, w.Body)
		}
	}
	// The right body passes decoding: this coordinator has no key epoch.
	if w := do("/v1/queries", `{"spec": {"sql": "SELECT COUNT(*) FROM patients"}}`); w.Code != http.StatusPreconditionFailed || strings.Contains(w.Body.String(), "request body") {
		t.Errorf("POST /v1/queries with spec.sql: %d %s", w.Code, w.Body)
	}
}

// TestHTTPBodiesAreProtoMessages calls every route of the API on a small
// network and checks that each answer is the message the document names:
// a success body decodes strictly (no unknown field) as the RPC's output,
// an error as ErrorResponse; the watch stream is QueryStatus lines.
func TestHTTPBodiesAreProtoMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	homomorphic.AllowInsecureForTests()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, err := demo.Synthetic(2, 100, 3)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(testTokens(t, map[string]string{"ann": "analyst", "olga": "operator"})))
	defer srv.Close()

	rpcOf := map[string]string{}
	for _, r := range coordinator.HTTPRoutes() {
		rpcOf[r.Method+" "+r.Path] = r.RPC
	}
	called := map[string]bool{}
	// call requests route (a key of rpcOf) at target and checks the answer's
	// shape; it returns the status and the decoded output (nil on error).
	call := func(route, target, token, body string, hdr ...string) (int, *dynamicpb.Message) {
		t.Helper()
		called[route] = true
		method, _, _ := strings.Cut(route, " ")
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+target, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			var e coordinatorv1.ErrorResponse
			if err := protojson.Unmarshal(b, &e); err != nil || e.GetError() == "" || e.GetCode() == "" {
				t.Errorf("%s: %d, body not an ErrorResponse (%v): %s", route, resp.StatusCode, err, b)
			}
			return resp.StatusCode, nil
		}
		out := dynamicpb.NewMessage(methodDesc(t, rpcOf[route]).Output())
		if resp.StatusCode == http.StatusNoContent {
			return resp.StatusCode, out
		}
		lines := [][]byte{b}
		if strings.HasSuffix(route, "/watch") {
			lines = nil
			for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
				lines = append(lines, bytes.Clone(sc.Bytes()))
			}
		}
		if len(lines) == 0 {
			t.Errorf("%s: empty", route)
		}
		for _, l := range lines {
			if err := protojson.Unmarshal(l, out); err != nil {
				t.Errorf("%s: body is not a %s: %v: %s", route, out.Descriptor().FullName(), err, l)
			}
		}
		return resp.StatusCode, out
	}
	must := func(route string, code int) {
		t.Helper()
		if code >= 300 {
			t.Errorf("%s: %d, want a success", route, code)
		}
	}

	code, _ := call("POST /v1/session", "/v1/session", "", `{"token": "tok-ann"}`, coordinator.CSRFHeader, "1")
	must("POST /v1/session", code)
	code, _ = call("GET /v1/session", "/v1/session", "tok-ann", "")
	must("GET /v1/session", code)
	code, _ = call("DELETE /v1/session", "/v1/session", "", "")
	must("DELETE /v1/session", code)

	code, st := call("POST /v1/queries", "/v1/queries", "tok-ann", `{"spec": {"sql": "`+demo.CohortQuery+`"}}`)
	must("POST /v1/queries", code)
	id := "none"
	if st != nil {
		id = st.Get(st.Descriptor().Fields().ByName("query_id")).String()
	}
	code, _ = call("GET /v1/queries/{query_id}/watch", "/v1/queries/"+id+"/watch", "tok-ann", "")
	must("GET /v1/queries/{query_id}/watch", code)
	code, _ = call("GET /v1/queries/{query_id}", "/v1/queries/"+id, "tok-ann", "")
	must("GET /v1/queries/{query_id}", code)
	// The release record: the query's analyst, and operators, read it.
	for _, tok := range []string{"tok-ann", "tok-olga"} {
		code, _ = call("GET /v1/queries/{query_id}/release-record", "/v1/queries/"+id+"/release-record", tok, "")
		must("GET /v1/queries/{query_id}/release-record", code)
	}
	// Released: cancelling it is an error, in the error's shape.
	call("POST /v1/queries/{query_id}/cancel", "/v1/queries/"+id+"/cancel", "tok-ann", "")
	for _, r := range []struct{ route, target, token string }{
		{"GET /v1/queries", "/v1/queries?limit=5", "tok-ann"},
		{"GET /v1/nodes", "/v1/nodes", "tok-ann"},
		{"GET /v1/budget", "/v1/budget", "tok-ann"},
		{"GET /v1/catalogue", "/v1/catalogue", "tok-ann"},
		{"GET /v1/studies", "/v1/studies", "tok-ann"},
		{"GET /v1/series", "/v1/series", "tok-ann"},
		{"GET /v1/audit", "/v1/audit?limit=10", "tok-olga"},
	} {
		code, _ := call(r.route, r.target, r.token, "")
		must(r.route, code)
	}
	code, _ = call("POST /v1/explain", "/v1/explain", "tok-ann", `{"spec": {"sql": "`+demo.CohortQuery+`"}}`)
	must("POST /v1/explain", code)
	// No such study table, series: errors, in the error's shape.
	call("POST /v1/stats/{method}", "/v1/stats/km", "tok-ann", `{"table": "none"}`)
	series := `{"spec": {"name": "weekly", "table": "conditions", "where": "code = '44054006'", "date_column": "onset_date",
		"every": "week", "start": "2024-01-01", "periods": 4, "max_periods_per_patient": 1, "epsilon": 1, "delta": 1e-6}}`
	for _, r := range []struct{ route, target, body string }{
		{"POST /v1/series", "/v1/series", series},
		{"GET /v1/series/{name}", "/v1/series/weekly", ""},
		{"GET /v1/series/{name}/forecast", "/v1/series/weekly/forecast", ""},
	} {
		code, _ := call(r.route, r.target, "tok-ann", r.body)
		t.Logf("%s: %d", r.route, code)
	}

	for route := range rpcOf {
		if !called[route] {
			t.Errorf("%s is not exercised here", route)
		}
	}

	// The statistics RPCs over gRPC: the same studies, the same refusal.
	analyst, closeA, err := nw.Client(nw.Analyst)
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	studies, err := analyst.Studies(ctx, &coordinatorv1.StudiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	code, overHTTP := call("GET /v1/studies", "/v1/studies", "tok-ann", "")
	if code != http.StatusOK || !proto.Equal(studies, overHTTP) {
		t.Errorf("gRPC Studies %v, HTTP %d %v", studies, code, overHTTP)
	}
	if _, err := analyst.RunStats(ctx, &coordinatorv1.StatsRequest{Method: "km", Table: "none"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("gRPC RunStats on no table: %v, want InvalidArgument", err)
	}
}
