"""Fitting: data and configuration in, a ``FittedModel`` (the posterior DataTree and what it holds) out.

``fit()`` is what ``bayes-spill fit`` calls. It resolves the data and the model configuration,
builds the PyMC model, samples, assembles the DataTree in ArviZ's schema (posterior,
sample_stats, log_likelihood, log_prior, prior, observed_data, constant_data; docs/outputs.md)
with provenance attrs and, when given an output
folder, writes it atomically with a summary (see ``posterior_io.py``); it returns the tree as a
``results.FittedModel`` (``bayes_spill.fit`` wraps it as the public ``Fit``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pymc as pm
import pytensor
from pymc.model.fgraph import fgraph_from_model, model_from_fgraph
from pytensor.graph.basic import Constant
from threadpoolctl import threadpool_limits

from bayes_spill.config import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_REASON,
    ModelConfig,
    find_model_file,
    load_config,
    shipped_models,
)
from bayes_spill.data.datasets import DEFAULT_DATASET, dataset_path, load_dataset
from bayes_spill.data.inputs import load_panel
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference import precision
from bayes_spill.inference.assembly import assemble
from bayes_spill.model import preflight
from bayes_spill.model.likelihood import build_model, model_data

REPO_MODELS = shipped_models()


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
    if data is None or (isinstance(data, str) and data == DEFAULT_DATASET):
        return load_dataset(), _sha256(dataset_path())
    if isinstance(data, PreparedPanel):
        return data, data.content_sha256
    panel = load_panel(data, counties=counties, settings=config.panel)
    if isinstance(data, (str, os.PathLike)):
        return panel, _sha256(Path(data))
    return panel, panel.content_sha256  # a DataFrame


def resolve_model_and_data(model, data, counties=None) -> tuple[ModelConfig, PreparedPanel, str]:
    """(config, panel, sha256 of the data). model None: config.DEFAULT_MODEL."""
    config = resolve_config(DEFAULT_MODEL if model is None else model)
    panel, data_hash = resolve_data(data, config, counties)
    return config, panel, data_hash


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# The last nutpie model compiled in this process, with its ModelData and PyMC model: a second fit
# of the same model and data (another seed, other draws or chains) samples at once instead of
# compiling again (32-39 s of CPU for a small model; docs/performance.md). Kept to one: the
# compiled model holds its data.
_COMPILED: dict[str, tuple] = {}


def compiled_key(panel: PreparedPanel, config: ModelConfig) -> str:
    """What a compiled model depends on: the configuration less its sampler settings (nutpie
    only), the panel's data (``PreparedPanel.content_sha256``: the same data from a CSV or a
    Stata file share one compiled model) and the county table."""
    canonical = {k: v for k, v in config.to_dict().items() if k not in ("name", "description", "sampler")}
    canonical["backend"] = config.sampler.backend
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode())
    digest.update(panel.content_sha256.encode())
    counties = panel.counties
    digest.update("|".join(map(str, counties.fips)).encode())
    for values in (counties.lat, counties.lon, *(counties.covariates[k] for k in sorted(counties.covariates))):
        digest.update(np.asarray(values, dtype=float).tobytes())
    digest.update(",".join(sorted(counties.covariates)).encode())
    return digest.hexdigest()


def _build(panel: PreparedPanel, config: ModelConfig) -> tuple:
    """(ModelData, PyMC model, None): the model before it is compiled."""
    data = model_data(panel, config)
    return data, build_model(panel, config, data, static_shapes=config.sampler.backend == "numpyro"), None


# Arrays this large stay out of the compiled code (smaller ones are shapes and index lists).
SHARED_DATA_MIN_BYTES = 100_000


def with_data_as_inputs(model: pm.Model, min_bytes: int = SHARED_DATA_MIN_BYTES) -> pm.Model:
    """The same model with its data arrays as shared variables instead of constants.

    numba cannot cache a function that embeds an array over 1 MB (a dynamic global), so a model
    whose data enter as constants compiles from scratch in every process. As shared variables
    nutpie passes the arrays at run time, and the compiled code, which then does not depend on the
    data, comes from PyTensor's on-disk cache the next time (in another process, or for other data
    of the same structure). Shape-1 axes keep their broadcasting."""
    fgraph, _ = fgraph_from_model(model, inlined_views=True)
    replacements = [
        (variable, pytensor.shared(variable.data, shape=variable.type.shape))
        for variable in fgraph.variables
        if isinstance(variable, Constant)
        and isinstance(variable.data, np.ndarray)
        and variable.data.ndim > 0
        and variable.data.nbytes >= min_bytes
    ]
    fgraph.replace_all(replacements, import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def compile_nutpie(model: pm.Model):
    """The model compiled for nutpie (numba), its data passed at run time so that the compiled code
    is cached on disk: most of a small fit's time before the first draw, the first time."""
    from bayes_spill.inference import nutpie_cache

    return nutpie_cache.compile_pymc_model(with_data_as_inputs(model))


def sample(model: pm.Model, config: ModelConfig, progress: bool = True, compiled=None, on_compiled=None):
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
    on_compiled : callable, optional
        Called with the compiled model when this call compiles one (``fit`` keeps it for a refit).

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
        if compiled is None:
            compiled = compile_nutpie(model)
            if on_compiled is not None:
                on_compiled(compiled)
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
                    sampler, counter, s.tune, s.first_batch, s.ess, s.max_draws, report=_report_checkpoint
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
        A TOML path, the name of a file in ``models/``, or a ModelConfig; None fits
        ``config.DEFAULT_MODEL`` (alpha_i integrated out).
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
        print(f"model: {config.name} ({panel.n_firms} firms; {DEFAULT_MODEL_REASON})", flush=True)
    out = output_folder(out, out_root, config.name)
    if out is not None:
        posterior_io.require_writable(out)  # before sampling, not after an hour of it
    start = time.perf_counter()
    key = compiled_key(panel, config)
    reused = key in _COMPILED
    data, pm_model, compiled = _COMPILED[key] if reused else _build(panel, config)
    if reused:
        data = data.with_panel(panel)  # the same data; this fit's source goes into its provenance
    build_seconds = time.perf_counter() - start
    config = preflight.before_sampling(pm_model, data, config)  # warnings; memory for the draws
    start = time.perf_counter()

    def remember(new):
        _COMPILED.clear()  # one model per process: a compiled model holds its data
        _COMPILED[key] = (data, pm_model, new)

    idata = sample(pm_model, config, progress, compiled=compiled, on_compiled=remember)
    tree = assemble(idata, data, config, data_hash, time.perf_counter() - start, model=pm_model)
    del idata  # what the tree does not hold (the sampler's own copies) is freed before writing
    gc.collect()
    tree.attrs["build_wall_seconds"] = float(build_seconds)  # ModelData (tables, county fields) and the PyMC model
    tree.attrs["compiled_model_reused"] = int(reused)
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
