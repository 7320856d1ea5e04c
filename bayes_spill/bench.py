"""`bayes-spill bench`: measured cost of each formulation, backend and sampler.

For each formulation (occupied vs all counties in the choice set) at each scale (multiples of the
paper's 688 firms, data from the simulator) it measures the PyTensor compile time and the median
time of one log-density + gradient evaluation per backend (C, Numba, JAX where installed), and,
with ``--sample``, a short NUTS run per sampler: wall time, leapfrog steps per draw and ESS per
second for gamma and the half-life. Every figure is also given as a ratio to the straightforward
baseline measured in the same run: latent alpha, all counties, PyMC's own NUTS, C backend.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

PAPER_FIRMS = 688
FORMULATIONS = {"occupied": "occupied", "all_counties": "all"}
BACKENDS = {"C": "FAST_RUN", "Numba": "NUMBA", "JAX": "JAX", "Python": "FAST_COMPILE"}
DEFAULT_BACKENDS = ("C", "Numba", "JAX")
BASELINE = ("all_counties", "C")


@dataclass
class GradientTiming:
    scale: float
    firms: int
    formulation: str
    backend: str
    parameters: int
    compile_s: float
    grad_ms: float
    ratio_to_baseline: float | None = None


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


def _panel(scale: float, seed: int):
    from bayes_spill.datasets import SOFTWARE_SETTINGS
    from bayes_spill.simulate import simulate_industry

    settings = replace(SOFTWARE_SETTINGS, n_firms=int(round(PAPER_FIRMS * scale)))
    return simulate_industry(settings, seed=seed)


def _config(formulation: str):
    from bayes_spill.fitting import resolve_config

    config = resolve_config("lychagin2010")
    model = replace(config.model, choice_set=FORMULATIONS[formulation])
    return replace(config, model=model)


def time_gradient(model, mode: str, repeats: int) -> tuple[float, float, int]:
    """(compile seconds, median ms of one logp+gradient evaluation, number of parameters)."""
    from pymc.blocking import DictToArrayBijection

    point = model.initial_point()
    start = time.perf_counter()
    fn = model.logp_dlogp_function(mode=mode, ravel_inputs=True)
    fn.set_extra_values({})
    x = DictToArrayBijection.map({v.name: point[v.name] for v in model.value_vars}).data
    fn(x)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return compile_s, 1000.0 * float(np.median(times)), int(x.size)


def sampling_run(model, config, sampler: str, draws: int, tune: int, chains: int) -> dict:
    import arviz_stats as azs

    from bayes_spill.fitting import sample

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
    formulations=tuple(FORMULATIONS),
    backends=DEFAULT_BACKENDS,
    samplers=(),
    draws: int = 200,
    tune: int = 200,
    chains: int = 2,
    repeats: int = 50,
    seed: int = 1,
) -> dict:
    from bayes_spill.model import build_model

    gradients: list[GradientTiming] = []
    runs: list[SamplingRun] = []
    for scale in scales:
        panel = _panel(scale, seed)
        for formulation in formulations:
            config = _config(formulation)
            model = build_model(panel, config)
            for backend in backends:
                if not _backend_available(backend):
                    continue
                compile_s, grad_ms, n_par = time_gradient(model, BACKENDS[backend], repeats)
                gradients.append(GradientTiming(scale, panel.n_firms, formulation, backend, n_par, compile_s, grad_ms))
            for sampler in samplers:
                r = sampling_run(model, config, sampler, draws, tune, chains)
                runs.append(SamplingRun(scale, formulation, sampler, draws, tune, chains, **r))
    _add_ratios(gradients, runs)
    return {"gradients": [asdict(g) for g in gradients], "sampling": [asdict(r) for r in runs]}


def _add_ratios(gradients: list[GradientTiming], runs: list[SamplingRun]) -> None:
    for g in gradients:
        base = next((b for b in gradients if b.scale == g.scale and (b.formulation, b.backend) == BASELINE), None)
        base = base or next((b for b in gradients if b.scale == g.scale and b.formulation == BASELINE[0]), None)
        g.ratio_to_baseline = base.grad_ms / g.grad_ms if base else None
    for r in runs:
        base = next((b for b in runs if b.scale == r.scale and b.formulation == BASELINE[0] and b.sampler == "pymc"), None)
        if base:
            r.ratio_ess_per_s_gamma = r.ess_per_s_gamma / base.ess_per_s_gamma if base.ess_per_s_gamma else None
            r.ratio_ess_per_s_halflife = r.ess_per_s_halflife / base.ess_per_s_halflife if base.ess_per_s_halflife else None


def format_tables(result: dict) -> str:
    import pandas as pd

    parts = []
    if result["gradients"]:
        parts.append("log-density + gradient (median of repeats; ratio = baseline time / this time)")
        parts.append(pd.DataFrame(result["gradients"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if result["sampling"]:
        parts.append("\nsampling (ratio = ESS/s over the baseline: all counties, PyMC NUTS, C backend)")
        parts.append(pd.DataFrame(result["sampling"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(parts)


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="measure compile time, gradient cost and ESS/s per formulation, backend and sampler")
    p.add_argument("--scales", default="1", help="comma-separated multiples of the paper's 688 firms (e.g. 1,4,10)")
    p.add_argument("--formulations", default=",".join(FORMULATIONS), help=f"subset of {','.join(FORMULATIONS)}")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS), help=f"subset of {','.join(BACKENDS)} (Python: no compilation, a reference)")
    p.add_argument("--samplers", default="", help="also sample with these (nutpie,pymc,numpyro); empty = gradients only")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--tune", type=int, default=200)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json", help="write the results as JSON to this file")
    p.set_defaults(func=cmd_bench)


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def cmd_bench(args) -> int:
    from bayes_spill.errors import BayesSpillError

    formulations, backends = _split(args.formulations), _split(args.backends)
    for value, valid, what in ((formulations, FORMULATIONS, "formulation"), (backends, BACKENDS, "backend")):
        unknown = [v for v in value if v not in valid]
        if unknown:
            raise BayesSpillError(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    result = run_bench(
        scales=tuple(float(s) for s in _split(args.scales)),
        formulations=formulations,
        backends=backends,
        samplers=_split(args.samplers),
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        repeats=args.repeats,
    )
    print(format_tables(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0
