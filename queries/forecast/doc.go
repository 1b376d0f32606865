// Package forecast turns a released weekly series into quantile forecasts in
// the FluSight format and scores them. It is post-processing of released
// values: it reads no data store, draws no noise and costs no privacy
// budget. Its functions are pure and safe for concurrent use.
//
// # Input, horizons, target
//
// A history is a slice of Point, one per week, dates exactly 7 days apart,
// each with the exact variance v_t of the DP noise of its release (0 for an
// exact series; result.Number.Variance of a fedstat release). Values may be
// negative (noise); methods that take logarithms clip them at 0.
//
// Horizons follow FluSight: the reference date is the week after the last
// week of the history (the week the forecast is made in) and horizon h =
// 0..3 targets the week Reference + 7h days, that is h + 1 weeks after the
// last released week: 1 to 4 weeks ahead.
//
// A forecast is of the true value of the target week (what the release
// estimates, and what FluSight scores against), not of its future noisy
// release. Scored against a released value instead, an interval misses a
// little more often than its level says where the release's noise is not
// small against the interval's width.
//
// # Methods
//
// Every method returns the 23 FluSight quantile levels (Quantiles) per
// horizon, non-negative and non-decreasing.
//
//   - Baseline (FluSight's baseline, as the CDC's Flusight-baseline built
//     with simplets' quantile_baseline, no transformation, symmetrised):
//     the median is the last released value x_T; the one-week change is
//     drawn from the empirical distribution of all past week-to-week
//     changes d_t = x_t − x_{t−1} together with their negatives; the
//     change over k weeks is the sum of k independent such draws. The CDC
//     simulates 100,000 paths; here the distribution is computed
//     deterministically: exactly for one week (quantiles read as R's
//     default, type 7), and for k ≥ 2 weeks by putting the changes on a
//     lattice of baselineBins steps up to the largest change (each split
//     between its two neighbours, which keeps the mean and the symmetry)
//     and convolving k times through the Fourier transform (gonum's
//     dsp/fourier). Quantiles are clipped at 0 (the CDC clips each path at
//     0, which gives the same quantiles) and not rounded. The DP noise
//     enters only as it is in the released differences: the baseline is
//     the reference and is kept as defined.
//
//   - AR (a log-scale autoregression of order 2 with the DP noise as
//     observation error): z_t = log(λ_t + 1) for the true value λ_t follows
//     z_t − μ = φ1 (z_{t−1} − μ) + φ2 (z_{t−2} − μ) + η_t, η_t ~ N(0, σ²),
//     and the released value is observed as y_t = log(max(x_t, 0) + 1) =
//     z_t + ε_t, where ε_t is the release's noise on the log scale, of
//     variance w_t = v_t/(ℓ_t + 1)² by the delta method, with ℓ_t the mean
//     of the released values (clipped at 0) within two weeks of t in the
//     history (the level; scaling by the noisy value itself would give too
//     much weight to weeks whose noise happened to be positive). The model
//     is fitted on the last ARWindow weeks (at least ARMinWeeks) by exact
//     maximum likelihood: the Kalman filter gives the Gaussian likelihood
//     of the observations with their known, week-specific noise variances,
//     from the stationary start; it is maximised by Nelder-Mead (gonum's
//     optimize) over μ, log σ² and the partial autocorrelations r1, r2
//     (φ2 = r2, φ1 = r1(1 − r2); |r_i| ≤ 0.995 keeps the fit stationary).
//     The forecast of z_{T+k} is normal with the filter's k-step prediction
//     mean and variance — the innovations still to come plus the
//     uncertainty of the current state, which is where the noise of the
//     recent releases enters — plus g_kᵀ I⁻¹ g_k for the estimated
//     parameters (I the observed information, g_k the gradient of the mean
//     in the parameters, both by finite differences, gonum's diff/fd;
//     gonum's Cholesky for I⁻¹). Quantiles are exp(μ_k + z_τ √var_k) − 1,
//     clipped at 0.
//
//   - Seasonal (a seasonal analogue method): the log-scale change over k
//     weeks in earlier years at the same time of year, g = y_{T+k−52s+j} −
//     y_{T−52s+j} for every earlier year s and j = −2..2 (five weeks around
//     the same calendar week, since seasons shift); the forecast is normal
//     on the log scale with mean y_T + mean(g) and variance var(g) + w_T
//     (the analogues' spread already contains their own noise; w_T is the
//     noise of the starting value). It needs SeasonalMinWeeks (55) weeks of
//     history (ErrHistory otherwise).
//
//   - Ensemble (the default): the quantile average (Vincentisation), level
//     by level, of two fits of the AR model: AR as above, and AR with a
//     second observation error u_t ~ N(0, τ²) of unknown variance
//     (reporting noise: late or batched reports, holidays), estimated with
//     the other parameters. The first follows turns of the epidemic
//     quickly; the second does not mistake a week's reporting noise for a
//     change of trend. An average of non-decreasing quantile vectors is
//     non-decreasing. The members were chosen on the 2022-23 FluSight
//     season, the first in the data, among AR alone, AR with the reporting
//     error alone, their average, their average with the baseline, and AR
//     with the seasonal method (see docs/statistics.md, "Forecasts"); the
//     seasonal method and the baseline did not improve it.
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
// Evaluate runs rolling origins: the forecast made at a reference date is
// computed on a copy of the history up to the week before it only, and
// scored against the truth of each target week (EvalOptions.Truth; by
// default the series' own values). Relative WIS is the method's mean WIS
// over the baseline's on the same targets (FluSight's headline ratio with
// one other model; below 1 is better).
package forecast
