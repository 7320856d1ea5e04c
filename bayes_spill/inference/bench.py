"""`bayes-spill bench`: measured cost of each formulation, backend and sampler.

For each formulation (choice set: occupied or all counties; evaluation: direct sums or the certified
interpolants of interpolation.py; alpha_i latent, or integrated out by integrated.py) at each scale (multiples of the
paper's 688 firms, data from the simulator, alpha_i shrunk by 1/scale above 1: alpha_scale) it measures the PyTensor compile time and the median
time of one log-density + gradient evaluation per backend (C, Numba, JAX where installed), at a point
near the paper's values, and, with ``--samplers``, a short NUTS run per sampler: wall time, leapfrog
steps per draw and ESS per second for gamma and the half-life. Every figure is also given as a
ratio to the straightforward baseline measured in the same run (latent alpha, all counties, direct
sums, PyMC's own NUTS, C backend; ``--baseline-draws`` runs it shorter where it is too slow), and
each gradient time as a ratio to the same formulation at the paper's scale, and per firm-year and
per county of the choice set.

``--limits`` measures the distance to the limit for the shipped default model and the baseline
formulation in the same run, both sampled by nutpie with every chain on its own thread: wall time
split into model build (model data with the county fields, the half-life table, the PyMC
model), nutpie's compile, tuning and sampling; the gradient cost inside the sampler per firm-year
and per county; and leapfrog steps per effective sample (of the worst key parameter).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from bayes_spill import paper

PAPER_FIRMS = paper.FIRMS
# name: (choice set, evaluation, alpha integrated out)
FORMULATIONS = {
    "occupied": ("occupied", "interpolated", False),
    "all_counties": ("all", "interpolated", False),
    "occupied_exact": ("occupied", "exact", False),
    "all_counties_exact": ("all", "exact", False),
    "occupied_integrated": ("occupied", "interpolated", True),
    "all_counties_integrated": ("all", "interpolated", True),
}
DEFAULT_FORMULATIONS = ("occupied", "all_counties", "all_counties_exact")
BACKENDS = {"C": "FAST_RUN", "Numba": "NUMBA", "JAX": "JAX", "Python": "FAST_COMPILE"}
DEFAULT_BACKENDS = ("C", "Numba", "JAX")
BASELINE = ("all_counties_exact", "C")
BASELINE_SAMPLER = "pymc"
SAMPLERS = ("nutpie", "pymc", "numpyro")


@dataclass
class GradientTiming:
    scale: float
    firms: int
    formulation: str
    backend: str
    parameters: int
    compile_s: float
    grad_ms: float
    firm_years: int = 0
    counties: int = 0
    ratio_to_baseline: float | None = None
    ratio_to_paper_scale: float | None = None
    us_per_firm_year: float | None = None
    us_per_county: float | None = None


@dataclass
class LimitRun:
    """Where the time of one fit goes (bench --limits)."""

    scale: float
    formulation: str
    firm_years: int
    counties: int
    draws: int
    tune: int
    chains: int
    build_s: float  # model data, half-life table and PyMC model
    table_s: float  # of which the half-life table
    compile_s: float
    tuning_s: float
    sampling_s: float
    grad_ms: float  # wall per leapfrog step per chain while sampling, chains sharing the cores
    us_per_firm_year: float
    us_per_county: float
    steps_per_ess: float  # leapfrog steps (all chains) per effective sample of the worst key parameter
    ess_min: float
    rhat_max: float
    divergences: int


@dataclass
class SamplingRun:
    scale: float
    formulation: str
    sampler: str
    draws: int
    tune: int
    chains: int
    wall_s: float
    steps_per_draw: float
    ess_per_s_gamma: float
    ess_per_s_halflife: float
    ratio_ess_per_s_gamma: float | None = None
    ratio_ess_per_s_halflife: float | None = None


def _backend_available(name: str) -> bool:
    if name == "JAX":
        try:
            import jax  # noqa: F401
        except ImportError:
            return False
    return True


def alpha_scale(scale: float) -> float:
    """How alpha_i is scaled in an industry of scale x the paper's firms: 1 / scale above the
    paper's scale, 1 at or below it. The pools grow with the firms, so this keeps alpha_i S_it and
    gamma alpha_i Sbar_l, the spillover's effect on productivity and location, at the paper's
    magnitudes: the same economy with more firms. (With the paper's alpha at 10x the simulated
    sales leave the range the loader accepts, and c_i x range(Sbar), which sets the logit
    denominator's bins, grows tenfold.)"""
    return 1.0 / max(scale, 1.0)


def _panel(scale: float, seed: int):
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS, simulate_industry

    shrink = alpha_scale(scale)
    settings = replace(
        SOFTWARE_SETTINGS,
        n_firms=int(round(PAPER_FIRMS * scale)),
        mu_alpha=SOFTWARE_SETTINGS.mu_alpha * shrink,
        sigma_alpha2=SOFTWARE_SETTINGS.sigma_alpha2 * shrink**2,
    )
    return simulate_industry(settings, seed=seed)


def _config(formulation: str):
    from bayes_spill.inference.fitting import resolve_config

    config = resolve_config("lychagin2010")
    choice_set, evaluation, integrate_alpha = FORMULATIONS[formulation]
    model = replace(
        config.model,
        choice_set=choice_set,
        evaluation=evaluation,
        integrate_alpha=integrate_alpha,
    )
    return replace(config, model=model)


def evaluation_point(model, seed: int = 0, alpha_spread: float = 1.0) -> dict:
    """A point near the paper's values (h = 59 km, gamma = 0.3, alpha_i spread 0.64 x alpha_spread,
    county effects spread 1): the initial point has gamma = 0 and every alpha_i equal, where the
    logit denominator is trivially cheap."""
    rng = np.random.default_rng(seed)
    point = dict(model.initial_point())
    fixed = {
        "halflife_km_log__": np.log(paper.HALFLIFE_KM),
        "gamma": 0.3,
        "sigma_alpha_log__": np.log(0.64 * alpha_spread),
    }
    for name, value in fixed.items():
        if name in point:
            point[name] = np.asarray(value, dtype=float)
    for name in ("alpha_raw", "county_effect_raw"):
        if name in point:
            point[name] = rng.normal(size=point[name].shape)
    return point


def python_mode():
    """PyTensor's Python implementations (no compilation) without fusion and canonicalisation:
    they merge the interpolants' gradient sums into operations of more than 32 operands, which
    the Python implementation refuses. The fast test suite uses this mode too."""
    from pytensor.compile.mode import get_mode

    return get_mode("FAST_COMPILE").excluding("fusion", "canonicalize")


def compile_gradient(model, mode: str, alpha_spread: float = 1.0):
    """(logp+gradient function, its input vector at evaluation_point, compile seconds)."""
    from pymc.blocking import DictToArrayBijection

    if mode == "FAST_COMPILE":
        mode = python_mode()
    point = evaluation_point(model, alpha_spread=alpha_spread)
    start = time.perf_counter()
    fn = model.logp_dlogp_function(mode=mode, ravel_inputs=True)
    fn.set_extra_values({})
    x = DictToArrayBijection.map({v.name: point[v.name] for v in model.value_vars}).data
    fn(x)
    return fn, x, time.perf_counter() - start


def time_gradients(compiled: list, repeats: int, rounds: int = 5) -> list[float]:
    """Median ms of one logp+gradient evaluation for each (fn, x), measured in interleaved rounds:
    this VM has slow phases lasting seconds, and timing one function after another put them into
    one function's figure (all-counties / occupied ranged 1.6x to 3.4x between runs that way)."""
    from threadpoolctl import threadpool_limits

    times: list[list[float]] = [[] for _ in compiled]
    # one BLAS thread, as in sampling (one chain per core); outputs made concrete, because JAX
    # returns before it has computed them
    with threadpool_limits(1, user_api="blas"):
        for _ in range(rounds):
            for k, (fn, x) in enumerate(compiled):
                for _ in range(max(1, repeats // rounds)):
                    t = time.perf_counter()
                    logp, grad = fn(x)
                    np.asarray(logp), np.asarray(grad)
                    times[k].append(time.perf_counter() - t)
    return [1000.0 * float(np.median(t)) for t in times]


def sampling_run(model, config, sampler: str, draws: int, tune: int, chains: int) -> dict:
    import arviz_stats as azs

    from bayes_spill.inference.fitting import sample

    config = config.with_sampler(backend=sampler, draws=draws, tune=tune, chains=chains)
    start = time.perf_counter()
    idata = sample(model, config, progress=False)
    wall = time.perf_counter() - start
    post = idata["posterior"].to_dataset()[["gamma", "halflife_km"]]
    ess = azs.ess(post)
    stats = idata["sample_stats"].to_dataset()
    steps = stats["n_steps"] if "n_steps" in stats else 2 ** stats["tree_depth"] - 1
    return {
        "wall_s": wall,
        "steps_per_draw": float(steps.mean()),
        "ess_per_s_gamma": float(ess["gamma"]) / wall,
        "ess_per_s_halflife": float(ess["halflife_km"]) / wall,
    }


def run_bench(
    scales=(1.0,),
    formulations=DEFAULT_FORMULATIONS,
    backends=DEFAULT_BACKENDS,
    samplers=(),
    draws: int = 200,
    tune: int = 200,
    chains: int = 2,
    repeats: int = 50,
    seed: int = 1,
    baseline_draws: int | None = None,
    baseline_tune: int | None = None,
    pairs=(),
    limits: bool = False,
) -> dict:
    """pairs: (formulation, sampler) runs to sample, besides every formulation with each of samplers.
    limits: also time the default model and the baseline formulation end to end (``limit_run``)."""
    from bayes_spill.model.likelihood import build_model, model_data

    panels = {scale: _panel(scale, seed) for scale in scales}
    gradients: list[GradientTiming] = []
    runs: list[SamplingRun] = []
    # JAX last: once it has run, its thread pool slows the other backends in this process
    # (docs/performance.md, "JAX's thread pool").
    for backend in sorted((b for b in backends if _backend_available(b)), key=lambda b: b == "JAX"):
        compiled, rows = [], []
        for scale, panel in panels.items():
            for formulation in formulations:
                data = model_data(panel, _config(formulation))
                model = build_model(panel, _config(formulation), data, static_shapes=backend == "JAX")
                fn, x, compile_s = compile_gradient(model, BACKENDS[backend], alpha_scale(scale))
                compiled.append((fn, x))
                rows.append(
                    GradientTiming(
                        scale,
                        panel.n_firms,
                        formulation,
                        backend,
                        int(x.size),
                        compile_s,
                        float("nan"),
                        firm_years=int(panel.n_obs),
                        counties=int(len(data.spill.choice_set)),
                    )
                )
        for row, grad_ms in zip(rows, time_gradients(compiled, repeats)):
            row.grad_ms = grad_ms
            row.us_per_firm_year = 1000.0 * grad_ms / row.firm_years
            row.us_per_county = 1000.0 * grad_ms / row.counties
            gradients.append(row)
            print(f"gradient: {row}", flush=True)
        del compiled
    to_sample = dict.fromkeys([(f, smp) for smp in samplers for f in formulations] + list(pairs))
    for formulation, sampler in sorted(to_sample, key=lambda pair: pair[1] == "numpyro"):
        config = _config(formulation)
        is_baseline = (formulation, sampler) == (BASELINE[0], BASELINE_SAMPLER)
        d = baseline_draws if is_baseline and baseline_draws else draws
        t = baseline_tune if is_baseline and baseline_tune is not None else tune
        for scale, panel in panels.items():
            model = build_model(panel, config, static_shapes=sampler == "numpyro")
            r = sampling_run(model, config, sampler, d, t, chains)
            runs.append(SamplingRun(scale, formulation, sampler, d, t, chains, **r))
            print(f"sampling: {runs[-1]}", flush=True)
    _add_ratios(gradients, runs)
    limit_runs = []
    if limits:
        scale = min(panels)
        for name in (DEFAULT_NAME, BASELINE[0]):
            limit_runs.append(limit_run(panels[scale], scale, name, draws, tune, chains))
            print(f"limits: {limit_runs[-1]}", flush=True)
    return {
        "gradients": [asdict(g) for g in gradients],
        "sampling": [asdict(r) for r in runs],
        "limits": [asdict(r) for r in limit_runs],
    }


DEFAULT_NAME = "default"  # the shipped default model (config.DEFAULT_MODEL) in the limits table


def limit_run(panel, scale: float, formulation: str, draws: int, tune: int, chains: int) -> LimitRun:
    """Build, compile and sample one formulation with nutpie, all chains at once, and say where
    the time went. ``formulation``: DEFAULT_NAME (config.DEFAULT_MODEL as shipped) or a key of
    FORMULATIONS."""
    import os

    from bayes_spill.config import DEFAULT_MODEL
    from bayes_spill.inference import fitting, precision
    from bayes_spill.model.likelihood import build_model, model_data

    config = fitting.resolve_config(DEFAULT_MODEL) if formulation == DEFAULT_NAME else _config(formulation)
    config = config.with_sampler(backend="nutpie", draws=draws, tune=tune, chains=chains, cores=chains)
    start = time.perf_counter()
    data = model_data(panel, config)
    table_start = time.perf_counter()
    if config.model.evaluation == "interpolated":
        data.halflife_table  # noqa: B018 (built on first use; timed on its own here)
    table_s = time.perf_counter() - table_start
    model = build_model(panel, config, data)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = fitting.compile_nutpie(model)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    idata = fitting.sample(model, config, progress=False, compiled=compiled)
    wall = time.perf_counter() - start
    tuning_s = float(idata.attrs.get("tuning_wall_seconds", float("nan")))
    stats = idata["sample_stats"].to_dataset()
    steps = float(stats["n_steps"].sum())
    reached = precision.diagnostics(idata["posterior"].to_dataset())
    ess_min = min(reached.ess_bulk, reached.ess_tail)
    sampling_s = wall - tuning_s
    # chains share the cores: a step of one chain takes this long of one core
    grad_ms = 1000.0 * sampling_s * min(chains, os.cpu_count() or 1) / steps
    counties = int(len(data.spill.choice_set))
    return LimitRun(
        scale=scale,
        formulation=formulation if formulation != DEFAULT_NAME else f"{DEFAULT_NAME} ({config.name})",
        firm_years=int(panel.n_obs),
        counties=counties,
        draws=draws,
        tune=tune,
        chains=chains,
        build_s=build_s,
        table_s=table_s,
        compile_s=compile_s,
        tuning_s=tuning_s,
        sampling_s=sampling_s,
        grad_ms=grad_ms,
        us_per_firm_year=1000.0 * grad_ms / panel.n_obs,
        us_per_county=1000.0 * grad_ms / counties,
        steps_per_ess=steps / ess_min if ess_min > 0 else float("nan"),
        ess_min=ess_min,
        rhat_max=reached.rhat,
        divergences=int(stats["diverging"].sum()),
    )


def _add_ratios(gradients: list[GradientTiming], runs: list[SamplingRun]) -> None:
    for g in gradients:
        base = next(
            (b for b in gradients if b.scale == g.scale and (b.formulation, b.backend) == BASELINE),
            None,
        )
        base = base or next(
            (b for b in gradients if b.scale == g.scale and b.formulation == BASELINE[0]),
            None,
        )
        g.ratio_to_baseline = base.grad_ms / g.grad_ms if base else None
        paper = next(
            (b for b in gradients if b.scale == 1.0 and (b.formulation, b.backend) == (g.formulation, g.backend)),
            None,
        )
        g.ratio_to_paper_scale = g.grad_ms / paper.grad_ms if paper else None
    for r in runs:
        base = next(
            (b for b in runs if b.scale == r.scale and b.formulation == BASELINE[0] and b.sampler == BASELINE_SAMPLER),
            None,
        )
        if base:
            r.ratio_ess_per_s_gamma = r.ess_per_s_gamma / base.ess_per_s_gamma if base.ess_per_s_gamma else None
            r.ratio_ess_per_s_halflife = (
                r.ess_per_s_halflife / base.ess_per_s_halflife if base.ess_per_s_halflife else None
            )


def format_tables(result: dict) -> str:
    import pandas as pd

    parts = []
    if result["gradients"]:
        parts.append("log-density + gradient (median of repeats; ratio_to_baseline = baseline time / this time;")
        parts.append("ratio_to_paper_scale = this time / the same formulation and backend at 688 firms)")
        parts.append(pd.DataFrame(result["gradients"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if result["sampling"]:
        parts.append("\nsampling (ratio = ESS/s over the baseline: all counties, direct sums, PyMC NUTS, C backend)")
        parts.append(pd.DataFrame(result["sampling"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if result.get("limits"):
        parts.append(
            "\ndistance to the limit (nutpie, all chains at once; wall split into build, compile, tuning and "
            "sampling; grad_ms = sampling wall x cores in use / leapfrog steps; steps_per_ess = leapfrog steps "
            "of all chains / the smallest bulk or tail ESS of the key parameters)"
        )
        parts.append(pd.DataFrame(result["limits"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(parts)
