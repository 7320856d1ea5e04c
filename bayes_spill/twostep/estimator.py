"""The classical two-step estimator of Lychagin (2010), Section 4: the baseline the joint model is
compared against.

Step 1, production (Section 4.1, eq. 8-11, Appendix 7.4):

* Arellano-Bonhomme GMM for beta and lambda. With x_it = [S_it(lambda), 1] and
  M_i = I - x_i (x_i' x_i)^-1 x_i' (eq. 9), the moment E[M_i (q_i - z_i beta) | z_i, R, l_i] = 0
  (eq. 10) is used with the instruments M_i z_i and identity weighting: for a given lambda,
  beta(lambda) is the pooled OLS of M_i q_i on M_i z_i (z = log K, log L, log R, the zero-R&D
  dummy and year dummies, the first year the base), and lambda minimises the profiled objective
  sum_i ||M_i (q_i - z_i beta(lambda))||^2 over the half-life (a log-spaced grid, then scipy's
  bounded scalar search around the best grid point, because the objective can have several local
  minima). M_i is computed as "demean within firm, then remove the projection on the demeaned
  S", which is the same matrix. A firm seen in T_i <= 2 years has M_i = 0 and drops out of this
  step (counted); a firm whose S_it does not vary has x_i of rank 1 and M_i the within-firm
  demeaning (T_i - 1 degrees of freedom; same zero-variation rule as ``table4.within_slope``).
* alpha_hat_i, the naive within-firm OLS of eq. (11), from ``table4.naive_alpha_hat``
  with the GMM beta, half-life and year effects v_t (the year-dummy coefficients, v = 0 in the
  first year).
* sigma_w^2 = sum_i SSR_i / sum_i (T_i - rank x_i) (Appendix 7.4: sum of SSR / (n (T - 2)) in a
  balanced panel), SSR_i = ||M_i (q_i - z_i beta)||^2 at the estimates.

Step 2, location choice (Section 4.2): maximum likelihood for theta = (mu_alpha, sigma_alpha^2,
gamma) with the county effects a(theta) concentrated out by the BLP contraction on the observed
shares n_l of the occupied counties,

    a = H(a),  H_l(a) = log n_l - log E_alpha[ exp(gamma alpha Sbar_l) / sum_m exp(a_m + gamma alpha Sbar_m) ],

alpha ~ N(mu_alpha, sigma_alpha^2), the expectation by Gauss-Hermite quadrature, iterated to a
tolerance and normalised to a_1 = 0 (the first occupied county). The measurement error
nu_i ~ N(0, sigma_w^2 / s_variation_i) of eq. (12) is convolved in: firm i contributes

    log integral P(l_i | alpha) N(alpha_hat_i; alpha, var_nu_i) N(alpha; mu, sigma^2) d alpha,

computed as N(alpha_hat_i; mu, sigma^2 + var_nu_i) times the Gauss-Hermite expectation of
P(l_i | alpha) under the normal posterior of alpha given alpha_hat_i (firm-specific nodes, so a
precisely measured alpha_hat is integrated accurately). Because the contraction makes the
predicted shares equal the observed ones, this equals the paper's f(l, alpha_hat) =
n_l * integral f_{alpha|l}(alpha_hat - nu) f_nu(nu) d nu. A firm without variation in S has no
alpha_hat and contributes its location probability integrated over the prior of alpha.

Specification (1) of Table 3 (one alpha for all firms, no location model) is nonlinear least
squares with firm fixed effects: the within transformation removes u_i, OLS of the demeaned q on
the demeaned [z, S_it(lambda)] gives beta(lambda) and alpha(lambda), and the half-life is profiled
the same way as in the GMM.

Standard errors come from a bootstrap over firms (firms resampled with replacement; implemented
as integer firm weights, so the spillover pools stay those of the sample, as regressors do in a
pairs bootstrap); every replicate re-runs both steps, the half-life search included. Replicates
run in a process pool (concurrent.futures).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bayes_spill.data.panel import PreparedPanel
from bayes_spill.twostep.bootstrap import bootstrap, estimate, public_estimates
from bayes_spill.twostep.design import BETA_NAMES, BaselineSettings, design_from_config
from bayes_spill.twostep.gmm import GMMFit, gmm, local_minima
from bayes_spill.twostep.results import BaselineResult


def two_step(
    panel: PreparedPanel,
    model="lychagin2010",
    settings: BaselineSettings | None = None,
    table4_bootstrap: int | None = None,
    progress: bool = False,
) -> BaselineResult:
    """The paper's two-step estimator on a panel, with bootstrap standard errors and Table 4.

    model: a ModelConfig, TOML path or name (only its [model] spillover options are used).
    table4_bootstrap: resamples for Table 4's bootstrapped t (default: settings.n_bootstrap;
        0 skips the bootstrap t; None and n_bootstrap == 0 skip Table 4's bootstrap too).
    """
    from bayes_spill.inference.fitting import resolve_config

    settings = settings or BaselineSettings()
    config = resolve_config(model)
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: BLAS threads only contend
        return _two_step(panel, config, settings, table4_bootstrap, progress)


def _two_step(panel, config, settings: BaselineSettings, table4_bootstrap, progress) -> BaselineResult:
    from bayes_spill.twostep import table4 as se

    spec = config.model
    start_time = time.perf_counter()
    d = design_from_config(panel, config)
    gmm_result = gmm(d, settings)
    fit = gmm_result[0]
    year_effect = fit.year_effect()
    # a coefficient that is not identified (a regressor constant within every firm) is absorbed
    # by the firm intercept, so any value gives the same alpha_hat: pass 0
    beta_for_alpha = np.where(fit.identified[:4], fit.beta, 0.0)
    alpha_hat, s_variation = se.naive_alpha_hat(
        panel, beta_for_alpha, fit.halflife_km, year_effect, spec.spillover_transform
    )
    est = estimate(d, settings, alpha_hat=(alpha_hat, s_variation), gmm_result=gmm_result)
    boot = (
        bootstrap(d, settings, start=(est["mu_alpha"], est["sigma_alpha"], est["gamma"]), progress=progress)
        if settings.n_bootstrap
        else pd.DataFrame()
    )

    s_at_firm = se.spillover_at_firm_county(panel, est["halflife_km"], spec.spillover_transform)
    top = se.top_spillover_firms(panel, s_at_firm, k=20)
    t4_b = settings.n_bootstrap if table4_bootstrap is None else table4_bootstrap
    table4 = se.table4(alpha_hat, s_at_firm, top, n_bootstrap=t4_b, seed=settings.seed)

    gmm_fit: GMMFit = est["_gmm"]
    truth = None
    if panel.truth is not None and "parameters" in panel.truth:
        truth = dict(panel.truth["parameters"])
        # spec. (1) is misspecified when alpha_i varies: its estimates have no true value
    notes = []
    for name, ok in zip(BETA_NAMES, fit.identified[:4]):
        if not ok:
            notes.append(
                f"{name} is not identified with firm effects (its regressor does not vary within any firm): reported as nan"
            )
    if (
        est["halflife_km"] >= settings.halflife_bounds_km[1] * 0.999
        or est["halflife_km"] <= settings.halflife_bounds_km[0] * 1.001
    ):
        notes.append(f"the GMM half-life is at the edge of the search interval {settings.halflife_bounds_km} km")
    minima = local_minima(*est["_gmm_profile"])
    if len(minima) > 1:
        notes.append(
            "the GMM profile has several local minima on its grid, at about "
            + ", ".join(f"{m:,.0f}" for m in minima)
            + " km"
        )
    if "_nls_profile" in est:
        nminima = local_minima(*est["_nls_profile"])
        if len(nminima) > 1:
            notes.append(
                "the spec. (1) NLS profile has local minima at about " + ", ".join(f"{m:,.0f}" for m in nminima) + " km"
            )
    result = BaselineResult(
        estimates=public_estimates(est),
        bootstrap=boot,
        n_obs=panel.n_obs,
        n_firms=panel.n_firms,
        firms_gmm=gmm_fit.firms_used,
        firms_dropped_short=int(np.sum(gmm_fit.dof <= 0)),
        firms_no_variation=int(np.sum(~np.isfinite(alpha_hat))),
        location_counties=est["_location_counties"],
        alpha_hat=alpha_hat,
        s_variation=s_variation,
        year_effect=year_effect,
        years=np.asarray(panel.years),
        gmm_profile=est["_gmm_profile"],
        nls_profile=est.get("_nls_profile"),
        location_converged=est["_location"].converged,
        wall_seconds=time.perf_counter() - start_time,
        settings=settings,
        source=panel.source,
        truth=truth,
        table4=table4,
        notes=notes,
    )
    return result
