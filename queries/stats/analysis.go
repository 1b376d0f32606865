package stats

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fedstat/fedstat/internal/cdm"
)

// ErrMethod marks an analysis of a method the driver does not run.
var ErrMethod = errors.New("stats: no such method")

// Methods are the methods an Analysis runs.
var Methods = []string{"km", "cox", "logit", "linreg"}

// Analysis is one run of a method on a study table, as `fedstat stats
// km|cox|logit|linreg` and the coordinator's POST /v1/stats/{method} ask
// for it: both prepare and run it here, so that they check the same rules
// and name the estimates alike.
type Analysis struct {
	// Method is km, cox, logit or linreg. Required.
	Method string
	// Table is the study table. Required.
	Table string
	// Where is an optional SQL condition selecting the rows.
	Where string
	// Budget is the privacy budget of the whole analysis (all its rounds).
	// Required.
	Budget Budget

	// Survival (km, cox): the follow-up time column, its bin width, the
	// status column and its value for an event (SurvivalData); for km an
	// optional column to stratify by.
	Time   string
	Width  float64
	Status string
	Event  string
	Strata string

	// Outcome is logistic regression's 0/1 outcome: a column or a
	// condition (SQL).
	Outcome string
	// Model is the terms of a regression (logit, linreg, cox); linear
	// regression's outcome is Model.Outcome. Built by Prepare (Model.Build).
	Model Model
	// Rounds of Newton-Raphson (logit, cox): 0 for the method's default,
	// at most MaxRounds.
	Rounds int
}

// Prepared is an analysis whose request was checked and whose model was
// built. Nothing has been queried yet.
type Prepared struct {
	a       Analysis
	outcome Covariate
	cov     []Covariate
}

// Prepare checks a and builds its model against the study's public schema
// (nil when there is none: covariates then need their ranges, and factors
// are refused). It runs no query: whatever it refuses costs no budget. Its
// errors are a *RequestError (wrapping ErrInput) or ErrMethod.
func (a Analysis) Prepare(sc *cdm.StudySchema) (*Prepared, error) {
	if a.Rounds < 0 || a.Rounds > MaxRounds {
		return nil, refuse("rounds: at most %d", MaxRounds)
	}
	p := &Prepared{a: a}
	var err error
	switch a.Method {
	case "km":
	case "cox", "logit":
		_, p.cov, err = Model{Covariates: a.Model.Covariates, Factors: a.Model.Factors}.Build(sc)
	case "linreg":
		if a.Model.Outcome.Name == "" {
			return nil, refuse("outcome: a number column is required")
		}
		p.outcome, p.cov, err = a.Model.Build(sc)
	default:
		return nil, ErrMethod
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Covariates returns the model's terms, factors expanded (nil for km).
func (p *Prepared) Covariates() []Covariate { return append([]Covariate(nil), p.cov...) }

// Report is what an analysis found.
type Report struct {
	// Estimates are the statistics, each with its standard error and 95%
	// interval including the DP noise. km: per stratum, in the order of
	// Curves, km.median then km.at_risk (suffixed .<strata>=<value> when
	// stratified, see StratumSuffix); regressions: the coefficients
	// (<method>.intercept first for logit and linreg, then <method>.<term>).
	Estimates []Estimate
	// NoiseSE (regressions) is the part of each coefficient's standard
	// error due to the DP noise alone, aligned with Estimates.
	NoiseSE []float64
	// Curves (km) are the Kaplan-Meier curves, one per stratum, each Median
	// named as in Estimates.
	Curves []KMCurve
	// N (linreg) is the released number of rows (zero otherwise).
	N Noisy
}

// StratumSuffix is the suffix of a km statistic's name for a stratum:
// ".<strata>=<value>", or "" without strata.
func StratumSuffix(strata, stratum string) string {
	if strata == "" {
		return ""
	}
	return "." + strata + "=" + stratum
}

// Run runs the analysis: its rounds through q, one query at a time. It
// blocks until the last round is released or a round fails, and honours ctx
// (through q).
func (p *Prepared) Run(ctx context.Context, q Querier) (*Report, error) {
	a := p.a
	q = wellFormed(q)
	surv := SurvivalData{Table: a.Table, Where: a.Where, Time: a.Time, Status: a.Status, Event: a.Event, Width: a.Width}
	out := &Report{}
	fit := func(f *Fit, err error) (*Report, error) {
		if err != nil {
			return nil, err
		}
		out.Estimates, out.NoiseSE, out.N = f.Coefficients, f.NoiseSE, f.N
		return out, nil
	}
	switch a.Method {
	case "km":
		curves, err := KaplanMeier(ctx, q, KMOptions{SurvivalData: surv, Strata: a.Strata, Budget: a.Budget})
		if err != nil {
			return nil, err
		}
		nan := math.NaN()
		for _, k := range curves {
			suffix := StratumSuffix(a.Strata, k.Stratum)
			k.Median.Name = "km.median" + suffix
			out.Estimates = append(out.Estimates, k.Median,
				Estimate{Name: "km.at_risk" + suffix, Value: k.AtRisk, SE: nan, CILow: nan, CIHigh: nan})
			out.Curves = append(out.Curves, k)
		}
		return out, nil
	case "cox":
		return fit(Cox(ctx, q, CoxOptions{SurvivalData: surv, Covariates: p.cov, Rounds: a.Rounds, Budget: a.Budget}))
	case "logit":
		return fit(Logistic(ctx, q, LogisticOptions{Table: a.Table, Where: a.Where, Outcome: a.Outcome, Covariates: p.cov, Rounds: a.Rounds, Budget: a.Budget}))
	case "linreg":
		return fit(Linear(ctx, q, LinearOptions{Table: a.Table, Where: a.Where, Outcome: p.outcome, Covariates: p.cov, Budget: a.Budget}))
	}
	return nil, ErrMethod
}

// wellFormed checks the shape of every release q returns, before a method
// reads it: the key columns, then the values, named in Columns, and each row
// with one key per key column and one value per value column. A release
// may come from elsewhere than the network (a node replays an analysis on
// results the coordinator forwards), and the methods index rows by it.
func wellFormed(q Querier) Querier {
	return QuerierFunc(func(ctx context.Context, r Request) (*Release, error) {
		rel, err := q.Query(ctx, r)
		if err != nil || rel == nil {
			return rel, err
		}
		k := rel.KeyColumns
		if k < 0 || k > len(rel.Columns) {
			return nil, fmt.Errorf("%w: %d key columns of %d columns", ErrRelease, k, len(rel.Columns))
		}
		for i, row := range rel.Rows {
			if len(row.Keys) != k || len(row.Values) != len(rel.Columns)-k {
				return nil, fmt.Errorf("%w: row %d has %d keys and %d values, the columns %d and %d", ErrRelease, i+1, len(row.Keys), len(row.Values), k, len(rel.Columns)-k)
			}
		}
		return rel, nil
	})
}
