"""alpha_i integrated out of the joint model (model.integrate_alpha), and drawn back after sampling.

Given the other parameters theta, the within-firm production equation is linear in alpha_i with
Gaussian noise and alpha_i ~ Normal(mu, sigma_a), so alpha_i | theta, q_i is Normal(m_i, s_i^2) and
the production block integrates in closed form. With r and S the firm's within-demeaned residual
(alpha's term left out) and spillover, A, B, C = sum_t r^2, r S, S^2, and rho = sigma_a^2 C / sigma_w^2:

    m_i   = (mu + sigma_a^2 B / sigma_w^2) / (1 + rho)
    s_i^2 = sigma_a^2 / (1 + rho)
    log p(q_i | theta) = -(T_i - 1)/2 log(2 pi sigma_w^2) - A / (2 sigma_w^2) - log(1 + rho) / 2
                         + (sigma_a^2 B^2 / sigma_w^2 + 2 mu B - mu^2 C) / (2 sigma_w^2 (1 + rho))

(the last line is b^2/(2P) - mu^2/(2 sigma_a^2) of the textbook form, rearranged so that nothing
cancels as sigma_a -> 0). The location probability is then averaged over that normal by K-node
Gauss-Hermite quadrature, log p(l_i | q_i, theta) ~ log sum_k w_k P(l_i | m_i + sqrt(2) s_i x_k):
the N latent alpha_i leave the sampler, and each firm's logit denominator is evaluated K times.

Checks and counterfactuals read alpha_i draws, so after sampling draw_alpha takes one alpha_i per
posterior draw from its conditional posterior, Normal(m_i, s_i^2) x P(l_i | alpha), by rejection
sampling under a tangent envelope (log P is concave in alpha), with an inverse-CDF draw on a grid
of +-GRID_SPAN s_i for the few firms it has not accepted after REJECTION_ROUNDS.
"""

from __future__ import annotations

import math

import numpy as np

from bayes_spill.model.denominator import (
    evaluate_log_denominator,
    evaluate_log_denominator_slope,
    log_denominator_table,
    log_denominator_tables,
)
from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.paper import LOG_2PI
from bayes_spill.parallel import ordered_in_threads

# the normal alpha_i | theta, q_i of the production block, kept in the posterior of such fits
ALPHA_PRODUCTION_MEAN, ALPHA_PRODUCTION_SD = "alpha_production_mean", "alpha_production_sd"
GRID_SPAN = 8.0  # standard deviations either side of m_i: Normal mass beyond is 1e-15
GRID_POINTS = 161
ALPHA_STREAM = 7  # the random stream of the alpha draws, beside the sampler's seed
# rounds of rejection sampling before the rest of the firms are drawn on the grid: at the posterior
# nearly all firms are accepted in the first round
REJECTION_ROUNDS = 20
BISECTION_STEPS = 30  # the tangent point to 1e-9 of the bracket: any tangent point is valid
# the modes of this many firms x draws are bisected together (arrays that stay in cache)
BLOCK_ELEMENTS = 16_384


def gauss_hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite quadrature against the normal: the one rule of the package (the integrated
    model, the two-step estimator and the location equilibria use it).

    Parameters
    ----------
    nodes : int
        The number of nodes K.

    Returns
    -------
    x, w : ndarray
        Nodes x_k and weights w_k (summing to 1) with, for Z standard normal,
        E f(m + s Z) ~ sum_k w_k f(m + sqrt(2) s x_k), exact for polynomials of degree < 2K.
    """
    x, w = np.polynomial.hermite.hermgauss(nodes)
    return x, w / math.sqrt(math.pi)


def normal_quadrature(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z_k = sqrt(2) x_k and weights w_k of ``gauss_hermite``: E f(Z) ~ sum_k w_k f(z_k)."""
    x, w = gauss_hermite(nodes)
    return math.sqrt(2.0) * x, w


def conjugate_alpha(
    resid, spillover, obs_firm: np.ndarray, years_per_firm: np.ndarray, sigma_w, mu_alpha, sigma_alpha, backend=np
):
    """(m_i, s_i, log p(q_i | theta)) per firm, numpy or PyTensor. resid = q - x beta - v_t and
    spillover = S_it (transformed) per firm-year; the firm effect is removed by demeaning."""
    xp = backend
    n = len(years_per_firm)
    r = within_firm(resid, obs_firm, years_per_firm, xp)
    s = within_firm(spillover, obs_firm, years_per_firm, xp)
    a = segment_sum(r * r, obs_firm, n, xp)
    b = segment_sum(r * s, obs_firm, n, xp)
    c = segment_sum(s * s, obs_firm, n, xp)
    var_w, var_a = sigma_w**2, sigma_alpha**2
    rho = var_a * c / var_w
    mean = (mu_alpha + var_a * b / var_w) / (1.0 + rho)
    sd = xp.sqrt(var_a / (1.0 + rho))
    dof = years_per_firm - 1.0
    log_marginal = (
        -0.5 * dof * (LOG_2PI + xp.log(var_w))
        - 0.5 * a / var_w
        - 0.5 * xp.log1p(rho)
        + 0.5 * (var_a * b * b / var_w + 2.0 * mu_alpha * b - mu_alpha**2 * c) / (var_w * (1.0 + rho))
    )
    return mean, sd, log_marginal


def quadrature_alphas(mean, sd, nodes: int):
    """alpha at the Gauss-Hermite nodes, (firms, nodes), and the log weights (nodes,)."""
    x, w = gauss_hermite(nodes)
    return mean[:, None] + math.sqrt(2.0) * sd[:, None] * x[None, :], np.log(w)


# -- alpha_i drawn back from its conditional posterior (numpy) -----------------------------------------
def conditional_log_density(mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray, z: np.ndarray):
    """The density of alpha given the chosen county, Normal(alpha; mean, sd) x P(l | alpha), on a grid.

    log f(alpha) = -z^2 / 2 + log P(l | alpha) + const,  alpha = mean + sd z,
    log P(l | alpha) = a_l + c Sbar_l - LSE(c),  c = gamma alpha,  LSE(c) = log sum_l' exp(a_l' + c Sbar_l').

    The one formula serves two normals, which differ only in how LSE(c) is evaluated:

    * per firm (mean, sd arrays): alpha_i | theta, q_i of the production block, for drawing alpha_i
      back after sampling. Each of the N x len(z) points has its own c, so LSE comes from the cubic
      Hermite table in c (error below 3e-8), and the constant a_l is left out.
    * one population (mean, sd scalars: mu_alpha, sigma_alpha): Proposition 1's f(alpha | l), for the
      predictive checks and the policy experiments. One grid of alpha serves every row, so LSE is
      exact (a log-softmax over the counties, len(z) x L work).

    Parameters
    ----------
    mean, sd : float or numpy.ndarray
        The normal: scalars (one population) or (N,) arrays (per firm).
    gamma : float
        Sorting coefficient.
    county_effect : numpy.ndarray
        (L,) county effects a_l over the choice set.
    sbar : numpy.ndarray
        (L,) spillover field Sbar_l over the choice set, transformed as the model uses it.
    choice : array_like of int
        Positions in the choice set: the chosen county of each firm (per firm, (N,)), or the
        counties wanted as rows (one population).
    z : numpy.ndarray
        (G,) grid in standard deviations of the normal.

    Returns
    -------
    alpha : numpy.ndarray
        (N, G) per firm, or (G,) for one population.
    log_density : numpy.ndarray
        (rows, G), up to a constant per row.
    """
    choice = np.atleast_1d(np.asarray(choice))
    if np.ndim(mean) == 0:
        from scipy.special import log_softmax

        alpha = mean + sd * z
        logits = county_effect[None, :] + gamma * alpha[:, None] * sbar[None, :]  # (G, L)
        return alpha, -0.5 * z[None, :] ** 2 + log_softmax(logits, axis=1)[:, choice].T
    alpha = mean[:, None] + sd[:, None] * z[None, :]
    c = gamma * alpha
    table = log_denominator_table(county_effect, sbar, float(c.min()), float(c.max()))
    log_choice = c * sbar[choice][:, None] - evaluate_log_denominator(table, c)
    return alpha, -0.5 * z[None, :] ** 2 + log_choice


def draw_alpha(rng: np.random.Generator, mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray) -> np.ndarray:
    """One alpha_i per firm from its conditional posterior Normal(m_i, s_i^2) x P(l_i | alpha) given
    one posterior draw of theta, by exact rejection sampling: ``draw_alphas`` at one draw."""
    return draw_alphas(
        rng, mean[None], sd[None], np.array([gamma], dtype=float), county_effect[None], sbar[None], choice
    )[0]


def draw_alphas(rng: np.random.Generator, mean, sd, gamma, county_effect, sbar, choice: np.ndarray) -> np.ndarray:
    """One alpha_i per firm at each of D posterior draws of theta, from its conditional posterior
    Normal(m_i, s_i^2) x P(l_i | alpha), by exact rejection sampling.

    log P(l | alpha) = gamma alpha Sbar_l - LSE(gamma alpha) + const is concave in alpha (LSE is
    convex), so it lies below its tangent at any alpha_0, slope g_i = gamma (Sbar_l - LSE'(gamma
    alpha_0)), and the normal times the exponential of that tangent is Normal(m_i + s_i^2 g_i, s_i^2).
    A proposal from it is accepted with probability P(l | alpha) / exp(tangent) <= 1. The tangent
    is taken at the mode of the conditional posterior (found by bisection), which keeps acceptance
    high even where the logit moves alpha_i by several s_i. Each round costs firms, not firms x a
    grid; firms still rejected after REJECTION_ROUNDS get the inverse-CDF draw on a grid.

    The modes use no random numbers and are found for blocks of draws at once (BLOCK_ELEMENTS firms
    x draws); the rounds then run draw by draw in order, so that the generator gives the same alpha
    as D calls of one draw each.

    Parameters
    ----------
    rng : numpy.random.Generator
        The alpha draws' random stream.
    mean, sd : numpy.ndarray
        (D, N): m_i and s_i of the production block's normal at each draw.
    gamma : numpy.ndarray
        (D,) sorting coefficient.
    county_effect, sbar : numpy.ndarray
        (D, L): a_l and Sbar_l (transformed) over the choice set.
    choice : numpy.ndarray
        (N,) each firm's county, as a position in the choice set.

    Returns
    -------
    numpy.ndarray
        (D, N) alpha.
    """
    alpha = np.empty(np.shape(mean))
    per_block = max(1, BLOCK_ELEMENTS // max(1, alpha.shape[1]))
    blocks = [slice(start, min(start + per_block, len(alpha))) for start in range(0, len(alpha), per_block)]

    def envelopes(rows: slice):  # no random numbers: blocks ahead are computed on the other cores
        g = gamma[rows, None]
        sbar_chosen = sbar[rows][:, choice]
        tangent, tables = _conditional_modes(mean[rows], sd[rows], g, county_effect[rows], sbar[rows], sbar_chosen)
        c_tangent = g * tangent
        log_p_tangent = c_tangent * sbar_chosen - evaluate_log_denominator(tables, c_tangent)
        slope = g * (sbar_chosen - evaluate_log_denominator_slope(tables, c_tangent))
        return tangent, log_p_tangent, slope, mean[rows] + sd[rows] ** 2 * slope

    for rows, (tangent, log_p_tangent, slope, centre) in zip(blocks, ordered_in_threads(envelopes, blocks)):
        for k, d in enumerate(range(rows.start, rows.stop)):
            envelope = (tangent[k], log_p_tangent[k], slope[k], centre[k])
            alpha[d] = _rejection_rounds(
                rng, mean[d], sd[d], float(gamma[d]), county_effect[d], sbar[d], choice, envelope
            )
    return alpha


def _rejection_rounds(rng, mean, sd, gamma: float, county_effect, sbar, choice, envelope) -> np.ndarray:
    """One draw's alpha by rejection under the tangent envelope (tangent point, log P there, slope,
    the proposal's centre), REJECTION_ROUNDS rounds, then the grid for the firms left."""
    tangent, log_p_tangent, slope, centre = envelope
    alpha = np.full(len(mean), np.nan)
    sbar_chosen = sbar[choice]
    todo = np.arange(len(mean))
    for _ in range(REJECTION_ROUNDS):
        if todo.size == 0:
            return alpha
        proposal = centre[todo] + sd[todo] * rng.standard_normal(todo.size)
        c = gamma * proposal
        table = log_denominator_table(county_effect, sbar, float(c.min()), float(c.max()))
        log_p = c * sbar_chosen[todo] - evaluate_log_denominator(table, c)
        gap = log_p - log_p_tangent[todo] - slope[todo] * (proposal - tangent[todo])  # <= 0 up to the table's error
        accept = np.log(rng.uniform(size=todo.size)) <= gap
        alpha[todo[accept]] = proposal[accept]
        todo = todo[~accept]
    if todo.size:
        alpha[todo] = _draw_alpha_on_grid(rng, mean[todo], sd[todo], gamma, county_effect, sbar, choice[todo])
    return alpha


def _conditional_modes(mean, sd, gamma, county_effect, sbar, sbar_chosen):
    """The mode of Normal(m_i, s_i^2) x P(l_i | alpha) at each row (draw) by bisection, and the
    log-denominator tables it used (row r's covers gamma_r x row r's modes): the log-density's
    derivative -(alpha - m)/s^2 + gamma (Sbar_l - LSE'(gamma alpha)) decreases in alpha and
    changes sign between m and m + s^2 g(m). mean, sd, sbar_chosen (rows, N); gamma (rows, 1);
    county_effect, sbar (rows, L)."""
    c_mean = gamma * mean
    tables = log_denominator_tables(county_effect, sbar, c_mean.min(axis=1), c_mean.max(axis=1))
    end = mean + sd**2 * gamma * (sbar_chosen - evaluate_log_denominator_slope(tables, c_mean))
    lo, hi = np.minimum(mean, end), np.maximum(mean, end)
    var = np.maximum(sd**2, np.finfo(float).tiny)  # s_i = 0: the bracket is the point m_i
    c_lo, c_hi = gamma * lo, gamma * hi
    ends = np.minimum(c_lo.min(axis=1), c_hi.min(axis=1)), np.maximum(c_lo.max(axis=1), c_hi.max(axis=1))
    tables = log_denominator_tables(county_effect, sbar, *ends)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        rising = -(mid - mean) / var + gamma * (sbar_chosen - evaluate_log_denominator_slope(tables, gamma * mid)) > 0
        lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
    return 0.5 * (lo + hi), tables


def conditional_cdf(mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray, z: np.ndarray):
    """(alpha, CDF) of Normal(alpha; mean, sd) x P(l | alpha) at alpha = mean + sd z, by the trapezoid
    rule, normalised over the grid; per firm or for one population as ``conditional_log_density``."""
    from scipy.integrate import cumulative_trapezoid

    alpha, log_density = conditional_log_density(mean, sd, gamma, county_effect, sbar, choice, z)
    # evenly spaced in z and normalised to end at exactly 1, so the spacing (dx = 1) cancels
    cdf = cumulative_trapezoid(np.exp(log_density - log_density.max(axis=1, keepdims=True)), axis=1, initial=0)
    return alpha, cdf / cdf[:, -1:]


def inverse_cdf(u: np.ndarray, alpha: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """One value per row at probability u (rows,) from a CDF on a grid, linear within a cell; alpha
    is the grid of each row (rows, G) or one grid (G,) shared by every row."""
    alpha = np.broadcast_to(alpha, cdf.shape)
    j = np.clip((cdf < u[:, None]).sum(axis=1) - 1, 0, cdf.shape[1] - 2)
    rows = np.arange(len(u))
    lo, hi = cdf[rows, j], cdf[rows, j + 1]
    t = np.where(hi > lo, (u - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    return alpha[rows, j] + t * (alpha[rows, j + 1] - alpha[rows, j])


def _draw_alpha_on_grid(
    rng: np.random.Generator, mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray
) -> np.ndarray:
    """The inverse-CDF draw on a grid of +-GRID_SPAN s_i (firms x GRID_POINTS work)."""
    z = np.linspace(-GRID_SPAN, GRID_SPAN, GRID_POINTS)
    alpha, cdf = conditional_cdf(mean, sd, gamma, county_effect, sbar, choice, z)
    return inverse_cdf(rng.uniform(size=len(mean)), alpha, cdf)
