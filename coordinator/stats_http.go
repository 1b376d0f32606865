package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
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
//	POST /v1/stats/{method}       km, cox, logit or linreg (body: statsRequest)

// ErrStatsRound marks a round of an analysis whose query ended without a
// release.
var ErrStatsRound = errors.New("coordinator: a query of the analysis ended without a release")

// registerStats adds the statistics routes to mux.
func (h *httpAPI) registerStats(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/studies", h.auth(h.studies))
	mux.HandleFunc("POST /v1/stats/{method}", h.auth(h.runStats))
}

// jnum is a number that is null in JSON when it is NaN or infinite.
type jnum float64

func (v jnum) MarshalJSON() ([]byte, error) {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func jnums(xs []float64) []jnum {
	out := make([]jnum, len(xs))
	for i, x := range xs {
		out[i] = jnum(x)
	}
	return out
}

// studyColumn and studyTable are the public part of a study schema: what
// a query may name (no CSV headers, no id column).
type studyColumn struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	Values []string `json:"values,omitempty"`
	// Levels are the column's levels as a factor (cdm.StudyColumn.Levels).
	Levels []string `json:"levels,omitempty"`
	Doc    string   `json:"doc,omitempty"`
}

type studyTable struct {
	Name    string        `json:"name"`
	Doc     string        `json:"doc,omitempty"`
	Columns []studyColumn `json:"columns"`
}

// studies lists the catalogue's study tables. The schemas are public
// (every node and analyst plans with the same ones); no data is involved.
func (h *httpAPI) studies(w http.ResponseWriter, _ *http.Request, _ rpc.Peer) {
	out := struct {
		Studies []studyTable `json:"studies"`
	}{Studies: []studyTable{}}
	if cat := h.c.cfg.Catalogue; cat != nil {
		for _, s := range cat.Studies {
			t := studyTable{Name: s.Name, Doc: s.Doc, Columns: []studyColumn{}}
			for _, c := range s.Columns {
				t.Columns = append(t.Columns, studyColumn{Name: c.Name, Type: c.Type, Min: c.Min, Max: c.Max, Values: c.Values, Levels: c.Levels(), Doc: c.Doc})
			}
			out.Studies = append(out.Studies, t)
		}
	}
	writeJSON(w, out)
}

// statsRequest is the body of POST /v1/stats/{method}.
type statsRequest struct {
	// Table is a study table of the catalogue. Required.
	Table string `json:"table"`
	// Where is an optional SQL condition selecting the rows.
	Where string `json:"where,omitempty"`
	// Epsilon and Delta are the budget of the whole analysis (all its
	// rounds). Default to the network's query defaults.
	Epsilon float64 `json:"epsilon,omitempty"`
	Delta   float64 `json:"delta,omitempty"`
	// ReferenceDate (YYYY-MM-DD) of all the queries. Defaults to today
	// (the coordinator's date when the analysis starts).
	ReferenceDate string `json:"reference_date,omitempty"`
	// DeadlineMs bounds each round's wait for the nodes. Defaults to the
	// network's.
	DeadlineMs int64 `json:"deadline_ms,omitempty"`

	// Survival (km, cox): the follow-up time column, the status column
	// and its value for an event, the time bin width, and for km an
	// optional column to stratify by.
	Time   string  `json:"time,omitempty"`
	Status string  `json:"status,omitempty"`
	Event  string  `json:"event,omitempty"`
	Width  float64 `json:"width,omitempty"`
	Strata string  `json:"strata,omitempty"`

	// Regression (logit, linreg, cox): the outcome (logit: a 0/1 column
	// or condition; linreg: a number column), number columns used as
	// covariates with their schema ranges, categorical columns (one
	// indicator per level but the first), and Newton-Raphson rounds.
	Outcome    string   `json:"outcome,omitempty"`
	Covariates []string `json:"covariates,omitempty"`
	Factors    []string `json:"factors,omitempty"`
	Rounds     int      `json:"rounds,omitempty"`
}

// statsEstimate is one statistic: value, standard error and 95% interval,
// both including the DP noise (null when not available).
type statsEstimate struct {
	Name    string `json:"name"`
	Value   jnum   `json:"value"`
	SE      jnum   `json:"se"`
	CILow   jnum   `json:"ci_low"`
	CIHigh  jnum   `json:"ci_high"`
	NoiseSE *jnum  `json:"noise_se,omitempty"`
}

func estimateJSON(e stats.Estimate) statsEstimate {
	return statsEstimate{Name: e.Name, Value: jnum(e.Value), SE: jnum(e.SE), CILow: jnum(e.CILow), CIHigh: jnum(e.CIHigh)}
}

// statsCurve is a Kaplan-Meier curve: the survival just after each time
// bin with an event, and its 95% interval (Greenwood, widened by the noise).
type statsCurve struct {
	Stratum  string        `json:"stratum"`
	Times    []jnum        `json:"times"`
	Survival []jnum        `json:"survival"`
	Lower    []jnum        `json:"lower"`
	Upper    []jnum        `json:"upper"`
	AtRisk   jnum          `json:"at_risk"`
	Median   statsEstimate `json:"median"`
}

// statsResponse is the answer of POST /v1/stats/{method}.
type statsResponse struct {
	Method  string  `json:"method"`
	Table   string  `json:"table"`
	Strata  string  `json:"strata,omitempty"`
	Epsilon float64 `json:"epsilon"`
	Delta   float64 `json:"delta"`
	// ReferenceDate is every round's reference date.
	ReferenceDate string `json:"reference_date"`
	// Queries are the ids of the rounds' queries, in order.
	Queries   []string        `json:"queries"`
	Estimates []statsEstimate `json:"estimates"`
	Curves    []statsCurve    `json:"curves,omitempty"`
	// N is the released number of rows (linreg).
	N          *jnum   `json:"n,omitempty"`
	ElapsedMs  float64 `json:"elapsed_ms"`
	SQL        string  `json:"last_sql,omitempty"`
	Disclaimer string  `json:"note"`
}

// statsQuerier runs each round of a method as a query of the caller.
type statsQuerier struct {
	c        *Coordinator
	who      Analyst
	ref      string
	deadline time.Duration
	ids      []string
	lastSQL  string
}

func (q *statsQuerier) Query(ctx context.Context, r stats.Request) (*stats.Release, error) {
	spec := &typesv1.QuerySpec{Sql: r.SQL, Epsilon: r.Epsilon, Delta: r.Delta, ReferenceDate: q.ref}
	st, err := q.c.Submit(ctx, q.who, spec, q.deadline)
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
	// The release carries the exact noise variances dp.Release computed.
	return stats.FromResult(resultpb.FromProto(st.GetResult())), nil
}

func badStats(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

func (h *httpAPI) runStats(w http.ResponseWriter, r *http.Request, p rpc.Peer) {
	method := r.PathValue("method")
	var req statsRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, fmt.Errorf("%w: request body: %v", ErrBadRequest, err))
		return
	}
	res, err := h.c.analyse(r.Context(), Analyst{Name: p.Name, Role: string(p.Role)}, method, req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, res)
}

// analyse runs a statistics method for an analyst (see statsRequest): the
// request checked and the model built by stats.Analysis.Prepare (the rules
// and limits of `fedstat stats`), then the rounds run as the analyst's
// queries. It blocks until every round has been released; cancelling ctx
// cancels the running round.
func (c *Coordinator) analyse(ctx context.Context, who Analyst, method string, req statsRequest) (*statsResponse, error) {
	start := time.Now()
	if req.Epsilon == 0 {
		req.Epsilon = DefaultEpsilon
	}
	if req.Delta == 0 {
		req.Delta = DefaultDelta
	}
	var sc *cdm.StudySchema
	if c.cfg.Catalogue != nil {
		sc, _ = c.cfg.Catalogue.Study(req.Table)
	}
	if sc == nil {
		return nil, badStats("table %q is not a study table of the catalogue (GET /v1/studies lists them)", req.Table)
	}
	// Every round of the analysis uses the same reference date, also one
	// that runs past midnight.
	if req.ReferenceDate == "" {
		req.ReferenceDate = cdm.DateOf(c.cfg.Now()).String()
	} else if _, err := cdm.ParseDate(req.ReferenceDate); err != nil {
		return nil, badStats("reference_date: %v", err)
	}
	// The model's terms, checked before any query runs: covariates and
	// factors are study columns (the API names columns only), and linreg's
	// outcome is a number column like a covariate.
	a := stats.Analysis{Method: method, Table: req.Table, Where: req.Where, Budget: stats.Budget{Epsilon: req.Epsilon, Delta: req.Delta},
		Time: req.Time, Width: req.Width, Status: req.Status, Event: req.Event, Outcome: req.Outcome, Rounds: req.Rounds,
		Model: stats.Model{Factors: req.Factors}}
	for _, x := range req.Covariates {
		a.Model.Covariates = append(a.Model.Covariates, stats.Term{Name: x})
	}
	if method == "km" {
		a.Strata = req.Strata
	}
	if method == "linreg" {
		a.Outcome, a.Model.Outcome = "", stats.Term{Name: req.Outcome}
	}
	prepared, err := a.Prepare(sc)
	switch {
	case errors.Is(err, stats.ErrMethod):
		return nil, fmt.Errorf("%w: no such method %q (want km, cox, logit or linreg)", ErrNotFound, method)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	q := &statsQuerier{c: c, who: who, ref: req.ReferenceDate, deadline: time.Duration(req.DeadlineMs) * time.Millisecond}
	out := &statsResponse{Method: method, Table: req.Table, Epsilon: req.Epsilon, Delta: req.Delta, ReferenceDate: req.ReferenceDate,
		Strata: a.Strata, Estimates: []statsEstimate{},
		Disclaimer: "Every interval includes the DP noise of the released totals; epsilon and delta are the cost of the whole analysis."}
	rep, err := prepared.Run(ctx, q)
	if err == nil {
		for i, e := range rep.Estimates {
			se := estimateJSON(e)
			if i < len(rep.NoiseSE) {
				n := jnum(rep.NoiseSE[i])
				se.NoiseSE = &n
			}
			out.Estimates = append(out.Estimates, se)
		}
		for _, k := range rep.Curves {
			out.Curves = append(out.Curves, statsCurve{Stratum: k.Stratum, Times: jnums(k.Times), Survival: jnums(k.Survival),
				Lower: jnums(k.Lower), Upper: jnums(k.Upper), AtRisk: jnum(k.AtRisk), Median: estimateJSON(k.Median)})
		}
		if rep.N.Value != 0 {
			n := jnum(rep.N.Value)
			out.N = &n
		}
	}
	out.Queries = append([]string{}, q.ids...)
	out.SQL = q.lastSQL
	out.ElapsedMs = float64(time.Since(start).Microseconds()) / 1000
	c.log.Info("statistics", "method", method, "analyst", who.Name, "table", req.Table, "queries", len(q.ids), "err", err)
	if err != nil {
		if len(q.ids) > 0 {
			return nil, fmt.Errorf("%w (queries %s)", err, strings.Join(q.ids, ", "))
		}
		return nil, err
	}
	return out, nil
}
