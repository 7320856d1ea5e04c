"""Calibration of the joint model: simulation-based calibration (SBC) and a Monte Carlo study
against the classical two-step estimator, run through one pluggable executor.

SBC (Talts et al. 2018): draw theta from a calibration prior, simulate an industry with the
package's structural simulator at theta, fit the joint model (whose priors for these parameters
are the same calibration prior) and record the rank of theta among L thinned posterior draws.
If the inference is calibrated the ranks are uniform on 0..L. simuk was considered and not used:
it conditions a fixed PyMC model on new values of its observed variables, while this model's
likelihood is a Potential and every simulated industry is a new panel (new firm-years, new
locations, a new choice set), and it has no per-replicate storage or distributed executor.

What SBC checks here, exactly: the calibration prior covers every parameter that the simulator
takes from SimulationSettings (the betas, sigma_w, the half-life, gamma, mu_alpha, sigma_alpha);
the nuisance parts of the simulator (county effects from log labour force plus noise, a random
walk of year effects, firm effects, the location equilibrium) are the simulator's own, not draws
from the model's priors for county_delta, county_tau and the year effects. The location model is
fitted as a partial likelihood on the occupied counties given the equilibrium field. SBC ranks
are therefore exactly uniform only up to these approximations; a rejection says where the model
and the simulator disagree, or where the sampler fails.

Monte Carlo: R industries from the simulator at fixed (paper) parameters, each fitted by the
joint model (posterior median, equal-tailed interval) and by the two-step estimator (estimate,
bootstrap percentile interval); bias, RMSE and interval coverage per method and parameter, and
the wall time of each method.

Both studies store every finished replicate as one JSON file under STUDY/replicates/ (written
atomically), so an interrupted study resumes where it stopped: run the same command again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayes_spill.config import Prior, _parse_prior, find_model_file, shipped_models
from bayes_spill.errors import BayesSpillError, ConfigError
from bayes_spill.inference.posterior_io import atomic_path

# Study configurations live in models/studies/: models/*.toml are model configurations only.
STUDIES = shipped_models("studies")
DEFAULT_CALIBRATION = "calibration"
# The parameters the simulator takes from SimulationSettings: the calibration prior must give all.
SIMULATOR_PARAMETERS = ("beta_k", "beta_l", "beta_r", "beta_zero_rd", "sigma_w", "halflife_km", "gamma", "mu_alpha", "sigma_alpha")
SBC_PARAMETERS = ("gamma", "halflife_km", "mu_alpha", "sigma_alpha", "beta_k", "beta_l", "beta_r", "beta_zero_rd", "sigma_w")
MC_PARAMETERS = ("halflife_km", "gamma", "mu_alpha", "sigma_alpha2", "beta_k", "beta_l", "beta_r", "sigma_w")
METHODS = ("joint", "twostep")
REPLICATES = "replicates"
FAILURES = "failures"
STUDY_FILE = "study.json"


# == configuration ===========================================================================
@dataclass(frozen=True)
class SBCSpec:
    sims: int = 100
    firms: int = 150
    draws: int = 300
    tune: int = 300
    chains: int = 2
    ranks: int = 99  # L thinned posterior draws per fit: ranks lie in 0..L
    bins: int = 10  # chi-square bins; (L + 1) must be a multiple
    seed: int = 20100
    parameters: tuple[str, ...] = SBC_PARAMETERS
    simulation: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class MonteCarloSpec:
    datasets: int = 20
    firms: int = 688
    draws: int = 500
    tune: int = 500
    chains: int = 4
    bootstrap: int = 99
    level: float = 0.9
    seed: int = 20101
    methods: tuple[str, ...] = METHODS
    parameters: tuple[str, ...] = MC_PARAMETERS
    simulation: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class CalibrationConfig:
    """models/studies/calibration.toml, parsed."""

    base_model: str
    priors: tuple[tuple[str, Prior], ...]
    simulation: tuple[tuple[str, Any], ...]
    sbc: SBCSpec
    montecarlo: MonteCarloSpec
    sampler: str | None = None
    cores_per_fit: int = 1
    source: str = "<memory>"

    def prior(self, name: str) -> Prior:
        return dict(self.priors)[name]


def resolve_calibration(path: str | Path | None = None) -> Path:
    return find_model_file(DEFAULT_CALIBRATION if path is None else path, folder="studies")


def load_calibration(path: str | Path | None = None) -> CalibrationConfig:
    path = resolve_calibration(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the calibration configuration ({exc})") from None
    return parse_calibration(text, str(path))


def _reject(table: dict, valid, source: str, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid keys: {', '.join(valid)}")


def _simulation_table(table: dict, source: str, where: str) -> tuple[tuple[str, Any], ...]:
    from bayes_spill.model.simulate import SimulationSettings

    valid = [f for f in SimulationSettings.__dataclass_fields__ if f not in ("panel", *SIMULATOR_PARAMETERS, "sigma_alpha2")]
    _reject(table, valid, source, where)
    out = []
    for key, value in table.items():
        if key == "county_shift":
            value = tuple((str(f), float(s)) for f, s in value)
        out.append((key, value))
    return tuple(out)


def _spec(cls, table: dict, source: str, where: str):
    names = [f for f in cls.__dataclass_fields__]
    _reject(table, names, source, where)
    values = {}
    for key, value in table.items():
        if key == "simulation":
            values[key] = _simulation_table(value, source, f"{where}.simulation")
        elif key in ("parameters", "methods"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {where}.{key} must be a list of names")
            values[key] = tuple(value)
        else:
            default = getattr(cls(), key)
            if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{source}: {where}.{key} must be an integer, got {value!r}")
            if isinstance(default, float) and not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: {where}.{key} must be a number, got {value!r}")
            values[key] = value
    return cls(**values)


def parse_calibration(text: str, source: str = "<memory>") -> CalibrationConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    _reject(raw, ("name", "description", "model", "sampler", "cores_per_fit", "prior", "simulation", "sbc", "montecarlo"), source, "top level")
    table = raw.get("prior", {})
    _reject(table, SIMULATOR_PARAMETERS, source, "[prior]")
    missing = [p for p in SIMULATOR_PARAMETERS if p not in table]
    if missing:
        raise ConfigError(f"{source}: [prior] must give every parameter the simulator takes; missing {', '.join(missing)}")
    priors = tuple((name, _parse_prior(name, table[name], source)) for name in SIMULATOR_PARAMETERS)
    sbc = _spec(SBCSpec, raw.get("sbc", {}), source, "[sbc]")
    mc = _spec(MonteCarloSpec, raw.get("montecarlo", {}), source, "[montecarlo]")
    check_sbc(sbc, source)
    check_montecarlo(mc, source)
    cores = raw.get("cores_per_fit", 1)
    if not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"{source}: cores_per_fit must be a positive integer, got {cores!r}")
    return CalibrationConfig(
        base_model=str(raw.get("model", "lychagin2010")),
        priors=priors,
        simulation=_simulation_table(raw.get("simulation", {}), source, "[simulation]"),
        sbc=sbc,
        montecarlo=mc,
        sampler=raw.get("sampler"),
        cores_per_fit=cores,
        source=source,
    )


def check_sbc(s: SBCSpec, source: str = "sbc") -> None:
    for key in ("sims", "firms", "draws", "chains", "ranks", "bins"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{source}: sbc.{key} must be at least 1, got {getattr(s, key)}")
    if (s.ranks + 1) % s.bins:
        raise ConfigError(f"{source}: sbc.ranks + 1 ({s.ranks + 1}) must be a multiple of sbc.bins ({s.bins}) so every bin holds as many ranks")
    if s.ranks > s.draws * s.chains:
        raise ConfigError(f"{source}: sbc.ranks ({s.ranks}) cannot exceed the posterior draws ({s.draws} x {s.chains} chains)")
    unknown = [p for p in s.parameters if p not in SBC_PARAMETERS]
    if unknown:
        raise ConfigError(f"{source}: sbc.parameters {unknown} are not among {', '.join(SBC_PARAMETERS)}")


def check_montecarlo(m: MonteCarloSpec, source: str = "montecarlo") -> None:
    for key in ("datasets", "firms", "draws", "chains"):
        if getattr(m, key) < 1:
            raise ConfigError(f"{source}: montecarlo.{key} must be at least 1, got {getattr(m, key)}")
    if not 0 < m.level < 1:
        raise ConfigError(f"{source}: montecarlo.level must be in (0, 1), got {m.level}")
    if m.bootstrap < 2 and "twostep" in m.methods:
        raise ConfigError(f"{source}: montecarlo.bootstrap must be at least 2 for two-step intervals, got {m.bootstrap}")
    bad = [x for x in m.methods if x not in METHODS]
    if bad:
        raise ConfigError(f"{source}: montecarlo.methods {bad} are not among {', '.join(METHODS)}")


# == prior draws and simulation settings =====================================================
def draw_prior(prior: Prior, rng: np.random.Generator) -> float:
    """One draw from a configuration prior (PyMC's parametrisations)."""
    p = prior.kwargs()
    family = prior.family
    if family == "Normal":
        return float(rng.normal(p["mu"], p["sigma"]))
    if family == "HalfNormal":
        return float(abs(rng.normal(0.0, p["sigma"])))
    if family == "LogNormal":
        return float(np.exp(rng.normal(p["mu"], p["sigma"])))
    if family == "Exponential":
        return float(rng.exponential(1.0 / p["lam"]))
    if family == "Gamma":
        return float(rng.gamma(p["alpha"], 1.0 / p["beta"]))
    if family == "StudentT":
        return float(p["mu"] + p["sigma"] * rng.standard_t(p["nu"]))
    raise ConfigError(f"cannot draw from prior family {family!r}")


def simulation_settings(base: dict, params: dict | None = None):
    """SimulationSettings from plain overrides and (optionally) model parameters
    (sigma_alpha becomes sigma_alpha2)."""
    from bayes_spill.model.simulate import SimulationSettings

    values = dict(base)
    if "county_shift" in values:
        values["county_shift"] = tuple((str(f), float(s)) for f, s in values["county_shift"])
    for name, value in (params or {}).items():
        if name == "sigma_alpha":
            values["sigma_alpha2"] = float(value) ** 2
        else:
            values[name] = float(value)
    return replace(SimulationSettings(), **values)


def fitted_model_toml(cal: CalibrationConfig, draws: int, tune: int, chains: int, seed: int, calibration_priors: bool) -> str:
    """The TOML of the joint model the studies fit: the base model with (for SBC) the calibration
    prior for the simulator's parameters, and the study's sampler settings."""
    from bayes_spill.inference.fitting import resolve_config

    base = resolve_config(cal.base_model)
    if base.model.alpha != "heterogeneous" or not base.model.sorting:
        raise ConfigError(f"{cal.source}: the calibration model {cal.base_model!r} must have heterogeneous alpha and sorting")
    priors = dict(base.priors)
    if calibration_priors:
        priors.update(dict(cal.priors))
    config = replace(base, name=f"{base.name}-calibration", priors=tuple(priors.items()))
    config = config.with_sampler(draws=draws, tune=tune, chains=chains, seed=seed, cores=cal.cores_per_fit, backend=cal.sampler)
    return config.to_toml()


# == executors ===============================================================================
@dataclass
class Outcome:
    task: dict
    result: dict | None = None
    error: str | None = None


class SerialExecutor:
    """Runs tasks one after another in this process (tests, debugging)."""

    name = "serial"

    def run(self, fn: Callable[[dict], dict], tasks: list[dict]) -> Iterator[Outcome]:
        for task in tasks:
            try:
                yield Outcome(task, fn(task))
            except Exception as exc:
                yield Outcome(task, error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        pass


class LocalExecutor:
    """A local process pool (spawned processes, so no forked sampler threads)."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self.name = f"local process pool ({self.workers} workers)"

    def run(self, fn, tasks: list[dict]) -> Iterator[Outcome]:
        if not tasks:
            return
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            pending = {pool.submit(fn, task): task for task in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    exc = future.exception()
                    if exc is None:
                        yield Outcome(task, future.result())
                    else:
                        yield Outcome(task, error=f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


class DaskExecutor:
    """A Dask distributed cluster at a scheduler address (workers need bayes_spill installed)."""

    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError:
            raise BayesSpillError(
                "--scheduler needs Dask distributed, which is not installed: pip install 'bayes_spill[dask]' "
                "(or pip install 'distributed>=2024.1') here and on every worker"
            ) from None
        try:
            self.client = Client(address, timeout="30s")
        except Exception as exc:
            raise BayesSpillError(f"cannot connect to the Dask scheduler at {address}: {type(exc).__name__}: {exc}") from None
        self.name = f"Dask cluster at {address}"

    def run(self, fn, tasks: list[dict]) -> Iterator[Outcome]:
        from distributed import as_completed

        if not tasks:
            return
        futures = {self.client.submit(fn, task, key=f"{task['key']}-{_task_token(task)}", pure=False): task for task in tasks}
        try:
            for future in as_completed(list(futures)):
                task = futures[future]
                try:
                    yield Outcome(task, future.result())
                except Exception as exc:
                    yield Outcome(task, error=f"{type(exc).__name__}: {exc}")
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.client.close()


def make_executor(workers: int | None = None, scheduler: str | None = None):
    """A DaskExecutor when a scheduler address is given, else a local process pool."""
    if scheduler:
        return DaskExecutor(scheduler)
    return LocalExecutor(workers)


def _task_token(task: dict) -> str:
    return hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()[:10]


# == the study runner: store each replicate as it completes, resume after an interruption ====
@dataclass
class StudyRun:
    done: int
    total: int
    ran: int
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


def _write_json(path: Path, payload: dict) -> None:
    from bayes_spill.twostep.estimator import finite_or_none

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_or_none(payload), indent=1, default=_json_default, allow_nan=False))


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# A study may be extended in its folder (more simulations or datasets, another method): replicate
# i of a method is the same whatever the others, so these are not part of what must match.
EXTENSIBLE = ("sims", "datasets", "methods")


def prepare_study(study_dir: Path, kind: str, spec: dict) -> None:
    """Create the study folder, or check that an existing one was started with the same spec
    (the number of simulations or datasets may grow)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / STUDY_FILE
    spec = {k: v for k, v in spec.items() if k not in EXTENSIBLE}
    record = {"kind": kind, "spec": json.loads(json.dumps(spec, default=_json_default))}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("kind") != kind or stored.get("spec") != record["spec"]:
            changed = sorted(k for k in set(stored.get("spec", {})) | set(record["spec"]) if stored.get("spec", {}).get(k) != record["spec"].get(k))
            raise BayesSpillError(
                f"{study_dir} holds a {stored.get('kind')} study started with other settings (differs in: {', '.join(changed) or 'kind'}); "
                "resume it with the same options, or choose a new --out folder"
            )
        return
    _write_json(path, record)


def completed_keys(study_dir: Path) -> set[str]:
    return {p.stem for p in (study_dir / REPLICATES).glob("*.json")}


def load_replicates(study_dir: Path, keys: Iterable[str] | None = None) -> list[dict]:
    """The stored replicates (only those named in ``keys`` when given), in key order."""
    wanted = None if keys is None else set(keys)
    return [json.loads(p.read_text()) for p in sorted((study_dir / REPLICATES).glob("*.json")) if wanted is None or p.stem in wanted]


def run_study(study_dir: str | Path, tasks: list[dict], fn: Callable[[dict], dict], executor=None, progress: bool = True) -> StudyRun:
    """Run fn(task) for every task whose result is not yet stored; store each result as
    STUDY/replicates/KEY.json the moment it arrives (a failure as STUDY/failures/KEY.json, retried
    on the next run). Ctrl-C stops cleanly: what finished is kept, a rerun resumes."""
    study_dir = Path(study_dir)
    executor = executor or LocalExecutor()
    done = completed_keys(study_dir)
    todo = [t for t in tasks if t["key"] not in done]
    run = StudyRun(done=len(tasks) - len(todo), total=len(tasks), ran=0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), initial=run.done, desc=tasks[0]["key"].split("-")[0] if tasks else "study", unit="fit")
    try:
        for outcome in executor.run(fn, todo):
            key = outcome.task["key"]
            if outcome.error is None:
                _write_json(study_dir / REPLICATES / f"{key}.json", outcome.result)
                (study_dir / FAILURES / f"{key}.json").unlink(missing_ok=True)
                run.done += 1
            else:
                _write_json(study_dir / FAILURES / f"{key}.json", {"key": key, "error": outcome.error})
                run.failed[key] = outcome.error
            run.ran += 1
            if bar is not None:
                bar.update(1 if outcome.error is None else 0)
                bar.set_postfix(failed=len(run.failed))
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    return run


# == SBC ======================================================================================
def sbc_tasks(cal: CalibrationConfig, spec: SBCSpec) -> list[dict]:
    """One task per simulation: the prior draw, the data seed and everything a worker needs."""
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.sims)
    simulation = {**dict(cal.simulation), **dict(spec.simulation), "n_firms": spec.firms}
    model_toml = fitted_model_toml(cal, spec.draws, spec.tune, spec.chains, seed=0, calibration_priors=True)
    tasks = []
    for i, ss in enumerate(seeds):
        rng = np.random.default_rng(ss)
        params = {name: draw_prior(prior, rng) for name, prior in cal.priors}
        data_seed, fit_seed = (int(x) for x in rng.integers(0, 2**31 - 1, 2))
        tasks.append(
            {
                "key": f"sbc-{i:04d}",
                "index": i,
                "params": params,
                "simulation": simulation,
                "data_seed": data_seed,
                "fit_seed": fit_seed,
                "model_toml": model_toml,
                "ranks": spec.ranks,
                "parameters": list(spec.parameters),
            }
        )
    return tasks


def _posterior_summary(values: np.ndarray) -> dict:
    flat = values.ravel()
    return {
        "median": float(np.median(flat)),
        "mean": float(flat.mean()),
        "sd": float(flat.std(ddof=1)),
        "q5": float(np.quantile(flat, 0.05)),
        "q95": float(np.quantile(flat, 0.95)),
    }


def rank_statistic(draws: np.ndarray, truth: float, n_ranks: int) -> int:
    """Rank of the truth among n_ranks draws thinned evenly from all chains: #(draws < truth)."""
    flat = np.asarray(draws).ravel()
    idx = np.linspace(0, len(flat) - 1, n_ranks).round().astype(int)
    return int(np.sum(flat[idx] < truth))


def _fit_joint(panel, model_toml: str, seed: int):
    from bayes_spill.config import parse_config
    from bayes_spill.inference.fitting import fit

    config = parse_config(model_toml, source="calibration study")
    start = time.perf_counter()
    tree = fit(data=panel, model=config, seed=seed, progress=False, report=False).tree
    return tree, time.perf_counter() - start


def _diagnostics(tree, names) -> dict:
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


def run_sbc_replicate(task: dict) -> dict:
    """Simulate at the task's prior draw, fit the joint model, return the ranks (worker side)."""
    from bayes_spill.model.simulate import simulate_industry

    settings = simulation_settings(task["simulation"], task["params"])
    t0 = time.perf_counter()
    panel = simulate_industry(settings, seed=task["data_seed"])
    simulate_seconds = time.perf_counter() - t0
    tree, fit_seconds = _fit_joint(panel, task["model_toml"], task["fit_seed"])
    post = tree["posterior"]
    ranks, summaries = {}, {}
    for name in task["parameters"]:
        values = post[name].values
        ranks[name] = rank_statistic(values, task["params"][name], task["ranks"])
        summaries[name] = _posterior_summary(values)
    return {
        "key": task["key"],
        "index": task["index"],
        "truth": task["params"],
        "ranks": ranks,
        "n_ranks": task["ranks"],
        "posterior": summaries,
        **_diagnostics(tree, task["parameters"]),
        "fit_seconds": fit_seconds,
        "simulate_seconds": simulate_seconds,
        "firms": panel.n_firms,
        "firm_years": panel.n_obs,
        "counties_occupied": int(len(panel.occupied)),
        "location_converged": bool(panel.truth["location_converged"]),
        "location_movers_at_stop": int(panel.truth["location_movers_at_stop"]),
    }


def rank_table(replicates: list[dict]) -> pd.DataFrame:
    """One row per simulation, one column per parameter: the ranks."""
    return pd.DataFrame([{"key": r["key"], **r["ranks"]} for r in replicates]).set_index("key").sort_index()


def chi_square_bins(n_ranks: int, bins: int, sims: int, min_expected: float = 5.0) -> int:
    """Bins for the chi-square test: the largest divisor of L + 1 that is at most ``bins`` and
    leaves at least ``min_expected`` simulations per bin (at least 2 bins)."""
    divisors = [d for d in range(2, bins + 1) if (n_ranks + 1) % d == 0]
    fitting = [d for d in divisors if sims / d >= min_expected]
    return max(fitting) if fitting else (min(divisors) if divisors else 2)


def uniformity_tests(ranks: pd.DataFrame, n_ranks: int, bins: int) -> pd.DataFrame:
    """Per parameter: chi-square test of the binned ranks against uniform (at most ``bins`` bins,
    fewer when there are too few simulations for 5 per bin), and a KS test of
    (rank + 0.5) / (L + 1) against U(0, 1) (slightly conservative for discrete ranks)."""
    from scipy import stats

    rows = []
    for name in ranks.columns:
        r = ranks[name].dropna().to_numpy(int)
        used = chi_square_bins(n_ranks, bins, len(r))
        width = (n_ranks + 1) // used
        counts = np.bincount(r // width, minlength=used)[:used]
        chi = stats.chisquare(counts)
        ks = stats.kstest((r + 0.5) / (n_ranks + 1), "uniform")
        rows.append(
            {
                "parameter": name,
                "sims": len(r),
                "bins": used,
                "chi2": float(chi.statistic),
                "chi2_p": float(chi.pvalue),
                "ks": float(ks.statistic),
                "ks_p": float(ks.pvalue),
                "mean_rank_frac": float(np.mean((r + 0.5) / (n_ranks + 1))),
                "min_bin": int(counts.min()),
                "max_bin": int(counts.max()),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


@functools.lru_cache(maxsize=16)
def ecdf_band(n: int, level: float = 0.95, n_eval: int = 100, n_sims: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simultaneous band for the ECDF of n uniform draws minus the identity, by simulation
    (Säilynoja, Bürkner and Vehtari 2022): returns (z, lower, upper) of ECDF(z) - z."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    z = np.linspace(0, 1, n_eval + 1)[1:-1]
    u = np.sort(rng.random((n_sims, n)), axis=1)
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u])
    cdf_lo = stats.binom.cdf(counts, n, z[None, :])
    cdf_hi = stats.binom.sf(counts - 1, n, z[None, :])
    tail = np.minimum(cdf_lo, cdf_hi).min(axis=1)
    alpha = float(np.quantile(tail, 1 - level))
    lower = stats.binom.ppf(alpha, n, z) / n - z
    upper = stats.binom.ppf(1 - alpha, n, z) / n - z
    return z, lower, upper


def plot_ranks(ranks: pd.DataFrame, n_ranks: int, bins: int, path: Path) -> Path:
    """Rank histograms with a 99% band for each bin, and ECDF-difference plots with a
    simultaneous 95% band, one column per parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    names = list(ranks.columns)
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.2), squeeze=False)
    n = len(ranks)
    width = (n_ranks + 1) // bins
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    z, band_lo, band_hi = ecdf_band(n)
    for j, name in enumerate(names):
        r = ranks[name].dropna().to_numpy(int)
        ax = axes[0, j]
        ax.axhspan(lo, hi, color="0.85")
        ax.hist(r, bins=np.arange(0, n_ranks + 2, width), color="C0", edgecolor="white")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("rank")
        ax = axes[1, j]
        ax.fill_between(z, band_lo, band_hi, color="0.85")
        frac = np.sort((r + 0.5) / (n_ranks + 1))
        ecdf = np.searchsorted(frac, z, side="right") / len(frac)
        ax.plot(z, ecdf - z, color="C1")
        ax.axhline(0, color="0.4", lw=0.5)
        ax.set_xlabel("fractional rank")
    axes[0, 0].set_ylabel("count")
    axes[1, 0].set_ylabel("ECDF - uniform")
    fig.suptitle(f"SBC: {n} simulations, {n_ranks} posterior draws per rank (bands: 99% per bin, 95% simultaneous)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def sbc_report(study_dir: Path, spec: SBCSpec, alpha: float = 0.01, plot: bool = True) -> tuple[str, pd.DataFrame | None]:
    reps = load_replicates(study_dir, (f"sbc-{i:04d}" for i in range(spec.sims)))
    if not reps:
        return "no finished simulations yet", None
    ranks = rank_table(reps)
    tests = uniformity_tests(ranks, spec.ranks, spec.bins)
    tests["uniform_at_1pct"] = (tests["chi2_p"] >= alpha) & (tests["ks_p"] >= alpha)
    ranks.to_csv(study_dir / "sbc_ranks.csv")
    tests.to_csv(study_dir / "sbc_uniformity.csv")
    written = [study_dir / "sbc_ranks.csv", study_dir / "sbc_uniformity.csv"]
    if plot:
        written.append(plot_ranks(ranks, spec.ranks, spec.bins, study_dir / "sbc_ranks.png"))
    fit_s = np.array([r["fit_seconds"] for r in reps])
    low_ess = sorted({n for r in reps for n, e in r["ess_bulk"].items() if _num(e) < spec.ranks})
    divergent = sum(1 for r in reps if r["divergences"] > 0)
    unconverged = sum(1 for r in reps if not r["location_converged"])
    lines = [
        f"SBC: {len(reps)} of {spec.sims} simulations done ({spec.firms} firms each; {spec.chains} chains x {spec.draws} draws, "
        f"{spec.tune} tuning; ranks among L = {spec.ranks} thinned draws, {spec.bins} bins)",
        tests.to_string(float_format=lambda v: f"{v:.3g}"),
        f"uniformity not rejected at {alpha:.0%} (chi-square and KS) for: {', '.join(tests.index[tests['uniform_at_1pct']]) or 'none'}",
        f"rejected for: {', '.join(tests.index[~tests['uniform_at_1pct']]) or 'none'}",
        f"fit wall time per simulation: median {np.median(fit_s):.0f} s, total {fit_s.sum() / 60:.1f} min; "
        f"{divergent} fits with divergences; {unconverged} simulated location equilibria stopped before a fixed point",
    ]
    if low_ess:
        lines.append(f"bulk ESS below L = {spec.ranks} in some fit for {', '.join(low_ess)}: thinned draws are autocorrelated there (ranks pile up at the ends)")
    if len(reps) < 5 * spec.bins:
        lines.append(f"note: fewer than {5 * spec.bins} simulations: the chi-square test uses fewer bins (column 'bins') and has little power; read the plots")
    lines.append("wrote " + ", ".join(map(str, written)))
    return "\n".join(lines), tests


def run_sbc(
    out: str | Path,
    cal: CalibrationConfig | None = None,
    spec: SBCSpec | None = None,
    executor=None,
    progress: bool = True,
    fn: Callable[[dict], dict] = run_sbc_replicate,
    plot: bool = True,
    report_only: bool = False,
) -> tuple[StudyRun, str]:
    """Run (or resume) an SBC study in ``out``; returns the run record and the printed report.
    Uses a process pool by default: a script calling this needs the `if __name__ == "__main__":` guard."""
    cal = cal or load_calibration()
    spec = spec or cal.sbc
    check_sbc(spec)
    out = Path(out)
    tasks = sbc_tasks(cal, spec)
    prepare_study(out, "sbc", {**asdict(spec), "prior": {k: asdict(v) for k, v in cal.priors}, "simulation_base": dict(cal.simulation), "model_toml": tasks[0]["model_toml"]})
    run = _stored_only(out, tasks) if report_only else run_study(out, tasks, fn, executor, progress)
    text, _ = sbc_report(out, spec, plot=plot)
    return run, _status(run) + "\n" + text


def _stored_only(out: Path, tasks: list[dict]) -> StudyRun:
    """The run record of a study that is only reported on, not run."""
    done = completed_keys(out)
    return StudyRun(done=sum(t["key"] in done for t in tasks), total=len(tasks), ran=0)


def _status(run: StudyRun) -> str:
    parts = [f"{run.done} of {run.total} replicates stored ({run.ran} attempted now)"]
    if run.failed:
        first = next(iter(run.failed.items()))
        parts.append(f"{len(run.failed)} failed (kept under failures/, retried on the next run; e.g. {first[0]}: {first[1]})")
    if run.interrupted:
        parts.append("interrupted: run the same command again to resume")
    return "; ".join(parts)


# == Monte Carlo ==============================================================================
def montecarlo_tasks(cal: CalibrationConfig, spec: MonteCarloSpec) -> list[dict]:
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.datasets)
    simulation = {**dict(cal.simulation), **dict(spec.simulation), "n_firms": spec.firms}
    model_toml = fitted_model_toml(cal, spec.draws, spec.tune, spec.chains, seed=0, calibration_priors=False)
    tasks = []
    for i, ss in enumerate(seeds):
        rng = np.random.default_rng(ss)
        data_seed, fit_seed = (int(x) for x in rng.integers(0, 2**31 - 1, 2))
        for method in spec.methods:
            tasks.append(
                {
                    "key": f"mc-{i:04d}-{method}",
                    "index": i,
                    "method": method,
                    "simulation": simulation,
                    "data_seed": data_seed,
                    "fit_seed": fit_seed,
                    "model_toml": model_toml,
                    "bootstrap": spec.bootstrap,
                    "level": spec.level,
                    "parameters": list(spec.parameters),
                }
            )
    return tasks


def run_montecarlo_replicate(task: dict) -> dict:
    """Simulate dataset i and fit it by one method (worker side)."""
    from bayes_spill.model.simulate import simulate_industry

    settings = simulation_settings(task["simulation"])
    panel = simulate_industry(settings, seed=task["data_seed"])
    truth = dict(panel.truth["parameters"])
    level = task["level"]
    q = ((1 - level) / 2, (1 + level) / 2)
    estimates: dict[str, dict] = {}
    extra: dict = {}
    if task["method"] == "joint":
        tree, seconds = _fit_joint(panel, task["model_toml"], task["fit_seed"])
        post = tree["posterior"]
        for name in task["parameters"]:
            values = post[name].values.ravel()
            lo, hi = np.quantile(values, q)
            estimates[name] = {"estimate": float(np.median(values)), "lo": float(lo), "hi": float(hi), "sd": float(values.std(ddof=1))}
        extra = _diagnostics(tree, task["parameters"])
    elif task["method"] == "twostep":
        from bayes_spill.twostep.estimator import BaselineSettings, two_step
        from bayes_spill.config import parse_config

        config = parse_config(task["model_toml"], source="calibration study")
        start = time.perf_counter()
        result = two_step(panel, model=config, settings=BaselineSettings(n_bootstrap=task["bootstrap"], workers=1, seed=task["fit_seed"], spec1=False), table4_bootstrap=0)
        seconds = time.perf_counter() - start
        for name in task["parameters"]:
            lo, hi = result.interval(name, level)
            estimates[name] = {"estimate": float(result.estimates[name]), "lo": lo, "hi": hi, "sd": result.se(name)}
        extra = {"bootstrap_failed": result.failed_replicates, "location_converged": result.location_converged}
    else:
        raise ValueError(f"unknown method {task['method']!r}")
    return {
        "key": task["key"],
        "index": task["index"],
        "method": task["method"],
        "truth": truth,
        "estimates": estimates,
        "level": level,
        "wall_seconds": seconds,
        "firms": panel.n_firms,
        "firm_years": panel.n_obs,
        **extra,
    }


def _num(value) -> float:
    """A stored number (null in JSON for nan) as a float."""
    return float("nan") if value is None else float(value)


def montecarlo_table(replicates: list[dict]) -> pd.DataFrame:
    """Bias, RMSE, coverage (with its Monte Carlo s.e.) and mean interval width per method and
    parameter, over the datasets each method finished."""
    rows = []
    for r in replicates:
        for name, e in r["estimates"].items():
            truth = _num(r["truth"].get(name))
            est, lo, hi = _num(e["estimate"]), _num(e["lo"]), _num(e["hi"])
            rows.append(
                {
                    "method": r["method"],
                    "parameter": name,
                    "error": est - truth,
                    "covered": float(lo <= truth <= hi) if np.isfinite(lo) and np.isfinite(hi) else np.nan,
                    "width": hi - lo,
                    "truth": truth,
                }
            )
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    g = frame.groupby(["parameter", "method"], sort=False)
    table = pd.DataFrame(
        {
            "truth": g["truth"].first(),
            "datasets": g.size(),
            "bias": g["error"].mean(),
            "rmse": g["error"].apply(lambda e: float(np.sqrt(np.mean(e**2)))),
            "coverage": g["covered"].mean(),
            "width": g["width"].mean(),
        }
    )
    table["coverage_se"] = np.sqrt(table["coverage"] * (1 - table["coverage"]) / table["datasets"])
    return table


def montecarlo_report(study_dir: Path, spec: MonteCarloSpec) -> tuple[str, pd.DataFrame | None]:
    reps = load_replicates(study_dir, (f"mc-{i:04d}-{m}" for i in range(spec.datasets) for m in spec.methods))
    if not reps:
        return "no finished fits yet", None
    table = montecarlo_table(reps)
    order = [p for p in spec.parameters if p in table.index.get_level_values(0)]
    table = table.reindex(order, level=0)
    table.to_csv(study_dir / "montecarlo_table.csv")
    times = pd.DataFrame([{"method": r["method"], "seconds": r["wall_seconds"]} for r in reps]).groupby("method")["seconds"].agg(["count", "median", "mean", "sum"])
    wide = table[["bias", "rmse", "coverage"]].unstack("method")
    lines = [
        f"Monte Carlo: {spec.datasets} datasets of {spec.firms} firms; joint model = posterior median and {spec.level:.0%} "
        f"equal-tailed interval ({spec.chains} chains x {spec.draws} draws); two-step = estimate and {spec.level:.0%} "
        f"bootstrap percentile interval ({spec.bootstrap} resamples)",
        "bias, RMSE and coverage side by side:",
        wide.to_string(float_format=lambda v: f"{v:.4g}"),
        "",
        "full table (coverage_se = Monte Carlo s.e. of the coverage):",
        table.to_string(float_format=lambda v: f"{v:.4g}"),
        "",
        "wall time per fit (seconds):",
        times.to_string(float_format=lambda v: f"{v:.1f}"),
        f"wrote {study_dir / 'montecarlo_table.csv'}",
    ]
    return "\n".join(lines), table


def run_montecarlo(
    out: str | Path,
    cal: CalibrationConfig | None = None,
    spec: MonteCarloSpec | None = None,
    executor=None,
    progress: bool = True,
    fn: Callable[[dict], dict] = run_montecarlo_replicate,
    report_only: bool = False,
) -> tuple[StudyRun, str]:
    """Run (or resume) a Monte Carlo study in ``out``; returns the run record and the printed
    report. Uses a process pool by default: a script calling this needs the main-module guard."""
    cal = cal or load_calibration()
    spec = spec or cal.montecarlo
    check_montecarlo(spec)
    out = Path(out)
    tasks = montecarlo_tasks(cal, spec)
    prepare_study(out, "montecarlo", {**asdict(spec), "simulation_base": dict(cal.simulation), "model_toml": tasks[0]["model_toml"]})
    run = _stored_only(out, tasks) if report_only else run_study(out, tasks, fn, executor, progress)
    text, _ = montecarlo_report(out, spec)
    return run, _status(run) + "\n" + text
