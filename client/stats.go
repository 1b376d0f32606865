package client

import (
	"context"
	"sync"
	"time"

	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/stats"
)

// QuerierOptions configure Client.Querier.
type QuerierOptions struct {
	// ReferenceDate (YYYY-MM-DD) of every query. Defaults to the client's
	// date when each query is submitted.
	ReferenceDate string
	// MinNodes and Threshold, when not 0, are set in every query's spec
	// (the partials a release needs, and the key epoch's decryption
	// threshold, which the coordinator checks). Default to the network's.
	MinNodes, Threshold int32
	// Deadline bounds each query's wait for the nodes. Defaults to the
	// network's.
	Deadline time.Duration
	// OnQuery, when set, is told about each query before it is submitted:
	// its number (from 1) and request. It runs on the goroutine that called
	// Query.
	OnQuery func(n int, r stats.Request)
}

// Querier runs the rounds of a queries/stats method as queries of the
// client's caller: each Query is a Run to the release, whose counts and sums
// keep the noise variances the coordinator's release computed (so nothing is
// re-planned here). It is safe for concurrent use; the methods of
// queries/stats call it one round at a time.
type Querier struct {
	c *Client
	o QuerierOptions

	mu  sync.Mutex
	ids []string
	n   int
}

var _ stats.Querier = (*Querier)(nil)

// Querier returns a stats.Querier that runs every round through c.
func (c *Client) Querier(o QuerierOptions) *Querier { return &Querier{c: c, o: o} }

// Query runs one round: it blocks until the query is released (or ends
// without a release: a *QueryError, or the call's *Error) or ctx is done.
func (q *Querier) Query(ctx context.Context, r stats.Request) (*stats.Release, error) {
	q.mu.Lock()
	q.n++
	n := q.n
	q.mu.Unlock()
	if q.o.OnQuery != nil {
		q.o.OnQuery(n, r)
	}
	ref := q.o.ReferenceDate
	if ref == "" {
		ref = time.Now().Format("2006-01-02")
	}
	spec := &typesv1.QuerySpec{Sql: r.SQL, Epsilon: r.Epsilon, Delta: r.Delta, ReferenceDate: ref, MinNodes: q.o.MinNodes, Threshold: q.o.Threshold}
	st, err := q.c.Run(ctx, spec, RunOptions{Deadline: q.o.Deadline})
	if id := st.GetQueryId(); id != "" {
		q.mu.Lock()
		q.ids = append(q.ids, id)
		q.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return stats.FromResult(Result(st.GetResult())), nil
}

// Queries returns the ids of the queries run so far, in order (also those
// that ended without a release).
func (q *Querier) Queries() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.ids...)
}
