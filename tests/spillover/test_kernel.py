"""The spillover kernel (MODEL.md eq. 2): numpy and PyTensor agree, gradients, limits, cost
structure and a hand-computed tiny case."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_spill.data.datasets import load_dataset
from bayes_spill.data.geography import EARTH_RADIUS_KM, Counties
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.spillover import kernel

HALFLIVES = (1.0, 59.0, 500.0, 5000.0)
RTOL = 1e-10
LOG_FLOOR = 0.05  # $ bil: high enough that some firm-years are floored


@pytest.fixture(scope="module")
def panel():
    return load_dataset()


@pytest.fixture(scope="module")
def inputs(panel):
    return kernel.spillover_inputs(panel)


@pytest.fixture(scope="module")
def inputs_all(panel):
    return kernel.spillover_inputs(panel, choice_set="all")


@pytest.fixture(scope="module")
def compiled(inputs):
    """One PyTensor function of a symbolic half-life returning every kernel output."""
    h = pt.dscalar("halflife_km")
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, h, pt)
    s_it = kernel.firm_year_spillover(inputs, h, pt)
    sbar = kernel.choice_spillover(inputs, h, pt)
    outputs = [
        field,
        s_it,
        sbar,
        kernel.transform(s_it, "level", LOG_FLOOR, pt),
        kernel.transform(s_it, "log", LOG_FLOOR, pt),
        kernel.transform(sbar, "log", LOG_FLOOR, pt),
    ]
    return pytensor.function([h], outputs)


def numpy_outputs(inputs, h):
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, h)
    s_it = kernel.firm_year_spillover(inputs, h)
    sbar = kernel.choice_spillover(inputs, h)
    return [
        field,
        s_it,
        sbar,
        kernel.transform(s_it, "level", LOG_FLOOR),
        kernel.transform(s_it, "log", LOG_FLOOR),
        kernel.transform(sbar, "log", LOG_FLOOR),
    ]


# -- numpy == PyTensor -------------------------------------------------------------------------
@pytest.mark.parametrize("h", HALFLIVES)
def test_numpy_and_pytensor_agree(compiled, inputs, h):
    names = (
        "spillover_field",
        "firm_year_spillover",
        "choice_spillover",
        "transform level",
        "transform log S_it",
        "transform log Sbar",
    )
    for name, a, b in zip(names, compiled(h), numpy_outputs(inputs, h), strict=True):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-300, err_msg=f"{name} at h={h}")


def test_log_transform_uses_the_floor(inputs):
    s_it = kernel.firm_year_spillover(inputs, 1.0)
    floored = s_it < LOG_FLOOR
    assert floored.any() and (~floored).any(), f"{floored.sum()} of {len(s_it)} floored: pick another floor"
    logged = kernel.transform(s_it, "log", LOG_FLOOR)
    np.testing.assert_array_equal(logged[floored], np.log(LOG_FLOOR))
    np.testing.assert_allclose(logged[~floored], np.log(s_it[~floored]), rtol=1e-15)
    assert np.all(np.isfinite(logged))
    with pytest.raises(ValueError, match="transform"):
        kernel.transform(s_it, "sqrt", LOG_FLOOR)


# -- gradient ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def objective(inputs):
    """A scalar that depends on every S_it and Sbar_l: random weights times the kernel outputs."""
    rng = np.random.default_rng(1)
    w_obs = rng.standard_normal(len(inputs.obs_year))
    w_choice = rng.standard_normal(len(inputs.choice_set))

    def value(backend, hl):
        s_it = kernel.firm_year_spillover(inputs, hl, backend)
        sbar = kernel.choice_spillover(inputs, hl, backend)
        return (w_obs * s_it).sum() + (w_choice * sbar).sum()

    hs = pt.dscalar("h")
    return value, pytensor.function([hs], pytensor.grad(value(pt, hs), hs))


@pytest.mark.parametrize("h", (5.0, 59.0, 500.0))
def test_gradient_matches_central_difference(objective, h):
    value, grad = objective
    analytic = float(grad(h))
    step = h * 1e-5
    numeric = (value(np, h + step) - value(np, h - step)) / (2 * step)
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9), (
        f"h={h}: pytensor {analytic!r}, finite difference {numeric!r}"
    )
    assert abs(analytic) > 1e-6, f"h={h}: gradient {analytic} too small to test anything"


# -- limits ------------------------------------------------------------------------------------
def test_infinite_halflife_gives_the_total_pool_everywhere(inputs, inputs_all):
    h = 1e9  # lambda ~ 7e-10 per km
    total = inputs.pool.sum(axis=0)  # (Y,)
    worst = kernel.decay_rate(h) * inputs_all.choice_distance.max()  # largest relative shortfall
    assert worst < 1e-5
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, h)
    np.testing.assert_allclose(field, np.broadcast_to(total, field.shape), rtol=1.01 * worst)
    field_all = kernel.spillover_field(inputs_all.choice_distance, inputs.pool, h)
    assert field_all.shape == (len(inputs_all.choice_set), len(total))
    np.testing.assert_allclose(field_all, np.broadcast_to(total, field_all.shape), rtol=1.01 * worst)
    np.testing.assert_allclose(kernel.choice_spillover(inputs_all, h), total.mean(), rtol=1.01 * worst)


def test_short_halflife_leaves_only_the_own_pool(panel, inputs):
    # sources are the occupied counties here (every sample firm's county holds its R&D stock)
    np.testing.assert_array_equal(inputs.sources, panel.occupied)
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, 0.01)
    np.testing.assert_allclose(field, inputs.pool, rtol=1e-12, atol=1e-200)  # neighbours ~8 km apart: 1e-251
    # S_lt for each firm-year's county is that county's own pool in that year
    own_pool = inputs.pool[np.searchsorted(inputs.sources, panel.obs_county), panel.obs_year]
    np.testing.assert_allclose(field[inputs.obs_receiver, inputs.obs_year], own_pool, rtol=1e-12)
    # ... and the own pool is the sum of the stocks of the firms of that county in that year
    by_hand = np.zeros_like(inputs.pool)
    np.add.at(by_hand, (np.searchsorted(inputs.sources, panel.obs_county), panel.obs_year), panel.rd_stock / 1000.0)
    np.testing.assert_allclose(inputs.pool, by_hand, rtol=1e-12)


@pytest.mark.parametrize("h", HALFLIVES)
def test_own_stock_exclusion(panel, inputs, h):
    kept = kernel.spillover_inputs(panel, exclude_own=False)
    assert kept.own_stock_bil is None
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, h)
    s_incl = kernel.firm_year_spillover(kept, h)
    s_excl = kernel.firm_year_spillover(inputs, h)
    np.testing.assert_allclose(s_incl, field[inputs.obs_receiver, inputs.obs_year], rtol=1e-15)
    np.testing.assert_allclose(s_excl, s_incl - panel.rd_stock / 1000.0, rtol=1e-12, atol=1e-12)
    assert s_excl.min() >= -1e-12, f"h={h}: smallest S_it {s_excl.min()!r}"


@pytest.mark.parametrize("h", HALFLIVES)
def test_sbar_is_the_mean_over_years_or_one_year(panel, inputs, h):
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, h)
    np.testing.assert_array_equal(inputs.choice_set, panel.occupied)
    np.testing.assert_allclose(kernel.choice_spillover(inputs, h), field.mean(axis=1), rtol=1e-12)
    year = 2002
    one = kernel.spillover_inputs(panel, sbar_year=year)
    t = int(np.flatnonzero(panel.years == year)[0])
    np.testing.assert_allclose(kernel.choice_spillover(one, h), field[:, t], rtol=1e-12)
    # each firm's position in the choice set points at its own county
    np.testing.assert_array_equal(inputs.choice_set[inputs.firm_choice], panel.firm_county)


def test_sbar_year_outside_the_panel_is_an_error(panel):
    with pytest.raises(ValueError, match="sbar_year"):
        kernel.spillover_inputs(panel, sbar_year=1900)
    with pytest.raises(ValueError, match="choice_set"):
        kernel.spillover_inputs(panel, choice_set="some")


@pytest.mark.parametrize("h", HALFLIVES)
def test_all_counties_choice_set_agrees_on_occupied_counties(panel, inputs, inputs_all, h):
    n_counties = len(panel.counties)
    assert len(inputs_all.choice_set) == n_counties
    sbar_all = kernel.choice_spillover(inputs_all, h)
    assert sbar_all.shape == (n_counties,)
    np.testing.assert_allclose(sbar_all[panel.occupied], kernel.choice_spillover(inputs, h), rtol=1e-12)
    np.testing.assert_array_equal(inputs_all.firm_choice, panel.firm_county)
    assert np.all(sbar_all >= 0)


# -- cost structure ----------------------------------------------------------------------------
def test_distance_matrices_are_receivers_by_sources(panel, inputs, inputs_all):
    n_counties = len(panel.counties)
    occupied = panel.occupied
    sources = inputs.sources
    assert len(sources) < n_counties / 4, f"{len(sources)} sources of {n_counties} counties"
    assert inputs.production_distance.shape == (len(occupied), len(sources))
    assert inputs.choice_distance.shape == (len(occupied), len(sources))
    assert inputs_all.production_distance.shape == (len(occupied), len(sources))
    assert inputs_all.choice_distance.shape == (n_counties, len(sources))
    assert inputs.pool.shape == (len(sources), len(panel.years))
    assert inputs.choice_pool.shape == (len(sources),)
    for matrix in (inputs.production_distance, inputs_all.choice_distance):
        assert matrix.size < n_counties**2 / 4


# -- a hand-computed case ----------------------------------------------------------------------
# Three counties on the equator at longitudes 0, 1 and 2 degrees: A-B and B-C are D km apart,
# A-C 2D. With the half-life h = D the decay weights are exactly 1/2 and 1/4.
D = EARTH_RADIUS_KM * np.pi / 180.0
TINY_COUNTIES = Counties(
    fips=np.array(["90001", "90002", "90003"]),
    name=np.array(["A", "B", "C"]),
    state=np.array(["XX", "XX", "XX"]),
    lat=np.zeros(3),
    lon=np.array([0.0, 1.0, 2.0]),
    source="tiny",
)


@pytest.fixture(scope="module")
def tiny():
    """Firms 0 and 1 in A, firm 2 in B, nobody in C; 2 years; R&D stocks in $ million."""
    return PreparedPanel(
        source="tiny",
        counties=TINY_COUNTIES,
        firms=np.array(["000001", "000002", "000003"]),
        firm_county=np.array([0, 0, 1]),
        years=np.array([2001, 2002]),
        obs_firm=np.array([0, 0, 1, 1, 2, 2]),
        obs_year=np.array([0, 1, 0, 1, 0, 1]),
        sale=np.ones(6),
        emp=np.ones(6),
        ppent=np.ones(6),
        xrd=np.ones(6),
        rd_stock=np.array([1000.0, 2000.0, 500.0, 0.0, 4000.0, 8000.0]),
    )


def test_tiny_case_by_hand(tiny):
    # pools ($ bil): A = [1.5, 2.0], B = [4, 8]
    inputs = kernel.spillover_inputs(tiny)
    np.testing.assert_array_equal(inputs.sources, [0, 1])
    np.testing.assert_allclose(inputs.pool, [[1.5, 2.0], [4.0, 8.0]], rtol=1e-15)
    np.testing.assert_allclose(inputs.production_distance, [[0.0, D], [D, 0.0]], rtol=1e-12, atol=1e-9)
    field = kernel.spillover_field(inputs.production_distance, inputs.pool, D)
    s_a = [1.5 + 0.5 * 4.0, 2.0 + 0.5 * 8.0]  # [3.5, 6.0]
    s_b = [4.0 + 0.5 * 1.5, 8.0 + 0.5 * 2.0]  # [4.75, 9.0]
    np.testing.assert_allclose(field, [s_a, s_b], rtol=1e-12)
    # own stock excluded: firm 0 [3.5-1, 6-2], firm 1 [3.5-0.5, 6-0], firm 2 [4.75-4, 9-8]
    np.testing.assert_allclose(kernel.firm_year_spillover(inputs, D), [2.5, 4.0, 3.0, 6.0, 0.75, 1.0], rtol=1e-12)
    # Sbar: mean over the two years
    np.testing.assert_allclose(kernel.choice_spillover(inputs, D), [4.75, 6.875], rtol=1e-12)

    everywhere = kernel.spillover_inputs(tiny, choice_set="all", sbar_year=2002)
    s_c = [0.5 * 4.0 + 0.25 * 1.5, 0.5 * 8.0 + 0.25 * 2.0]  # C receives from B at D and A at 2D
    assert everywhere.choice_distance.shape == (3, 2)
    np.testing.assert_allclose(kernel.choice_spillover(everywhere, D), [s_a[1], s_b[1], s_c[1]], rtol=1e-12)
    np.testing.assert_allclose(
        kernel.spillover_field(everywhere.choice_distance, inputs.pool, D), [s_a, s_b, s_c], rtol=1e-12
    )

    # any half-life: exp(-ln2/h * d) written out
    h = 37.0
    w1, w2 = np.exp(-np.log(2) / h * D), np.exp(-np.log(2) / h * 2 * D)
    expected_c = [w1 * 4.0 + w2 * 1.5, w1 * 8.0 + w2 * 2.0]
    np.testing.assert_allclose(
        kernel.spillover_field(everywhere.choice_distance, inputs.pool, h)[2], expected_c, rtol=1e-12
    )


def test_tiny_case_pytensor(tiny):
    inputs = kernel.spillover_inputs(tiny, choice_set="all")
    h = pt.dscalar("h")
    f = pytensor.function([h], [kernel.firm_year_spillover(inputs, h, pt), kernel.choice_spillover(inputs, h, pt)])
    s_it, sbar = f(D)
    np.testing.assert_allclose(s_it, [2.5, 4.0, 3.0, 6.0, 0.75, 1.0], rtol=1e-12)
    np.testing.assert_allclose(sbar, [4.75, 6.875, (2.375 + 4.5) / 2], rtol=1e-12)


def test_spillover_transform_carries_the_three_settings(panel):
    """SpilloverTransform is the one place where own stock, levels/logs and the floor combine: its
    numpy and PyTensor values are the kernel's, and ModelSpec hands it the configuration's settings."""
    from bayes_spill.config import ModelSpec

    transform = ModelSpec(spillover="log", log_floor_bil=LOG_FLOOR, own_stock="include").spillover_transform
    assert transform == kernel.SpilloverTransform("log", LOG_FLOOR, exclude_own=False)
    assert ModelSpec().spillover_transform == kernel.LEVELS == kernel.SpilloverTransform("level", 0.001, True)
    for t in (transform, kernel.LEVELS):
        spill = t.inputs(panel)
        assert (spill.own_stock_bil is not None) == t.exclude_own
        s_it = kernel.firm_year_spillover(spill, 59.0)
        np.testing.assert_array_equal(t.firm_year(spill, 59.0), kernel.transform(s_it, t.kind, t.floor_bil))
        np.testing.assert_array_equal(
            t.choice(spill, 59.0), kernel.transform(kernel.choice_spillover(spill, 59.0), t.kind, t.floor_bil)
        )
        h = pt.dscalar("h")
        symbolic = pytensor.function([h], t.firm_year(spill, h, pt), mode="FAST_COMPILE")
        np.testing.assert_allclose(symbolic(59.0), t.firm_year(spill, 59.0), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="transform"):
        kernel.SpilloverTransform("sqrt")
