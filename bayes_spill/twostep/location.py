"""Step 2 of the two-step estimator (estimator.py has the method): the location choice by maximum
likelihood for (mu_alpha, sigma_alpha, gamma), the county effects concentrated out by the BLP
contraction, the measurement error of alpha_hat convolved in by Gauss-Hermite quadrature."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayes_spill.errors import BayesSpillError
from bayes_spill.model.denominator import evaluate_log_denominator, exact_log_denominator, log_denominator_table
from bayes_spill.model.integrated import normal_quadrature
from bayes_spill.twostep.design import BaselineSettings

LOCATION_TABLE_NODES = 257  # nodes of the table of the logit denominator in u = gamma alpha


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


def blp_map(
    a: np.ndarray, log_shares: np.ndarray, sbar: np.ndarray, gamma: float, mu: float, sigma: float, quad
) -> np.ndarray:
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
        var_nu = np.where(
            (s_var > 0) & np.isfinite(alpha_hat), sigma_w2_value / np.where(s_var > 0, s_var, 1.0), np.inf
        )
    return LocationData(
        alpha_hat=np.asarray(alpha_hat, float)[keep],
        var_nu=var_nu[keep],
        choice=remap[firm_choice[keep]],
        sbar=np.asarray(sbar, float)[occupied],
        log_shares=np.log(counts[occupied] / counts.sum()),
        weights=w[keep],
    )


def firm_location_loglik(
    ld: LocationData, a: np.ndarray, mu: float, sigma: float, gamma: float, quad, exact: bool = False
) -> np.ndarray:
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


def location_ml(
    ld: LocationData, settings: BaselineSettings, start: tuple[float, float, float] | None = None
) -> LocationFit:
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
        spread = (
            float(np.subtract(*np.percentile(ld.alpha_hat[precise], [75, 25])) / 1.349) if precise.sum() > 3 else 0.5
        )
        start = (mu0, max(spread, 0.05), 0.0)
    cache = {"a": None, "n": 0}

    def negloglik(theta):
        mu, log_sigma, gamma = theta
        sigma = math.exp(log_sigma)
        if not (np.isfinite(sigma) and 1e-5 < sigma < 1e3 and abs(gamma) < 1e3 and abs(mu) < 1e3):
            return 1e300
        cache["n"] += 1
        try:
            a, _ = blp_contraction(
                ld.log_shares,
                ld.sbar,
                gamma,
                mu,
                sigma,
                quad,
                cache["a"],
                settings.contraction_tol,
                settings.contraction_max_iter,
            )
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
            nm = optimize.minimize(
                negloglik,
                res.x if res.fun < 1e299 else x0,
                method="Nelder-Mead",
                options={"xatol": 1e-5, "fatol": 1e-7, "maxiter": 4000, "maxfev": 8000},
            )
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
    a, _ = blp_contraction(
        ld.log_shares, ld.sbar, gamma, mu, sigma, quad, None, settings.contraction_tol, settings.contraction_max_iter
    )
    return LocationFit(float(mu), float(sigma), float(gamma), float(-best.fun), a, bool(best.success), cache["n"])
