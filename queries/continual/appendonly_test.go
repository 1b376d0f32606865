package continual_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/continual"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// timedRow is a row of a patient that the node receives at the end of
// week `arrives` (its date is in week `week`) and, when gone >= 0, loses
// at the end of week `gone`.
type timedRow struct{ week, day, arrives, gone int }

// releasedNorm evaluates every interval of a 16-week series on the node as
// it is when the interval is released (the rows that have arrived by then
// and are not gone), for a node holding one patient, and returns the
// patient's per-level sums Σ_v c_v and the total Σ_v c_v².
// With memory (the node's record of the periods each patient counted in,
// eval.Periods.Counted), the evaluations share it as a node does.
func releasedNorm(t *testing.T, plans map[continual.Interval]*plan.Plan, rows []timedRow, K int, memory bool) (perLevel []float64, norm2 float64) {
	t.Helper()
	const T = 16
	start := cdm.DateFromYMD(2024, 9, 2)
	week := continual.Schedule{Every: continual.Week, Start: start}
	perLevel = make([]float64, continual.Levels(T))
	var counted map[string][]int32
	if memory {
		counted = map[string][]int32{}
	}
	for tt := range T {
		b := cdm.NewBuilder()
		b.AddPatient(&cdm.Patient{ID: "p", BirthDate: cdm.DateFromYMD(1970, 1, 1), Sex: cdm.SexFemale, Region: "north", DeathDate: cdm.NoDate})
		for i, r := range rows {
			if r.arrives <= tt && (r.gone < 0 || r.gone > tt) {
				b.AddCondition(&cdm.Condition{ID: fmt.Sprint(i), PatientID: "p", Code: "flu", Onset: start + cdm.Date(7*r.week+r.day), Abatement: cdm.NoDate})
			}
		}
		tb := b.Build()
		for _, v := range continual.Ending(tt, T) {
			e, err := eval.PeriodCounts(context.Background(), plans[v], tb, eval.Periods{Column: "onset_date", Period: week.Period, First: v.First(), Last: v.Last(), K: K, Counted: counted})
			if err != nil {
				t.Fatal(err)
			}
			c := e.Values()[0]
			perLevel[v.Level] += c
			norm2 += c * c
		}
	}
	return perLevel, norm2
}

func seriesPlans(t *testing.T) map[continual.Interval]*plan.Plan {
	t.Helper()
	start := cdm.DateFromYMD(2024, 9, 2)
	plans := map[continual.Interval]*plan.Plan{}
	for tt := range 16 {
		for _, v := range continual.Ending(tt, 16) {
			sql := fmt.Sprintf("SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE (code = 'flu') AND onset_date BETWEEN '%s' AND '%s'", start, start+cdm.Date(7*v.Last()+6))
			p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: start}, nil)
			if err != nil {
				t.Fatal(err)
			}
			plans[v] = p
		}
	}
	return plans
}

// TestLateRecordsKeepWeight: records that arrive late (up to 8 weeks after
// their week, in any order) but are never deleted keep every patient within
// K per level and within W(T, K) over the series, evaluated as the node
// would at each release. The reason: the patient's matching periods only
// grow, so the number of first-K periods below any week only grows, and
// the counts of a level's intervals, released left to right, telescope to
// at most K.
func TestLateRecordsKeepWeight(t *testing.T) {
	plans := seriesPlans(t)
	r := rand.New(rand.NewPCG(3, 18))
	for trial := range 150 {
		K := 1 + trial%3
		var rows []timedRow
		for range 1 + r.IntN(8) {
			w := r.IntN(16)
			rows = append(rows, timedRow{week: w, day: r.IntN(7), arrives: w + r.IntN(9), gone: -1})
		}
		perLevel, norm2 := releasedNorm(t, plans, rows, K, false)
		for j, s := range perLevel {
			if s > float64(K) {
				t.Fatalf("trial %d, K=%d, rows %v: level %d counts the patient %v times", trial, K, rows, j, s)
			}
		}
		if w := continual.Weight(16, K); norm2 > w {
			t.Fatalf("trial %d, K=%d, rows %v: Σc² = %v > W = %v", trial, K, rows, norm2, w)
		}
	}
}

// TestDeletedRecordsBreakWeight shows why the series needs append-only
// data: a patient whose week-0 record is released and then deleted, and
// who is seen again in week 1, counts twice at level 0 with K = 1, and
// Σc² exceeds W; AnyWeight still bounds it.
func TestDeletedRecordsBreakWeight(t *testing.T) {
	plans := seriesPlans(t)
	rows := []timedRow{{week: 0, day: 1, arrives: 0, gone: 0 + 1}, {week: 1, day: 1, arrives: 1, gone: -1}}
	perLevel, norm2 := releasedNorm(t, plans, rows, 1, false)
	if perLevel[0] != 2 {
		t.Errorf("level 0 counts the patient %v times, want 2 (weeks 0 and 1)", perLevel[0])
	}
	if w := continual.Weight(16, 1); norm2 <= w {
		t.Errorf("Σc² = %v within W = %v: the example does not break the bound", norm2, w)
	}
	if a := continual.AnyWeight(16, 1); norm2 > a {
		t.Errorf("Σc² = %v > AnyWeight = %v", norm2, a)
	}
	t.Logf("deleted and re-seen: per level %v, Σc² = %v against W = %v", perLevel, norm2, continual.Weight(16, 1))
	// The node's memory of the series keeps the same patient within W.
	perLevel, norm2 = releasedNorm(t, plans, rows, 1, true)
	if perLevel[0] != 1 || norm2 > continual.Weight(16, 1) {
		t.Errorf("with the series' memory: per level %v, Σc² = %v; want 1 at level 0 and within W = %v", perLevel, norm2, continual.Weight(16, 1))
	}
}

// TestMemoryKeepsWeight: with the node's memory of the series (the periods
// each patient counted in, which it keeps), records that arrive late, are
// deleted, or are corrected to another week keep every patient within K
// per level and within W(T, K), as the node evaluates them at each
// release: the patient's counted periods only grow and never exceed K, and
// each interval counts those it holds.
func TestMemoryKeepsWeight(t *testing.T) {
	plans := seriesPlans(t)
	r := rand.New(rand.NewPCG(5, 18))
	for trial := range 150 {
		K := 1 + trial%3
		var rows []timedRow
		for range 1 + r.IntN(8) {
			w := r.IntN(16)
			row := timedRow{week: w, day: r.IntN(7), arrives: w + r.IntN(5), gone: -1}
			if r.IntN(2) == 0 {
				// Deleted some weeks after it arrived; half of those come
				// back corrected to another week.
				row.gone = row.arrives + 1 + r.IntN(6)
				if r.IntN(2) == 0 {
					w2 := r.IntN(16)
					rows = append(rows, timedRow{week: w2, day: r.IntN(7), arrives: max(row.gone, w2), gone: -1})
				}
			}
			rows = append(rows, row)
		}
		perLevel, norm2 := releasedNorm(t, plans, rows, K, true)
		for j, s := range perLevel {
			if s > float64(K) {
				t.Fatalf("trial %d, K=%d, rows %v: level %d counts the patient %v times", trial, K, rows, j, s)
			}
		}
		if w := continual.Weight(16, K); norm2 > w {
			t.Fatalf("trial %d, K=%d, rows %v: Σc² = %v > W = %v", trial, K, rows, norm2, w)
		}
	}
}
