package coordinator

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/fedstat/fedstat/internal/rpc"
)

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "fedstat_session"

// CSRFHeader must be sent (with the value "1") on every state-changing
// request that authenticates with the session cookie. A cross-site form
// cannot set it, and a cross-site script cannot send it without a CORS
// preflight the coordinator never grants.
const CSRFHeader = "X-Fedstat"

// sessionTTL is how long a dashboard session lives after sign-in.
const sessionTTL = 8 * time.Hour

// sessions are the dashboard's signed-in callers, kept in memory only: a
// restart of the coordinator signs everyone out. A session holds the
// identity its bearer token had at sign-in; the token itself is not kept.
// Safe for concurrent use.
type sessions struct {
	mu  sync.Mutex
	m   map[string]session
	ttl time.Duration
	now func() time.Time
}

type session struct {
	peer    rpc.Peer
	expires time.Time
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{m: map[string]session{}, ttl: ttl, now: time.Now}
}

// create starts a session for p and returns its random id (256 bits).
func (s *sessions) create(p rpc.Peer) (string, time.Time) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic("coordinator: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	id := hex.EncodeToString(raw[:])
	now := s.now()
	exp := now.Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m { // drop expired sessions
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	s.m[id] = session{peer: p, expires: exp}
	return id, exp
}

// lookup returns the identity of a live session.
func (s *sessions) lookup(id string) (rpc.Peer, bool) {
	if id == "" {
		return rpc.Peer{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return rpc.Peer{}, false
	}
	if s.now().After(v.expires) {
		delete(s.m, id)
		return rpc.Peer{}, false
	}
	return v.peer, true
}

// end removes a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// sessionCookie returns the cookie that carries id: HttpOnly (scripts
// cannot read it), Secure (HTTPS only) and SameSite=Strict (never sent on
// cross-site requests).
func sessionCookie(id string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if id == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
}

// safeMethod reports whether a request method changes nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
