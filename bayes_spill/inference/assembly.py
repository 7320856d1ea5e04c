"""The fit's DataTree in ArviZ's schema, from the sampler's draws, the data and the configuration.

``assemble`` gathers the posterior and sample_stats from the sampler, the log-likelihoods (per
firm for LOO, pointwise per observed variable), log_prior and prior for power-scaling
sensitivity, observed_data and constant_data, and the provenance attrs (versions, seed, hashes,
the rule that stopped sampling). docs/outputs.md lists the groups.
"""

from __future__ import annotations

import sys

import numpy as np
import pymc as pm
import xarray as xr

from bayes_spill import __version__
from bayes_spill.config import ModelConfig
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.inference import alpha_draws, precision
from bayes_spill.model import priors
from bayes_spill.model.likelihood import (
    BETA_NAMES,
    CHOSEN_COUNTY,
    FIRM,
    FIRM_LOGLIK,
    LOG_SALES,
    YEAR,
    ModelData,
    build_model,
    model_data,
    pointwise_loglik,
)

OBS, OBS_FIRM, OBS_YEAR = "obs", "obs_firm", "obs_year"
# The parameters with a prior of their own (alpha_i and the county effects are the hierarchical
# part of the model): the log_prior group that power-scaling scales, and the prior group's draws.
TOP_LEVEL_PRIORS = (
    "halflife_km",
    "gamma",
    "mu_alpha",
    "sigma_alpha",
    "alpha",
    "sigma_w",
    "county_delta",
    "county_tau",
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "year_effect",
)
PRIOR_DRAWS = 1000
PRIOR_STREAM = 18  # the random stream of the prior draws, beside the sampler's seed


def assemble(
    idata, data: ModelData, config: ModelConfig, data_hash: str, wall_seconds: float, model: pm.Model | None = None
):
    """The fit's DataTree in ArviZ's schema: posterior and sample_stats from the sampler; the
    per-firm joint log-likelihood (FIRM_LOGLIK, for LOO over firms) with the pointwise ones of
    each observed variable (``likelihood.pointwise_loglik``) in log_likelihood; log_prior (the
    priors at the posterior draws) and prior (draws of the model's own priors) for power-scaling
    sensitivity; observed_data, constant_data; group attributes as ArviZ writes them, provenance
    in the root's. data is the ModelData the model was built on (reused, not rebuilt); model the
    PyMC model sampled (rebuilt from them when not given).

    The prior draws have a random stream of their own (PRIOR_STREAM beside the sampler's seed),
    so they leave the posterior draws as they are."""
    panel = data.panel
    posterior = idata["posterior"].to_dataset()
    firm_loglik = posterior[FIRM_LOGLIK]
    posterior = posterior.drop_vars([FIRM_LOGLIK])
    if config.model.integrate_alpha:
        posterior = alpha_draws.with_alpha_draws(posterior, data, config.model, config.sampler.seed)
    model = model if model is not None else build_model(panel, config, data)
    rng = np.random.default_rng([config.sampler.seed, PRIOR_STREAM])
    groups = {
        "posterior": posterior,
        "sample_stats": idata["sample_stats"].to_dataset(),
        "log_likelihood": log_likelihood(posterior, firm_loglik, data, config),
        "log_prior": priors.log_prior(dict(config.priors), posterior, top_level_priors(config)),
        "prior": priors.prior_group(model, prior_group_names(config), PRIOR_DRAWS, rng),
        "observed_data": observed_data(panel, config),
        "constant_data": constant_data(panel, config, data),
    }
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    for name, group_attrs in schema_attrs(config.sampler.backend, wall_seconds).items():
        if name in tree.children:
            tree[name].attrs.update(group_attrs)
    tree.attrs.update(provenance(panel, config, data_hash, wall_seconds))
    tree.attrs.update(stopping_attrs(idata, config))
    return tree


def top_level_priors(config: ModelConfig) -> tuple[str, ...]:
    """TOP_LEVEL_PRIORS of this configuration: alpha only when homogeneous (latent alpha_i are
    drawn from Normal(mu_alpha, sigma_alpha), the hierarchical part)."""
    homogeneous = config.model.alpha == "homogeneous"
    return tuple(n for n in TOP_LEVEL_PRIORS if n != "alpha" or homogeneous)


def prior_group_names(config: ModelConfig) -> tuple[str, ...]:
    """The variables of the prior group: the top-level priors the model declares as random
    variables (the production coefficients carry theirs as a potential on a flat variable, which
    prior sampling cannot draw), and sigma_alpha^2."""
    drawn = tuple(n for n in top_level_priors(config) if n not in (*BETA_NAMES, "year_effect"))
    return (*drawn, "sigma_alpha2")


def log_likelihood(posterior: xr.Dataset, firm_loglik: xr.DataArray, data: ModelData, config: ModelConfig):
    """The log_likelihood group: FIRM_LOGLIK (firm) and, under the names of the observed variables,
    the pointwise terms of likelihood.pointwise_loglik on the observed variables' dimensions."""
    from bayes_spill.inference.draws import PosteriorDraws

    panel = data.panel
    draws = PosteriorDraws.from_posterior(posterior, panel.firms)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    dims = {LOG_SALES: (OBS,), CHOSEN_COUNTY: (FIRM,)}
    out = xr.Dataset({FIRM_LOGLIK: firm_loglik})
    for name, values in pointwise_loglik(data, config.model, draws).items():
        out[name] = (("chain", "draw", *dims[name]), values.reshape(*shape, *values.shape[1:]))
    return out.assign_coords(obs_coords(panel))


def schema_attrs(backend: str, wall_seconds: float) -> dict[str, dict]:
    """The attributes ArviZ's converters give each group (``arviz_base.make_attrs``: created_at,
    creation_library, its version and language), with the inference library that made the draws
    on the posterior and sample_stats (and their sampling time)."""
    from arviz_base import make_attrs

    library = {"nutpie": "nutpie", "numpyro": "numpyro"}.get(backend, "pymc")
    sampled = make_attrs({"sampling_time": float(wall_seconds)}, inference_library=_module(library))
    return {
        "posterior": sampled,
        "sample_stats": sampled,
        "prior": make_attrs(inference_library=pm),
        **{name: make_attrs() for name in ("log_likelihood", "log_prior", "observed_data", "constant_data")},
    }


def _module(name: str):
    import importlib

    return importlib.import_module(name)


def obs_coords(panel: PreparedPanel) -> dict:
    """The firm and the year of each firm-year, as coordinates of the observation dimension
    (named obs_firm and obs_year: firm and year are dimensions of their own in the same groups)."""
    return {
        OBS: np.arange(panel.n_obs),
        OBS_FIRM: (OBS, panel.firms[panel.obs_firm].astype(str)),
        OBS_YEAR: (OBS, panel.years[panel.obs_year].astype(int)),
    }


def stopping_attrs(idata, config: ModelConfig) -> dict:
    """Which rule stopped sampling (``precision.RULE_*``) and the draws per chain; under the ESS
    rule also the target and the worst bulk/tail ESS and R-hat reached over the key parameters;
    nutpie's compile and tuning times (``sampling_wall_seconds`` includes both)."""
    keys = (
        "stopping_rule",
        "ess_target",
        "ess_bulk_min",
        "ess_tail_min",
        "ess_reached_min",
        "rhat_max",
        "ess_checks",
        "compile_wall_seconds",
        "tuning_wall_seconds",
    )
    attrs = {key: idata.attrs[key] for key in keys if key in idata.attrs}
    attrs.setdefault("stopping_rule", precision.RULE_DRAWS)
    attrs["draws_per_chain"] = int(idata["posterior"].sizes["draw"])
    return attrs


def observed_data(panel: PreparedPanel, config: ModelConfig) -> xr.Dataset:
    """What the likelihood conditions on: log sales per firm-year and the chosen county per firm."""
    return xr.Dataset(
        {
            LOG_SALES: ((OBS,), panel.q),
            CHOSEN_COUNTY: ((FIRM,), panel.firm_fips.astype(str)),
        },
        coords={FIRM: panel.firms.astype(str), **obs_coords(panel)},
    )


def constant_data(panel: PreparedPanel, config: ModelConfig, data: ModelData | None = None) -> xr.Dataset:
    """Regressors and indices, so checks and counterfactuals can rebuild the likelihood."""
    data = data or model_data(panel, config)
    return xr.Dataset(
        {
            "log_capital": ((OBS,), panel.k),
            "log_employment": ((OBS,), panel.n),
            "log_rd_stock": ((OBS,), panel.r),
            "zero_rd": ((OBS,), panel.zero_rd),
            "rd_stock_mil": ((OBS,), panel.rd_stock),
            "sale": ((OBS,), panel.sale),
            "emp": ((OBS,), panel.emp),
            "ppent": ((OBS,), panel.ppent),
            "xrd": ((OBS,), panel.xrd),
            "choice_county": (("choice_county",), panel.counties.fips[data.spill.choice_set].astype(str)),
        },
        coords={**obs_coords(panel), YEAR: panel.years.astype(int)},
    )


def provenance(panel: PreparedPanel, config: ModelConfig, data_hash: str, wall_seconds: float) -> dict:
    import json

    import pymc
    import pytensor

    attrs = {
        "bayes_spill_version": __version__,
        "model_name": config.name,
        "model_config": config.to_toml(),
        "model_config_hash": config.hash(),
        "data_source": panel.source,
        "counties_source": panel.counties.source,
        "panel_settings": repr(panel.settings),
        "data_sha256": data_hash,
        "seed": int(config.sampler.seed),
        "sampler": config.sampler.backend,
        "sampling_wall_seconds": float(wall_seconds),
        "python_version": sys.version.split()[0],
        "pymc_version": pymc.__version__,
        "pytensor_version": pytensor.__version__,
        "numpy_version": np.__version__,
        "versions": json.dumps(versions(config.sampler.backend), sort_keys=True),
    }
    if panel.truth is not None:
        attrs["truth_parameters"] = repr(dict(panel.truth["parameters"]))
    return attrs


VERSIONED_PACKAGES = (
    "bayes_spill",
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "h5netcdf",
    "h5py",
    "arviz-base",
    "arviz-stats",
    "pyarrow",
)


def versions(backend: str | None = None) -> dict[str, str]:
    """Versions of Python and of every package a fit's numbers depend on (jax and numpyro too
    when they sample), read from the installed distributions' metadata."""
    from importlib.metadata import PackageNotFoundError, version

    names = [*VERSIONED_PACKAGES, *(("jax", "jaxlib", "numpyro") if backend == "numpyro" else ())]
    out = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    out["bayes_spill"] = __version__
    return out
