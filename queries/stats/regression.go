package stats

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Covariate is a term of a model: a numeric SQL expression on the table
// with its public range [Lo, Hi] (from the study schema; a condition such
// as `race = 2` is a 0/1 indicator with range [0, 1]). Queries use the
// standardised z = (Expr − c)/h ∈ [−1, 1], c = (Lo+Hi)/2, h = (Hi−Lo)/2,
// so every sum has a per-row bound of 1 and the sensitivity does not depend
// on the units; estimates are transformed back to the original units.
type Covariate struct {
	Name   string // output name, e.g. "age", "race2"
	Expr   string // SQL, e.g. "age", "race = 2"
	Lo, Hi float64
}

func (c Covariate) check() error {
	if c.Name == "" || c.Expr == "" || !(c.Lo < c.Hi) || math.IsInf(c.Lo, 0) || math.IsInf(c.Hi, 0) {
		return fmt.Errorf("%w: covariate %q needs an expression and a range lo < hi", ErrInput, c.Name)
	}
	return nil
}

// Factor returns the terms of a categorical study column: one 0/1
// indicator `col = level` per level but the first (the reference), named
// col.Name + level ("race2", "race3"). The levels are an int column's whole
// numbers (at most 101 of them) or a string column's listed values.
func Factor(col *cdm.StudyColumn) ([]Covariate, error) {
	levels := col.Levels()
	if levels == nil {
		return nil, fmt.Errorf("%w: factor %s needs an int column with a small range or a string column with listed values", ErrInput, col.Name)
	}
	var out []Covariate
	for _, l := range levels[1:] {
		lit := l
		if col.Type == cdm.StudyString {
			lit = "'" + strings.ReplaceAll(l, "'", "''") + "'"
		}
		out = append(out, Covariate{Name: col.Name + l, Expr: col.Name + " = " + lit, Lo: 0, Hi: 1})
	}
	return out, nil
}

func (c Covariate) center() float64 { return (c.Lo + c.Hi) / 2 }
func (c Covariate) half() float64   { return (c.Hi - c.Lo) / 2 }

// z returns the SQL of the standardised covariate.
func (c Covariate) z() string {
	return "((" + c.Expr + ") - " + num(c.center()) + ") / " + num(c.half())
}

func from(table, where string) string {
	s := " FROM " + table
	if strings.TrimSpace(where) != "" {
		s += " WHERE " + where
	}
	return s
}

// unscale maps coefficients β on the standardised covariates (intercept
// first) to the original units: b_j = s·β_j/h_j and
// b_0 = c_y + s·(β_0 − Σ β_j c_j/h_j), with s the outcome's scale (1 and
// c_y = 0 for logistic regression). It returns the matrix A with b = Aβ +
// offset.
func unscale(cov []Covariate, s float64) []float64 {
	q := len(cov) + 1
	a := make([]float64, q*q)
	a[0] = s
	for j, c := range cov {
		a[0*q+j+1] = -s * c.center() / c.half()
		a[(j+1)*q+j+1] = s / c.half()
	}
	return a
}

// covTransform returns A·V·Aᵀ for q×q matrices.
func covTransform(a, v []float64, q int) []float64 {
	av := make([]float64, q*q)
	for i := range q {
		for j := range q {
			for k := range q {
				av[i*q+j] += a[i*q+k] * v[k*q+j]
			}
		}
	}
	out := make([]float64, q*q)
	for i := range q {
		for j := range q {
			for k := range q {
				out[i*q+j] += av[i*q+k] * a[j*q+k]
			}
		}
	}
	return out
}

// Fit is a fitted regression: one estimate per coefficient (intercept
// first), named Prefix + "." + the covariate's name ("intercept" for the
// intercept).
type Fit struct {
	Coefficients []Estimate
	// N is the released number of rows used.
	N Noisy
	// Rounds is the number of queries the fit made.
	Rounds int
	// NoiseSE is the part of each coefficient's standard error that comes
	// from the DP noise alone.
	NoiseSE []float64
}

// LinearOptions configure Linear.
type LinearOptions struct {
	Table string // Required
	Where string // optional SQL condition
	// Outcome is the response with its public range. Required.
	Outcome Covariate
	// Covariates are the regressors (an intercept is always added).
	// Required.
	Covariates []Covariate
	Budget     Budget
	// Prefix names the estimates. Defaults to "linreg".
	Prefix string
}

// Linear fits y = Xβ + ε by ordinary least squares in one round: the query
// releases N, Σz_j, Σz_j z_k (j ≤ k), Σy, Σz_j y and Σy² on the
// standardised variables, each a sum with per-row bound 1 (sensitivity 1
// per measure, one row per patient), the budget split equally over the
// 2 + 2p + p(p+1)/2 measures. Standard errors add the classical σ²(XᵀX)⁻¹
// and the noise variance propagated by simulation.
func Linear(ctx context.Context, q Querier, o LinearOptions) (*Fit, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = "linreg"
	}
	if o.Table == "" || len(o.Covariates) == 0 {
		return nil, fmt.Errorf("%w: a table and at least one covariate are required", ErrInput)
	}
	for _, c := range append([]Covariate{o.Outcome}, o.Covariates...) {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	p := len(o.Covariates)
	y := o.Outcome.z()
	items := []string{"COUNT(*)"}
	for _, c := range o.Covariates {
		items = append(items, sumSQL(c.z(), -1, 1))
	}
	for j := range p {
		for k := j; k < p; k++ {
			items = append(items, sumSQL("("+o.Covariates[j].z()+") * ("+o.Covariates[k].z()+")", -1, 1))
		}
	}
	items = append(items, sumSQL(y, -1, 1))
	for _, c := range o.Covariates {
		items = append(items, sumSQL("("+c.z()+") * ("+y+")", -1, 1))
	}
	items = append(items, sumSQL("("+y+") * ("+y+")", 0, 1))
	rel, err := q.Query(ctx, o.Budget.request("SELECT "+strings.Join(items, ", ")+from(o.Table, o.Where)))
	if err != nil {
		return nil, err
	}
	vals, err := single(rel, len(items))
	if err != nil {
		return nil, err
	}
	qq := p + 1
	a := unscale(o.Covariates, o.Outcome.half())
	solve := func(v []float64) (coef, sampVar []float64, ok bool) {
		xtx := make([]float64, qq*qq)
		xtx[0] = v[0]
		for j := range p {
			xtx[j+1], xtx[(j+1)*qq] = v[1+j], v[1+j]
		}
		i := 1 + p
		for j := range p {
			for k := j; k < p; k++ {
				xtx[(j+1)*qq+k+1], xtx[(k+1)*qq+j+1] = v[i], v[i]
				i++
			}
		}
		xty := make([]float64, qq)
		xty[0] = v[i]
		for j := range p {
			xty[j+1] = v[i+1+j]
		}
		yy := v[i+1+p]
		inv, ok := invert(xtx, qq)
		if !ok || v[0] <= float64(qq) {
			return nil, nil, false
		}
		beta := matVec(inv, xty)
		rss := yy
		for j := range qq {
			rss -= beta[j] * xty[j]
		}
		s2 := math.Max(rss, 0) / (v[0] - float64(qq))
		coef = matVec(a, beta)
		coef[0] += o.Outcome.center()
		vb := make([]float64, qq*qq)
		for j := range vb {
			vb[j] = s2 * inv[j]
		}
		vo := covTransform(a, vb, qq)
		sampVar = make([]float64, qq)
		for j := range qq {
			sampVar[j] = vo[j*qq+j]
		}
		return coef, sampVar, true
	}
	coef, sampVar, ok := solve(values(vals))
	if !ok {
		return nil, fmt.Errorf("%w: the released XᵀX is singular or N (%.0f) is too small for %d coefficients", ErrBudget, vals[0].Value, qq)
	}
	noiseSD, _, _, share := simulate(vals, 400, func(v []float64) ([]float64, bool) {
		c, _, ok := solve(v)
		return c, ok
	})
	if share < 0.9 {
		return nil, fmt.Errorf("%w: with this noise the normal equations are singular in %.0f%% of simulated releases", ErrBudget, 100*(1-share))
	}
	fit := &Fit{N: vals[0], Rounds: 1, NoiseSE: noiseSD}
	names := append([]string{"intercept"}, covNames(o.Covariates)...)
	for j := range qq {
		se := math.Sqrt(sampVar[j] + noiseSD[j]*noiseSD[j])
		fit.Coefficients = append(fit.Coefficients, normalEstimate(o.Prefix+"."+names[j], coef[j], se))
	}
	return fit, nil
}

func covNames(cs []Covariate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// LogisticOptions configure Logistic.
type LogisticOptions struct {
	Table string // Required
	Where string
	// Outcome is a 0/1 SQL expression (e.g. "low", "status = 2").
	// Required.
	Outcome string
	// Covariates are the regressors (an intercept is always added).
	// Required.
	Covariates []Covariate
	// Rounds is the number of Newton-Raphson steps, each one query.
	// Defaults to 6 (from β = 0 the fit has converged to well below the
	// noise after 5-6 steps on typical data).
	Rounds int
	Budget Budget
	// Prefix names the estimates. Defaults to "logit".
	Prefix string
}

// Logistic fits a logistic regression by federated Newton-Raphson. Round r
// evaluates, at the current β (public: it was computed from earlier
// releases), the gradient g_j = Σ z_j (y − p) and the Hessian
// H_jk = Σ z_j z_k p(1 − p), p = 1/(1 + EXP(−zᵀβ)), z_0 = 1, on the
// standardised covariates: per-row bounds 1 for g and 1/4 for H (one row per
// patient), 1 + p gradient and (p+1)(p+2)/2 Hessian measures sharing the
// round's budget equally. The last round gets half the budget and the earlier
// rounds share the other half (Budget.Newton; zCDP adds up). The step is β ← β + H⁻¹g. The standard errors add the inverse
// information H⁻¹ of the last round and the noise variance of the last
// step, propagated by simulation. It refuses when the noise in the first
// round's Hessian is large enough to make it singular.
func Logistic(ctx context.Context, q Querier, o LogisticOptions) (*Fit, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = "logit"
	}
	if o.Rounds == 0 {
		o.Rounds = 6
	}
	if o.Table == "" || o.Outcome == "" || len(o.Covariates) == 0 || o.Rounds < 1 || o.Rounds > 50 {
		return nil, fmt.Errorf("%w: a table, an outcome, covariates and 1-50 rounds are required", ErrInput)
	}
	for _, c := range o.Covariates {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	qq := len(o.Covariates) + 1
	zs := append([]string{"1"}, make([]string, qq-1)...)
	for j, c := range o.Covariates {
		zs[j+1] = "(" + c.z() + ")"
	}
	step := func(v []float64, b []float64) (next, inv []float64, ok bool) {
		g := v[:qq]
		h := make([]float64, qq*qq)
		i := qq
		for j := range qq {
			for k := j; k < qq; k++ {
				h[j*qq+k], h[k*qq+j] = v[i], v[i]
				i++
			}
		}
		inv, ok = invert(h, qq)
		if !ok {
			return nil, nil, false
		}
		d := matVec(inv, g)
		next = make([]float64, qq)
		for j := range qq {
			next[j] = b[j] + d[j]
		}
		return next, inv, true
	}
	round := func(ctx context.Context, r int, beta []float64, b Budget) (*newtonRelease, error) {
		terms := make([]string, qq)
		for j := range qq {
			terms[j] = "(" + num(beta[j]) + ") * " + zs[j]
		}
		eta := strings.Join(terms, " + ")
		prob := "(1 / (1 + EXP(-(" + eta + "))))"
		items := make([]string, 0, qq+qq*(qq+1)/2)
		for j := range qq {
			items = append(items, sumSQL(zs[j]+" * (("+o.Outcome+") - "+prob+")", -1, 1))
		}
		for j := range qq {
			for k := j; k < qq; k++ {
				items = append(items, sumSQL(zs[j]+" * "+zs[k]+" * "+prob+" * (1 - "+prob+")", -0.25, 0.25))
			}
		}
		rel, err := q.Query(ctx, b.request("SELECT "+strings.Join(items, ", ")+from(o.Table, o.Where)))
		if err != nil {
			return nil, fmt.Errorf("logistic round %d: %w", r+1, err)
		}
		vals, err := single(rel, len(items))
		if err != nil {
			return nil, err
		}
		return &newtonRelease{vals: vals, step: step,
			size: fmt.Sprintf("%d rounds of %d measures each); raise epsilon or use fewer covariates", o.Rounds, len(items))}, nil
	}
	m := newtonModel{matrix: "Hessian", rounds: o.Rounds, budget: o.Budget, dim: qq,
		unscale: unscale(o.Covariates, 1), draws: 400, round: round}
	return m.fit(ctx, o.Prefix, append([]string{"intercept"}, covNames(o.Covariates)...))
}

// newtonRelease is one round of a federated Newton-Raphson fit: the
// released values, the step on them, and the round's size for messages.
type newtonRelease struct {
	vals []Noisy
	// step returns, from values v (vals or a simulated draw of them) at β,
	// the next β = β + I⁻¹U and I⁻¹ (I the information matrix).
	step func(v, beta []float64) (next, inv []float64, ok bool)
	// size ends the refusal message of the first round: "6 rounds of 27
	// measures each); raise epsilon ...".
	size string
}

// newtonModel is a model fitted by federated Newton-Raphson (Logistic,
// Cox): round r releases the sums the step needs at the current β (public)
// with budget Budget.Newton(rounds)[r].
type newtonModel struct {
	matrix string // "Hessian", "information matrix": in refusals
	rounds int
	budget Budget
	dim    int // number of coefficients
	// unscale is A with the coefficients in the original units Aβ.
	unscale []float64
	// draws is the number of simulated releases for the noise SE.
	draws int
	// round runs round r (from 0) at β with budget b.
	round func(ctx context.Context, r int, beta []float64, b Budget) (*newtonRelease, error)
}

// fit runs the rounds from β = 0 and returns the estimates named prefix +
// "." + names[j]. It refuses when the noise in the first round's
// information is large enough to make it singular. The standard errors add
// the inverse information of the last round and the noise variance of the
// last step, propagated by simulation.
func (m newtonModel) fit(ctx context.Context, prefix string, names []string) (*Fit, error) {
	budgets := m.budget.Newton(m.rounds)
	beta := make([]float64, m.dim)
	var last *newtonRelease
	var lastBeta []float64
	for r := range m.rounds {
		rel, err := m.round(ctx, r, beta, budgets[r])
		if err != nil {
			return nil, err
		}
		if r == 0 {
			// Refuse when the noise could make the information singular.
			_, _, _, share := simulate(rel.vals, 200, func(v []float64) ([]float64, bool) {
				_, _, ok := rel.step(v, beta)
				return nil, ok
			})
			if share < 0.9 {
				return nil, fmt.Errorf("%w: at this budget the noise makes the %s singular in %.0f%% of simulated releases (%s", ErrBudget, m.matrix, 100*(1-share), rel.size)
			}
		}
		next, _, ok := rel.step(values(rel.vals), beta)
		if !ok {
			return nil, fmt.Errorf("%w: round %d: the released %s is singular", ErrBudget, r+1, m.matrix)
		}
		last, lastBeta = rel, beta
		beta = next
	}
	q := m.dim
	_, inv, _ := last.step(values(last.vals), lastBeta)
	sampV := covTransform(m.unscale, inv, q)
	coef := matVec(m.unscale, beta)
	noiseSD, _, _, share := simulate(last.vals, m.draws, func(v []float64) ([]float64, bool) {
		nb, _, ok := last.step(v, lastBeta)
		if !ok {
			return nil, false
		}
		return matVec(m.unscale, nb), true
	})
	if share < 0.9 {
		return nil, fmt.Errorf("%w: the last round's %s is singular in %.0f%% of simulated releases", ErrBudget, m.matrix, 100*(1-share))
	}
	fit := &Fit{Rounds: m.rounds, NoiseSE: noiseSD}
	for j := range q {
		se := math.Sqrt(sampV[j*q+j] + noiseSD[j]*noiseSD[j])
		fit.Coefficients = append(fit.Coefficients, normalEstimate(prefix+"."+names[j], coef[j], se))
	}
	return fit, nil
}
