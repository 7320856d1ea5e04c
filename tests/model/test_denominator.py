"""The logit denominator LSE(c) (model/denominator.py): the binned Taylor expansion and the cubic
Hermite tables in c = gamma alpha_i, checked against the direct sum at parameter values well beyond
where a sampler goes, within their stated bounds, with finite gradients (and the gradient of the
interpolant, by finite differences)."""

from __future__ import annotations

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modes import FAST  # noqa: E402  (Python mode, no fusion)

from bayes_spill.model import denominator as denom
from bayes_spill.model.simulate import SimulationSettings, simulate_industry
from bayes_spill.spillover import kernel


@pytest.fixture(scope="module")
def all_counties():
    return kernel.spillover_inputs(
        simulate_industry(SimulationSettings(n_firms=80, gamma=0.5), seed=11), choice_set="all"
    )


def test_log_denominator_table_matches_the_direct_sum():
    rng = np.random.default_rng(3)
    a, sbar = rng.normal(size=300), rng.gamma(1.0, 3.0, size=300)
    table = denom.log_denominator_table(a, sbar, -2.0, 1.5)
    c = rng.uniform(-2.0, 1.5, size=2000)
    logits = a[None, :] + c[:, None] * sbar[None, :]
    exact = logits.max(axis=1) + np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
    np.testing.assert_allclose(denom.evaluate_log_denominator(table, c), exact, rtol=0, atol=1e-7)


def test_numpy_table_slope_and_fixed_nodes():
    """The slope is the derivative of the same cubic (central differences) and near the softmax mean;
    a fixed number of nodes (the two-step estimator's) spans the range with that many."""
    rng = np.random.default_rng(4)
    a, sbar = rng.normal(size=50), rng.gamma(1.0, 3.0, size=50)
    table = denom.log_denominator_table(a, sbar, -1.0, 2.0)
    c = rng.uniform(-0.9, 1.9, size=500)
    step = 1e-6
    numeric = (denom.evaluate_log_denominator(table, c + step) - denom.evaluate_log_denominator(table, c - step)) / (
        2 * step
    )
    np.testing.assert_allclose(denom.evaluate_log_denominator_slope(table, c), numeric, rtol=1e-6, atol=1e-6)
    _, exact_slope = denom.log_denominator_with_slope(a, sbar, c)
    np.testing.assert_allclose(denom.evaluate_log_denominator_slope(table, c), exact_slope, rtol=0, atol=1e-3)
    fixed = denom.log_denominator_table(a, sbar, -1.0, 2.0, nodes=257)
    assert len(fixed.grid) == 257 and fixed.grid[0] == -1.0 and fixed.grid[-1] == 2.0
    exact, _ = denom.log_denominator_with_slope(a, sbar, c)
    np.testing.assert_allclose(denom.evaluate_log_denominator(fixed, c), exact, rtol=0, atol=1e-6)


def test_tables_of_many_rows_are_the_tables_of_each_row_bit_for_bit():
    """log_denominator_tables (one table per posterior draw, end to end) holds row r's
    log_denominator_table, and reading it gives each row's numbers exactly: the alpha draws of an
    integrated fit depend on it to the last bit. Rows include a single c (a two-node table) and a
    wide range (many nodes), c on and beyond the ends."""
    rng = np.random.default_rng(9)
    rows, counties = 5, 40
    a, sbar = rng.normal(size=(rows, counties)), rng.gamma(1.0, 3.0, size=(rows, counties))
    c_lo = np.array([-0.3, 0.2, 0.5, -4.0, 0.0])
    c_hi = np.array([0.4, 0.2, 0.9, 3.0, 0.0])
    tables = denom.log_denominator_tables(a, sbar, c_lo, c_hi)
    c = c_lo[:, None] + (c_hi - c_lo)[:, None] * rng.uniform(-0.05, 1.05, size=(rows, 300))
    value, slope = denom.evaluate_log_denominator(tables, c), denom.evaluate_log_denominator_slope(tables, c)
    for r in range(rows):
        one = denom.log_denominator_table(a[r], sbar[r], float(c_lo[r]), float(c_hi[r]))
        nodes = slice(tables.start[r], tables.start[r] + tables.size[r])
        for ours, theirs in zip((tables.grid, tables.value, tables.slope), one):
            np.testing.assert_array_equal(ours[nodes], theirs)
        np.testing.assert_array_equal(value[r], denom.evaluate_log_denominator(one, c[r]))
        np.testing.assert_array_equal(slope[r], denom.evaluate_log_denominator_slope(one, c[r]))
        np.testing.assert_array_equal(
            denom.exact_log_denominator(a[r][None].repeat(300, 0), sbar[r][None].repeat(300, 0), c[r]),
            denom.exact_log_denominator(a[r], sbar[r], c[r]),
        )
    assert tables.size[1] == 2 and tables.size[3] > 100


def test_cubic_hermite_slope_is_its_basis_term_by_term():
    """The slope shares its basis' terms; the numbers are those of the four derivatives written out."""
    rng = np.random.default_rng(2)
    n = 100_000
    t = np.concatenate([rng.uniform(size=n - 4), [0.0, 1.0, 0.5, 1e-14]])
    width, f0, d0, f1, d1 = (rng.uniform(0.01, 1.0, n), *(rng.normal(size=(4, n)) * 10.0 ** rng.uniform(-4, 3, (4, n))))
    written_out = (
        ((6 * t * t - 6 * t) * f0 + (-6 * t * t + 6 * t) * f1) / width
        + (3 * t * t - 4 * t + 1) * d0
        + (3 * t * t - 2 * t) * d1
    )
    np.testing.assert_array_equal(denom.cubic_hermite_slope(t, width, f0, d0, f1, d1), written_out)


TERMS = denom.taylor_terms(300, 1e-6)


@pytest.fixture(scope="module")
def denominator():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, bins = denom.log_denominator(a, s, c, TERMS)
    return pytensor.function([a, s, c], [value, bins], mode=FAST)


def test_taylor_terms_meet_the_tolerance():
    for firms, tolerance in ((688, 1e-6), (6880, 1e-6), (100_000, 1e-9)):
        terms = denom.taylor_terms(firms, tolerance)
        assert 2 * firms * denom.taylor_relative_error(terms) <= tolerance / 2
        assert 2 * firms * denom.taylor_relative_error(terms - 1) > tolerance / 2
    x = np.linspace(-denom.TAYLOR_RADIUS, denom.TAYLOR_RADIUS, 10_001)
    partial = sum(x**j / math.factorial(j) for j in range(8))
    assert np.max(np.abs(partial - np.exp(x)) / np.exp(x)) <= denom.taylor_relative_error(8)


# gamma up to 50 and alpha spreads up to 20, far beyond where a sampler goes, over every county
DENOMINATOR_CASES = {
    "gamma": st.floats(-50.0, 50.0),
    "spread": st.floats(0.0, 20.0),
    "halflife": st.floats(0.5, 5000.0),
    "seed": st.integers(0, 2**16),
}


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
    exact = denom.exact_log_denominator(a, sbar, c)
    error = np.sum(np.abs(got - exact))
    assert error <= 5e-7, f"sum error {error:.3g} with {bins} bins (gamma {gamma}, spread {spread}, h {halflife})"
    assert bins == min(denom.bins_needed(np.max(np.abs(c)), np.ptp(sbar)), denom.MAX_DYNAMIC_BINS)


def test_denominator_uses_few_bins_at_the_papers_values(denominator, all_counties):
    rng = np.random.default_rng(1)
    sbar = kernel.choice_spillover(all_counties, 59.0)
    c = 0.053 * rng.normal(-0.05, 0.64, 300)
    got, bins = denominator(rng.normal(size=len(sbar)), sbar, c)
    assert bins == 1


def test_denominator_with_equal_firms_and_a_flat_field(denominator):
    """gamma = 0 (all c_i = 0) and a constant Sbar: one bin of width 0, no 0/0 in value or gradient."""
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, _ = denom.log_denominator(a, s, c, TERMS)
    grad = pytensor.grad(value.sum(), [a, s, c])
    f = pytensor.function([a, s, c], [value, *grad], mode=FAST)
    a0 = np.array([0.3, -1.0, 2.0])
    for sbar, c in ((np.array([1.0, 2.0, 5.0]), np.zeros(4)), (np.full(3, 2.0), np.array([0.5, -1.0]))):
        out = f(a0, sbar, c)
        np.testing.assert_allclose(out[0], denom.exact_log_denominator(a0, sbar, c), rtol=1e-13)
        assert all(np.all(np.isfinite(g)) for g in out[1:])


@pytest.fixture(scope="module")
def fixed_denominator():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value, bins = denom.log_denominator(a, s, c, TERMS, fixed_bins=4)
    return pytensor.function([a, s, c], [value, bins], mode=FAST)


@pytest.mark.parametrize("gamma", [0.0, 0.05, 0.5, 5.0, 50.0])
def test_fixed_bins_certify_or_fall_back_to_the_direct_sum(fixed_denominator, all_counties, gamma):
    rng = np.random.default_rng(5)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a, c = rng.normal(0.0, 2.0, len(sbar)), gamma * rng.normal(0.0, 1.0, 200)
    got, bins = fixed_denominator(a, sbar, c)
    assert np.sum(np.abs(got - denom.exact_log_denominator(a, sbar, c))) <= 5e-7
    needed = denom.bins_needed(np.max(np.abs(c)), np.ptp(sbar))
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
    value, bins = denom.log_denominator(a, s, c, TERMS, fixed_bins)
    fn = pytensor.function([a, s, c], [value, bins, pt.grad(value.sum(), c)], mode=FAST)
    rng = np.random.default_rng(9)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a_values = rng.normal(0.0, 2.0, len(sbar))
    c_values = 0.05 * rng.normal(size=200)
    c_values[[3, 50, 120]] = [1e6, -3e4, 250.0]
    got, used, grad = fn(a_values, sbar, c_values)
    assert used == (denom.MAX_DYNAMIC_BINS if fixed_bins is None else 0)
    assert np.sum(np.abs(got - denom.exact_log_denominator(a_values, sbar, c_values))) <= 5e-7
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, _softmax_mean(a_values, sbar, c_values), rtol=1e-6, atol=1e-9)


ROW_ERROR = 1e-10


TEST_TABLE_NODES = 256  # the cap in the tables below: both paths in few seconds of Python mode


@pytest.fixture(scope="module")
def tabulated():
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(denom, "MAX_TABLE_NODES", TEST_TABLE_NODES)
        value = denom.tabulated_log_denominator(a, s, c, ROW_ERROR)
        dc, _, size = denom.table_lattice(ROW_ERROR, pt.max(s) - pt.min(s), pt.min(c), pt.max(c))
    return pytensor.function([a, s, c], [value, dc, size, *pt.grad(value.sum(), [a, s, c])], mode=FAST)


@settings(max_examples=60, deadline=None)
@given(**DENOMINATOR_CASES, rows=st.integers(1, 400))
def test_tabulated_denominator_within_its_bound(tabulated, all_counties, gamma, spread, halflife, rows, seed):
    """Every row within ROW_ERROR of the direct sum wherever TEST_TABLE_NODES points of the finest
    spacing hold the rows, else within (dc R)^4 / 3072 at the coarser lattice; a finite gradient."""
    a, sbar, c = _denominator_case(all_counties, gamma, spread, halflife, rows, seed)
    got, dc, size, *grads = tabulated(a, sbar, c)
    s_range = sbar.max() - sbar.min()
    fine = 2.0 ** np.floor(np.log2((denom.CUBIC_ERROR_DENOMINATOR * ROW_ERROR) ** 0.25 / max(s_range, 1e-12)))
    bound = ROW_ERROR if dc == fine else (dc * s_range) ** 4 / denom.CUBIC_ERROR_DENOMINATOR
    error = np.max(np.abs(got - denom.exact_log_denominator(a, sbar, c)))
    assert error <= bound, f"max row error {error:.3g} > {bound:.3g} (gamma {gamma}, spread {spread}, h {halflife})"
    assert size <= TEST_TABLE_NODES
    if (c.max() - c.min()) / fine <= TEST_TABLE_NODES - 3:
        assert dc == fine, "the finest lattice holds these rows"
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_table_spacing_is_the_widest_power_of_two_within_the_bound():
    r = pt.dscalar("r")
    spacing = pytensor.function([r], denom.table_spacing(ROW_ERROR, r), mode=FAST)
    for s_range in (1e-3, 0.37, 1.0, 1.2, 55.0, 3e4):
        dc = float(spacing(s_range))
        assert math.log2(dc) == int(math.log2(dc))
        assert (
            (dc * s_range) ** 4 / denom.CUBIC_ERROR_DENOMINATOR
            <= ROW_ERROR
            < (2 * dc * s_range) ** 4 / denom.CUBIC_ERROR_DENOMINATOR
        )
    assert np.isfinite(spacing(0.0))  # a flat field: one wide interval, LSE linear in c


def test_cubic_error_bound_holds_where_the_fourth_cumulant_is_largest():
    """Two counties (the fourth cumulant's extremes are two-point laws): the interpolant's largest
    error over a fine grid stays below (dc R)^4 / 3072 and reaches a good part of it."""
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    fn = pytensor.function([a, s, c], denom.tabulated_log_denominator(a, s, c, 1e-4), mode=FAST)
    sbar = np.array([0.0, 1.0])
    dc = 2.0 ** math.floor(math.log2((denom.CUBIC_ERROR_DENOMINATOR * 1e-4) ** 0.25))
    c = np.linspace(-12.0, 12.0, 200_001)
    error = np.max(np.abs(fn(np.zeros(2), sbar, c) - denom.exact_log_denominator(np.zeros(2), sbar, c)))
    bound = dc**4 / denom.CUBIC_ERROR_DENOMINATOR
    assert 0.05 * bound < error <= bound, f"error {error:.3g}, bound {bound:.3g}"


def test_tabulated_gradient_is_the_gradient_of_the_interpolant(tabulated, all_counties):
    rng = np.random.default_rng(12)
    sbar = kernel.choice_spillover(all_counties, 80.0)
    a, c = rng.normal(0.0, 1.0, len(sbar)), 0.7 * rng.normal(size=50)
    _, _, _, grad_a, grad_s, grad_c = tabulated(a, sbar, c)
    step = 1e-6
    for values, grad, index in ((a, grad_a, 0), (sbar, grad_s, 1), (c, grad_c, 2)):
        direction = rng.normal(size=values.size)
        args = [a, sbar, c]
        up, down = list(args), list(args)
        up[index], down[index] = values + step * direction, values - step * direction
        numeric = (tabulated(*up)[0].sum() - tabulated(*down)[0].sum()) / (2 * step)
        assert numeric == pytest.approx(grad @ direction, rel=1e-6, abs=1e-8), index


def test_rows_beyond_the_table_coarsen_its_lattice(all_counties, monkeypatch):
    """Where the rows' c span more than MAX_TABLE_NODES points (a diverging trajectory, the first
    steps of warm-up at 30 times the paper's firms), the lattice doubles until they fit: the table
    keeps its size, every row its bound at the coarser spacing, and the gradient stays the
    softmax mean of Sbar to that accuracy."""
    monkeypatch.setattr(denom, "MAX_TABLE_NODES", 8)
    a, s, c = pt.dvector("a"), pt.dvector("s"), pt.dvector("c")
    value = denom.tabulated_log_denominator(a, s, c, ROW_ERROR)
    dc, _, size = denom.table_lattice(ROW_ERROR, pt.max(s) - pt.min(s), pt.min(c), pt.max(c))
    fn = pytensor.function([a, s, c], [value, pt.grad(value.sum(), c), dc, size], mode=FAST)
    rng = np.random.default_rng(13)
    sbar = kernel.choice_spillover(all_counties, 300.0)
    a_values, c_values = rng.normal(0.0, 2.0, len(sbar)), 0.05 * rng.normal(size=100)
    c_values[[4, 60]] = [1e5, 30.0]
    got, grad, spacing, points = fn(a_values, sbar, c_values)
    bound = (spacing * (sbar.max() - sbar.min())) ** 4 / denom.CUBIC_ERROR_DENOMINATOR
    assert points <= 8 and spacing * (points - 1) >= c_values.max() - c_values.min()
    assert np.max(np.abs(got - denom.exact_log_denominator(a_values, sbar, c_values))) <= bound
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("rows", [40, 5_000])
def test_rows_within_their_error_from_a_table_or_the_direct_sum(all_counties, rows):
    """The pointwise log-likelihood's denominators: a table where it takes fewer nodes than a
    quarter of the rows (here the 5,000 rows), else the direct sum (the 40), within row_error."""
    rng = np.random.default_rng(21)
    sbar = kernel.choice_spillover(all_counties, 60.0)
    a, c = rng.normal(0.0, 2.0, len(sbar)), 0.3 * rng.normal(size=rows)
    exact = denom.exact_log_denominator(a, sbar, c)
    for row_error in (1e-9, 1e-12):
        got = denom.log_denominator_within(a, sbar, c, row_error)
        assert np.max(np.abs(got - exact)) <= row_error
    assert (denom.log_denominator_within(a, sbar, c, 1e-9) == exact).all() == (rows == 40)
    flat = np.full(rows, 0.2)  # one value of c: no span to tabulate
    np.testing.assert_array_equal(
        denom.log_denominator_within(a, sbar, flat, 1e-9), denom.exact_log_denominator(a, sbar, flat)
    )
