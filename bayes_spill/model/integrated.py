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

from bayes_spill.spillover.interpolation import cubic_hermite, log_denominator_with_slope

LOG_2PI = math.log(2.0 * math.pi)
# the normal alpha_i | theta, q_i of the production block, kept in the posterior of such fits
ALPHA_PRODUCTION_MEAN, ALPHA_PRODUCTION_SD = "alpha_production_mean", "alpha_production_sd"
GRID_SPAN = 8.0  # standard deviations either side of m_i: Normal mass beyond is 1e-15
GRID_POINTS = 161
ALPHA_STREAM = 7  # the random stream of the alpha draws, beside the sampler's seed
# the cubic Hermite table of the log-denominator in c = gamma alpha: node spacing dc with
# dc (max Sbar - min Sbar) <= C_STEP, so that its error is at most
# C_STEP^4 / interpolation.CUBIC_ERROR_DENOMINATOR (3e-8)
C_STEP = 0.1
MAX_C_NODES = 4097
# rounds of rejection sampling before the rest of the firms are drawn on the grid: at the posterior
# nearly all firms are accepted in the first round
REJECTION_ROUNDS = 20
BISECTION_STEPS = 30  # the tangent point to 1e-9 of the bracket: any tangent point is valid


def gauss_hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x_k and log weights log w_k (the w_k sum to 1) with, for Z standard normal,
    E f(m + s Z) ~ sum_k w_k f(m + sqrt(2) s x_k), exact for polynomials of degree < 2 nodes."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    return x, np.log(w / math.sqrt(math.pi))


def segment_sum(values, segment: np.ndarray, n_segments: int, backend=np):
    """Sum of values within each segment (firm), numpy or PyTensor; numpy also takes (n_obs, p)."""
    if backend is np:
        if values.ndim == 1:
            return np.bincount(segment, weights=values, minlength=n_segments)
        sums = np.zeros((n_segments, *values.shape[1:]))
        np.add.at(sums, segment, values)
        return sums
    return backend.zeros(n_segments)[segment].inc(values)


def within_firm(values, obs_firm: np.ndarray, years_per_firm: np.ndarray, backend=np):
    """values less their firm means (the firm effect u_i removed), numpy or PyTensor."""
    sums = segment_sum(values, obs_firm, len(years_per_firm), backend)
    means = sums / years_per_firm.reshape(-1, *([1] * (values.ndim - 1)))
    return values - means[obs_firm]


def conjugate_alpha(resid, spillover, obs_firm: np.ndarray, years_per_firm: np.ndarray, sigma_w, mu_alpha, sigma_alpha, backend=np):
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
    x, log_w = gauss_hermite(nodes)
    return mean[:, None] + math.sqrt(2.0) * sd[:, None] * x[None, :], log_w


# -- alpha_i drawn back from its conditional posterior (numpy) -----------------------------------------
def log_denominator_table(county_effect: np.ndarray, sbar: np.ndarray, c_lo: float, c_hi: float):
    """LSE(c) = log sum_l exp(a_l + c Sbar_l) and its derivative (the softmax mean of Sbar) on a
    grid of [c_lo, c_hi]: a cubic Hermite table. LSE'''' is the fourth cumulant of Sbar under the
    softmax, at most range^4 / 8, hence the error bound in C_STEP's comment (3e-8)."""
    spread = float(sbar.max() - sbar.min())
    nodes = int(min(MAX_C_NODES, max(3, math.ceil((c_hi - c_lo) * spread / C_STEP) + 1)))
    grid = np.linspace(c_lo, c_hi, nodes) if c_hi > c_lo else np.array([c_lo, c_lo + 1.0])
    return (grid, *log_denominator_with_slope(county_effect, sbar, grid, np))


def _hermite_piece(table, c: np.ndarray):
    grid, value, slope = table
    width = grid[1] - grid[0]
    j = np.clip(((c - grid[0]) / width).astype(np.int64), 0, len(grid) - 2)
    return j, (c - grid[j]) / width, width, value, slope


def evaluate_log_denominator(table, c: np.ndarray) -> np.ndarray:
    j, t, width, value, slope = _hermite_piece(table, c)
    return cubic_hermite(t, width, value[j], slope[j], value[j + 1], slope[j + 1])


def evaluate_log_denominator_slope(table, c: np.ndarray) -> np.ndarray:
    """d LSE / dc of the same cubic Hermite interpolant (the softmax mean of Sbar, to its accuracy)."""
    j, t, width, value, slope = _hermite_piece(table, c)
    d00, d10 = 6 * t * t - 6 * t, 3 * t * t - 4 * t + 1
    d01, d11 = -6 * t * t + 6 * t, 3 * t * t - 2 * t
    return (d00 * value[j] + d01 * value[j + 1]) / width + d10 * slope[j] + d11 * slope[j + 1]


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
    one posterior draw of theta, by exact rejection sampling.

    log P(l | alpha) = gamma alpha Sbar_l - LSE(gamma alpha) + const is concave in alpha (LSE is
    convex), so it lies below its tangent at any alpha_0, slope g_i = gamma (Sbar_l - LSE'(gamma
    alpha_0)), and the normal times the exponential of that tangent is Normal(m_i + s_i^2 g_i, s_i^2).
    A proposal from it is accepted with probability P(l | alpha) / exp(tangent) <= 1. The tangent
    is taken at the mode of the conditional posterior (found by bisection), which keeps acceptance
    high even where the logit moves alpha_i by several s_i. Each round costs firms, not firms x a
    grid; firms still rejected after REJECTION_ROUNDS get the inverse-CDF draw on a grid."""
    alpha = np.full(len(mean), np.nan)
    sbar_chosen = sbar[choice]
    tangent, table = _conditional_mode(mean, sd, gamma, county_effect, sbar, sbar_chosen)
    c_tangent = gamma * tangent
    log_p_tangent = c_tangent * sbar_chosen - evaluate_log_denominator(table, c_tangent)
    slope = gamma * (sbar_chosen - evaluate_log_denominator_slope(table, c_tangent))
    centre = mean + sd**2 * slope
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


def _conditional_mode(mean, sd, gamma: float, county_effect, sbar, sbar_chosen):
    """The mode of Normal(m_i, s_i^2) x P(l_i | alpha) by bisection, and the log-denominator table
    it used (it covers gamma x the mode): the log-density's derivative
    -(alpha - m)/s^2 + gamma (Sbar_l - LSE'(gamma alpha)) decreases in alpha and changes sign
    between m and m + s^2 g(m)."""
    c_mean = gamma * mean
    table = log_denominator_table(county_effect, sbar, float(c_mean.min()), float(c_mean.max()))
    end = mean + sd**2 * gamma * (sbar_chosen - evaluate_log_denominator_slope(table, c_mean))
    lo, hi = np.minimum(mean, end), np.maximum(mean, end)
    var = np.maximum(sd**2, np.finfo(float).tiny)  # s_i = 0: the bracket is the point m_i
    c_ends = gamma * np.concatenate([lo, hi])
    table = log_denominator_table(county_effect, sbar, float(c_ends.min()), float(c_ends.max()))
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        rising = -(mid - mean) / var + gamma * (sbar_chosen - evaluate_log_denominator_slope(table, gamma * mid)) > 0
        lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
    return 0.5 * (lo + hi), table


def conditional_cdf(mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray, z: np.ndarray):
    """(alpha, CDF) of Normal(alpha; mean, sd) x P(l | alpha) at alpha = mean + sd z, by the trapezoid
    rule, normalised over the grid; per firm or for one population as ``conditional_log_density``."""
    alpha, log_density = conditional_log_density(mean, sd, gamma, county_effect, sbar, choice, z)
    return alpha, trapezoid_cdf(np.exp(log_density - log_density.max(axis=1, keepdims=True)))


def trapezoid_cdf(density: np.ndarray) -> np.ndarray:
    """The CDF of each row of a density on an evenly spaced grid (cumulative trapezoid rule),
    normalised to end at exactly 1."""
    cdf = np.concatenate([np.zeros((len(density), 1)), np.cumsum(0.5 * (density[:, 1:] + density[:, :-1]), axis=1)], axis=1)
    return cdf / cdf[:, -1:]


def inverse_cdf(u: np.ndarray, alpha: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """One value per row at probability u (rows,) from a CDF on a grid, linear within a cell; alpha
    is the grid of each row (rows, G) or one grid (G,) shared by every row."""
    alpha = np.broadcast_to(alpha, cdf.shape)
    j = np.clip((cdf < u[:, None]).sum(axis=1) - 1, 0, cdf.shape[1] - 2)
    rows = np.arange(len(u))
    lo, hi = cdf[rows, j], cdf[rows, j + 1]
    t = np.where(hi > lo, (u - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    return alpha[rows, j] + t * (alpha[rows, j + 1] - alpha[rows, j])


def _draw_alpha_on_grid(rng: np.random.Generator, mean, sd, gamma: float, county_effect, sbar, choice: np.ndarray) -> np.ndarray:
    """The inverse-CDF draw on a grid of +-GRID_SPAN s_i (firms x GRID_POINTS work)."""
    z = np.linspace(-GRID_SPAN, GRID_SPAN, GRID_POINTS)
    alpha, cdf = conditional_cdf(mean, sd, gamma, county_effect, sbar, choice, z)
    return inverse_cdf(rng.uniform(size=len(mean)), alpha, cdf)
