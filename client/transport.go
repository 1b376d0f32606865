package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// grpcTransport speaks the coordinator's gRPC API.
type grpcTransport struct {
	c       coordinatorv1.CoordinatorServiceClient
	closeFn func() error
	// id signs every query submitted (signedquery.Seal) for the
	// coordinator whose certificate has the name coordinator.
	id          *pki.Identity
	coordinator string
}

// submit signs the query with the caller's certificate key (the spec with
// the network's defaults stated: signedquery.WithDefaults), so that the
// nodes can check who asked and what, and submits it.
func (g *grpcTransport) submit(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.QueryStatus, error) {
	if g.id != nil && req.GetAnalystSignature() == nil {
		now := g.id.Clock()
		spec := signedquery.WithDefaults(req.GetSpec(), now)
		sig, err := signedquery.Seal(g.id.Key, g.id.Cert.Raw, g.coordinator, spec, now)
		if err != nil {
			return nil, fmt.Errorf("client: signing the query: %w", err)
		}
		req = proto.Clone(req).(*coordinatorv1.SubmitRequest)
		req.Spec, req.AnalystSignature = spec, sig
	}
	st, err := g.c.Submit(ctx, req)
	return st, fromGRPC(err)
}

func (g *grpcTransport) releaseRecord(ctx context.Context, id string) (*coordinatorv1.ReleaseRecord, error) {
	r, err := g.c.GetReleaseRecord(ctx, &coordinatorv1.GetRequest{QueryId: id})
	return r, fromGRPC(err)
}

func (g *grpcTransport) get(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error) {
	st, err := g.c.Get(ctx, &coordinatorv1.GetRequest{QueryId: id})
	return st, fromGRPC(err)
}

func (g *grpcTransport) watch(ctx context.Context, id string, fn func(*coordinatorv1.QueryStatus)) error {
	stream, err := g.c.Watch(ctx, &coordinatorv1.GetRequest{QueryId: id})
	if err != nil {
		return fromGRPC(err)
	}
	for {
		st, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fromGRPC(err)
		}
		fn(st)
	}
}

func (g *grpcTransport) cancel(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error) {
	st, err := g.c.Cancel(ctx, &coordinatorv1.GetRequest{QueryId: id})
	return st, fromGRPC(err)
}

func (g *grpcTransport) list(ctx context.Context, limit int) (*coordinatorv1.ListResponse, error) {
	r, err := g.c.List(ctx, &coordinatorv1.ListRequest{Limit: int32(limit)})
	return r, fromGRPC(err)
}

func (g *grpcTransport) nodes(ctx context.Context) (*coordinatorv1.NodesResponse, error) {
	r, err := g.c.Nodes(ctx, &coordinatorv1.NodesRequest{})
	return r, fromGRPC(err)
}

func (g *grpcTransport) budget(ctx context.Context, analyst string) (*coordinatorv1.BudgetResponse, error) {
	r, err := g.c.Budget(ctx, &coordinatorv1.BudgetRequest{Analyst: analyst})
	return r, fromGRPC(err)
}

func (g *grpcTransport) catalogue(ctx context.Context) (*coordinatorv1.CatalogueResponse, error) {
	r, err := g.c.Catalogue(ctx, &coordinatorv1.CatalogueRequest{})
	return r, fromGRPC(err)
}

// createSeries signs the series (with the network's defaults stated:
// signedquery.SeriesWithDefaults) with the caller's certificate key, as
// submit signs a query; the coordinator forwards the signature with every
// interval.
func (g *grpcTransport) createSeries(ctx context.Context, req *coordinatorv1.CreateSeriesRequest) (*coordinatorv1.Series, error) {
	if g.id != nil && req.GetAnalystSignature() == nil {
		spec := signedquery.SeriesWithDefaults(req.GetSpec())
		sig, err := signedquery.SealSeries(g.id.Key, g.id.Cert.Raw, g.coordinator, spec, g.id.Clock())
		if err != nil {
			return nil, fmt.Errorf("client: signing the series: %w", err)
		}
		req = proto.Clone(req).(*coordinatorv1.CreateSeriesRequest)
		req.Spec, req.AnalystSignature = spec, sig
	}
	r, err := g.c.CreateSeries(ctx, req)
	return r, fromGRPC(err)
}

// runStats signs the analysis (signedquery.SignStats) with the caller's
// certificate key, as submit signs a query.
func (g *grpcTransport) runStats(ctx context.Context, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error) {
	if g.id != nil && req.GetAnalystSignature() == nil {
		signed, err := signedquery.SignStats(g.id.Key, g.id.Cert.Raw, g.coordinator, req, g.id.Clock())
		if err != nil {
			return nil, fmt.Errorf("client: signing the analysis: %w", err)
		}
		req = signed
	}
	r, err := g.c.RunStats(ctx, req)
	return r, fromGRPC(err)
}

func (g *grpcTransport) getSeries(ctx context.Context, name string) (*coordinatorv1.Series, error) {
	r, err := g.c.GetSeries(ctx, &coordinatorv1.GetSeriesRequest{Name: name})
	return r, fromGRPC(err)
}

func (g *grpcTransport) listSeries(ctx context.Context) (*coordinatorv1.ListSeriesResponse, error) {
	r, err := g.c.ListSeries(ctx, &coordinatorv1.ListSeriesRequest{})
	return r, fromGRPC(err)
}

func (g *grpcTransport) explain(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.Explanation, error) {
	r, err := g.c.Explain(ctx, req)
	return r, fromGRPC(err)
}

func (g *grpcTransport) close() error { return g.closeFn() }

// httpTransport speaks the coordinator's HTTP/JSON API (coordinator.HTTPHandler):
// the same messages in protobuf's JSON form, with a bearer token or, when
// token is empty, the client certificate of its TLS configuration.
type httpTransport struct {
	base, token string
	c           *http.Client
}

// jsonIn reads the API's messages; fields this client does not know (from a
// newer coordinator) are skipped.
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// do sends a request; an answer other than 2xx is returned as an error.
func (h *httpTransport) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.c.Do(req)
	if err != nil {
		return nil, fromHTTPTransport(ctx, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return nil, fromHTTP(resp.StatusCode, resp.Status, b)
	}
	return resp, nil
}

// call sends a request (in, when not nil, as its JSON body) and decodes the
// answer into out.
func (h *httpTransport) call(ctx context.Context, method, path string, in, out proto.Message) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = protojson.Marshal(in); err != nil {
			return err
		}
	}
	resp, err := h.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fromHTTPTransport(ctx, err)
	}
	return jsonIn.Unmarshal(b, out)
}

func (h *httpTransport) submit(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.QueryStatus, error) {
	st := &coordinatorv1.QueryStatus{}
	if err := h.call(ctx, http.MethodPost, "/v1/queries", req, st); err != nil {
		return nil, err
	}
	return st, nil
}

func (h *httpTransport) releaseRecord(ctx context.Context, id string) (*coordinatorv1.ReleaseRecord, error) {
	r := &coordinatorv1.ReleaseRecord{}
	if err := h.call(ctx, http.MethodGet, "/v1/queries/"+url.PathEscape(id)+"/release-record", nil, r); err != nil {
		return nil, err
	}
	return r, nil
}

func (h *httpTransport) get(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error) {
	st := &coordinatorv1.QueryStatus{}
	if err := h.call(ctx, http.MethodGet, "/v1/queries/"+url.PathEscape(id), nil, st); err != nil {
		return nil, err
	}
	return st, nil
}

// watch reads GET /v1/queries/{id}/watch: one status per line.
func (h *httpTransport) watch(ctx context.Context, id string, fn func(*coordinatorv1.QueryStatus)) error {
	resp, err := h.do(ctx, http.MethodGet, "/v1/queries/"+url.PathEscape(id)+"/watch", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		st := &coordinatorv1.QueryStatus{}
		if err := jsonIn.Unmarshal(sc.Bytes(), st); err != nil {
			return err
		}
		fn(st)
	}
	if err := sc.Err(); err != nil {
		return fromHTTPTransport(ctx, err)
	}
	return nil
}

func (h *httpTransport) cancel(ctx context.Context, id string) (*coordinatorv1.QueryStatus, error) {
	st := &coordinatorv1.QueryStatus{}
	if err := h.call(ctx, http.MethodPost, "/v1/queries/"+url.PathEscape(id)+"/cancel", nil, st); err != nil {
		return nil, err
	}
	return st, nil
}

func (h *httpTransport) list(ctx context.Context, limit int) (*coordinatorv1.ListResponse, error) {
	path := "/v1/queries"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	r := &coordinatorv1.ListResponse{}
	return r, h.call(ctx, http.MethodGet, path, nil, r)
}

func (h *httpTransport) nodes(ctx context.Context) (*coordinatorv1.NodesResponse, error) {
	r := &coordinatorv1.NodesResponse{}
	return r, h.call(ctx, http.MethodGet, "/v1/nodes", nil, r)
}

func (h *httpTransport) budget(ctx context.Context, analyst string) (*coordinatorv1.BudgetResponse, error) {
	path := "/v1/budget"
	if analyst != "" {
		path += "?analyst=" + url.QueryEscape(analyst)
	}
	r := &coordinatorv1.BudgetResponse{}
	return r, h.call(ctx, http.MethodGet, path, nil, r)
}

func (h *httpTransport) catalogue(ctx context.Context) (*coordinatorv1.CatalogueResponse, error) {
	r := &coordinatorv1.CatalogueResponse{}
	return r, h.call(ctx, http.MethodGet, "/v1/catalogue", nil, r)
}

func (h *httpTransport) createSeries(ctx context.Context, req *coordinatorv1.CreateSeriesRequest) (*coordinatorv1.Series, error) {
	r := &coordinatorv1.Series{}
	return r, h.call(ctx, http.MethodPost, "/v1/series", req, r)
}

func (h *httpTransport) runStats(ctx context.Context, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error) {
	r := &coordinatorv1.StatsResponse{}
	return r, h.call(ctx, http.MethodPost, "/v1/stats/"+url.PathEscape(req.GetMethod()), req, r)
}

func (h *httpTransport) getSeries(ctx context.Context, name string) (*coordinatorv1.Series, error) {
	r := &coordinatorv1.Series{}
	return r, h.call(ctx, http.MethodGet, "/v1/series/"+url.PathEscape(name), nil, r)
}

func (h *httpTransport) listSeries(ctx context.Context) (*coordinatorv1.ListSeriesResponse, error) {
	r := &coordinatorv1.ListSeriesResponse{}
	return r, h.call(ctx, http.MethodGet, "/v1/series", nil, r)
}

func (h *httpTransport) explain(ctx context.Context, req *coordinatorv1.SubmitRequest) (*coordinatorv1.Explanation, error) {
	r := &coordinatorv1.Explanation{}
	return r, h.call(ctx, http.MethodPost, "/v1/explain", req, r)
}

func (h *httpTransport) close() error {
	h.c.CloseIdleConnections()
	return nil
}

// fromHTTPTransport types an error of the HTTP connection (not an answer of
// the coordinator): ctx's own error as is, others as ErrUnavailable.
func fromHTTPTransport(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	return unavailable(err)
}
