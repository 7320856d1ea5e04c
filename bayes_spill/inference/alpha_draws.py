"""alpha_i drawn back after sampling a model with alpha_i integrated out: one draw per firm from its
conditional posterior at every posterior draw (model/integrated.py holds the conditional law and
the exact sampler), so that checks and counterfactuals read ``alpha`` as from the latent model."""

from __future__ import annotations

import numpy as np

from bayes_spill.model import integrated
from bayes_spill.model.likelihood import choice_spillover_rows


def with_alpha_draws(posterior, data, spec, seed: int):
    """The posterior (xarray Dataset of a fit with alpha integrated out) with "alpha" (chain, draw,
    firm) added: one draw from each firm's conditional posterior at every draw of theta, the draws
    taken chain by chain from one random stream. data is the model's ModelData, whose half-life
    table the model has already built."""
    rng = np.random.default_rng([seed, integrated.ALPHA_STREAM])
    mean = posterior[integrated.ALPHA_PRODUCTION_MEAN]
    chains, draws, firms = mean.shape

    def stacked(name):  # (chain x draw, ...): chain-major, the order of the stream
        return posterior[name].values.reshape(chains * draws, -1)

    gamma = stacked("gamma")[:, 0].astype(float) if "gamma" in posterior else np.zeros(chains * draws)
    sbar = choice_spillover_rows(data, stacked("halflife_km")[:, 0].astype(float), spec)
    alpha = integrated.draw_alphas(
        rng,
        stacked(integrated.ALPHA_PRODUCTION_MEAN),
        stacked(integrated.ALPHA_PRODUCTION_SD),
        gamma,
        stacked("county_effect"),
        sbar,
        data.spill.firm_choice,
    )
    return posterior.assign(alpha=mean.copy(data=alpha.reshape(chains, draws, firms)))
