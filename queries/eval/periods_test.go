package eval_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// seriesRow is one condition of the random node of TestPeriodCountsBruteForce.
type seriesRow struct {
	patient int
	code    string
	onset   cdm.Date
}

// seriesNode is a random node: patients in regions (one outside the
// catalogue), conditions of two codes on dates from before the series
// start to after its end, some without a date, some patients with rows in
// many periods.
type seriesNode struct {
	regions []string
	rows    []seriesRow
	tables  *cdm.Tables
}

func randomSeriesNode(r *rand.Rand, start cdm.Date, patients int) seriesNode {
	regionPool := []string{"north", "south", "east", "west", "atlantis"}
	b := cdm.NewBuilder()
	n := seriesNode{}
	for i := range patients {
		reg := regionPool[r.IntN(len(regionPool))]
		n.regions = append(n.regions, reg)
		b.AddPatient(&cdm.Patient{ID: fmt.Sprintf("p%d", i), BirthDate: cdm.DateFromYMD(1970, 1, 1), Sex: cdm.SexFemale, Region: reg, DeathDate: cdm.NoDate})
	}
	for i := range patients {
		// Most patients have a few rows, some many (a chronic patient seen
		// every week), some none.
		rows := r.IntN(4)
		if r.IntN(5) == 0 {
			rows = 10 + r.IntN(30)
		}
		for range rows {
			code := "flu"
			if r.IntN(4) == 0 {
				code = "other"
			}
			onset := start - 30 + cdm.Date(r.IntN(30+7*20+30)) // 30 days before to 30 days after 20 weeks
			if r.IntN(20) == 0 {
				onset = cdm.NoDate
			}
			n.rows = append(n.rows, seriesRow{i, code, onset})
		}
	}
	// Rows in random order, so that row order is not date order.
	r.Shuffle(len(n.rows), func(i, j int) { n.rows[i], n.rows[j] = n.rows[j], n.rows[i] })
	for i, c := range n.rows {
		b.AddCondition(&cdm.Condition{ID: fmt.Sprintf("c%d", i), PatientID: fmt.Sprintf("p%d", c.patient), Code: c.code, Onset: c.onset, Abatement: cdm.NoDate})
	}
	n.tables = b.Build()
	return n
}

// bruteForce is PeriodCounts from the raw records: every patient's
// distinct matching periods since the start (up to last), the first K,
// those in [first, last] counted in the patient's cell.
func (n seriesNode) bruteForce(period func(cdm.Date) int, labels []string, first, last, K int) []float64 {
	cells := max(len(labels), 1)
	out := make([]float64, cells)
	per := map[int]map[int]bool{}
	for _, c := range n.rows {
		if c.code != "flu" || !c.onset.Valid() {
			continue
		}
		p := period(c.onset)
		if p < 0 || p > last {
			continue
		}
		if per[c.patient] == nil {
			per[c.patient] = map[int]bool{}
		}
		per[c.patient][p] = true
	}
	for pi, set := range per {
		cell := 0
		if labels != nil {
			cell = slices.Index(labels, n.regions[pi])
			if cell < 0 {
				continue
			}
		}
		var ps []int
		for p := range set {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		for _, p := range ps[:min(K, len(ps))] {
			if p >= first && p <= last {
				out[cell]++
			}
		}
	}
	return out
}

// TestPeriodCountsBruteForce: on random nodes, PeriodCounts equals the
// brute-force count from the raw records for weekly series, every interval
// of a 16-week tree, K = 1, 2 and 5, with and without a patient-level key
// (regions, one region outside the catalogue), rows before the start and
// after the interval, rows without a date and patients in many periods.
func TestPeriodCountsBruteForce(t *testing.T) {
	ctx := context.Background()
	start := cdm.DateFromYMD(2024, 9, 2)
	period := func(d cdm.Date) int {
		if d < start {
			return -1
		}
		return int(d-start) / 7
	}
	r := rand.New(rand.NewPCG(18, 1))
	cat := &plan.Catalogue{Regions: []string{"north", "south", "east", "west"}}
	nonzero := 0
	for trial := range 6 {
		node := randomSeriesNode(r, start, 60+trial*40)
		for _, grouped := range []bool{false, true} {
			for _, K := range []int{1, 2, 5} {
				for j := 0; j <= 4; j++ {
					for i := 0; (i+1)<<j <= 16; i++ {
						first, last := i<<j, (i+1)<<j-1
						lastDay := start + cdm.Date(7*last+6)
						sel, group := "", ""
						if grouped {
							sel, group = "region, ", " GROUP BY region"
						}
						sql := fmt.Sprintf("SELECT %sCOUNT(DISTINCT patient_id) FROM conditions WHERE (code = 'flu') AND onset_date BETWEEN '%s' AND '%s'%s",
							sel, start, lastDay, group)
						p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
						if err != nil {
							t.Fatalf("%s: %v", sql, err)
						}
						var labels []string
						if grouped {
							labels = p.Keys()[0].Labels
						}
						e, err := eval.PeriodCounts(ctx, p, node.tables, eval.Periods{Column: "onset_date", Period: period, First: first, Last: last, K: K})
						if err != nil {
							t.Fatal(err)
						}
						got, want := e.Values(), node.bruteForce(period, labels, first, last, K)
						if !slices.Equal(got, want) {
							t.Fatalf("trial %d, grouped %v, K=%d, interval %d..%d: got %v, want %v", trial, grouped, K, first, last, got, want)
						}
						for _, v := range got {
							if v > 0 {
								nonzero++
							}
						}
					}
				}
			}
		}
	}
	if nonzero < 100 {
		t.Fatalf("only %d non-zero cells: the random nodes test nothing", nonzero)
	}
}

// TestPeriodCountsFirstK: a hand-made patient with rows in weeks 0, 0, 2,
// 3 and 7 (and one before the start) counts in weeks 0 and 2 at K = 2, in
// 0, 2, 3 and 7 at K = 5; the level-1 interval of weeks 2-3 holds 1 at
// K = 2 and 2 at K = 5.
func TestPeriodCountsFirstK(t *testing.T) {
	start := cdm.DateFromYMD(2024, 1, 1)
	b := cdm.NewBuilder()
	b.AddPatient(&cdm.Patient{ID: "p", BirthDate: cdm.DateFromYMD(1980, 1, 1), Sex: cdm.SexMale, Region: "north", DeathDate: cdm.NoDate})
	for i, day := range []int{-3, 1, 5, 14, 22, 50} {
		b.AddCondition(&cdm.Condition{ID: fmt.Sprint(i), PatientID: "p", Code: "flu", Onset: start + cdm.Date(day), Abatement: cdm.NoDate})
	}
	tb := b.Build()
	period := func(d cdm.Date) int {
		if d < start {
			return -1
		}
		return int(d-start) / 7
	}
	count := func(first, last, K int) float64 {
		sql := fmt.Sprintf("SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE (code = 'flu') AND onset_date BETWEEN '%s' AND '%s'", start, start+cdm.Date(7*last+6))
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := eval.PeriodCounts(context.Background(), p, tb, eval.Periods{Column: "onset_date", Period: period, First: first, Last: last, K: K})
		if err != nil {
			t.Fatal(err)
		}
		return e.Values()[0]
	}
	for _, c := range []struct {
		first, last, K int
		want           float64
	}{
		{0, 0, 1, 1}, {1, 1, 1, 0}, {2, 2, 1, 0}, {0, 7, 1, 1},
		{0, 0, 2, 1}, {2, 2, 2, 1}, {3, 3, 2, 0}, {2, 3, 2, 1}, {0, 3, 2, 2}, {4, 7, 2, 0}, {0, 7, 2, 2},
		{2, 3, 5, 2}, {3, 3, 5, 1}, {7, 7, 5, 1}, {4, 7, 5, 1}, {0, 7, 5, 4},
	} {
		if got := count(c.first, c.last, c.K); got != c.want {
			t.Errorf("weeks %d..%d, K=%d: %v, want %v", c.first, c.last, c.K, got, c.want)
		}
	}
}

// TestPeriodCountsRefuses: plans with other measures, several measures, a
// row-level key or a linked part, a missing date column and bad periods
// are refused with ErrData.
func TestPeriodCountsRefuses(t *testing.T) {
	tb := fixture()
	period := func(d cdm.Date) int { return 0 }
	ok := eval.Periods{Column: "onset_date", Period: period, First: 0, Last: 0, K: 1}
	cases := []struct {
		sql  string
		w    eval.Periods
		want string
	}{
		{"SELECT COUNT(*) FROM conditions", ok, "COUNT(DISTINCT"},
		{"SELECT COUNT(DISTINCT patient_id), COUNT(*) FROM conditions", ok, "2 measures"},
		{"SELECT AVG(CLAMP(value, 0, 10)) FROM observations", eval.Periods{Column: "date", Period: period, K: 1}, "COUNT(DISTINCT"},
		{"SELECT week(onset_date), COUNT(DISTINCT patient_id) FROM conditions WHERE onset_date BETWEEN '2020-01-01' AND '2020-03-01' GROUP BY week(onset_date)", ok, "patient attributes"},
		{"SELECT code, COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('a', 'b') GROUP BY code", ok, "patient attributes"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "nope", Period: period, K: 1}, "no date column"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "code", Period: period, K: 1}, "no date column"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "onset_date", K: 1}, "period function"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "onset_date", Period: period}, "K = 0"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "onset_date", Period: period, First: 3, Last: 2, K: 1}, "periods 3..2"},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions", eval.Periods{Column: "onset_date", Period: period, First: -1, Last: 2, K: 1}, "periods -1..2"},
	}
	for _, c := range cases {
		p := build(t, c.sql)
		_, err := eval.PeriodCounts(context.Background(), p, tb, c.w)
		if !errors.Is(err, eval.ErrData) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrData naming %q", c.sql, err, c.want)
		}
	}
	if _, err := eval.PeriodCounts(context.Background(), nil, tb, ok); !errors.Is(err, eval.ErrData) {
		t.Errorf("nil plan: %v", err)
	}
	linked := linkedCountPlan(t)
	if _, err := eval.PeriodCounts(context.Background(), linked, tb, ok); !errors.Is(err, eval.ErrData) || !strings.Contains(err.Error(), "linked") {
		t.Errorf("linked plan: %v", err)
	}
}

// TestPeriodCountsPatientsTable: a series may count the patients table on
// one of its date columns (deaths per week), grouped by sex.
func TestPeriodCountsPatientsTable(t *testing.T) {
	start := cdm.DateFromYMD(2024, 1, 1)
	b := cdm.NewBuilder()
	deaths := []int{-1, 0, 3, 3, 10, 20}
	for i, day := range deaths {
		sex := cdm.SexFemale
		if i%2 == 1 {
			sex = cdm.SexMale
		}
		b.AddPatient(&cdm.Patient{ID: fmt.Sprint(i), BirthDate: cdm.DateFromYMD(1950, 1, 1), Sex: sex, Region: "north", DeathDate: start + cdm.Date(day)})
	}
	b.AddPatient(&cdm.Patient{ID: "alive", BirthDate: cdm.DateFromYMD(1950, 1, 1), Sex: cdm.SexMale, Region: "north", DeathDate: cdm.NoDate})
	sql := fmt.Sprintf("SELECT sex, COUNT(DISTINCT patient_id) FROM patients WHERE death_date BETWEEN '%s' AND '%s' AND sex IN ('female', 'male') GROUP BY sex", start, start+13)
	p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, nil)
	if err != nil {
		t.Fatal(err)
	}
	period := func(d cdm.Date) int {
		if d < start {
			return -1
		}
		return int(d-start) / 7
	}
	e, err := eval.PeriodCounts(context.Background(), p, b.Build(), eval.Periods{Column: "death_date", Period: period, First: 0, Last: 1, K: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Deaths on days 0, 3, 3, 10 fall in weeks 0-1: patients 1 (male),
	// 2 (female), 3 (male), 4 (female).
	if got := e.Values(); !slices.Equal(got, []float64{2, 2}) {
		t.Errorf("deaths by sex in weeks 0-1: %v, want [2 2] (labels %v)", got, p.Keys()[0].Labels)
	}
}

// linkedCountPlan is a count of residents in a linked network.
func linkedCountPlan(t *testing.T) *plan.Plan {
	return linkPlan(t, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'")
}
