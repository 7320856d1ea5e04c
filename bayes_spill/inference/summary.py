"""What a user reads after a fit: the parameter table (median, 90% interval, R-hat, ESS, truth)
and per-chain sampler diagnostics with plain-language advice.

The table's R-hat and ESS are arviz_stats' (rank-normalised split R-hat, bulk and tail ESS),
written here over all rows at once: arviz_stats computes them one row at a time in Python, which
cost seconds for summary.csv's thousands of rows (alpha per firm, county effects).
tests/inference/test_summary.py checks them equal to arviz_stats'.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from arviz_base import rcParams, xarray_sel_iter
from arviz_base.labels import BaseLabeller
from scipy.special import ndtri

from bayes_spill.model.likelihood import KEY_PARAMETERS
from bayes_spill.parallel import ordered_in_threads

TABLE_PARAMETERS = (*KEY_PARAMETERS, "beta_zero_rd", "alpha")
HIDDEN = ("_raw", "_free", "_log__")
EBFMI_LOW = 0.3
RHAT_LIMIT = 1.01  # the report's verdict and the ESS rule (precision.py) read the same limit
INTERVAL = 0.9  # the equal-tailed interval of the table: q5 to q95
COLUMNS = ("median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail")
MIN_DRAWS = 4  # arviz_stats' least draws per chain for R-hat and ESS (and 2 chains for R-hat)
ROWS_PER_BLOCK = 256  # rows computed together: bounds the memory of the FFTs


def _scalar_parameters(posterior: xr.Dataset, names) -> list[str]:
    return [n for n in names if n in posterior and posterior[n].ndim == 2]


def summary_table(tree: xr.DataTree, all_parameters: bool = False, truth: dict | None = None) -> pd.DataFrame:
    """The parameter table: median and 90% equal-tailed interval beside rank-normalised split
    R-hat and bulk/tail ESS, the numbers of ``arviz_stats.summary`` (``kind="stats_median"`` and
    ``kind="diagnostics"``) computed for all rows at once (``sample_diagnostics``).

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
    if not names:
        return pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="parameter"), dtype=float)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    # blocks of rows, a few at a time on every core: the whole posterior copied at once was 11 GB
    # at 30 times the paper's firms
    values = {name: posterior[name].transpose("chain", "draw", ...).values.reshape(chains, draws, -1) for name in names}

    def block(where: tuple[str, int]) -> np.ndarray:
        name, start = where
        rows = np.moveaxis(values[name][:, :, start : start + ROWS_PER_BLOCK], 2, 0)
        return sample_diagnostics(rows.astype(float))

    starts = ((name, start) for name in names for start in range(0, values[name].shape[2], ROWS_PER_BLOCK))
    blocks = list(ordered_in_threads(block, starts))
    labeller = BaseLabeller()  # ArviZ's labels, in the order of the flattened values: alpha[firm]
    labels = [
        labeller.make_label_flat(name, sel, isel)
        for name, sel, isel in xarray_sel_iter(posterior[names], skip_dims={"chain", "draw"})
    ]
    table = pd.DataFrame(
        np.concatenate(blocks, axis=1).T, index=pd.Index(labels, name="parameter"), columns=list(COLUMNS)
    )
    if truth:
        table["truth"] = [truth.get(p, np.nan) for p in table.index]
    return table


def sample_diagnostics(samples: np.ndarray) -> np.ndarray:
    """The table's columns for many rows at once: median, the INTERVAL equal-tailed interval,
    rank-normalised split R-hat (the larger of bulk and folded) and bulk and tail ESS, as
    ``arviz_stats`` computes them for one row (arviz_stats/base/diagnostics.py: ``_rhat_rank``,
    ``_ess_bulk``, ``_ess_tail`` at its default ``stats.ci_prob``), vectorised over rows because
    its per-row loop cost seconds on summary.csv.

    Parameters
    ----------
    samples : numpy.ndarray
        (rows, chains, draws).

    Returns
    -------
    numpy.ndarray
        (6, rows) in ``COLUMNS`` order; NaN R-hat and ESS for a row with a NaN, and R-hat NaN for
        a constant row (as ArviZ gives them).
    """
    rows, chains, draws = samples.shape
    out = np.full((len(COLUMNS), rows), np.nan)
    pooled = samples.reshape(rows, -1)
    edge = (1 - INTERVAL) / 2
    out[0] = np.median(pooled, axis=1)
    out[1:3] = np.quantile(pooled, [edge, 1 - edge], axis=1)
    if draws < MIN_DRAWS:
        return out
    tail = rcParams["stats.ci_prob"]
    tail_probs = sorted((tail, 1 - tail))
    valid = np.flatnonzero(~np.isnan(pooled).any(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, valid.size, ROWS_PER_BLOCK):
            index = valid[start : start + ROWS_PER_BLOCK]
            x = samples[index]
            split = _split_chains(x)
            z = _z_scale(split)
            if chains >= 2:
                bulk = _rhat(z)
                folded = _rhat(
                    _z_scale(np.abs(split - np.median(split.reshape(len(index), -1), axis=1)[:, None, None]))
                )
                out[3, index] = np.where(folded > bulk, folded, bulk)  # Python's max(bulk, folded)
            out[4, index] = _ess(z)
            quantiles = np.quantile(x.reshape(len(index), -1), tail_probs, axis=1)  # (2, rows)
            low, high = (_ess(_split_chains((x <= q[:, None, None]).astype(float))) for q in quantiles)
            out[5, index] = np.where(high < low, high, low)  # Python's min(low, high)
    return out


def _split_chains(x: np.ndarray) -> np.ndarray:
    """(rows, 2 chains, draws // 2): each chain's first and last halves as chains of their own."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, -half:]], axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Each row's values as normal scores of their ranks (Blom's offset 3/8), ties averaged."""
    pooled = x.reshape(x.shape[0], -1)
    c = 3 / 8
    # ndtri is scipy.stats.norm.ppf without its argument checks (the probabilities lie in (0, 1))
    return ndtri((_average_ranks(pooled) - c) / (pooled.shape[1] - 2 * c + 1)).reshape(x.shape)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """scipy.stats.rankdata(x, method="average", axis=1), from an unstable sort: a tie's average
    rank does not depend on the order within the tie, and the unstable sort is several times the
    faster (scipy's stable one was most of this table's cost)."""
    rows, n = x.shape
    order = np.argsort(x, axis=1)
    ordered = np.take_along_axis(x, order, axis=1)
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    sorted_ranks = np.broadcast_to(np.arange(1.0, n + 1.0), (rows, n)).copy()
    tied = np.flatnonzero(~starts.all(axis=1))
    if tied.size:  # a tie's ranks are the mean of its first and last positions
        position = np.broadcast_to(np.arange(n), (tied.size, n))
        ends = np.ones((tied.size, n), dtype=bool)
        ends[:, :-1] = starts[tied, 1:]
        first = np.maximum.accumulate(np.where(starts[tied], position, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, position, n - 1)[:, ::-1], axis=1)[:, ::-1]
        sorted_ranks[tied] = (first + last) / 2.0 + 1.0
    ranks = np.empty((rows, n))
    np.put_along_axis(ranks, order, sorted_ranks, axis=1)
    return ranks


def _rhat(x: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of each row's chains (rows, chains, draws)."""
    n = x.shape[2]
    chain_mean = np.mean(x, axis=2)
    between = n * np.var(chain_mean, axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size of each row (rows, chains, draws) by Geyer's initial monotone
    sequence of autocorrelations, as arviz_stats' ``_ess`` computes it for one row (each sum in
    its order, so that the numbers agree to the last digit)."""
    rows, chains, n = x.shape
    total = chains * n
    acov = _autocov(x)
    mean_var = _chain_mean(acov[:, :, :1])[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(np.mean(x, axis=2), axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - _chain_mean(acov)) / var_plus[:, None]
    rho[:, 0] = 1.0
    # pairs (rho_2k, rho_2k+1); the loop visits pair k >= 1 while t = 2k - 1 < n - 3 and pair k - 1 sums > 0
    pairs = n // 2
    pair_sum = rho[:, 0 : 2 * pairs : 2] + rho[:, 1 : 2 * pairs : 2]
    k = np.arange(pairs)
    allowed = (2 * k - 1 < n - 3) & (k >= 1)
    goes_on = np.ones((rows, pairs), dtype=bool)
    goes_on[:, 1:] = np.logical_and.accumulate(pair_sum[:, :-1] > 0.0, axis=1)
    visited = goes_on & allowed[None, :]
    last = visited.sum(axis=1)  # pairs 1..last visited: the loop's t ends at 2 last + 1
    kept = np.zeros((rows, n))
    kept[:, :2] = rho[:, :2]
    stored = visited & (pair_sum >= 0.0)
    even, odd = rho[:, 0 : 2 * pairs : 2], rho[:, 1 : 2 * pairs : 2]
    kept[:, 0 : 2 * pairs : 2] = np.where(stored, even, kept[:, 0 : 2 * pairs : 2])
    kept[:, 1 : 2 * pairs : 2] = np.where(stored, odd, kept[:, 1 : 2 * pairs : 2])
    rows_index = np.arange(rows)
    last_even = np.where(last > 0, rho[rows_index, 2 * last], 1.0)
    kept[rows_index, 2 * last] = np.where(last_even > 0, last_even, kept[rows_index, 2 * last])
    # the initial monotone sequence over pairs 1 .. last - 1, in order (a pair above the previous
    # one becomes that one halved twice)
    for j in range(1, int(last.max(initial=0))):
        active = j <= last - 1
        previous = kept[:, 2 * j - 2] + kept[:, 2 * j - 1]
        rising = active & (kept[:, 2 * j] + kept[:, 2 * j + 1] > previous)
        kept[rising, 2 * j] = previous[rising] / 2.0
        kept[rising, 2 * j + 1] = kept[rising, 2 * j]
    max_t = 2 * last - 1
    head = np.empty(rows)
    for length in np.unique(max_t + 1):  # np.sum of the first max_t + 1, as one row sums them
        group = max_t + 1 == length
        head[group] = kept[group, :length].sum(axis=1)
    tau = -1.0 + 2.0 * head + kept[rows_index, max_t + 1]  # max_t + 1 = 2 last < n
    floor = 1 / np.log10(total)
    tau = np.where(floor > tau, floor, tau)
    ess = total / tau
    ess[np.isnan(kept).any(axis=1)] = np.nan
    constant = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    ess[constant] = x.shape[1] * x.shape[2]
    return ess


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance of each chain at every lag, by FFT (arviz_stats' ``autocov``)."""
    from scipy.fftpack import next_fast_len

    n = x.shape[-1]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=-1)
    spectrum *= np.conjugate(spectrum)
    cov = np.fft.irfft(spectrum, n=m, axis=-1)[..., :n]
    cov /= n
    return cov


def _chain_mean(acov: np.ndarray) -> np.ndarray:
    """(rows, lags): the mean over chains, summed as numpy sums one row's column."""
    return np.ascontiguousarray(np.moveaxis(acov, 1, 2)).mean(axis=-1)


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
