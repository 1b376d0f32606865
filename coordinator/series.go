package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/internal/signedquery"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/continual"
	"github.com/fedstat/fedstat/queries/plan"
)

// Standing series (docs/statistics.md, "Continual release"; docs/operations.md,
// "Standing series"). The coordinator keeps one record per series
// (c/series/<name>): its spec, owner, the released intervals of the binary
// tree with their noisy values and variances, the released periods and the
// alerts that fired. A scheduler (seriesLoop) releases period t once it is
// over by the series clock: every interval that ends at t, each as an
// ordinary query with a fixed id (protocol.SeriesQueryID). Periods are
// released in order, so there are no gaps: a period that cannot run (a node
// down, no key epoch) is retried at every tick, and the series says it is
// waiting and why; once it runs it is marked late, with a note. Nodes
// answer each interval once and replay their answer to a retry, and charge
// the lifetime budget once, so neither a retry nor a restart of any party
// charges twice.

var prefixSeries = []byte("c/series/")

// ErrSeriesExists: CreateSeries with a name in use.
var ErrSeriesExists = errors.New("coordinator: a series with this name exists")

type seriesRecord struct {
	Spec    []byte `json:"spec"` // typesv1.SeriesSpec, protobuf
	Owner   string `json:"owner"`
	Role    string `json:"role"`
	Created int64  `json:"created_unix_ms"`
	// Registered is the series clock at creation: periods due before it
	// are a backfill, not late.
	Registered int64        `json:"registered_unix_ms"`
	Labels     []string     `json:"labels"`
	KeyColumn  string       `json:"key_column,omitempty"`
	Rules      []ruleRecord `json:"rules"`
	// SmallCount is the network's small-count threshold (display only).
	SmallCount int            `json:"small_count"`
	Obs        []obsRecord    `json:"obs"`
	Periods    []periodRecord `json:"periods"`
	Alerts     []alertRecord  `json:"alerts,omitempty"`
	Error      string         `json:"error,omitempty"`
	Failures   int            `json:"failures,omitempty"` // failed attempts at the next period
	// LastFailure is the series-clock time of the last failed attempt
	// (at any period): a period due by then was held up by it.
	LastFailure int64 `json:"last_failure_unix_ms,omitempty"`
	// Blocker is the error of that attempt.
	Blocker string `json:"blocker,omitempty"`
	// Signature is the analyst's signed series (typesv1.AnalystSignature,
	// protobuf; signedquery.SealSeries), forwarded with every interval;
	// empty for a series created without one.
	Signature []byte `json:"signature,omitempty"`

	spec      *typesv1.SeriesSpec
	signature *typesv1.AnalystSignature
	sched     continual.Schedule
	obs       map[continual.Interval]int // released intervals -> index in Obs
}

type ruleRecord struct {
	Rule      string  `json:"rule"`
	Threshold float64 `json:"threshold,omitempty"`
}

// obsRecord is one released interval: the noisy count of each label and its
// noise variance.
type obsRecord struct {
	Level    int       `json:"level"`
	Index    int       `json:"index"`
	Values   []float64 `json:"values"`
	Vars     []float64 `json:"vars"`
	QueryID  string    `json:"query_id"`
	Released int64     `json:"released_unix_ms"`
}

type periodRecord struct {
	Index    int    `json:"index"`
	Released int64  `json:"released_unix_ms"`
	Late     bool   `json:"late,omitempty"`
	Note     string `json:"note,omitempty"`
}

type alertRecord struct {
	Period    int     `json:"period"`
	Label     string  `json:"label"`
	Value     float64 `json:"value"`
	Rule      string  `json:"rule"`
	Statistic float64 `json:"statistic"`
	Threshold float64 `json:"threshold"`
	Fired     int64   `json:"fired_unix_ms"`
}

// seriesState is the coordinator's series, in memory and in its store.
type seriesState struct {
	mu     sync.Mutex
	byName map[string]*seriesRecord
	kick   chan struct{}
}

func (r *seriesRecord) init() error {
	var s typesv1.SeriesSpec
	if err := proto.Unmarshal(r.Spec, &s); err != nil {
		return err
	}
	sch, err := protocol.CheckSeries(&s)
	if err != nil {
		return err
	}
	r.spec, r.sched = &s, sch
	if len(r.Signature) > 0 {
		r.signature = new(typesv1.AnalystSignature)
		if err := proto.Unmarshal(r.Signature, r.signature); err != nil {
			return fmt.Errorf("the analyst's signature: %w", err)
		}
	}
	r.obs = map[continual.Interval]int{}
	for i, o := range r.Obs {
		r.obs[continual.Interval{Level: o.Level, Index: o.Index}] = i
	}
	return nil
}

func seriesKey(name string) []byte { return append(slices.Clone(prefixSeries), name...) }

func (c *Coordinator) saveSeries(r *seriesRecord) error {
	if c.cfg.DB == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(seriesKey(r.spec.GetName()), b) })
}

// loadSeries restores the series at start.
func (c *Coordinator) loadSeries() error {
	c.series.byName = map[string]*seriesRecord{}
	c.series.kick = make(chan struct{}, 1)
	if c.cfg.DB == nil {
		return nil
	}
	return c.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixSeries, func(k, v []byte) error {
			var r seriesRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("coordinator: stored series %s: %w", k, err)
			}
			if err := r.init(); err != nil {
				return fmt.Errorf("coordinator: stored series %s: %w", k, err)
			}
			c.series.byName[r.spec.GetName()] = &r
			return nil
		})
	})
}

// CreateSeries registers a standing series for who. Defaults: epsilon 1 and
// delta DefaultDelta for the lifetime, K = 1, min_nodes as for a query. The
// series' query is planned (one interval) so that an error in it is
// reported now, not at its first period.
//
// sig, when set, is the analyst's signed series (signedquery.SealSeries): it
// must be the caller's, made for this coordinator within MaxSkew of now,
// and sign spec as settled here (signedquery.CheckSeriesSettled). It goes
// with every interval to the nodes, which check it the same way.
func (c *Coordinator) CreateSeries(ctx context.Context, who Analyst, spec *typesv1.SeriesSpec, rules []*coordinatorv1.AlertRule, sig *typesv1.AnalystSignature) (*coordinatorv1.Series, error) {
	signed := spec
	spec = proto.Clone(spec).(*typesv1.SeriesSpec)
	if spec.Epsilon == 0 {
		spec.Epsilon = DefaultEpsilon
	}
	if spec.Delta == 0 {
		spec.Delta = DefaultDelta
	}
	if spec.MaxPeriodsPerPatient == 0 {
		spec.MaxPeriodsPerPatient = 1
	}
	threshold := c.cfg.Threshold
	if e, err := c.currentEpoch(); err == nil {
		threshold = e.Threshold
	}
	if spec.MinNodes == 0 {
		spec.MinNodes = int32(max(c.cfg.MinNodes, threshold))
	}
	if _, err := protocol.CheckSeries(spec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var sigBytes []byte
	if sig != nil {
		r, err := signedquery.OpenSeries(c.cfg.Identity.CA, sig, c.cfg.Identity.Name(), c.cfg.Now(), c.cfg.MaxSkew)
		if err != nil {
			return nil, err
		}
		switch {
		case r.Name != who.Name || string(r.Role) != who.Role:
			return nil, fmt.Errorf("%w: the series is signed by %q (role %s), not by the caller %q (role %s)", signedquery.ErrInvalid, r.Name, r.Role, who.Name, who.Role)
		case c.cfg.Now().Sub(r.Issued) > c.cfg.MaxSkew:
			return nil, fmt.Errorf("%w: %q signed the series at %s, more than %s ago", signedquery.ErrInvalid, r.Name, r.Issued.UTC().Format(time.RFC3339), c.cfg.MaxSkew)
		case !proto.Equal(r.Spec, signed):
			return nil, fmt.Errorf("%w: the series sent is not the one %q signed", signedquery.ErrInvalid, r.Name)
		}
		if err := signedquery.CheckSeriesSettled(r.Spec, spec); err != nil {
			return nil, err
		}
		if sigBytes, err = proto.Marshal(sig); err != nil {
			return nil, err
		}
	}
	q, err := protocol.SeriesQuery(spec, continual.Interval{})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	q.Threshold = int32(max(threshold, 1))
	preq, err := planRequest(q)
	if err != nil {
		return nil, err
	}
	p, err := plan.Build(preq, c.cfg.Catalogue)
	if err != nil {
		return nil, fmt.Errorf("%w: series %s: %w", ErrBadRequest, spec.GetName(), err)
	}
	if p.Link != nil {
		return nil, fmt.Errorf("%w: series %s: a standing series cannot be a query across linked agencies", ErrBadRequest, spec.GetName())
	}
	labels, keyCol := []string{"total"}, ""
	if ks := p.Keys(); len(ks) > 0 {
		if len(ks) > 1 || ks[0].RowLevel {
			return nil, fmt.Errorf("%w: series %s: by %q is a row-level key; a series is grouped by a patient-level key (e.g. region) so that each patient counts in one cell", ErrBadRequest, spec.GetName(), spec.GetBy())
		}
		labels, keyCol = slices.Clone(ks[0].Labels), spec.GetBy()
	}
	var rr []ruleRecord
	for _, r := range rules {
		rule := strings.ToUpper(strings.TrimSpace(r.GetRule()))
		switch rule {
		case "C1", "C2", "C3":
		case "FORECAST":
			rule = "forecast"
			if !(r.GetThreshold() > 0) {
				return nil, fmt.Errorf("%w: series %s: the forecast alert needs a threshold > 0", ErrBadRequest, spec.GetName())
			}
		default:
			return nil, fmt.Errorf("%w: series %s: alert rule %q: want C1, C2, C3 or forecast", ErrBadRequest, spec.GetName(), r.GetRule())
		}
		rr = append(rr, ruleRecord{Rule: rule, Threshold: r.GetThreshold()})
	}
	if len(rules) == 0 {
		rr = []ruleRecord{{Rule: "C2"}}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return nil, err
	}
	r := &seriesRecord{Spec: b, Owner: who.Name, Role: who.Role, Created: c.cfg.Now().UnixMilli(), Registered: c.cfg.SeriesClock().UnixMilli(),
		Labels: labels, KeyColumn: keyCol, Rules: rr, SmallCount: p.SmallCountThreshold(), Signature: sigBytes}
	if err := r.init(); err != nil {
		return nil, err
	}
	c.series.mu.Lock()
	if _, ok := c.series.byName[spec.GetName()]; ok {
		c.series.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrSeriesExists, spec.GetName())
	}
	if err := c.saveSeries(r); err != nil {
		c.series.mu.Unlock()
		return nil, err
	}
	c.series.byName[spec.GetName()] = r
	out := c.seriesView(r, false)
	c.series.mu.Unlock()
	c.record(ctx, who.Name, "series.created", protocol.SeriesReservationID(spec), map[string]any{
		"series": spec.GetName(), "table": spec.GetTable(), "where": spec.GetWhere(), "by": spec.GetBy(), "every": spec.GetEvery(),
		"start": spec.GetStart(), "periods": spec.GetPeriods(), "epsilon": spec.GetEpsilon(), "delta": spec.GetDelta(),
		"max_periods_per_patient": spec.GetMaxPeriodsPerPatient(), "role": who.Role})
	c.log.Info("standing series created", "series", spec.GetName(), "owner", who.Name, "every", spec.GetEvery(), "start", spec.GetStart(), "periods", spec.GetPeriods())
	c.kickSeries()
	return out, nil
}

func (c *Coordinator) kickSeries() {
	select {
	case c.series.kick <- struct{}{}:
	default:
	}
}

// mayReadSeries: the owner, or an operator.
func mayReadSeries(p rpc.Peer, r *seriesRecord) bool {
	return p.Role == pki.RoleOperator || r.Owner == p.Name
}

// GetSeries returns the series, with every released period, for a caller
// that may read it.
func (c *Coordinator) GetSeries(p rpc.Peer, name string) (*coordinatorv1.Series, error) {
	c.series.mu.Lock()
	defer c.series.mu.Unlock()
	r, ok := c.series.byName[name]
	if !ok || !mayReadSeries(p, r) {
		return nil, fmt.Errorf("%w: no series %q", ErrNotFound, name)
	}
	return c.seriesView(r, true), nil
}

// ListSeries lists the series the caller may read, without their periods.
func (c *Coordinator) ListSeries(p rpc.Peer) []*coordinatorv1.Series {
	c.series.mu.Lock()
	defer c.series.mu.Unlock()
	var out []*coordinatorv1.Series
	for _, r := range c.series.byName {
		if mayReadSeries(p, r) {
			out = append(out, c.seriesView(r, false))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.GetName() < out[j].Spec.GetName() })
	return out
}

// due is when period t becomes due: the day after its last day, at 00:00
// UTC, plus the configured delay for late records.
func (c *Coordinator) due(r *seriesRecord, t int) time.Time {
	_, last := r.sched.Bounds(t)
	return last.Time().AddDate(0, 0, 1).Add(c.cfg.SeriesDelay)
}

// seriesView is the API view of a record (callers hold series.mu).
func (c *Coordinator) seriesView(r *seriesRecord, withPeriods bool) *coordinatorv1.Series {
	T := int(r.spec.GetPeriods())
	out := &coordinatorv1.Series{
		Spec: r.spec, Owner: r.Owner, Role: r.Role, CreatedUnixMs: r.Created, Labels: r.Labels, KeyColumn: r.KeyColumn,
		Released: int32(len(r.Periods)), Rho: protocol.SeriesRho(r.spec), Error: r.Error,
	}
	for _, rr := range r.Rules {
		out.Rules = append(out.Rules, &coordinatorv1.AlertRule{Rule: rr.Rule, Threshold: rr.Threshold})
	}
	switch {
	case len(r.Periods) >= T:
		out.State = "finished"
	case r.Error != "":
		out.State = "waiting"
	default:
		out.State = "running"
	}
	if len(r.Periods) < T {
		out.NextDue = c.due(r, len(r.Periods)).UTC().Format(time.RFC3339)
	}
	for _, a := range r.Alerts {
		first, _ := r.sched.Bounds(a.Period)
		out.Alerts = append(out.Alerts, &coordinatorv1.SeriesAlert{Series: r.spec.GetName(), Period: int32(a.Period), Week: first.String(),
			Label: a.Label, Value: a.Value, Rule: a.Rule, Statistic: a.Statistic, Threshold: a.Threshold, FiredUnixMs: a.Fired})
	}
	if withPeriods {
		out.Periods = r.estimates()
	}
	return out
}

// estimates are the released periods with each label's estimate and running
// total (continual.Estimate over every released interval).
func (r *seriesRecord) estimates() []*coordinatorv1.SeriesPeriod {
	n := len(r.Periods)
	if n == 0 {
		return nil
	}
	out := make([]*coordinatorv1.SeriesPeriod, n)
	for t, pr := range r.Periods {
		first, last := r.sched.Bounds(t)
		out[t] = &coordinatorv1.SeriesPeriod{Index: int32(t), First: first.String(), Last: last.String(),
			ReleasedUnixMs: pr.Released, Late: pr.Late, Note: pr.Note}
	}
	for li, label := range r.Labels {
		obs := make([]continual.Obs, 0, len(r.Obs))
		for _, o := range r.Obs {
			iv := continual.Interval{Level: o.Level, Index: o.Index}
			if iv.Last() >= n {
				continue
			}
			obs = append(obs, continual.Obs{Interval: iv, Value: o.Values[li], Var: o.Vars[li]})
		}
		periods, totals, err := continual.Estimate(obs, n-1)
		if err != nil {
			continue // cannot happen for a complete prefix; leave the label out
		}
		for t := range n {
			v, tv := periods[t], totals[t]
			sd, tsd := math.Sqrt(v.Var), math.Sqrt(tv.Var)
			sv := &coordinatorv1.SeriesValue{Label: label, Value: v.Value, Variance: v.Var,
				CiLow: math.Max(0, v.Value-z975*sd), CiHigh: v.Value + z975*sd,
				Total: tv.Value, TotalVariance: tv.Var, TotalCiLow: math.Max(0, tv.Value-z975*tsd), TotalCiHigh: tv.Value + z975*tsd}
			sv.Suppressed = r.SmallCount > 0 && v.Value < float64(r.SmallCount)
			out[t].Values = append(out[t].Values, sv)
		}
	}
	return out
}

// z975 is the 97.5% standard normal quantile.
const z975 = 1.959963984540054

// seriesLoop releases due periods of every series at every tick
// (SeriesInterval) and when a series is created, until ctx ends.
func (c *Coordinator) seriesLoop(ctx context.Context) {
	tick := time.NewTicker(c.cfg.SeriesInterval)
	defer tick.Stop()
	for {
		c.runSeries(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.series.kick:
		}
	}
}

// runSeries advances every series as far as the series clock allows.
func (c *Coordinator) runSeries(ctx context.Context) {
	c.series.mu.Lock()
	names := make([]string, 0, len(c.series.byName))
	for n := range c.series.byName {
		names = append(names, n)
	}
	c.series.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		if ctx.Err() != nil {
			return
		}
		c.advanceSeries(ctx, n)
	}
}

// advanceSeries releases the due periods of one series, in order, and stops
// at the first that cannot be released (to be retried at the next tick).
func (c *Coordinator) advanceSeries(ctx context.Context, name string) {
	c.series.mu.Lock()
	r := c.series.byName[name]
	c.series.mu.Unlock()
	if r == nil {
		return
	}
	T := int(r.spec.GetPeriods())
	for {
		c.series.mu.Lock()
		t := len(r.Periods)
		c.series.mu.Unlock()
		if t >= T || ctx.Err() != nil {
			return
		}
		now := c.cfg.SeriesClock()
		due := c.due(r, t)
		if now.Before(due) {
			return
		}
		err := c.releasePeriod(ctx, r, t)
		c.series.mu.Lock()
		if err != nil {
			r.Failures++
			r.LastFailure = now.UnixMilli()
			r.Error = fmt.Sprintf("period %d (due %s) could not be released yet (attempt %d): %v", t, due.UTC().Format(time.RFC3339), r.Failures, err)
			r.Blocker = r.Error
			attempt := r.Failures
			serr := c.saveSeries(r)
			c.series.mu.Unlock()
			c.log.Warn("standing series period not released; retrying at the next tick", "series", name, "period", t, "attempt", attempt, "err", err)
			if serr != nil {
				c.log.Error("could not record a series", "series", name, "err", serr)
			}
			return
		}
		pr := periodRecord{Index: t, Released: c.cfg.Now().UnixMilli()}
		// Late: it failed before; or it was due when an attempt (at an
		// earlier period) failed, so it waited behind it; or it ran well
		// after it was due (the coordinator was down at the time).
		nowS, dueS := now.UTC().Format(time.RFC3339), due.UTC().Format(time.RFC3339)
		switch {
		case r.Failures > 0:
			pr.Late = true
			pr.Note = fmt.Sprintf("released late, at %s (series clock), after %d failed attempts; due %s; last error: %s", nowS, r.Failures, dueS, r.Error)
		case r.LastFailure != 0 && !due.After(time.UnixMilli(r.LastFailure)):
			pr.Late = true
			pr.Note = fmt.Sprintf("released late, at %s (series clock); due %s, it waited behind an earlier period that could not be released: %s", nowS, dueS, r.Blocker)
		case !due.After(time.UnixMilli(r.Registered)):
			pr.Note = fmt.Sprintf("released at registration (due %s, before the series was registered): a backfill", dueS)
		case now.Sub(due) > c.cfg.SeriesInterval+c.cfg.Deadline:
			pr.Late = true
			pr.Note = fmt.Sprintf("released late, at %s (series clock); due %s: a missed period (the coordinator was not running), run when it was back", nowS, dueS)
		}
		r.Periods = append(r.Periods, pr)
		r.Error, r.Failures = "", 0
		fired := c.checkAlerts(r, t)
		serr := c.saveSeries(r)
		c.series.mu.Unlock()
		if serr != nil {
			c.log.Error("could not record a series", "series", name, "err", serr)
		}
		c.log.Info("standing series period released", "series", name, "period", t, "late", pr.Late)
		c.record(ctx, c.cfg.Identity.Name(), "series.period_released", protocol.SeriesReservationID(r.spec), map[string]any{
			"series": name, "period": t, "late": pr.Late, "note": pr.Note})
		for _, a := range fired {
			c.notifyAlert(ctx, r, a)
		}
	}
}

// releasePeriod releases every interval that ends at period t and is not
// released yet.
func (c *Coordinator) releasePeriod(ctx context.Context, r *seriesRecord, t int) error {
	for _, iv := range continual.Ending(t, int(r.spec.GetPeriods())) {
		c.series.mu.Lock()
		_, done := r.obs[iv]
		c.series.mu.Unlock()
		if done {
			continue
		}
		o, err := c.releaseInterval(ctx, r, iv)
		if err != nil {
			return fmt.Errorf("interval %s: %w", iv, err)
		}
		c.series.mu.Lock()
		r.Obs = append(r.Obs, *o)
		r.obs[iv] = len(r.Obs) - 1
		err = c.saveSeries(r)
		c.series.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// releaseInterval runs the query of one interval and waits for its release.
func (c *Coordinator) releaseInterval(ctx context.Context, r *seriesRecord, iv continual.Interval) (*obsRecord, error) {
	spec, err := protocol.SeriesQuery(r.spec, iv)
	if err != nil {
		return nil, err
	}
	id := protocol.SeriesQueryID(r.spec, iv)
	// Released before (the series record was not written after it: a
	// crash, or a release this record could not read): its result stands,
	// and the nodes would refuse a second release of the id anyway.
	if q, err := c.query(id); err == nil {
		if st, _ := q.snapshot(); st.State == coordinatorv1.State_STATE_DONE {
			return obsOf(r, iv, id, st.GetResult(), c.cfg.Now())
		}
	}
	st, err := c.submit(ctx, Analyst{Name: r.Owner, Role: r.Role}, spec, 0, runAs{fixedID: id,
		series: &nodev1.SeriesInterval{Spec: r.spec, Level: int32(iv.Level), Index: int32(iv.Index)}, sig: r.signature})
	if err != nil {
		return nil, err
	}
	q, err := c.query(st.GetQueryId())
	if err != nil {
		return nil, err
	}
	for {
		st, ch := q.snapshot()
		if terminal(st.State) {
			if st.State != coordinatorv1.State_STATE_DONE {
				return nil, fmt.Errorf("query %s: %s", id, st.GetError())
			}
			return obsOf(r, iv, id, st.GetResult(), c.cfg.Now())
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// obsOf reads the released count of every label (a label without a row
// counts as 0 with the noise of the others: the release holds every cell of
// the public domain, so this does not happen with the engines here).
func obsOf(r *seriesRecord, iv continual.Interval, id string, res *typesv1.Result, now time.Time) (*obsRecord, error) {
	o := &obsRecord{Level: iv.Level, Index: iv.Index, QueryID: id, Released: now.UnixMilli(),
		Values: make([]float64, len(r.Labels)), Vars: make([]float64, len(r.Labels))}
	seen := make([]bool, len(r.Labels))
	for _, row := range res.GetRows() {
		li := 0
		if r.KeyColumn != "" {
			if len(row.GetKeys()) != 1 {
				return nil, fmt.Errorf("release of %s: a row with %d keys", id, len(row.GetKeys()))
			}
			li = slices.Index(r.Labels, row.GetKeys()[0])
			if li < 0 {
				return nil, fmt.Errorf("release of %s: label %q is not in the series' domain", id, row.GetKeys()[0])
			}
		}
		if len(row.GetValues()) != 1 {
			return nil, fmt.Errorf("release of %s: a row with %d values", id, len(row.GetValues()))
		}
		n := row.GetValues()[0]
		if math.IsNaN(n.GetValue()) || !(n.GetVariance() > 0) {
			return nil, fmt.Errorf("release of %s: label %s has no value or noise variance", id, row.GetKeys())
		}
		o.Values[li], o.Vars[li], seen[li] = n.GetValue(), n.GetVariance(), true
	}
	for li, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("release of %s: no row for label %s", id, r.Labels[li])
		}
	}
	return o, nil
}
