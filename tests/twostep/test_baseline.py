"""The paper's two-step estimator (bayes_spill.twostep: design, gmm, location, bootstrap, results, estimator): the GMM projection of eq. (9), the GMM
and NLS profiles, alpha_hat and sigma_w^2 of Appendix 7.4, the BLP contraction's fixed point, the
location likelihood with the measurement error convolved in, maximum likelihood on a synthetic
location dataset, and `bayes-spill baseline` end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bayes_spill.model.simulate import SimulationSettings, simulate_industry
from bayes_spill.twostep import design as design_module
from bayes_spill.twostep import estimator, gmm, location, results
from bayes_spill.twostep import table4 as se

# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel():
    # low noise so that the GMM pins beta and the half-life on a small industry
    settings = SimulationSettings(
        n_firms=150, first_year=1990, last_year=2006, sigma_w=0.05, county_shift=(("06085", 2.0), ("25017", 1.5))
    )
    return simulate_industry(settings, seed=11)


@pytest.fixture(scope="module")
def design(panel):
    return design_module.design(panel)


SETTINGS = design_module.BaselineSettings(n_bootstrap=0, grid_points=25)


# ---- step 1: the projection, GMM, alpha_hat, sigma_w^2 --------------------------------------


def test_projection_annihilates_x():
    rng = np.random.default_rng(0)
    for t in (3, 5, 9):
        s = rng.gamma(2.0, 1.0, t)
        m = design_module.projection_matrix(s)
        x = np.column_stack([s, np.ones(t)])
        np.testing.assert_allclose(m @ x, 0.0, atol=1e-12)
        np.testing.assert_allclose(m @ m, m, atol=1e-12)  # idempotent
        np.testing.assert_allclose(m, m.T, atol=1e-12)  # symmetric
        assert np.isclose(np.trace(m), t - 2)  # rank T - 2 (Appendix 7.4)


def test_vectorised_projection_equals_textbook_matrix(panel, design):
    s = design_module.firm_spillover(design, 59.0)
    proj = design_module.projection(design, s)
    rng = np.random.default_rng(1)
    assert (proj.rank == 2).mean() > 0.9 and (proj.rank == 1).any()  # both cases are exercised
    v = rng.normal(size=panel.n_obs)
    v_dm = v - (np.bincount(design.obs_firm, weights=v) / design.years_per_firm)[design.obs_firm]
    mv = proj.apply(design, v_dm)
    for i in [*rng.choice(panel.n_firms, 20, replace=False), *np.flatnonzero(proj.rank == 1)]:
        rows = panel.obs_firm == i
        if proj.rank[i] == 2:
            expected = design_module.projection_matrix(s[rows]) @ v[rows]
        else:  # S at rounding level (a remote county): x_i has rank 1 and M_i is the demeaning
            expected = v[rows] - v[rows].mean()
        np.testing.assert_allclose(mv[rows], expected, atol=1e-9)
    # M_i x_i = 0 through the vectorised path (the constant is removed by the demeaning)
    x_dm = s - (np.bincount(design.obs_firm, weights=s) / design.years_per_firm)[design.obs_firm]
    np.testing.assert_allclose(proj.apply(design, x_dm), 0.0, atol=1e-10)


def test_gmm_recovers_beta_and_halflife(panel, design):
    fit, grid, values = gmm.gmm(design, SETTINGS)
    truth = panel.truth["parameters"]
    assert abs(fit.halflife_km - truth["halflife_km"]) / truth["halflife_km"] < 0.25, fit.halflife_km
    np.testing.assert_allclose(fit.beta[:3], [truth["beta_k"], truth["beta_l"], truth["beta_r"]], atol=0.03)
    # the zero-R&D dummy is constant within every simulated firm: not identified under firm effects
    assert not fit.identified[3]
    assert fit.objective <= values.min() + 1e-9  # the refinement does not lose the grid's minimum
    assert fit.firms_used == panel.n_firms  # every firm has T_i >= 3


def test_alpha_hat_by_product_equals_sorting_evidence(panel, design):
    fit = gmm.gmm_at(design, 70.0)
    alpha_hat, s_variation = se.naive_alpha_hat(
        panel, np.where(fit.identified[:4], fit.beta, 0.0), 70.0, year_effect=fit.year_effect()
    )
    np.testing.assert_allclose(fit.alpha_hat, alpha_hat, rtol=1e-7, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(fit.s_variation, s_variation, rtol=1e-10)


def test_sigma_w2_is_ssr_over_t_minus_2(panel, design):
    fit = gmm.gmm_at(design, panel.truth["parameters"]["halflife_km"])
    # T_i - 2 degrees of freedom; T_i - 1 for a firm whose S does not vary (x_i of rank 1)
    np.testing.assert_array_equal(fit.dof, panel.years_per_firm - np.where(np.isnan(fit.alpha_hat), 1, 2))
    expected = fit.ssr.sum() / fit.dof.sum()
    assert math.isclose(gmm.sigma_w2(fit), expected, rel_tol=1e-12)
    assert abs(math.sqrt(gmm.sigma_w2(fit)) - panel.truth["parameters"]["sigma_w"]) < 0.01


def test_short_firms_drop_out_of_the_gmm(panel):
    from bayes_spill.data.panel import build_panel

    assert np.allclose(design_module.projection_matrix(np.array([0.3, 0.5])), 0.0, atol=1e-12)  # T = 2: M_i = 0
    frame = panel.to_frame()
    first = frame["gvkey"] == panel.firms[0]
    keep = ~first | (frame["fyear"] < frame.loc[first, "fyear"].min() + 2)
    short = build_panel(frame[keep], panel.counties, source="short")
    d = design_module.design(short)
    fit = gmm.gmm_at(d, 59.0)
    assert short.years_per_firm[0] == 2
    assert fit.dof[0] == 0 and fit.ssr[0] == 0.0
    assert fit.firms_used == short.n_firms - 1
    assert math.isclose(gmm.sigma_w2(fit), fit.ssr[1:].sum() / fit.dof[1:].sum(), rel_tol=1e-12)


def test_nls_spec1_profile(design):
    fit, grid, values = gmm.nls_spec1(design, SETTINGS)
    lo, hi = SETTINGS.halflife_bounds_km
    assert lo <= fit.halflife_km <= hi
    assert fit.ssr <= values.min() + 1e-9
    assert np.isfinite(fit.alpha)


def test_bootstrap_weights_equal_duplicated_firms(panel, design):
    """Integer firm weights give the same GMM as a panel with those firms repeated."""
    weights = np.ones(panel.n_firms)
    weights[:5] = 3.0
    a = gmm.gmm_at(design, 80.0, weights)
    idx = np.concatenate([np.repeat(np.arange(5), 3), np.arange(5, panel.n_firms)])
    rows = np.concatenate([np.flatnonzero(panel.obs_firm == i) for i in idx])
    dup = design_module.Design(
        spill=design_module.kernel.SpilloverInputs(
            **{
                **design.spill.__dict__,
                "obs_receiver": design.spill.obs_receiver[rows],
                "obs_year": design.spill.obs_year[rows],
                "own_stock_bil": design.spill.own_stock_bil[rows],
            }
        ),
        transform=design.transform,
        obs_firm=np.repeat(np.arange(len(idx)), panel.years_per_firm[idx]),
        years_per_firm=panel.years_per_firm[idx].astype(float),
        q_dm=design.q_dm[rows],
        z_dm=design.z_dm[rows],
        z_names=design.z_names,
        years=design.years,
        firm_choice=design.firm_choice[idx],
        n_firms=len(idx),
    )
    c = gmm.gmm_at(dup, 80.0)
    np.testing.assert_allclose(a.coef, c.coef, rtol=1e-8, atol=1e-10)
    assert math.isclose(a.objective, c.objective, rel_tol=1e-9)


# ---- step 2: the contraction and the location likelihood ------------------------------------


def _small_choice(seed=0, L=5):
    rng = np.random.default_rng(seed)
    sbar = np.linspace(0.2, 2.5, L)
    a_true = np.concatenate([[0.0], rng.normal(0, 0.7, L - 1)])
    return sbar, a_true


def test_contraction_fixed_point_on_a_small_example():
    sbar, a_true = _small_choice()
    quad = location.normal_quadrature(40)
    gamma, mu, sigma = 0.8, 0.3, 0.9
    shares = location.predicted_shares(a_true, sbar, gamma, mu, sigma, quad)
    assert math.isclose(shares.sum(), 1.0, rel_tol=1e-12)
    a, iterations = location.blp_contraction(np.log(shares), sbar, gamma, mu, sigma, quad, a0=np.zeros(len(sbar)))
    np.testing.assert_allclose(a, a_true, atol=1e-9)  # unique up to a constant, a_1 = 0
    assert a[0] == 0.0 and iterations > 1
    h = location.blp_map(a, np.log(shares), sbar, gamma, mu, sigma, quad)
    np.testing.assert_allclose(h - h[0], a, atol=1e-10)  # a = H(a)
    np.testing.assert_allclose(location.predicted_shares(a, sbar, gamma, mu, sigma, quad), shares, atol=1e-12)


def test_predicted_shares_match_numerical_integration():
    sbar, a = _small_choice(1, L=4)
    gamma, mu, sigma = 1.3, -0.2, 0.6
    quad = location.normal_quadrature(40)

    def share(l):
        def f(x):
            logits = a + gamma * x * sbar
            return np.exp(logits[l] - np.log(np.exp(logits).sum())) * stats.norm.pdf(x, mu, sigma)

        return integrate.quad(f, mu - 10 * sigma, mu + 10 * sigma, epsabs=1e-13)[0]

    expected = np.array([share(l) for l in range(4)])
    np.testing.assert_allclose(location.predicted_shares(a, sbar, gamma, mu, sigma, quad), expected, atol=1e-10)


def test_firm_likelihood_convolves_the_measurement_error():
    sbar, a = _small_choice(2, L=4)
    gamma, mu, sigma = 0.9, 0.1, 0.7
    alpha_hat = np.array([0.4, -1.0, 2.5, np.nan])
    var_nu = np.array([0.05, 1.5, 0.3, np.inf])
    choice = np.array([3, 0, 2, 1])
    ld = location.LocationData(alpha_hat, var_nu, choice, sbar, np.log(np.full(4, 0.25)), np.ones(4))
    quad = location.normal_quadrature(24)
    got = location.firm_location_loglik(ld, a, mu, sigma, gamma, quad)
    exact = location.firm_location_loglik(ld, a, mu, sigma, gamma, quad, exact=True)
    np.testing.assert_allclose(got, exact, atol=1e-9)  # interpolated denominator

    def brute(i):
        def f(x):
            logits = a + gamma * x * sbar
            p = np.exp(logits[choice[i]] - np.log(np.exp(logits).sum()))
            meas = stats.norm.pdf(alpha_hat[i], x, math.sqrt(var_nu[i])) if np.isfinite(var_nu[i]) else 1.0
            return p * meas * stats.norm.pdf(x, mu, sigma)

        return math.log(integrate.quad(f, mu - 12 * sigma, mu + 12 * sigma, epsabs=1e-14, limit=200)[0])

    np.testing.assert_allclose(got, [brute(i) for i in range(4)], atol=1e-7)


def _synthetic_location(seed, n=2500, L=8, mu=0.2, sigma=0.7, gamma=1.0):
    rng = np.random.default_rng(seed)
    sbar = np.linspace(0.1, 3.0, L)
    a = rng.normal(0.0, 0.5, L)
    alpha = rng.normal(mu, sigma, n)
    logits = a[None, :] + gamma * alpha[:, None] * sbar[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    choice = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    var_nu = rng.uniform(0.05, 0.5, n)
    alpha_hat = alpha + rng.normal(0.0, np.sqrt(var_nu))
    return location.location_data(alpha_hat, 1.0 / var_nu, 1.0, choice, sbar)


def test_location_ml_recovers_gamma_and_the_alpha_distribution():
    ld = _synthetic_location(0)
    fit = location.location_ml(ld, SETTINGS)
    assert abs(fit.gamma - 1.0) < 0.2, fit
    assert abs(fit.mu_alpha - 0.2) < 0.1, fit
    assert abs(fit.sigma_alpha - 0.7) < 0.1, fit
    # the fitted county effects reproduce the observed shares (the contraction holds at the optimum)
    quad = location.normal_quadrature(SETTINGS.quadrature_nodes)
    shares = location.predicted_shares(fit.county_effect, ld.sbar, fit.gamma, fit.mu_alpha, fit.sigma_alpha, quad)
    np.testing.assert_allclose(np.log(shares), ld.log_shares, atol=1e-9)


def test_location_data_drops_counties_without_firms():
    ld = location.location_data(
        np.array([0.1, 0.2, 0.3]), np.array([1.0, 1.0, 0.0]), 0.5, np.array([0, 2, 2]), np.array([1.0, 2.0, 3.0])
    )
    np.testing.assert_allclose(ld.sbar, [1.0, 3.0])
    np.testing.assert_array_equal(ld.choice, [0, 1, 1])
    assert np.isinf(ld.var_nu[2])  # no variation: no alpha_hat information
    np.testing.assert_allclose(np.exp(ld.log_shares), [1 / 3, 2 / 3])


# ---- end to end -----------------------------------------------------------------------------


def test_two_step_end_to_end_with_a_small_bootstrap(panel):
    result = estimator.two_step(
        panel, settings=design_module.BaselineSettings(n_bootstrap=3, workers=1, grid_points=21), table4_bootstrap=0
    )
    assert len(result.draws) == 3 and result.failed_replicates == 0
    assert result.firms_dropped_short == 0
    for name in ("beta_k", "beta_l", "beta_r", "halflife_km", "gamma", "mu_alpha", "sigma_alpha2", "spec1_halflife_km"):
        assert np.isfinite(result.estimates[name]), name
    assert np.isnan(result.estimates["beta_zero_rd"])  # not identified with firm effects
    text = results.report(result)
    for piece in ("Table 3", "Table 4", "Table 5", "half-life", "gamma", "truth", "Median, all"):
        assert piece in text, piece
    assert list(result.table4.columns) == ["Median, all", "Robust, all", "Median, top-20", "Robust, top-20"]


def test_cli_baseline_on_a_simulated_csv(panel, tmp_path, capsys):
    from bayes_spill.cli.main import main
    from bayes_spill.model.simulate import write_simulation

    csv_path, _ = write_simulation(panel, tmp_path / "sim")
    code = main(
        ["baseline", "--data", str(csv_path), "--bootstrap", "0", "--no-progress", "--out", str(tmp_path / "out")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Table 3" in out and "Table 5" in out and "truth" in out  # truth.json beside the CSV is shown
    assert (tmp_path / "out" / "baseline.json").is_file()
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_cli_baseline_rejects_a_bad_interval(tmp_path, capsys):
    from bayes_spill.cli.main import main

    code = main(["baseline", "--bootstrap", "0", "--min-halflife-km", "100", "--max-halflife-km", "10"])
    assert code == 2
    assert "halflife_bounds_km" in capsys.readouterr().err


# ---- statistical: recovery with bootstrap intervals on a paper-scale industry ----------------


@pytest.mark.slow
def test_two_step_recovers_betas_and_halflife_at_paper_scale():
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS

    panel = simulate_industry(SOFTWARE_SETTINGS, seed=4242)
    result = estimator.two_step(
        panel, settings=design_module.BaselineSettings(n_bootstrap=49, workers=2, seed=1), table4_bootstrap=0
    )
    summ = result.summary()
    checked = ["beta_k", "beta_l", "beta_r", "halflife_km", "sigma_w"]
    misses = [n for n in checked if not summ.loc[n, "covered"]]
    assert len(misses) <= 1, f"truth outside the 95% bootstrap interval for {misses}:\n{summ.loc[checked]}"
