"""Fitting: data and configuration in, a ``FittedModel`` (the posterior DataTree and what it holds) out.

``fit()`` is what ``bayes-spill fit`` calls. It resolves the data and the model configuration,
builds the PyMC model, samples, assembles the DataTree in ArviZ's schema (posterior,
sample_stats, log_likelihood, log_prior, prior, observed_data, constant_data; docs/outputs.md)
with provenance attrs and, when given an output
folder, writes it atomically with a summary (see ``posterior_io.py``); it returns the tree as a
``results.FittedModel`` (``bayes_spill.fit`` wraps it as the public ``Fit``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pymc as pm
import xarray as xr
from threadpoolctl import threadpool_limits

from bayes_spill import __version__
from bayes_spill.config import (
    DEFAULT_MODEL,
    ModelConfig,
    default_model,
    default_model_reason,
    find_model_file,
    load_config,
    shipped_models,
)
from bayes_spill.data.datasets import DEFAULT_DATASET, dataset_path, load_dataset
from bayes_spill.data.inputs import load_panel
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference import alpha_draws, precision
from bayes_spill.model import preflight, priors
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

REPO_MODELS = shipped_models()
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


def resolve_config(model: str | Path | ModelConfig = DEFAULT_MODEL) -> ModelConfig:
    """A ModelConfig from an object, a TOML path, or a model's name (``config.find_model_file``)."""
    if isinstance(model, ModelConfig):
        return model
    return load_config(find_model_file(model))


def resolve_data(data, config: ModelConfig, counties=None) -> tuple[PreparedPanel, str]:
    """(panel, sha256 of the data) from None or the name of the embedded default, a panel file
    (CSV, CSV.gz, Parquet, Stata .dta), a pandas DataFrame, or a PreparedPanel.

    The hash is of the file's bytes for a file; for a DataFrame or a PreparedPanel, of the
    prepared panel written as CSV, so that a frame and the panel built from it hash alike.
    """

    def panel_sha256(panel: PreparedPanel) -> str:
        return hashlib.sha256(panel.to_frame().to_csv(index=False).encode()).hexdigest()

    if data is None or (isinstance(data, str) and data == DEFAULT_DATASET):
        return load_dataset(), _sha256(dataset_path())
    if isinstance(data, PreparedPanel):
        return data, panel_sha256(data)
    panel = load_panel(data, counties=counties, settings=config.panel)
    if isinstance(data, (str, os.PathLike)):
        return panel, _sha256(Path(data))
    return panel, panel_sha256(panel)  # a DataFrame


def resolve_model_and_data(model, data, counties=None) -> tuple[ModelConfig, PreparedPanel, str]:
    """(config, panel, sha256 of the data). model None: config.default_model for the panel's
    number of firms. The panel is read once, with the default model's panel settings: the
    candidates are one model in two formulations and share them (tests/test_config.py)."""
    config = resolve_config(DEFAULT_MODEL if model is None else model)
    panel, data_hash = resolve_data(data, config, counties)
    if model is None:
        config = resolve_config(default_model(panel.n_firms))
    return config, panel, data_hash


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compile_nutpie(model: pm.Model):
    """The model compiled for nutpie (numba): most of a small fit's time before the first draw."""
    import nutpie

    return nutpie.compile_pymc_model(model, backend="numba")


def sample(model: pm.Model, config: ModelConfig, progress: bool = True, compiled=None):
    """NUTS with the configured sampler; the seed comes from the configuration only.

    Parameters
    ----------
    model : pymc.Model
        The model to sample.
    config : ModelConfig
        Its ``sampler`` section says how. With ``sampler.ess > 0`` (nutpie only: ``fit`` turns
        it off for the other samplers) the chains continue until the key parameters reach it
        (``precision.sample_until``).
    progress : bool, default True
        Show the sampler's progress bar.
    compiled : optional
        ``compile_nutpie(model)`` when already made (nutpie only).

    Returns
    -------
    xarray.DataTree
        posterior and sample_stats; its attrs say which rule stopped sampling and what was
        reached (``precision.Reached.attrs``) when it was the ESS rule.
    """
    s = config.sampler
    cores = s.cores or min(s.chains, os.cpu_count() or 1)
    if s.backend == "nutpie":
        import nutpie

        start_compile = time.perf_counter()
        compiled = compiled if compiled is not None else compile_nutpie(model)
        compile_seconds = time.perf_counter() - start_compile
        counter = precision.DrawCounter()
        if s.ess:
            # nutpie starts the chains beyond `cores` only when the first have finished, and each
            # checkpoint of the ESS rule needs every chain: all run at once (their draws do not
            # depend on cores).
            cores = s.chains
        # One BLAS thread per chain: the chains are the parallelism, and BLAS threads inside
        # each of them only contend for the same cores (docs/performance.md, "BLAS threads").
        blas = threadpool_limits(1, user_api="blas")
        started = time.perf_counter()
        sampler = nutpie.sample(
            compiled,
            draws=s.max_draws if s.ess else s.draws,
            tune=s.tune,
            chains=s.chains,
            cores=cores,
            seed=s.seed,
            save_warmup=False,
            progress_bar=progress,
            target_accept=s.target_accept,
            adaptation=s.adaptation,
            blocking=False,
            progress_callback=counter,
        )
        # Blocking nutpie.sample returns the draws so far on Ctrl-C; a fit must not keep them.
        try:
            if not s.ess:
                idata, stopping = sampler.wait(), {}
            else:
                idata, stopping = precision.sample_until(
                    sampler, counter, s.tune, s.draws, s.ess, s.max_draws, report=_report_checkpoint
                )
        except BaseException:
            sampler.cancel()
            raise
        finally:
            blas.restore_original_limits()
        idata.attrs.update(stopping, compile_wall_seconds=compile_seconds)
        if counter.tuned_at is not None and cores >= s.chains:  # to the callback's resolution (0.1 s)
            idata.attrs["tuning_wall_seconds"] = counter.tuned_at - started
        return _require_complete(idata, config)
    if s.ess:
        raise BayesSpillError(f"sampling to an ESS target continues nutpie's chains; sampler {s.backend!r} cannot")
    if s.backend == "numpyro":
        try:
            import numpyro  # noqa: F401
        except ImportError:
            raise BayesSpillError("sampler 'numpyro' needs JAX and NumPyro: pip install 'bayes_spill[jax]'") from None
    idata = pm.sample(
        draws=s.draws,
        tune=s.tune,
        chains=s.chains,
        cores=cores,
        random_seed=s.seed,
        progressbar=progress,
        model=model,
        nuts_sampler=s.backend,
        target_accept=s.target_accept,
    )
    return _require_complete(idata, config)


def _report_checkpoint(line: str) -> None:
    print(f"precision: {line}", file=sys.stderr, flush=True)


def _require_complete(idata, config: ModelConfig):
    """The samplers catch Ctrl-C (and SIGTERM, which the CLI turns into it) and return the draws
    taken so far; a fit with fewer chains or draws than asked for is an interrupted one. A run
    stopped by the ESS rule holds the draws its attrs name, the same number in every chain."""
    sizes = idata["posterior"].sizes
    chains, draws = sizes.get("chain", 0), sizes.get("draw", 0)
    wanted = idata.attrs.get("draws_per_chain", config.sampler.draws)
    stats = idata["sample_stats"] if "sample_stats" in idata.children else {}
    padded = "logp" in stats and bool(np.isnan(stats["logp"].values).any())  # a chain that stopped early
    if chains != config.sampler.chains or draws != wanted or padded:
        raise KeyboardInterrupt(
            f"sampling was interrupted: {chains} chain(s) x {draws} draws of "
            f"{config.sampler.chains} x {wanted}; nothing is kept"
        )
    return idata


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


def fit(
    data=None,
    model: str | Path | ModelConfig | None = None,
    out: str | Path | None = None,
    out_root: str | Path | None = None,
    seed: int | None = None,
    chains: int | None = None,
    draws: int | None = None,
    tune: int | None = None,
    backend: str | None = None,
    counties=None,
    ess: int | None = None,
    progress: bool = True,
    report: bool = True,
):
    """Fit the joint model with NUTS; write the fit when given a folder.

    Parameters
    ----------
    data : str, pathlib.Path or PreparedPanel, optional
        A CSV/Parquet panel, or a prepared panel; None fits the embedded default dataset.
    model : str, pathlib.Path or ModelConfig, optional
        A TOML path, the name of a file in ``models/``, or a ModelConfig; None chooses
        ``config.default_model`` for the panel's number of firms (alpha_i integrated out up to
        ``config.LARGE_PANEL_FIRMS`` firms, latent above).
    out : str or pathlib.Path, optional
        The fit folder to write (posterior.nc, summary.csv, versions.json, atomically).
    out_root : str or pathlib.Path, optional
        Write to ``out_root/<model name>`` when ``out`` is not given (the command line's default).
    seed, chains, draws, tune : int, optional
        Override the configuration's sampler settings. ``draws`` fixes the number of draws per
        chain (it turns the configuration's ESS rule off).
    backend : str, optional
        Override the sampler: "nutpie", "pymc" or "numpyro".
    counties : str or pathlib.Path, optional
        A county table other than the built-in one.
    ess : int, optional
        Sample to a precision: continue the chains until every key parameter has bulk and tail
        ESS >= ess and R-hat <= 1.01 (or ``sampler.max_draws`` per chain); default the
        configuration's ``sampler.ess`` (0: exactly ``sampler.draws``). nutpie only. Not
        together with ``draws``. The posterior's attrs say which rule stopped sampling.
    progress : bool, default True
        Show the sampler's progress bar.
    report : bool, default True
        Print the parameter table and the sampler diagnostics.

    Returns
    -------
    FittedModel
        The posterior (``fitted.tree``) with its configuration, panel and draws; ``fitted.path``
        is the folder written, or None. ``bayes_spill.fit`` returns it as a ``Fit``.
    """
    from bayes_spill.inference import posterior_io
    from bayes_spill.inference import summary as reporting
    from bayes_spill.inference.results import FittedModel

    config, panel, data_hash = resolve_model_and_data(model, data, counties)
    if draws is not None and ess is not None:
        raise BayesSpillError("give draws (a fixed number per chain) or ess (a precision to sample to), not both")
    config = config.with_sampler(seed=seed, chains=chains, draws=draws, tune=tune, backend=backend, ess=ess)
    if config.sampler.ess and config.sampler.backend != "nutpie":
        if ess:
            raise BayesSpillError(
                f"--ess continues nutpie's chains; sampler {config.sampler.backend!r} cannot: use --draws with it"
            )
        print(
            f"note: sampler {config.sampler.backend!r} cannot continue chains to an ESS target: drawing "
            f"{config.sampler.draws} per chain (sampler.draws; --draws chooses)",
            file=sys.stderr,
        )
        config = config.with_sampler(ess=0)
    if model is None:
        print(f"model: {config.name} ({panel.n_firms} firms; {default_model_reason(panel.n_firms)})", flush=True)
    out = output_folder(out, out_root, config.name)
    if out is not None:
        posterior_io.require_writable(out)  # before sampling, not after an hour of it
    start = time.perf_counter()
    data = model_data(panel, config)
    pm_model = build_model(panel, config, data, static_shapes=config.sampler.backend == "numpyro")
    build_seconds = time.perf_counter() - start
    preflight.before_sampling(pm_model, data, config)  # degenerate-panel warnings; draws that cannot fit in memory
    start = time.perf_counter()
    idata = sample(pm_model, config, progress)
    tree = assemble(idata, data, config, data_hash, time.perf_counter() - start, model=pm_model)
    tree.attrs["build_wall_seconds"] = float(build_seconds)  # ModelData (tables, county fields) and the PyMC model
    if tree.attrs["stopping_rule"] == precision.RULE_MAX_DRAWS:
        print(
            f"warning: sampling stopped at sampler.max_draws = {config.sampler.max_draws} per chain before the key "
            f"parameters reached ESS {config.sampler.ess} (smallest bulk or tail ESS {tree.attrs['ess_reached_min']:.0f}, "
            f"R-hat up to {tree.attrs['rhat_max']:.3f}); raise max_draws in the model file to go on",
            file=sys.stderr,
        )
    if out is not None:
        posterior_io.save(tree, out)
    if report:
        print(reporting.fit_report(tree, panel.truth))
    return FittedModel(tree, path=out, counties=counties)


def output_folder(out, out_root, model_name: str) -> Path | None:
    """out, or out_root/<model name> when out is None and out_root is given."""
    if out is not None:
        return Path(out)
    return Path(out_root) / model_name if out_root is not None else None
