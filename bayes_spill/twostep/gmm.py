"""Step 1 of the two-step estimator (estimator.py has the method): Arellano-Bonhomme GMM for beta
and the half-life profiled over a grid and a bounded search, sigma_w^2 (Appendix 7.4), and the
homogeneous specification (1) by NLS with firm fixed effects."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.twostep.design import BaselineSettings, Design, firm_spillover, projection


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
        alpha_hat = np.where(
            proj.s_variation > 0, cross / np.where(proj.s_variation > 0, proj.s_variation, 1.0), np.nan
        )
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
    res = optimize.minimize_scalar(
        lambda u: objective(math.exp(u)), bounds=(left, right), method="bounded", options={"xatol": 1e-6}
    )
    h = math.exp(res.x) if res.fun <= values[best] else float(grid[best])
    return h, grid, values


def local_minima(grid: np.ndarray, values: np.ndarray) -> list[float]:
    """Half-lives of the interior local minima of a profiled objective on its grid."""
    out = [float(grid[0])] if values[0] < values[1] else []
    out += [float(grid[i]) for i in range(1, len(grid) - 1) if values[i] < values[i - 1] and values[i] <= values[i + 1]]
    if values[-1] < values[-2]:
        out.append(float(grid[-1]))
    return out


def gmm(
    d: Design, settings: BaselineSettings, weights: np.ndarray | None = None
) -> tuple[GMMFit, np.ndarray, np.ndarray]:
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


def nls_spec1(
    d: Design, settings: BaselineSettings, weights: np.ndarray | None = None
) -> tuple[NLSFit, np.ndarray, np.ndarray]:
    h, grid, values = _profile(lambda hh: nls_at(d, hh, weights).ssr, settings)
    return nls_at(d, h, weights), grid, values
