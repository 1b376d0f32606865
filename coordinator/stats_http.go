package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/stats"
)

// The statistics endpoints run a queries/stats method on behalf of the
// caller: every round of the method is an ordinary query submitted as the
// caller (planned, budgeted at the nodes, audited and listed like any
// other), and the method solves on the released totals here, exactly as
// `fedstat stats` does on the analyst's machine. Nothing is released that
// the caller could not have asked for with POST /v1/queries.
//
//	GET  /v1/studies              the catalogue's study tables (public schemas)
//	POST /v1/stats/{method}       km, cox, logit or linreg (body: StatsRequest)
//
// Their messages are in proto/fedstat/coordinator/v1/coordinator.proto
// (StatsRequest, StatsResponse, StudiesResponse), served over gRPC as
// CoordinatorService.RunStats and Studies.

// ErrStatsRound marks a round of an analysis whose query ended without a
// release.
var ErrStatsRound = errors.New("coordinator: a query of the analysis ended without a release")

// statsRoutes are the statistics routes.
func (h *httpAPI) statsRoutes() []route {
	return []route{
		{"GET", "/v1/studies", "fedstat.coordinator.v1.CoordinatorService.Studies", h.auth(h.studies)},
		{"POST", "/v1/stats/{method}", "fedstat.coordinator.v1.CoordinatorService.RunStats", h.auth(h.runStats)},
	}
}

// jsonStats writes the statistics messages: protobuf JSON with the proto
// field names and every field present (a zero is an answer here), with
// null for a number that is not finite (protojson writes "NaN" or
// "Infinity", which a JSON number cannot be).
var jsonStats = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// studiesResponse is the body of GET /v1/studies. The schemas are public
// (every node and analyst plans with the same ones); no data is involved.
func (c *Coordinator) studiesResponse() *coordinatorv1.StudiesResponse {
	out := &coordinatorv1.StudiesResponse{}
	if cat := c.cfg.Catalogue; cat != nil {
		for _, s := range cat.Studies {
			t := &coordinatorv1.StudyTable{Name: s.Name, Doc: s.Doc}
			for _, col := range s.Columns {
				t.Columns = append(t.Columns, &coordinatorv1.StudyColumn{Name: col.Name, Type: col.Type, Min: col.Min, Max: col.Max,
					Values: col.Values, Levels: col.Levels(), Doc: col.Doc})
			}
			out.Studies = append(out.Studies, t)
		}
	}
	return out
}

// studies lists the catalogue's study tables. Empty fields (a column
// without doc, values or range) are left out, as in every other route.
func (h *httpAPI) studies(w http.ResponseWriter, _ *http.Request, _ rpc.Peer) {
	writeFinite(w, jsonOut, h.c.studiesResponse())
}

// writeFinite writes m with opts, numbers that are not finite as null.
func writeFinite(w http.ResponseWriter, opts protojson.MarshalOptions, m proto.Message) {
	b, err := opts.Marshal(m)
	if err == nil {
		b, err = finiteJSON(b, m.ProtoReflect().Descriptor())
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// finiteJSON rewrites the protobuf JSON b of a message md: compact, in the
// same field order, with null for each singular float or double field that
// protojson wrote as a string (NaN, Infinity, -Infinity). The descriptor
// decides which values are numbers, so a string field that reads "NaN"
// stays as it is. A list keeps protojson's strings: protojson reads null
// as "unset" for a singular field but refuses it in a list (and the
// statistics' lists, the Kaplan-Meier curves, hold finite numbers only).
func finiteJSON(b []byte, md protoreflect.MessageDescriptor) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	if err := copyMessageJSON(dec, &out, md); err != nil {
		return nil, fmt.Errorf("coordinator: rewriting %s JSON: %w", md.FullName(), err)
	}
	return out.Bytes(), nil
}

func copyMessageJSON(dec *json.Decoder, out *bytes.Buffer, md protoreflect.MessageDescriptor) error {
	return copyObjectJSON(dec, out, func(key string) (protoreflect.FieldDescriptor, error) {
		fd := md.Fields().ByName(protoreflect.Name(key))
		if fd == nil {
			return nil, fmt.Errorf("no field %q in %s", key, md.FullName())
		}
		return fd, nil
	})
}

// copyObjectJSON copies a JSON object, each value as field(key) says.
func copyObjectJSON(dec *json.Decoder, out *bytes.Buffer, field func(key string) (protoreflect.FieldDescriptor, error)) error {
	if err := delimJSON(dec, '{'); err != nil {
		return err
	}
	out.WriteByte('{')
	for i := 0; dec.More(); i++ {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		fd, err := field(key)
		if err != nil {
			return err
		}
		if i > 0 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		if err := copyFieldJSON(dec, out, fd); err != nil {
			return err
		}
	}
	out.WriteByte('}')
	return delimJSON(dec, '}')
}

// copyFieldJSON copies the JSON value of field fd: a list, a map or one
// value.
func copyFieldJSON(dec *json.Decoder, out *bytes.Buffer, fd protoreflect.FieldDescriptor) error {
	switch {
	case fd.IsList():
		if err := delimJSON(dec, '['); err != nil {
			return err
		}
		out.WriteByte('[')
		for i := 0; dec.More(); i++ {
			if i > 0 {
				out.WriteByte(',')
			}
			if err := copyValueJSON(dec, out, fd, false); err != nil {
				return err
			}
		}
		out.WriteByte(']')
		return delimJSON(dec, ']')
	case fd.IsMap():
		return copyObjectJSON(dec, out, func(string) (protoreflect.FieldDescriptor, error) { return fd.MapValue(), nil })
	}
	return copyValueJSON(dec, out, fd, true)
}

// copyValueJSON copies one value of fd (singular, a list element or a map
// value), a number that is not finite as null when nullable. A well-known
// type (google.protobuf.*) has its own JSON form and is copied as it is.
func copyValueJSON(dec *json.Decoder, out *bytes.Buffer, fd protoreflect.FieldDescriptor, nullable bool) error {
	if md := fd.Message(); md != nil && md.FullName().Parent() != "google.protobuf" {
		return copyMessageJSON(dec, out, md)
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if k := fd.Kind(); nullable && (k == protoreflect.DoubleKind || k == protoreflect.FloatKind) && len(raw) > 0 && raw[0] == '"' {
		out.WriteString("null")
		return nil
	}
	return json.Compact(out, raw)
}

func delimJSON(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("got %v, want %v", tok, want)
	}
	return nil
}

// statsQuerier runs each round of a method as a query of the caller.
// With the analyst's signed analysis (sig), round r runs under the id
// derived from the signature and r, and carries the results of the rounds
// before it, with the release records a node has not checked yet: each
// node checks them and recomputes the round's query from the results.
type statsQuerier struct {
	c        *Coordinator
	who      Analyst
	ref      string
	deadline time.Duration
	sig      *typesv1.AnalystSignature
	ids      []string
	results  []*typesv1.Result
	records  []*coordinatorv1.ReleaseRecord
	lastSQL  string
}

// checkedRecords is how many of the leading records a node has checked:
// those before the last round whose release holds its partial (it
// answered that round, so it checked every record sent with it).
func checkedRecords(records []*coordinatorv1.ReleaseRecord, nodeID string) int {
	for k := len(records) - 1; k >= 0; k-- {
		for _, s := range records[k].GetSenders() {
			if s.GetNodeId() == nodeID {
				return k
			}
		}
	}
	return 0
}

func (q *statsQuerier) Query(ctx context.Context, r stats.Request) (*stats.Release, error) {
	spec := &typesv1.QuerySpec{Sql: r.SQL, Epsilon: r.Epsilon, Delta: r.Delta, ReferenceDate: q.ref}
	var st *coordinatorv1.QueryStatus
	var err error
	if q.sig == nil {
		st, err = q.c.Submit(ctx, q.who, spec, q.deadline)
	} else {
		round := len(q.ids) + 1
		results, records := q.results, q.records
		st, err = q.c.submit(ctx, q.who, spec, q.deadline, runAs{fixedID: signedquery.AnalysisQueryID(q.sig, round),
			round: func(nodeID string) *nodev1.AnalysisRound {
				return &nodev1.AnalysisRound{Round: int32(round), Results: results, Records: records[checkedRecords(records, nodeID):]}
			}, sig: q.sig})
	}
	if err != nil {
		return nil, err
	}
	id := st.GetQueryId()
	q.ids = append(q.ids, id)
	q.lastSQL = r.SQL
	err = q.c.Watch(ctx, id, func(s *coordinatorv1.QueryStatus) error { st = s; return nil })
	if err != nil {
		// The caller went away: stop the round rather than spend budget on it.
		q.c.Cancel(id)
		return nil, err
	}
	if st.GetState() != coordinatorv1.State_STATE_DONE {
		return nil, fmt.Errorf("%w: query %s (round %d): %s", ErrStatsRound, id, len(q.ids), st.GetError())
	}
	res := st.GetResult()
	if q.sig != nil {
		rec, err := q.c.ReleaseRecord(id)
		if err != nil {
			return nil, fmt.Errorf("%w: query %s (round %d): the nodes check the next round against its release record: %w", ErrStatsRound, id, len(q.ids), err)
		}
		// The nodes recompute the next round from the record's result: the
		// analysis continues from it here too.
		res = rec.GetResult()
		q.results, q.records = append(q.results, res), append(q.records, rec)
	}
	// The release carries the exact noise variances dp.Release computed.
	return stats.FromResult(resultpb.FromProto(res)), nil
}

func badStats(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

// runStats is POST /v1/stats/{method}: the body is a StatsRequest without
// its method, which is the path's.
func (h *httpAPI) runStats(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	method := r.PathValue("method")
	var req coordinatorv1.StatsRequest
	if !readBodyMax(w, r, &req, 64<<10) {
		return
	}
	if req.Method != "" && req.Method != method {
		writeError(w, badStats("the body says method %q, the path %q: the method is the path's /v1/stats/{method}", req.Method, method))
		return
	}
	req.Method = method
	res, err := h.c.analyse(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeFinite(w, jsonStats, res)
}

// Studies is the gRPC form of GET /v1/studies.
func (s *service) Studies(ctx context.Context, _ *coordinatorv1.StudiesRequest) (*coordinatorv1.StudiesResponse, error) {
	if _, err := rpc.Require(ctx, analystRoles...); err != nil {
		return nil, err
	}
	return s.c.studiesResponse(), nil
}

// RunStats is the gRPC form of POST /v1/stats/{method}.
func (s *service) RunStats(ctx context.Context, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error) {
	p, err := rpc.Require(ctx, analystRoles...)
	if err != nil {
		return nil, err
	}
	return s.c.analyse(ctx, Analyst{Name: p.Name, Role: string(p.Role)}, proto.CloneOf(req))
}

// analyse runs a statistics method for an analyst (see StatsRequest), as
// the analyst signed it when req carries a signature: the request checked
// and the model built by stats.Analysis.Prepare (the rules and limits of
// `fedstat stats`), then the rounds run as the analyst's queries. It blocks until every round has
// been released; cancelling ctx cancels the running round.
func (c *Coordinator) analyse(ctx context.Context, who Analyst, req *coordinatorv1.StatsRequest) (*coordinatorv1.StatsResponse, error) {
	start := time.Now()
	method := req.GetMethod()
	spec := signedquery.StatsAnalysis(req)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 {
		spec.Delta = DefaultDelta
	}
	sig := req.GetAnalystSignature()
	if sig != nil {
		// The analyst's signed analysis: by the caller, for this
		// coordinator, fresh, and the analysis sent. It runs as signed.
		a, err := signedquery.OpenAnalysis(c.cfg.Identity.CA, sig, c.cfg.Identity.Name(), c.cfg.Now(), c.cfg.MaxSkew)
		if err != nil {
			return nil, err
		}
		if a.Name != who.Name || string(a.Role) != who.Role {
			return nil, fmt.Errorf("%w: the analysis is signed by %s (%s), the caller is %s (%s)", signedquery.ErrInvalid, a.Name, a.Role, who.Name, who.Role)
		}
		if spec.ReferenceDate == "" {
			spec.ReferenceDate = a.Spec.GetReferenceDate()
		}
		if !proto.Equal(spec, a.Spec) {
			return nil, fmt.Errorf("%w: the analysis sent is not the one %q signed (its method, table, rows, terms, rounds or budget differ)", signedquery.ErrInvalid, a.Name)
		}
	}
	var sc *cdm.StudySchema
	if c.cfg.Catalogue != nil {
		sc, _ = c.cfg.Catalogue.Study(spec.Table)
	}
	if sc == nil {
		return nil, badStats("table %q is not a study table of the catalogue (GET /v1/studies lists them)", spec.Table)
	}
	// Every round of the analysis uses the same reference date, also one
	// that runs past midnight.
	if spec.ReferenceDate == "" {
		spec.ReferenceDate = cdm.DateOf(c.cfg.Now()).String()
	} else if _, err := cdm.ParseDate(spec.ReferenceDate); err != nil {
		return nil, badStats("reference_date: %v", err)
	}
	// The model's terms, checked before any query runs: covariates and
	// factors are study columns (the API names columns only), and linreg's
	// outcome is a number column like a covariate. Each node builds the
	// same analysis from a signed spec (protocol.AnalysisOf).
	a := protocol.AnalysisOf(spec)
	prepared, err := a.Prepare(sc)
	switch {
	case errors.Is(err, stats.ErrMethod):
		return nil, fmt.Errorf("%w: no such method %q (want km, cox, logit or linreg)", ErrNotFound, method)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	q := &statsQuerier{c: c, who: who, ref: spec.ReferenceDate, deadline: time.Duration(req.DeadlineMs) * time.Millisecond, sig: sig}
	out := &coordinatorv1.StatsResponse{Method: method, Table: spec.Table, Epsilon: spec.Epsilon, Delta: spec.Delta, ReferenceDate: spec.ReferenceDate,
		Strata: a.Strata,
		Note:   "Every interval includes the DP noise of the released totals; epsilon and delta are the cost of the whole analysis."}
	rep, err := prepared.Run(ctx, q)
	if err == nil {
		for i, e := range rep.Estimates {
			se := estimateProto(e)
			if i < len(rep.NoiseSE) {
				se.NoiseSe = proto.Float64(rep.NoiseSE[i])
			}
			out.Estimates = append(out.Estimates, se)
		}
		for _, k := range rep.Curves {
			out.Curves = append(out.Curves, &coordinatorv1.StatsCurve{Stratum: k.Stratum, Times: k.Times, Survival: k.Survival,
				Lower: k.Lower, Upper: k.Upper, AtRisk: k.AtRisk, Median: estimateProto(k.Median)})
		}
		if rep.N.Value != 0 {
			out.N = proto.Float64(rep.N.Value)
		}
	}
	out.Queries = append([]string{}, q.ids...)
	out.LastSql = q.lastSQL
	out.ElapsedMs = float64(time.Since(start).Microseconds()) / 1000
	c.log.Info("statistics", "method", method, "analyst", who.Name, "table", spec.Table, "queries", len(q.ids), "signed", sig != nil, "err", err)
	if err != nil {
		if len(q.ids) > 0 {
			return nil, fmt.Errorf("%w (queries %s)", err, strings.Join(q.ids, ", "))
		}
		return nil, err
	}
	return out, nil
}

func estimateProto(e stats.Estimate) *coordinatorv1.StatsEstimate {
	return &coordinatorv1.StatsEstimate{Name: e.Name, Value: proto.Float64(e.Value), Se: proto.Float64(e.SE),
		CiLow: proto.Float64(e.CILow), CiHigh: proto.Float64(e.CIHigh)}
}
