// Package stattest runs the statistics of queries/stats end to end: it
// splits a study data set across the nodes of a real in-process network
// (gRPC with mutual TLS, multiparty encryption, DP noise at every node) and
// answers stats queries through the coordinator. Tests and the reference
// examples use it.
package stattest

import (
	"context"
	"fmt"
	"time"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/admin"
	"github.com/fedstat/fedstat/queries/stats"
)

// Split deals the rows of st round-robin into n studies of the same
// schema, one per node.
func Split(st *cdm.Study, n int) []*cdm.Study {
	out := make([]*cdm.Study, n)
	for i := range out {
		out[i] = &cdm.Study{Schema: st.Schema, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	}
	for r, id := range st.PatientIDs {
		s := out[r%n]
		s.PatientIDs = append(s.PatientIDs, id)
		for name, col := range st.Numbers {
			s.Numbers[name] = append(s.Numbers[name], col[r])
		}
		for name, col := range st.Strings {
			s.Strings[name] = append(s.Strings[name], col[r])
		}
		for name, col := range st.Dates {
			s.Dates[name] = append(s.Dates[name], col[r])
		}
	}
	return out
}

// Options configure Start.
type Options struct {
	// Studies are the data sets; each is split across Nodes nodes.
	Studies []*cdm.Study
	// Records, when set, gives node i CDM records (len = Nodes).
	Records []*cdm.Records
	// Regions is the catalogue's region list. Defaults to those in Records.
	Regions []string
	// Nodes defaults to 3 (len(Records) when Records is set).
	Nodes int
	// Threshold is the decryption threshold T and MinNodes the partials a
	// release needs. Both default to Nodes.
	Threshold, MinNodes int
	// Params is the homomorphic parameter set. Defaults to production.
	Params string
	// Progress, when set, is told about each set-up step (demo.Options).
	Progress func(step string, elapsed time.Duration)
}

// Start starts a network whose nodes hold the studies, split. The node
// budgets are large (total ρ 1e9): the tests spend big epsilons to check
// answers at small noise. The network skips range proofs
// (demo.Options.SkipRangeProofs): these tests check statistics against
// published answers, and a Cox model's partials of hundreds of slots
// would take each node a minute to prove (the proofs are under test in
// crypto/rangeproof and test/e2e). Close the network when done.
func Start(ctx context.Context, o Options) (*demo.Network, error) {
	if o.Nodes == 0 {
		o.Nodes = len(o.Records)
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	data := o.Records
	if data == nil {
		data = make([]*cdm.Records, o.Nodes)
		for i := range data {
			data[i] = &cdm.Records{}
		}
	}
	var schemas []cdm.StudySchema
	for _, st := range o.Studies {
		schemas = append(schemas, st.Schema)
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Studies: schemas, Regions: o.Regions, Params: o.Params,
		Threshold: o.Threshold, MinNodes: o.MinNodes, Progress: o.Progress,
		Budget: node.Budget{TotalRho: 1e9, PerAnalystRho: 1e9}, SkipRangeProofs: true})
	if err != nil {
		return nil, err
	}
	for _, st := range o.Studies {
		for i, part := range Split(st, o.Nodes) {
			if _, err := admin.ImportStudyIn(nw.Stores[i], part, "stattest"); err != nil {
				nw.Close()
				return nil, fmt.Errorf("stattest: node %d: %w", i+1, err)
			}
		}
	}
	return nw, nil
}

// Querier answers stats queries through the coordinator of nw as the
// analyst (client.Querier with the test's node counts).
type Querier struct {
	Client *client.Client
	// Nodes is the number of nodes; min_nodes and the threshold default
	// to it (every node required).
	Nodes int
	// MinNodes and Threshold, when set, are the queries' min_nodes and the
	// network's decryption threshold T.
	MinNodes, Threshold int
	// Reference is the reference date of the queries. Defaults to today.
	Reference time.Time
	// Queries counts the queries run.
	Queries int
}

var _ stats.Querier = (*Querier)(nil)

// Query runs one query to its release. The release carries the exact noise
// variances of its counts and sums.
func (q *Querier) Query(ctx context.Context, r stats.Request) (*stats.Release, error) {
	q.Queries++
	ref := q.Reference
	if ref.IsZero() {
		ref = time.Now()
	}
	m, t := q.MinNodes, q.Threshold
	if m == 0 {
		m = q.Nodes
	}
	if t == 0 {
		t = q.Nodes
	}
	return q.Client.Querier(client.QuerierOptions{ReferenceDate: ref.Format("2006-01-02"), MinNodes: int32(m), Threshold: int32(t)}).Query(ctx, r)
}
