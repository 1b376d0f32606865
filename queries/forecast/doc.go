// Package forecast turns a released weekly series into 1-4 week-ahead
// quantile forecasts in the FluSight format and scores them. It is
// post-processing of released values: it reads no data store, draws no
// noise and costs no privacy budget.
//
// # Input
//
// A history is a slice of Point, one per week, dates strictly 7 days
// apart, each with the exact variance v_t of the DP noise of its release
// (0 for an exact series). Values may be negative (noise); counts are
// clipped at 0 where a method takes logarithms. The forecast origin T is the
// last point; horizon h targets the week T + 7h days.
//
// # Methods
//
// Every method returns the 23 FluSight quantile levels (Quantiles) per
// horizon, non-negative and non-decreasing.
//
//   - Baseline (the FluSight baseline, as the CDC's `Flusight-baseline`
//     built with simplets' quantile_baseline, transformation "none",
//     symmetrised): the median is the last released value x_T; the
//     one-week change is drawn from the empirical distribution of all past
//     week-to-week changes d_t = x_t − x_{t−1} together with their negatives
//     (symmetrised, so the median change is 0); the h-week change is the sum
//     of h independent such draws. The CDC simulates 100,000 paths; here the
//     h-fold convolution is computed deterministically (exact for h = 1; for
//     h > 1 each step's distribution is kept as baselineSupport equally
//     weighted points). Quantiles are read as R's default (type 7) and clipped at 0 (the CDC clips each path at 0,
//     which gives the same quantiles). The CDC rounds quantiles up to whole
//     numbers; this package does not. The DP noise enters only as it is in
//     the released differences: the baseline is the reference, kept as
//     defined.
//
//   - AR (a log-scale autoregression of order ARLags): y_t = log(x_t + 1)
//     with x_t clipped at 0, y_t = c + Σ_i φ_i y_{t−i} + η_t, η_t ~ N(0, σ²),
//     fitted on the last at most ARWindow weeks. The noise of a release
//     enters the log scale with variance w_t = v_t/(x_t + 1)² (delta method).
//     The observed y_t are the latent log counts plus independent errors of
//     known variance w_t, so the fit is the corrected (method-of-moments)
//     least-squares estimator of errors-in-variables regression (Fuller
//     1987, §2.2): β = (XᵀX − D)⁻¹Xᵀy, with D diagonal, D_ii = Σ_t w_{t−i}
//     for lag i (0 for the intercept): ordinary least squares would shrink
//     φ towards 0 by the noise in the regressors. When XᵀX − D is not
//     positive definite (noise as large as the signal's variation) the fit
//     or gives non-stationary coefficients (companion eigenvalues, gonum
//     mat.Eigen) falls back to ordinary least squares, and a still explosive
//     fit to a random walk on the log scale. The innovation variance is the
//     mean squared residual less the noise it contains,
//     σ² = (Σ_t r_t² − Σ_t (w_t + Σ_i φ_i² w_{t−i}))/(m − p − 1), floored at
//     arMinInnovation. With F the companion matrix of φ, ψ_j = (F^j)_{00}
//     and b_h the first row of F^h, the h-week forecast on the log scale is
//     normal with mean μ_h = c Σ_{j<h} ψ_j + b_h·s_T (s_T the last p
//     released logs) and variance
//
//     σ² Σ_{j<h} ψ_j² + Σ_i b_{h,i}² w_{T−i} + w_{T+h},
//
//     the innovations, the noise of the released values the forecast starts
//     from, and the noise of the released value being forecast
//     (w_{T+h} = v_T/exp(μ_h)², assuming the next releases carry the last
//     release's variance). Quantiles are exp(μ_h + z_τ √var) − 1, clipped at
//     0. Parameter uncertainty is not included.
//
//   - Seasonal (a seasonal analogue baseline): the log-scale change over h
//     weeks in past seasons at the same time of year, g = y_{T+h−52k+j} −
//     y_{T−52k+j} for every earlier season k and j = −2..2 (five weeks
//     around the same calendar week, since seasons shift); the forecast is
//     normal on the log scale with mean y_T + mean(g) and variance
//     var(g) + w_T + w_{T+h} (the sample variance of the analogues already
//     contains their own noise). It needs at least one season of history
//     before the origin plus h + 2 weeks (ErrHistory otherwise).
//
//   - Ensemble: the quantile average (Vincentisation) of Baseline, AR and,
//     when the history is long enough, Seasonal, level by level; an average
//     of non-decreasing quantile vectors is non-decreasing.
//
// # Scores
//
// WIS is the weighted interval score of Bracher et al. (2021), PLoS Comput
// Biol 17(2):e1008618, as FluSight scores it: the median and the K = 11
// central intervals of levels 1 − α, α ∈ {0.02, 0.05, 0.1, 0.2, ..., 0.9},
//
//	WIS = (½|y − m| + Σ_k (α_k/2) IS_{α_k}) / (K + ½),
//	IS_α = (u − l) + (2/α)(l − y)·1{y < l} + (2/α)(y − u)·1{y > u}.
//
// Evaluate runs rolling origins: the forecast from origin T is computed on
// history[:T+1] only (a copy), and scored against the released value at
// T + h. Relative WIS is the method's mean WIS over the baseline's on the
// same forecasts (FluSight's headline ratio; < 1 is better).
package forecast
