"""The certified approximations (interpolation.py): the half-life table of Sbar, the Chebyshev
table of the production field S_lt, and the logit denominator by binned Taylor expansion in
c = gamma alpha_i. Each is checked against the direct sum at parameter values well beyond where a
sampler goes, within its stated bound, and the model built on them is checked against the exact
model to the configured tolerance (1e-6 on the log-density), with a gradient that is the exact
gradient of the approximation (finite differences)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_spill.spillover import interpolation as interp
from bayes_spill.spillover import kernel
from bayes_spill.config import load_config
from bayes_spill.model import likelihood as model_module
from bayes_spill.model.likelihood import build_model
from bayes_spill.model.simulate import SimulationSettings, simulate_industry

from modes import FAST  # noqa: E402  (Python mode, no fusion)


@pytest.fixture(scope="module")
def panel():
    return simulate_industry(SimulationSettings(n_firms=80, gamma=0.5), seed=11)


@pytest.fixture(scope="module")
def all_counties(panel):
    return kernel.spillover_inputs(panel, choice_set="all")


@pytest.fixture(scope="module")
def table(all_counties):
    return interp.build_halflife_table(all_counties.choice_distance, all_counties.choice_pool)


def test_quintic_hermite_reproduces_quintics():
    rng = np.random.default_rng(0)
    coef = rng.normal(size=6)
    f = np.polynomial.Polynomial(coef)
    x0, width = -0.7, 1.9
    t = np.linspace(0.0, 1.0, 11)
    ends = [(f(x), f.deriv()(x), f.deriv(2)(x)) for x in (x0, x0 + width)]
    got = interp.quintic_hermite(t, width, *ends[0], *ends[1])
    np.testing.assert_allclose(got, f(x0 + width * t), rtol=1e-12, atol=1e-12)


def test_gumbel_derivative_polynomials_are_the_derivatives():
    """e^{-z} p_{n+1}(z) is the u-derivative of e^{-z} p_n(z), z = e^{-u} (central differences)."""
    u = np.linspace(-3.0, 4.0, 29)
    step = 1e-5
    for n in range(6):
        p, p_next = interp.gumbel_derivative_polynomial(n), interp.gumbel_derivative_polynomial(n + 1)

        def g(v, p=p):
            z = np.exp(-v)
            return np.exp(-z) * p(z)

        numeric = (g(u + step) - g(u - step)) / (2 * step)
        np.testing.assert_allclose(numeric, g(u, p_next), atol=1e-6, err_msg=f"order {n + 1}")
    z = np.exp(-np.linspace(-5, 30, 100_001))
    assert np.max(np.abs(np.exp(-z) * interp.gumbel_derivative_polynomial(6)(z))) <= interp.C6_GUMBEL


def test_table_within_its_bound_over_the_whole_half_life_axis(all_counties, table):
    assert table.error_bound <= 1e-10
    halflives = np.concatenate([np.exp(np.linspace(np.log(1e-4), np.log(1e8), 1201)), [interp.H_MIN_KM, interp.H_MAX_KM, 59.0]])
    worst = max(np.max(np.abs(interp.evaluate_table(table, h) - kernel.choice_spillover(all_counties, h))) for h in halflives)
    print(f"table: {table.nodes} nodes, bound {table.error_bound:.3g}, worst error {worst:.3g} $ bil")
    assert worst <= table.error_bound


@pytest.mark.parametrize("name, evaluate", [("table", interp.evaluate_table), ("field_table", interp.evaluate_field_table)])
def test_tables_numpy_and_pytensor_agree_with_a_finite_gradient(request, name, evaluate):
    table = request.getfixturevalue(name)
    h = pt.dscalar("h")
    values = evaluate(table, h, pt)
    f = pytensor.function([h], [values, pytensor.grad(values.sum(), h)], mode=FAST)
    for value in (0.001, 3.0, 59.0, 800.0, 2e5):
        got, grad = f(value)
        np.testing.assert_allclose(got, evaluate(table, value), rtol=1e-13, atol=1e-15)
        assert np.isfinite(grad)
        up, down = (evaluate(table, value * (1 + d)).sum() for d in (1e-6, -1e-6))
        assert grad == pytest.approx((up - down) / (2e-6 * value), rel=1e-5, abs=1e-9), f"{name}, h = {value}"


@pytest.fixture(scope="module")
def field_table(all_counties):
    entries = np.unique(all_counties.obs_receiver * all_counties.pool.shape[1] + all_counties.obs_year)
    receiver, year = np.divmod(entries, all_counties.pool.shape[1])
    return interp.build_field_table(all_counties.production_distance, all_counties.pool, receiver, year)


def _direct_field(inputs, table, h):
    if np.isinf(h):
        return inputs.pool.sum(axis=0)[table.year]
    return kernel.spillover_field(inputs.production_distance, inputs.pool, h)[table.receiver, table.year]


def test_field_table_within_its_bound_over_the_whole_half_life_axis(all_counties, field_table):
    """Truncation bound <= 1e-12 $ bil; the comparison allows for the direct sum's own rounding
    (sources x machine epsilon x the pool)."""
    assert field_table.error_bound <= interp.FIELD_ERROR_TARGET
    rounding = all_counties.pool.shape[0] * np.finfo(float).eps * np.abs(all_counties.pool).sum(axis=0).max()
    halflives = np.concatenate([np.exp(np.linspace(np.log(1e-4), np.log(1e9), 801)), [interp.H_MIN_KM, interp.H_MAX_KM, 59.0, np.inf]])
    worst = max(np.max(np.abs(interp.evaluate_field_table(field_table, h) - _direct_field(all_counties, field_table, h))) for h in halflives)
    print(f"field table: {field_table.coefficients.shape}, bound {field_table.error_bound:.3g}, worst {worst:.3g} $ bil")
    assert worst <= field_table.error_bound + rounding


def test_chebyshev_bound_holds_for_a_function_with_a_known_ellipse():
    """exp(-e^-u) on [-1, 1], at most 1 in modulus inside the strip |Im u| < pi/2 (Re e^-u > 0
    there): the interpolant errs within the bound at every degree."""
    rho = interp.strip_rho(1.0)
    bound = 1.0
    for degree in (4, 8, 12):
        coefficients = interp._chebyshev_fit(lambda x: np.array([np.exp(-np.exp(-x))]), degree)
        x = np.linspace(-1, 1, 2001)
        approx = np.array([interp.chebyshev_series(coefficients, v, degree + 1)[0] for v in x])
        assert np.max(np.abs(approx - np.exp(-np.exp(-x)))) <= interp.chebyshev_error_bound(bound, rho, degree)


TERMS = interp.taylor_terms(300, 1e-6)


@pytest.fixture(scope="module")
def denominator():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, bins = interp.log_denominator(a, s, c, TERMS)
    return pytensor.function([a, s, c], [value, bins], mode=FAST)


def test_taylor_terms_meet_the_tolerance():
    for firms, tolerance in ((688, 1e-6), (6880, 1e-6), (100_000, 1e-9)):
        terms = interp.taylor_terms(firms, tolerance)
        assert 2 * firms * interp.taylor_relative_error(terms) <= tolerance / 2
        assert 2 * firms * interp.taylor_relative_error(terms - 1) > tolerance / 2
    x = np.linspace(-interp.TAYLOR_RADIUS, interp.TAYLOR_RADIUS, 10_001)
    partial = sum(x**j / math.factorial(j) for j in range(8))
    assert np.max(np.abs(partial - np.exp(x)) / np.exp(x)) <= interp.taylor_relative_error(8)


# gamma up to 50 and alpha spreads up to 20, far beyond where a sampler goes, over every county
DENOMINATOR_CASES = {"gamma": st.floats(-50.0, 50.0), "spread": st.floats(0.0, 20.0), "halflife": st.floats(0.5, 5000.0), "seed": st.integers(0, 2**16)}


def _denominator_case(all_counties, gamma, spread, halflife, rows, seed):
    """(county effects a, Sbar at the half-life, c for the rows)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 2.0, len(all_counties.choice_set))
    return a, kernel.choice_spillover(all_counties, halflife), gamma * rng.normal(0.0, spread, rows)


@settings(max_examples=60, deadline=None)
@given(**DENOMINATOR_CASES, n_firms=st.integers(2, 300))
def test_denominator_within_its_bound(denominator, all_counties, gamma, spread, halflife, n_firms, seed):
    """The whole location log-likelihood's share: sum over firms within tolerance / 2 = 5e-7."""
    a, sbar, c = _denominator_case(all_counties, gamma, spread, halflife, n_firms, seed)
    got, bins = denominator(a, sbar, c)
    exact = interp.exact_log_denominator(a, sbar, c)
    error = np.sum(np.abs(got - exact))
    assert error <= 5e-7, f"sum error {error:.3g} with {bins} bins (gamma {gamma}, spread {spread}, h {halflife})"
    assert bins == min(interp.bins_needed(np.max(np.abs(c)), np.ptp(sbar)), interp.MAX_DYNAMIC_BINS)


def test_denominator_uses_few_bins_at_the_papers_values(denominator, all_counties):
    rng = np.random.default_rng(1)
    sbar = kernel.choice_spillover(all_counties, 59.0)
    c = 0.053 * rng.normal(-0.05, 0.64, 300)
    got, bins = denominator(rng.normal(size=len(sbar)), sbar, c)
    assert bins == 1


def test_denominator_with_equal_firms_and_a_flat_field(denominator):
    """gamma = 0 (all c_i = 0) and a constant Sbar: one bin of width 0, no 0/0 in value or gradient."""
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, _ = interp.log_denominator(a, s, c, TERMS)
    grad = pytensor.grad(value.sum(), [a, s, c])
    f = pytensor.function([a, s, c], [value, *grad], mode=FAST)
    a0 = np.array([0.3, -1.0, 2.0])
    for sbar, c in ((np.array([1.0, 2.0, 5.0]), np.zeros(4)), (np.full(3, 2.0), np.array([0.5, -1.0]))):
        out = f(a0, sbar, c)
        np.testing.assert_allclose(out[0], interp.exact_log_denominator(a0, sbar, c), rtol=1e-13)
        assert all(np.all(np.isfinite(g)) for g in out[1:])


def _point_values(model, rng, scale):
    """Unconstrained values drawn uniformly in [-scale, scale] (nutpie's initial jitter is 2)."""
    return {v.name: rng.uniform(-scale, scale, size=np.shape(model.initial_point()[v.name])) for v in model.value_vars}


@pytest.mark.parametrize(
    "name, table_rows_per_county",
    [("lychagin2010", None), ("all_counties", None), ("log_spillover", None), ("integrated_alpha", 0), ("integrated_alpha", math.inf)],
)
def test_interpolated_model_matches_the_exact_model_to_its_tolerance(panel, name, table_rows_per_county, monkeypatch):
    """With alpha_i integrated out, both ways to the denominators: the table in c (0 rows per county
    suffice) and the binned expansion (no number of rows does)."""
    if table_rows_per_county is not None:
        monkeypatch.setattr(model_module, "TABLE_ROWS_PER_COUNTY", table_rows_per_county)
    config = load_config(f"models/{name}.toml")
    assert config.model.evaluation == "interpolated"
    exact_config = replace(config, model=replace(config.model, evaluation="exact"))
    fast, exact = build_model(panel, config), build_model(panel, exact_config)
    logp_fast, logp_exact = fast.compile_logp(mode=FAST), exact.compile_logp(mode=FAST)
    dlogp_fast, dlogp_exact = fast.compile_dlogp(mode=FAST), exact.compile_dlogp(mode=FAST)
    rng = np.random.default_rng(7)
    points = [fast.initial_point()] + [_point_values(fast, rng, s) for s in (0.5, 2.0, 2.0, 4.0, 6.0)]
    extreme = _point_values(fast, rng, 1.0)
    extreme["halflife_km_log__"] = np.array(12.0)  # h = 163,000 km: beyond the table's last node
    points.append(extreme)
    tiny = dict(extreme, halflife_km_log__=np.array(-6.0))  # h = 2.5 m: below its first node
    points.append(tiny)
    for k, point in enumerate(points):
        a, b = logp_fast(point), logp_exact(point)
        assert np.isfinite(a) and abs(a - b) <= 1e-6, f"{name} point {k}: interpolated {a!r}, exact {b!r}, diff {a - b:.3g}"
        g_fast, g_exact = dlogp_fast(point), dlogp_exact(point)
        assert np.all(np.isfinite(g_fast))
        # the interpolant's derivative errs by O(H^5) where its value errs by O(H^6): close, not 1e-6
        np.testing.assert_allclose(g_fast, g_exact, rtol=1e-3, atol=1e-3, err_msg=f"{name} point {k}")


def test_interpolated_gradient_is_the_gradient_of_the_interpolant(panel):
    """Central differences of the interpolated log-density along random directions equal its
    gradient: the sampler sees one consistent surface."""
    model = build_model(panel, load_config("models/all_counties.toml"))
    logp, dlogp = model.compile_logp(mode=FAST), model.compile_dlogp(mode=FAST)
    from pymc.blocking import DictToArrayBijection

    rng = np.random.default_rng(3)
    point = _point_values(model, rng, 1.0)
    point["gamma"] = np.array(0.8)
    x = DictToArrayBijection.map(point)
    grad = dlogp(point)
    for _ in range(4):
        direction = rng.normal(size=x.data.size)
        step = 1e-5
        up = DictToArrayBijection.rmap(x._replace(data=x.data + step * direction))
        down = DictToArrayBijection.rmap(x._replace(data=x.data - step * direction))
        numeric = (logp(up) - logp(down)) / (2 * step)
        assert numeric == pytest.approx(grad @ direction, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def fixed_denominator():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, bins = interp.log_denominator(a, s, c, TERMS, fixed_bins=4)
    return pytensor.function([a, s, c], [value, bins], mode=FAST)


@pytest.mark.parametrize("gamma", [0.0, 0.05, 0.5, 5.0, 50.0])
def test_fixed_bins_certify_or_fall_back_to_the_direct_sum(fixed_denominator, all_counties, gamma):
    rng = np.random.default_rng(5)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a, c = rng.normal(0.0, 2.0, len(sbar)), gamma * rng.normal(0.0, 1.0, 200)
    got, bins = fixed_denominator(a, sbar, c)
    assert np.sum(np.abs(got - interp.exact_log_denominator(a, sbar, c))) <= 5e-7
    needed = interp.bins_needed(np.max(np.abs(c)), np.ptp(sbar))
    assert bins == (4 if needed <= 4 else 0), f"needed {needed}, used {bins}"


def _softmax_mean(a, sbar, c):
    logits = a[None, :] + c[:, None] * sbar[None, :]
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (w @ sbar) / w.sum(axis=1)


@pytest.mark.parametrize("fixed_bins", [None, 4])
def test_rows_beyond_the_bins_get_the_direct_sum_and_a_finite_gradient(all_counties, fixed_bins):
    """A diverging trajectory can put c_i far beyond what the bins hold (here 1e6 x Sbar's range):
    those rows get the direct sum, its exact gradient (the softmax mean of Sbar), and nothing
    overflows into the other rows' values or gradients."""
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, bins = interp.log_denominator(a, s, c, TERMS, fixed_bins)
    fn = pytensor.function([a, s, c], [value, bins, pt.grad(value.sum(), c)], mode=FAST)
    rng = np.random.default_rng(9)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a_values = rng.normal(0.0, 2.0, len(sbar))
    c_values = 0.05 * rng.normal(size=200)
    c_values[[3, 50, 120]] = [1e6, -3e4, 250.0]
    got, used, grad = fn(a_values, sbar, c_values)
    assert used == (interp.MAX_DYNAMIC_BINS if fixed_bins is None else 0)
    assert np.sum(np.abs(got - interp.exact_log_denominator(a_values, sbar, c_values))) <= 5e-7
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, _softmax_mean(a_values, sbar, c_values), rtol=1e-6, atol=1e-9)


ROW_ERROR = 1e-10


TEST_TABLE_NODES = 256  # the cap in the tables below: both paths in few seconds of Python mode


@pytest.fixture(scope="module")
def tabulated():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(interp, "MAX_TABLE_NODES", TEST_TABLE_NODES)
        value = interp.tabulated_log_denominator(a, s, c, ROW_ERROR)
    return pytensor.function([a, s, c], [value, *pt.grad(value.sum(), [a, s, c])], mode=FAST)


@settings(max_examples=60, deadline=None)
@given(**DENOMINATOR_CASES, rows=st.integers(1, 400))
def test_tabulated_denominator_within_its_bound(tabulated, all_counties, gamma, spread, halflife, rows, seed):
    """Every row within ROW_ERROR of the direct sum, tables of 2 to TEST_TABLE_NODES points and
    the direct sum beyond, with a finite gradient."""
    a, sbar, c = _denominator_case(all_counties, gamma, spread, halflife, rows, seed)
    got, *grads = tabulated(a, sbar, c)
    error = np.max(np.abs(got - interp.exact_log_denominator(a, sbar, c)))
    assert error <= ROW_ERROR, f"max row error {error:.3g} (gamma {gamma}, spread {spread}, h {halflife})"
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_table_spacing_is_the_widest_power_of_two_within_the_bound():
    r = pt.dscalar("r")
    spacing = pytensor.function([r], interp.table_spacing(ROW_ERROR, r), mode=FAST)
    for s_range in (1e-3, 0.37, 1.0, 1.2, 55.0, 3e4):
        dc = float(spacing(s_range))
        assert math.log2(dc) == int(math.log2(dc))
        assert (dc * s_range) ** 4 / interp.CUBIC_ERROR_DENOMINATOR <= ROW_ERROR < (2 * dc * s_range) ** 4 / interp.CUBIC_ERROR_DENOMINATOR
    assert np.isfinite(spacing(0.0))  # a flat field: one wide interval, LSE linear in c


def test_cubic_error_bound_holds_where_the_fourth_cumulant_is_largest():
    """Two counties (the fourth cumulant's extremes are two-point laws): the interpolant's largest
    error over a fine grid stays below (dc R)^4 / 3072 and reaches a good part of it."""
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    fn = pytensor.function([a, s, c], interp.tabulated_log_denominator(a, s, c, 1e-4), mode=FAST)
    sbar = np.array([0.0, 1.0])
    dc = 2.0 ** math.floor(math.log2((interp.CUBIC_ERROR_DENOMINATOR * 1e-4) ** 0.25))
    c = np.linspace(-12.0, 12.0, 200_001)
    error = np.max(np.abs(fn(np.zeros(2), sbar, c) - interp.exact_log_denominator(np.zeros(2), sbar, c)))
    bound = dc**4 / interp.CUBIC_ERROR_DENOMINATOR
    assert 0.05 * bound < error <= bound, f"error {error:.3g}, bound {bound:.3g}"


def test_tabulated_gradient_is_the_gradient_of_the_interpolant(tabulated, all_counties):
    rng = np.random.default_rng(12)
    sbar = kernel.choice_spillover(all_counties, 80.0)
    a, c = rng.normal(0.0, 1.0, len(sbar)), 0.7 * rng.normal(size=50)
    _, grad_a, grad_s, grad_c = tabulated(a, sbar, c)
    step = 1e-6
    for values, grad, index in ((a, grad_a, 0), (sbar, grad_s, 1), (c, grad_c, 2)):
        direction = rng.normal(size=values.size)
        args = [a, sbar, c]
        up, down = list(args), list(args)
        up[index], down[index] = values + step * direction, values - step * direction
        numeric = (tabulated(*up)[0].sum() - tabulated(*down)[0].sum()) / (2 * step)
        assert numeric == pytest.approx(grad @ direction, rel=1e-6, abs=1e-8), index


def test_rows_beyond_the_table_get_the_direct_sum(all_counties, monkeypatch):
    """Where the rows' c span more than MAX_TABLE_NODES points (a diverging trajectory), those
    beyond the table get the direct sum and its gradient, the softmax mean of Sbar."""
    monkeypatch.setattr(interp, "MAX_TABLE_NODES", 8)
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value = interp.tabulated_log_denominator(a, s, c, ROW_ERROR)
    fn = pytensor.function([a, s, c], [value, pt.grad(value.sum(), c)], mode=FAST)
    rng = np.random.default_rng(13)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a_values, c_values = rng.normal(0.0, 2.0, len(sbar)), 0.05 * rng.normal(size=100)
    c_values[[4, 60]] = [1e5, 30.0]
    got, grad = fn(a_values, sbar, c_values)
    assert np.max(np.abs(got - interp.exact_log_denominator(a_values, sbar, c_values))) <= ROW_ERROR
    np.testing.assert_allclose(grad, _softmax_mean(a_values, sbar, c_values), rtol=1e-6, atol=1e-9)


def test_denominator_bins_setting_is_checked():
    from bayes_spill.config import parse_config
    from bayes_spill.errors import ConfigError

    text = open("models/lychagin2010.toml").read().replace("evaluation = ", "denominator_bins = -1\nevaluation = ")
    with pytest.raises(ConfigError, match="denominator_bins"):
        parse_config(text)


def test_jax_model_with_static_shapes_matches_the_exact_model(panel):
    pytest.importorskip("jax")
    config = load_config("models/all_counties.toml")
    exact_config = replace(config, model=replace(config.model, evaluation="exact"))
    jax_model, exact = build_model(panel, config, static_shapes=True), build_model(panel, exact_config)
    logp_jax, logp_exact = jax_model.compile_logp(mode="JAX"), exact.compile_logp(mode=FAST)
    dlogp_jax, dlogp_exact = jax_model.compile_dlogp(mode="JAX"), exact.compile_dlogp(mode=FAST)
    rng = np.random.default_rng(11)
    points = [_point_values(exact, rng, s) for s in (0.5, 2.0, 6.0)]
    for k, point in enumerate(points):
        a, b = logp_jax(point), logp_exact(point)
        assert abs(a - b) <= 1e-6, f"point {k}: JAX {a!r}, exact {b!r}"
        np.testing.assert_allclose(dlogp_jax(point), dlogp_exact(point), rtol=1e-3, atol=1e-3, err_msg=f"point {k}")
