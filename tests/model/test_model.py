"""The PyMC model: finite log-density and gradient for every variant, and the likelihood equal to
an independent numpy computation of the same formulas at the simulation's true parameters."""

from __future__ import annotations

import glob

import numpy as np
import pytest

from bayes_spill.config import load_config
from bayes_spill.model.likelihood import FIRM_LOGLIK, build_model, model_data
from bayes_spill.spillover import kernel

MODEL_FILES = sorted(glob.glob("models/*.toml"))
from modes import FAST, compiled_model, industry80, value_function  # noqa: E402  (Python mode, no fusion)


@pytest.fixture(scope="module")
def small_panel():
    return industry80()


def test_every_model_file_is_tested():
    names = {f.split("/")[-1] for f in MODEL_FILES}
    assert {
        "lychagin2010.toml",
        "homogeneous.toml",
        "no_sorting.toml",
        "log_spillover.toml",
        "all_counties.toml",
    } <= names


@pytest.mark.parametrize("path", MODEL_FILES)
def test_logp_and_gradient_finite_at_initial_point(path):
    model, logp_and_gradient = compiled_model(path)  # shared with test_interpolation.py
    logp, grad = logp_and_gradient(model.initial_point())
    assert np.isfinite(logp), f"{path}: logp {logp}"
    assert np.all(np.isfinite(grad)), f"{path}: non-finite gradient entries {np.flatnonzero(~np.isfinite(grad))}"


@pytest.mark.parametrize("path", MODEL_FILES)
def test_named_variables_and_dims(small_panel, path):
    config = load_config(path)
    model = build_model(small_panel, config)
    names = set(model.named_vars)
    assert {"halflife_km", "beta_k", "beta_l", "beta_r", "sigma_w", FIRM_LOGLIK} <= names
    # alpha_i integrated out: drawn back after sampling (tests/test_integrated.py), not in the model
    alpha = "alpha_production_mean" if config.model.integrate_alpha else "alpha"
    assert alpha in names and ("alpha" in names) != config.model.integrate_alpha
    if config.model.location_block:
        assert {"mu_alpha", "sigma_alpha", "county_effect"} <= names
        assert model.named_vars_to_dims[alpha] == ("firm",)
        assert model.named_vars_to_dims["county_effect"] == ("county",)
        assert ("gamma" in names) == config.model.sorting
        n_choice = len(small_panel.counties) if config.model.choice_set == "all" else len(small_panel.occupied)
        assert len(model.coords["county"]) == n_choice
    assert list(model.coords["firm"]) == small_panel.firms.tolist()
    assert list(model.coords["year"]) == small_panel.years.tolist()


def numpy_firm_loglik(panel, truth, county_effect, county_choice_set, gamma):
    """Independent numpy version of the per-firm log-likelihood (production + location)."""
    p = truth["parameters"]
    alpha = np.array([truth["alpha"][g] for g in panel.firms])
    inputs = kernel.spillover_inputs(panel)
    s_it = kernel.firm_year_spillover(inputs, p["halflife_km"])
    year_effect = np.array(
        [
            truth["year_effect"][str(y)] if str(y) in truth["year_effect"] else truth["year_effect"][y]
            for y in panel.years
        ]
    )
    year_effect = year_effect - year_effect[0]
    resid = (
        panel.q
        - p["beta_k"] * panel.k
        - p["beta_l"] * panel.n
        - p["beta_r"] * panel.r
        - p["beta_zero_rd"] * panel.zero_rd
        - alpha[panel.obs_firm] * s_it
        - year_effect[panel.obs_year]
    )
    loglik = np.zeros(panel.n_firms)
    for i in range(panel.n_firms):
        e = resid[panel.obs_firm == i]
        dev = e - e.mean()
        sw = p["sigma_w"]
        loglik[i] = -0.5 * (len(e) - 1) * np.log(2 * np.pi * sw**2) - 0.5 * np.sum(dev**2) / sw**2
    sbar = kernel.choice_spillover(inputs, p["halflife_km"])
    utility = county_effect[None, :] + gamma * alpha[:, None] * sbar[None, :]
    chosen = utility[np.arange(panel.n_firms), inputs.firm_choice]
    top = utility.max(axis=1)
    loglik += chosen - (top + np.log(np.exp(utility - top[:, None]).sum(axis=1)))
    return loglik


def test_pytensor_likelihood_equals_numpy_at_truth(small_panel):
    config = load_config("models/lychagin2010.toml")
    model = build_model(small_panel, config)
    truth = small_panel.truth
    p = truth["parameters"]
    data = model_data(small_panel, config)
    choice_fips = small_panel.counties.fips[data.spill.choice_set]
    county_effect = np.array([truth["county_effect"][f] for f in choice_fips])
    # county_effect = covariates @ delta + tau * raw: choose delta = 0, tau = 1, raw = the truth
    alpha = np.array([truth["alpha"][g] for g in small_panel.firms])
    year_effect = np.array([truth["year_effect"][y] for y in small_panel.years])
    year_effect = year_effect - year_effect[0]
    values = {
        "halflife_km": p["halflife_km"],
        "beta_k": p["beta_k"],
        "beta_l": p["beta_l"],
        "beta_r": p["beta_r"],
        "beta_zero_rd": p["beta_zero_rd"],
        "sigma_w": p["sigma_w"],
        "year_effect": year_effect,
        "mu_alpha": p["mu_alpha"],
        "sigma_alpha": p["sigma_alpha"],
        "alpha_raw": (alpha - p["mu_alpha"]) / p["sigma_alpha"],
        "gamma": p["gamma"],
        "county_delta": np.zeros(1),
        "county_tau": 1.0,
        "county_effect_raw": county_effect,
    }
    fn = model.compile_fn(model[FIRM_LOGLIK], inputs=[model[name] for name in values], point_fn=False, mode=FAST)
    got = fn(*values.values())
    expected = numpy_firm_loglik(small_panel, truth, county_effect, data.spill.choice_set, p["gamma"])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def _production_values(model, small_panel, coefficients):
    """A point whose production coefficients (beta, v_2..v_T) are the given ones, the rest at the initial point."""
    from bayes_spill.model.likelihood import production_whitening

    config = load_config("models/lychagin2010.toml")
    whitening = production_whitening(model_data(small_panel, config), config)
    point = model.initial_point()
    point["production_z"] = np.linalg.solve(whitening, coefficients)
    return point


def test_whitened_production_coefficients_leave_the_posterior_unchanged(small_panel):
    """logp differences between two values of (beta, v) are the likelihood's plus the configured
    Normal priors' differences: the linear map adds no Jacobian and the priors are kept."""
    from scipy import stats

    config = load_config("models/lychagin2010.toml")
    model = build_model(small_panel, config)
    logp = model.compile_logp(mode=FAST)
    loglik = value_function(model, model[FIRM_LOGLIK].sum())
    rng = np.random.default_rng(3)
    n = len(model.coords["production_coefficient"])
    first, second = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    p1, p2 = _production_values(model, small_panel, first), _production_values(model, small_panel, second)
    beta_sd = [config.prior(name).kwargs()["sigma"] for name in ("beta_k", "beta_l", "beta_r", "beta_zero_rd")]
    sd = np.array(beta_sd + [config.prior("year_effect").kwargs()["sigma"]] * (n - 4))
    prior = lambda c: stats.norm.logpdf(c, 0.0, sd).sum()  # noqa: E731
    expected = (loglik(p1) - loglik(p2)) + (prior(first) - prior(second))
    assert logp(p1) - logp(p2) == pytest.approx(expected, rel=1e-9, abs=1e-8)
    values = value_function(model, [model["beta_r"], model["year_effect"]])(p1)
    assert values[0] == pytest.approx(first[2], abs=1e-12)
    np.testing.assert_allclose(values[1], np.concatenate([[0.0], first[4:]]), atol=1e-12)


def test_whitening_makes_the_production_block_about_isotropic(small_panel):
    """At the true sigma_w the conditional posterior precision of (beta, v), mapped by W, is close
    to the identity, while in the original coordinates its condition number is large."""
    from bayes_spill.model.likelihood import production_design, production_whitening

    config = load_config("models/lychagin2010.toml")
    data = model_data(small_panel, config)
    design = production_design(data)
    precision = design.T @ design / small_panel.truth["parameters"]["sigma_w"] ** 2 + np.eye(design.shape[1])
    whitening = production_whitening(data, config)
    eigenvalues = np.linalg.eigvalsh(whitening.T @ precision @ whitening)
    original = np.linalg.eigvalsh(precision)
    assert original[-1] / original[0] > 20, original
    assert 0.5 < eigenvalues[0] and eigenvalues[-1] < 2.0, eigenvalues
