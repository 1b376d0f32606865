// Package rpc is fedstat's gRPC plumbing: servers and clients with mutual TLS
// from the network PKI, the caller's identity and role in the context, and
// the error tables that carry domain errors across processes as gRPC
// statuses and rebuild them typed on the caller's side (errors.go).
package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/internal/pki"
)

// MaxMessageBytes bounds every gRPC message. A key-switch request carries
// every partial of a query (one or a few ciphertexts of ~256 KiB each per
// node), so it is far above gRPC's 4 MiB default, and a mix stage of a query
// across linked agencies carries 64 bytes per resident per list (and as much
// again for payloads: an insurer's million claimants make about 130 MB);
// anything larger is refused before it is decoded.
const MaxMessageBytes = 256 << 20

// Peer is the authenticated caller of an RPC.
type Peer struct {
	Name string
	Role pki.Role
}

// Errors (see Errors, errors.go, for their codes).
var (
	ErrUnauthenticated = errors.New("rpc: caller has no valid network certificate")
	ErrForbidden       = errors.New("rpc: caller's role may not do this")
	// ErrTunnelTaken refuses a node's tunnel while another connection of
	// the same node (a tunnel, or the coordinator's dialled connection)
	// still answers.
	ErrTunnelTaken = errors.New("rpc: the node is already connected")
	// ErrNoTunnel fails a call to an outbound node that has no tunnel open.
	ErrNoTunnel = errors.New("rpc: the node has no tunnel open to the coordinator")
	// ErrMessageTooLarge ends a tunnel whose peer announces a message
	// above MaxMessageBytes.
	ErrMessageTooLarge = errors.New("rpc: message too large")
)

// PeerFromContext returns the caller authenticated by mutual TLS.
func PeerFromContext(ctx context.Context) (Peer, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, ErrUnauthenticated
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Peer{}, ErrUnauthenticated
	}
	leaf := ti.State.VerifiedChains[0][0]
	role, err := pki.RoleOf(leaf)
	if err != nil {
		return Peer{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return Peer{Name: leaf.Subject.CommonName, Role: role}, nil
}

// Require returns the caller if its role is one of roles.
func Require(ctx context.Context, roles ...pki.Role) (Peer, error) {
	p, err := PeerFromContext(ctx)
	if err != nil {
		return Peer{}, err
	}
	if !slices.Contains(roles, p.Role) {
		return p, fmt.Errorf("%w: %s has role %s, needs one of %v", ErrForbidden, p.Name, p.Role, roles)
	}
	return p, nil
}

// RequireCert is Require that also returns the caller's verified certificate
// (to check signatures made with its key).
func RequireCert(ctx context.Context, roles ...pki.Role) (Peer, *x509.Certificate, error) {
	p, err := Require(ctx, roles...)
	if err != nil {
		return p, nil, err
	}
	pr, _ := peer.FromContext(ctx)
	ti := pr.AuthInfo.(credentials.TLSInfo)
	return p, ti.State.VerifiedChains[0][0], nil
}

// RefusalHook is told about every call refused because the caller is not
// authenticated (so a daemon can write it to its audit log).
type RefusalHook func(ctx context.Context, method string, err error)

// Transport sizes of every connection (server and client). fedstat's messages
// are ciphertexts of 256 KiB and more: with gRPC's defaults (a 32 KiB write
// buffer, a 64 KiB flow-control window that grows only as the round trips
// are measured) one partial takes eight write system calls and waits for
// window updates on the way. A buffer that holds a ciphertext goes out in
// one write; it is shared (released after each flush), so an idle connection
// holds only its read buffer. The window is static (this turns off gRPC's
// bandwidth estimate): 4 MiB per stream and per connection, so that one
// release request is never held back by flow control on a slow link.
const (
	windowBytes      = 4 << 20
	writeBufferBytes = 512 << 10
	readBufferBytes  = 64 << 10
)

// NewServer returns a gRPC server with TLS for id, message size limits,
// panic recovery, logging and error mapping. Handshakes refused because a
// certificate is not valid at this machine's time are logged with both
// times (see clock.go). A client certificate of the
// network CA is required for every call: TLS verifies one when given, and
// the interceptors refuse calls without one (after telling onRefuse, which
// may be nil), so that such attempts reach the audit log.
func NewServer(id *pki.Identity, log *slog.Logger, onRefuse RefusalHook, opts ...grpc.ServerOption) *grpc.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsCfg := id.ServerTLS()
	tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
	base := []grpc.ServerOption{
		grpc.Creds(newCreds(tlsCfg, id, "server", log)),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.InitialWindowSize(windowBytes),
		grpc.InitialConnWindowSize(windowBytes),
		grpc.WriteBufferSize(writeBufferBytes),
		grpc.ReadBufferSize(readBufferBytes),
		grpc.SharedWriteBuffer(true),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unaryInterceptor(log, onRefuse)),
		grpc.ChainStreamInterceptor(streamInterceptor(log, onRefuse)),
	}
	return grpc.NewServer(append(base, opts...)...)
}

// Dial connects to addr with mutual TLS as id; serverName is the name the
// server's certificate must carry. A certificate refused because a clock is
// off fails the call with an error that says so (see clock.go).
func Dial(addr string, id *pki.Identity, serverName string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(newCreds(id.ClientTLS(serverName), id, "client", nil)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithInitialWindowSize(windowBytes),
		grpc.WithInitialConnWindowSize(windowBytes),
		grpc.WithWriteBufferSize(writeBufferBytes),
		grpc.WithReadBufferSize(readBufferBytes),
		grpc.WithSharedWriteBuffer(true),
	}
	return grpc.NewClient(addr, append(base, opts...)...)
}

func unaryInterceptor(log *slog.Logger, onRefuse RefusalHook) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		if _, err := PeerFromContext(ctx); err != nil {
			if onRefuse != nil {
				onRefuse(ctx, info.FullMethod, err)
			}
			logCall(ctx, log, info.FullMethod, start, ToStatus(err))
			return nil, ToStatus(err)
		}
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in RPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		resp, err = h(ctx, req)
		err = ToStatus(err)
		logCall(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func streamInterceptor(log *slog.Logger, onRefuse RefusalHook) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		start := time.Now()
		if _, err := PeerFromContext(ss.Context()); err != nil {
			if onRefuse != nil {
				onRefuse(ss.Context(), info.FullMethod, err)
			}
			return ToStatus(err)
		}
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in RPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		err = ToStatus(h(srv, ss))
		logCall(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

func logCall(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	p, _ := PeerFromContext(ctx)
	lvl := slog.LevelDebug
	if err != nil {
		lvl = slog.LevelInfo
	}
	log.Log(ctx, lvl, "rpc", "method", method, "peer", p.Name, "role", p.Role, "ms", time.Since(start).Milliseconds(), "code", status.Code(err).String())
}

// RemoteAddr returns the caller's network address, for logs.
func RemoteAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
