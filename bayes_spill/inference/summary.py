"""What a user reads after a fit: the parameter table (median, 90% interval, R-hat, ESS, truth)
and per-chain sampler diagnostics with plain-language advice."""

from __future__ import annotations

import warnings

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayes_spill.model.likelihood import KEY_PARAMETERS

TABLE_PARAMETERS = (*KEY_PARAMETERS, "beta_zero_rd", "alpha")
HIDDEN = ("_raw", "_free", "_log__")
EBFMI_LOW = 0.3
RHAT_LIMIT = 1.01  # the report's verdict and the ESS rule (precision.py) read the same limit
INTERVAL = 0.9  # the equal-tailed interval of the table: q5 to q95


def _scalar_parameters(posterior: xr.Dataset, names) -> list[str]:
    return [n for n in names if n in posterior and posterior[n].ndim == 2]


def summary_table(tree: xr.DataTree, all_parameters: bool = False, truth: dict | None = None) -> pd.DataFrame:
    """The parameter table, from ``arviz_stats.summary``: median and 90% equal-tailed interval
    (``kind="stats_median"``) beside R-hat and bulk/tail ESS (``kind="diagnostics"``).

    Parameters
    ----------
    tree : xarray.DataTree
        The posterior as a fit writes it.
    all_parameters : bool, default False
        Every posterior variable with at most one dimension besides chain and draw (vectors
        flattened with their coordinates, as ArviZ labels them: ``alpha[firm]``); else the key
        scalars.
    truth : dict, optional
        {parameter: true value}; adds a ``truth`` column.

    Returns
    -------
    pandas.DataFrame
        Index ``parameter``; columns median, q5, q95, r_hat, ess_bulk, ess_tail (and truth).
    """
    posterior = tree["posterior"].to_dataset()
    if all_parameters:
        names = [n for n in posterior.data_vars if not any(h in n for h in HIDDEN) and posterior[n].ndim <= 3]
    else:
        names = _scalar_parameters(posterior, TABLE_PARAMETERS)
    columns = ["median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"]
    if not names:  # arviz_stats.summary reads an empty var_names as "all variables"
        return pd.DataFrame(columns=columns, index=pd.Index([], name="parameter"), dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # constants (the base year) have no R-hat: NaN, which the table keeps
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = azs.summary(posterior, var_names=names, kind="stats_median", ci_prob=INTERVAL, round_to="none")
        diagnostics = azs.summary(posterior, var_names=names, kind="diagnostics", round_to="none")
    label = f"eti{round(100 * INTERVAL)}"
    table = pd.DataFrame(
        {
            "median": stats["median"],
            "q5": stats[f"{label}_lb"],
            "q95": stats[f"{label}_ub"],
            "r_hat": diagnostics["r_hat"],
            "ess_bulk": diagnostics["ess_bulk"],
            "ess_tail": diagnostics["ess_tail"],
        }
    ).astype(float)
    table.index = pd.Index([str(i) for i in table.index], name="parameter")
    if truth:
        table["truth"] = [truth.get(p, np.nan) for p in table.index]
    return table


def chain_diagnostics(tree: xr.DataTree) -> pd.DataFrame:
    """Divergences, tree-depth hits and E-BFMI (``arviz_stats.bfmi``) per chain, from PyMC's or
    nutpie's stat names.

    Parameters
    ----------
    tree : xarray.DataTree
        The posterior with its ``sample_stats`` group.

    Returns
    -------
    pandas.DataFrame
        Index ``chain``; columns draws, divergences, divergent_pct, treedepth_hits,
        treedepth_pct, e_bfmi (NaN without an ``energy`` stat).
    """
    stats = tree["sample_stats"].to_dataset()
    depth_hit = next((stats[n] for n in ("reached_max_treedepth", "maxdepth_reached") if n in stats), None)
    ebfmi = azs.bfmi(stats, var_names="energy") if "energy" in stats else None
    rows = []
    for chain in stats["chain"].values:
        s = stats.sel(chain=chain)
        n = s.sizes["draw"]
        divergent = int(s["diverging"].sum()) if "diverging" in s else 0
        hits = int(depth_hit.sel(chain=chain).sum()) if depth_hit is not None else 0
        rows.append(
            {
                "chain": int(chain),
                "draws": n,
                "divergences": divergent,
                "divergent_pct": 100.0 * divergent / n,
                "treedepth_hits": hits,
                "treedepth_pct": 100.0 * hits / n,
                "e_bfmi": float(ebfmi["energy"].sel(chain=chain)) if ebfmi is not None else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("chain")


def advice(diag: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    lines = []
    if diag["divergences"].sum() > 0:
        lines.append(
            f"{int(diag['divergences'].sum())} divergent transitions: the sampler met curvature it could not follow, so the "
            "posterior may be biased there. Raise sampler.target_accept (e.g. 0.95) or tighten weakly identified priors."
        )
    if diag["treedepth_hits"].sum() > 0:
        lines.append(
            "Some transitions hit the maximum tree depth: sampling is inefficient, not wrong. Longer tuning or a "
            "reparametrisation helps; results are still valid if R-hat and ESS are fine."
        )
    if (diag["e_bfmi"] < EBFMI_LOW).any():
        lines.append(
            f"E-BFMI below {EBFMI_LOW} in some chain: the momentum resampling explores the energy poorly, which often "
            "signals a heavy-tailed or funnel-shaped posterior (look at sigma_alpha and county_tau)."
        )
    bad_rhat = table.index[table["r_hat"] > RHAT_LIMIT].tolist()
    if bad_rhat:
        lines.append(
            f"R-hat above {RHAT_LIMIT} for {', '.join(bad_rhat)}: chains disagree; run more draws or tuning before using these."
        )
    low_ess = table.index[table["ess_bulk"] < 400].tolist()
    if low_ess:
        lines.append(f"Bulk ESS below 400 for {', '.join(low_ess)}: intervals are noisy; draw more.")
    if not lines:
        lines.append(
            f"No sampler problems: no divergences, no tree-depth hits, E-BFMI fine, R-hat <= {RHAT_LIMIT} and ESS >= 400."
        )
    return lines


def truth_values(truth: dict | None) -> dict:
    if not truth:
        return {}
    return dict(truth.get("parameters", {}))


def fit_report(tree: xr.DataTree, truth: dict | None = None) -> str:
    table = summary_table(tree, truth=truth_values(truth))
    diag = chain_diagnostics(tree)
    fmt = table.copy()
    fmt["ess_bulk"] = fmt["ess_bulk"].round(0).astype(int)
    fmt["ess_tail"] = fmt["ess_tail"].round(0).astype(int)
    lines = [
        f"Posterior of {tree.attrs.get('model_name', '?')} on {tree.attrs.get('data_source', '?')} "
        f"(sampler {tree.attrs.get('sampler', '?')}, {tree.attrs.get('sampling_wall_seconds', float('nan')):.0f} s sampling)",
        "median and 90% interval [q5, q95]" + ("; truth = simulated value" if "truth" in table else ""),
        fmt.to_string(float_format=lambda v: f"{v:.4g}"),
        "",
        "Sampler diagnostics per chain",
        diag.to_string(float_format=lambda v: f"{v:.3g}"),
        "",
        *advice(diag, table),
    ]
    return "\n".join(lines)
