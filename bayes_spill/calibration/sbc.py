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

import functools
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
def ecdf_band(
    n: int, level: float = 0.95, n_eval: int = 100, n_sims: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    fig.suptitle(
        f"SBC: {n} simulations, {n_ranks} posterior draws per rank (bands: 99% per bin, 95% simultaneous)", fontsize=9
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
        written.append(plot_ranks(ranks, spec.ranks, spec.bins, study_dir / "sbc_ranks.png"))
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
