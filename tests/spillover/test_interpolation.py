"""The certified approximations (interpolation.py): the half-life table of Sbar and the Chebyshev
table of the production field S_lt. Each is checked against the direct sum at parameter values
well beyond where a sampler goes, within its stated bound, and the model built on them (with the
logit denominator of model/denominator.py) is checked against the exact model to the configured
tolerance (1e-6 on the log-density), with a gradient that is the exact gradient of the
approximation (finite differences)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from modes import FAST, compiled_model, industry80, logp_and_gradient  # noqa: E402  (Python mode, no fusion)

from bayes_spill.config import load_config
from bayes_spill.model import likelihood as model_module
from bayes_spill.model.likelihood import build_model
from bayes_spill.spillover import interpolation as interp
from bayes_spill.spillover import kernel


@pytest.fixture(scope="module")
def panel():
    return industry80()


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
    halflives = np.concatenate(
        [np.exp(np.linspace(np.log(1e-4), np.log(1e8), 1201)), [interp.H_MIN_KM, interp.H_MAX_KM, 59.0]]
    )
    worst = max(
        np.max(np.abs(interp.evaluate_table(table, h) - kernel.choice_spillover(all_counties, h))) for h in halflives
    )
    print(f"table: {table.nodes} nodes, bound {table.error_bound:.3g}, worst error {worst:.3g} $ bil")
    assert worst <= table.error_bound


def test_table_rows_are_the_table_at_each_half_life(table):
    """numpy: an array of half-lives gives one row each, the numbers of one call per half-life
    (both sides of the far-field switch, and below the first node)."""
    halflives = np.array([1e-3, 0.5, 59.0, 140.0, 1.0 / table.w_max, 3e4, 2e6])
    rows = interp.evaluate_table(table, halflives)
    assert rows.shape == (len(halflives), table.values.shape[1])
    for h, row in zip(halflives, rows):
        np.testing.assert_array_equal(row, interp.evaluate_table(table, h))


@pytest.mark.parametrize(
    "name, evaluate", [("table", interp.evaluate_table), ("field_table", interp.evaluate_field_table)]
)
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
    halflives = np.concatenate(
        [np.exp(np.linspace(np.log(1e-4), np.log(1e9), 801)), [interp.H_MIN_KM, interp.H_MAX_KM, 59.0, np.inf]]
    )
    worst = max(
        np.max(np.abs(interp.evaluate_field_table(field_table, h) - _direct_field(all_counties, field_table, h)))
        for h in halflives
    )
    print(
        f"field table: {field_table.coefficients.shape}, bound {field_table.error_bound:.3g}, worst {worst:.3g} $ bil"
    )
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


def _point_values(model, rng, scale):
    """Unconstrained values drawn uniformly in [-scale, scale] (nutpie's initial jitter is 2)."""
    start = model.initial_point()  # compiles a function: once, not once per variable
    return {v.name: rng.uniform(-scale, scale, size=np.shape(start[v.name])) for v in model.value_vars}


@pytest.mark.parametrize(
    "name, table_rows_per_county",
    [
        ("lychagin2010", None),
        ("all_counties", None),
        ("log_spillover", None),
        ("integrated_alpha", 0),
        ("integrated_alpha", math.inf),
    ],
)
def test_interpolated_model_matches_the_exact_model_to_its_tolerance(panel, name, table_rows_per_county, monkeypatch):
    """With alpha_i integrated out, both ways to the denominators: the table in c (0 rows per county
    suffice) and the binned expansion (no number of rows does)."""
    if table_rows_per_county is not None:
        monkeypatch.setattr(model_module, "TABLE_ROWS_PER_COUNTY", table_rows_per_county)
    config = load_config(f"models/{name}.toml")
    assert config.model.evaluation == "interpolated"
    exact_config = replace(config, model=replace(config.model, evaluation="exact"))
    if table_rows_per_county is None:  # the model as its file makes it: compiled once with test_model.py's
        fast, at_fast = compiled_model(f"models/{name}.toml")
    else:
        fast = build_model(panel, config)
        at_fast = logp_and_gradient(fast)
    at_exact = logp_and_gradient(build_model(panel, exact_config))
    rng = np.random.default_rng(7)
    points = [fast.initial_point()] + [_point_values(fast, rng, s) for s in (0.5, 2.0, 2.0, 4.0, 6.0)]
    extreme = _point_values(fast, rng, 1.0)
    extreme["halflife_km_log__"] = np.array(12.0)  # h = 163,000 km: beyond the table's last node
    points.append(extreme)
    tiny = dict(extreme, halflife_km_log__=np.array(-6.0))  # h = 2.5 m: below its first node
    points.append(tiny)
    for k, point in enumerate(points):
        (a, g_fast), (b, g_exact) = at_fast(point), at_exact(point)
        assert np.isfinite(a) and abs(a - b) <= 1e-6, (
            f"{name} point {k}: interpolated {a!r}, exact {b!r}, diff {a - b:.3g}"
        )
        assert np.all(np.isfinite(g_fast))
        # the interpolant's derivative errs by O(H^5) where its value errs by O(H^6): close, not 1e-6
        np.testing.assert_allclose(g_fast, g_exact, rtol=1e-3, atol=1e-3, err_msg=f"{name} point {k}")


def test_interpolated_gradient_is_the_gradient_of_the_interpolant(panel):
    """Central differences of the interpolated log-density along random directions equal its
    gradient: the sampler sees one consistent surface."""
    model = build_model(panel, load_config("models/all_counties.toml"))
    at = logp_and_gradient(model)
    from pymc.blocking import DictToArrayBijection

    rng = np.random.default_rng(3)
    point = _point_values(model, rng, 1.0)
    point["gamma"] = np.array(0.8)
    x = DictToArrayBijection.map(point)
    _, grad = at(point)
    for _ in range(4):
        direction = rng.normal(size=x.data.size)
        step = 1e-5
        up = DictToArrayBijection.rmap(x._replace(data=x.data + step * direction))
        down = DictToArrayBijection.rmap(x._replace(data=x.data - step * direction))
        numeric = (at(up)[0] - at(down)[0]) / (2 * step)
        assert numeric == pytest.approx(grad @ direction, rel=1e-5, abs=1e-6)


def test_denominator_bins_setting_is_checked():
    from bayes_spill.config import parse_config
    from bayes_spill.errors import ConfigError

    text = open("models/lychagin2010.toml").read().replace("evaluation = ", "denominator_bins = -1\nevaluation = ")
    with pytest.raises(ConfigError, match="denominator_bins"):
        parse_config(text)


# Slow: a JAX compile; the default formulation's JAX route stays in the fast suite
# (tests/model/test_integrated.py).
@pytest.mark.slow
def test_jax_model_with_static_shapes_matches_the_exact_model(panel):
    pytest.importorskip("jax")
    config = load_config("models/all_counties.toml")
    exact_config = replace(config, model=replace(config.model, evaluation="exact"))
    jax_model, exact = build_model(panel, config, static_shapes=True), build_model(panel, exact_config)
    at_jax, at_exact = logp_and_gradient(jax_model, mode="JAX"), logp_and_gradient(exact)
    rng = np.random.default_rng(11)
    points = [_point_values(exact, rng, s) for s in (0.5, 2.0, 6.0)]
    for k, point in enumerate(points):
        (a, g_jax), (b, g_exact) = at_jax(point), at_exact(point)
        assert abs(a - b) <= 1e-6, f"point {k}: JAX {a!r}, exact {b!r}"
        np.testing.assert_allclose(g_jax, g_exact, rtol=1e-3, atol=1e-3, err_msg=f"point {k}")
