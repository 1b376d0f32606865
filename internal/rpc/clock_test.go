package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fedstat/fedstat/internal/pki"
)

// recordHandler hands every log record to a channel.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r:
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// serve starts a server for id on loopback and returns its address and the
// channel of its log records.
func serve(t *testing.T, id *pki.Identity) (string, chan slog.Record) {
	t.Helper()
	logs := make(chan slog.Record, 64)
	srv := NewServer(id, slog.New(recordHandler{logs}), nil)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), logs
}

func call(t *testing.T, addr string, id *pki.Identity) error {
	t.Helper()
	conn, err := Dial(addr, id, "server")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
	return err
}

func shifted(id *pki.Identity, by time.Duration) *pki.Identity {
	c := *id
	c.Now = func() time.Time { return time.Now().Add(by) }
	return &c
}

// A machine whose clock was behind was refused with "certificate not
// issued by the network CA" or Go's "certificate has expired or is not yet
// valid"; the error now says it is the clock, with both times, whichever
// side's clock is off and in both directions.
func TestClockSkewErrors(t *testing.T) {
	ca, err := pki.NewCA("net", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvID, _ := ca.Issue(pki.IssueRequest{Name: "server", Role: pki.RoleNode})
	cliID, _ := ca.Issue(pki.IssueRequest{Name: "client", Role: pki.RoleNode})
	if err := call(t, mustServe(t, srvID), cliID); err != nil {
		t.Fatalf("clocks agree: %v", err)
	}
	for _, tc := range []struct {
		name     string
		srv, cli time.Duration // clock offsets
		want     []string
	}{
		{"this machine's clock behind", 0, -3 * time.Hour,
			[]string{"certificate of server is not valid until", "this machine's clock says", "check the clock (NTP) of this machine or of the issuer"}},
		{"this machine's clock far ahead", 0, 2 * 365 * 24 * time.Hour,
			[]string{"certificate of server expired at", "this machine's clock says", "check the clock (NTP) of this machine"}},
		// The client learns of the refusal as a TLS alert or as a closed
		// connection, whichever comes first; the server's log says why.
		{"the server's clock behind", -3 * time.Hour, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, logs := serve(t, shifted(srvID, tc.srv))
			err := call(t, addr, shifted(cliID, tc.cli))
			if err == nil {
				t.Fatal("call succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error lacks %q:\n%v", w, err)
				}
			}
			t.Log(err)
			if tc.srv != 0 {
				// The server logs why it refused, with both times.
				for {
					var r slog.Record
					select {
					case r = <-logs:
					case <-time.After(20 * time.Second): // a guard, not synchronisation
						t.Fatal("the server logged no clock error")
					}
					if !strings.Contains(r.Message, "not valid at this machine's time") {
						continue
					}
					var msg string
					r.Attrs(func(a slog.Attr) bool {
						if a.Key == "err" {
							msg = fmt.Sprint(a.Value.Any())
						}
						return true
					})
					if !strings.Contains(msg, "certificate of client is not valid until") || !strings.Contains(msg, "this machine's clock says") {
						t.Fatalf("server log: %s", msg)
					}
					t.Log("server:", msg)
					break
				}
			}
		})
	}
}

func mustServe(t *testing.T, id *pki.Identity) string {
	addr, _ := serve(t, id)
	return addr
}

// A certificate_expired alert from the peer becomes an error about the
// clocks with this machine's time and certificate validity.
func TestPeerRefusalExplained(t *testing.T) {
	ca, _ := pki.NewCA("net", time.Hour)
	id, _ := ca.Issue(pki.IssueRequest{Name: "client", Role: pki.RoleNode})
	c := newCreds(id.ClientTLS("server"), id, "client", nil).(*clockCreds)
	err := c.explain(&net.OpError{Op: "remote error", Err: tls.AlertError(45)}, "server")
	if !errors.Is(err, pki.ErrClock) || !strings.Contains(err.Error(), "server refused this machine's certificate (client) as expired or not yet valid by its own clock") ||
		!strings.Contains(err.Error(), "this machine's clock says") {
		t.Fatalf("explained alert: %v", err)
	}
	if err := c.explain(&net.OpError{Op: "remote error", Err: tls.AlertError(42)}, "server"); errors.Is(err, pki.ErrClock) {
		t.Fatalf("bad_certificate alert explained as a clock problem: %v", err)
	}
}

// The error keeps the *pki.ClockError for errors.Is and errors.As.
func TestHandshakeErrorUnwraps(t *testing.T) {
	ce := &pki.ClockError{Subject: "x", Now: time.Unix(0, 0), NotBefore: time.Unix(10, 0), NotAfter: time.Unix(20, 0)}
	var err error = &handshakeError{clock: ce, peer: "p"}
	var got *pki.ClockError
	if !errors.Is(err, pki.ErrClock) || !errors.As(err, &got) || got != ce {
		t.Fatal("handshakeError does not unwrap to the ClockError")
	}
}
