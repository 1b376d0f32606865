package coordinator

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/rpc"
)

func TestSessionsExpire(t *testing.T) {
	s := newSessions(time.Hour)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	id, _ := s.create(rpc.Peer{Name: "a", Role: "analyst"})
	if len(id) != 64 {
		t.Fatalf("session id %q: want 256 random bits in hex", id)
	}
	if p, ok := s.lookup(id); !ok || p.Name != "a" {
		t.Fatalf("lookup: %v %v", p, ok)
	}
	now = now.Add(time.Hour + time.Second)
	if _, ok := s.lookup(id); ok {
		t.Fatal("an expired session is still valid")
	}
	if _, ok := s.lookup(""); ok {
		t.Fatal("the empty id is a session")
	}
}

// TestSessionHTTP signs in with a token, uses the cookie, and checks the
// cookie's attributes, the CSRF header and the operators-only audit route.
func TestSessionHTTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	body := `[{"name": "ann", "role": "analyst", "sha256": "` + HashToken("tok-a") + `"}]`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	h := (&Coordinator{}).HTTPHandler(tokens)
	do := func(method, target, body string, hdr map[string]string, ck *http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		if ck != nil {
			r.AddCookie(ck)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	csrf := map[string]string{CSRFHeader: "1"}
	if w := do("POST", "/v1/session", `{"token": "tok-a"}`, nil, nil); w.Code != http.StatusForbidden {
		t.Fatalf("sign-in without %s: %d", CSRFHeader, w.Code)
	}
	if w := do("POST", "/v1/session", `{"token": "wrong"}`, csrf, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("sign-in with a wrong token: %d", w.Code)
	}
	w := do("POST", "/v1/session", `{"token": "tok-a"}`, csrf, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body)
	}
	cks := w.Result().Cookies()
	if len(cks) != 1 || cks[0].Name != SessionCookie || !cks[0].HttpOnly || !cks[0].Secure || cks[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", cks)
	}
	ck := cks[0]
	if w := do("GET", "/v1/session", "", nil, ck); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"ann"`) {
		t.Fatalf("whoami: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/v1/queries", `{}`, nil, ck); w.Code != http.StatusForbidden {
		t.Fatalf("POST with the cookie and no %s: %d, want 403", CSRFHeader, w.Code)
	}
	if w := do("GET", "/v1/audit", "", nil, ck); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "entries") {
		t.Fatalf("analyst GET /v1/audit: %d %s, want 403", w.Code, w.Body)
	}
	if w := do("GET", "/", "", nil, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "app.js") || w.Header().Get("Content-Security-Policy") == "" {
		t.Fatalf("GET /: %d", w.Code)
	}
	if w := do("DELETE", "/v1/session", "", csrf, ck); w.Code != http.StatusNoContent {
		t.Fatalf("sign-out: %d", w.Code)
	}
	if w := do("GET", "/v1/session", "", nil, ck); w.Code != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %d", w.Code)
	}
}
