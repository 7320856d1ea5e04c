"""alpha_i integrated out (integrated.py, model.integrate_alpha): the closed-form production block
and the Gauss-Hermite location block against numerical integration of the latent model over
alpha_i, numpy against PyTensor, a finite gradient that is the gradient of the log-density, and
the alpha_i drawn back after sampling against their conditional posterior."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import tiny_fits
from modes import FAST, logp_and_gradient, value_function  # noqa: E402  (Python mode, no fusion)
from scipy import integrate, stats
from tiny_fits import tiny_fit

import bayes_spill
from bayes_spill.config import load_config, parse_config
from bayes_spill.errors import ConfigError
from bayes_spill.model import integrated, within
from bayes_spill.model.likelihood import build_model, model_data
from bayes_spill.model.simulate import SimulationSettings, simulate_industry


@pytest.fixture(scope="module")
def panel():
    return simulate_industry(SimulationSettings(n_firms=60, gamma=0.5), seed=5)


def _integral(log_f, lo: float, hi: float) -> float:
    """log of the integral of exp(log_f) over [lo, hi], scaled by its value at the mode region."""
    grid = np.linspace(lo, hi, 401)
    top = max(log_f(a) for a in grid)
    value, _ = integrate.quad(
        lambda a: math.exp(log_f(a) - top), lo, hi, points=list(grid[::40]), limit=400, epsabs=0, epsrel=1e-12
    )
    return top + math.log(value)


def _firm_production(panel, resid, spillover, firm: int, sigma_w: float):
    """log p(q_i | alpha) of the within-firm equation, as a function of alpha."""
    rows = panel.obs_firm == firm
    r, s = resid[rows] - resid[rows].mean(), spillover[rows] - spillover[rows].mean()
    dof = rows.sum() - 1.0
    return lambda a: (
        -0.5 * dof * math.log(2 * math.pi * sigma_w**2) - 0.5 * float(np.sum((r - a * s) ** 2)) / sigma_w**2
    )


def test_gauss_hermite_rule_integrates_against_the_standard_normal():
    x, w = integrated.gauss_hermite(16)
    z = math.sqrt(2.0) * x
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert w @ z**2 == pytest.approx(1.0, abs=1e-12) and w @ z**4 == pytest.approx(3.0, abs=1e-11)
    assert w @ np.exp(1.5 * z) == pytest.approx(math.exp(1.5**2 / 2), rel=1e-12)
    # the standard-normal form the two-step estimator and the equilibria read, and the model's nodes
    np.testing.assert_array_equal(integrated.normal_quadrature(16)[0], z)
    np.testing.assert_array_equal(integrated.normal_quadrature(16)[1], w)
    alpha, log_w = integrated.quadrature_alphas(np.array([0.5]), np.array([2.0]), 16)
    np.testing.assert_array_equal(log_w, np.log(w))
    np.testing.assert_allclose(alpha[0], 0.5 + 2.0 * z, rtol=1e-15)


@pytest.mark.parametrize("sigma_alpha", [0.64, 3.0, 1e-7])
def test_conjugate_block_is_the_integral_over_alpha(panel, sigma_alpha):
    """m_i, s_i and log p(q_i | theta) against quadrature of p(q_i | alpha) Normal(alpha; mu, sigma_a),
    including sigma_a -> 0, where the textbook form cancels two terms of order mu^2 / sigma_a^2."""
    rng = np.random.default_rng(1)
    resid, spillover = rng.normal(size=panel.n_obs), rng.gamma(2.0, 1.0, size=panel.n_obs)
    sigma_w, mu = 0.4, 0.3
    mean, sd, log_marginal = integrated.conjugate_alpha(
        resid, spillover, panel.obs_firm, panel.years_per_firm.astype(float), sigma_w, mu, sigma_alpha
    )
    for firm in range(0, panel.n_firms, 7):
        production = _firm_production(panel, resid, spillover, firm, sigma_w)
        if sigma_alpha < 1e-3:
            assert log_marginal[firm] == pytest.approx(production(mu), rel=1e-9)
            continue
        prior = stats.norm(mu, sigma_alpha)
        lo, hi = mean[firm] - 12 * sd[firm], mean[firm] + 12 * sd[firm]
        log_joint = lambda a: production(a) + prior.logpdf(a)  # noqa: E731
        log_z = _integral(log_joint, lo, hi)
        numeric_mean = integrate.quad(lambda a: a * math.exp(log_joint(a) - log_z), lo, hi, limit=400)[0]
        numeric_var = integrate.quad(
            lambda a: (a - numeric_mean) ** 2 * math.exp(log_joint(a) - log_z), lo, hi, limit=400
        )[0]
        assert log_marginal[firm] == pytest.approx(log_z, abs=1e-8), f"firm {firm}"
        assert mean[firm] == pytest.approx(numeric_mean, abs=1e-7 * (1 + abs(numeric_mean)))
        assert sd[firm] == pytest.approx(math.sqrt(numeric_var), rel=1e-6)


def test_conjugate_block_numpy_and_pytensor_agree(panel):
    rng = np.random.default_rng(2)
    resid, spillover = rng.normal(size=panel.n_obs), rng.gamma(2.0, 1.0, size=panel.n_obs)
    years = panel.years_per_firm.astype(float)
    r, s, sw, mu, sa = pt.dvector(), pt.dvector(), pt.dscalar(), pt.dscalar(), pt.dscalar()
    fn = pytensor.function(
        [r, s, sw, mu, sa], list(integrated.conjugate_alpha(r, s, panel.obs_firm, years, sw, mu, sa, pt)), mode=FAST
    )
    for args in [(0.4, 0.3, 0.64), (1.3, -0.2, 0.05), (0.05, 2.0, 5.0)]:
        expected = integrated.conjugate_alpha(resid, spillover, panel.obs_firm, years, *args)
        for got, want in zip(fn(resid, spillover, *args), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# strong sorting, so that the location term bends over alpha_i's spread: 3 nodes miss by 1e-3 here
GAMMA = 3.0


def _integrated_config(evaluation: str = "interpolated"):
    config = load_config("models/integrated_alpha.toml")
    return replace(config, model=replace(config.model, evaluation=evaluation))


def _point(model, seed: int):
    rng = np.random.default_rng(seed)
    point = dict(model.initial_point())
    point.update(
        halflife_km_log__=np.array(math.log(59.0)), gamma=np.array(GAMMA), sigma_alpha_log__=np.array(math.log(0.64))
    )
    point["mu_alpha"] = np.array(0.2)
    point["county_effect_raw"] = rng.normal(size=point["county_effect_raw"].shape)
    point["production_z"] = point["production_z"] + rng.normal(scale=0.5, size=point["production_z"].shape)
    return point


@pytest.mark.parametrize("evaluation", ["exact", "interpolated"])
def test_integrated_model_is_the_latent_model_integrated_over_alpha(panel, evaluation):
    """Each firm's log-likelihood with alpha integrated out equals, to 1e-6, the numerical integral
    over alpha_i of the latent model's production x location likelihood x Normal(mu, sigma_a)."""
    config = _integrated_config(evaluation)
    model = build_model(panel, config)
    point = _point(model, seed=4)
    names = [
        "firm_loglik",
        "beta_k",
        "beta_l",
        "beta_r",
        "beta_zero_rd",
        "year_effect",
        "sigma_w",
        "halflife_km",
        "county_effect",
        "sigma_alpha",
    ]
    values = dict(zip(names, value_function(model, [model[n] for n in names])(point)))
    data = model_data(panel, config)
    spec = config.model
    h = float(values["halflife_km"])
    s_it = spec.spillover_transform.firm_year(data.spill, h, np)
    sbar = spec.spillover_transform.choice(data.spill, h, np)
    beta = np.array([values[n] for n in ("beta_k", "beta_l", "beta_r", "beta_zero_rd")])
    resid = data.q - data.inputs @ beta - values["year_effect"][panel.obs_year]
    a, gamma, mu, sa = values["county_effect"], GAMMA, 0.2, float(values["sigma_alpha"])
    for firm in range(0, panel.n_firms, 6):
        production = _firm_production(panel, resid, s_it, firm, float(values["sigma_w"]))
        chosen = data.spill.firm_choice[firm]

        def log_joint(alpha):
            logits = a + gamma * alpha * sbar
            location = logits[chosen] - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
            return production(alpha) + location + stats.norm.logpdf(alpha, mu, sa)

        expected = _integral(log_joint, mu - 12 * sa, mu + 12 * sa)
        got = float(values["firm_loglik"][firm])
        assert got == pytest.approx(expected, abs=1e-6), f"{evaluation}, firm {firm}: {got!r} against {expected!r}"


def test_integrated_gradient_is_finite_and_the_gradient_of_the_log_density(panel):
    from pymc.blocking import DictToArrayBijection

    model = build_model(panel, _integrated_config())
    assert "alpha_raw" not in model.named_vars and "alpha" not in model.named_vars
    at = logp_and_gradient(model)
    point = _point(model, seed=6)
    x = DictToArrayBijection.map(point)
    logp, grad = at(point)
    assert np.all(np.isfinite(grad)) and np.isfinite(logp)
    rng = np.random.default_rng(8)
    for _ in range(4):
        direction = rng.normal(size=x.data.size)
        step = 1e-5
        up = DictToArrayBijection.rmap(x._replace(data=x.data + step * direction))
        down = DictToArrayBijection.rmap(x._replace(data=x.data - step * direction))
        assert (at(up)[0] - at(down)[0]) / (2 * step) == pytest.approx(grad @ direction, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("per_firm", [False, True])
def test_conditional_density_and_cdf_match_quadrature(per_firm):
    """The one density of alpha given the chosen county (conditional_log_density, and the CDF from
    it) against scipy quadrature of Normal(alpha; mu, sigma) x P(l | alpha), normalised: for one
    population (the shared grid, exact log-sum-exp: checks and Table 6) and per firm (the cubic
    Hermite table: alpha drawn back), where the logit pulls the mass well off the normal's."""
    rng = np.random.default_rng(11)
    a, sbar = rng.normal(size=30), rng.gamma(1.0, 2.0, size=30)
    gamma, mu, sigma = 1.5, -0.2, 0.7
    rows = np.array([int(np.argmax(sbar)), int(np.argmin(sbar)), 4])
    z = np.linspace(-8.0, 8.0, 1601)
    if per_firm:
        mean, sd = np.full(len(rows), mu), np.full(len(rows), sigma)
    else:
        mean, sd = mu, sigma
    alpha, log_density = integrated.conditional_log_density(mean, sd, gamma, a, sbar, rows, z)
    _, cdf = integrated.conditional_cdf(mean, sd, gamma, a, sbar, rows, z)
    alpha = np.broadcast_to(alpha, log_density.shape)
    for r, l in enumerate(rows):

        def log_f(x, l=l):
            logits = a + gamma * x * sbar
            return (
                stats.norm.logpdf(x, mu, sigma)
                + logits[l]
                - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
            )

        lo, hi = mu - 8 * sigma, mu + 8 * sigma
        log_z = _integral(log_f, lo, hi)
        at = alpha[r, ::100]
        exact = np.array([log_f(x) - log_z for x in at])
        density = np.exp(log_density[r] - log_density[r].max())
        normalised = np.log(density[::100] / (np.sum(0.5 * (density[1:] + density[:-1])) * (alpha[r, 1] - alpha[r, 0])))
        shown = exact > -20  # where the density is not negligible
        np.testing.assert_allclose(normalised[shown], exact[shown], rtol=0, atol=1e-5)
        quad_cdf = [integrate.quad(lambda t: math.exp(log_f(t) - log_z), lo, x, epsabs=1e-12)[0] for x in at]
        np.testing.assert_allclose(cdf[r, ::100], quad_cdf, rtol=0, atol=1e-5)
        if r == 0:  # the county with the largest Sbar: the logit pulls alpha well above mu
            mean = integrate.quad(lambda t: t * math.exp(log_f(t) - log_z), lo, hi)[0]
            assert mean - mu > 0.2, "the test needs a logit that moves alpha"


@pytest.mark.parametrize("rounds", [integrated.REJECTION_ROUNDS, 0])
def test_drawn_alpha_follow_their_conditional_posterior(monkeypatch, rounds):
    """Draws for 20,000 copies of one firm against the CDF of Normal(m, s) x P(l | alpha) (KS), where
    the logit pulls alpha well away from the production block's normal: by rejection under the
    tangent envelope alone (no firm left to the grid), and by the grid fallback alone (0 rounds)."""
    rng = np.random.default_rng(5)
    a, sbar = rng.normal(size=40), rng.gamma(1.0, 2.0, size=40)
    choice = int(np.argmax(sbar))
    gamma, m, s = 2.0, 0.1, 0.6
    n = 20_000
    on_grid = []
    grid_draw = integrated._draw_alpha_on_grid

    def spy(rng, mean, *args):
        on_grid.append(len(mean))
        return grid_draw(rng, mean, *args)

    monkeypatch.setattr(integrated, "_draw_alpha_on_grid", spy)
    monkeypatch.setattr(integrated, "REJECTION_ROUNDS", rounds)
    draws = integrated.draw_alpha(rng, np.full(n, m), np.full(n, s), gamma, a, sbar, np.full(n, choice))
    assert sum(on_grid) == (0 if rounds else n), on_grid

    def log_density(alpha):
        logits = a + gamma * alpha * sbar
        return (
            stats.norm.logpdf(alpha, m, s)
            + logits[choice]
            - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))
        )

    lo, hi = m - 8 * s, m + 8 * s
    log_z = _integral(log_density, lo, hi)
    mean = integrate.quad(lambda x: x * math.exp(log_density(x) - log_z), lo, hi)[0]
    assert abs(mean - m) > 0.2, "the test needs a logit that moves alpha"

    grid = np.linspace(lo, hi, 801)
    # the CDF on the grid: the integrals over consecutive cells, summed (one short quadrature per
    # cell instead of one from lo to each node)
    cells = [integrate.quad(lambda t: math.exp(log_density(t) - log_z), u, v)[0] for u, v in zip(grid[:-1], grid[1:])]
    table = np.concatenate([[0.0], np.cumsum(cells)])
    result = stats.kstest(draws, lambda x: np.interp(x, grid, table))
    assert result.pvalue > 1e-3, f"KS p = {result.pvalue:.2g}; draws mean {draws.mean():.4f} against {mean:.4f}"


def test_integrate_alpha_settings_are_checked():
    text = open("models/integrated_alpha.toml").read()
    with pytest.raises(ConfigError, match="quadrature_nodes"):
        parse_config(text.replace("quadrature_nodes = 16", "quadrature_nodes = 1"))
    homogeneous = open("models/homogeneous.toml").read().replace("[model]\n", "[model]\nintegrate_alpha = true\n")
    with pytest.raises(ConfigError, match="integrate_alpha"):
        parse_config(homogeneous)


def test_fit_with_alpha_integrated_out_has_alpha_draws_for_the_checks():
    tree = bayes_spill.load(tiny_fit("integrated_alpha")).tree
    post = tree["posterior"]
    assert "alpha_raw" not in post and set(post["alpha"].dims) == {"chain", "draw", "firm"}
    assert np.all(np.isfinite(post["alpha"].values))
    # each firm's draws spread like its conditional posterior, not collapsed on its mean
    spread = post["alpha"].std(("chain", "draw")).values
    assert np.all(spread > 0.2 * post["alpha_production_sd"].mean(("chain", "draw")).values)
    assert tree["log_likelihood"]["firm_loglik"].sizes["firm"] == post.sizes["firm"]
    from bayes_spill.checking import ppc as checks

    result = checks.run_ppc(tree, n_draws=20, seed=1)
    assert len(result.table()) > 0


def test_within_firm_numpy_equals_pytensor_and_removes_firm_means():
    rng = np.random.default_rng(4)
    obs_firm = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    years = np.bincount(obs_firm).astype(float)
    values = rng.normal(size=(len(obs_firm), 3))
    demeaned = within.within_firm(values, obs_firm, years)
    np.testing.assert_allclose(within.segment_sum(demeaned, obs_firm, 3), 0.0, atol=1e-12)
    np.testing.assert_allclose(demeaned[:, 1], within.within_firm(values[:, 1], obs_firm, years), atol=1e-15)
    x = pt.vector("x")
    symbolic = pytensor.function([x], within.within_firm(x, obs_firm, years, pt), mode=FAST)
    np.testing.assert_allclose(symbolic(values[:, 2]), demeaned[:, 2], atol=1e-12)


def test_within_firm_sums_bit_for_bit_along_any_axis_and_unsorted_rows():
    """The sparse path of segment_sum adds each firm's rows in order, as np.add.at does, and the
    leading-axis form (one row per draw, as the checks use it) is the transposed one."""
    rng = np.random.default_rng(5)
    obs_firm = rng.permutation(np.repeat(np.arange(40), rng.integers(1, 12, 40)))
    values = rng.normal(size=(len(obs_firm), 7))
    by_add_at = np.zeros((40, 7))
    np.add.at(by_add_at, obs_firm, values)
    np.testing.assert_array_equal(within.segment_sum(values, obs_firm, 40), by_add_at)
    np.testing.assert_array_equal(within.segment_sum(values[:, 3], obs_firm, 40), by_add_at[:, 3])
    np.testing.assert_array_equal(within.segment_sum(values.T, obs_firm, 40, axis=-1), by_add_at.T)
    years = np.bincount(obs_firm, minlength=40).astype(float)
    np.testing.assert_array_equal(
        within.within_firm(values.T, obs_firm, years, axis=-1), within.within_firm(values, obs_firm, years).T
    )


def test_fit_prepares_the_data_and_the_halflife_table_once():
    """assemble and the alpha draws reuse the ModelData and half-life table the model was built on
    (counted while the shared tiny fit ran: tiny_fits.PREPARATIONS)."""
    tree = bayes_spill.load(tiny_fit("integrated_alpha")).tree
    assert tree["posterior"]["alpha"].sizes["draw"] == tiny_fits.DRAWS
    calls = tiny_fits.PREPARATIONS["integrated_alpha"]
    assert calls == {"model_data": 1, "table": 1}, calls


def test_jax_route_of_the_integrated_model_matches_its_exact_sums(panel):
    """The default formulation under JAX (fixed denominator bins, the direct sum selected for rows
    they cannot hold: the GPU route) against the same model with direct sums, value and gradient."""
    pytest.importorskip("jax")
    jax_model = build_model(panel, _integrated_config(), static_shapes=True)
    exact = build_model(panel, _integrated_config("exact"))
    at_jax, at_exact = logp_and_gradient(jax_model, mode="JAX"), logp_and_gradient(exact)
    for seed in (1, 2):
        point = _point(exact, seed)
        (a, g_jax), (b, g_exact) = at_jax(point), at_exact(point)
        assert abs(a - b) <= 1e-6, f"seed {seed}: JAX {a!r}, exact {b!r}"
        np.testing.assert_allclose(g_jax, g_exact, rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}")


def test_conditional_mode_and_the_envelope_at_the_edges():
    """The bisection finds the mode of Normal x logit (checked against scipy), s_i = 0 draws m_i,
    gamma = 0 draws the production block's normal, and the envelope lies above the target."""
    from scipy import optimize

    rng = np.random.default_rng(8)
    a, sbar = rng.normal(size=30), rng.gamma(1.0, 2.0, size=30)
    choice = np.array([0, 5, int(np.argmax(sbar))])
    mean, sd, gamma = np.array([0.3, -0.5, 0.1]), np.array([0.2, 0.7, 0.6]), 1.5

    def log_target(alpha, i):
        logits = a + gamma * alpha * sbar
        return (
            -0.5 * ((alpha - mean[i]) / sd[i]) ** 2
            + logits[choice[i]]
            - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        )

    modes, tables = integrated._conditional_modes(
        mean[None], sd[None], np.array([[gamma]]), a[None], sbar[None], sbar[choice][None]
    )
    mode, grid = modes[0], tables.grid[tables.start[0] : tables.start[0] + tables.size[0]]
    assert grid[0] <= np.min(gamma * mode) and np.max(gamma * mode) <= grid[-1]  # draw_alpha reuses it
    for i in range(3):
        best = optimize.minimize_scalar(lambda x: -log_target(x, i), bracket=(mean[i] - 3, mean[i] + 3)).x
        assert mode[i] == pytest.approx(best, abs=1e-5)
    zero = integrated.draw_alpha(rng, mean, np.zeros(3), gamma, a, sbar, choice)
    np.testing.assert_allclose(zero, mean, atol=1e-12)
    flat = integrated.draw_alpha(rng, np.zeros(20_000), np.full(20_000, 0.5), 0.0, a, sbar, np.zeros(20_000, dtype=int))
    assert stats.kstest(flat, stats.norm(0.0, 0.5).cdf).pvalue > 1e-3


def _draw_alpha_one_by_one(rng, mean, sd, gamma: float, county_effect, sbar, choice):
    """draw_alpha as it was written for one draw of theta at a time (the tables of
    denominator.log_denominator_table, the bisection of one draw): the reference that the draws
    for many draws at once must equal, number for number and from the same random stream."""
    from bayes_spill.model.denominator import (
        evaluate_log_denominator,
        evaluate_log_denominator_slope,
        log_denominator_table,
    )

    def table_for(c):
        return log_denominator_table(county_effect, sbar, float(c.min()), float(c.max()))

    sbar_chosen = sbar[choice]
    c_mean = gamma * mean
    end = mean + sd**2 * gamma * (sbar_chosen - evaluate_log_denominator_slope(table_for(c_mean), c_mean))
    lo, hi = np.minimum(mean, end), np.maximum(mean, end)
    var = np.maximum(sd**2, np.finfo(float).tiny)
    table = table_for(gamma * np.concatenate([lo, hi]))
    for _ in range(integrated.BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        rising = -(mid - mean) / var + gamma * (sbar_chosen - evaluate_log_denominator_slope(table, gamma * mid)) > 0
        lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
    tangent = 0.5 * (lo + hi)
    c_tangent = gamma * tangent
    log_p_tangent = c_tangent * sbar_chosen - evaluate_log_denominator(table, c_tangent)
    slope = gamma * (sbar_chosen - evaluate_log_denominator_slope(table, c_tangent))
    centre = mean + sd**2 * slope
    alpha = np.full(len(mean), np.nan)
    todo = np.arange(len(mean))
    for _ in range(integrated.REJECTION_ROUNDS):
        if todo.size == 0:
            return alpha
        proposal = centre[todo] + sd[todo] * rng.standard_normal(todo.size)
        c = gamma * proposal
        log_p = c * sbar_chosen[todo] - evaluate_log_denominator(table_for(c), c)
        gap = log_p - log_p_tangent[todo] - slope[todo] * (proposal - tangent[todo])
        accept = np.log(rng.uniform(size=todo.size)) <= gap
        alpha[todo[accept]] = proposal[accept]
        todo = todo[~accept]
    if todo.size:
        alpha[todo] = integrated._draw_alpha_on_grid(
            rng, mean[todo], sd[todo], gamma, county_effect, sbar, choice[todo]
        )
    return alpha


@pytest.mark.parametrize("rounds", [integrated.REJECTION_ROUNDS, 1])
def test_alpha_draws_for_many_draws_at_once_are_those_of_one_at_a_time(monkeypatch, rounds):
    """draw_alphas over blocks of draws (the bisection of several draws together, their tables end to
    end) gives the same numbers as one draw at a time, bit for bit and from the same random stream:
    with several blocks, the logit pulling alpha both ways (gamma of either sign and 0), firms with
    s_i = 0, and (one round) firms left to the grid."""
    rng = np.random.default_rng(12)
    draws, firms, counties = 7, 50, 30
    choice = rng.integers(0, counties, firms)
    mean = rng.normal(0.0, 0.5, (draws, firms))
    sd = rng.uniform(0.05, 0.8, (draws, firms))
    sd[:, :3] = 0.0
    gamma = np.array([2.0, -1.5, 0.0, 0.7, 3.0, 1.0, -0.2])
    county_effect = rng.normal(size=(draws, counties))
    sbar = rng.gamma(1.0, 2.0, size=(draws, counties))
    monkeypatch.setattr(integrated, "REJECTION_ROUNDS", rounds)
    monkeypatch.setattr(integrated, "BLOCK_ELEMENTS", 3 * firms)  # blocks of 3 draws: 3 + 3 + 1
    on_grid = []
    grid_draw = integrated._draw_alpha_on_grid
    monkeypatch.setattr(
        integrated, "_draw_alpha_on_grid", lambda rng, mean, *a: on_grid.append(len(mean)) or grid_draw(rng, mean, *a)
    )
    together = integrated.draw_alphas(np.random.default_rng(3), mean, sd, gamma, county_effect, sbar, choice)
    assert (sum(on_grid) > 0) == (rounds == 1), on_grid
    reference = np.random.default_rng(3)
    one_by_one = np.stack(
        [
            _draw_alpha_one_by_one(reference, mean[d], sd[d], float(gamma[d]), county_effect[d], sbar[d], choice)
            for d in range(draws)
        ]
    )
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_array_equal(together[:, :3], mean[:, :3])  # s_i = 0: the mean itself
    single = np.random.default_rng(3)
    np.testing.assert_array_equal(
        together[0], integrated.draw_alpha(single, mean[0], sd[0], float(gamma[0]), county_effect[0], sbar[0], choice)
    )


@pytest.mark.parametrize("choice_set", ["occupied", "all"])
def test_denominator_route_follows_the_rows_per_county(panel, monkeypatch, choice_set):
    """The firms x nodes denominators read the table in c where there are TABLE_ROWS_PER_COUNTY
    rows per county or more, else the binned expansion."""
    from bayes_spill.model import denominator
    from bayes_spill.model import likelihood as model_module

    routes = []
    real_table, real_expansion = denominator.tabulated_log_denominator, denominator.log_denominator
    monkeypatch.setattr(
        denominator, "tabulated_log_denominator", lambda *a, **k: routes.append("table") or real_table(*a, **k)
    )
    monkeypatch.setattr(
        denominator, "log_denominator", lambda *a, **k: routes.append("expansion") or real_expansion(*a, **k)
    )
    config = _integrated_config()
    config = replace(config, model=replace(config.model, choice_set=choice_set))
    counties = len(model_data(panel, config).spill.choice_set)
    build_model(panel, config)
    rows_per_county = config.model.quadrature_nodes * panel.n_firms / counties
    assert routes == ["table" if rows_per_county >= model_module.TABLE_ROWS_PER_COUNTY else "expansion"], (
        rows_per_county,
        routes,
    )
