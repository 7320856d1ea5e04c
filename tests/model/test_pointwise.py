"""likelihood.pointwise_loglik, the log_likelihood group's pointwise terms after sampling: the
numbers of the formulas written out draw by draw, whatever the chunks of draws they are computed
in (POINTWISE_CHUNK). Simulated panel and parameter draws, no fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from bayes_spill import parallel
from bayes_spill.config import load_config
from bayes_spill.inference.draws import PosteriorDraws
from bayes_spill.model import likelihood
from bayes_spill.model.simulate import SimulationSettings, simulate_industry
from bayes_spill.model.within import within_firm
from bayes_spill.paper import LOG_2PI


@pytest.fixture(scope="module")
def case():
    panel = simulate_industry(SimulationSettings(n_firms=40, gamma=0.5), seed=3)
    config = load_config("models/integrated_alpha.toml")
    data = likelihood.model_data(panel, config)
    rng = np.random.default_rng(1)
    d, counties = 37, len(data.spill.choice_set)
    draws = PosteriorDraws(
        halflife_km=rng.uniform(20.0, 300.0, d),
        alpha=rng.normal(0.0, 0.6, (d, panel.n_firms)),
        beta=rng.normal(0.3, 0.1, (d, 4)),
        year_effect=rng.normal(0.0, 0.1, (d, len(panel.years))),
        sigma_w=rng.uniform(0.2, 0.5, d),
        gamma=rng.normal(0.0, 1.0, d),
        county_effect=rng.normal(0.0, 1.0, (d, counties)),
    )
    return data, config.model, draws


def test_pointwise_terms_are_the_formulas_draw_by_draw(case):
    data, spec, draws = case
    panel = data.panel
    out = likelihood.pointwise_loglik(data, spec, draws)
    share = ((data.years_per_firm - 1.0) / data.years_per_firm)[panel.obs_firm]
    choice = data.spill.firm_choice
    for k in range(draws.n_draws):
        h, sigma = float(draws.halflife_km[k]), draws.sigma_w[k]
        s_it = likelihood.production_spillover(data, h, spec, np)
        resid = (
            data.q
            - data.inputs @ draws.beta[k]
            - draws.alpha[k][panel.obs_firm] * s_it
            - draws.year_effect[k][panel.obs_year]
        )
        e = within_firm(resid, panel.obs_firm, data.years_per_firm)
        sales = -0.5 * share * (LOG_2PI + 2.0 * np.log(sigma)) - 0.5 * e**2 / sigma**2
        np.testing.assert_allclose(out[likelihood.LOG_SALES][k], sales, rtol=1e-6, atol=1e-6)  # float32
        logits = (
            draws.county_effect[k][None, :]
            + draws.gamma[k] * draws.alpha[k][:, None] * (likelihood.choice_spillover(data, h, spec, np)[None, :])
        )
        county = logits[np.arange(len(choice)), choice] - logsumexp(logits, axis=1)
        row_error = 0.5 * spec.likelihood_tolerance / panel.n_firms  # the model's share per firm
        np.testing.assert_allclose(out[likelihood.CHOSEN_COUNTY][k], county, rtol=0, atol=row_error)


@pytest.mark.parametrize("cores", [1, 3])
def test_pointwise_terms_do_not_depend_on_the_chunks_or_threads(case, monkeypatch, cores):
    data, spec, draws = case
    reference = likelihood.pointwise_loglik(data, spec, draws)
    monkeypatch.setattr(parallel, "workers", lambda limit=None: cores)
    for chunk in (1, 5, 1000):
        monkeypatch.setattr(likelihood, "POINTWISE_CHUNK", chunk)
        out = likelihood.pointwise_loglik(data, spec, draws)
        for name, values in reference.items():
            np.testing.assert_array_equal(out[name], values, err_msg=f"{name}, chunks of {chunk}")


@pytest.mark.parametrize("evaluation", ["interpolated", "exact"])
def test_sbar_rows_are_choice_spillover_at_each_half_life(case, evaluation):
    """choice_spillover_rows (one row per draw's half-life, after sampling) gives the numbers of
    choice_spillover called once per half-life, from the table and from the direct sums alike."""
    from dataclasses import replace

    data, spec, draws = case
    spec = replace(spec, evaluation=evaluation)
    rows = likelihood.choice_spillover_rows(data, draws.halflife_km, spec)
    assert rows.shape == (draws.n_draws, len(data.spill.choice_set))
    for h, row in zip(draws.halflife_km, rows):
        np.testing.assert_array_equal(row, likelihood.choice_spillover(data, float(h), spec, np))
