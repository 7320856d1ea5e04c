"""Monte Carlo: R industries from the simulator at fixed (paper) parameters, each fitted by the
joint model (posterior median, equal-tailed interval) and by the two-step estimator (estimate,
bootstrap percentile interval); bias, RMSE and interval coverage per method and parameter, and
the wall time of each method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.calibration.config import (
    CalibrationConfig,
    MonteCarloSpec,
    check_montecarlo,
    fitted_model_toml,
    load_calibration,
    simulation_settings,
)
from bayes_spill.calibration.joint import fit_diagnostics, fit_joint
from bayes_spill.calibration.store import (
    StudyRun,
    load_replicates,
    prepare_study,
    run_study,
    status_line,
    stored_number,
    stored_only,
)


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
        tree, seconds = fit_joint(panel, task["model_toml"], task["fit_seed"])
        post = tree["posterior"]
        for name in task["parameters"]:
            values = post[name].values.ravel()
            lo, hi = np.quantile(values, q)
            estimates[name] = {
                "estimate": float(np.median(values)),
                "lo": float(lo),
                "hi": float(hi),
                "sd": float(values.std(ddof=1)),
            }
        extra = fit_diagnostics(tree, task["parameters"])
    elif task["method"] == "twostep":
        from bayes_spill.config import parse_config
        from bayes_spill.twostep.design import BaselineSettings
        from bayes_spill.twostep.estimator import two_step

        config = parse_config(task["model_toml"], source="calibration study")
        start = time.perf_counter()
        result = two_step(
            panel,
            model=config,
            settings=BaselineSettings(n_bootstrap=task["bootstrap"], workers=1, seed=task["fit_seed"], spec1=False),
            table4_bootstrap=0,
        )
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


def montecarlo_table(replicates: list[dict]) -> pd.DataFrame:
    """Bias, RMSE, coverage (with its Monte Carlo s.e.) and mean interval width per method and
    parameter, over the datasets each method finished."""
    rows = []
    for r in replicates:
        for name, e in r["estimates"].items():
            truth = stored_number(r["truth"].get(name))
            est, lo, hi = stored_number(e["estimate"]), stored_number(e["lo"]), stored_number(e["hi"])
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
    times = (
        pd.DataFrame([{"method": r["method"], "seconds": r["wall_seconds"]} for r in reps])
        .groupby("method")["seconds"]
        .agg(["count", "median", "mean", "sum"])
    )
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
    prepare_study(
        out,
        "montecarlo",
        {**asdict(spec), "simulation_base": dict(cal.simulation), "model_toml": tasks[0]["model_toml"]},
    )
    run = stored_only(out, tasks) if report_only else run_study(out, tasks, fn, executor, progress)
    text, _ = montecarlo_report(out, spec)
    return run, status_line(run) + "\n" + text
