"""The paper's tables from fits, ready to publish: Table 3 (production function) and Table 5
(location choice) with parameters in rows and fits or specifications in columns, beside the
two-step estimator's estimates, and Table 6 from a counterfactual; as DataFrames, LaTeX
(booktabs), Markdown and CSV.

Every cell is a number with its spread: for a fit the posterior median, the 90% equal-tailed
interval (q5, q95) and the posterior sd; for the two-step baseline the point estimate, the
bootstrap percentile interval at the same level and the bootstrap standard error. The frame
(``PaperTable.frame``) holds the unrounded numbers; LaTeX and Markdown round them as a paper does
(two significant digits, at least two decimals; kilometres, counts and large dollar figures as
whole numbers with thousands separators) and write the interval, or the sd in parentheses,
on the line below the estimate, as the paper writes its t-statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.checking import table_format
from bayes_spill.errors import BayesSpillError
from bayes_spill.twostep.results import BASELINE_FILE, BOOTSTRAP_FILE, bootstrap_se, percentile_interval

LEVEL = 0.9  # the intervals' probability: q5 to q95, as summary.csv and Table 6
STATS = ("estimate", "lower", "upper", "sd")
SPREADS = ("interval", "sd")
FORMATS = ("latex", "markdown", "csv")
WHICH = ("parameters", "3", "5", "6")


@dataclass(frozen=True)
class Row:
    """One parameter row: the posterior variable (and the two-step's key), its plain-text and
    LaTeX labels (notation of docs/model.md and the paper), and how its numbers are rounded."""

    name: str
    text: str
    latex: str
    kind: str = "number"  # "number": 2 significant digits; "whole": integers with separators


PRODUCTION = (
    Row("beta_k", "log K_it (beta_k)", r"$\log K_{it}$ ($\beta_k$)"),
    Row("beta_l", "log L_it (beta_l)", r"$\log L_{it}$ ($\beta_l$)"),
    Row("beta_r", "log R_it (beta_r)", r"$\log R_{it}$ ($\beta_r$)"),
    Row("beta_zero_rd", "zero R&D dummy (beta_zero_rd)", r"zero R\&D dummy"),
    Row("alpha", "S_it (one alpha for all firms)", r"$S_{it}$ (one $\alpha$ for all firms)"),
    Row("halflife_km", "Spillover half-life (ln 2/lambda), km", r"Spillover half-life ($\ln 2/\lambda$), km", "whole"),
    Row("sigma_w", "sigma_w", r"$\sigma_w$"),
)
LOCATION = (
    Row("gamma", "Attraction parameter, gamma", r"Attraction parameter, $\gamma$"),
    Row("mu_alpha", "Distribution of alpha_i: mu_alpha", r"Distribution of $\alpha_i$: $\mu_\alpha$"),
    Row("sigma_alpha2", "Distribution of alpha_i: sigma_alpha^2", r"Distribution of $\alpha_i$: $\sigma_\alpha^2$"),
)
COUNTS = (
    Row("n_obs", "# of observations", r"\# of observations", "whole"),
    Row("n_firms", "# of firms", r"\# of firms", "whole"),
)
PANELS = {
    "3": (("Production function (Table 3)", PRODUCTION),),
    "5": (("Location choice (Table 5)", LOCATION),),
    "parameters": (("Production function (Table 3)", PRODUCTION), ("Location choice (Table 5)", LOCATION)),
}


@dataclass
class PaperTable:
    """A table of the paper: the numbers and how to lay them out.

    Attributes
    ----------
    frame : pandas.DataFrame
        Rows indexed by (name, label) (the variable and its readable label; for Table 6 the FIPS
        code and the county); columns a MultiIndex (column, statistic) with statistics
        ``estimate``, ``lower``, ``upper`` (the 90% interval) and ``sd``.
    title : str
        The caption.
    panels : list of (str, list)
        Headings and the row names under each ("" for no heading).
    notes : list of str or dict
        What the columns and cells are; a dict {spread: text} where the text depends on what is
        written below the estimates.
    kinds : dict
        How to round: {row name or column: "number" | "whole" | "percent" | "dollars"}.
    latex_labels : dict
        {row name: LaTeX label} where it is not the escaped plain label.
    stub : str
        The heading of the label column.
    groups : list of (str, int)
        A heading row above the columns: (text, columns spanned), "" for none.
    """

    frame: pd.DataFrame
    title: str
    panels: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    kinds: dict = field(default_factory=dict)
    latex_labels: dict = field(default_factory=dict)
    stub: str = ""
    groups: list = field(default_factory=list)

    def to_latex(self, spread: str = "interval", standalone: bool = False) -> str:
        """The table as LaTeX (booktabs; ``standalone``: a whole document that compiles alone)."""
        return table_format.latex(self, spread, standalone)

    def to_markdown(self, spread: str = "interval") -> str:
        """The table as a Markdown pipe table with the notes below."""
        return table_format.markdown(self, spread)

    def to_csv(self) -> str:
        """The unrounded numbers as CSV: the row keys, then one column per (column, statistic)."""
        flat = self.frame.copy()
        flat.columns = [f"{column}: {stat}" for column, stat in flat.columns]
        return flat.to_csv(float_format="%.10g")

    def render(self, fmt: str, spread: str = "interval", standalone: bool = False) -> str:
        """The table as ``fmt`` (one of "latex", "markdown", "csv")."""
        if fmt == "latex":
            return self.to_latex(spread, standalone)
        if fmt == "markdown":
            return self.to_markdown(spread)
        if fmt == "csv":
            return self.to_csv()
        raise BayesSpillError(f"table format must be one of {', '.join(FORMATS)}, got {fmt!r}")


# -- a column from a fit -------------------------------------------------------------------------
def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=float).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        return dict.fromkeys(STATS, np.nan)
    lo, med, hi = np.quantile(values, [(1 - LEVEL) / 2, 0.5, (1 + LEVEL) / 2])
    sd = float(np.std(values, ddof=1)) if values.size > 1 else np.nan
    return {"estimate": float(med), "lower": float(lo), "upper": float(hi), "sd": sd}


def fit_column(fit) -> dict:
    """{row name: {statistic: value}} of one fit: posterior median, 90% interval and sd of each
    scalar parameter of the paper's tables (sigma_alpha^2 from sigma_alpha when the posterior
    does not hold it) and the numbers of firm-years and firms.

    Parameters
    ----------
    fit : FittedModel, Fit, xarray.DataTree, str or pathlib.Path
        A fit, its posterior tree, or its folder.

    Returns
    -------
    dict
    """
    from bayes_spill.inference.results import as_fit

    tree = as_fit(fit).tree
    posterior = tree["posterior"].to_dataset()
    out = {}
    for row in (*PRODUCTION, *LOCATION):
        if row.name in posterior and posterior[row.name].ndim == 2:
            out[row.name] = _stats(posterior[row.name].values)
        elif row.name == "sigma_alpha2" and "sigma_alpha" in posterior and posterior["sigma_alpha"].ndim == 2:
            out[row.name] = _stats(posterior["sigma_alpha"].values ** 2)
    if "observed_data" in tree.children:
        observed = tree["observed_data"].to_dataset()
        if "log_sales" in observed:
            out["n_obs"] = {"estimate": float(observed["log_sales"].size)}
        if "county" in observed:
            out["n_firms"] = {"estimate": float(observed["county"].size)}
    return out


# -- columns from the two-step baseline ----------------------------------------------------------
def read_baseline(path: str | Path) -> dict:
    """What ``bayes-spill baseline --out DIR`` wrote: DIR/baseline.json with DIR/bootstrap.csv.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder, or its baseline.json.

    Returns
    -------
    dict
        {"estimates": {name: value}, "draws": DataFrame of bootstrap replicates (empty without
        a bootstrap), "n_obs": int, "n_firms": int, "source": str}.
    """
    folder = Path(path)
    target = folder if folder.suffix == ".json" else folder / BASELINE_FILE
    if not target.is_file():
        raise BayesSpillError(
            f"no two-step baseline at {target}: write one with `bayes-spill baseline --data PANEL --out {target.parent}`"
        )
    not_ours = f"{target} is not a baseline written by `bayes-spill baseline`"
    try:
        stored = json.loads(target.read_text())
        estimates = {str(k): (np.nan if v is None else float(v)) for k, v in stored["estimates"].items()}
        counts = {k: (None if stored.get(k) is None else int(stored[k])) for k in ("n_obs", "n_firms")}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BayesSpillError(f"{not_ours}: {type(exc).__name__}: {exc}") from None
    boot = target.with_name(BOOTSTRAP_FILE)
    draws = _read_csv(boot, not_ours.replace(str(target), str(boot))) if boot.is_file() else pd.DataFrame()
    if "error" in draws:
        draws = draws[draws["error"].isna()].drop(columns="error")
    draws = draws.apply(pd.to_numeric, errors="coerce")  # a replicate that is not a number counts as missing
    return {"estimates": estimates, "draws": draws, **counts, "source": str(stored.get("source", ""))}


def _read_csv(path: Path, what: str, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise BayesSpillError(f"{what}: {type(exc).__name__}: {exc}") from None


def _baseline_from_result(result) -> dict:
    return {
        "estimates": dict(result.estimates),
        "draws": result.draws,
        "n_obs": result.n_obs,
        "n_firms": result.n_firms,
        "source": result.source,
    }


def baseline_columns(baseline) -> dict:
    """{column label: {row name: {statistic: value}}} of the two-step estimator: specification
    (2) (heterogeneous alpha_i: A-B GMM, then ML for the location choice) and, when it was
    estimated, specification (1) of Table 3 (one alpha for all firms, NLS with fixed effects).
    Estimate, bootstrap 90% percentile interval and bootstrap standard error.

    Parameters
    ----------
    baseline : BaselineResult, dict from ``read_baseline``, str or pathlib.Path
        The two-step estimates, or the folder ``bayes-spill baseline --out`` wrote.

    Returns
    -------
    dict
    """
    if isinstance(baseline, (str, Path)):
        baseline = read_baseline(baseline)
    elif not isinstance(baseline, dict):
        baseline = _baseline_from_result(baseline)
    estimates, draws = baseline["estimates"], baseline["draws"]

    def cell(key: str) -> dict:
        out = {"estimate": float(estimates[key]), "lower": np.nan, "upper": np.nan, "sd": np.nan}
        if key in draws and draws[key].notna().sum() > 1:
            values = draws[key].dropna().to_numpy(dtype=float)
            out["lower"], out["upper"] = percentile_interval(values, LEVEL)
            out["sd"] = bootstrap_se(values)
        return out

    counts = {
        "n_obs": {"estimate": float(baseline["n_obs"])} if baseline.get("n_obs") is not None else None,
        "n_firms": {"estimate": float(baseline["n_firms"])} if baseline.get("n_firms") is not None else None,
    }
    counts = {k: v for k, v in counts.items() if v is not None}
    spec2 = {row.name: cell(row.name) for row in (*PRODUCTION, *LOCATION) if row.name in estimates}
    columns = {}
    if any(k.startswith("spec1_") for k in estimates):
        spec1 = {row.name: cell(f"spec1_{row.name}") for row in PRODUCTION if f"spec1_{row.name}" in estimates}
        columns["Two-step (1)"] = {**spec1, **counts}
    columns["Two-step (2)"] = {**spec2, **counts}
    return columns


# -- Tables 3 and 5 ------------------------------------------------------------------------------
def parameter_table(fits, baseline=None, which: str = "parameters", labels=None) -> PaperTable:
    """Table 3 and/or Table 5 of the paper: parameters in rows, fits (and the two-step's
    specifications) in columns.

    Parameters
    ----------
    fits : FittedModel, Fit, DataTree, path, or a list of them
        The fits, one column each (in this order).
    baseline : BaselineResult, str or pathlib.Path, optional
        The two-step estimator on the same data (a result, or the folder ``bayes-spill baseline
        --out`` wrote): its columns follow the fits'.
    which : {"parameters", "3", "5"}, default "parameters"
        Table 3 (production function), Table 5 (location choice), or both as two panels.
    labels : list of str, optional
        Column headings of the fits; default the model names (with the folder's name where two
        fits share a model name).

    Returns
    -------
    PaperTable
        ``.frame`` is the DataFrame; ``.to_latex()``, ``.to_markdown()``, ``.to_csv()`` lay it out.
    """
    from bayes_spill.inference.results import as_fit

    if which not in PANELS:
        raise BayesSpillError(f"a parameter table is one of {', '.join(PANELS)}, got {which!r}")
    fits = [as_fit(f) for f in (fits if isinstance(fits, (list, tuple)) else [fits])]
    if not fits:
        raise BayesSpillError("a table needs at least one fit")
    names = list(labels) if labels is not None else _fit_labels(fits)
    if len(names) != len(fits):
        raise BayesSpillError(f"{len(names)} labels for {len(fits)} fits")
    columns = {name: fit_column(fit) for name, fit in zip(names, fits)}
    fitted = f"Fits ({', '.join(names)}): posterior median; below it"
    notes = [
        {
            "interval": f"{fitted} the {LEVEL:.0%} equal-tailed credible interval.",
            "sd": f"{fitted} the posterior sd in parentheses.",
        }
    ]
    if baseline is not None:
        base = baseline_columns(baseline)
        first = columns[names[0]]
        for key in ("n_obs", "n_firms"):
            theirs = next(iter(base.values())).get(key, {}).get("estimate")
            ours = first.get(key, {}).get("estimate")
            if theirs is not None and ours is not None and theirs != ours:
                raise BayesSpillError(
                    f"the baseline has {theirs:,.0f} {'firm-years' if key == 'n_obs' else 'firms'} and the fit "
                    f"{names[0]} {ours:,.0f}: it is not on the fit's data (run `bayes-spill baseline --data` on the "
                    "fit's panel)"
                )
        clash = set(base) & set(columns)
        if clash:
            raise BayesSpillError(f"a fit's label clashes with the baseline's columns: {', '.join(sorted(clash))}")
        columns.update(base)
    panels, keys = [], []
    for heading, rows in PANELS[which]:
        present = [r for r in rows if any(r.name in col for col in columns.values())]
        if present:
            panels.append((heading if which == "parameters" else "", [r.name for r in present]))
            keys += present
    if which in ("3", "parameters"):
        columns = {c: v for c, v in columns.items() if any(r.name in v for r in keys)}
    else:  # Table 5: the two-step's spec. (1) has no location model
        columns = {c: v for c, v in columns.items() if any(r.name in v for r in LOCATION)}
    if any(c.startswith("Two-step") for c in columns):
        specs = ["(1) one alpha for all firms, NLS with firm fixed effects"] if "Two-step (1)" in columns else []
        specs.append("(2) heterogeneous alpha_i, A-B GMM then ML")
        two_step = f"Two-step: the paper's estimator (Section 4), {'; '.join(specs)}; below the estimate"
        notes.append(
            {
                "interval": f"{two_step} the bootstrap {LEVEL:.0%} percentile interval.",
                "sd": f"{two_step} the bootstrap standard error in parentheses.",
            }
        )
    counts = [r for r in COUNTS if any(r.name in col for col in columns.values())]
    panels.append(("", [r.name for r in counts]))
    keys += counts
    index = pd.MultiIndex.from_tuples([(r.name, r.text) for r in keys], names=["name", "label"])
    data = {
        (column, stat): [values.get(r.name, {}).get(stat, np.nan) for r in keys]
        for column, values in columns.items()
        for stat in STATS
    }
    frame = pd.DataFrame(data, index=index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["column", "statistic"])
    title = {
        "3": "Production function estimates",
        "5": "Parameters of the location choice problem",
        "parameters": "Production function and location choice parameters",
    }[which]
    return PaperTable(frame, title, panels, notes, {r.name: r.kind for r in keys}, {r.name: r.latex for r in keys})


def _fit_labels(fits) -> list[str]:
    names = [f.name for f in fits]
    out = []
    for fit, name in zip(fits, names):
        if names.count(name) > 1 and fit.path is not None:
            name = f"{name} ({fit.path.name})"
        out.append(name)
    if len(set(out)) < len(out):  # still equal: number them
        out = [f"({i + 1}) {n}" for i, n in enumerate(out)]
    return out


# -- Table 6 -------------------------------------------------------------------------------------
MECHANISM_COLUMNS = (("decay", "Dist. decay"), ("sorting", "Sorting"), ("both", "Both"))
DISTANCE_COLUMN = "Distance, km"
DOLLAR_COLUMN = "Sales gain, $ million"


def read_counterfactual(path: str | Path) -> pd.DataFrame:
    """The table ``bayes-spill counterfactual`` wrote: a CSV, or a fit folder holding one.

    Parameters
    ----------
    path : str or pathlib.Path
        counterfactual_<county>_<year>_<alpha>.csv, or the fit folder it was written into
        (which must hold exactly one).

    Returns
    -------
    pandas.DataFrame
        ``Table6Result.summary()`` as written.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("counterfactual_*.csv"))
        if len(found) != 1:
            what = ", ".join(p.name for p in found) if found else "none"
            raise BayesSpillError(
                f"Table 6 needs one counterfactual in {path} (found {what}): run `bayes-spill counterfactual {path} ...` "
                "or name the CSV"
            )
        path = found[0]
    if not path.is_file():
        raise BayesSpillError(f"no counterfactual table at {path}")
    not_ours = f"{path} is not a table written by `bayes-spill counterfactual`"
    frame = _read_csv(path, not_ours, dtype={"fips": str})
    needed = {
        "fips",
        "county",
        "distance_km",
        *(f"{m}_pct_{s}" for m, _ in MECHANISM_COLUMNS for s in ("median", "q5", "q95")),
    }
    if not needed <= set(frame.columns):
        raise BayesSpillError(f"{not_ours} (missing {', '.join(sorted(needed - set(frame.columns)))})")
    numeric = [c for c in frame.columns if c not in ("fips", "county")]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise BayesSpillError(f"{not_ours} (not numbers in {', '.join(bad)})")
    return frame


def counterfactual_table(result, title: str | None = None) -> PaperTable:
    """Table 6: the percent increase in the aggregate sales of each county's firms under the
    three mechanisms (distance decay only, sorting only, both), the distance to the entrant and,
    with county sales, the dollar gain; posterior median with the 90% interval.

    Parameters
    ----------
    result : Table6Result, pandas.DataFrame, str or pathlib.Path
        A counterfactual (``Fit.counterfactual``), its ``.summary()``, or the CSV (or the fit
        folder holding the one CSV) ``bayes-spill counterfactual`` wrote.
    title : str, optional
        The caption; default says the entrant when ``result`` is a Table6Result.

    Returns
    -------
    PaperTable
    """
    if isinstance(result, (str, Path)):
        summary = read_counterfactual(result)
    elif isinstance(result, pd.DataFrame):
        summary = result
    else:
        summary = result.summary()
        if title is None:
            title = (
                f"Spillovers from a ${result.rd_stock_mil:g} million firm entering {result.rows[0].name} "
                f"in {result.year}: effects on firms from neighbour counties"
            )
    index = pd.MultiIndex.from_arrays(
        [summary["fips"].astype(str).str.zfill(5), summary["county"].astype(str)], names=["name", "label"]
    )
    data = {(DISTANCE_COLUMN, "estimate"): summary["distance_km"].to_numpy(dtype=float)}
    for stat in STATS[1:]:
        data[(DISTANCE_COLUMN, stat)] = np.full(len(summary), np.nan)
    kinds = {DISTANCE_COLUMN: "whole"}
    for mech, label in MECHANISM_COLUMNS:
        for stat, suffix in (("estimate", "median"), ("lower", "q5"), ("upper", "q95")):
            data[(label, stat)] = summary[f"{mech}_pct_{suffix}"].to_numpy(dtype=float)
        data[(label, "sd")] = np.full(len(summary), np.nan)
        kinds[label] = "percent"
    if "both_usd_mil_median" in summary:
        for stat, suffix in (("estimate", "median"), ("lower", "q5"), ("upper", "q95")):
            data[(DOLLAR_COLUMN, stat)] = summary[f"both_usd_mil_{suffix}"].to_numpy(dtype=float)
        data[(DOLLAR_COLUMN, "sd")] = np.full(len(summary), np.nan)
        kinds[DOLLAR_COLUMN] = "dollars"
    frame = pd.DataFrame(data, index=index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["column", "statistic"])
    notes = [
        "Increase in the aggregate sales of the county's sample firms, posterior median with the "
        f"{LEVEL:.0%} credible interval below. Mechanisms active: Dist. decay, every county's firms drawn from the "
        "entrant county's distribution of absorptive capacity; Sorting, no decay with distance; Both, the model."
    ]
    title = title or "Spillovers from an entrant: effects on firms from neighbour counties"
    groups = [("", 1), ("Increase in sales, mechanisms active", len(MECHANISM_COLUMNS))]
    if DOLLAR_COLUMN in kinds:
        groups.append(("", 1))
    rows = [("", [str(f) for f in index.get_level_values(0)])]
    return PaperTable(frame, title, rows, notes, kinds, stub="County", groups=groups)
