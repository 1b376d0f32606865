package node

// The empirical privacy audit of issue 13: every mechanism kind a node runs
// goes through the node-side pipeline (noisyShare: exact aggregates, the
// minimum-cohort decision on a noisy count, the noise share on the plan's
// grid, the int64 slots) on two neighbouring inputs, many times, and
// internal/dpaudit bounds the privacy loss of what an attacker sees from
// below. The test fails when that bound exceeds what the node charges.
//
// # The simulated network
//
// A release sums the partials of m nodes; up to T−1 of them collude with the
// coordinator and know their own shares, so the attacker can subtract them:
// what is left is the target node's share plus the shares of the other
// m−T honest nodes. The audit simulates exactly that: the target node, whose
// data is D or D' (D plus one patient with the attributes that move the
// released vector most, beyond every contribution bound), runs noisyShare
// for D and for D' in every release, and each other honest node adds its own
// share of its own data. The other nodes' evaluation is deterministic, so
// each is evaluated once and only its noise is redrawn per release:
// dp.NoiseShare (and dp.NoisyCohort where the policy has a minimum cohort)
// on the cached eval.Exact, as noisyShare would call them. The other nodes'
// shares are shared between the D and D' release of a round (they do not
// depend on the target's data, and each bound concerns one input's releases,
// which are independent of one another). Encryption is exact, so the slots
// are summed in the clear.
//
// What the attacker tests is one number per release: the sum of the slots
// projected on the known difference of the two inputs' means, each slot
// weighted by the inverse of its noise variance (for Gaussian noise this is
// the Neyman–Pearson test), or "refused" when the target's minimum-cohort
// check refuses (the refusal reaches the analyst).
//
// # Pass and fail
//
// dpaudit splits the releases into a part that chooses the rejection set and
// a part that measures it with one-sided Clopper–Pearson bounds. The check
// takes them at confidence 1 − 1e-9 (Bonferroni over its four bounds): if
// the pipeline is (ε, δ)-DP at what the node charges, the check fails with
// probability at most 1e-9 per audit, whatever the mechanism. A run makes
// fewer than 50 audits, so a correct node fails a run with probability
// below 5e-8 (and the positive controls miss with probability below 1e-8).
// The noise comes from crypto/rand and cannot be seeded; these bounds are
// what make the test reliable. The table also gives the bound at 95%
// confidence, the usual figure of an audit. A bound below the charge is not
// a proof of privacy: the exact accountant (queries/dp
// TestReleasedNoiseMatchesCharge) is the proof for counts and sums.
//
// # Modes
//
//   - go test -race ./node/ (CI): a smoke run at m = 3 of three mechanisms
//     and the minimum-cohort control (a few seconds).
//   - go test -count=1 -run '^TestPrivacyAudit' ./node/ (scripts/test.sh, no
//     race detector): every mechanism at m = 3 and 10 and both controls,
//     about a minute on two cores.
//   - go test -count=1 -timeout 6h -run '^TestPrivacyAudit' -v ./node/
//     -audit.long (the flag after the package): every mechanism at m = 3, 10,
//     52 and 300 with many releases, and the controls at full size (about an
//     hour); TestPrivacyAudit logs the table of docs/privacy-audit.md.
//   - -audit.only '^(Kaplan-Meier round|min_cohort check)$' and -audit.nets 300
//     restrict any mode to some mechanisms and network sizes (to complete or
//     repeat rows of the table).
//
// # Positive controls
//
// TestPrivacyAuditCatchesLegacy* keep replicas of the two behaviours the
// audit of issue 13 found (before commits c332bce and a7a6469) and assert
// that the auditor catches them: the minimum cohort decided on the exact
// count with the refusal charged nothing (finding 3: the check fails in
// every mode), and each node rounding its noisy count to the integer grid
// (finding 2: the check fails in the long mode; the fast mode, which cannot
// afford the quarter-million releases that takes, asserts the 95% bound).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/dpaudit"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/stats"
	"github.com/fedstat/fedstat/queries/zcdp"
)

var (
	auditLong = flag.Bool("audit.long", false, "run the long privacy audit: every mechanism at m = 3, 10, 52 and 300 with many releases")
	auditOnly = flag.String("audit.only", "", "regular expression: audit only the mechanisms whose name it matches (any mode; names contain commas)")
	auditNets = flag.String("audit.nets", "", "comma-separated network sizes m: audit only these (any mode)")
)

const (
	// auditDelta is the δ of every audited plan.
	auditDelta = 1e-6
	// auditCheckConfidence is the confidence of the pass/fail check.
	auditCheckConfidence = 1 - 1e-9
	// auditMinCohort is the minimum cohort of the min_cohort policy.
	auditMinCohort = 20
)

var auditRef = cdm.DateFromYMD(2024, 1, 1)

// auditCase is one mechanism under audit.
type auditCase struct {
	name string
	sql  string
	eps  float64
	// minCohort sets the policy's minimum cohort (0: off) at every node.
	minCohort int
	// target is the target node's data without (D) or with (D') the audited
	// patient.
	target func(with bool) *cdm.Tables
}

// network is the size of a simulated release: m partials, threshold T.
type network struct{ m, T int }

func (n network) honest() int { return n.m - n.T + 1 }

// networkOf gives every audited m its threshold: T = 2 at m = 3, else 3
// (the 52-node FluSight network of the audit ran T = 3).
func networkOf(m int) network {
	if m <= 3 {
		return network{m, 2}
	}
	return network{m, 3}
}

// pipeline is the node side of a query as the audit runs it; the legacy
// controls swap in replicas of the old behaviour.
type pipeline struct {
	// target runs the target node on src and returns its slots, or
	// refused.
	target func(ctx context.Context, src DataSource, pol *Policy, p *plan.Plan) (slots []int64, refused bool, err error)
	// other is the share of a non-target honest node from its cached exact
	// aggregates.
	other func(p *plan.Plan, pol *Policy, e *eval.Exact) ([]int64, error)
	// quantum is the value of one unit of a slot of measure m.
	quantum func(m plan.Measure) float64
	// charged is the ε the node charges for p under pol.
	charged func(p *plan.Plan, pol *Policy) float64
}

// nodePipeline is the node as it is: noisyShare at the target.
var nodePipeline = pipeline{
	target: func(ctx context.Context, src DataSource, pol *Policy, p *plan.Plan) ([]int64, bool, error) {
		s, err := noisyShare(ctx, "target", src, pol, p)
		if errors.Is(err, errSmallCohort) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		return s.Slots(), false, nil
	},
	other: func(p *plan.Plan, pol *Policy, e *eval.Exact) ([]int64, error) {
		// What noisyShare does after its (deterministic) evaluation.
		if rho := pol.cohortRho(p); rho > 0 {
			c, err := dp.NoisyCohort(p, e, rho)
			if err != nil {
				return nil, err
			}
			if c.Counted && c.Noisy < float64(pol.MinCohort) {
				// The other nodes' cohorts are 18σ above the minimum.
				return nil, fmt.Errorf("an honest non-target node refused (noisy cohort %.1f)", c.Noisy)
			}
		}
		s, err := dp.NoiseShare(p, e)
		if err != nil {
			return nil, err
		}
		return s.Slots(), nil
	},
	quantum: func(m plan.Measure) float64 { return 1 / m.Scale },
	charged: func(p *plan.Plan, pol *Policy) float64 {
		if rho := pol.cohortRho(p); rho > 0 {
			return zcdp.EpsilonFromRho(p.Rho()+rho, p.Delta())
		}
		return p.Epsilon()
	},
}

// auditResult is one row of the table.
type auditResult struct {
	name     string
	nw       network
	releases int
	report   dpaudit.Result // 95%
	check    dpaudit.Result // auditCheckConfidence
	charged  float64
	// ideal is the same audit (95%) of the ideal mechanism: exact Gaussian
	// noise of the plan's σ on the target's exact change (and, with a
	// minimum cohort, an exact Gaussian check). idealEpsilon is that
	// mechanism's exact ε at δ (the Gaussian privacy profile, tighter than
	// the zCDP conversion the ledger charges).
	ideal        dpaudit.Result
	idealEpsilon float64
	elapsed      time.Duration
}

// runAudit simulates `releases` releases of c on nw through pl on D and D'
// and audits them; selection is dpaudit's SelectionShare (0: a half).
func runAudit(t *testing.T, c auditCase, nw network, releases int, pl pipeline, selection float64) auditResult {
	t.Helper()
	start := time.Now()
	ctx := context.Background()
	cat := auditCatalogue()
	p, err := plan.Build(plan.Request{SQL: c.sql, Epsilon: c.eps, Delta: auditDelta, MinNodes: nw.m, Threshold: nw.T, ReferenceDate: auditRef}, cat)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	pol := DefaultPolicy()
	pol.MinCohort = c.minCohort
	d, d2 := TablesOf(c.target(false)), TablesOf(c.target(true))

	// The attacker's statistic: slots in natural units, projected on the
	// difference of the means (the target's exact aggregates on D' minus
	// D), weighted by the inverse noise variance of the honest sum.
	exD, err := d.Evaluate(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	exD2, err := d2.Evaluate(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	ms := p.Measures()
	cells := p.Cells()
	w := make([]float64, p.VectorLen())
	moved := false
	before := exD.Values()
	mu2 := 0.0 // squared distance of the means in units of the noise
	for i, v := range exD2.Values() {
		m := ms[i/cells]
		diff := v - before[i]
		variance := float64(nw.honest()) * m.NodeSigma * m.NodeSigma
		w[i] = diff / variance * pl.quantum(m)
		mu2 += diff * diff / variance
		moved = moved || diff != 0
	}
	if !moved {
		t.Fatalf("%s: the audited patient does not move the release", c.name)
	}
	stat := func(total []int64) float64 {
		var s float64
		for i, v := range total {
			s += w[i] * float64(v)
		}
		return s
	}

	others := make([]*eval.Exact, nw.honest()-1)
	for i := range others {
		if others[i], err = eval.Evaluate(ctx, p, otherNode(i+1)); err != nil {
			t.Fatal(err)
		}
	}

	xs := make([]dpaudit.Outcome, releases)
	ys := make([]dpaudit.Outcome, releases)
	// The DP library draws under one global lock, so workers beyond a few
	// only contend.
	workers := min(runtime.GOMAXPROCS(0), 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	var stop atomic.Bool
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				stop.Store(true)
			}
			rest := make([]int64, p.VectorLen())
			sum := make([]int64, p.VectorLen())
			for r := wk; r < releases && !stop.Load(); r += workers {
				clear(rest)
				for _, e := range others {
					s, err := pl.other(p, pol, e)
					if err != nil {
						fail(err)
						return
					}
					for i, v := range s {
						rest[i] += v
					}
				}
				for j, src := range []TablesFunc{d, d2} {
					slots, refused, err := pl.target(ctx, src, pol, p)
					if err != nil {
						fail(err)
						return
					}
					o := dpaudit.Refusal
					if !refused {
						for i, v := range slots {
							sum[i] = rest[i] + v
						}
						o = dpaudit.Value(stat(sum))
					}
					if j == 0 {
						xs[r] = o
					} else {
						ys[r] = o
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("%s, m=%d: %v", c.name, nw.m, firstErr)
	}
	charged := pl.charged(p, pol)
	res := auditResult{name: c.name, nw: nw, releases: releases, charged: charged}
	for _, a := range []struct {
		conf float64
		out  *dpaudit.Result
	}{{0.95, &res.report}, {auditCheckConfidence, &res.check}} {
		if *a.out, err = dpaudit.Audit(xs, ys, dpaudit.Options{Delta: p.Delta(), Epsilon: charged, Confidence: a.conf, SelectionShare: selection}); err != nil {
			t.Fatal(err)
		}
	}
	res.ideal, res.idealEpsilon = idealAudit(t, p, pol, exD, exD2, math.Sqrt(mu2), releases, selection)
	res.elapsed = time.Since(start)
	return res
}

// idealAudit runs the same audit (95%) on the ideal mechanism: the
// projected release is N(0, 1) on D and N(mu, 1) on D' (exact Gaussian
// noise, seeded math/rand), and with a minimum cohort the check refuses
// when the exact cohort plus N(0, σ_c²), σ_c = sensitivity/√(2ρ_check), is
// below the minimum. It also returns the exact ε at δ of the Gaussian
// mechanism(s) behind it.
func idealAudit(t *testing.T, p *plan.Plan, pol *Policy, exD, exD2 *eval.Exact, mu float64, releases int, selection float64) (dpaudit.Result, float64) {
	r := rand.New(rand.NewPCG(uint64(releases), uint64(p.VectorLen())))
	rho := pol.cohortRho(p)
	cD, sens, _ := cohortOf(p, exD)
	cD2, _, _ := cohortOf(p, exD2)
	sigmaC := sens / math.Sqrt(2*rho)
	run := func(cohort, mean float64) dpaudit.Outcome {
		if rho > 0 && cohort+sigmaC*r.NormFloat64() < float64(pol.MinCohort) {
			return dpaudit.Refusal
		}
		return dpaudit.Value(mean + r.NormFloat64())
	}
	xs := make([]dpaudit.Outcome, releases)
	ys := make([]dpaudit.Outcome, releases)
	for i := range xs {
		xs[i], ys[i] = run(cD, 0), run(cD2, mu)
	}
	res, err := dpaudit.Audit(xs, ys, dpaudit.Options{Delta: p.Delta(), Epsilon: 0, SelectionShare: selection})
	if err != nil {
		t.Fatal(err)
	}
	muAll := mu
	if rho > 0 {
		// Two independent Gaussian mechanisms compose like one with the
		// root sum of squares of their mean shifts.
		muAll = math.Hypot(mu, math.Sqrt(2*rho))
	}
	return res, gaussianEpsilon(muAll, p.Delta())
}

// gaussianEpsilon is the exact ε at delta of the Gaussian mechanism whose
// outputs on two neighbours are N(0, 1) and N(mu, 1): the smallest ε with
// Φ(μ/2 − ε/μ) − e^ε·Φ(−μ/2 − ε/μ) ≤ δ (Balle and Wang 2018).
func gaussianEpsilon(mu, delta float64) float64 {
	phi := func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
	lo, hi := 0.0, 200.0
	for range 200 {
		mid := (lo + hi) / 2
		if phi(mu/2-mid/mu)-math.Exp(mid)*phi(-mu/2-mid/mu) > delta {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// cohortOf is what a node's minimum-cohort check looks at: its largest
// count measure summed over the groups, and the most one patient changes it.
func cohortOf(p *plan.Plan, e *eval.Exact) (cohort, sensitivity float64, counted bool) {
	vals, cells := e.Values(), p.Cells()
	g := float64(p.MaxGroupsPerPatient())
	for i, m := range p.Measures() {
		if m.Kind != plan.CountRows && m.Kind != plan.CountDistinct && m.Kind != plan.CountValues {
			continue
		}
		total := 0.0
		for c := range cells {
			total += vals[i*cells+c]
		}
		cohort = max(cohort, total)
		sensitivity = max(sensitivity, m.PerCell*g)
		counted = true
	}
	return cohort, sensitivity, counted
}

// --- data ---------------------------------------------------------------

// The audited patient of the CDM mechanisms: in every cohort, with more
// rows per code than max_rows, in more codes than max_groups, and with
// HbA1c values far above every clamp.
func addAuditedPatient(b *cdm.Builder) {
	const id = "audited"
	b.AddPatient(&cdm.Patient{ID: id, BirthDate: cdm.DateFromYMD(1950, 6, 1), Sex: cdm.SexFemale, Region: "north"})
	for i := range 8 {
		for _, code := range []string{"44054006", "38341003", "195967001"} {
			b.AddCondition(&cdm.Condition{ID: fmt.Sprintf("%s-%s-%d", id, code, i), PatientID: id, Code: code,
				System: cdm.SystemSNOMED, Onset: cdm.DateFromYMD(2020, 1, 1+i)})
		}
		b.AddObservation(&cdm.Observation{ID: fmt.Sprintf("%s-a1c-%d", id, i), PatientID: id, Code: "4548-4",
			System: cdm.SystemLOINC, Date: cdm.DateFromYMD(2021, 1, 1+i), Value: 20, HasValue: true, Unit: "%"})
	}
}

const trialSchema = `
name = "trial"
id = "pid"
small_count_threshold = -1
[[columns]]
name = "age"
type = "float"
min = 20
max = 80
[[columns]]
name = "arm"
type = "string"
values = ["a", "b"]
[[columns]]
name = "y"
type = "float"
min = 0
max = 100
[[columns]]
name = "time"
type = "int"
min = 0
max = 4
[[columns]]
name = "status"
type = "int"
min = 1
max = 2
`

var trialStudy = sync.OnceValue(func() *cdm.StudySchema {
	sc, err := cdm.ParseStudySchema(trialSchema, "")
	if err != nil {
		panic(err)
	}
	return sc
})

func auditCatalogue() *plan.Catalogue {
	return &plan.Catalogue{Regions: []string{"north", "south"}, Studies: []cdm.StudySchema{*trialStudy()}}
}

// trialRows returns n seeded study rows; with the audited row (every
// standardised term at +1: age 80, arm b, y 100; an event in the last bin).
func trialRows(prefix string, n int, seed uint64, audited bool) *cdm.Study {
	r := rand.New(rand.NewPCG(seed, 1))
	st := &cdm.Study{Schema: *trialStudy(), Numbers: map[string][]float64{}, Strings: map[string][]string{}}
	add := func(id string, age float64, arm string, y, tm, status float64) {
		st.PatientIDs = append(st.PatientIDs, id)
		st.Numbers["age"] = append(st.Numbers["age"], age)
		st.Strings["arm"] = append(st.Strings["arm"], arm)
		st.Numbers["y"] = append(st.Numbers["y"], y)
		st.Numbers["time"] = append(st.Numbers["time"], tm)
		st.Numbers["status"] = append(st.Numbers["status"], status)
	}
	for i := range n {
		arm := "a"
		if r.IntN(2) == 1 {
			arm = "b"
		}
		age := 20 + 60*r.Float64()
		add(fmt.Sprintf("%s-trial-%d", prefix, i), math.Round(age), arm, math.Round(40+0.5*age+10*r.NormFloat64()),
			float64(r.IntN(5)), float64(1+r.IntN(2)))
	}
	if audited {
		add("audited-trial", 80, "b", 100, 4, 2)
	}
	return st
}

func synthRecords(prefix string, n int, seed int64) *cdm.Records {
	recs, err := synth.Generate(synth.Options{Patients: n, Seed: seed, IDPrefix: prefix, Regions: []string{"north", "south"}})
	if err != nil {
		panic(err)
	}
	return recs
}

// targetCDM is the target node's data for the CDM and study mechanisms: 60
// synthetic patients and 40 trial rows, plus the audited patient in D'.
var targetBase = sync.OnceValue(func() *cdm.Records { return synthRecords("t", 60, 1) })

func targetCDM(with bool) *cdm.Tables {
	b := cdm.NewBuilder()
	b.AddRecords(targetBase())
	if with {
		addAuditedPatient(b)
	}
	return b.Build().WithStudies([]*cdm.Study{trialRows("t", 40, 1, with)})
}

// targetOld is the target node's data for the minimum-cohort mechanism: a
// cohort (born by 1950) of minimum−1 patients in D and of the minimum in D',
// and 30 younger patients.
func targetOld(with bool) *cdm.Tables {
	b := cdm.NewBuilder()
	old := auditMinCohort - 1
	if with {
		old++
	}
	for i := range old {
		b.AddPatient(&cdm.Patient{ID: fmt.Sprintf("old-%d", i), BirthDate: cdm.DateFromYMD(1940, 1, 1+i), Sex: cdm.SexMale, Region: "south"})
	}
	for i := range 30 {
		b.AddPatient(&cdm.Patient{ID: fmt.Sprintf("young-%d", i), BirthDate: cdm.DateFromYMD(1990, 1, 1+i), Sex: cdm.SexFemale, Region: "north"})
	}
	return b.Build()
}

// otherNode is honest node i's data (i ≥ 1): 30 synthetic patients, 200
// patients born in 1940 (a cohort far above the minimum), 30 trial rows.
var otherNodes sync.Map // int -> *cdm.Tables

func otherNode(i int) *cdm.Tables {
	if t, ok := otherNodes.Load(i); ok {
		return t.(*cdm.Tables)
	}
	prefix := fmt.Sprintf("n%d-", i)
	b := cdm.NewBuilder()
	b.AddRecords(synthRecords(prefix, 30, int64(i)+100))
	for j := range 200 {
		b.AddPatient(&cdm.Patient{ID: fmt.Sprintf("%sold-%d", prefix, j), BirthDate: cdm.DateFromYMD(1940, 1, 1), Sex: cdm.SexMale, Region: "south"})
	}
	t := b.Build().WithStudies([]*cdm.Study{trialRows(prefix, 30, uint64(i)+100, false)})
	otherNodes.Store(i, t)
	return t
}

// studySQL captures the SQL that a stats method sends for its first round.
func studySQL(t *testing.T, run func(q stats.Querier) error) string {
	t.Helper()
	var sql string
	errStop := errors.New("captured")
	err := run(stats.QuerierFunc(func(_ context.Context, r stats.Request) (*stats.Release, error) {
		sql = r.SQL
		return nil, errStop
	}))
	if !errors.Is(err, errStop) {
		t.Fatalf("capturing a stats query: %v", err)
	}
	return sql
}

const (
	diabetes         = "code = '44054006'"
	countDistinctSQL = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE " + diabetes
)

// auditCases returns every mechanism kind under audit.
func auditCases(t *testing.T) []auditCase {
	budget := stats.Budget{Epsilon: 1, Delta: auditDelta}
	linear := studySQL(t, func(q stats.Querier) error {
		_, err := stats.Linear(context.Background(), q, stats.LinearOptions{Table: "trial",
			Outcome: stats.Covariate{Name: "y", Expr: "y", Lo: 0, Hi: 100},
			Covariates: []stats.Covariate{{Name: "age", Expr: "age", Lo: 20, Hi: 80},
				{Name: "armb", Expr: "arm = 'b'", Lo: 0, Hi: 1}}, Budget: budget})
		return err
	})
	km := studySQL(t, func(q stats.Querier) error {
		_, err := stats.KaplanMeier(context.Background(), q, stats.KMOptions{
			SurvivalData: stats.SurvivalData{Table: "trial", Time: "time", Status: "status", Event: "2"}, Budget: budget})
		return err
	})
	return []auditCase{
		{name: "count", eps: 1, target: targetCDM,
			sql: "SELECT COUNT(*) FROM conditions WHERE " + diabetes},
		{name: "count distinct", eps: 1, target: targetCDM, sql: countDistinctSQL},
		// The budget of the audit's finding 2 (the FluSight network, where
		// a node's noise is 0.1 at m = 52, T = 3).
		{name: "count distinct, ε 8.4", eps: 8.4, target: targetCDM, sql: countDistinctSQL},
		{name: "clamped sum", eps: 1, target: targetCDM,
			sql: "SELECT SUM(CLAMP(value, 0, 15)) FROM observations WHERE code = '4548-4'"},
		{name: "clamped mean", eps: 1, target: targetCDM,
			sql: "SELECT AVG(CLAMP(value, 4, 14)) FROM observations WHERE code = '4548-4'"},
		{name: "grouped counts", eps: 1, target: targetCDM,
			sql: "SELECT sex, code, COUNT(*) FROM conditions WHERE code IN ('44054006', '38341003', '195967001') GROUP BY sex, code WITH max_groups = 2"},
		{name: "cohort subquery", eps: 1, target: targetCDM,
			sql: "SELECT COUNT(*) FROM observations WHERE code = '4548-4' AND patient_id IN (SELECT patient_id FROM conditions WHERE " + diabetes + ")"},
		{name: "regression round", eps: 1, target: targetCDM, sql: linear},
		{name: "Kaplan-Meier round", eps: 1, target: targetCDM, sql: km},
		{name: "min_cohort check", eps: 1e-4, minCohort: auditMinCohort, target: targetOld,
			sql: "SELECT COUNT(*) FROM patients WHERE birth_date <= '1950-12-31'"},
	}
}

// --- the audit ----------------------------------------------------------

// auditMode is how much the audit runs.
type auditMode struct {
	name string
	// nets and releases: the networks audited and the releases at each.
	nets     []int
	releases func(c auditCase, m int) int
	// only, when set, restricts the mechanisms; so does match (-audit.only).
	only  []string
	match func(name string) bool
}

func currentAuditMode() auditMode {
	m := baseAuditMode()
	if *auditOnly != "" {
		re, err := regexp.Compile(*auditOnly)
		if err != nil {
			panic(fmt.Sprintf("-audit.only: %v", err))
		}
		m.match = re.MatchString
	}
	if *auditNets != "" {
		m.nets = nil
		for _, f := range strings.Split(*auditNets, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				panic(fmt.Sprintf("-audit.nets: %q is not a network size", f))
			}
			m.nets = append(m.nets, n)
		}
	}
	return m
}

func baseAuditMode() auditMode {
	switch {
	case *auditLong:
		return auditMode{name: "long", nets: []int{3, 10, 52, 300}, releases: func(c auditCase, m int) int {
			switch m {
			case 3, 10:
				return 200_000
			case 52:
				return 50_000
			}
			return 15_000
		}}
	case raceEnabled:
		return auditMode{name: "race smoke", nets: []int{3}, releases: func(auditCase, int) int { return 2000 },
			only: []string{"count distinct", "clamped mean", "min_cohort check"}}
	}
	return auditMode{name: "fast", nets: []int{3, 10}, releases: func(c auditCase, m int) int {
		if m == 3 {
			return 4000
		}
		return 2000
	}}
}

// TestPrivacyAudit runs every mechanism through the node pipeline on
// neighbouring inputs and fails when the empirical lower bound on ε (at
// confidence 1 − 1e-9) exceeds the ε the node charges. See the file's doc
// for the modes.
func TestPrivacyAudit(t *testing.T) {
	mode := currentAuditMode()
	var rows []auditResult
	start := time.Now()
	for _, c := range auditCases(t) {
		if (len(mode.only) > 0 && !slices.Contains(mode.only, c.name)) || (mode.match != nil && !mode.match(c.name)) {
			continue
		}
		for _, m := range mode.nets {
			res := runAudit(t, c, networkOf(m), mode.releases(c, m), nodePipeline, 0)
			rows = append(rows, res)
			t.Logf("%s, m=%d: %v; at 95%%: ε_lb %.4g, δ_lb %.3g; ideal mechanism: ε_lb %.4g at 95%%, exact ε %.4g (%v)", c.name, m, res.check,
				res.report.EpsilonLB, res.report.DeltaLB, res.ideal.EpsilonLB, res.idealEpsilon, res.elapsed.Round(time.Millisecond))
			if res.check.Exceeds() {
				t.Errorf("%s at m=%d, T=%d: the node charges ε %.4g but the audit bounds ε from below by %.4g at δ %g (confidence 1−1e-9): %v",
					c.name, m, res.nw.T, res.charged, res.check.EpsilonLB, auditDelta, res.check)
			}
		}
	}
	t.Logf("%s audit: %d audits in %v\n%s", mode.name, len(rows), time.Since(start).Round(time.Second), auditTable(rows))
}

// auditTable formats results as a Markdown table.
func auditTable(rows []auditResult) string {
	var b strings.Builder
	b.WriteString("| mechanism | m (T) | releases | ε lower bound, 95% | ε lower bound, check (1−10⁻⁹) | ideal mechanism: ε lower bound, 95% | ideal mechanism: exact ε | charged ε | δ lower bound at charged ε, 95% |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	f := func(x float64) string {
		if x <= 0 || math.IsInf(x, -1) {
			return "0"
		}
		return fmt.Sprintf("%.3g", x)
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d (%d) | %d | %s | %s | %s | %.3g | %.3g | %s |\n", r.name, r.nw.m, r.nw.T, r.releases,
			f(r.report.EpsilonLB), f(r.check.EpsilonLB), f(r.ideal.EpsilonLB), r.idealEpsilon, r.charged, f(r.report.DeltaLB))
	}
	return b.String()
}

// --- positive controls --------------------------------------------------

// legacyEncoding replicates the encoding of counts before c332bce (audit
// finding 2): each node rounded its noisy count to the integer grid (Scale
// 1) whatever its noise. The replica rounds today's share (on the plan's
// grid of 1/Scale ≤ NodeSigma/4) to the nearest integer: round(exact +
// round(Scale·z)/Scale) instead of round(exact + z), which differs only when
// z falls within 1/(2·Scale) of a half-integer (probability about 2e-7 per
// node at the audit's node sigma of 0.1).
func legacyEncoding() pipeline {
	pl := nodePipeline
	toInt := func(p *plan.Plan, slots []int64) []int64 {
		ms, cells := p.Measures(), p.Cells()
		for i, v := range slots {
			slots[i] = int64(math.Round(float64(v) / ms[i/cells].Scale))
		}
		return slots
	}
	target, other := pl.target, pl.other
	pl.target = func(ctx context.Context, src DataSource, pol *Policy, p *plan.Plan) ([]int64, bool, error) {
		s, refused, err := target(ctx, src, pol, p)
		return toInt(p, s), refused, err
	}
	pl.other = func(p *plan.Plan, pol *Policy, e *eval.Exact) ([]int64, error) {
		s, err := other(p, pol, e)
		return toInt(p, s), err
	}
	pl.quantum = func(plan.Measure) float64 { return 1 }
	return pl
}

// legacyMinCohort replicates the minimum cohort before a7a6469 (audit
// finding 3): the node refused when its exact cohort (the largest count
// measure summed over the groups) was below the minimum, and a refusal was
// charged nothing, so the node claimed the plan's ε for the query (and 0
// for a refusal).
func legacyMinCohort() pipeline {
	pl := nodePipeline
	small := func(p *plan.Plan, pol *Policy, e *eval.Exact) bool {
		cohort, _, counted := cohortOf(p, e)
		return pol.MinCohort > 0 && counted && cohort < float64(pol.MinCohort)
	}
	pl.target = func(ctx context.Context, src DataSource, pol *Policy, p *plan.Plan) ([]int64, bool, error) {
		e, err := src.Evaluate(ctx, p)
		if err != nil {
			return nil, false, err
		}
		if small(p, pol, e) {
			return nil, true, nil
		}
		s, err := dp.NoiseShare(p, e)
		if err != nil {
			return nil, false, err
		}
		return s.Slots(), false, nil
	}
	pl.other = func(p *plan.Plan, pol *Policy, e *eval.Exact) ([]int64, error) {
		if small(p, pol, e) {
			return nil, errors.New("an honest non-target node refused")
		}
		s, err := dp.NoiseShare(p, e)
		if err != nil {
			return nil, err
		}
		return s.Slots(), nil
	}
	pl.charged = func(p *plan.Plan, _ *Policy) float64 { return p.Epsilon() }
	return pl
}

// TestPrivacyAuditCatchesLegacyMinCohort: the auditor's check fails on the
// old minimum cohort (finding 3): neighbours with cohorts k−1 and k at a
// probe budget of ε 1e-4, where a refusal told the exact side of k for free.
func TestPrivacyAuditCatchesLegacyMinCohort(t *testing.T) {
	c := auditCase{name: "legacy min_cohort (exact, free refusals)", eps: 1e-4, minCohort: auditMinCohort, target: targetOld,
		sql: "SELECT COUNT(*) FROM patients WHERE birth_date <= '1950-12-31'"}
	res := runAudit(t, c, networkOf(3), 1000, legacyMinCohort(), 0)
	t.Logf("%v", res.check)
	if !res.check.Exceeds() {
		t.Errorf("the auditor did not catch the old minimum cohort: %v", res.check)
	}
	// The node as it is passes the same audit.
	c.name = "min_cohort check"
	if res := runAudit(t, c, networkOf(3), 1000, nodePipeline, 0); res.check.Exceeds() {
		t.Errorf("the node's minimum cohort failed the audit: %v", res.check)
	}
}

// TestPrivacyAuditCatchesLegacyEncoding: the auditor refutes the old count
// encoding (finding 2) on the audit's network: m = 52, T = 3, ε 8.4, δ 1e-6,
// node sigma 0.100, where the released count is the exact count in almost
// every release (the exact δ at ε 8.4 is 0.93, see queries/dp
// TestReleasedNoiseMatchesCharge).
//
// Refuting ε 8.4 takes many releases whatever the auditor: the rejection
// set {release ≤ the exact count of D} has probability about 1.4e-5 on D'
// (one of 50 honest shares rounding to −1), and the bound must show that it
// is below e^−8.4 = 2.2e-4 from its count. At the check's confidence
// (1 − 1e-9) that takes about 250,000 measured releases of 52 nodes (some
// 90 s here); the long mode runs them and asserts that the check fails. The
// fast mode measures 100,000 (a tenth more choose the set) and asserts that
// the bound at 95% confidence is above 8.4 (it is not, with probability
// below 1e-8 at that size). Both are skipped under the race detector.
func TestPrivacyAuditCatchesLegacyEncoding(t *testing.T) {
	if raceEnabled {
		t.Skip("10^5 releases of 52 nodes: run without -race (scripts/test.sh)")
	}
	c := auditCase{name: "legacy count encoding (grid 1)", eps: 8.4, target: targetCDM, sql: countDistinctSQL}
	p, err := plan.Build(plan.Request{SQL: c.sql, Epsilon: c.eps, Delta: auditDelta, MinNodes: 52, Threshold: 3, ReferenceDate: auditRef}, auditCatalogue())
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Measures()[0].NodeSigma; math.Abs(s-0.100) > 0.002 {
		t.Fatalf("node sigma %.4f, the audit's finding had 0.100", s)
	}
	releases := 111_000
	if *auditLong {
		releases = 340_000
	}
	res := runAudit(t, c, networkOf(52), releases, legacyEncoding(), 0.1)
	t.Logf("at 95%%: %v", res.report)
	t.Logf("check: %v (%v)", res.check, res.elapsed.Round(time.Millisecond))
	if !res.report.Exceeds() {
		t.Errorf("the auditor did not refute the old count encoding at 95%%: %v", res.report)
	}
	if *auditLong && !res.check.Exceeds() {
		t.Errorf("the auditor's check did not fail on the old count encoding: %v", res.check)
	}
}
