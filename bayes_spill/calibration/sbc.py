"""Simulation-based calibration of the joint model.

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
    SBCSpec,
    check_sbc,
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
from bayes_spill.inference.posterior_io import atomic_path
from bayes_spill.model import priors


def _posterior_summary(values: np.ndarray) -> dict:
    flat = values.ravel()
    return {
        "median": float(np.median(flat)),
        "mean": float(flat.mean()),
        "sd": float(flat.std(ddof=1)),
        "q5": float(np.quantile(flat, 0.05)),
        "q95": float(np.quantile(flat, 0.95)),
    }


def sbc_tasks(cal: CalibrationConfig, spec: SBCSpec) -> list[dict]:
    """One task per simulation: the prior draw, the data seed and everything a worker needs."""
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.sims)
    simulation = {**dict(cal.simulation), **dict(spec.simulation), "n_firms": spec.firms}
    model_toml = fitted_model_toml(cal, spec.draws, spec.tune, spec.chains, seed=0, calibration_priors=True)
    tasks = []
    for i, ss in enumerate(seeds):
        rng = np.random.default_rng(ss)
        params = priors.draw(cal.priors, rng)  # the model's own distributions (pm.draw)
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


def rank_statistic(draws: np.ndarray, truth: float, n_ranks: int) -> int:
    """Rank of the truth among n_ranks draws thinned evenly from all chains: #(draws < truth)."""
    flat = np.asarray(draws).ravel()
    idx = np.linspace(0, len(flat) - 1, n_ranks).round().astype(int)
    return int(np.sum(flat[idx] < truth))


def run_sbc_replicate(task: dict) -> dict:
    """Simulate at the task's prior draw, fit the joint model, return the ranks (worker side)."""
    from bayes_spill.model.simulate import simulate_industry

    settings = simulation_settings(task["simulation"], task["params"])
    t0 = time.perf_counter()
    panel = simulate_industry(settings, seed=task["data_seed"])
    simulate_seconds = time.perf_counter() - t0
    tree, fit_seconds = fit_joint(panel, task["model_toml"], task["fit_seed"])
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
        **fit_diagnostics(tree, task["parameters"]),
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
    fewer when there are too few simulations for 5 per bin), a KS test of
    (rank + 0.5) / (L + 1) against U(0, 1) (slightly conservative for discrete ranks), and
    ArviZ's POT-C uniformity test of the same PIT values (``pot_c_p``; the p-value the plot shows)."""
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)
    from scipy import stats

    pot_c, _, _ = pit_values(ranks, n_ranks).azstats.uniformity_test(dim=["chain", "draw"], method="pot_c")
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
                "pot_c_p": float(pot_c[name]),
                "mean_rank_frac": float(np.mean((r + 0.5) / (n_ranks + 1))),
                "min_bin": int(counts.min()),
                "max_bin": int(counts.max()),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


def pit_values(ranks: pd.DataFrame, n_ranks: int):
    """The ranks as PIT values (rank + 0.5) / (L + 1) in ArviZ's layout: one variable per
    parameter over (chain = 1, draw = simulation), what ArviZ's SBC tools read."""
    import xarray as xr

    pit = (ranks.dropna().to_numpy(float) + 0.5) / (n_ranks + 1)
    return xr.Dataset({name: (("chain", "draw"), pit[None, :, j]) for j, name in enumerate(ranks.columns)})


def plot_ranks(ranks: pd.DataFrame, n_ranks: int, path: Path) -> Path:
    """ArviZ's SBC plot (arviz_plots.plot_ecdf_pit): the ECDF of each parameter's PIT values minus
    the uniform CDF, with the p-value of ArviZ's POT-C uniformity test and its most suspicious
    ranks marked. (Its simultaneous-band method, "envelope", is deprecated in ArviZ and fails on
    one-chain data; POT-C is its default and valid for SBC's independent ranks.)"""
    import matplotlib

    matplotlib.use("Agg")
    import arviz_plots as azp
    import matplotlib.pyplot as plt
    import xarray as xr

    tree = xr.DataTree.from_dict({"prior_sbc": pit_values(ranks, n_ranks)})
    plots = azp.plot_ecdf_pit(tree, backend="matplotlib")
    fig = plots.get_viz("figure")
    fig.suptitle(
        f"SBC: {len(ranks)} simulations, ranks among {n_ranks} posterior draws (ECDF - uniform)", fontsize=9, y=1.02
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def sbc_report(
    study_dir: Path, spec: SBCSpec, alpha: float = 0.01, plot: bool = True
) -> tuple[str, pd.DataFrame | None]:
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
        written.append(plot_ranks(ranks, spec.ranks, study_dir / "sbc_ranks.png"))
    fit_s = np.array([r["fit_seconds"] for r in reps])
    low_ess = sorted({n for r in reps for n, e in r["ess_bulk"].items() if stored_number(e) < spec.ranks})
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
        lines.append(
            f"bulk ESS below L = {spec.ranks} in some fit for {', '.join(low_ess)}: thinned draws are autocorrelated there (ranks pile up at the ends)"
        )
    if len(reps) < 5 * spec.bins:
        lines.append(
            f"note: fewer than {5 * spec.bins} simulations: the chi-square test uses fewer bins (column 'bins') and has little power; read the plots"
        )
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
    prepare_study(
        out,
        "sbc",
        {
            **asdict(spec),
            "prior": {k: asdict(v) for k, v in cal.priors},
            "simulation_base": dict(cal.simulation),
            "model_toml": tasks[0]["model_toml"],
        },
    )
    run = stored_only(out, tasks) if report_only else run_study(out, tasks, fn, executor, progress)
    text, _ = sbc_report(out, spec, plot=plot)
    return run, status_line(run) + "\n" + text
