package stats

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// SurvivalData names the survival columns of a study table.
type SurvivalData struct {
	Table string // Required
	Where string
	// Time is a number column with a public range (follow-up time);
	// Required. Times are grouped into bins of Width (default 1), so with
	// whole-day times and width 1 the estimates are exact.
	Time  string
	Width float64
	// Status is a column with a public domain (GROUP BY status) and Event
	// its label for an event (e.g. "2" for survival::lung's status).
	// Every other label is a censoring. Required.
	Status, Event string
}

func (d *SurvivalData) check() error {
	if d.Width == 0 {
		d.Width = 1
	}
	if d.Table == "" || d.Time == "" || d.Status == "" || d.Event == "" || !(d.Width > 0) {
		return fmt.Errorf("%w: table, time, status and event are required", ErrInput)
	}
	return nil
}

// KMCurve is a Kaplan-Meier curve of one stratum.
type KMCurve struct {
	Stratum string // "" without strata
	// Times are the bins with at least one (released) event; Survival the
	// estimate just after each, Lower and Upper its 95% interval (Greenwood
	// variance, log scale as R's survfit, widened by the noise).
	Times, Survival, Lower, Upper []float64
	// AtRisk is the released number at risk at the start of follow-up.
	AtRisk float64
	// Median is the median survival time with its interval (NaN when the
	// curve or its bound does not reach 0.5).
	Median Estimate
}

// KMOptions configure KaplanMeier.
type KMOptions struct {
	SurvivalData
	// Strata is a column with a public domain to stratify by. Optional.
	Strata string
	Budget Budget
}

// KaplanMeier estimates survival curves in one round: `SELECT [strata,]
// status, bin(time, w), COUNT(*) ... GROUP BY [strata,] status, bin`, one
// count measure (sensitivity 1, one row per patient), the whole budget.
// Per stratum, events d_t and exits (events and censorings) per bin are
// released; the numbers at risk are suffix sums of the exits, so their
// noise variance grows with the number of later bins. S(t) = Π(1 − d/n)
// with Greenwood's variance S²Σd/(n(n−d)). Median survival is the first
// time S ≤ 0.5 (the middle of the flat stretch when S is exactly 0.5, as
// R's survfit), its interval where the log-scale interval of S crosses 0.5
// (Brookmeyer-Crowley); the noise is propagated by simulation and widens
// every interval. It refuses when the noise of the number at risk at the
// start exceeds a tenth of it.
func KaplanMeier(ctx context.Context, q Querier, o KMOptions) ([]KMCurve, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	sel, group := "", ""
	if o.Strata != "" {
		sel, group = o.Strata+" AS stratum, ", "stratum, "
	}
	sql := "SELECT " + sel + o.Status + " AS status, bin(" + o.Time + ", " + num(o.Width) + ") AS t, COUNT(*)" +
		from(o.Table, o.Where) + " GROUP BY " + group + "status, t"
	rel, err := q.Query(ctx, o.Budget.request(sql))
	if err != nil {
		return nil, err
	}
	strata, err := survivalCells(rel, o.Strata != "", o.Event, 1)
	if err != nil {
		return nil, err
	}
	var out []KMCurve
	for _, s := range strata {
		c, err := kmCurve(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// stratumCells holds, for one stratum, per time bin (ascending), the
// released event and exit values of each measure.
type stratumCells struct {
	name  string
	times []float64
	// event[m][b] and exit[m][b]: measure m at bin b (exit includes the
	// events).
	event, exit [][]Noisy
}

// survivalCells splits a release keyed by ([stratum,] status, bin) into
// strata of per-bin event and exit sums of nm measures.
func survivalCells(rel *Release, strata bool, event string, nm int) ([]*stratumCells, error) {
	want := 2
	if strata {
		want = 3
	}
	if rel.KeyColumns != want {
		return nil, fmt.Errorf("%w: want %d key columns", ErrRelease, want)
	}
	byName := map[string]*stratumCells{}
	var order []*stratumCells
	binIndex := map[string]map[float64]int{}
	for _, row := range rel.Rows {
		name := ""
		if strata {
			name = row.Keys[0]
		}
		s := byName[name]
		if s == nil {
			s = &stratumCells{name: name, event: make([][]Noisy, nm), exit: make([][]Noisy, nm)}
			byName[name] = s
			order = append(order, s)
			binIndex[name] = map[float64]int{}
		}
		status, bin := row.Keys[len(row.Keys)-2], row.Keys[len(row.Keys)-1]
		t, err := strconv.ParseFloat(bin, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: time bin %q", ErrRelease, bin)
		}
		b, ok := binIndex[name][t]
		if !ok {
			b = len(s.times)
			binIndex[name][t] = b
			s.times = append(s.times, t)
			for m := range nm {
				s.event[m] = append(s.event[m], Noisy{})
				s.exit[m] = append(s.exit[m], Noisy{})
			}
		}
		if len(row.Values) != nm {
			return nil, fmt.Errorf("%w: want %d values per cell", ErrRelease, nm)
		}
		for m, v := range row.Values {
			if v.Missing {
				return nil, fmt.Errorf("%w: a value was withheld (small-count threshold)", ErrRelease)
			}
			s.exit[m][b].Value += v.Value
			s.exit[m][b].Var += v.Var
			if status == event {
				s.event[m][b] = v
			}
		}
	}
	for _, s := range order {
		if !sort.Float64sAreSorted(s.times) {
			return nil, fmt.Errorf("%w: time bins out of order", ErrRelease)
		}
	}
	return order, nil
}

// km computes the curve from per-bin events and exits (flattened: events
// then exits). It returns the times with events, S, and the Greenwood
// log-scale bounds.
func km(times, v []float64) (ts, s, lo, hi []float64, atRisk float64) {
	nb := len(times)
	d, x := v[:nb], v[nb:]
	risk := make([]float64, nb+1)
	for b := nb - 1; b >= 0; b-- {
		risk[b] = risk[b+1] + x[b]
	}
	surv, gw := 1.0, 0.0
	for b := range nb {
		n := risk[b]
		dd := math.Max(0, d[b])
		if dd < 0.5 || n <= 0 {
			continue
		}
		dd = math.Min(dd, n)
		surv *= 1 - dd/n
		if n > dd {
			gw += dd / (n * (n - dd))
		}
		ts = append(ts, times[b])
		s = append(s, surv)
		if surv > 0 {
			w := z975 * math.Sqrt(gw)
			lo = append(lo, surv*math.Exp(-w))
			hi = append(hi, math.Min(1, surv*math.Exp(w)))
		} else {
			lo, hi = append(lo, 0), append(hi, 0)
		}
	}
	return ts, s, lo, hi, risk[0]
}

// firstBelow returns the first time at which f ≤ 0.5; when f is exactly
// 0.5 there, the middle between that time and the next.
func firstBelow(ts, f []float64) float64 {
	for i, v := range f {
		if math.Abs(v-0.5) < 1e-9 {
			if i+1 < len(ts) {
				return (ts[i] + ts[i+1]) / 2
			}
			return ts[i]
		}
		if v < 0.5 {
			return ts[i]
		}
	}
	return math.NaN()
}

func kmCurve(s *stratumCells) (KMCurve, error) {
	vals := append(append([]Noisy(nil), s.event[0]...), s.exit[0]...)
	var startVar float64
	for _, v := range s.exit[0] {
		startVar += v.Var
	}
	ts, surv, lo, hi, n0 := km(s.times, values(vals))
	if math.Sqrt(startVar) > n0/10 {
		return KMCurve{}, fmt.Errorf("%w: stratum %q: the noise of the number at risk (σ = %.1f, a sum over %d time bins) exceeds a tenth of it (%.0f); raise epsilon or widen the time bins", ErrBudget, s.name, math.Sqrt(startVar), len(s.times), n0)
	}
	c := KMCurve{Stratum: s.name, Times: ts, Survival: surv, Lower: lo, Upper: hi, AtRisk: n0}
	med := firstBelow(ts, surv)
	medLo, medHi := firstBelow(ts, lo), firstBelow(ts, hi)
	// The noise: simulate the whole estimate, take the outer quantiles.
	_, qlo, qhi, _ := simulate(vals, 400, func(v []float64) ([]float64, bool) {
		t2, s2, l2, h2, _ := km(s.times, v)
		return []float64{firstBelow(t2, s2), firstBelow(t2, l2), firstBelow(t2, h2)}, true
	})
	if !math.IsNaN(qlo[2]) {
		medLo = math.Min(medLo, qlo[2])
	}
	if !math.IsNaN(qhi[1]) && !math.IsNaN(medHi) {
		medHi = math.Max(medHi, qhi[1])
	}
	se := math.NaN()
	if !math.IsNaN(medLo) && !math.IsNaN(medHi) {
		se = (medHi - medLo) / (2 * z975)
	}
	c.Median = Estimate{Name: "km.median", Value: med, SE: se, CILow: medLo, CIHigh: medHi}
	// Widen the pointwise bounds by the noise.
	_, slo, shi, _ := simulate(vals, 200, func(v []float64) ([]float64, bool) {
		t2, s2, _, _, _ := km(s.times, v)
		out := make([]float64, len(ts))
		j := 0
		cur := 1.0
		for i, t := range ts {
			for j < len(t2) && t2[j] <= t {
				cur = s2[j]
				j++
			}
			out[i] = cur
		}
		return out, true
	})
	for i := range ts {
		c.Lower[i] = math.Min(c.Lower[i], slo[i])
		c.Upper[i] = math.Max(c.Upper[i], shi[i])
	}
	return c, nil
}

// CoxOptions configure Cox.
type CoxOptions struct {
	SurvivalData
	// Covariates of the model (no intercept). Required.
	Covariates []Covariate
	// Rounds of Newton-Raphson, one query each. Defaults to 5.
	Rounds int
	Budget Budget
	// Prefix names the estimates. Defaults to "cox".
	Prefix string
}

// Cox fits a Cox proportional hazards model (Efron's method for ties, as
// R's coxph) by federated Newton-Raphson. Round r, at the current β
// (public), releases per (status, time bin): the count, Σz_j, Σe, Σz_j e
// and Σz_j z_k e with e = EXP(zᵀβ) on the standardised covariates (|z| ≤
// 1, so e ≤ M = exp(Σ|β_j|) and each sum is clamped to its exact bound:
// sensitivities 1, 1, M, M, M), 3 + 2p + p(p+1)/2 measures sharing the
// round's budget; the last round gets half the budget, the earlier ones
// share the rest (Budget.Newton). Risk-set sums are
// suffix sums over the bins of the exit sums; with d events in a bin,
// Efron's score and information use the risk sums minus l/d of the event
// sums, l = 0..d−1. Standard errors add the inverse information and the
// noise variance of the last step (simulated).
func Cox(ctx context.Context, q Querier, o CoxOptions) (*Fit, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = "cox"
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	p := len(o.Covariates)
	if p == 0 || o.Rounds < 1 || o.Rounds > 50 {
		return nil, fmt.Errorf("%w: covariates and 1-50 rounds are required", ErrInput)
	}
	for _, c := range o.Covariates {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	zs := make([]string, p)
	for j, c := range o.Covariates {
		zs[j] = "(" + c.z() + ")"
	}
	nm := 2 + 2*p + p*(p+1)/2
	round := func(ctx context.Context, r int, beta []float64, b Budget) (*newtonRelease, error) {
		bound := 0.0
		terms := make([]string, p)
		for j := range p {
			bound += math.Abs(beta[j])
			terms[j] = "(" + num(beta[j]) + ") * " + zs[j]
		}
		mx := math.Exp(bound) * (1 + 1e-9)
		e := "EXP(" + strings.Join(terms, " + ") + ")"
		items := []string{"COUNT(*)"}
		for j := range p {
			items = append(items, sumSQL(zs[j], -1, 1))
		}
		items = append(items, sumSQL(e, 0, mx))
		for j := range p {
			items = append(items, sumSQL(zs[j]+" * "+e, -mx, mx))
		}
		for j := range p {
			for k := j; k < p; k++ {
				items = append(items, sumSQL(zs[j]+" * "+zs[k]+" * "+e, -mx, mx))
			}
		}
		sql := "SELECT " + o.Status + " AS status, bin(" + o.Time + ", " + num(o.Width) + ") AS t, " + strings.Join(items, ", ") +
			from(o.Table, o.Where) + " GROUP BY status, t"
		rel, err := q.Query(ctx, b.request(sql))
		if err != nil {
			return nil, fmt.Errorf("cox round %d: %w", r+1, err)
		}
		cells, err := survivalCells(rel, false, o.Event, len(items))
		if err != nil {
			return nil, err
		}
		nb := len(cells[0].times)
		return &newtonRelease{vals: coxFlatten(cells[0]),
			step: func(v, beta []float64) ([]float64, []float64, bool) { return coxStep(v, nb, p, beta) },
			size: fmt.Sprintf("%d rounds, %d measures over %d time bins each); raise epsilon or widen the time bins", o.Rounds, nm, nb)}, nil
	}
	a := make([]float64, p*p)
	for j, c := range o.Covariates {
		a[j*p+j] = 1 / c.half()
	}
	m := newtonModel{matrix: "information matrix", rounds: o.Rounds, budget: o.Budget, dim: p, unscale: a, draws: 300, round: round}
	return m.fit(ctx, o.Prefix, covNames(o.Covariates))
}

// coxFlatten lays out a stratum's cells as: for each measure, the event
// values of every bin, then the exit values of every bin.
func coxFlatten(s *stratumCells) []Noisy {
	var out []Noisy
	for m := range s.event {
		out = append(out, s.event[m]...)
		out = append(out, s.exit[m]...)
	}
	return out
}

// coxStep computes Efron's score and information at beta from the
// flattened cells and returns beta + I⁻¹U and I⁻¹.
func coxStep(v []float64, nb, p int, beta []float64) (next, inv []float64, ok bool) {
	// Measure m's events at v[2m·nb : (2m+1)·nb], exits after them.
	ev := func(m int) []float64 { return v[2*m*nb : (2*m+1)*nb] }
	ex := func(m int) []float64 { return v[(2*m+1)*nb : (2*m+2)*nb] }
	mCount, mZ, mE := 0, 1, 1+p
	mZE := func(j int) int { return 2 + p + j }
	pairs := make([][2]int, 0, p*(p+1)/2)
	for j := range p {
		for k := j; k < p; k++ {
			pairs = append(pairs, [2]int{j, k})
		}
	}
	mZZE := func(i int) int { return 2 + 2*p + i }
	// Suffix sums of the exits: risk-set sums.
	r0 := make([]float64, nb+1)
	r1 := make([][]float64, p)
	r2 := make([][]float64, len(pairs))
	for j := range p {
		r1[j] = make([]float64, nb+1)
	}
	for i := range pairs {
		r2[i] = make([]float64, nb+1)
	}
	for b := nb - 1; b >= 0; b-- {
		r0[b] = r0[b+1] + ex(mE)[b]
		for j := range p {
			r1[j][b] = r1[j][b+1] + ex(mZE(j))[b]
		}
		for i := range pairs {
			r2[i][b] = r2[i][b+1] + ex(mZZE(i))[b]
		}
	}
	u := make([]float64, p)
	info := make([]float64, p*p)
	s1 := make([]float64, p)
	for b := range nb {
		d := math.Round(math.Max(0, ev(mCount)[b]))
		if d < 1 {
			continue
		}
		for j := range p {
			u[j] += ev(mZ + j)[b]
		}
		for l := 0.0; l < d; l++ {
			a := l / d
			s0 := r0[b] - a*ev(mE)[b]
			if !(s0 > 0) {
				continue
			}
			// The weighted means of z_j and z_j z_k over the risk set
			// lie in [-1, 1] (|z| ≤ 1) and the weighted variance is not
			// negative: the noisy ratios are projected there, which
			// changes nothing on exact sums and keeps a bin whose noisy
			// risk sum s0 is close to 0 from swamping the others.
			for j := range p {
				s1[j] = clamp((r1[j][b]-a*ev(mZE(j))[b])/s0, -1, 1)
				u[j] -= s1[j]
			}
			for i, pr := range pairs {
				x := clamp((r2[i][b]-a*ev(mZZE(i))[b])/s0, -1, 1) - s1[pr[0]]*s1[pr[1]]
				if pr[0] == pr[1] {
					x = max(x, 0)
				}
				info[pr[0]*p+pr[1]] += x
				if pr[0] != pr[1] {
					info[pr[1]*p+pr[0]] += x
				}
			}
		}
	}
	inv, ok = invert(info, p)
	if !ok {
		return nil, nil, false
	}
	step := matVec(inv, u)
	// Damped Newton: the next round's sensitivity grows as exp(Σ|β_j|),
	// so one step moves no coefficient by more than coxMaxStep (on the
	// standardised scale), the direction kept.
	longest := 0.0
	for _, d := range step {
		longest = max(longest, math.Abs(d))
	}
	if !(longest <= coxMaxStep) {
		if math.IsNaN(longest) {
			return nil, nil, false
		}
		for j := range step {
			step[j] *= coxMaxStep / longest
		}
	}
	next = make([]float64, p)
	for j := range p {
		next[j] = beta[j] + step[j]
	}
	return next, inv, true
}

// coxMaxStep is the largest change of one standardised Cox coefficient in
// one round: a hazard ratio of e² across a covariate's half range. A true
// coefficient is seldom beyond 3 (e⁶); a step past it comes from noise in a
// near-singular information matrix, and taking it whole would multiply the
// next round's sensitivity, exp(Σ|β|), by as much.
const coxMaxStep = 2.0

// clamp returns x in [lo, hi] (NaN stays NaN).
func clamp(x, lo, hi float64) float64 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}
