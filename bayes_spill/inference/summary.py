"""What a user reads after a fit: the parameter table (median, 90% interval, R-hat, ESS, truth)
and per-chain sampler diagnostics with plain-language advice."""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayes_spill.model.likelihood import KEY_PARAMETERS

TABLE_PARAMETERS = (*KEY_PARAMETERS, "beta_zero_rd", "alpha")
HIDDEN = ("_raw", "_free", "_log__")
EBFMI_LOW = 0.3


def _scalar_parameters(posterior: xr.Dataset, names) -> list[str]:
    return [n for n in names if n in posterior and posterior[n].ndim == 2]


def summary_table(tree: xr.DataTree, all_parameters: bool = False, truth: dict | None = None) -> pd.DataFrame:
    """Median, 90% equal-tailed interval, R-hat and bulk/tail ESS; with ``all_parameters`` every
    posterior variable (vectors flattened with their coordinates), else the key scalars."""
    posterior = tree["posterior"].to_dataset()
    if all_parameters:
        names = [n for n in posterior.data_vars if not any(h in n for h in HIDDEN)]
    else:
        names = _scalar_parameters(posterior, TABLE_PARAMETERS)
    ds = posterior[names]
    with np.errstate(invalid="ignore", divide="ignore"):  # constants (the base year) have no R-hat
        rhat = azs.rhat(ds)
        ess_bulk = azs.ess(ds, method="bulk")
        ess_tail = azs.ess(ds, method="tail")
    rows = []
    for name in names:
        da = ds[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if len(extra) > 1:
            continue  # no parameter of this model has more than one dimension
        cells = [(name, {})] if not extra else [(f"{name}[{c}]", {extra[0]: c}) for c in da[extra[0]].values]
        for label, where in cells:
            values = da.sel(where).values.ravel()
            rows.append(
                {
                    "parameter": label,
                    "median": float(np.median(values)),
                    "q5": float(np.quantile(values, 0.05)),
                    "q95": float(np.quantile(values, 0.95)),
                    "r_hat": float(rhat[name].sel(where)),
                    "ess_bulk": float(ess_bulk[name].sel(where)),
                    "ess_tail": float(ess_tail[name].sel(where)),
                }
            )
    table = pd.DataFrame(rows).set_index("parameter")
    if truth:
        table["truth"] = [truth.get(p, np.nan) for p in table.index]
    return table


def chain_diagnostics(tree: xr.DataTree) -> pd.DataFrame:
    """Divergences, tree-depth hits and E-BFMI per chain (PyMC's and nutpie's stat names)."""
    stats = tree["sample_stats"].to_dataset()
    depth_hit = next((stats[n] for n in ("reached_max_treedepth", "maxdepth_reached") if n in stats), None)
    rows = []
    for chain in stats["chain"].values:
        s = stats.sel(chain=chain)
        n = s.sizes["draw"]
        divergent = int(s["diverging"].sum()) if "diverging" in s else 0
        hits = int(depth_hit.sel(chain=chain).sum()) if depth_hit is not None else 0
        energy = s["energy"].values if "energy" in s else None
        ebfmi = (
            float(np.sum(np.diff(energy) ** 2) / np.sum((energy - energy.mean()) ** 2))
            if energy is not None
            else np.nan
        )
        rows.append(
            {
                "chain": int(chain),
                "draws": n,
                "divergences": divergent,
                "divergent_pct": 100.0 * divergent / n,
                "treedepth_hits": hits,
                "treedepth_pct": 100.0 * hits / n,
                "e_bfmi": ebfmi,
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
    bad_rhat = table.index[table["r_hat"] > 1.01].tolist()
    if bad_rhat:
        lines.append(
            f"R-hat above 1.01 for {', '.join(bad_rhat)}: chains disagree; run more draws or tuning before using these."
        )
    low_ess = table.index[table["ess_bulk"] < 400].tolist()
    if low_ess:
        lines.append(f"Bulk ESS below 400 for {', '.join(low_ess)}: intervals are noisy; draw more.")
    if not lines:
        lines.append(
            "No sampler problems: no divergences, no tree-depth hits, E-BFMI fine, R-hat <= 1.01 and ESS >= 400."
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
