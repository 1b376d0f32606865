package forecast

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
)

// baselineBins is the number of lattice steps between 0 and the largest
// weekly change on which the baseline's k-week change is convolved.
const baselineBins = 500

// baselineQuantiles is the FluSight baseline, for each step ahead.
func baselineQuantiles(history []Point, steps []int) ([][]float64, error) {
	if len(history) < 3 {
		return nil, fmt.Errorf("%w: the baseline needs at least 3 weeks, have %d", ErrHistory, len(history))
	}
	d := make([]float64, 0, 2*(len(history)-1))
	for i := 1; i < len(history); i++ {
		c := history[i].Value - history[i-1].Value
		d = append(d, c, -c)
	}
	slices.Sort(d)
	last := history[len(history)-1].Value
	sums := newChangeSums(d, slices.Max(steps))
	out := make([][]float64, len(steps))
	for i, k := range steps {
		out[i] = make([]float64, len(Quantiles))
		for j, tau := range Quantiles {
			out[i][j] = max(last+sums.quantile(k, tau), 0)
		}
	}
	return out, nil
}

// changeSums is the distribution of the sum of k independent draws from
// the sorted sample d (the k-week change), for k = 1..K: exact for k = 1;
// for k ≥ 2 the draws are put on a lattice of spacing Δ = max|d|/
// baselineBins (each point split between its two neighbours in proportion
// to its distance, which keeps the mean and the symmetry) and convolved k
// times through the Fourier transform.
type changeSums struct {
	d     []float64
	delta float64
	pmf   [][]float64 // pmf[k][s]: probability of the sum sΔ, s index mod len
}

func newChangeSums(d []float64, maxStep int) *changeSums {
	c := &changeSums{d: d, delta: max(-d[0], d[len(d)-1]) / baselineBins, pmf: make([][]float64, maxStep+1)}
	if maxStep < 2 || c.delta == 0 {
		return c
	}
	n := 1
	for n < 2*maxStep*baselineBins+1 {
		n *= 2
	}
	p := make([]float64, n)
	w := 1 / float64(len(d))
	for _, x := range d {
		pos := x / c.delta
		lo := math.Floor(pos)
		f := pos - lo
		i := int(lo)
		p[mod(i, n)] += w * (1 - f)
		p[mod(i+1, n)] += w * f
	}
	fft := fourier.NewFFT(n)
	coef := fft.Coefficients(nil, p)
	pow := slices.Clone(coef)
	for k := 2; k <= maxStep; k++ {
		for i := range pow {
			pow[i] *= coef[i]
		}
		seq := fft.Sequence(nil, pow)
		for i := range seq {
			seq[i] = max(seq[i]/float64(n), 0)
		}
		c.pmf[k] = seq
	}
	return c
}

func mod(i, n int) int { return ((i % n) + n) % n }

// quantile is the τ-quantile of the k-week change. For k ≥ 2 each lattice
// point's probability is spread evenly over the half steps either side of
// it (a symmetric distribution keeps symmetric quantiles).
func (c *changeSums) quantile(k int, tau float64) float64 {
	if k == 1 || c.delta == 0 {
		return quantile7(c.d, tau)
	}
	pmf := c.pmf[k]
	n := len(pmf)
	span := k * baselineBins
	var cdf float64
	for s := -span; s <= span; s++ {
		p := pmf[mod(s, n)]
		if cdf+p >= tau && p > 0 {
			return (float64(s) - 0.5 + (tau-cdf)/p) * c.delta
		}
		cdf += p
	}
	return float64(span) * c.delta
}

// quantile7 is the τ-quantile of the sorted sample x as R's default
// (type 7): linear interpolation at position (n−1)τ. Unlike gonum's
// stat.LinInterp it is symmetric (a symmetric sample has median 0).
func quantile7(x []float64, tau float64) float64 {
	pos := float64(len(x)-1) * tau
	i := int(math.Floor(pos))
	if i >= len(x)-1 {
		return x[len(x)-1]
	}
	frac := pos - float64(i)
	return x[i] + frac*(x[i+1]-x[i])
}
