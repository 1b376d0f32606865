// Package client is the analyst's side of the coordinator's API: it dials
// the coordinator (gRPC with mutual TLS, or the HTTPS/JSON API with a bearer
// token), submits queries and follows them to their release, reads the
// network's nodes, the caller's privacy budget and the public catalogue, and
// runs the rounds of the statistics methods of queries/stats (Querier).
// The command line (`fedstat query`, `nodes`, `budget`, `stats`, `alert`),
// the demo and the tests use it.
//
// Errors the coordinator returns, and queries that end without a release,
// come back typed (Error, QueryError) and match the kinds below with
// errors.Is: ErrBadQuery (with the position in the query text when the
// coordinator gave one), ErrPermissionDenied, ErrBudgetExhausted,
// ErrTooFewNodes, and so on. Their text is the coordinator's, safe to show.
//
// A Client is safe for concurrent use by several goroutines; each call
// blocks until the coordinator has answered (Run and Watch: until the query
// has ended) or its ctx is done. Close it when done.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/result"
)

// ErrConfig marks a Config that does not say how to reach the coordinator.
var ErrConfig = errors.New("client: bad config")

// Config says how to reach the coordinator and who the caller is: a
// certificate of the network CA for the gRPC API, or a bearer token for the
// HTTP/JSON API.
type Config struct {
	// Address is the coordinator's gRPC address (host:port). With Identity
	// the client speaks gRPC with mutual TLS.
	Address string
	// Identity is the caller's certificate and key (and the network CA).
	Identity *pki.Identity
	// ServerName is the name the coordinator's certificate must carry (gRPC,
	// and HTTPS when HTTPClient is not given). Defaults to "coordinator".
	// Over gRPC every query is signed with Identity's key for the
	// coordinator of this name (its certificate's common name), and the
	// nodes check that signature themselves (internal/signedquery).
	ServerName string

	// HTTPURL is the base URL of the coordinator's HTTP/JSON API (for
	// example https://coordinator:8443). With Token, or with Identity and
	// no Address (HTTPS with the client certificate, mutual TLS), the
	// client speaks HTTP/JSON. Queries are not signed over HTTP/JSON.
	HTTPURL string
	// Token is the caller's bearer token.
	Token string
	// RootCAs verifies the coordinator's HTTPS certificate (normally the
	// network CA). Defaults to an empty pool: only plain http:// URLs work
	// without it. Unused with HTTPClient.
	RootCAs *x509.CertPool
	// HTTPClient, when set, makes the HTTP requests (its transport must
	// trust the coordinator). Defaults to a client with RootCAs, ServerName
	// and TLS 1.3.
	HTTPClient *http.Client
}

// Client talks to one coordinator. It is safe for concurrent use.
type Client struct {
	t transport
}

// Dial returns a client for the coordinator cfg names. gRPC connections are
// made lazily: Dial does not wait for the coordinator, and a coordinator
// that cannot be reached fails the first call (ErrUnavailable).
func Dial(cfg Config) (*Client, error) {
	if cfg.ServerName == "" {
		cfg.ServerName = "coordinator"
	}
	switch {
	case cfg.Address != "" && cfg.Identity != nil:
		conn, err := rpc.Dial(cfg.Address, cfg.Identity, cfg.ServerName)
		if err != nil {
			return nil, err
		}
		return &Client{t: &grpcTransport{c: coordinatorv1.NewCoordinatorServiceClient(conn), closeFn: conn.Close, id: cfg.Identity, coordinator: cfg.ServerName}}, nil
	case cfg.Token != "" && cfg.HTTPURL != "":
		hc := cfg.HTTPClient
		if hc == nil {
			pool := cfg.RootCAs
			if pool == nil {
				pool = x509.NewCertPool()
			}
			hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS13}}}
		}
		return &Client{t: &httpTransport{base: strings.TrimRight(cfg.HTTPURL, "/"), token: cfg.Token, c: hc}}, nil
	case cfg.Identity != nil && cfg.HTTPURL != "" && cfg.Token == "":
		hc := cfg.HTTPClient
		if hc == nil {
			tc := cfg.Identity.ClientTLS(cfg.ServerName)
			if cfg.RootCAs != nil {
				tc.RootCAs = cfg.RootCAs
			}
			hc = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		}
		return &Client{t: &httpTransport{base: strings.TrimRight(cfg.HTTPURL, "/"), c: hc}}, nil
	case cfg.Token != "":
		return nil, fmt.Errorf("%w: a bearer token needs the HTTP/JSON API's base URL", ErrConfig)
	}
	return nil, fmt.Errorf("%w: give the coordinator's gRPC address and a certificate, or the HTTP/JSON API's URL and a bearer token or a certificate", ErrConfig)
}

// Close releases the connection. Calls in flight fail.
func (c *Client) Close() error { return c.t.close() }

// Submit plans and starts a query and returns at once with its status (its
// id, the spec as the coordinator settled it, the plan). deadline bounds how
// long the coordinator waits for the nodes (0: the network's default). A
// query the coordinator refuses returns an *Error (ErrBadQuery with the
// position for a query it cannot parse or plan).
func (c *Client) Submit(ctx context.Context, spec *typesv1.QuerySpec, deadline time.Duration) (*coordinatorv1.QueryStatus, error) {
	return c.t.submit(ctx, &coordinatorv1.SubmitRequest{Spec: spec, DeadlineMs: deadline.Milliseconds()})
}

// Get returns the status of a query (with its result when released).
func (c *Client) Get(ctx context.Context, queryID string) (*coordinatorv1.QueryStatus, error) {
	return c.t.get(ctx, queryID)
}

// ReleaseRecord returns the release record of a released query: the
// signed evidence that its result is the decryption of the sum its nodes
// committed to (`fedstat verify` checks it; the check links the
// cryptography, which this package does not).
func (c *Client) ReleaseRecord(ctx context.Context, queryID string) (*coordinatorv1.ReleaseRecord, error) {
	return c.t.releaseRecord(ctx, queryID)
}

// Watch follows a query until it ends or ctx is done, calling progress (when
// not nil) with its status now and at every change the caller may see, in
// order, on the calling goroutine: a slow progress delays the watch, not the
// query. It returns the last status; that the query ended without a release
// is not an error here (see Run). Cancelling ctx stops watching, not the
// query (Cancel stops it).
func (c *Client) Watch(ctx context.Context, queryID string, progress func(*coordinatorv1.QueryStatus)) (*coordinatorv1.QueryStatus, error) {
	var last *coordinatorv1.QueryStatus
	err := c.t.watch(ctx, queryID, func(st *coordinatorv1.QueryStatus) {
		last = st
		if progress != nil {
			progress(st)
		}
	})
	return last, err
}

// RunOptions configure Run.
type RunOptions struct {
	// Deadline bounds how long the coordinator waits for the nodes.
	// Defaults to the network's.
	Deadline time.Duration
	// Progress, when set, is called as Watch calls it.
	Progress func(*coordinatorv1.QueryStatus)
	// Fresh asks the nodes again, at full price, even when the caller had
	// the same question released before while no node's data changed
	// (then the coordinator answers from that release, charges nothing and
	// sets QueryStatus.reused_from).
	Fresh bool
}

// Run submits a query and watches it to its end: it blocks until the query
// is released, fails or is cancelled, or ctx is done (cancelling ctx stops
// waiting, not the query). It returns the last status, and an error when
// there is no release: an *Error when the coordinator refused the query or
// the connection failed (the status is then the one Submit returned, or nil),
// a *QueryError when the query ended without a release (failed: ErrNoRelease,
// and ErrTooFewNodes, ErrBudgetExhausted, ErrPermissionDenied as they apply;
// cancelled: ErrCancelled).
func (c *Client) Run(ctx context.Context, spec *typesv1.QuerySpec, o RunOptions) (*coordinatorv1.QueryStatus, error) {
	st, err := c.t.submit(ctx, &coordinatorv1.SubmitRequest{Spec: spec, DeadlineMs: o.Deadline.Milliseconds(), Fresh: o.Fresh})
	if err != nil {
		return nil, err
	}
	last, err := c.Watch(ctx, st.GetQueryId(), o.Progress)
	if last != nil {
		st = last
	}
	if err != nil {
		return st, err
	}
	if st.GetState() != coordinatorv1.State_STATE_DONE {
		return st, &QueryError{Status: st}
	}
	return st, nil
}

// Cancel stops a query that has not been released and returns its status.
func (c *Client) Cancel(ctx context.Context, queryID string) (*coordinatorv1.QueryStatus, error) {
	return c.t.cancel(ctx, queryID)
}

// List returns the caller's most recent queries, newest first, without
// their results (an operator's: everyone's). limit 0 means the
// coordinator's default.
func (c *Client) List(ctx context.Context, limit int) ([]*coordinatorv1.QueryStatus, error) {
	r, err := c.t.list(ctx, limit)
	if err != nil {
		return nil, err
	}
	return r.GetQueries(), nil
}

// Nodes lists the network's nodes: liveness, key epoch, coarse data summary,
// and the state of the key ceremonies.
func (c *Client) Nodes(ctx context.Context) (*coordinatorv1.NodesResponse, error) {
	return c.t.nodes(ctx)
}

// Budget returns an analyst's privacy budget at every node, as each node's
// ledger says; analyst "" is the caller (only operators may ask for
// another analyst: ErrPermissionDenied).
func (c *Client) Budget(ctx context.Context, analyst string) (*coordinatorv1.BudgetResponse, error) {
	return c.t.budget(ctx, analyst)
}

// Catalogue returns the network's public catalogue: regions, study tables
// and populations.
func (c *Client) Catalogue(ctx context.Context) (*coordinatorv1.CatalogueResponse, error) {
	return c.t.catalogue(ctx)
}

// Explain says what a query would cost at each node and how much noise its
// release would carry, without running it: nothing is charged. It refuses
// what Submit would refuse, with the same errors.
func (c *Client) Explain(ctx context.Context, spec *typesv1.QuerySpec) (*coordinatorv1.Explanation, error) {
	return c.t.explain(ctx, &coordinatorv1.SubmitRequest{Spec: spec})
}

// CreateSeries registers a standing surveillance series (typesv1.SeriesSpec)
// with its alert rules (none: EARS C2). The coordinator runs it at every
// period; the nodes charge its lifetime budget once.
func (c *Client) CreateSeries(ctx context.Context, spec *typesv1.SeriesSpec, rules []*coordinatorv1.AlertRule) (*coordinatorv1.Series, error) {
	return c.t.createSeries(ctx, &coordinatorv1.CreateSeriesRequest{Spec: spec, Alerts: rules})
}

// RunStats runs a statistical analysis (a model fit: km, cox, logit or
// linreg; see coordinatorv1.StatsRequest) on the coordinator and returns
// its estimates once every round is released. Over gRPC with a
// certificate, the client signs the analysis with the certificate's key
// (signedquery.SignStats), and every node checks each round against it.
func (c *Client) RunStats(ctx context.Context, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error) {
	return c.t.runStats(ctx, req)
}

// Series returns a standing series with every released period.
func (c *Client) Series(ctx context.Context, name string) (*coordinatorv1.Series, error) {
	return c.t.getSeries(ctx, name)
}

// ListSeries lists the standing series the caller may read.
func (c *Client) ListSeries(ctx context.Context) ([]*coordinatorv1.Series, error) {
	r, err := c.t.listSeries(ctx)
	if err != nil {
		return nil, err
	}
	return r.GetSeries(), nil
}

// Result decodes a released result for formatting (result.Result's table,
// JSON and CSV) or for solving on it (stats.FromResult): every count and sum
// keeps the noise variance the release computed.
func Result(r *typesv1.Result) *result.Result { return resultpb.FromProto(r) }

// transport is one way of reaching the coordinator.
type transport interface {
	submit(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.QueryStatus, error)
	get(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error)
	releaseRecord(ctx context.Context, id string) (*coordinatorv1.ReleaseRecord, error)
	// watch calls fn with every status the coordinator streams, until the
	// stream ends.
	watch(ctx context.Context, id string, fn func(*coordinatorv1.QueryStatus)) error
	cancel(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error)
	list(ctx context.Context, limit int) (*coordinatorv1.ListResponse, error)
	nodes(ctx context.Context) (*coordinatorv1.NodesResponse, error)
	budget(ctx context.Context, analyst string) (*coordinatorv1.BudgetResponse, error)
	catalogue(ctx context.Context) (*coordinatorv1.CatalogueResponse, error)
	createSeries(ctx context.Context, req *coordinatorv1.CreateSeriesRequest) (*coordinatorv1.Series, error)
	runStats(ctx context.Context, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error)
	getSeries(ctx context.Context, name string) (*coordinatorv1.Series, error)
	listSeries(ctx context.Context) (*coordinatorv1.ListSeriesResponse, error)
	explain(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.Explanation, error)
	close() error
}
