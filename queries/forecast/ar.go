package forecast

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/diff/fd"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
	"gonum.org/v1/gonum/stat"
)

// Tuning of the autoregression (see the package documentation).
const (
	// ARWindow is the number of most recent weeks the AR model is fitted on.
	ARWindow = 156
	// ARMinWeeks is the shortest history the AR model is fitted on.
	ARMinWeeks = 12
	// levelHalfWidth: the level that scales a release's noise on the log
	// scale is the mean of the released values (clipped at 0) within this
	// many weeks either side of it, inside the history.
	levelHalfWidth = 2
	// arMaxPACF bounds the partial autocorrelations |r_i|: the fit stays
	// stationary, away from a unit root.
	arMaxPACF = 0.995
	// arMinLogVar bounds the estimated variances below (their logarithm).
	arMinLogVar = -14
)

// arParams are the parameters of the log-scale AR(2) with observation
// errors: z_t − μ = φ1 (z_{t−1} − μ) + φ2 (z_{t−2} − μ) + η_t,
// η_t ~ N(0, σ²), observed as y_t = z_t + ε_t + u_t with ε_t the release's
// noise (known variance w_t) and u_t ~ N(0, τ²) other errors.
type arParams struct {
	mu, phi1, phi2, sigma2, tau2 float64
}

// arParamsOf maps the unconstrained variables of the fit, x = (μ, atanh
// r1/arMaxPACF, atanh r2/arMaxPACF, log σ² [, log τ²]), to parameters. The
// r_i are partial autocorrelations: φ2 = r2, φ1 = r1(1 − r2) is stationary
// for every |r_i| < 1 (Barndorff-Nielsen & Schou 1973). Without a fifth
// variable τ² = 0.
func arParamsOf(x []float64) arParams {
	r1, r2 := arMaxPACF*math.Tanh(x[1]), arMaxPACF*math.Tanh(x[2])
	p := arParams{mu: x[0], phi1: r1 * (1 - r2), phi2: r2, sigma2: math.Exp(max(x[3], arMinLogVar))}
	if len(x) > 4 {
		p.tau2 = math.Exp(max(x[4], arMinLogVar))
	}
	return p
}

// kalman is the state of the Kalman filter for the AR(2): the mean
// a = (z_t − μ, z_{t−1} − μ) and its covariance P = [[p00, p01], [p01, p11]].
// With one observation a week the filter needs no matrix inverse: the
// arithmetic of the 2×2 covariance is written out.
type kalman struct {
	a0, a1, p00, p01, p11 float64
}

// stationary returns the distribution of the state before any observation:
// mean 0 and the stationary covariance of (z_t, z_{t−1}) (Brockwell & Davis
// 1991, §3.3): γ0 = σ²(1−φ2)/((1+φ2)((1−φ2)² − φ1²)), γ1 = φ1 γ0/(1−φ2).
func (m arParams) stationary() kalman {
	f1, f2 := m.phi1, m.phi2
	g0 := m.sigma2 * (1 - f2) / ((1 + f2) * ((1-f2)*(1-f2) - f1*f1))
	g1 := f1 * g0 / (1 - f2)
	return kalman{p00: g0, p01: g1, p11: g0}
}

// predict moves the state a week ahead: a ← F a, P ← F P Fᵀ + diag(σ², 0),
// F = [[φ1, φ2], [1, 0]].
func (k kalman) predict(m arParams) kalman {
	f1, f2 := m.phi1, m.phi2
	return kalman{
		a0: f1*k.a0 + f2*k.a1, a1: k.a0,
		p00: f1*f1*k.p00 + 2*f1*f2*k.p01 + f2*f2*k.p11 + m.sigma2, p01: f1*k.p00 + f2*k.p01, p11: k.p00,
	}
}

// update conditions the state on obs, an observation of z_t − μ with error
// variance v, and returns it with the observation's log-likelihood.
func (k kalman) update(obs, v float64) (kalman, float64) {
	s := k.p00 + v
	e := obs - k.a0
	g0, g1 := k.p00/s, k.p01/s
	return kalman{
		a0: k.a0 + g0*e, a1: k.a1 + g1*e,
		p00: k.p00 - g0*k.p00, p01: k.p01 - g0*k.p01, p11: k.p11 - g1*k.p01,
	}, -0.5 * (math.Log(2*math.Pi*s) + e*e/s)
}

// filter runs the Kalman filter over y, whose release noise has variances
// w on the log scale, and returns the log-likelihood and the state after
// the last week.
func (m arParams) filter(y, w []float64) (float64, kalman) {
	k := m.stationary()
	var ll float64
	for t := range y {
		var l float64
		k, l = k.predict(m).update(y[t]-m.mu, w[t]+m.tau2)
		ll += l
	}
	return ll, k
}

// negLogLik is the negative log-likelihood of the unconstrained variables.
func negLogLik(y, w []float64) func(x []float64) float64 {
	return func(x []float64) float64 {
		ll, _ := arParamsOf(x).filter(y, w)
		if math.IsNaN(ll) {
			return math.Inf(1)
		}
		return -ll
	}
}

// fitAR fits the AR(2) to y by maximum likelihood and returns the
// unconstrained variables (see arParamsOf); reporting adds τ² to the fit.
func fitAR(y, w []float64, reporting bool) ([]float64, error) {
	if len(y) < ARMinWeeks {
		return nil, fmt.Errorf("%w: the autoregression needs at least %d weeks, have %d", ErrHistory, ARMinWeeks, len(y))
	}
	// Start from the Yule-Walker estimates: the partial autocorrelations
	// from the lag-1 and lag-2 correlations, σ² = γ0(1 − r1²)(1 − r2²).
	n := len(y)
	rho1 := stat.Correlation(y[1:], y[:n-1], nil)
	rho2 := stat.Correlation(y[2:], y[:n-2], nil)
	r1 := clampPACF(rho1)
	r2 := clampPACF((rho2 - rho1*rho1) / (1 - rho1*rho1))
	logVar := math.Log(max(stat.Variance(y, nil)*(1-r1*r1)*(1-r2*r2), 1e-4))
	x0 := []float64{stat.Mean(y, nil), math.Atanh(r1 / arMaxPACF), math.Atanh(r2 / arMaxPACF), logVar}
	if reporting {
		x0 = append(x0, logVar-1)
	}
	res, err := optimize.Minimize(optimize.Problem{Func: negLogLik(y, w)}, x0,
		&optimize.Settings{Converger: &optimize.FunctionConverge{Absolute: 1e-6, Iterations: 50}, FuncEvaluations: 2000},
		&optimize.NelderMead{})
	if res == nil {
		return nil, fmt.Errorf("%w: fitting the autoregression: %w", ErrInput, err)
	}
	return res.X, nil
}

// clampPACF keeps a starting partial autocorrelation inside the fit's
// range (a constant series gives NaN: start from 0).
func clampPACF(r float64) float64 {
	if math.IsNaN(r) {
		return 0
	}
	return max(-0.9, min(r, 0.98))
}

// arQuantiles is the AR method (DP noise only).
func arQuantiles(history []Point, steps []int) ([][]float64, error) {
	return arForecast(history, steps, false)
}

// arReportingQuantiles is the AR with a reporting error, the ensemble's
// second member.
func arReportingQuantiles(history []Point, steps []int) ([][]float64, error) {
	return arForecast(history, steps, true)
}

// arForecast fits the log-scale AR(2) to the last ARWindow weeks and
// returns the quantiles of the true value of each week steps[i] weeks
// after the last: log-normal, with the mean and variance of the filter's
// prediction and the variance due to the estimated parameters.
func arForecast(history []Point, steps []int, reporting bool) ([][]float64, error) {
	if len(history) > ARWindow {
		history = history[len(history)-ARWindow:]
	}
	y, w := logScale(history)
	x, err := fitAR(y, w, reporting)
	if err != nil {
		return nil, err
	}
	maxStep := slices.Max(steps)
	// predict returns the means of z 1..maxStep weeks after the last week
	// given the variables x, and their variances.
	predict := func(x []float64) (mean, variance []float64) {
		m := arParamsOf(x)
		_, k := m.filter(y, w)
		mean, variance = make([]float64, maxStep), make([]float64, maxStep)
		for j := range maxStep {
			k = k.predict(m)
			mean[j], variance[j] = m.mu+k.a0, k.p00
		}
		return mean, variance
	}
	mean, variance := predict(x)
	variance = addParamUncertainty(variance, x, negLogLik(y, w), func(dst, x []float64) {
		m, _ := predict(x)
		copy(dst, m)
	})
	out := make([][]float64, len(steps))
	for i, j := range steps {
		out[i] = fromLogNormal(mean[j-1], math.Sqrt(variance[j-1]))
	}
	return out, nil
}

// addParamUncertainty adds to the variances of the forecast means the part
// due to the estimated parameters, g_jᵀ I⁻¹ g_j, with I the observed
// information (the Hessian of the negative log-likelihood at the estimate
// x) and g_j the gradient of mean j in x, both by finite differences
// (gonum's diff/fd). Where I is not positive definite (an estimate on a
// flat ridge, or short of the optimum) it adds nothing.
func addParamUncertainty(variance, x []float64, nll func([]float64) float64, mean func(dst, x []float64)) []float64 {
	n := len(x)
	info := mat.NewSymDense(n, nil)
	fd.Hessian(info, nll, x, nil)
	var ch mat.Cholesky
	if !ch.Factorize(info) {
		return variance
	}
	var cov mat.SymDense
	if err := ch.InverseTo(&cov); err != nil {
		return variance
	}
	jac := mat.NewDense(len(variance), n, nil)
	fd.Jacobian(jac, mean, x, nil)
	out := slices.Clone(variance)
	for j := range out {
		g := jac.RowView(j)
		out[j] += max(mat.Inner(g, &cov, g), 0)
	}
	return out
}

// logScale returns y_t = log(max(x_t, 0) + 1) and the variance of the noise
// of the release on that scale by the delta method, w_t = v_t/(ℓ_t + 1)²,
// where ℓ_t is the level: the mean of max(x_s, 0) over the weeks s within
// levelHalfWidth of t in the history (the noisy value itself would make w_t
// too large where the noise happened to be negative and too small where it
// was positive).
func logScale(history []Point) (y, w []float64) {
	n := len(history)
	y = make([]float64, n)
	w = make([]float64, n)
	for t, p := range history {
		y[t] = math.Log1p(max(p.Value, 0))
		var sum float64
		lo, hi := max(t-levelHalfWidth, 0), min(t+levelHalfWidth, n-1)
		for s := lo; s <= hi; s++ {
			sum += max(history[s].Value, 0)
		}
		level := sum/float64(hi-lo+1) + 1
		w[t] = p.Variance / (level * level)
	}
	return y, w
}

// fromLogNormal returns the quantiles exp(mu + z_τ·sd) − 1.
func fromLogNormal(mu, sd float64) []float64 {
	out := make([]float64, len(Quantiles))
	for i, tau := range Quantiles {
		out[i] = math.Expm1(mu + sd*normalQuantile(tau))
	}
	return out
}
