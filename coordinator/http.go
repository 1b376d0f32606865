package coordinator

import (
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

// HTTPHandler returns the HTTP/JSON analyst API. It serves the same
// operations as the gRPC API, with the same messages in protobuf's JSON form:
//
//	POST /v1/queries               submit (body: SubmitRequest)
//	GET  /v1/queries               list
//	GET  /v1/queries/{id}          status and result
//	GET  /v1/queries/{id}/watch    status at every change, one JSON object per line
//	POST /v1/queries/{id}/cancel   cancel
//	GET  /v1/nodes                 nodes
//	GET  /v1/budget[?analyst=NAME]  the caller's budget at every node
//
// Callers authenticate with a client certificate of the network CA (when
// served over mutual TLS) or with "Authorization: Bearer TOKEN".
func (c *Coordinator) HTTPHandler(tokens *Tokens) http.Handler {
	mux := http.NewServeMux()
	h := &httpAPI{c: c, tokens: tokens}
	mux.HandleFunc("POST /v1/queries", h.auth(h.submit))
	mux.HandleFunc("GET /v1/queries", h.auth(h.list))
	mux.HandleFunc("GET /v1/queries/{id}", h.auth(h.get))
	mux.HandleFunc("GET /v1/queries/{id}/watch", h.auth(h.watch))
	mux.HandleFunc("POST /v1/queries/{id}/cancel", h.auth(h.cancel))
	mux.HandleFunc("GET /v1/nodes", h.auth(h.nodes))
	mux.HandleFunc("GET /v1/budget", h.auth(h.budget))
	return mux
}

type httpAPI struct {
	c      *Coordinator
	tokens *Tokens
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

func writeError(w http.ResponseWriter, err error) {
	code := rpc.Code(err)
	st, ok := httpStatus[code]
	if !ok {
		st = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "code": code.String()})
}

func (h *httpAPI) submit(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	var req coordinatorv1.SubmitRequest
	if err := protojson.Unmarshal(body, &req); err != nil {
		writeError(w, fmt.Errorf("%w: request body: %v", ErrBadRequest, err))
		return
	}
	st, err := h.c.Submit(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, req.GetSpec(), time.Duration(req.GetDeadlineMs())*time.Millisecond)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/queries/"+st.QueryId)
	writeProto(w, st)
}

func (h *httpAPI) readable(id string, p rpc.Peer) (*coordinatorv1.QueryStatus, error) {
	st, err := h.c.Get(id)
	if err != nil {
		return nil, err
	}
	if !mayRead(p, st) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return st, nil
}

func (h *httpAPI) get(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	st, err := h.readable(r.PathValue("id"), p)
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, st)
}

func (h *httpAPI) watch(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	if _, err := h.readable(r.PathValue("id"), p); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	err := h.c.Watch(r.Context(), r.PathValue("id"), func(st *coordinatorv1.QueryStatus) error {
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
	if _, err := h.readable(r.PathValue("id"), p); err != nil {
		writeError(w, err)
		return
	}
	st, err := h.c.Cancel(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, st)
}

func (h *httpAPI) list(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	who := p.Name
	if p.Role == pki.RoleOperator {
		who = ""
	}
	writeProto(w, &coordinatorv1.ListResponse{Queries: h.c.List(limit, who)})
}

func (h *httpAPI) nodes(w http.ResponseWriter, r *http.Request, _ rpc.Peer) {
	writeProto(w, h.c.NodesStatus(r.Context()))
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
