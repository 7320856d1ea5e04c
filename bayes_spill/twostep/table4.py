"""Preliminary evidence on sorting (paper Section 5.3, Table 4 and Figure 3).

The naive within-firm OLS estimate of absorptive capacity (eq. 11),

    alpha_hat_i = sum_t (S_it - mean_i S) (y_it - mean_i y) / sum_t (S_it - mean_i S)^2,
    y_it = q_it - z_it beta - v_t,

is alpha_i plus a noise nu_i with Var(nu_i | l) = sigma_w^2 / s_variation_i (eq. 12, Appendix
7.4), s_variation_i = sum_t (S_it - mean_i S)^2. Table 4 regresses alpha_hat_i on the spillover
at the firm's county, S_{l_i}, by median regression and by robust (Huber) regression, on all
firms and on the firms of the 20 occupied counties with the highest S.

The same functions serve the classical two-step estimator (which plugs in its GMM estimates of
beta and lambda) and the posterior predictive checks (which plug in each posterior draw, on the
observed and on the replicated log sales). Everything is numpy; ``within_slope`` takes leading
"draw" axes so the checks can evaluate many draws at once.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayes_spill.data.panel import PreparedPanel
from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.spillover.kernel import LEVELS, SpilloverTransform

TABLE4_COLUMNS = ("Median, all", "Robust, all", "Median, top-20", "Robust, top-20")
TABLE4_ROWS = ("slope", "t (regular)", "t (bootstrap)", "firms")
# A firm whose spillover series varies by less than rounding error has no within-firm variation
# in S: its alpha_hat is nan instead of a number divided by rounding noise. Rounding is judged
# against the largest |S| in the panel, because S_it = S_{l_i t} - R_it loses digits when a firm's
# own stock is nearly all of its county's pool.
RELATIVE_ZERO_VARIATION = 1e-12


def within_slope(y: np.ndarray, s: np.ndarray, obs_firm: np.ndarray, n_firms: int) -> tuple[np.ndarray, np.ndarray]:
    """Within-firm OLS slope of y on S for every firm, eq. (11), leading axes kept (the checks pass
    one row per posterior draw).

    Parameters
    ----------
    y, s : ndarray
        Shape (..., n_obs), broadcast against each other; the firm intercepts are swept out by the
        within-firm demeaning.
    obs_firm : ndarray of int
        The firm of each firm-year.
    n_firms : int
        The number of firms.

    Returns
    -------
    alpha_hat, s_variation : ndarray
        Shape (..., n_firms); alpha_hat is nan (and s_variation 0) where S does not vary within
        the firm beyond rounding (RELATIVE_ZERO_VARIATION).
    """
    s = np.broadcast_to(s, np.broadcast_shapes(s.shape, y.shape))
    y = np.broadcast_to(y, s.shape)
    years = np.bincount(obs_firm, minlength=n_firms).astype(float)
    ds = within_firm(s, obs_firm, years, axis=-1)
    dy = within_firm(y, obs_firm, years, axis=-1)
    sxx = segment_sum(ds * ds, obs_firm, n_firms, axis=-1)
    sxy = segment_sum(ds * dy, obs_firm, n_firms, axis=-1)
    level = np.max(np.abs(s), axis=-1, keepdims=True)  # (..., 1)
    no_variation = sxx <= years * (RELATIVE_ZERO_VARIATION * level) ** 2
    sxx = np.where(no_variation, 0.0, sxx)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha_hat = np.where(no_variation, np.nan, sxy / np.where(no_variation, 1.0, sxx))
    return alpha_hat, sxx


def firm_year_spillover(panel: PreparedPanel, halflife_km, transform: SpilloverTransform = LEVELS) -> np.ndarray:
    """S_it for every firm-year (the regressor of eq. 7 and 11), transformed as the model does."""
    return transform.firm_year(transform.inputs(panel), float(halflife_km))


def naive_alpha_hat(
    panel: PreparedPanel,
    beta,
    halflife_km: float,
    year_effect=None,
    transform: SpilloverTransform = LEVELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Naive within-firm OLS absorptive capacities, eq. (11): (alpha_hat (N,), s_variation (N,)).

    For each firm, the OLS of y_it = q_it - z_it beta - v_t on [S_it(lambda), 1] over its years.

    beta: (beta_k, beta_l, beta_r, beta_zero_rd), the coefficients of log capital, log employment,
        log R&D stock and the zero-R&D dummy.
    halflife_km: the spillover half-life ln 2 / lambda.
    year_effect: v_t, one value per year of ``panel.years`` (None: no year effects).
    transform: the spillover as the model uses it (``ModelSpec.spillover_transform``): levels ($ bil,
        the paper's estimates) or log max(S, floor), own stock excluded (the default) or not.

    s_variation_i = sum_t (S_it - mean_i S)^2, so Var(nu_i) = sigma_w^2 / s_variation_i
    (Appendix 7.4). A firm whose S_it does not vary over its years (s_variation == 0; up to
    rounding: below T_i (1e-12 max|S|)^2, max over the panel) has no identified slope: its
    alpha_hat is nan and its s_variation 0; drop or down-weight those firms downstream
    (``table4`` drops nan rows). Firms with little variation get huge, noisy alpha_hat: that is
    the nu_i of eq. (12), which is why Table 4 uses median and robust regressions.
    """
    beta = np.asarray(beta, dtype=float)
    if beta.shape != (4,):
        raise ValueError(f"beta must hold 4 numbers (beta_k, beta_l, beta_r, beta_zero_rd), got shape {beta.shape}")
    inputs = np.column_stack([panel.k, panel.n, panel.r, panel.zero_rd])
    y = panel.q - inputs @ beta
    if year_effect is not None:
        v = np.asarray(year_effect, dtype=float)
        if v.shape != (len(panel.years),):
            raise ValueError(f"year_effect must hold one value per year ({len(panel.years)}), got shape {v.shape}")
        y = y - v[panel.obs_year]
    s = firm_year_spillover(panel, halflife_km, transform)
    return within_slope(y, s, panel.obs_firm, panel.n_firms)


def spillover_at_firm_county(
    panel: PreparedPanel, halflife_km: float, transform: SpilloverTransform = LEVELS
) -> np.ndarray:
    """Sbar at each firm's county, (N,): the county's field S_lt averaged over the sample years
    (own stock not excluded: this is the county's value, the x-axis of Figure 3 and the regressor
    of Table 4), transformed as the model does."""
    inputs = transform.inputs(panel)
    return np.asarray(transform.choice(inputs, float(halflife_km)))[inputs.firm_choice]


def top_spillover_firms(panel: PreparedPanel, s_at_firm: np.ndarray, k: int = 20) -> np.ndarray:
    """Boolean mask (N,): firms located in the k occupied counties with the highest S (all firms
    when fewer than k counties are occupied). Ties at the k-th place go to the lower county index."""
    s_at_firm = np.asarray(s_at_firm, dtype=float)
    if s_at_firm.shape != (panel.n_firms,):
        raise ValueError(f"s_at_firm must hold one value per firm ({panel.n_firms}), got shape {s_at_firm.shape}")
    counties, first = np.unique(panel.firm_county, return_index=True)
    county_s = s_at_firm[first]
    order = np.lexsort((counties, -county_s))  # highest S first, then lower county index
    top = counties[order[:k]]
    return np.isin(panel.firm_county, top)


def _fit_pair(y: np.ndarray, x: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """((slope, t) of the median regression, (slope, t) of the robust regression) of y on [1, x].

    Median: statsmodels QuantReg, q = 0.5. Robust: RLM with the Huber T norm, IRLS started from
    the median-regression coefficients: statsmodels' default OLS start is thrown off by the
    extreme alpha_hat of firms with little spillover variation (eq. 12's nu_i) and can stop at a
    meaningless point; from a robust start it reaches the Huber fit (on well-behaved data, the
    same as the default start).
    """
    import statsmodels.api as sm
    from statsmodels.regression.quantile_regression import QuantReg

    if len(y) < 3 or np.ptp(x) == 0:
        return (np.nan, np.nan), (np.nan, np.nan)
    design = np.column_stack([np.ones_like(x), x])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # iteration-limit and convergence chatter
        with np.errstate(all="ignore"):
            median = QuantReg(y, design).fit(q=0.5)
            robust = sm.RLM(y, design, M=sm.robust.norms.HuberT()).fit(start_params=median.params, maxiter=200)
    return (float(median.params[1]), float(median.tvalues[1])), (float(robust.params[1]), float(robust.tvalues[1]))


def table4_slopes(alpha_hat: np.ndarray, s_at_firm: np.ndarray, top_mask: np.ndarray) -> np.ndarray:
    """The four slopes of Table 4 (order of TABLE4_COLUMNS), without t-statistics' bootstrap."""
    return table4(alpha_hat, s_at_firm, top_mask).loc["slope"].to_numpy()


def table4(
    alpha_hat: np.ndarray,
    s_at_firm: np.ndarray,
    top_mask: np.ndarray,
    n_bootstrap: int = 0,
    seed: int | None = None,
) -> pd.DataFrame:
    """Table 4: alpha_hat_i = delta_0 + delta_1 S_{l_i} + e_i by median and robust regression.

    Columns "Median, all", "Robust, all", "Median, top-20", "Robust, top-20"; rows "slope"
    (delta_1), "t (regular)" (statsmodels' t of QuantReg q=0.5 with its default iid kernel
    standard error; of RLM with the Huber T norm), "t (bootstrap)" (slope / sd of the slopes over
    n_bootstrap resamples of firms with replacement within the column's sample; nan when
    n_bootstrap == 0) and "firms" (firms used: rows with a nan alpha_hat or S are excluded).
    The robust regression starts IRLS from the median-regression coefficients (see ``_fit_pair``);
    on well-behaved data this is statsmodels' default Huber fit.
    """
    alpha_hat = np.asarray(alpha_hat, dtype=float)
    s_at_firm = np.asarray(s_at_firm, dtype=float)
    top_mask = np.asarray(top_mask, dtype=bool)
    if not alpha_hat.shape == s_at_firm.shape == top_mask.shape or alpha_hat.ndim != 1:
        raise ValueError("alpha_hat, s_at_firm and top_mask must be 1-d arrays of the same length (one per firm)")
    valid = np.isfinite(alpha_hat) & np.isfinite(s_at_firm)
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(index=list(TABLE4_ROWS), columns=list(TABLE4_COLUMNS), dtype=float)
    for sample in ("all", "top-20"):
        use = valid & (top_mask if sample == "top-20" else True)
        y, x = alpha_hat[use], s_at_firm[use]
        fits = _fit_pair(y, x)
        t_boot = [np.nan, np.nan]
        if n_bootstrap > 0 and np.isfinite(fits[0][0]):
            slopes = np.empty((n_bootstrap, 2))
            for b in range(n_bootstrap):
                pick = rng.integers(0, len(y), len(y))
                (ms, _), (rs, _) = _fit_pair(y[pick], x[pick])
                slopes[b] = ms, rs
            sd = np.nanstd(slopes, axis=0, ddof=1)
            t_boot = [fits[j][0] / sd[j] if sd[j] > 0 else np.nan for j in range(2)]
        for j, kind in enumerate(("Median", "Robust")):
            table[f"{kind}, {sample}"] = [fits[j][0], fits[j][1], t_boot[j], float(use.sum())]
    return table
