package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/fedstat/fedstat/internal/pki"
)

// Certificates and clocks.
//
// TLS checks every certificate against the local clock. A machine whose
// clock is behind sees its peers' certificates as not yet valid, one far
// ahead sees them expired, and Go reports both as "x509: certificate has
// expired or is not yet valid" (or, when the network CA's own certificate
// is the one out of range, as "certificate signed by unknown authority").
// The credentials below turn such handshake errors into a *pki.ClockError
// that says it is a clock problem and gives both times; a server logs them.
// When the peer refuses this machine's certificate as expired by its own
// clock (a TLS certificate_expired alert), the error says so with this
// machine's time and certificate validity.

// clockCreds wraps TLS transport credentials to explain clock problems.
type clockCreds struct {
	credentials.TransportCredentials
	id   *pki.Identity
	side string // "client" or "server"
	log  *slog.Logger
}

func newCreds(cfg *tls.Config, id *pki.Identity, side string, log *slog.Logger) credentials.TransportCredentials {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &clockCreds{TransportCredentials: credentials.NewTLS(cfg), id: id, side: side, log: log}
}

func (c *clockCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	if err != nil {
		return nil, nil, c.explain(err, authority)
	}
	return &alertConn{Conn: nc, c: c, peer: authority}, ai, nil
}

func (c *clockCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		peer := conn.RemoteAddr().String()
		err = c.explain(err, peer)
		if errors.Is(err, pki.ErrClock) {
			c.log.Warn("rpc: TLS handshake refused: a certificate is not valid at this machine's time", "peer", peer, "err", err)
		}
		return nil, nil, err
	}
	return nc, ai, nil
}

func (c *clockCreds) Clone() credentials.TransportCredentials {
	return &clockCreds{TransportCredentials: c.TransportCredentials.Clone(), id: c.id, side: c.side, log: c.log}
}

// explain turns a certificate time error of a handshake into a
// *pki.ClockError (keeping the original error's text after it), and a
// certificate_expired alert from the peer into an error about the clocks.
func (c *clockCreds) explain(err error, peer string) error {
	now := c.id.Clock()
	if ce := pki.ClockProblem(err, c.id.CA, now); ce != nil {
		return &handshakeError{clock: ce, peer: peer, side: c.side}
	}
	if a, ok := errors.AsType[tls.AlertError](err); ok && a == tls.AlertError(45) { // certificate_expired
		return &peerClockError{own: c.id.Cert, now: now, peer: peer, err: err}
	}
	return err
}

// handshakeError is a *pki.ClockError seen during a handshake with peer.
type handshakeError struct {
	clock *pki.ClockError
	peer  string
	side  string
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.peer, e.clock)
}

func (e *handshakeError) Unwrap() error { return e.clock }

// peerClockError: the peer refused this machine's certificate as expired
// or not yet valid by its clock.
type peerClockError struct {
	own  *x509.Certificate
	now  time.Time
	peer string
	err  error
}

func (e *peerClockError) Error() string {
	return fmt.Sprintf("%s refused this machine's certificate (%s) as expired or not yet valid by its own clock: the certificate is valid from %s until %s and this machine's clock says %s: check the clock (NTP) of %s, or of this machine (%v)",
		e.peer, e.own.Subject.CommonName, e.own.NotBefore.UTC().Format(time.RFC3339), e.own.NotAfter.UTC().Format(time.RFC3339),
		e.now.UTC().Format(time.RFC3339), e.peer, e.err)
}

func (e *peerClockError) Unwrap() error { return e.err }

// Is makes errors.Is(err, pki.ErrClock) true.
func (e *peerClockError) Is(target error) bool { return target == pki.ErrClock }

// alertConn explains a certificate_expired alert that arrives after a TLS
// 1.3 client handshake has returned (the server checks the client's
// certificate after the client's last handshake message, so the client
// learns of the refusal at its first read).
type alertConn struct {
	net.Conn
	c    *clockCreds
	peer string
}

func (a *alertConn) Read(b []byte) (int, error) {
	n, err := a.Conn.Read(b)
	if err != nil {
		if _, ok := errors.AsType[tls.AlertError](err); ok {
			err = a.c.explain(err, a.peer)
		}
	}
	return n, err
}
