package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// This file is the one place where what the coordinator says about a failure
// becomes a typed error. The coordinator sends a gRPC code (the HTTP/JSON
// API: "code") and a message, and a failed query's status names each node's
// failure as its message and code; the kinds below are read from those.
// When internal/rpc rebuilds typed errors from statuses (FromStatus), fromGRPC
// and fromHTTP should use it, and the text matching here should go.

// Kinds of errors, matched with errors.Is on an *Error or a *QueryError.
var (
	// ErrBadQuery: the coordinator refused the query or the request
	// (syntax, unknown names, privacy parameters, bounds). Error.Line and
	// Error.Column point into the query text when the coordinator gave a
	// position.
	ErrBadQuery = errors.New("client: bad query")
	// ErrUnauthenticated: no valid certificate or token.
	ErrUnauthenticated = errors.New("client: not authenticated")
	// ErrPermissionDenied: the caller's role may not do this (for example
	// read another analyst's budget), or a node's policy or admin refused
	// the query.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrNotFound: no such query (or not the caller's).
	ErrNotFound = errors.New("client: not found")
	// ErrUnavailable: the coordinator could not be reached or is not ready.
	ErrUnavailable = errors.New("client: coordinator unavailable")
	// ErrBudgetExhausted: a node's ledger cannot cover the query's privacy
	// cost for the caller (or in total).
	ErrBudgetExhausted = errors.New("client: privacy budget exhausted")
	// ErrTooFewNodes: fewer nodes answered than the query's min_nodes, so
	// nothing was decrypted.
	ErrTooFewNodes = errors.New("client: too few nodes answered")
	// ErrNoRelease: the query ended without a release (every *QueryError).
	ErrNoRelease = errors.New("client: the query ended without a release")
	// ErrCancelled: the query was cancelled before its release.
	ErrCancelled = errors.New("client: the query was cancelled")
)

// Error is a call that the coordinator refused or that did not reach it.
type Error struct {
	// Code is the gRPC status code (the HTTP/JSON API's "code").
	Code codes.Code
	// Message is the coordinator's message (safe to show the analyst), or
	// the connection's error.
	Message string
	// Line and Column (1-based, runes) are where the coordinator says the
	// query text is wrong; 0 when it did not say.
	Line, Column int
	// text is Error's text: the message over gRPC, "STATUS: body" over
	// HTTP (as `fedstat` has always shown them).
	text string
}

func (e *Error) Error() string { return e.text }

// Is reports whether e is of kind target (see the kinds above): by its
// code, and for a code that several kinds share, by its message.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrBadQuery:
		return e.Code == codes.InvalidArgument
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrPermissionDenied:
		return e.Code == codes.PermissionDenied
	case ErrNotFound:
		return e.Code == codes.NotFound
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrBudgetExhausted:
		return e.Code == codes.ResourceExhausted && budgetText(e.Message)
	case ErrTooFewNodes:
		return e.Code == codes.FailedPrecondition && strings.Contains(e.Message, "too few nodes")
	}
	return false
}

// GRPCStatus makes status.Code and status.FromError see e's code and
// message, over either API.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// position finds "line L, column C: " in a message (queries/parse.Error).
var position = regexp.MustCompile(`line (\d+), column (\d+): `)

func newError(code codes.Code, msg, text string) *Error {
	e := &Error{Code: code, Message: msg, text: text}
	if code == codes.InvalidArgument {
		if m := position.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Column, _ = strconv.Atoi(m[2])
		}
	}
	return e
}

// fromGRPC types an error of a gRPC call.
func fromGRPC(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return newError(codes.Unknown, err.Error(), err.Error())
	}
	return newError(s.Code(), s.Message(), s.Message())
}

// codeByName maps a code's name ("InvalidArgument") back to the code.
var codeByName = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[c.String()] = c
	}
	return m
}()

// fromHTTP types an answer of the HTTP/JSON API other than 2xx: its body is
// {"error": message, "code": gRPC code name} (coordinator.writeError).
func fromHTTP(statusCode int, statusText string, body []byte) error {
	text := fmt.Sprintf("%s: %s", statusText, strings.TrimSpace(string(body)))
	var b struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	code, msg := codes.Unknown, strings.TrimSpace(string(body))
	if json.Unmarshal(body, &b) == nil && b.Error != "" {
		msg = b.Error
		if c, ok := codeByName[b.Code]; ok {
			code = c
		}
	} else {
		switch statusCode {
		case 400:
			code = codes.InvalidArgument
		case 401:
			code = codes.Unauthenticated
		case 403:
			code = codes.PermissionDenied
		case 404:
			code = codes.NotFound
		case 502, 503, 504:
			code = codes.Unavailable
		}
	}
	return newError(code, msg, text)
}

// unavailable types a connection error.
func unavailable(err error) error {
	return newError(codes.Unavailable, err.Error(), err.Error())
}

// budgetText reports whether a node's or the coordinator's message is a
// ledger's refusal (node/internal/ledger.ExhaustedError).
func budgetText(msg string) bool { return strings.Contains(msg, "privacy budget exhausted") }

// QueryError is a query that ended without a release: it failed or was
// cancelled. Its text is "query ID STATE: the coordinator's reason".
type QueryError struct {
	// Status is the query's last status: which nodes answered, and each
	// failed node's reason.
	Status *coordinatorv1.QueryStatus
}

func (e *QueryError) Error() string {
	st := e.Status
	return fmt.Sprintf("query %s %s: %s", st.GetQueryId(), strings.ToLower(strings.TrimPrefix(st.GetState().String(), "STATE_")), st.GetError())
}

// Is reports the kinds of the query's end: always ErrNoRelease; ErrCancelled
// for a cancelled query; for a failed one ErrTooFewNodes when fewer nodes
// answered than its min_nodes, ErrBudgetExhausted when a node's ledger
// refused it, ErrPermissionDenied when a node's policy or admin did.
func (e *QueryError) Is(target error) bool {
	st := e.Status
	switch target {
	case ErrNoRelease:
		return true
	case ErrCancelled:
		return st.GetState() == coordinatorv1.State_STATE_CANCELLED
	}
	if st.GetState() != coordinatorv1.State_STATE_FAILED {
		return false
	}
	switch target {
	case ErrTooFewNodes:
		answered := 0
		for _, n := range st.GetNodes() {
			if n.GetStatus() == "answered" || n.GetStatus() == "decrypted" {
				answered++
			}
		}
		return answered < int(st.GetSpec().GetMinNodes())
	case ErrBudgetExhausted:
		return e.nodeFailed(codes.ResourceExhausted, budgetText)
	case ErrPermissionDenied:
		return e.nodeFailed(codes.PermissionDenied, nil)
	}
	return false
}

// nodeFailed reports whether a node failed with code (the coordinator
// writes a node's failure as "message (Code)") and, when match is given, a
// message it accepts.
func (e *QueryError) nodeFailed(code codes.Code, match func(string) bool) bool {
	suffix := " (" + code.String() + ")"
	for _, n := range e.Status.GetNodes() {
		msg, ok := strings.CutSuffix(n.GetError(), suffix)
		if n.GetStatus() == "failed" && ok && (match == nil || match(msg)) {
			return true
		}
	}
	return false
}
