"""The joint model fitted inside a replicate of either study, and its sampler diagnostics."""

from __future__ import annotations

import time

import numpy as np


def fit_joint(panel, model_toml: str, seed: int):
    from bayes_spill.config import parse_config
    from bayes_spill.inference.fitting import fit

    config = parse_config(model_toml, source="calibration study")
    start = time.perf_counter()
    tree = fit(data=panel, model=config, seed=seed, progress=False, report=False).tree
    return tree, time.perf_counter() - start


def fit_diagnostics(tree, names) -> dict:
    import arviz_stats as azs

    post = tree["posterior"].to_dataset()[[n for n in names if n in tree["posterior"]]]
    with np.errstate(invalid="ignore", divide="ignore"):
        rhat = azs.rhat(post)
        ess = azs.ess(post, method="bulk")
    return {
        "rhat": {n: float(rhat[n]) for n in post.data_vars},
        "ess_bulk": {n: float(ess[n]) for n in post.data_vars},
        "divergences": int(tree["sample_stats"]["diverging"].sum()) if "diverging" in tree["sample_stats"] else 0,
    }
