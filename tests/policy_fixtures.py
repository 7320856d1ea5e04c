"""Small simulated panels and fake fits (posterior draws at the truth) shared by the policy tests."""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayes_spill.model.likelihood import COUNTY, FIRM, FIRM_LOGLIK
from bayes_spill.model.simulate import SimulationSettings, simulate_industry

BAY = (("06085", 4.0), ("06081", 3.5), ("06001", 3.0), ("06075", 3.5), ("06087", 3.5))
PAPER_NEIGHBORS = ["06087", "06081", "06001", "06075"]


def small_panel(seed: int = 2, n_firms: int = 80):
    return simulate_industry(
        SimulationSettings(n_firms=n_firms, first_year=1996, last_year=2004, county_shift=BAY), seed=seed
    )


def fake_fit(panel, out_dir, n_draws: int = 40, seed: int = 0, model: str = "lychagin2010", gamma_sd: float = 0.05):
    """A stand-in for a fit: a posterior DataTree laid out as ``bayes-spill fit`` writes it, with
    draws scattered around the simulation's truth (no sampling, so CLI tests stay fast)."""
    from bayes_spill.inference import posterior_io
    from bayes_spill.inference.assembly import constant_data, observed_data, provenance
    from bayes_spill.inference.fitting import resolve_config
    from bayes_spill.model.likelihood import coords, model_data

    config = resolve_config(model)
    c = coords(model_data(panel, config))
    rng = np.random.default_rng(seed)
    truth = panel.truth["parameters"]
    shape = (2, n_draws // 2)
    dims = ("chain", "draw")

    def around(value, sd, extra=()):
        return value + sd * rng.standard_normal(shape + tuple(extra))

    alpha = np.array([panel.truth["alpha"][f] for f in c[FIRM]])
    effects = np.array([panel.truth["county_effect"][f] for f in c[COUNTY]])
    posterior = xr.Dataset(
        {
            "halflife_km": (dims, truth["halflife_km"] * np.exp(around(0.0, 0.1))),
            "gamma": (dims, around(truth["gamma"], gamma_sd)),
            "mu_alpha": (dims, around(truth["mu_alpha"], 0.05)),
            "sigma_alpha": (dims, np.abs(around(truth["sigma_alpha"], 0.05))),
            "alpha": ((*dims, FIRM), around(alpha[None, None, :], 0.1, (len(alpha),))),
            "county_effect": ((*dims, COUNTY), around(effects[None, None, :], 0.1, (len(effects),))),
        },
        coords={"chain": np.arange(shape[0]), "draw": np.arange(shape[1]), FIRM: c[FIRM], COUNTY: c[COUNTY]},
    )
    groups = {
        "posterior": posterior,
        "sample_stats": xr.Dataset({"diverging": (dims, np.zeros(shape, dtype=bool))}),
        "log_likelihood": xr.Dataset(
            {FIRM_LOGLIK: ((*dims, FIRM), -np.ones(shape + (len(alpha),)))}, coords={FIRM: c[FIRM]}
        ),
        "observed_data": observed_data(panel, config),
        "constant_data": constant_data(panel, config),
    }
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    tree.attrs.update(provenance(panel, config, "stand-in", 0.0))
    posterior_io.save(tree, out_dir)
    return out_dir
