package forecast

import (
	"fmt"
	"math"
	"math/cmplx"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Tuning of the methods (see the package documentation).
const (
	// baselineSupport is the number of equally weighted points that keep
	// the baseline's h-week change distribution between convolutions.
	baselineSupport = 256
	// ARLags is the order p of the log-scale autoregression.
	ARLags = 2
	// ARWindow is the number of most recent weeks the AR model is fitted on.
	ARWindow = 156
	// arMinRows is the fewest regression rows the AR fit accepts.
	arMinRows = 12
	// arMinInnovation floors the innovation variance on the log scale.
	arMinInnovation = 1e-4
	// seasonLength is the lag, in weeks, of the same week a year earlier.
	seasonLength = 52
	// seasonalHalfWidth: analogues are taken from the weeks j = −2..2
	// around the same calendar week.
	seasonalHalfWidth = 2
)

func normalQuantile(p float64) float64 { return distuv.UnitNormal.Quantile(p) }

// baselineQuantiles is the FluSight baseline, for each horizon.
func baselineQuantiles(history []Point, horizons []int) ([][]float64, error) {
	if len(history) < 3 {
		return nil, fmt.Errorf("%w: the baseline needs at least 3 weeks, have %d", ErrHistory, len(history))
	}
	d := make([]float64, 0, 2*(len(history)-1))
	for i := 1; i < len(history); i++ {
		c := history[i].Value - history[i-1].Value
		d = append(d, c, -c)
	}
	slices.Sort(d)
	// change[h] is the distribution of the h-week change, exact for h = 1.
	change := [MaxHorizon + 1][]float64{1: d}
	step := reduce(d, baselineSupport)
	for h := 2; h <= slices.Max(horizons); h++ {
		prev := change[h-1]
		sums := make([]float64, 0, len(prev)*len(step))
		for _, a := range reduce(prev, baselineSupport) {
			for _, b := range step {
				sums = append(sums, a+b)
			}
		}
		slices.Sort(sums)
		change[h] = reduce(sums, baselineSupport)
	}
	last := history[len(history)-1].Value
	out := make([][]float64, len(horizons))
	for k, h := range horizons {
		out[k] = make([]float64, len(Quantiles))
		for i, tau := range Quantiles {
			out[k][i] = max(last+quantile7(change[h], tau), 0)
		}
	}
	return out, nil
}

// reduce keeps k equally weighted points of the sorted sample x: its
// quantiles at (i + ½)/k. Samples with at most k points are kept whole.
func reduce(x []float64, k int) []float64 {
	if len(x) <= k {
		return x
	}
	out := make([]float64, k)
	for i := range out {
		out[i] = quantile7(x, (float64(i)+0.5)/float64(k))
	}
	return out
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

// arFit is a fitted log-scale AR(p).
type arFit struct {
	c     float64   // intercept
	phi   []float64 // φ_1..φ_p
	sigma float64   // innovation variance σ²
}

// fitAR fits y_t = c + Σ φ_i y_{t−i} + η_t with measurement error of known
// variance w_t in every y_t.
func fitAR(y, w []float64, p int) (arFit, error) {
	m := len(y) - p
	k := p + 1
	if m < arMinRows {
		return arFit{}, fmt.Errorf("%w: AR(%d) needs at least %d weeks, have %d", ErrHistory, p, arMinRows+p, len(y))
	}
	x := mat.NewDense(m, k, nil)
	target := mat.NewVecDense(m, nil)
	for r := range m {
		t := r + p
		x.Set(r, 0, 1)
		for i := 1; i <= p; i++ {
			x.Set(r, i, y[t-i])
		}
		target.SetVec(r, y[t])
	}
	var xtx mat.SymDense
	xtx.SymOuterK(1, x.T())
	var xty mat.VecDense
	xty.MulVec(x.T(), target)

	// The corrected normal equations: subtract the expected noise part of
	// XᵀX (independent errors: diagonal only).
	corrected := mat.NewSymDense(k, nil)
	corrected.CopySym(&xtx)
	for i := 1; i <= p; i++ {
		var noise float64
		for r := range m {
			noise += w[r+p-i]
		}
		corrected.SetSym(i, i, corrected.At(i, i)-noise)
	}
	beta, err := solveSym(corrected, &xty)
	if err != nil || !stationary(beta) {
		beta, err = solveSym(&xtx, &xty)
		if err != nil {
			return arFit{}, fmt.Errorf("%w: the AR design is singular (a constant series?)", ErrHistory)
		}
	}
	fit := arFit{c: beta.AtVec(0), phi: make([]float64, p)}
	for i := range p {
		fit.phi[i] = beta.AtVec(i + 1)
	}
	if !stationary(beta) {
		// Even least squares says explosive: forecast a random walk on the
		// log scale (φ_1 = 1) rather than extrapolate an explosion.
		fit.c = 0
		clear(fit.phi)
		fit.phi[0] = 1
	}
	var resid mat.VecDense
	resid.MulVec(x, beta)
	resid.SubVec(target, &resid)
	rss := mat.Dot(&resid, &resid)
	var noise float64
	for r := range m {
		t := r + p
		noise += w[t]
		for i := 1; i <= p; i++ {
			noise += fit.phi[i-1] * fit.phi[i-1] * w[t-i]
		}
	}
	fit.sigma = max((rss-noise)/float64(m-k), arMinInnovation)
	return fit, nil
}

// stationary reports whether the AR coefficients β = (c, φ_1..φ_p) are
// stationary: every eigenvalue of the companion matrix inside the unit
// circle.
func stationary(beta *mat.VecDense) bool {
	p := beta.Len() - 1
	comp := mat.NewDense(p, p, nil)
	for i := range p {
		comp.Set(0, i, beta.AtVec(i+1))
		if i > 0 {
			comp.Set(i, i-1, 1)
		}
	}
	var eig mat.Eigen
	if !eig.Factorize(comp, mat.EigenNone) {
		return false
	}
	for _, v := range eig.Values(nil) {
		if cmplx.Abs(v) >= 1 {
			return false
		}
	}
	return true
}

// solveSym solves a·β = b by Cholesky; it fails when a is not positive
// definite.
func solveSym(a mat.Symmetric, b mat.Vector) (*mat.VecDense, error) {
	var ch mat.Cholesky
	if !ch.Factorize(a) {
		return nil, fmt.Errorf("%w: not positive definite", ErrInput)
	}
	var beta mat.VecDense
	if err := ch.SolveVecTo(&beta, b); err != nil {
		return nil, err
	}
	return &beta, nil
}

// arQuantiles is the log-scale autoregression, for each horizon.
func arQuantiles(history []Point, horizons []int) ([][]float64, error) {
	if len(history) > ARWindow {
		history = history[len(history)-ARWindow:]
	}
	y, w := logScale(history)
	fit, err := fitAR(y, w, ARLags)
	if err != nil {
		return nil, err
	}
	last := history[len(history)-1]
	out := make([][]float64, len(horizons))
	for k, h := range horizons {
		mu, v := fit.predict(y, w, h)
		v += last.Variance / math.Exp(2*mu) // the noise of the target's release
		out[k] = fromLogNormal(mu, math.Sqrt(v))
	}
	return out, nil
}

// predict returns the h-week-ahead mean on the log scale and its variance
// without the target's own noise: innovations plus the noise of the
// starting values.
func (f arFit) predict(y, w []float64, h int) (mu, variance float64) {
	p := len(f.phi)
	comp := mat.NewDense(p, p, nil) // the companion matrix F
	for i, phi := range f.phi {
		comp.Set(0, i, phi)
	}
	for i := 1; i < p; i++ {
		comp.Set(i, i-1, 1)
	}
	n := len(y)
	start := mat.NewVecDense(p, nil) // s_T = (y_T, ..., y_{T−p+1})
	startNoise := make([]float64, p)
	for i := range p {
		start.SetVec(i, y[n-1-i])
		startNoise[i] = w[n-1-i]
	}
	var power mat.Dense
	for j := range h {
		power.Pow(comp, j)
		psi := power.At(0, 0)
		mu += f.c * psi
		variance += f.sigma * psi * psi
	}
	power.Pow(comp, h)
	b := mat.Row(nil, 0, &power)
	mu += floats.Dot(b, start.RawVector().Data)
	for i := range p {
		variance += b[i] * b[i] * startNoise[i]
	}
	return mu, variance
}

// seasonalQuantiles is the seasonal analogue baseline, for each horizon.
func seasonalQuantiles(history []Point, horizons []int) ([][]float64, error) {
	out := make([][]float64, len(horizons))
	for k, h := range horizons {
		q, err := seasonalHorizon(history, h)
		if err != nil {
			return nil, err
		}
		out[k] = q
	}
	return out, nil
}

func seasonalHorizon(history []Point, h int) ([]float64, error) {
	y, w := logScale(history)
	n := len(y)
	t := n - 1
	var g []float64
	for k := 1; ; k++ {
		base := t - seasonLength*k
		if base-seasonalHalfWidth < 0 {
			break
		}
		for j := -seasonalHalfWidth; j <= seasonalHalfWidth; j++ {
			if base+h+j > t { // the analogue's future must be in the history
				continue
			}
			g = append(g, y[base+h+j]-y[base+j])
		}
	}
	if len(g) < 2*seasonalHalfWidth+1 {
		return nil, fmt.Errorf("%w: the seasonal baseline needs a season (%d weeks) and %d more, have %d",
			ErrHistory, seasonLength, h+seasonalHalfWidth, n)
	}
	mean, sd := stat.MeanStdDev(g, nil)
	mu := y[t] + mean
	v := sd*sd + w[t] + history[t].Variance/math.Exp(2*mu)
	return fromLogNormal(mu, math.Sqrt(v)), nil
}
