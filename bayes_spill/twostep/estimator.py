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

import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from bayes_spill.model.denominator import evaluate_log_denominator, exact_log_denominator, log_denominator_table
from bayes_spill.model.integrated import normal_quadrature
from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.spillover import kernel
# the zero-variation rule of alpha_hat, shared so that alpha_hat and the projection agree
from bayes_spill.twostep.table4 import RELATIVE_ZERO_VARIATION
from bayes_spill.errors import BayesSpillError
from bayes_spill.data.panel import PreparedPanel

BETA_NAMES = ("beta_k", "beta_l", "beta_r", "beta_zero_rd")
LOCATION_TABLE_NODES = 257  # nodes of the table of the logit denominator in u = gamma alpha
SPEC2_PARAMETERS = (*BETA_NAMES, "halflife_km", "sigma_w", "mu_alpha", "sigma_alpha2", "sigma_alpha", "gamma")
SPEC1_PARAMETERS = tuple(f"spec1_{n}" for n in (*BETA_NAMES, "alpha", "halflife_km"))


@dataclass(frozen=True)
class BaselineSettings:
    """Numerical settings of the two-step estimator.

    halflife_bounds_km: the search interval of the half-life (both specifications).
    grid_points: log-spaced grid points of the profile before the bounded refinement.
    quadrature_nodes: Gauss-Hermite nodes for the share integral of the contraction.
    firm_quadrature_nodes: Gauss-Hermite nodes for each firm's likelihood integral.
    contraction_tol: stop when the county effects move less than this (max abs).
    n_bootstrap: bootstrap resamples of firms (0: point estimates only).
    workers: processes for the bootstrap (None: the CPU count, at most 4; 1: in this process).
    seed: seed of the bootstrap resampling.
    spec1: also estimate the homogeneous specification (1) of Table 3.
    """

    halflife_bounds_km: tuple[float, float] = (5.0, 5000.0)
    grid_points: int = 41
    quadrature_nodes: int = 40
    firm_quadrature_nodes: int = 24
    contraction_tol: float = 1e-12
    contraction_max_iter: int = 20_000
    n_bootstrap: int = 199
    workers: int | None = None
    seed: int = 0
    spec1: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.halflife_bounds_km
        if not 0 < lo < hi:
            raise ValueError(f"halflife_bounds_km must satisfy 0 < low < high, got {self.halflife_bounds_km}")
        if self.grid_points < 3:
            raise ValueError(f"grid_points must be at least 3, got {self.grid_points}")
        if self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be non-negative, got {self.n_bootstrap}")
        if self.quadrature_nodes < 2 or self.firm_quadrature_nodes < 2:
            raise ValueError("quadrature node counts must be at least 2")


# -- the design: everything the estimator reads, as plain arrays (picklable for worker processes)
@dataclass(frozen=True, eq=False)
class Design:
    spill: kernel.SpilloverInputs
    transform: kernel.SpilloverTransform  # the spillover as the model uses it
    obs_firm: np.ndarray  # (n_obs,) sorted
    years_per_firm: np.ndarray  # (N,)
    q_dm: np.ndarray  # (n_obs,) within-firm demeaned log sales
    z_dm: np.ndarray  # (n_obs, p) within-firm demeaned regressors
    z_names: tuple[str, ...]
    years: np.ndarray  # (Y,)
    firm_choice: np.ndarray  # (N,) position of each firm's county in the occupied set
    n_firms: int


def design(panel: PreparedPanel, transform: kernel.SpilloverTransform = kernel.LEVELS, sbar_year: int | None = None) -> Design:
    """Precompute the estimator's arrays from a panel (rows sorted by firm, as PreparedPanel is).

    Parameters
    ----------
    panel : PreparedPanel
        The firms and their years.
    transform : SpilloverTransform
        The spillover as the model uses it (``ModelSpec.spillover_transform``; default: levels,
        own stock excluded).
    sbar_year : int or None
        None averages S_lt over the sample years for the location choice; a year uses that year's.

    Returns
    -------
    Design
    """
    if panel.n_firms < 2:
        raise BayesSpillError("the two-step estimator needs at least two firms")
    spill = transform.inputs(panel, "occupied", sbar_year)
    obs_firm = np.asarray(panel.obs_firm)
    t_i = panel.years_per_firm.astype(float)
    year_dummies = (panel.obs_year[:, None] == np.arange(1, len(panel.years))[None, :]).astype(float)
    z = np.column_stack([panel.k, panel.n, panel.r, panel.zero_rd, year_dummies])
    names = (*BETA_NAMES, *[f"year_{int(y)}" for y in panel.years[1:]])
    return Design(
        spill=spill,
        transform=transform,
        obs_firm=obs_firm,
        years_per_firm=t_i,
        q_dm=within_firm(panel.q, obs_firm, t_i),
        z_dm=within_firm(z, obs_firm, t_i),
        z_names=names,
        years=np.asarray(panel.years),
        firm_choice=np.asarray(spill.firm_choice),
        n_firms=panel.n_firms,
    )


def design_from_config(panel: PreparedPanel, config) -> Design:
    """The design for a ModelConfig's spillover options (levels or logs, own stock, Sbar year)."""
    spec = config.model
    if spec.choice_set != "occupied":
        raise BayesSpillError(
            f"the two-step estimator needs the occupied-county choice set (the BLP contraction needs positive shares); "
            f"{config.source} has choice_set = {spec.choice_set!r}"
        )
    return design(panel, spec.spillover_transform, spec.sbar_year)


def firm_spillover(d: Design, halflife_km: float) -> np.ndarray:
    """S_it(lambda) for every firm-year, transformed as configured."""
    return d.transform.firm_year(d.spill, float(halflife_km))


def location_spillover(d: Design, halflife_km: float) -> np.ndarray:
    """Sbar_l(lambda) over the occupied counties (the location-choice regressor)."""
    return np.asarray(d.transform.choice(d.spill, float(halflife_km)))


@dataclass(frozen=True, eq=False)
class Projection:
    """The pieces of M_i(lambda) = I - x_i (x_i' x_i)^-1 x_i' for every firm."""

    s_dm: np.ndarray  # (n_obs,) within-demeaned S
    s_variation: np.ndarray  # (N,) sum_t (S_it - mean_i S)^2, 0 where S does not vary
    rank: np.ndarray  # (N,) rank of x_i: 2, or 1 when S does not vary
    dof: np.ndarray  # (N,) T_i - rank

    def apply(self, d: Design, v_dm: np.ndarray) -> np.ndarray:
        """M_i v for within-demeaned v (n_obs,) or (n_obs, p); rows of firms with dof 0 are 0."""
        s = self.s_dm if v_dm.ndim == 1 else self.s_dm[:, None]
        cross = segment_sum(s * v_dm, d.obs_firm, d.n_firms)
        denom = np.where(self.s_variation > 0, self.s_variation, 1.0)
        coef = cross / (denom if v_dm.ndim == 1 else denom[:, None])
        coef[self.s_variation <= 0] = 0.0
        out = v_dm - s * coef[d.obs_firm]
        zero = (self.dof <= 0)[d.obs_firm]
        out[zero] = 0.0
        return out


def projection(d: Design, s: np.ndarray) -> Projection:
    s_dm = within_firm(s, d.obs_firm, d.years_per_firm)
    variation = segment_sum(s_dm * s_dm, d.obs_firm, d.n_firms)
    # the zero-variation rule of table4.within_slope: below rounding at the field's scale
    level = float(np.max(np.abs(s))) if len(s) else 0.0
    none = variation <= d.years_per_firm * (RELATIVE_ZERO_VARIATION * level) ** 2
    variation = np.where(none, 0.0, variation)
    rank = np.where(none, 1, 2)
    return Projection(s_dm=s_dm, s_variation=variation, rank=rank, dof=d.years_per_firm - rank)


def projection_matrix(s_i: np.ndarray) -> np.ndarray:
    """M_i = I - x_i (x_i' x_i)^-1 x_i' for one firm, x_it = [S_it, 1] (eq. 9), by the textbook
    formula (pseudo-inverse when S does not vary): for checks and small examples. S is scaled to
    unit maximum first (M_i depends only on the span of x_i), so a remote firm's tiny S stays
    well conditioned."""
    s_i = np.asarray(s_i, float)
    top = np.max(np.abs(s_i)) if len(s_i) else 0.0
    x = np.column_stack([s_i / top if top > 0 else s_i, np.ones(len(s_i))])
    return np.eye(len(s_i)) - x @ np.linalg.pinv(x.T @ x) @ x.T


# -- step 1: GMM for beta and lambda ---------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GMMFit:
    halflife_km: float
    objective: float
    coef: np.ndarray  # (p,) beta then year dummies
    ssr: np.ndarray  # (N,) ||M_i (q_i - z_i beta)||^2
    dof: np.ndarray  # (N,)
    s_variation: np.ndarray  # (N,)
    alpha_hat: np.ndarray  # (N,) eq. (11) by-product of the projection (nan without variation)
    firms_used: int  # firms with M_i != 0 (T_i > rank x_i) and positive weight
    identified: np.ndarray  # (p,) False where M_i z carries no information (e.g. a dummy constant within firms)

    @property
    def beta(self) -> np.ndarray:
        return self.coef[:4]

    def year_effect(self) -> np.ndarray:
        return np.concatenate([[0.0], self.coef[4:]])


def _weighted_lstsq(x: np.ndarray, y: np.ndarray, w_obs: np.ndarray) -> np.ndarray:
    """Weighted least squares by the normal equations (p is small), minimum-norm where a column
    carries no information (a year absent from a bootstrap sample, a regressor constant within
    every firm): those coefficients come back as 0."""
    xw = x * w_obs[:, None]
    xtx = xw.T @ x
    xty = xw.T @ y
    scale = np.sqrt(np.maximum(np.diag(xtx), 0.0))
    live = scale > 1e-10 * max(float(scale.max()), 1e-300)
    coef = np.zeros(x.shape[1])
    if live.any():
        sub = xtx[np.ix_(live, live)] / np.outer(scale[live], scale[live])
        coef[live] = np.linalg.lstsq(sub, xty[live] / scale[live], rcond=1e-12)[0] / scale[live]
    return coef


def _informative(x: np.ndarray, w_obs: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.einsum("ij,ij,i->j", x, x, w_obs))
    return scale > 1e-10 * max(float(scale.max()), 1e-300)


def gmm_at(d: Design, halflife_km: float, weights: np.ndarray | None = None) -> GMMFit:
    """beta(lambda) and the GMM objective at one half-life (firm weights: bootstrap counts)."""
    w = np.ones(d.n_firms) if weights is None else np.asarray(weights, float)
    s = firm_spillover(d, halflife_km)
    proj = projection(d, s)
    mq = proj.apply(d, d.q_dm)
    mz = proj.apply(d, d.z_dm)
    w_obs = w[d.obs_firm]
    coef = _weighted_lstsq(mz, mq, w_obs)
    identified = _informative(mz, w_obs)
    resid = mq - mz @ coef
    ssr = segment_sum(resid**2, d.obs_firm, d.n_firms)
    y_dm = d.q_dm - d.z_dm @ coef  # within-demeaned q - z beta (v_t included in z)
    cross = segment_sum(proj.s_dm * y_dm, d.obs_firm, d.n_firms)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha_hat = np.where(proj.s_variation > 0, cross / np.where(proj.s_variation > 0, proj.s_variation, 1.0), np.nan)
    return GMMFit(
        halflife_km=float(halflife_km),
        objective=float(np.sum(w * ssr)),
        coef=coef,
        ssr=ssr,
        dof=proj.dof,
        s_variation=proj.s_variation,
        alpha_hat=alpha_hat,
        firms_used=int(np.sum((proj.dof > 0) & (w > 0))),
        identified=identified,
    )


def _profile(objective, settings: BaselineSettings) -> tuple[float, np.ndarray, np.ndarray]:
    """Minimise objective(halflife) over log half-life: grid, then bounded Brent around the best
    grid point. Returns (halflife, grid, grid objective)."""
    lo, hi = settings.halflife_bounds_km
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), settings.grid_points))
    values = np.array([objective(h) for h in grid])
    best = int(np.nanargmin(values))
    left = np.log(grid[max(best - 1, 0)])
    right = np.log(grid[min(best + 1, len(grid) - 1)])
    res = optimize.minimize_scalar(lambda u: objective(math.exp(u)), bounds=(left, right), method="bounded", options={"xatol": 1e-6})
    h = math.exp(res.x) if res.fun <= values[best] else float(grid[best])
    return h, grid, values


def local_minima(grid: np.ndarray, values: np.ndarray) -> list[float]:
    """Half-lives of the interior local minima of a profiled objective on its grid."""
    out = [float(grid[0])] if values[0] < values[1] else []
    out += [float(grid[i]) for i in range(1, len(grid) - 1) if values[i] < values[i - 1] and values[i] <= values[i + 1]]
    if values[-1] < values[-2]:
        out.append(float(grid[-1]))
    return out


def gmm(d: Design, settings: BaselineSettings, weights: np.ndarray | None = None) -> tuple[GMMFit, np.ndarray, np.ndarray]:
    """The A-B GMM estimate: (fit at the minimising half-life, profile grid, profile values)."""
    h, grid, values = _profile(lambda hh: gmm_at(d, hh, weights).objective, settings)
    return gmm_at(d, h, weights), grid, values


def sigma_w2(fit: GMMFit, weights: np.ndarray | None = None) -> float:
    """Appendix 7.4: sum_i SSR_i / sum_i (T_i - 2) over the firms with M_i != 0."""
    w = np.ones(len(fit.ssr)) if weights is None else np.asarray(weights, float)
    use = fit.dof > 0
    return float(np.sum((w * fit.ssr)[use]) / np.sum((w * fit.dof)[use]))


# -- specification (1): NLS with firm fixed effects, one alpha -------------------------------
@dataclass(frozen=True, eq=False)
class NLSFit:
    halflife_km: float
    ssr: float
    beta: np.ndarray  # (4,)
    alpha: float
    year_effect: np.ndarray


def nls_at(d: Design, halflife_km: float, weights: np.ndarray | None = None) -> NLSFit:
    w = np.ones(d.n_firms) if weights is None else np.asarray(weights, float)
    s_dm = within_firm(firm_spillover(d, halflife_km), d.obs_firm, d.years_per_firm)
    x = np.column_stack([d.z_dm, s_dm])
    w_obs = w[d.obs_firm]
    coef = _weighted_lstsq(x, d.q_dm, w_obs)
    ssr = float(np.sum(w_obs * (d.q_dm - x @ coef) ** 2))
    return NLSFit(float(halflife_km), ssr, coef[:4], float(coef[-1]), np.concatenate([[0.0], coef[4:-1]]))


def nls_spec1(d: Design, settings: BaselineSettings, weights: np.ndarray | None = None) -> tuple[NLSFit, np.ndarray, np.ndarray]:
    h, grid, values = _profile(lambda hh: nls_at(d, hh, weights).ssr, settings)
    return nls_at(d, h, weights), grid, values


# -- step 2: the location choice, BLP contraction and maximum likelihood ---------------------
def logsumexp(x: np.ndarray, axis=None, keepdims: bool = False, b: np.ndarray | None = None):
    """log sum exp(x) (times weights b) along an axis; plain numpy (scipy's version carries array-API
    overhead that dominates these small, frequent calls)."""
    x = np.asarray(x, float)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    if b is not None:
        e = e * b
    out = np.log(np.sum(e, axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out if np.ndim(out) else float(out)


def predicted_shares(a: np.ndarray, sbar: np.ndarray, gamma: float, mu: float, sigma: float, quad) -> np.ndarray:
    """n_l(a; theta) = E_alpha softmax_l(a + gamma alpha Sbar), alpha ~ N(mu, sigma^2), by quadrature."""
    z, w = quad
    alpha = mu + sigma * z
    logits = a[None, :] + gamma * alpha[:, None] * sbar[None, :]
    probs = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    return w @ probs


def blp_map(a: np.ndarray, log_shares: np.ndarray, sbar: np.ndarray, gamma: float, mu: float, sigma: float, quad) -> np.ndarray:
    """The paper's H(a) (Section 4.2): log n_l - log E[exp(gamma alpha S_l) / sum_m exp(a_m + gamma alpha S_m)]."""
    z, w = quad
    alpha = mu + sigma * z
    spill = gamma * alpha[:, None] * sbar[None, :]
    lse = logsumexp(a[None, :] + spill, axis=1, keepdims=True)
    return log_shares - logsumexp(spill - lse, axis=0, b=w[:, None])


def blp_contraction(
    log_shares: np.ndarray,
    sbar: np.ndarray,
    gamma: float,
    mu: float,
    sigma: float,
    quad,
    a0: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 20_000,
) -> tuple[np.ndarray, int]:
    """Solve a = H(a) by iterating H from a0 (default: the log shares), normalising a_1 = 0 after
    each step. Returns (a, iterations); raises when it does not converge."""
    a = (log_shares - log_shares[0]) if a0 is None else np.asarray(a0, float) - a0[0]
    for iteration in range(1, max_iter + 1):
        new = blp_map(a, log_shares, sbar, gamma, mu, sigma, quad)
        new -= new[0]
        step = float(np.max(np.abs(new - a)))
        a = new
        if step < tol:
            return a, iteration
        if not np.isfinite(step):
            break
    raise BayesSpillError(
        f"BLP contraction did not converge in {max_iter} iterations (gamma={gamma:.4g}, mu={mu:.4g}, sigma={sigma:.4g})"
    )


@dataclass(frozen=True, eq=False)
class LocationData:
    """The inputs of the location likelihood, restricted to counties with positive share."""

    alpha_hat: np.ndarray  # (N,) nan without variation
    var_nu: np.ndarray  # (N,) sigma_w^2 / s_variation (inf without variation)
    choice: np.ndarray  # (N,) county position in sbar
    sbar: np.ndarray  # (L,)
    log_shares: np.ndarray  # (L,)
    weights: np.ndarray  # (N,)


def location_data(alpha_hat, s_variation, sigma_w2_value, firm_choice, sbar, weights=None) -> LocationData:
    w = np.ones(len(alpha_hat)) if weights is None else np.asarray(weights, float)
    keep = w > 0
    counts = np.bincount(firm_choice[keep], weights=w[keep], minlength=len(sbar))
    occupied = np.flatnonzero(counts > 0)
    remap = np.full(len(sbar), -1)
    remap[occupied] = np.arange(len(occupied))
    s_var = np.asarray(s_variation, float)
    with np.errstate(divide="ignore"):
        var_nu = np.where((s_var > 0) & np.isfinite(alpha_hat), sigma_w2_value / np.where(s_var > 0, s_var, 1.0), np.inf)
    return LocationData(
        alpha_hat=np.asarray(alpha_hat, float)[keep],
        var_nu=var_nu[keep],
        choice=remap[firm_choice[keep]],
        sbar=np.asarray(sbar, float)[occupied],
        log_shares=np.log(counts[occupied] / counts.sum()),
        weights=w[keep],
    )


def firm_location_loglik(ld: LocationData, a: np.ndarray, mu: float, sigma: float, gamma: float, quad, exact: bool = False) -> np.ndarray:
    """log integral P(l_i | alpha) N(alpha_hat_i; alpha, var_nu_i) N(alpha; mu, sigma^2) d alpha per firm
    (exact=True evaluates the logit denominator at every node instead of interpolating it)."""
    z, w = quad
    has = np.isfinite(ld.var_nu)
    v = np.where(has, ld.var_nu, 1.0)
    ahat = np.where(has, ld.alpha_hat, 0.0)
    s2 = sigma**2
    post_var = np.where(has, s2 * v / (s2 + v), s2)
    post_mean = np.where(has, (mu * v + ahat * s2) / (s2 + v), mu)
    measure = np.where(has, -0.5 * (np.log(2 * np.pi * (s2 + v)) + (ahat - mu) ** 2 / (s2 + v)), 0.0)
    alpha = post_mean[:, None] + np.sqrt(post_var)[:, None] * z[None, :]  # (N, Q)
    u = gamma * alpha
    if exact:
        lse = exact_log_denominator(a, ld.sbar, u.ravel()).reshape(u.shape)
    else:
        # LSE is smooth and convex in the scalar u: the model's cubic Hermite table in u, at a cost
        # independent of firms x counties, errs far below the quadrature error
        table = log_denominator_table(a, ld.sbar, float(u.min()), float(u.max()), LOCATION_TABLE_NODES)
        lse = evaluate_log_denominator(table, u)
    chosen = a[ld.choice][:, None] + u * ld.sbar[ld.choice][:, None]
    return logsumexp(np.log(w)[None, :] + chosen - lse, axis=1) + measure


@dataclass(frozen=True, eq=False)
class LocationFit:
    mu_alpha: float
    sigma_alpha: float
    gamma: float
    loglik: float
    county_effect: np.ndarray  # over the counties with positive share, a_1 = 0
    converged: bool
    evaluations: int


def location_ml(ld: LocationData, settings: BaselineSettings, start: tuple[float, float, float] | None = None) -> LocationFit:
    """Maximum likelihood for (mu_alpha, sigma_alpha, gamma) with a(theta) from the contraction.

    Quasi-Newton (L-BFGS-B on mu, log sigma, gamma) with a Nelder-Mead fallback. Without a start
    (the point estimate) it starts from moments of the precisely measured alpha_hat and from
    three values of gamma and keeps the best; with a start (bootstrap replicates) once from there.
    """
    multistart = start is None
    quad = normal_quadrature(settings.quadrature_nodes)
    firm_quad = normal_quadrature(settings.firm_quadrature_nodes)
    if start is None:
        good = np.isfinite(ld.var_nu)
        precise = good & (ld.var_nu <= np.nanmedian(np.where(good, ld.var_nu, np.nan)))
        mu0 = float(np.median(ld.alpha_hat[precise])) if precise.any() else 0.0
        spread = float(np.subtract(*np.percentile(ld.alpha_hat[precise], [75, 25])) / 1.349) if precise.sum() > 3 else 0.5
        start = (mu0, max(spread, 0.05), 0.0)
    cache = {"a": None, "n": 0}

    def negloglik(theta):
        mu, log_sigma, gamma = theta
        sigma = math.exp(log_sigma)
        if not (np.isfinite(sigma) and 1e-5 < sigma < 1e3 and abs(gamma) < 1e3 and abs(mu) < 1e3):
            return 1e300
        cache["n"] += 1
        try:
            a, _ = blp_contraction(ld.log_shares, ld.sbar, gamma, mu, sigma, quad, cache["a"], settings.contraction_tol, settings.contraction_max_iter)
        except BayesSpillError:
            return 1e300
        cache["a"] = a
        ll = float(np.sum(ld.weights * firm_location_loglik(ld, a, mu, sigma, gamma, firm_quad)))
        return -ll if np.isfinite(ll) else 1e300

    bounds = [(-50.0, 50.0), (math.log(1e-4), math.log(100.0)), (-50.0, 50.0)]

    def solve(x0):
        x0 = np.clip(x0, [lo for lo, _ in bounds], [hi for _, hi in bounds])
        cache["a"] = None
        res = optimize.minimize(negloglik, x0, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
        if not res.success or res.fun >= 1e299:
            # quasi-Newton can stall where the contraction fails or sigma runs to its bound: fall back
            nm = optimize.minimize(negloglik, res.x if res.fun < 1e299 else x0, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-7, "maxiter": 4000, "maxfev": 8000})
            if nm.fun <= res.fun:
                res = nm
        return res

    starts = [np.array([start[0], math.log(min(max(start[1], 1e-3), 50.0)), start[2]])]
    if multistart:
        # gamma's scale is 1 / (alpha * Sbar): also start a "unit of sorting" either side of 0
        unit = 1.0 / (max(start[1], 0.05) * max(float(np.std(ld.sbar)), 1e-6))
        starts += [starts[0] + np.array([0.0, 0.0, unit]), starts[0] - np.array([0.0, 0.0, unit])]
    best = min((solve(x0) for x0 in starts), key=lambda r: r.fun)
    mu, log_sigma, gamma = best.x
    sigma = math.exp(log_sigma)
    a, _ = blp_contraction(ld.log_shares, ld.sbar, gamma, mu, sigma, quad, None, settings.contraction_tol, settings.contraction_max_iter)
    return LocationFit(float(mu), float(sigma), float(gamma), float(-best.fun), a, bool(best.success), cache["n"])


# -- the whole estimator ---------------------------------------------------------------------
def estimate(
    d: Design,
    settings: BaselineSettings,
    weights: np.ndarray | None = None,
    alpha_hat: tuple[np.ndarray, np.ndarray] | None = None,
    start: tuple[float, float, float] | None = None,
    gmm_result: tuple | None = None,
) -> dict:
    """Both steps (and spec. 1) once: a flat dict of estimates plus diagnostics.

    alpha_hat: (alpha_hat, s_variation) to use instead of the projection's by-product (the point
    estimate passes table4.naive_alpha_hat here; both are eq. 11 and agree).
    """
    fit, grid, values = gmm_result if gmm_result is not None else gmm(d, settings, weights)
    s2 = sigma_w2(fit, weights)
    ah, s_var = alpha_hat if alpha_hat is not None else (fit.alpha_hat, fit.s_variation)
    sbar = location_spillover(d, fit.halflife_km)
    ld = location_data(ah, s_var, s2, d.firm_choice, sbar, weights)
    loc = location_ml(ld, settings, start)
    beta = np.where(fit.identified[:4], fit.beta, np.nan)
    out = {
        **dict(zip(BETA_NAMES, map(float, beta))),
        "halflife_km": fit.halflife_km,
        "sigma_w": math.sqrt(s2),
        "sigma_w2": s2,
        "mu_alpha": loc.mu_alpha,
        "sigma_alpha2": loc.sigma_alpha**2,
        "sigma_alpha": loc.sigma_alpha,
        "gamma": loc.gamma,
        "_gmm": fit,
        "_gmm_profile": (grid, values),
        "_location": loc,
        "_location_counties": int(len(ld.sbar)),
    }
    if settings.spec1:
        nls, ngrid, nvalues = nls_spec1(d, settings, weights)
        out.update({f"spec1_{n}": float(b) if ok else float("nan") for n, b, ok in zip(BETA_NAMES, nls.beta, fit.identified[:4])})
        out["spec1_alpha"] = nls.alpha
        out["spec1_halflife_km"] = nls.halflife_km
        out["_nls_profile"] = (ngrid, nvalues)
    return out


def _public(estimates: dict) -> dict:
    return {k: v for k, v in estimates.items() if not k.startswith("_")}


# bootstrap replicates run in worker processes; the design is sent once per worker
_WORKER: dict = {}


def _init_worker(d: Design, settings: BaselineSettings, start) -> None:
    _WORKER.update(design=d, settings=settings, start=start)


def _replicate(seed_entropy) -> dict:
    d, settings, start = _WORKER["design"], _WORKER["settings"], _WORKER["start"]
    rng = np.random.default_rng(seed_entropy)
    weights = np.bincount(rng.integers(0, d.n_firms, d.n_firms), minlength=d.n_firms).astype(float)
    try:
        with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend
            return _public(estimate(d, settings, weights, start=start))
    except Exception as exc:  # a failed replicate is reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}


def bootstrap(d: Design, settings: BaselineSettings, start=None, progress: bool = False) -> pd.DataFrame:
    """settings.n_bootstrap replicates of the whole estimator on firms resampled with replacement."""
    seeds = np.random.SeedSequence(settings.seed).spawn(settings.n_bootstrap)
    workers = settings.workers if settings.workers is not None else min(4, os.cpu_count() or 1)
    rows: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(seeds), desc="bootstrap", unit="resample")
    if workers <= 1:
        _init_worker(d, settings, start)
        for s in seeds:
            rows.append(_replicate(s))
            if bar:
                bar.update()
    else:
        # spawned (not forked) workers: no inherited sampler or BLAS threads; a script that calls
        # this needs the usual `if __name__ == "__main__":` guard
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(d, settings, start)) as pool:
            for row in pool.map(_replicate, seeds, chunksize=max(1, len(seeds) // (8 * workers))):
                rows.append(row)
                if bar:
                    bar.update()
    if bar:
        bar.close()
    return pd.DataFrame(rows)


@dataclass
class BaselineResult:
    """Point estimates, bootstrap draws and diagnostics of the two-step estimator."""

    estimates: dict
    bootstrap: pd.DataFrame
    n_obs: int
    n_firms: int
    firms_gmm: int
    firms_dropped_short: int
    firms_no_variation: int
    location_counties: int
    alpha_hat: np.ndarray
    s_variation: np.ndarray
    year_effect: np.ndarray  # v_t, one per year of ``years`` (0 in the first)
    years: np.ndarray
    gmm_profile: tuple[np.ndarray, np.ndarray]
    nls_profile: tuple[np.ndarray, np.ndarray] | None
    location_converged: bool
    wall_seconds: float
    settings: BaselineSettings
    source: str = ""
    truth: dict | None = None
    table4: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def draws(self) -> pd.DataFrame:
        ok = self.bootstrap
        if "error" in ok:
            ok = ok[ok["error"].isna()]
        return ok.drop(columns=[c for c in ok.columns if c == "error"])

    @property
    def failed_replicates(self) -> int:
        return int(self.bootstrap["error"].notna().sum()) if "error" in self.bootstrap else 0

    def se(self, name: str) -> float:
        d = self.draws
        return float(np.std(d[name], ddof=1)) if name in d and len(d) > 1 else float("nan")

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Bootstrap percentile interval."""
        d = self.draws
        if name not in d or len(d) < 2:
            return (float("nan"), float("nan"))
        lo, hi = np.quantile(d[name], [(1 - level) / 2, (1 + level) / 2])
        return float(lo), float(hi)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        rows = []
        truth = self.truth or {}
        names = [*SPEC2_PARAMETERS, *(SPEC1_PARAMETERS if "spec1_alpha" in self.estimates else ())]
        for name in names:
            est = self.estimates[name]
            se = self.se(name)
            lo, hi = self.interval(name, level)
            t = truth.get(name, np.nan)
            rows.append(
                {
                    "parameter": name,
                    "estimate": est,
                    "boot_se": se,
                    "t": est / se if se > 0 else np.nan,
                    f"lo{int(level * 100)}": lo,
                    f"hi{int(level * 100)}": hi,
                    "truth": t,
                    "covered": bool(lo <= t <= hi) if np.isfinite(t) and np.isfinite(lo) else None,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "estimates": self.estimates,
            "summary": json.loads(self.summary().to_json(orient="index")),
            "n_obs": self.n_obs,
            "n_firms": self.n_firms,
            "firms_gmm": self.firms_gmm,
            "firms_dropped_short": self.firms_dropped_short,
            "firms_no_variation": self.firms_no_variation,
            "location_counties": self.location_counties,
            "location_converged": self.location_converged,
            "bootstrap_replicates": int(len(self.draws)),
            "bootstrap_failed": self.failed_replicates,
            "year_effect": dict(zip(map(str, map(int, self.years)), map(float, self.year_effect))),
            "gmm_profile": {"halflife_km": self.gmm_profile[0], "objective": self.gmm_profile[1]},
            "wall_seconds": self.wall_seconds,
            "settings": asdict(self.settings),
            "truth": self.truth,
            "table4": json.loads(self.table4.to_json()) if self.table4 is not None else None,
            "notes": self.notes,
        }


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
    alpha_hat, s_variation = se.naive_alpha_hat(panel, beta_for_alpha, fit.halflife_km, year_effect, spec.spillover_transform)
    est = estimate(d, settings, alpha_hat=(alpha_hat, s_variation), gmm_result=gmm_result)
    boot = bootstrap(d, settings, start=(est["mu_alpha"], est["sigma_alpha"], est["gamma"]), progress=progress) if settings.n_bootstrap else pd.DataFrame()

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
            notes.append(f"{name} is not identified with firm effects (its regressor does not vary within any firm): reported as nan")
    if est["halflife_km"] >= settings.halflife_bounds_km[1] * 0.999 or est["halflife_km"] <= settings.halflife_bounds_km[0] * 1.001:
        notes.append(f"the GMM half-life is at the edge of the search interval {settings.halflife_bounds_km} km")
    minima = local_minima(*est["_gmm_profile"])
    if len(minima) > 1:
        notes.append("the GMM profile has several local minima on its grid, at about " + ", ".join(f"{m:,.0f}" for m in minima) + " km")
    if "_nls_profile" in est:
        nminima = local_minima(*est["_nls_profile"])
        if len(nminima) > 1:
            notes.append("the spec. (1) NLS profile has local minima at about " + ", ".join(f"{m:,.0f}" for m in nminima) + " km")
    result = BaselineResult(
        estimates=_public(est),
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


# -- printing like the paper -----------------------------------------------------------------
def _cell(value: float, t: float | None = None, fmt: str = "{:.3f}") -> str:
    if value is None or not np.isfinite(value):
        return ""
    text = fmt.format(value)
    if t is not None and np.isfinite(t):
        text += f" ({t:.1f})"
    return text


LABEL = 40


def table3(result: BaselineResult) -> str:
    """Table 3: production function estimates, spec. (1) NLS FE and spec. (2) A-B GMM."""
    summ = result.summary()
    truth = result.truth or {}
    has1 = "spec1_alpha" in result.estimates

    def cell(name, fmt="{:.3f}"):
        if name not in summ.index:
            return ""
        return _cell(summ.loc[name, "estimate"], summ.loc[name, "t"], fmt)

    def truth_cell(name, fmt="{:>10.3f}"):
        value = truth.get(name)
        return fmt.format(value) if truth and value is not None and np.isfinite(value) else (" " * 10 if truth else "")

    lines = [f"{'':{LABEL}s}{'(1)':>18s}{'(2)':>18s}" + (f"{'truth':>10s}" if truth else "")]
    for label, name in (("log K_it", "beta_k"), ("log L_it", "beta_l"), ("log R_it", "beta_r"), ("zero R&D dummy", "beta_zero_rd")):
        lines.append(f"{label:{LABEL}s}{cell('spec1_' + name) if has1 else '':>18s}{cell(name):>18s}" + truth_cell(name))
    lines.append(f"{'S_it (one alpha, spec. 1)':{LABEL}s}{cell('spec1_alpha') if has1 else '':>18s}{'':>18s}")
    lines.append(
        f"{'Spillover half-life (log 2/lambda), km':{LABEL}s}"
        f"{cell('spec1_halflife_km', '{:,.0f}') if has1 else '':>18s}{cell('halflife_km', '{:,.0f}'):>18s}" + truth_cell("halflife_km", "{:>10,.0f}")
    )
    lines.append(f"{'sigma_w (Appendix 7.4)':{LABEL}s}{'':>18s}{_cell(result.estimates['sigma_w']):>18s}" + truth_cell("sigma_w"))
    lines.append(f"{'# of observations':{LABEL}s}{result.n_obs:>18,d}{result.n_obs:>18,d}")
    lines.append(f"{'# of firms (GMM: those with M_i != 0)':{LABEL}s}{result.n_firms:>18,d}{result.firms_gmm:>18,d}")
    return "\n".join(lines)


def table5(result: BaselineResult) -> str:
    summ = result.summary()
    truth = result.truth or {}
    lines = [f"{'':{LABEL}s}{'estimate':>18s}" + (f"{'truth':>10s}" if truth else "")]
    for label, name in (("Attraction parameter, gamma", "gamma"), ("Distribution of alpha_i: mu_alpha", "mu_alpha"), ("                         sigma_alpha^2", "sigma_alpha2")):
        t_val = truth.get(name)
        lines.append(f"{label:{LABEL}s}{_cell(summ.loc[name, 'estimate'], summ.loc[name, 't']):>18s}" + (f"{t_val:>10.3f}" if truth and t_val is not None else ""))
    lines.append(f"{'# of firms':{LABEL}s}{result.n_firms:>18,d}")
    lines.append(f"{'# of counties (choice set)':{LABEL}s}{result.location_counties:>18,d}")
    return "\n".join(lines)


def report(result: BaselineResult) -> str:
    b = len(result.draws)
    tnote = (
        f"t-statistics in parentheses: estimate / bootstrap s.e. ({b} resamples of firms"
        + (f", {result.failed_replicates} failed" if result.failed_replicates else "")
        + ")"
        if b
        else "no bootstrap (point estimates only)"
    )
    summ = result.summary()
    interval_lines = summ[["estimate", "boot_se", "lo95", "hi95", "truth", "covered"]].to_string(float_format=lambda v: f"{v:.4g}")
    parts = [
        f"Two-step estimator (Lychagin 2010, Section 4) on {result.source}: {result.n_firms} firms, {result.n_obs} firm-years",
        f"GMM: {result.firms_gmm} firms with M_i != 0; {result.firms_dropped_short} firms with T_i <= 2 drop out of this step; "
        f"{result.firms_no_variation} firms without variation in S have no alpha_hat",
        "",
        "Table 3: Production function estimates",
        tnote,
        "(1): one alpha for all firms, NLS with firm fixed effects; (2): heterogeneous alpha_i, A-B GMM",
        table3(result),
        "",
        "Table 4: Preliminary evidence on sorting by alpha_hat_i (regressor: Sbar at the firm's county)",
        result.table4.to_string(float_format=lambda v: f"{v:.4g}") if result.table4 is not None else "(not computed)",
        "",
        "Table 5: Parameters of the location choice problem (ML, county effects by the BLP contraction)",
        table5(result),
        "",
        "Bootstrap 95% percentile intervals" + (" and whether they hold the truth" if result.truth else ""),
        interval_lines,
    ]
    if not result.location_converged:
        parts.append("warning: the location ML optimiser reported no convergence")
    parts += [f"note: {n}" for n in result.notes]
    parts.append(f"wall time {result.wall_seconds:.1f} s")
    return "\n".join(parts)


def save_result(result: BaselineResult, out: str | Path) -> Path:
    """Write DIR/baseline.json and DIR/bootstrap.csv atomically."""
    from bayes_spill.inference.posterior_io import atomic_path

    out = Path(out)
    target = out / "baseline.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(finite_or_none(result.to_json()), indent=1, default=_json_default, allow_nan=False))
    if len(result.bootstrap):
        with atomic_path(out / "bootstrap.csv") as tmp:
            result.bootstrap.to_csv(tmp, index=False)
    return target


def finite_or_none(value):
    """A JSON-ready copy: nan and infinities become null (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return [finite_or_none(v) for v in value.tolist()]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
