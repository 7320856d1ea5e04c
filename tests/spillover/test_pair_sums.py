"""The compiled pair loops (pair_sums.py) against the numpy formulas they replace: the weights bit
for bit, the half-life table's sums to rounding, for a symmetric distance matrix (occupied
counties, the default choice set) and a rectangular one (all counties)."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_spill.model.simulate import SimulationSettings, simulate_industry
from bayes_spill.spillover import kernel, pair_sums
from bayes_spill.spillover.kernel import LN2, decay_weights

HALFLIVES = (0.01, 0.3, 7.0, 59.0, 800.0, 2.0e4, 1.0e5)


@pytest.fixture(scope="module")
def panel():
    return simulate_industry(SimulationSettings(n_firms=80, gamma=0.5), seed=11)


def _numpy_u_derivatives(distance, pool, h):
    """The formula build_halflife_table used before the compiled loops (numpy)."""
    z = LN2 * distance / h
    wp = decay_weights(distance, h) * pool
    return wp.sum(axis=1), (wp * z).sum(axis=1), (wp * (z * z - z)).sum(axis=1)


@pytest.mark.parametrize("choice_set", ["occupied", "all"])
def test_weights_and_sums_equal_numpy(panel, choice_set):
    inputs = kernel.spillover_inputs(panel, choice_set=choice_set)
    for distance, symmetric in (
        (inputs.production_distance, True),
        (inputs.choice_distance, choice_set == "occupied"),
    ):
        assert pair_sums.is_symmetric(distance) == symmetric
        for h in HALFLIVES:
            np.testing.assert_array_equal(pair_sums.decay_weights(distance, h, symmetric), decay_weights(distance, h))
            compiled = pair_sums.field_and_u_derivatives(distance, inputs.choice_pool, h, symmetric)
            for got, want in zip(compiled, _numpy_u_derivatives(distance, inputs.choice_pool, h)):
                np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * float(np.abs(want).max() + 1e-300))


def test_rectangular_matrix_is_not_symmetric():
    distance = np.array([[0.0, 3.0, 5.0], [3.0, 0.0, 4.0]])
    assert not pair_sums.is_symmetric(distance)
    assert not pair_sums.is_symmetric(np.array([[0.0, 3.0], [2.0, 0.0]]))
    np.testing.assert_array_equal(pair_sums.decay_weights(distance, 2.0, False), decay_weights(distance, 2.0))


@pytest.mark.parametrize("choice_set", ["occupied", "all"])
def test_tables_equal_the_numpy_build(panel, choice_set, monkeypatch):
    """The tables built with the compiled loops equal those the numpy formulas build: the field
    table bit for bit (same weights, same product), the half-life table to rounding."""
    from bayes_spill.spillover import interpolation

    inputs = kernel.spillover_inputs(panel, choice_set=choice_set)
    receiver, year = np.divmod(
        np.unique(inputs.obs_receiver * inputs.pool.shape[1] + inputs.obs_year), inputs.pool.shape[1]
    )
    compiled = (
        interpolation.build_halflife_table(inputs.choice_distance, inputs.choice_pool),
        interpolation.build_field_table(inputs.production_distance, inputs.pool, receiver, year),
    )
    monkeypatch.setattr(pair_sums, "decay_weights", lambda d, h, symmetric: decay_weights(d, h))
    monkeypatch.setattr(pair_sums, "field_and_u_derivatives", lambda d, p, h, symmetric: _numpy_u_derivatives(d, p, h))
    reference = (
        interpolation.build_halflife_table(inputs.choice_distance, inputs.choice_pool),
        interpolation.build_field_table(inputs.production_distance, inputs.pool, receiver, year),
    )
    table, want = compiled[0], reference[0]
    assert (table.nodes, table.du, table.error_bound) == (want.nodes, want.du, want.error_bound)
    for name in ("values", "d1", "d2"):
        got, ref = getattr(table, name), getattr(want, name)
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13 * float(np.abs(ref).max()))
    np.testing.assert_array_equal(table.far_values, want.far_values)
    field, want = compiled[1], reference[1]
    np.testing.assert_array_equal(field.coefficients, want.coefficients)
    np.testing.assert_array_equal(field.far_coefficients, want.far_coefficients)
    assert field.error_bound == want.error_bound
