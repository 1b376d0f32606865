package coordinator

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fedstat/fedstat/coordinator/web"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// Tokens are bearer tokens for analysts who do not use a client
// certificate. Only their SHA-256 hashes are stored.
type Tokens struct {
	mu      sync.RWMutex
	entries []TokenEntry
}

// TokenEntry is one stored token.
type TokenEntry struct {
	Name string   `json:"name"`
	Role pki.Role `json:"role"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256 string `json:"sha256"`
}

// HashToken returns the stored form of a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// LoadTokens reads a token file (a JSON array of TokenEntry). The file must
// not be writable by group or others.
func LoadTokens(path string) (*Tokens, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("coordinator: tokens: %w", err)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("coordinator: tokens file %s is writable by group or others (mode %v)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("coordinator: tokens: %w", err)
	}
	var entries []TokenEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("coordinator: tokens file %s: %w", path, err)
	}
	for i, e := range entries {
		if _, err := pki.ParseRole(string(e.Role)); err != nil || len(e.SHA256) != 64 || pki.CheckName(e.Name) != nil {
			return nil, fmt.Errorf("coordinator: tokens file %s: entry %d (%q): want a name, a role and a 64-digit sha256", path, i, e.Name)
		}
	}
	return &Tokens{entries: entries}, nil
}

// Lookup returns the holder of token.
func (t *Tokens) Lookup(token string) (TokenEntry, bool) {
	if t == nil || token == "" {
		return TokenEntry{}, false
	}
	h := HashToken(token)
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare([]byte(e.SHA256), []byte(h)) == 1 {
			return e, true
		}
	}
	return TokenEntry{}, false
}

// HTTPHandler returns the HTTP/JSON analyst API. Its routes are the HTTP
// rules of the coordinator's proto (proto/fedstat/coordinator/v1:
// coordinator.proto and coordinator_http.yaml), and the bodies are the
// RPCs' messages in protobuf JSON with the proto field names:
//
//	POST /v1/queries                    Submit (body: SubmitRequest)
//	GET  /v1/queries[?limit=N]          List
//	GET  /v1/queries/{query_id}         Get: status and result
//	GET  /v1/queries/{query_id}/release-record  GetReleaseRecord: what fedstat verify checks
//	GET  /v1/queries/{query_id}/watch   Watch: one QueryStatus a line at every change
//	POST /v1/queries/{query_id}/cancel  Cancel
//	GET  /v1/nodes                      Nodes
//	GET  /v1/budget[?analyst=NAME]      Budget at every node
//	GET  /v1/catalogue                  Catalogue: regions, study names, value sets, populations
//	POST /v1/explain                    Explain (body: SubmitRequest)
//	POST /v1/series                     CreateSeries (body: CreateSeriesRequest)
//	GET  /v1/series                     ListSeries
//	GET  /v1/series/{name}              GetSeries
//	GET  /v1/studies                    Studies: the catalogue's study tables
//	POST /v1/stats/{method}             RunStats: km, cox, logit, linreg (stats_http.go)
//	POST /v1/session                    WebService.SignIn: dashboard sign-in (body: {"token": "..."})
//	GET  /v1/session                    WebService.WhoAmI
//	DELETE /v1/session                  WebService.SignOut
//	GET  /v1/audit[?limit=N]            WebService.Audit: the audit log (operators only)
//	GET  /v1/series/{name}/forecast     WebService.Forecast
//	GET  /v1/openapi.json               the OpenAPI document of all the above (no authentication)
//	GET  /                              the dashboard (coordinator/web)
//
// Callers authenticate with a client certificate of the network CA (when
// served over mutual TLS), with "Authorization: Bearer TOKEN", or with the
// dashboard's session cookie (made by POST /v1/session from a bearer token).
// A request that authenticates with the cookie and changes state must send
// the header "X-Fedstat: 1" (CSRF protection). Errors are an ErrorResponse
// with the HTTP status of the error's gRPC code (httpStatus).
func (c *Coordinator) HTTPHandler(tokens *Tokens) http.Handler {
	mux := http.NewServeMux()
	h := &httpAPI{c: c, tokens: tokens, sessions: newSessions(sessionTTL)}
	for _, rt := range h.routes() {
		mux.HandleFunc(rt.method+" "+rt.path, rt.handle)
	}
	mux.HandleFunc("GET "+OpenAPIPath, serveOpenAPI)
	mux.Handle("GET /", web.Handler())
	return mux
}

// route is one route of the HTTP/JSON API: the HTTP rule of an RPC (its
// method and path exactly as in the OpenAPI document) and its handler.
type route struct {
	method, path string
	// rpc is the RPC's full name, e.g.
	// fedstat.coordinator.v1.CoordinatorService.Get.
	rpc    string
	handle http.HandlerFunc
}

// routes are the API's routes, one per RPC with an HTTP rule; openapi_test
// checks that they are exactly those of the OpenAPI document.
func (h *httpAPI) routes() []route {
	const cs, ws = "fedstat.coordinator.v1.CoordinatorService.", "fedstat.coordinator.v1.WebService."
	rs := []route{
		{"POST", "/v1/queries", cs + "Submit", h.auth(h.submit)},
		{"GET", "/v1/queries", cs + "List", h.auth(h.list)},
		{"GET", "/v1/queries/{query_id}", cs + "Get", h.auth(h.get)},
		{"GET", "/v1/queries/{query_id}/release-record", cs + "GetReleaseRecord", h.auth(h.releaseRecord)},
		{"GET", "/v1/queries/{query_id}/watch", cs + "Watch", h.auth(h.watch)},
		{"POST", "/v1/queries/{query_id}/cancel", cs + "Cancel", h.auth(h.cancel)},
		{"GET", "/v1/nodes", cs + "Nodes", h.auth(h.nodes)},
		{"GET", "/v1/budget", cs + "Budget", h.auth(h.budget)},
		{"GET", "/v1/catalogue", cs + "Catalogue", h.auth(h.catalogue)},
		{"POST", "/v1/explain", cs + "Explain", h.auth(h.explain)},
		{"POST", "/v1/series", cs + "CreateSeries", h.auth(h.createSeries)},
		{"GET", "/v1/series", cs + "ListSeries", h.auth(h.listSeries)},
		{"GET", "/v1/series/{name}", cs + "GetSeries", h.auth(h.getSeries)},
		{"POST", "/v1/session", ws + "SignIn", h.signIn},
		{"GET", "/v1/session", ws + "WhoAmI", h.auth(h.whoami)},
		{"DELETE", "/v1/session", ws + "SignOut", h.signOut},
		{"GET", "/v1/audit", ws + "Audit", h.auth(h.audit)},
		{"GET", "/v1/series/{name}/forecast", ws + "Forecast", h.auth(h.seriesForecast)},
	}
	return append(rs, h.statsRoutes()...)
}

type httpAPI struct {
	c        *Coordinator
	tokens   *Tokens
	sessions *sessions
}

type handler func(w http.ResponseWriter, r *http.Request, p rpc.Peer)

// auth authenticates the caller and checks an analyst role.
func (h *httpAPI) auth(next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := h.peer(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if !slices.Contains(analystRoles, p.Role) {
			writeError(w, fmt.Errorf("%w: %s has role %s", rpc.ErrForbidden, p.Name, p.Role))
			return
		}
		next(w, r, p)
	}
}

func (h *httpAPI) peer(r *http.Request) (rpc.Peer, error) {
	if a := r.Header.Get("Authorization"); a != "" {
		tok, ok := strings.CutPrefix(a, "Bearer ")
		if !ok {
			return rpc.Peer{}, fmt.Errorf("%w: Authorization must be \"Bearer TOKEN\"", rpc.ErrUnauthenticated)
		}
		e, ok := h.tokens.Lookup(strings.TrimSpace(tok))
		if !ok {
			return rpc.Peer{}, fmt.Errorf("%w: unknown token", rpc.ErrUnauthenticated)
		}
		return rpc.Peer{Name: e.Name, Role: e.Role}, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		role, err := pki.RoleOf(leaf)
		if err != nil {
			return rpc.Peer{}, fmt.Errorf("%w: %v", rpc.ErrUnauthenticated, err)
		}
		return rpc.Peer{Name: leaf.Subject.CommonName, Role: role}, nil
	}
	if ck, err := r.Cookie(SessionCookie); err == nil {
		p, ok := h.sessions.lookup(ck.Value)
		if !ok {
			return rpc.Peer{}, fmt.Errorf("%w: session expired; sign in again", rpc.ErrUnauthenticated)
		}
		if !safeMethod(r.Method) && r.Header.Get(CSRFHeader) != "1" {
			return rpc.Peer{}, fmt.Errorf("%w: a request with the session cookie that changes state must send %s: 1", rpc.ErrForbidden, CSRFHeader)
		}
		return p, nil
	}
	return rpc.Peer{}, fmt.Errorf("%w: send a client certificate or a bearer token", rpc.ErrUnauthenticated)
}

var jsonOut = protojson.MarshalOptions{EmitUnpopulated: false, UseProtoNames: true}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// httpStatus maps the gRPC code of an error to an HTTP status.
var httpStatus = map[codes.Code]int{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.FailedPrecondition: http.StatusPreconditionFailed,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.NotFound:           http.StatusNotFound,
	codes.AlreadyExists:      http.StatusConflict,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Canceled:           499,
}

// writeError writes err as an ErrorResponse with the HTTP status of its
// gRPC code.
func writeError(w http.ResponseWriter, err error) {
	code := rpc.Code(err)
	st, ok := httpStatus[code]
	if !ok {
		st = http.StatusInternalServerError
	}
	b, _ := jsonOut.Marshal(&coordinatorv1.ErrorResponse{Error: err.Error(), Code: code.String()})
	var out bytes.Buffer
	json.Compact(&out, b) // protojson's spacing varies from build to build
	out.WriteByte('\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	w.Write(out.Bytes())
}

func (h *httpAPI) submit(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	var req coordinatorv1.SubmitRequest
	if !readBody(w, r, &req) {
		return
	}
	st, err := h.c.SubmitWith(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec(), SubmitOptions{
		Deadline: time.Duration(req.GetDeadlineMs()) * time.Millisecond, Fresh: req.GetFresh(), Signature: req.GetAnalystSignature()})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/queries/"+st.QueryId)
	writeProto(w, StatusFor(p, st))
}

// readBody decodes a request body (protobuf JSON, at most 1 MiB) into m;
// on failure it writes the error and returns false.
func readBody(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	return readBodyMax(w, r, m, 1<<20)
}

// readBodyMax is readBody with a limit of max bytes.
func readBodyMax(w http.ResponseWriter, r *http.Request, m proto.Message, max int64) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, max))
	if err != nil {
		writeError(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return false
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		writeError(w, fmt.Errorf("%w: request body: %v%s", ErrBadRequest, err, specHint(body, m.ProtoReflect().Descriptor())))
		return false
	}
	return true
}

// specHint explains the commonest wrong body: the fields of a request's
// spec (e.g. {"sql": ...} for POST /v1/queries) sent at the top level
// instead of inside "spec". It returns "" for any other body.
func specHint(body []byte, md protoreflect.MessageDescriptor) string {
	spec := md.Fields().ByName("spec")
	if spec == nil || spec.Message() == nil {
		return ""
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	if _, ok := top["spec"]; ok {
		return ""
	}
	var moved []string
	for k := range top {
		if spec.Message().Fields().ByName(protoreflect.Name(k)) != nil || spec.Message().Fields().ByJSONName(k) != nil {
			moved = append(moved, k)
		}
	}
	if len(moved) == 0 {
		return ""
	}
	slices.Sort(moved)
	example := moved[0]
	if slices.Contains(moved, "sql") {
		example = "sql"
	}
	return fmt.Sprintf(`; %q belong in "spec": the body is {"spec": {"%s": ...}}, as %s in GET %s describes`,
		moved, example, md.Name(), OpenAPIPath)
}

func (h *httpAPI) readable(id string, p rpc.Peer) (*coordinatorv1.QueryStatus, error) {
	st, err := h.c.readableBy(p, id)
	if err != nil {
		return nil, err
	}
	return StatusFor(p, st), nil
}

func (h *httpAPI) releaseRecord(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	rec, err := h.c.releaseRecordFor(p, r.PathValue("query_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, rec)
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	st, err := h.readable(r.PathValue("query_id"), p)
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, st)
}

func (h *httpAPI) watch(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	if _, err := h.readable(r.PathValue("query_id"), p); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	err := h.c.watchAs(r.Context(), p, r.PathValue("query_id"), func(st *coordinatorv1.QueryStatus) error {
		b, err := jsonOut.Marshal(st)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	})
	if err != nil && r.Context().Err() == nil {
		h.c.log.Info("watch ended", "err", err)
	}
}

func (h *httpAPI) cancel(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	if _, err := h.readable(r.PathValue("query_id"), p); err != nil {
		writeError(w, err)
		return
	}
	st, err := h.c.Cancel(r.PathValue("query_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, StatusFor(p, st))
}

func (h *httpAPI) list(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	who := p.Name
	if p.Role == pki.RoleOperator {
		who = ""
	}
	writeProto(w, &coordinatorv1.ListResponse{Queries: h.c.listFor(p, limit, who)})
}

func (h *httpAPI) nodes(w http.ResponseWriter, r *http.Request, _ rpc.Peer) {
	writeProto(w, h.c.NodesStatus(r.Context()))
}

// catalogue serves the public catalogue (auth has checked the analyst role,
// as the Catalogue RPC does).
func (h *httpAPI) catalogue(w http.ResponseWriter, _ *http.Request, _ rpc.Peer) {
	writeProto(w, h.c.CatalogueInfo())
}

// HTTPTLS returns the TLS config of the HTTP API: the coordinator's
// certificate, with client certificates of the network CA verified when
// given (callers without one must send a bearer token).
func (c *Coordinator) HTTPTLS() *tls.Config {
	cfg := c.cfg.Identity.ServerTLS()
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	return cfg
}

func (h *httpAPI) budget(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	who := r.URL.Query().Get("analyst")
	if who == "" {
		who = p.Name
	}
	if who != p.Name && p.Role != pki.RoleOperator {
		writeError(w, fmt.Errorf("%w: only operators may see another analyst's budget", rpc.ErrForbidden))
		return
	}
	writeProto(w, h.c.Budget(r.Context(), who))
}

// signIn exchanges a bearer token for a session cookie. The request must
// carry the CSRF header, so that another site cannot sign a browser in.
func (h *httpAPI) signIn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(CSRFHeader) != "1" {
		writeError(w, fmt.Errorf("%w: sign-in must send %s: 1", rpc.ErrForbidden, CSRFHeader))
		return
	}
	// Lenient, as before: fields other than token are ignored.
	var req coordinatorv1.SignInRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, fmt.Errorf("%w: request body: want {\"token\": \"...\"}", ErrBadRequest))
		return
	}
	e, ok := h.tokens.Lookup(strings.TrimSpace(req.GetToken()))
	if !ok {
		writeError(w, fmt.Errorf("%w: unknown token", rpc.ErrUnauthenticated))
		return
	}
	p := rpc.Peer{Name: e.Name, Role: e.Role}
	if !slices.Contains(analystRoles, p.Role) {
		writeError(w, fmt.Errorf("%w: %s has role %s", rpc.ErrForbidden, p.Name, p.Role))
		return
	}
	id, exp := h.sessions.create(p)
	http.SetCookie(w, sessionCookie(id, exp))
	w.Header().Set("Cache-Control", "no-store")
	writeProto(w, &coordinatorv1.SessionInfo{Name: p.Name, Role: string(p.Role), Coordinator: h.coordinatorName()})
}

// coordinatorName is the name on the coordinator's certificate ("" for a
// coordinator without one, as in tests of the API alone).
func (h *httpAPI) coordinatorName() string {
	if id := h.c.cfg.Identity; id != nil {
		return id.Name()
	}
	return ""
}

func (h *httpAPI) whoami(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	w.Header().Set("Cache-Control", "no-store")
	writeProto(w, &coordinatorv1.SessionInfo{Name: p.Name, Role: string(p.Role), Coordinator: h.coordinatorName()})
}

// signOut ends the caller's session, if any.
func (h *httpAPI) signOut(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(SessionCookie); err == nil {
		if r.Header.Get(CSRFHeader) != "1" {
			writeError(w, fmt.Errorf("%w: sign-out must send %s: 1", rpc.ErrForbidden, CSRFHeader))
			return
		}
		h.sessions.end(ck.Value)
	}
	http.SetCookie(w, sessionCookie("", time.Time{}))
	w.WriteHeader(http.StatusNoContent)
}

// auditLimit bounds how many entries GET /v1/audit returns.
const auditLimit = 5000

// audit returns the last entries of the coordinator's audit log, newest
// last, each in the log's own canonical form (with seq, prev and hash).
// Operators only: analysts get 403 and no entry. The body is an
// AuditResponse; it is written with encoding/json so that each entry keeps
// the exact bytes its hash covers (protojson would sort a Struct's keys
// and turn its numbers into doubles).
func (h *httpAPI) audit(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	if p.Role != pki.RoleOperator {
		writeError(w, fmt.Errorf("%w: only operators may read the audit log", rpc.ErrForbidden))
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > auditLimit {
		limit = 500
	}
	out := struct {
		Path    string            `json:"path,omitempty"`
		Entries []json.RawMessage `json:"entries"`
	}{Entries: []json.RawMessage{}}
	if log := h.c.cfg.Audit; log != nil {
		out.Path = log.Path()
		b, err := os.ReadFile(log.Path())
		if err != nil {
			writeError(w, fmt.Errorf("coordinator: audit log: %w", err))
			return
		}
		// A line being appended right now has no newline yet: leave it out.
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		} else {
			b = nil
		}
		err = audit.Scan(bytes.NewReader(b), func(_ int, e audit.Entry) error {
			raw, err := e.MarshalJSON()
			if err != nil {
				return err
			}
			out.Entries = append(out.Entries, raw)
			if len(out.Entries) > limit {
				out.Entries = out.Entries[1:]
			}
			return nil
		})
		if err != nil {
			writeError(w, fmt.Errorf("coordinator: audit log: %w", err))
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// createSeries is POST /v1/series with a CreateSeriesRequest in JSON.
func (h *httpAPI) createSeries(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	var req coordinatorv1.CreateSeriesRequest
	if !readBody(w, r, &req) {
		return
	}
	s, err := h.c.CreateSeries(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec(), req.GetAlerts(), req.GetAnalystSignature())
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/series/"+s.GetSpec().GetName())
	writeProto(w, s)
}

func (h *httpAPI) listSeries(w http.ResponseWriter, _ *http.Request, p rpc.Peer) {
	writeProto(w, &coordinatorv1.ListSeriesResponse{Series: h.c.ListSeries(p)})
}

func (h *httpAPI) getSeries(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	s, err := h.c.GetSeries(p, r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, s)
}
