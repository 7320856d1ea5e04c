"""inference/alpha_draws.py: alpha_i drawn back for every posterior draw of an integrated fit, all
draws at once (integrated.draw_alphas) in the stream's order: chain by chain, draw by draw, as
one call of integrated.draw_alpha per draw gives them. Synthetic posterior, no fit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import xarray as xr

from bayes_spill.inference import alpha_draws
from bayes_spill.model import integrated


def test_alpha_draws_are_one_draw_alpha_per_draw_in_chain_order(monkeypatch):
    rng = np.random.default_rng(0)
    chains, draws, firms, counties = 3, 4, 20, 12
    choice = rng.integers(0, counties, firms)
    pool = rng.gamma(1.0, 2.0, counties)

    def sbar_of(data, halflife, spec, backend):  # a field that moves with the half-life
        return pool * np.exp(-1.0 / halflife)

    def sbar_rows(data, halflives, spec):
        return np.stack([sbar_of(data, float(h), spec, np) for h in halflives])

    monkeypatch.setattr(alpha_draws, "choice_spillover_rows", sbar_rows)
    posterior = xr.Dataset(
        {
            integrated.ALPHA_PRODUCTION_MEAN: (("chain", "draw", "firm"), rng.normal(0, 0.5, (chains, draws, firms))),
            integrated.ALPHA_PRODUCTION_SD: (("chain", "draw", "firm"), rng.uniform(0.1, 0.6, (chains, draws, firms))),
            "gamma": (("chain", "draw"), rng.normal(1.0, 0.5, (chains, draws))),
            "halflife_km": (("chain", "draw"), rng.uniform(20, 200, (chains, draws))),
            "county_effect": (("chain", "draw", "county"), rng.normal(size=(chains, draws, counties))),
        }
    )
    data = SimpleNamespace(spill=SimpleNamespace(firm_choice=choice))
    alpha = alpha_draws.with_alpha_draws(posterior, data, spec=None, seed=4)["alpha"]
    assert alpha.dims == ("chain", "draw", "firm")
    stream = np.random.default_rng([4, integrated.ALPHA_STREAM])
    for c in range(chains):
        for d in range(draws):
            p = posterior.isel(chain=c, draw=d)
            expected = integrated.draw_alpha(
                stream,
                p[integrated.ALPHA_PRODUCTION_MEAN].values,
                p[integrated.ALPHA_PRODUCTION_SD].values,
                float(p["gamma"]),
                p["county_effect"].values,
                sbar_of(data, float(p["halflife_km"]), None, np),
                choice,
            )
            np.testing.assert_array_equal(alpha.values[c, d], expected)
