"""Figures of a fit, written as PNG to DIR/figures/ (matplotlib, Agg; arviz_plots where it fits).

- rank.png, trace.png: rank and trace plots of the key parameters (arviz_plots);
- halflife_gamma.png: posteriors of the half-life and gamma, with the prior and the paper's
  estimates (59 km, 0.053) marked (and the truth when the data are simulated);
- decay_curve.png: the share of a spillover that survives distance d, exp(-lambda d), 0-500 km,
  posterior median with 50% and 90% bands;
- ppc_statistics.png, ppc_log_sales.png: the posterior predictive checks;
- absorptive_capacity_vs_spillover.png: the paper's Figure 3 with posteriors: each firm's
  absorptive capacity (median and 90% interval) against the spillover at its county;
- county_map.png: choropleths drawn as county polygons (``county_map``): firms per county, the
  mean posterior-mean absorptive capacity of each county's firms and the spillover field Sbar,
  for the lower 48 states (Alaska and Hawaii inset) with zooms on the Bay Area and Boston.

Every function takes the loaded fit (and what it needs besides) and the output folder, and
returns the path it wrote. Figures are built on matplotlib Figure objects and closed after
saving, so nothing accumulates in pyplot's state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import xarray as xr

from bayes_spill.model.priors import PriorDistribution
from bayes_spill.paper import LN2, PAPER_VALUES

FIGURES_DIR = "figures"
KEY_PLOT_PARAMETERS = (
    "gamma",
    "halflife_km",
    "mu_alpha",
    "sigma_alpha",
    "beta_k",
    "beta_l",
    "beta_r",
    "sigma_w",
    "alpha",
)
DPI = 110


def _figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=DPI)
    return path


def _close_pc(pc) -> None:
    import matplotlib.pyplot as plt

    plt.close(pc.get_viz("figure"))


def truth_parameters(tree: xr.DataTree) -> dict:
    text = tree.attrs.get("truth_parameters")
    if not text:
        return {}
    try:
        return dict(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):  # a crafted attr
        return {}


def _present(tree: xr.DataTree, names) -> list[str]:
    post = tree["posterior"]
    return [n for n in names if n in post.data_vars and post[n].ndim == 2]


def _arviz_plot(plot_name: str, tree: xr.DataTree, out_dir: Path, file_name: str) -> Path:
    """Draw an arviz_plots plot of the key parameters and save it as DIR/<file_name>."""
    import arviz_plots as azp

    pc = getattr(azp, plot_name)(tree, var_names=_present(tree, KEY_PLOT_PARAMETERS), backend="matplotlib")
    path = Path(out_dir) / file_name
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pc.savefig(path, dpi=DPI)
    _close_pc(pc)
    return path


def rank_plot(tree: xr.DataTree, out_dir: Path) -> Path:
    return _arviz_plot("plot_rank", tree, out_dir, "rank.png")


def trace_plot(tree: xr.DataTree, out_dir: Path) -> Path:
    return _arviz_plot("plot_trace_dist", tree, out_dir, "trace.png")


def halflife_gamma_plot(fit, out_dir: Path) -> Path:
    """Posterior (histogram), prior (line), the paper's estimate and the truth when simulated."""
    tree, config = fit.tree, fit.config
    priors = dict(config.priors)
    post = tree["posterior"]
    truth = truth_parameters(tree)
    names = [n for n in ("halflife_km", "gamma") if n in post.data_vars]
    fig, axes = _figure(5.2 * len(names), 3.6, 1, len(names))
    for ax, name in zip(axes[0], names):
        values = post[name].values.ravel()
        dist = PriorDistribution(priors[name])
        if name == "halflife_km":
            # density of log(half-life) on a log axis: the LogNormal prior is a bell there
            logs = np.log(values)
            dens, edges = np.histogram(logs, bins=40, density=True)
            ax.stairs(dens, np.exp(edges), fill=True, alpha=0.5, label="posterior")
            grid = np.geomspace(max(dist.ppf(0.001), 1e-3), dist.ppf(0.999), 400)
            ax.plot(grid, dist.pdf(grid) * grid, color="0.3", lw=1, label="prior")
            ax.set_xscale("log")
            ax.set_xlabel("spillover half-life ln2/lambda (km, log scale)")
            ax.set_ylabel("density of log half-life")
        else:
            ax.hist(values, bins=40, density=True, alpha=0.5, label="posterior")
            lo, hi = dist.ppf(0.005), dist.ppf(0.995)
            grid = np.linspace(min(lo, values.min()), max(hi, values.max()), 400)
            ax.plot(grid, dist.pdf(grid), color="0.3", lw=1, label="prior")
            ax.set_xlabel("gamma (attraction of spillovers in location choice)")
            ax.set_ylabel("density")
        ax.axvline(PAPER_VALUES[name], color="tab:red", ls="--", label=f"paper: {PAPER_VALUES[name]:g}")
        if name in truth:
            ax.axvline(truth[name], color="k", ls=":", label=f"truth: {truth[name]:g}")
        q5, q50, q95 = np.quantile(values, [0.05, 0.5, 0.95])
        ax.set_title(f"{name}: median {q50:.3g}, 90% [{q5:.3g}, {q95:.3g}]", fontsize=10)
        ax.legend(fontsize=8)
    return _save(fig, Path(out_dir), "halflife_gamma.png")


def decay_bands(halflife_km: np.ndarray, distance_km: np.ndarray, probs=(0.05, 0.25, 0.5, 0.75, 0.95)) -> np.ndarray:
    """Quantiles over draws of exp(-lambda d) at each distance: (len(probs), len(distance_km))."""
    curves = np.exp(-LN2 / np.asarray(halflife_km).ravel()[:, None] * np.asarray(distance_km)[None, :])
    return np.quantile(curves, probs, axis=0)


def decay_curve_plot(tree: xr.DataTree, out_dir: Path, max_km: float = 500.0) -> Path:
    d = np.linspace(0.0, max_km, 251)
    h = tree["posterior"]["halflife_km"].values
    q5, q25, q50, q75, q95 = decay_bands(h, d)
    fig, axes = _figure(6.4, 4.0)
    ax = axes[0, 0]
    ax.fill_between(d, q5, q95, alpha=0.2, color="tab:blue", label="90% band")
    ax.fill_between(d, q25, q75, alpha=0.35, color="tab:blue", label="50% band")
    ax.plot(d, q50, color="tab:blue", label="posterior median")
    ax.plot(
        d,
        np.exp(-LN2 / PAPER_VALUES["halflife_km"] * d),
        color="tab:red",
        ls="--",
        label=f"paper: half-life {PAPER_VALUES['halflife_km']:g} km",
    )
    truth = truth_parameters(tree)
    if "halflife_km" in truth:
        ax.plot(
            d, np.exp(-LN2 / truth["halflife_km"] * d), color="k", ls=":", label=f"truth: {truth['halflife_km']:g} km"
        )
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("share of a spillover received, exp(-lambda d)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max_km)
    ax.set_title("Spillover decay with distance", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, Path(out_dir), "decay_curve.png")


def ppc_statistics_plot(statistics, out_dir: Path) -> Path:
    """One panel per statistic: histogram of the replicated values with the observed value (data-
    only statistics), or observed against replicated per draw with the diagonal (realized
    discrepancies, whose observed value depends on the draw). p = Pr(T_rep >= T_obs)."""
    n = len(statistics)
    cols = 3
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = _figure(4.2 * cols, 2.9 * rows, rows, cols)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, s in zip(axes.ravel(), statistics):
        rep = np.asarray(s.replicated, dtype=float)
        obs = np.asarray(s.observed, dtype=float)
        ok = np.isfinite(rep) & np.isfinite(obs)
        if not ok.any():
            ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
        elif np.ptp(obs[ok]) == 0:
            ax.hist(rep[ok], bins=30, color="tab:blue", alpha=0.6)
            ax.axvline(obs[ok][0], color="k", lw=2, label="observed")
            ax.set_xlabel("replicated")
        else:
            lo, hi = np.quantile(np.concatenate([rep[ok], obs[ok]]), [0.02, 0.98])
            pad = 0.05 * (hi - lo if hi > lo else 1.0)
            ax.scatter(obs[ok], rep[ok], s=6, alpha=0.5)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=1)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_xlabel("observed (at the draw)")
            ax.set_ylabel("replicated")
        ax.set_title(f"{s.name}\np = {s.p_value:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    return _save(fig, Path(out_dir), "ppc_statistics.png")


def ppc_log_sales_plot(tree: xr.DataTree, out_dir: Path) -> Path | None:
    """arviz_plots' predictive density of log sales against the observed (needs the group)."""
    import arviz_plots as azp

    if "posterior_predictive" not in tree.children:
        return None
    pp = tree["posterior_predictive"]
    n = pp.sizes["chain"] * pp.sizes["draw"]
    pc = azp.plot_ppc_dist(tree, var_names=["log_sales"], num_samples=min(50, n), backend="matplotlib")
    path = Path(out_dir) / "ppc_log_sales.png"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pc.savefig(path, dpi=DPI)
    _close_pc(pc)
    return path


def _alpha_summary(tree: xr.DataTree) -> np.ndarray | None:
    alpha = tree["posterior"]["alpha"]
    if "firm" not in alpha.dims:
        return None
    values = alpha.values.reshape(-1, alpha.sizes["firm"])
    return np.quantile(values, [0.05, 0.5, 0.95], axis=0)


def absorptive_capacity_plot(fit, out_dir: Path) -> Path | None:
    """Figure 3 with posteriors: alpha_i (median, 90% interval) against Sbar at the firm's county
    (at the posterior median half-life, $ bil, log axis); the naive within-firm OLS alpha_hat at
    the posterior medians in grey (its outliers are eq. 12's noise nu_i)."""
    from bayes_spill.twostep.table4 import naive_alpha_hat, spillover_at_firm_county

    q = _alpha_summary(fit.tree)
    if q is None:
        return None
    post, panel = fit.tree["posterior"], fit.panel
    spec = fit.config.model
    h = float(post["halflife_km"].median())
    s = spillover_at_firm_county(panel, h)  # levels: the x-axis is $ bil
    beta = [float(post[n].median()) for n in ("beta_k", "beta_l", "beta_r", "beta_zero_rd")]
    year = post["year_effect"].median(("chain", "draw")).values
    alpha_hat, _ = naive_alpha_hat(panel, beta, h, year, spec.spillover_transform)
    fig, axes = _figure(7.0, 4.6)
    ax = axes[0, 0]
    lo, hi = np.min(q[0]), np.max(q[2])
    pad = 0.3 * (hi - lo)
    shown = np.isfinite(alpha_hat) & (alpha_hat > lo - pad) & (alpha_hat < hi + pad)
    ax.scatter(
        s[shown], alpha_hat[shown], s=5, color="0.6", label=f"naive OLS alpha_hat ({(~shown).sum()} off the chart)"
    )
    ax.errorbar(
        s,
        q[1],
        yerr=[q[1] - q[0], q[2] - q[1]],
        fmt="o",
        ms=2.5,
        lw=0.6,
        alpha=0.6,
        color="tab:blue",
        label="posterior median, 90% interval",
    )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"spillover at the firm's county, Sbar ($ bil, half-life {h:.0f} km)")
    ax.set_ylabel("absorptive capacity alpha_i")
    ax.set_title("Spatial sorting by absorptive capacity (cf. the paper's Figure 3)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, Path(out_dir), "absorptive_capacity_vs_spillover.png")


def county_values(fit) -> dict:
    """Per county: the mean posterior-mean alpha of its firms and its firm count (occupied
    counties), and Sbar at the posterior median half-life for every county (levels, $ bil)."""
    from bayes_spill.data.geography import distance_matrix_km
    from bayes_spill.spillover import kernel

    tree, panel = fit.tree, fit.panel
    post = tree["posterior"]
    h = float(post["halflife_km"].median())
    sources, pool = panel.rd_pool()
    everywhere = np.arange(len(panel.counties))
    sbar = kernel.decay_weights(distance_matrix_km(panel.counties, everywhere, sources), h) @ pool.mean(axis=1)
    out = {"halflife_km": h, "sbar": sbar, "occupied": panel.occupied}
    q = _alpha_summary(tree)
    if q is not None:
        alpha_mean = post["alpha"].mean(("chain", "draw")).values
        where = np.searchsorted(panel.occupied, panel.firm_county)
        counts = np.bincount(where, minlength=len(panel.occupied))
        out["firms"] = counts
        out["alpha"] = np.bincount(where, weights=alpha_mean, minlength=len(panel.occupied)) / counts
    return out


def county_map_plot(fit, out_dir: Path) -> Path:
    """Choropleths of firms per county, the posterior mean alpha and Sbar, drawn as county
    polygons (``county_map``)."""
    from bayes_spill.checking.county_map import county_map_figure

    return _save(county_map_figure(county_values(fit), fit.panel.counties), Path(out_dir), "county_map.png")


def write_all(fit, statistics, out_dir: Path) -> dict[str, Path]:
    """Every figure above into out_dir; returns {name: path} for those that apply to the model.

    Parameters
    ----------
    fit : Fit
        The fit checked.
    statistics : list of ppc.Statistic
        The predictive checks' statistics.
    out_dir : str or pathlib.Path
        The figures folder.

    Returns
    -------
    dict of str to pathlib.Path
    """
    out_dir = Path(out_dir)
    tree = fit.tree
    paths = {
        "rank": rank_plot(tree, out_dir),
        "trace": trace_plot(tree, out_dir),
        "halflife_gamma": halflife_gamma_plot(fit, out_dir),
        "decay_curve": decay_curve_plot(tree, out_dir),
        "ppc_statistics": ppc_statistics_plot(statistics, out_dir),
        "ppc_log_sales": ppc_log_sales_plot(tree, out_dir),
        "absorptive_capacity_vs_spillover": absorptive_capacity_plot(fit, out_dir),
        "county_map": county_map_plot(fit, out_dir),
    }
    return {k: v for k, v in paths.items() if v is not None}
