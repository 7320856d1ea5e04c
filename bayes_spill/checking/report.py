"""``bayes-spill check DIR``: every check of a fit, its figures and a report a person reads.

Runs, on the fit in DIR:

1. sampler diagnostics (divergences, tree depth, E-BFMI, R-hat, ESS: ``reporting``);
2. identification: how far the posteriors of gamma and the half-life contracted from the priors
   (``comparison.contraction``) and how sensitive gamma, the half-life, mu_alpha and sigma_alpha
   are to their priors by power-scaling (``sensitivity``);
3. posterior predictive checks (``checks``): where firms locate, the sorting regressions of the
   paper's Table 4, the production residuals; the replicated data are added to DIR/posterior.nc
   as its ``posterior_predictive`` group (atomically: the file is replaced whole or not at all);
4. PSIS-LOO of the fit with its Pareto-k diagnostics (``comparison``);
5. the paper's Table 4 on these data at the posterior medians, with bootstrapped t-statistics;

then writes DIR/figures/*.png, DIR/checks.csv (the test statistics), DIR/report.md (the tables,
the figures, a plain-language verdict per check and the fit's provenance) and DIR/report.html (the
same report as one self-contained page, figures embedded: ``checking.html`` renders report.md, so
a section added to ``report_markdown`` is in both), and returns the verdicts. Everything is
written as one addition to the run in DIR (``inference.fit_folder``): into a stage first (so a
folder that cannot be written fails before any check runs), then committed together, and only
if DIR still holds the posterior that was checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayes_spill.inference import fit_folder

REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
CHECKS_FILE = "checks.csv"
DEFAULT_BOOTSTRAP = 200
CHECK_ORDER = ("sampler", "identification", "locations", "sorting", "production", "loo")
CHECK_NAMES = {
    "sampler": "Sampler",
    "identification": "Identification (prior to posterior)",
    "locations": "Locations (PPC)",
    "sorting": "Sorting, Table 4 (PPC)",
    "production": "Production residuals (PPC)",
    "loo": "PSIS-LOO",
}


@dataclass
class CheckReport:
    """What ``check`` found: a verdict per check, the tables behind them and the files written."""

    verdicts: dict[str, str]
    ppc: pd.DataFrame
    table4: pd.DataFrame
    contraction: pd.DataFrame
    loo: dict
    diagnostics: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    report_path: Path | None = None
    sensitivity: pd.DataFrame | None = None  # power-scaling prior sensitivity (checking/sensitivity.py)
    html_path: Path | None = None

    def verdict_lines(self) -> list[str]:
        return [f"{CHECK_NAMES[k]}: {self.verdicts[k]}" for k in CHECK_ORDER if k in self.verdicts]


# -- markdown --------------------------------------------------------------------------------------
def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "" if np.isnan(value) else str(value)
        if float(value).is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, index_name: str | None = None) -> str:
    """A pipe table (GitHub markdown) of a DataFrame, numbers to 4 significant digits."""
    head = [index_name or frame.index.name or "", *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for label, row in frame.iterrows():
        lines.append("| " + " | ".join([_cell(label), *(_cell(v) for v in row.to_numpy())]) + " |")
    return "\n".join(lines)


# -- the checks ------------------------------------------------------------------------------------
def sampler_verdict(tree: xr.DataTree) -> tuple[str, pd.DataFrame]:
    """The sampler's verdict and per-chain diagnostics; never OK when a posterior draw, an R-hat
    or an ESS is not a finite number (those are named with the reason)."""
    from bayes_spill.inference.summary import advice, chain_diagnostics, summary_table

    diag = chain_diagnostics(tree)
    table = summary_table(tree)
    lines = advice(diag, table)
    unknown = nonfinite_lines(tree, table)
    ok = not unknown and len(lines) == 1 and lines[0].startswith("No sampler problems")
    if unknown and len(lines) == 1 and lines[0].startswith("No sampler problems"):
        lines = []  # "no problems" was read from numbers that are not there
    return ("OK: " if ok else "PROBLEMS: ") + " ".join([*unknown, *lines]), diag


def nonfinite_draws(tree: xr.DataTree) -> dict[str, tuple[int, int]]:
    """{posterior variable: (non-finite values, all values)} for every variable holding a NaN or
    an infinity.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.

    Returns
    -------
    dict
        Empty for a posterior of finite numbers.
    """
    out = {}
    for name, values in tree["posterior"].to_dataset().data_vars.items():
        if np.issubdtype(values.dtype, np.number):
            bad = int(np.sum(~np.isfinite(values.values)))
            if bad:
                out[str(name)] = (bad, int(values.size))
    return out


def nonfinite_lines(tree: xr.DataTree, table: pd.DataFrame) -> list[str]:
    """Sentences naming the non-finite posterior draws, and the parameters whose R-hat or ESS
    cannot be computed and why."""
    lines = []
    bad = nonfinite_draws(tree)
    if bad:
        listed = ", ".join(f"{name} ({n} of {total})" for name, (n, total) in bad.items())
        lines.append(
            f"The posterior holds draws that are not finite numbers: {listed}; nothing computed from them can be trusted."
        )
    stats = [c for c in ("r_hat", "ess_bulk", "ess_tail") if c in table.columns]
    for name, row in table[stats].iterrows():
        missing = [c for c in stats if not np.isfinite(float(row[c]))]
        if not missing:
            continue
        base = str(name).split("[")[0]
        why = (
            "its draws are not all finite numbers"
            if base in bad
            else "its draws do not vary (constant within the chains)"
        )
        lines.append(
            f"{' and '.join(m.replace('_', ' ').replace('r hat', 'R-hat') for m in missing)} of {name} cannot be computed because {why}."
        )
    return lines


def observed_table4(fit, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Table 4 on the observed data at the posterior medians of beta, the year effects and the
    half-life (the paper plugs in its GMM estimates the same way)."""
    from bayes_spill.twostep.table4 import naive_alpha_hat, spillover_at_firm_county, table4, top_spillover_firms

    spec, panel = fit.config.model, fit.panel
    post = fit.tree["posterior"]
    h = float(post["halflife_km"].median())
    beta = [float(post[n].median()) for n in ("beta_k", "beta_l", "beta_r", "beta_zero_rd")]
    year = post["year_effect"].median(("chain", "draw")).values
    alpha_hat, _ = naive_alpha_hat(panel, beta, h, year, spec.spillover_transform)
    s = spillover_at_firm_county(panel, h, spec.spillover_transform)
    return table4(alpha_hat, s, top_spillover_firms(panel, s), n_bootstrap=n_bootstrap, seed=seed)


def add_posterior_predictive(tree: xr.DataTree, group: xr.Dataset, fit_dir: Path) -> Path:
    """Put the group into the tree (replacing an older one) and write the fit's files with it
    into ``fit_dir`` (the check's stage: ``check`` commits them with its other outputs)."""
    from bayes_spill.checking.ppc import PPC_GROUP
    from bayes_spill.inference import posterior_io

    tree[PPC_GROUP] = xr.DataTree(group)
    return posterior_io.write_files(tree, fit_dir)


def check(
    fit,
    n_draws: int | None = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int | None = None,
    make_figures: bool = True,
    counties=None,
    out_dir: str | Path | None = None,
) -> CheckReport:
    """Run every check on a fit; write the report, the figures, checks.csv and the
    posterior_predictive group into its folder; return the verdicts and tables.

    Parameters
    ----------
    fit : Fit, str or pathlib.Path
        The fit, or its folder (opened as a Fit).
    n_draws : int, optional
        Posterior draws used for the predictive checks (default 200, thinned evenly).
    n_bootstrap : int
        Bootstrap resamples for Table 4's t-statistics on the observed data.
    seed : int, optional
        None uses the fit's seed, so a check is reproducible.
    make_figures : bool
        Draw the figures.
    counties : str or pathlib.Path, optional
        The county table of the fit when it was not the built-in one (when ``fit`` is a folder).
    out_dir : str or pathlib.Path, optional
        Where to write; default the fit's folder (``fit.path``).

    Returns
    -------
    CheckReport
    """
    from bayes_spill.checking import figures
    from bayes_spill.errors import BayesSpillError
    from bayes_spill.inference.results import as_fit

    fit = as_fit(fit, counties)
    if out_dir is None and fit.path is None:
        raise BayesSpillError(
            "the checks write into the fit's folder: save the fit first (fit.save(DIR)) or give out_dir"
        )
    fit_dir = Path(out_dir) if out_dir is not None else fit.path
    fit_dir = fit_dir.parent if fit_dir.is_file() else fit_dir  # a posterior.nc given for its folder
    # the outputs are committed only onto the run that was read (None: the folder's run now)
    same_folder = (
        fit.path is not None and fit_dir.resolve() == (fit.path.parent if fit.path.is_file() else fit.path).resolve()
    )
    expect = fit.tree.attrs.get(fit_folder.RUN_ATTR) if same_folder else None
    if not same_folder:
        fit_dir.mkdir(parents=True, exist_ok=True)
    with fit_folder.Transaction(fit_dir, "check", expect_run=expect, replaces=(figures.FIGURES_DIR,)) as tx:
        report = _run_checks(fit, fit_dir, tx.stage, n_draws, n_bootstrap, seed, make_figures)
    return report


def _run_checks(fit, fit_dir: Path, stage: Path, n_draws, n_bootstrap: int, seed, make_figures: bool) -> CheckReport:
    """Every check of ``check``, its files written into ``stage`` under the names they get in
    ``fit_dir``; the report's paths are those in ``fit_dir``."""
    from bayes_spill.checking import comparison, figures, sensitivity
    from bayes_spill.checking import ppc as checks

    tree = fit.tree
    seed = fit.seed if seed is None else int(seed)
    n_draws = checks.DEFAULT_PPC_DRAWS if n_draws is None else int(n_draws)

    verdicts: dict[str, str] = {}
    verdicts["sampler"], diag = sampler_verdict(tree)

    contraction = comparison.contraction(fit)
    ident = comparison.contraction_verdicts(contraction)
    psense = sensitivity.prior_sensitivity(fit, contracted=contraction)
    ident.update({f"psense {k}": v for k, v in sensitivity.sensitivity_verdicts(psense).items()})
    if sensitivity.missing_groups(tree):
        ident["psense"] = "Prior sensitivity cannot be computed: the fit has no log_prior group (refit to keep it)."
    verdicts["identification"] = " ".join(ident.values()) if ident else "no gamma or half-life in this model."

    ppc = checks.run_ppc(fit, n_draws=n_draws, seed=seed)
    ppc_table = ppc.table()
    verdicts.update(checks.ppc_verdicts(ppc_table))
    add_posterior_predictive(tree, ppc.group, stage)

    elpd = comparison.loo(fit)
    loo = comparison.loo_row(str(tree.attrs.get("model_name", fit_dir.name)), elpd)
    verdicts["loo"] = comparison.loo_verdict(comparison.pareto_k_counts(elpd))

    table4 = observed_table4(fit, n_bootstrap, seed)
    staged = figures.write_all(fit, ppc.statistics, stage / figures.FIGURES_DIR) if make_figures else {}
    if make_figures and (path := sensitivity.prior_posterior_plot(fit, stage / figures.FIGURES_DIR)) is not None:
        staged["prior_posterior"] = path
    figure_paths = {name: fit_dir / Path(path).relative_to(stage) for name, path in staged.items()}

    report = CheckReport(verdicts, ppc_table, table4, contraction, loo, diag, figure_paths, sensitivity=psense)
    n_replicated = len(ppc.statistics[0].replicated) if ppc.statistics else 0
    report.report_path = fit_dir / write_report(report, tree, fit_dir, n_draws=n_replicated, into=stage).relative_to(
        stage
    )
    report.html_path = fit_dir / REPORT_HTML_FILE
    from bayes_spill.inference.posterior_io import atomic_path

    with atomic_path(stage / CHECKS_FILE) as tmp:
        ppc_table.to_csv(tmp)
    return report


# -- the report -----------------------------------------------------------------------------------
def sensitivity_section(report: CheckReport, fit_dir: Path) -> list[str]:
    """The report's lines on power-scaling prior sensitivity (none without its table)."""
    if report.sensitivity is None or report.sensitivity.empty:
        return []
    return [
        "### Prior sensitivity (power-scaling)",
        "",
        "arviz_stats.psense_summary: how far each posterior moves when the prior (all top-level priors "
        "together) or the likelihood (per firm, production plus location) is raised to a power near 1. Prior "
        "sensitivity above 0.05: the prior moves the posterior. Read with the contraction (1 - posterior / prior "
        "variance): under 0.5 the parameter is prior-dominated (flagged); at 0.5 or more the data pin it down "
        "and the prior's pull is a prior-data conflict.",
        "",
        markdown_table(report.sensitivity),
        "",
        *_figure_line(report, "prior_posterior", "prior draws against the posterior", fit_dir),
    ]


def _figure_line(report: CheckReport, name: str, caption: str, fit_dir: Path) -> list[str]:
    path = report.figures.get(name)
    if path is None:
        return []
    return [f"![{caption}]({Path(path).relative_to(fit_dir).as_posix()})", ""]


def provenance_lines(tree: xr.DataTree) -> list[str]:
    """The report's provenance section: the data's hash, the run, the sampler, the package
    versions and the model configuration, all read from the posterior's attributes.

    Parameters
    ----------
    tree : xarray.DataTree
        The fit.

    Returns
    -------
    list of str
        Markdown lines.
    """
    import json

    attrs = tree.attrs
    post = tree["posterior"]

    def value(key: str) -> str:
        return f"`{attrs[key]}`" if key in attrs else "not recorded"

    lines = [
        "## Provenance",
        "",
        "Read from the attributes of the checked posterior.nc.",
        "",
        f"- **Data:** {value('data_source')}, sha256 {value('data_sha256')}",
        f"- **Counties:** {value('counties_source')}",
        f"- **Panel settings:** {value('panel_settings')}",
        f"- **Model:** {value('model_name')}, configuration sha256 {value('model_config_hash')}",
        f"- **Sampler:** {value('sampler')}, seed {value('seed')}, {post.sizes.get('chain', '?')} chains x "
        f"{post.sizes.get('draw', '?')} draws, sampling wall time {value('sampling_wall_seconds')} s",
        f"- **Run:** {value(fit_folder.RUN_ATTR)}",
        f"- **Python:** {value('python_version')}",
        "",
    ]
    try:
        versions = json.loads(attrs.get("versions", "{}"))
    except (TypeError, ValueError):
        versions = {}
    if isinstance(versions, dict) and versions:
        frame = pd.DataFrame({"version": [str(v) for v in versions.values()]}, index=list(map(str, versions)))
        lines += ["Package versions at sampling:", "", markdown_table(frame, "package"), ""]
    if attrs.get("model_config"):
        lines += [
            "The model configuration stored in the posterior:",
            "",
            "```toml",
            str(attrs["model_config"]).rstrip(),
        ]
        lines += ["```", ""]
    return lines


def report_markdown(report: CheckReport, tree: xr.DataTree, fit_dir: Path, n_draws: int) -> str:
    """report.md's text: the single source of the report's sections (report.html renders it).

    Parameters
    ----------
    report : CheckReport
        The checks' verdicts, tables and figures (paths in ``fit_dir``).
    tree : xarray.DataTree
        The fit checked.
    fit_dir : pathlib.Path
        The fit's folder: figures are linked relative to it.
    n_draws : int
        Posterior draws replicated by the predictive checks.

    Returns
    -------
    str
    """
    attrs = tree.attrs
    post = tree["posterior"]
    lines = [
        f"# Checks of the fit in `{fit_dir.name}`",
        "",
        f"Model `{attrs.get('model_name', '?')}` on `{attrs.get('data_source', '?')}` (data sha256 "
        f"{str(attrs.get('data_sha256', '?'))[:12]}); {post.sizes['chain']} chains x {post.sizes['draw']} draws, "
        f"sampler {attrs.get('sampler', '?')}, seed {attrs.get('seed', '?')}. Written by `bayes-spill check`.",
        "",
        "## Verdicts",
        "",
        *[f"- **{CHECK_NAMES[k]}.** {report.verdicts[k]}" for k in CHECK_ORDER if k in report.verdicts],
        "",
        "## Sampler",
        "",
        markdown_table(report.diagnostics),
        "",
        *_figure_line(report, "rank", "rank plots", fit_dir),
        *_figure_line(report, "trace", "trace plots", fit_dir),
        "## Identification: prior to posterior",
        "",
        "Contraction = 1 - posterior variance / prior variance (priors from the fit's stored configuration). "
        "Near 1: the data pin the parameter down; near 0: the posterior restates the prior. The half-life's "
        "LogNormal prior has a long right tail, so read it on the log scale.",
        "",
        markdown_table(report.contraction),
        "",
        *_figure_line(report, "halflife_gamma", "posteriors of the half-life and gamma", fit_dir),
        *_figure_line(report, "decay_curve", "spillover decay curve", fit_dir),
        *sensitivity_section(report, fit_dir),
        "## Posterior predictive checks",
        "",
        f"{n_draws} posterior draws, each replicating the data once (log sales within firm, with each firm's "
        "observed mean; county choices from the logit). p = Pr(T_rep >= T_obs); `extreme` marks p < 0.05 or "
        "p > 0.95. Table-4 slopes and residual statistics depend on the draw's parameters (realized "
        "discrepancies): `observed` is their median over draws. `(posterior alpha)` replicates with each firm's "
        "alpha_i draw, `(alpha | county)` with a fresh alpha_i from the model's distribution given the county.",
        "",
        markdown_table(report.ppc.drop(columns=["check"])),
        "",
        *_figure_line(report, "ppc_statistics", "posterior predictive statistics", fit_dir),
        *_figure_line(report, "ppc_log_sales", "posterior predictive log sales", fit_dir),
        "## Table 4 on these data",
        "",
        "Median and robust regressions of the naive within-firm OLS alpha_hat_i (eq. 11, at the posterior "
        "medians of beta, the year effects and the half-life) on Sbar at the firm's county; top-20: firms in "
        "the 20 occupied counties with the highest Sbar. Paper (real data): slopes 0.011, 0.019, 0.013, 0.025.",
        "",
        markdown_table(report.table4),
        "",
        *_figure_line(
            report, "absorptive_capacity_vs_spillover", "absorptive capacity against spillover (Figure 3)", fit_dir
        ),
        *_figure_line(report, "county_map", "county map", fit_dir),
        "## PSIS-LOO",
        "",
        "Over the per-firm log-likelihood (production plus location). Compare variants fitted to the same data "
        "with `bayes-spill compare DIR1 DIR2 ...`.",
        "",
        markdown_table(pd.DataFrame([report.loo]).set_index("model")),
        "",
    ]
    return "\n".join([*lines, *provenance_lines(tree)])


def write_report(report: CheckReport, tree: xr.DataTree, fit_dir: Path, n_draws: int, into: Path | None = None) -> Path:
    """Write report.md for the fit in ``fit_dir`` (figures linked relative to it) and report.html
    (the same text rendered, figures embedded) into ``into`` (default ``fit_dir``; ``check``
    writes into its stage, where the figures are); returns report.md's path."""
    from bayes_spill.checking import html
    from bayes_spill.inference.posterior_io import atomic_path

    folder = fit_dir if into is None else into
    text = report_markdown(report, tree, fit_dir, n_draws)
    with atomic_path(folder / REPORT_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")
    with atomic_path(folder / REPORT_HTML_FILE) as tmp:
        tmp.write_text(html.render(text, folder), encoding="utf-8")
    return folder / REPORT_FILE
