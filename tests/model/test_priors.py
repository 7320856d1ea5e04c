"""The one prior parametrisation (model/priors.py): PyMC's distributions, compared with their scipy
equivalents by density, quantiles, variance and the moments of pm.draw draws."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pymc as pm
import pytest
from scipy import stats
from scipy.special import polygamma

from bayes_spill.config import PRIOR_FAMILIES, Prior
from bayes_spill.model import priors

# every family a configuration may name, with the scipy distribution of the same parameters
CASES = [
    (Prior("Normal", (("mu", 0.3), ("sigma", 0.25))), stats.norm(loc=0.3, scale=0.25)),
    (Prior("HalfNormal", (("sigma", 2.0),)), stats.halfnorm(scale=2.0)),
    (Prior("LogNormal", (("mu", 4.08), ("sigma", 0.4))), stats.lognorm(s=0.4, scale=np.exp(4.08))),
    (Prior("Exponential", (("lam", 2.0),)), stats.expon(scale=0.5)),
    (Prior("Gamma", (("alpha", 3.0), ("beta", 2.0))), stats.gamma(a=3.0, scale=0.5)),  # PyMC's rate
    (Prior("StudentT", (("nu", 5.0), ("mu", -1.0), ("sigma", 1.5))), stats.t(df=5.0, loc=-1.0, scale=1.5)),
]


def test_every_configurable_family_is_covered():
    assert {p.family for p, _ in CASES} == set(PRIOR_FAMILIES)


@pytest.mark.parametrize("prior, reference", CASES, ids=[p.family for p, _ in CASES])
def test_density_quantiles_and_variance_match_scipy(prior, reference):
    dist = priors.PriorDistribution(prior)
    x = reference.ppf([0.05, 0.3, 0.5, 0.9])
    np.testing.assert_allclose(dist.pdf(x), reference.pdf(x), rtol=1e-7)
    np.testing.assert_allclose(dist.ppf([0.05, 0.3, 0.9]), reference.ppf([0.05, 0.3, 0.9]), rtol=1e-7)
    # to the accuracy of PyMC's log-densities (its StudentT's is 1e-8 at some scales)
    assert dist.var() == pytest.approx(reference.var(), rel=1e-8)
    np.testing.assert_allclose(pm.logp(priors.distribution(prior), x).eval(), reference.logpdf(x), rtol=1e-7, atol=1e-8)


def test_variance_of_the_log_and_a_prior_without_variance():
    assert priors.PriorDistribution(CASES[2][0]).var(log=True) == 0.4**2
    assert priors.PriorDistribution(CASES[4][0]).var(log=True) == pytest.approx(float(polygamma(1, 3.0)), rel=1e-9)
    assert priors.PriorDistribution(Prior("StudentT", (("nu", 2.0), ("mu", 0.0), ("sigma", 1.0)))).var() == np.inf
    with pytest.raises(ValueError, match="Normal prior takes values <= 0"):
        priors.PriorDistribution(CASES[0][0]).var(log=True)
    # the log of a Gamma(0.5, 2), whose density is unbounded at 0: Var log X = trigamma(0.5)
    assert priors.PriorDistribution(Prior("Gamma", (("alpha", 0.5), ("beta", 2.0)))).var(log=True) == pytest.approx(
        float(polygamma(1, 0.5)), rel=1e-9
    )


def test_a_quadrature_that_does_not_converge_is_an_error(monkeypatch):
    from scipy import integrate

    failed = lambda f, a, b, **kwargs: SimpleNamespace(success=np.array(False), integral=np.array(1.0))  # noqa: E731
    monkeypatch.setattr(integrate, "tanhsinh", failed)
    with pytest.raises(FloatingPointError, match="quadrature of the Gamma prior did not converge"):
        priors.PriorDistribution(CASES[4][0]).var()


def test_draws_have_the_scipy_moments_and_follow_the_seed():
    named = [(p.family, p) for p, _ in CASES]
    draws = priors.draw(named, np.random.default_rng(0), draws=20_000)
    for prior, reference in CASES:
        values = draws[prior.family]
        assert values.shape == (20_000,)
        # the mean within 5 standard errors, the median within 5% of the scale
        assert np.mean(values) == pytest.approx(reference.mean(), abs=5 * reference.std() / np.sqrt(20_000)), (
            prior.family
        )
        assert np.median(values) == pytest.approx(reference.median(), abs=0.05 * reference.std()), prior.family
        assert stats.kstest(values, reference.cdf).pvalue > 1e-4, prior.family
    one = priors.draw(named, np.random.default_rng(1))
    assert one == priors.draw(named, np.random.default_rng(1)) and all(isinstance(v, float) for v in one.values())
    assert one != priors.draw(named, np.random.default_rng(2))


def test_variables_in_a_model_are_the_configured_distributions():
    prior = CASES[4][0]
    with pm.Model() as model:
        priors.variable("g", prior)
    value = np.array(1.3)
    logp = model.compile_logp(jacobian=False)({"g_log__": np.log(value)})
    assert logp == pytest.approx(CASES[4][1].logpdf(1.3), rel=1e-7)


def test_draws_come_from_a_model_of_the_variables_the_joint_model_declares():
    named = [(p.family, p) for p, _ in CASES]
    model = priors.model_of(named)
    assert [v.name for v in model.free_RVs] == [name for name, _ in named]
    for name, prior in named:
        assert model[name].owner.op.name == priors.distribution(prior).owner.op.name
    # the same numbers as drawing the distributions one by one: calibration studies keep their draws
    one_by_one = pm.draw([priors.distribution(p) for _, p in named], draws=5, random_seed=np.random.default_rng(4))
    drawn = priors.draw(named, np.random.default_rng(4), draws=5)
    for (name, _), values in zip(named, one_by_one):
        np.testing.assert_array_equal(drawn[name], values)


def _model_with_a_flat_and_a_potential():
    """Like the joint model: a variable on a flat prior with its prior as a potential, beside
    variables with priors of their own."""
    with pm.Model(coords={"k": ["a", "b"]}) as model:
        for family, (prior, _) in zip(("Normal", "Gamma"), (CASES[0], CASES[4])):
            priors.variable(family.lower(), prior)
        priors.variable("vector", CASES[1][0], dims="k")
        z = pm.Flat("z")
        pm.Potential("z_prior", pm.logp(pm.Normal.dist(0.0, 1.0), z))
        pm.Deterministic("normal_squared", model["normal"] ** 2)
    return model


def test_the_prior_group_draws_the_model_own_variables_with_their_distributions():
    model = _model_with_a_flat_and_a_potential()
    group = priors.prior_group(
        model, ["normal", "gamma", "vector", "normal_squared", "absent"], 4000, np.random.default_rng(0)
    )
    assert set(group.data_vars) == {"normal", "gamma", "vector", "normal_squared"}
    assert group.sizes["chain"] == 1 and group.sizes["draw"] == 4000 and group["vector"].dims[-1] == "k"
    for name, (_, reference) in (("normal", CASES[0]), ("gamma", CASES[4])):
        assert stats.kstest(group[name].values.ravel(), reference.cdf).pvalue > 1e-4, name
    np.testing.assert_allclose(group["normal_squared"].values, group["normal"].values ** 2)
    again = priors.prior_group(model, ["normal"], 10, np.random.default_rng(0))["normal"].values
    assert np.array_equal(again, priors.prior_group(model, ["normal"], 10, np.random.default_rng(0))["normal"].values)


def test_log_prior_is_each_prior_density_at_the_posterior_draws():
    import xarray as xr

    rng = np.random.default_rng(2)
    posterior = xr.Dataset(
        {
            "normal": (("chain", "draw"), rng.normal(size=(2, 5))),
            "gamma": (("chain", "draw"), rng.gamma(2.0, size=(2, 5))),
            "year_effect": (
                ("chain", "draw", "year"),
                np.concatenate([np.zeros((2, 5, 1)), rng.normal(size=(2, 5, 3))], -1),
            ),
        },
        coords={"chain": [0, 1], "draw": np.arange(5), "year": [2000, 2001, 2002, 2003]},
    )
    given = {"normal": CASES[0][0], "gamma": CASES[4][0], "year_effect": CASES[0][0]}
    out = priors.log_prior(given, posterior, ["normal", "gamma", "year_effect", "absent"])
    assert set(out.data_vars) == {"normal", "gamma", "year_effect"}
    np.testing.assert_allclose(
        out["normal"].values, CASES[0][1].logpdf(posterior["normal"].values), rtol=1e-7, atol=1e-8
    )
    np.testing.assert_allclose(out["gamma"].values, CASES[4][1].logpdf(posterior["gamma"].values), rtol=1e-7, atol=1e-8)
    # the first year is the anchor (0 by construction), not a parameter
    free = posterior["year_effect"].values[..., 1:]
    np.testing.assert_allclose(out["year_effect"].values, CASES[0][1].logpdf(free).sum(-1), rtol=1e-7, atol=1e-8)
