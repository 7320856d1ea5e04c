"""Table 4 building blocks: the naive within-firm OLS alpha_hat (eq. 11), S at the firm's county,
the top-20 mask and the median/robust regressions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_spill.data.geography import great_circle_km, load_counties
from bayes_spill.data.panel import PreparedPanel, build_panel
from bayes_spill.twostep import table4 as se

HALFLIFE = 59.0
BETA = np.array([0.11, 0.66, 0.09, -0.3])
FIPS = [
    "06085",
    "06081",
    "06001",
    "25017",
    "25025",
    "53033",
]  # Santa Clara, San Mateo, Alameda, Middlesex, Suffolk, King


@pytest.fixture(scope="module")
def counties():
    return load_counties()


def hand_panel(counties, sales=None) -> PreparedPanel:
    """12 firms in 6 counties, 1995-2001 (firm 11 only 2 years later), varied R&D."""
    rng = np.random.default_rng(1)
    rows = []
    for f in range(12):
        years = range(1995, 2002) if f % 3 else range(1997, 2002)
        for y in years:
            rows.append(
                {
                    "gvkey": f"{f:04d}",
                    "fyear": y,
                    "sale": 10.0,
                    "emp": float(rng.uniform(0.1, 5)),
                    "ppent": float(rng.uniform(1, 50)),
                    "xrd": 0.0 if (f == 4 and y < 1999) else float(rng.uniform(1, 400) * (1 + 0.2 * (y - 1995))),
                    "fips": FIPS[f % len(FIPS)],
                }
            )
    frame = pd.DataFrame(rows)
    if sales is not None:
        frame["sale"] = sales(frame)
    return build_panel(frame, counties, source="hand")


def spillover_by_hand(panel: PreparedPanel, halflife: float) -> np.ndarray:
    """S_it = sum_m exp(-lambda d(l_i, m)) calR_mt - R_it, from a plain double loop."""
    lam = np.log(2) / halflife
    c = panel.counties
    s = np.zeros(panel.n_obs)
    for o in range(panel.n_obs):
        li = panel.obs_county[o]
        total = 0.0
        for p in range(panel.n_obs):
            if panel.obs_year[p] != panel.obs_year[o]:
                continue
            m = panel.obs_county[p]
            d = great_circle_km(c.lat[li], c.lon[li], c.lat[m], c.lon[m])
            total += np.exp(-lam * d) * panel.rd_stock[p] / 1000.0
        s[o] = total - panel.rd_stock[o] / 1000.0
    return s


def test_alpha_hat_is_exact_without_noise(counties):
    base = hand_panel(counties)
    s = spillover_by_hand(base, HALFLIFE)
    alpha = np.linspace(-0.8, 1.2, base.n_firms)
    u = np.linspace(1.0, 3.0, base.n_firms)
    v = 0.05 * np.arange(len(base.years))
    z = np.column_stack([base.k, base.n, base.r, base.zero_rd])
    q = z @ BETA + alpha[base.obs_firm] * s + u[base.obs_firm] + v[base.obs_year]  # w = 0
    panel = PreparedPanel(**{**base.__dict__, "sale": np.exp(q)})

    alpha_hat, s_var = se.naive_alpha_hat(panel, BETA, HALFLIFE, year_effect=v)
    np.testing.assert_allclose(alpha_hat, alpha, rtol=1e-8, atol=1e-8)
    expected_var = [np.sum((s[panel.obs_firm == i] - s[panel.obs_firm == i].mean()) ** 2) for i in range(panel.n_firms)]
    np.testing.assert_allclose(s_var, expected_var, rtol=1e-10)

    # leaving out the year effects or using a wrong beta breaks the equality
    wrong, _ = se.naive_alpha_hat(panel, BETA + [0.0, 0.2, 0.0, 0.0], HALFLIFE, year_effect=v)
    assert np.max(np.abs(wrong - alpha)) > 1e-3


def test_alpha_hat_noise_has_the_appendix_variance(counties):
    base = hand_panel(counties)
    s = spillover_by_hand(base, HALFLIFE)
    z = np.column_stack([base.k, base.n, base.r, base.zero_rd])
    rng = np.random.default_rng(0)
    sigma_w = 0.3
    draws = []
    for _ in range(400):
        q = z @ BETA + 0.5 * s + rng.normal(0, sigma_w, base.n_obs)
        panel = PreparedPanel(**{**base.__dict__, "sale": np.exp(q)})
        draws.append(se.naive_alpha_hat(panel, BETA, HALFLIFE)[0])
    draws = np.array(draws)
    _, s_var = se.naive_alpha_hat(base, BETA, HALFLIFE)
    ratio = draws.var(axis=0) / (sigma_w**2 / s_var)
    assert np.all(np.abs(ratio - 1) < 0.35), ratio  # 400 draws: sd of a variance ratio ~ 0.07


def test_constant_spillover_gives_nan(counties):
    panel = hand_panel(counties)
    s = np.ones(panel.n_obs)
    s[panel.obs_firm == 2] = 4.2  # no within-firm variation for firm 2
    s[panel.obs_firm == 3] = np.arange((panel.obs_firm == 3).sum())
    alpha_hat, s_var = se.within_slope(panel.q, s, panel.obs_firm, panel.n_firms)
    assert np.isnan(alpha_hat[2]) and s_var[2] == 0.0
    assert np.isfinite(alpha_hat[3]) and s_var[3] > 0


def test_spillover_at_firm_county_and_top_mask(counties):
    panel = hand_panel(counties)
    s_firm = se.spillover_at_firm_county(panel, HALFLIFE)
    lam = np.log(2) / HALFLIFE
    c = panel.counties
    for i in range(panel.n_firms):
        # Sbar_l: the field of the firm's county in every sample year (also years it holds no
        # firm), averaged over the years
        li = panel.firm_county[i]
        field = np.zeros(len(panel.years))
        for p in range(panel.n_obs):
            m = panel.obs_county[p]
            d = great_circle_km(c.lat[li], c.lon[li], c.lat[m], c.lon[m])
            field[panel.obs_year[p]] += np.exp(-lam * d) * panel.rd_stock[p] / 1000.0
        assert s_firm[i] == pytest.approx(field.mean(), rel=1e-10)

    mask = se.top_spillover_firms(panel, s_firm, k=2)
    county_s = {c: s_firm[panel.firm_county == c][0] for c in np.unique(panel.firm_county)}
    top2 = sorted(county_s, key=county_s.get, reverse=True)[:2]
    np.testing.assert_array_equal(mask, np.isin(panel.firm_county, top2))
    assert mask.sum() == 4  # two counties of two firms each
    assert se.top_spillover_firms(panel, s_firm, k=20).all()  # only 6 counties occupied


def test_table4_reproduces_statsmodels():
    import statsmodels.api as sm
    from statsmodels.regression.quantile_regression import QuantReg

    rng = np.random.default_rng(3)
    n = 300
    s = rng.gamma(1.0, 5.0, n)
    alpha_hat = 0.02 * s + rng.standard_t(3, n) * 0.5
    alpha_hat[[5, 17]] = np.nan
    top = s > np.quantile(s, 0.6)
    table = se.table4(alpha_hat, s, top, n_bootstrap=60, seed=1)
    assert list(table.columns) == list(se.TABLE4_COLUMNS)
    assert list(table.index) == list(se.TABLE4_ROWS)

    ok = np.isfinite(alpha_hat)
    for column, use in (("all", ok), ("top-20", ok & top)):
        X = sm.add_constant(s[use])
        med = QuantReg(alpha_hat[use], X).fit(q=0.5)
        rob = sm.RLM(alpha_hat[use], X, M=sm.robust.norms.HuberT()).fit()
        assert table.loc["slope", f"Median, {column}"] == pytest.approx(med.params[1])
        assert table.loc["t (regular)", f"Median, {column}"] == pytest.approx(med.tvalues[1])
        assert table.loc["slope", f"Robust, {column}"] == pytest.approx(rob.params[1])
        assert table.loc["t (regular)", f"Robust, {column}"] == pytest.approx(rob.tvalues[1])
        assert table.loc["firms", f"Median, {column}"] == use.sum()
    assert table.loc["firms", "Median, all"] == n - 2
    boot = table.loc["t (bootstrap)"]
    assert np.all(np.isfinite(boot)) and np.all(boot > 0)
    # same seed, same bootstrap; no bootstrap requested -> nan
    again = se.table4(alpha_hat, s, top, n_bootstrap=60, seed=1)
    pd.testing.assert_frame_equal(table, again)
    assert se.table4(alpha_hat, s, top).loc["t (bootstrap)"].isna().all()


def test_table4_finds_sorting_and_its_absence():
    rng = np.random.default_rng(4)
    s = rng.gamma(1.0, 5.0, 500)
    top = s > np.quantile(s, 0.6)
    sorted_firms = se.table4(0.05 * s + rng.normal(0, 0.3, 500), s, top)
    unsorted = se.table4(rng.normal(0, 0.3, 500), s, top)
    assert (sorted_firms.loc["t (regular)"] > 4).all()
    assert (unsorted.loc["t (regular)"].abs() < 4).all()


def test_bad_arguments_are_refused(counties):
    panel = hand_panel(counties)
    with pytest.raises(ValueError, match="beta"):
        se.naive_alpha_hat(panel, [0.1, 0.2], HALFLIFE)
    with pytest.raises(ValueError, match="year_effect"):
        se.naive_alpha_hat(panel, BETA, HALFLIFE, year_effect=[0.0])
    with pytest.raises(ValueError, match="same length"):
        se.table4(np.zeros(3), np.zeros(4), np.zeros(3, bool))


def test_robust_slope_survives_extreme_alpha_hat():
    """Firms with almost no spillover variation get enormous alpha_hat (eq. 12's nu_i); the robust
    regression must not be dragged off by them (statsmodels' default OLS start is)."""
    rng = np.random.default_rng(5)
    s = rng.uniform(0.01, 5.0, 300)
    alpha_hat = 0.03 * s + rng.normal(0, 0.3, 300)
    low = np.argsort(s)[:6]
    alpha_hat[low] = [1e14, -3e4, 2e4, 9e3, -5e3, 1e3]
    table = se.table4(alpha_hat, s, s > 2.5)
    assert table.loc["slope", "Robust, all"] == pytest.approx(0.03, abs=0.03)
    assert table.loc["slope", "Median, all"] == pytest.approx(0.03, abs=0.04)
