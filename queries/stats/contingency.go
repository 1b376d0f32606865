package stats

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// ContingencyOptions configure Contingency.
type ContingencyOptions struct {
	Table string // Required
	// Row and Col are the two grouping expressions (columns with a public
	// domain: a study string column with listed values, a small int
	// column). Required.
	Row, Col string
	Where    string
	Budget   Budget
}

// Contingency is a released r×c table of counts with tests of
// independence.
type Contingency struct {
	RowLabels, ColLabels []string
	// Counts[i][j] is the released count of cell (i, j) and its noise.
	Counts [][]Noisy
	// ChiSquare is Pearson's statistic (no continuity correction) on the
	// counts rounded to whole numbers and clipped at 0; ChiSquareP its
	// p-value with (r−1)(c−1) degrees of freedom, and ChiSquarePCI the
	// 2.5% and 97.5% quantiles of that p-value over the noise (simulated).
	ChiSquare, ChiSquareP float64
	ChiSquarePCI          [2]float64
	// FisherP is the two-sided Fisher exact p-value for a 2×2 table (NaN
	// otherwise), on the same rounded counts, with its noise interval.
	FisherP   float64
	FisherPCI [2]float64
}

// Contingency releases the counts of a two-way table in one round:
// `SELECT row, col, COUNT(*) ... GROUP BY row, col`, one measure, one row
// per patient so sensitivity 1, the whole budget. Counts have intervals
// ±1.96·σ; the test p-values have intervals from simulating the noise. It
// refuses when the noise standard deviation of a cell exceeds a tenth of
// the mean cell count (the table would be mostly noise).
func ContingencyTable(ctx context.Context, q Querier, o ContingencyOptions) (*Contingency, error) {
	if err := o.Budget.check(); err != nil {
		return nil, err
	}
	if o.Table == "" || o.Row == "" || o.Col == "" {
		return nil, fmt.Errorf("%w: a table and two grouping columns are required", ErrInput)
	}
	rel, err := q.Query(ctx, o.Budget.request("SELECT "+o.Row+" AS r, "+o.Col+" AS c, COUNT(*)"+from(o.Table, o.Where)+" GROUP BY r, c"))
	if err != nil {
		return nil, err
	}
	if rel.KeyColumns != 2 {
		return nil, fmt.Errorf("%w: want two key columns", ErrRelease)
	}
	t := &Contingency{}
	ri, ci := map[string]int{}, map[string]int{}
	for _, row := range rel.Rows {
		if _, ok := ri[row.Keys[0]]; !ok {
			ri[row.Keys[0]] = len(t.RowLabels)
			t.RowLabels = append(t.RowLabels, row.Keys[0])
		}
		if _, ok := ci[row.Keys[1]]; !ok {
			ci[row.Keys[1]] = len(t.ColLabels)
			t.ColLabels = append(t.ColLabels, row.Keys[1])
		}
	}
	t.Counts = make([][]Noisy, len(t.RowLabels))
	for i := range t.Counts {
		t.Counts[i] = make([]Noisy, len(t.ColLabels))
	}
	var flat []Noisy
	total, maxVar := 0.0, 0.0
	for _, row := range rel.Rows {
		v := row.Values[0]
		if v.Missing {
			return nil, fmt.Errorf("%w: the count of %s was withheld (small-count threshold)", ErrRelease, strings.Join(row.Keys, ", "))
		}
		t.Counts[ri[row.Keys[0]]][ci[row.Keys[1]]] = v
		flat = append(flat, v)
		total += v.Value
		maxVar = max(maxVar, v.Var)
	}
	if mean := total / float64(len(flat)); math.Sqrt(maxVar) > mean/10 {
		return nil, fmt.Errorf("%w: the noise (σ = %.1f per cell) exceeds a tenth of the mean cell count (%.1f)", ErrBudget, math.Sqrt(maxVar), mean)
	}
	t.test()
	return t, nil
}

// test computes the tests and their noise intervals from t.Counts.
func (t *Contingency) test() {
	nr, nc := len(t.RowLabels), len(t.ColLabels)
	tests := func(v []float64) []float64 {
		m := make([][]float64, nr)
		for i := range m {
			m[i] = make([]float64, nc)
			for j := range m[i] {
				m[i][j] = math.Max(0, math.Round(v[i*nc+j]))
			}
		}
		x2, p := chiSquare(m)
		f := math.NaN()
		if nr == 2 && nc == 2 {
			f = fisher2x2(int(m[0][0]), int(m[0][1]), int(m[1][0]), int(m[1][1]))
		}
		return []float64{x2, p, f}
	}
	ordered := make([]Noisy, 0, nr*nc)
	for i := range nr {
		ordered = append(ordered, t.Counts[i]...)
	}
	r := tests(values(ordered))
	t.ChiSquare, t.ChiSquareP, t.FisherP = r[0], r[1], r[2]
	_, lo, hi, _ := simulate(ordered, 1000, func(v []float64) ([]float64, bool) { return tests(v), true })
	t.ChiSquarePCI = [2]float64{lo[1], hi[1]}
	t.FisherPCI = [2]float64{lo[2], hi[2]}
}

// Dichotomise returns the 2-column table of t whose first column sums the
// columns for which in reports true (named yes) and whose second sums the
// others (named no), with its tests. Noise variances add. Free
// post-processing.
func (t *Contingency) Dichotomise(in func(col string) bool, yes, no string) *Contingency {
	d := &Contingency{RowLabels: t.RowLabels, ColLabels: []string{yes, no}}
	for i := range t.RowLabels {
		row := make([]Noisy, 2)
		for j, c := range t.ColLabels {
			k := 1
			if in(c) {
				k = 0
			}
			row[k].Value += t.Counts[i][j].Value
			row[k].Var += t.Counts[i][j].Var
		}
		d.Counts = append(d.Counts, row)
	}
	d.test()
	return d
}

// RowTotal returns the released total of a row (sum of its cells).
func (t *Contingency) RowTotal(row string) (Noisy, bool) {
	for i, r := range t.RowLabels {
		if r == row {
			var s Noisy
			for _, v := range t.Counts[i] {
				s.Value += v.Value
				s.Var += v.Var
			}
			return s, true
		}
	}
	return Noisy{}, false
}

// Count returns the released count of (row, col) and whether it exists.
func (t *Contingency) Count(row, col string) (Noisy, bool) {
	for i, r := range t.RowLabels {
		for j, c := range t.ColLabels {
			if r == row && c == col {
				return t.Counts[i][j], true
			}
		}
	}
	return Noisy{}, false
}

// chiSquare returns Pearson's X² and its p-value; rows or columns with a
// zero margin are left out (they carry no information).
func chiSquare(m [][]float64) (x2, p float64) {
	var rows, cols []float64
	var n float64
	for i := range m {
		var s float64
		for j := range m[i] {
			s += m[i][j]
		}
		rows = append(rows, s)
		n += s
	}
	for j := range m[0] {
		var s float64
		for i := range m {
			s += m[i][j]
		}
		cols = append(cols, s)
	}
	r, c := 0, 0
	for _, s := range rows {
		if s > 0 {
			r++
		}
	}
	for _, s := range cols {
		if s > 0 {
			c++
		}
	}
	if n == 0 || r < 2 || c < 2 {
		return math.NaN(), math.NaN()
	}
	for i := range m {
		for j := range m[i] {
			if rows[i] == 0 || cols[j] == 0 {
				continue
			}
			e := rows[i] * cols[j] / n
			x2 += (m[i][j] - e) * (m[i][j] - e) / e
		}
	}
	return x2, ChiSquareSurvival(x2, float64((r-1)*(c-1)))
}

// fisher2x2 is the two-sided Fisher exact test: the probability, under the
// hypergeometric distribution with the table's margins, of tables no more
// likely than the observed one.
func fisher2x2(a, b, c, d int) float64 {
	r1, c1, n := a+b, a+c, a+b+c+d
	logp := func(x int) float64 {
		return lchoose(c1, x) + lchoose(n-c1, r1-x) - lchoose(n, r1)
	}
	obs := logp(a)
	var p float64
	for x := max(0, r1+c1-n); x <= min(r1, c1); x++ {
		if lp := logp(x); lp <= obs+1e-7 {
			p += math.Exp(lp)
		}
	}
	return math.Min(p, 1)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// ChiSquareSurvival is P(X > x) for X ~ χ²(df): the regularised upper
// incomplete gamma function Q(df/2, x/2).
func ChiSquareSurvival(x, df float64) float64 {
	if x <= 0 {
		return 1
	}
	return gammaQ(df/2, x/2)
}

// gammaQ is the regularised upper incomplete gamma function (series for
// x < a+1, continued fraction otherwise; Numerical Recipes 6.2).
func gammaQ(a, x float64) float64 {
	lg, _ := math.Lgamma(a)
	if x < a+1 {
		sum, del, ap := 1/a, 1/a, a
		for range 1000 {
			ap++
			del *= x / ap
			sum += del
			if math.Abs(del) < math.Abs(sum)*1e-15 {
				break
			}
		}
		return 1 - sum*math.Exp(-x+a*math.Log(x)-lg)
	}
	b := x + 1 - a
	c, d := 1/1e-300, 1/b
	h := d
	for i := 1; i < 1000; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < 1e-300 {
			d = 1e-300
		}
		c = b + an/c
		if math.Abs(c) < 1e-300 {
			c = 1e-300
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-15 {
			break
		}
	}
	return math.Exp(-x+a*math.Log(x)-lg) * h
}
