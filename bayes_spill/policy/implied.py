"""The model-implied distribution of absorptive capacity among the firms of a county (paper
Appendix 7.2), per posterior draw:

    f(alpha | l) ∝ softmax_l(a + gamma alpha Sbar(lambda)) Normal(alpha; mu_alpha, sigma_alpha)

(the density itself is ``model.integrated.conditional_log_density``, one population), on a grid of
alpha (mu ± 8 sigma, 801 points), with expectations and CDFs by the trapezoid rule. Table 6's
implied column and Proposition 1 read it.
"""

from __future__ import annotations

import numpy as np

from bayes_spill.model.integrated import conditional_log_density

GRID_HALF_WIDTH = 8.0  # alpha grid: mu ± 8 sigma
GRID_POINTS = 801


def implied_alpha_density(county_effect, gamma, sbar, mu, sigma, rows, tilt=None) -> tuple[np.ndarray, np.ndarray]:
    """f(alpha | l) for the choice-set positions ``rows`` on a grid of alpha (one draw).

    Parameters
    ----------
    county_effect : numpy.ndarray
        (L,) county effects over the choice set.
    gamma : float
        Sorting coefficient.
    sbar : numpy.ndarray
        (L,) spillover field over the choice set, transformed as the fit does.
    mu, sigma : float
        The population Normal(mu_alpha, sigma_alpha).
    rows : array_like of int
        Positions in the choice set.
    tilt : array_like of float, optional
        One number t_r per row: the density is re-weighted by exp(alpha t_r) (the sales weighting
        of Table 6) and normalised again; the grid then widens to cover the tilted mass.

    Returns
    -------
    grid : numpy.ndarray
        (G,) evenly spaced alpha.
    density : numpy.ndarray
        (len(rows), G), each row integrating to 1 by the trapezoid rule.
    """
    rows = np.atleast_1d(np.asarray(rows))
    tilt = np.zeros(len(rows)) if tilt is None else np.asarray(tilt, dtype=float)
    # the grid in standard deviations: a tilt t moves the normal's mass by sigma^2 t
    lo = -GRID_HALF_WIDTH + sigma * min(0.0, float(tilt.min()))
    hi = GRID_HALF_WIDTH + sigma * max(0.0, float(tilt.max()))
    points = max(GRID_POINTS, int(np.ceil((hi - lo) * GRID_POINTS / (2 * GRID_HALF_WIDTH))) | 1)
    grid, log_f = conditional_log_density(mu, sigma, gamma, county_effect, sbar, rows, np.linspace(lo, hi, points))
    log_f = log_f + tilt[:, None] * grid[None, :]
    log_f -= log_f.max(axis=1, keepdims=True)
    f = np.exp(log_f)
    from scipy.integrate import trapezoid

    f /= trapezoid(f, grid, axis=1)[:, None]
    return grid, f


def implied_expectation(grid: np.ndarray, density: np.ndarray, values: np.ndarray) -> np.ndarray:
    """∫ values(alpha) f(alpha | l) dalpha per row; values broadcast against density (R, G)."""
    from scipy.integrate import trapezoid

    return trapezoid(density * values, grid, axis=1)


def implied_cdf(grid: np.ndarray, density: np.ndarray) -> np.ndarray:
    """CDF of each row on the (evenly spaced) grid, ending at exactly 1."""
    from scipy.integrate import cumulative_trapezoid

    cdf = cumulative_trapezoid(density, axis=1, initial=0)  # normalised below, so the spacing cancels
    return cdf / cdf[:, -1:]
