"""alpha_i drawn back after sampling a model with alpha_i integrated out: one draw per firm from its
conditional posterior at every posterior draw (model/integrated.py holds the conditional law and
the exact sampler), so that checks and counterfactuals read ``alpha`` as from the latent model."""

from __future__ import annotations

import numpy as np

from bayes_spill.model import integrated
from bayes_spill.model.likelihood import choice_spillover


def with_alpha_draws(posterior, data, spec, seed: int):
    """The posterior (xarray Dataset of a fit with alpha integrated out) with "alpha" (chain, draw,
    firm) added: one draw from each firm's conditional posterior at every draw of theta. data is the
    model's ModelData, whose half-life table the model has already built."""
    spill = data.spill
    rng = np.random.default_rng([seed, integrated.ALPHA_STREAM])
    mean = posterior[integrated.ALPHA_PRODUCTION_MEAN]
    alpha = np.empty(mean.shape)
    gamma = posterior["gamma"].values if "gamma" in posterior else np.zeros(mean.shape[:2])
    for chain in range(mean.shape[0]):
        for draw in range(mean.shape[1]):
            sbar = choice_spillover(data, float(posterior["halflife_km"].values[chain, draw]), spec, np)
            alpha[chain, draw] = integrated.draw_alpha(
                rng,
                mean.values[chain, draw],
                posterior[integrated.ALPHA_PRODUCTION_SD].values[chain, draw],
                float(gamma[chain, draw]),
                posterior["county_effect"].values[chain, draw],
                sbar,
                spill.firm_choice,
            )
    return posterior.assign(alpha=mean.copy(data=alpha))
