"""Numerics at the edges (tracker issue 8, part 4).

* The model's log-density and gradient are finite on a grid over the prior support: half-lives
  from 1 km to 5,000 km, gamma, mu_alpha, sigma_alpha and alpha far in their tails, for the level
  and the log-spillover variants, on a panel with some zero R&D pools and on one where every pool
  is zero (the log variant then sits on its floor).
* The numpy code paths (spillover kernel, simulator, input loading, model inputs) run with every
  floating-point error raised (``np.errstate(all="raise")``): no overflow, invalid operation,
  division by zero, nor underflow (the kernel's weights at h = 1 km and thousands of km used to
  underflow exp; see kernel.MIN_EXPONENT).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from modes import FAST, logp_and_gradient  # noqa: E402  (Python mode, no fusion)

from bayes_spill.config import load_config
from bayes_spill.data.inputs import load_panel
from bayes_spill.model.likelihood import build_model, model_data
from bayes_spill.model.simulate import SimulationSettings, simulate_industry, write_simulation
from bayes_spill.spillover import kernel

MODELS = Path(__file__).resolve().parents[2] / "models"
HALFLIVES_KM = np.geomspace(1.0, 5000.0, 9)
SETTINGS = SimulationSettings(n_firms=30, first_year=1996, last_year=2003, mean_years=5, zero_rd_share=0.3)


@pytest.fixture(scope="module")
def panel():
    with np.errstate(all="raise"):
        return simulate_industry(SETTINGS, seed=3)


@pytest.fixture(scope="module")
def zero_pool_panel():
    """No firm does R&D: every county pool, and so every spillover, is zero."""
    with np.errstate(all="raise"):
        panel = simulate_industry(replace(SETTINGS, zero_rd_share=1.0), seed=4)
    assert np.all(panel.rd_stock == 0)
    return panel


def tail_points(full: bool):
    """(gamma, mu_alpha, sigma_alpha, alpha_raw, sigma_w): the corners of a box far in the prior
    tails (gamma ~ Normal(0, 0.25): +-8 sd; mu_alpha, alpha_raw ~ Normal(0, 1): +-6 sd;
    sigma_alpha, sigma_w ~ HalfNormal(1): 1e-3 to 6), and the centre."""
    box = {
        "gamma": (-2.0, 2.0),
        "mu_alpha": (-6.0, 6.0),
        "sigma_alpha": (1e-3, 6.0),
        "alpha_raw": (-6.0, 6.0),
        "sigma_w": (1e-3, 6.0),
    }
    corners = list(itertools.product(*box.values()))
    if not full:
        corners = corners[:: len(corners) // 6]
    return [dict(zip(box, c)) for c in [(0.0, 0.0, 1.0, 0.0, 1.0), *corners]]


def check_model_on_grid(panel, model_file: str, full: bool) -> int:
    model = build_model(panel, load_config(MODELS / model_file))
    at = logp_and_gradient(model)
    names = {v.name for v in model.value_vars}
    start = model.initial_point()
    tried = 0
    for h in HALFLIVES_KM:
        for tails in tail_points(full):
            point = dict(start)
            point["halflife_km_log__"] = np.log(h)
            point["sigma_w_log__"] = np.log(tails["sigma_w"])
            if "mu_alpha" in names:
                point["mu_alpha"] = tails["mu_alpha"]
                point["sigma_alpha_log__"] = np.log(tails["sigma_alpha"])
                point["alpha_raw"] = np.full_like(start["alpha_raw"], tails["alpha_raw"])
            if "alpha" in names:
                point["alpha"] = tails["mu_alpha"]
            if "gamma" in names:
                point["gamma"] = tails["gamma"]
            value, grad = at(point)
            where = f"{model_file}: h = {h:.3g} km, {tails}"
            assert np.isfinite(value), f"log-density {value} at {where}"
            assert np.all(np.isfinite(grad)), f"non-finite gradient at {where}"
            tried += 1
    return tried


@pytest.mark.parametrize("model_file", ["lychagin2010.toml", "log_spillover.toml"])
def test_logp_and_gradient_finite_over_the_prior_support(panel, model_file):
    assert check_model_on_grid(panel, model_file, full=False) > 0


def test_log_spillover_with_zero_pools(zero_pool_panel):
    assert check_model_on_grid(zero_pool_panel, "log_spillover.toml", full=False) > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_file",
    ["lychagin2010.toml", "log_spillover.toml", "homogeneous.toml", "no_sorting.toml", "all_counties.toml"],
)
def test_logp_and_gradient_finite_on_the_full_grid(panel, zero_pool_panel, model_file):
    tried = check_model_on_grid(panel, model_file, full=True)
    tried += check_model_on_grid(zero_pool_panel, model_file, full=True)
    print(f"\n{model_file}: {tried} grid points")


# -- numpy paths with every floating-point error raised ---------------------------------------------
@pytest.mark.parametrize("choice_set", ["occupied", "all"])
def test_kernel_raises_no_floating_point_error(panel, zero_pool_panel, choice_set):
    with np.errstate(all="raise"):
        for p in (panel, zero_pool_panel):
            inputs = kernel.spillover_inputs(p, choice_set=choice_set)
            for h in HALFLIVES_KM:
                s_it = kernel.firm_year_spillover(inputs, h)
                sbar = kernel.choice_spillover(inputs, h)
                for values in (s_it, sbar, kernel.transform(s_it, "log", 1e-3), kernel.transform(sbar, "log", 1e-3)):
                    assert np.all(np.isfinite(values))


def test_weights_are_exact_above_the_cutoff_and_zero_below():
    distance = np.array([0.0, 1.0, 100.0, 865.0, 866.0, 8000.0])
    with np.errstate(all="raise"):
        weights = kernel.decay_weights(distance, 1.0)
    exponent = -kernel.LN2 * distance
    kept = exponent > kernel.MIN_EXPONENT
    np.testing.assert_array_equal(weights[kept], np.exp(exponent[kept]))
    assert np.all(weights[~kept] == 0.0) and weights[0] == 1.0


def test_the_pytensor_kernel_gradient_is_finite_at_short_half_lives():
    import pytensor
    import pytensor.tensor as pt

    h = pt.dscalar("h")
    distance = np.array([[0.0, 10.0, 900.0, 8000.0]])
    pool = np.array([1.0, 2.0, 3.0, 4.0])
    field = kernel.spillover_field(distance, pool, h, pt)
    f = pytensor.function([h], [field.sum(), pytensor.grad(field.sum(), h)], mode=FAST)
    for value in HALFLIVES_KM:
        total, grad = f(value)
        assert np.isfinite(total) and np.isfinite(grad), value


@pytest.mark.parametrize("halflife_km, gamma", [(1.0, 0.0), (5000.0, 3.0), (59.0, -3.0)])
def test_simulate_load_and_model_inputs_raise_no_floating_point_error(tmp_path, halflife_km, gamma):
    settings = SimulationSettings(
        n_firms=15,
        first_year=2000,
        last_year=2005,
        mean_years=4,
        halflife_km=halflife_km,
        gamma=gamma,
        zero_rd_share=0.3,
    )
    config = load_config(MODELS / "lychagin2010.toml")
    with np.errstate(all="raise"):
        panel = simulate_industry(settings, seed=2)
        csv_path, _ = write_simulation(panel, tmp_path)
        loaded = load_panel(csv_path)
        data = model_data(loaded, config)
    assert np.all(np.isfinite(loaded.sale)) and np.all(np.isfinite(data.county_covariates))
    np.testing.assert_allclose(loaded.sale, panel.sale, rtol=1e-15)
