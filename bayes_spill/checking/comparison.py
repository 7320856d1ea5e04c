"""Model comparison and identification: PSIS-LOO across fitted variants, Pareto-k diagnostics,
and how far the posterior of each key parameter contracted from its prior.

LOO is computed over the per-firm log-likelihood (``log_likelihood/firm_loglik``: production plus
location terms of firm i, alpha_i at its posterior draw), so one "observation" is one firm and
leaving it out also leaves out its alpha_i. Firm-specific latent parameters make some Pareto k
large (the posterior of alpha_i moves when its firm is left out); the diagnostics say how many.
With alpha_i integrated out (model.integrate_alpha) the per-firm term is already marginal over
alpha_i. Both target the same elpd, log p(y_i | y_-i): left out, a firm's alpha_i reverts to its
prior given theta. So the two formulations compare with each other; the integrated one's PSIS
weights are better behaved.

Two fits are comparable only when their log-likelihoods cover the same data: the same panel
(``data_identity``: the panel each fit stores, not the bytes of the file it came from), the same
firms, the same observed log sales and counties, and the same likelihood terms over the same
outcomes (a location term over the same choice set, or none in both). The
homogeneous variant (spec. 1) has no location term: its elpd measures log sales alone, a joint
variant's measures log sales and county choices, so their difference is not a model comparison.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayes_spill.errors import BayesSpillError
from bayes_spill.inference.results import as_fit
from bayes_spill.model.likelihood import FIRM, FIRM_LOGLIK
from bayes_spill.model.priors import PriorDistribution

# Pareto-k classes (Vehtari et al. 2024): good below min(1 - 1/log10(S), 0.7), then bad up to 1.
PARETO_BAD = 1.0
CONTRACTION_PARAMETERS = ("gamma", "halflife_km", "mu_alpha", "sigma_alpha", "beta_k", "beta_l", "beta_r", "sigma_w")
INFORMED = 0.5  # contraction above this: the data dominate the prior
WEAK = 0.1  # below this: the posterior is the prior


class ComparisonError(BayesSpillError):
    """Fits whose log-likelihoods do not cover the same data."""


# -- what a fit's log-likelihood covers -----------------------------------------------------------
def likelihood_terms(fit) -> str:
    """A description of the outcomes the per-firm log-likelihood covers (fit: a Fit or DataTree)."""
    spec = as_fit(fit).config.model
    if not spec.location_block:
        return "log sales only (no location term)"
    return f"log sales and county choice over the {spec.choice_set} counties"


def _name(tree: xr.DataTree, fallback: str) -> str:
    return str(tree.attrs.get("model_name", fallback))


PANEL_COLUMNS = ("obs_firm", "obs_year", "sale", "emp", "ppent", "xrd")


def data_identity(tree: xr.DataTree) -> tuple[str, str]:
    """What identifies the data a fit saw: ("panel sha256", digest) of the panel the fit stores
    (firm, year, sales, employment, capital and R&D per firm-year, in firm-year order, and each
    firm's county), so that the same data read from a CSV with other line ends, from Parquet or
    from a DataFrame is the same data; ("data sha256", the recorded hash of the file's bytes)
    for a tree that does not store the panel.

    Parameters
    ----------
    tree : xarray.DataTree
        A fit.

    Returns
    -------
    tuple of str
        (what the digest is of, the digest).
    """
    const = tree["constant_data"].to_dataset() if "constant_data" in tree.children else xr.Dataset()
    obs = tree["observed_data"].to_dataset() if "observed_data" in tree.children else xr.Dataset()
    if not all(c in const for c in PANEL_COLUMNS) or "county" not in obs:
        return "data sha256", str(tree.attrs.get("data_sha256"))
    frame = pd.DataFrame({c: const[c].values for c in PANEL_COLUMNS})
    frame["obs_firm"] = frame["obs_firm"].astype(str)
    frame["obs_year"] = frame["obs_year"].astype(np.int64)
    counties = dict(zip(obs[FIRM].values.astype(str), obs["county"].values.astype(str)))
    frame["county"] = frame["obs_firm"].map(counties)
    frame = frame.sort_values(["obs_firm", "obs_year"], kind="stable").reset_index(drop=True)
    return "panel sha256", hashlib.sha256(frame.to_csv(index=False, float_format="%.17g").encode()).hexdigest()


def comparability_problems(fits: dict) -> list[str]:
    """Why these fits (name -> Fit or DataTree) cannot be compared by LOO (empty when they can)."""
    fits = {name: as_fit(f) for name, f in fits.items()}
    names = list(fits)
    if len(names) < 2:
        return ["LOO comparison needs at least two fits"]
    problems = []
    ref_name, ref_fit = names[0], fits[names[0]]
    ref = ref_fit.tree
    ref_terms = likelihood_terms(ref_fit)
    ref_obs = ref["observed_data"].to_dataset()
    for name in names[1:]:
        tree = fits[name].tree
        mine, theirs = data_identity(tree), data_identity(ref)
        if mine != theirs:
            problems.append(
                f"{name} was fitted to other data than {ref_name} ({mine[0]} {mine[1][:12]} != {theirs[0]} {theirs[1][:12]}): "
                "elpd of different data sets cannot be compared"
            )
            continue
        obs = tree["observed_data"].to_dataset()
        if not np.array_equal(obs[FIRM].values.astype(str), ref_obs[FIRM].values.astype(str)):
            problems.append(
                f"{name} and {ref_name} hold different firms (different panel settings?): their per-firm terms do not pair up"
            )
            continue
        if obs.sizes.get("obs") != ref_obs.sizes.get("obs") or not np.array_equal(
            obs["log_sales"].values, ref_obs["log_sales"].values
        ):
            problems.append(f"{name} and {ref_name} model different firm-years of log sales")
            continue
        terms = likelihood_terms(fits[name])
        if terms != ref_terms:
            why = (
                " The homogeneous variant (spec. 1) has no location block, so its elpd leaves out the county choices "
                "that the joint variants predict: the difference would mostly measure that missing term, not fit. "
                "Compare joint variants with each other, and production-only variants with each other."
                if "no location term" in (terms + ref_terms)
                else " A location term over a different choice set is a probability of the same county among other "
                "alternatives (conditioning on an occupied county changes the outcome space)."
            )
            problems.append(f"{name}'s log-likelihood covers {terms}, {ref_name}'s covers {ref_terms}.{why}")
    return problems


def check_comparable(fits: dict) -> None:
    problems = comparability_problems(fits)
    if problems:
        raise ComparisonError("cannot compare these fits by LOO: " + " | ".join(problems))


# -- LOO ------------------------------------------------------------------------------------------
def loo(fit):
    """PSIS-LOO of one fit (a Fit or DataTree) over its per-firm log-likelihood (arviz_stats.loo,
    pointwise)."""
    import arviz_stats as azs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Pareto-k warning is reported by pareto_k_table
        return azs.loo(as_fit(fit).tree, pointwise=True, var_name=FIRM_LOGLIK)


def pareto_k_counts(elpd) -> dict:
    """Counts of firms by Pareto k class: good (k <= good_k), bad (good_k < k <= 1), very bad
    (k > 1), and ``unknown``: firms whose k or elpd is not a finite number."""
    k = np.asarray(elpd.pareto_k.values).ravel()
    good_k = float(elpd.good_k)
    pointwise = np.asarray(getattr(elpd, "elpd_i", np.zeros_like(k)), dtype=float).ravel()
    unknown = ~np.isfinite(k) | (~np.isfinite(pointwise) if pointwise.shape == k.shape else False)
    finite = k[~unknown]
    return {
        "good_k": good_k,
        "good": int((finite <= good_k).sum()),
        "bad": int(((finite > good_k) & (finite <= PARETO_BAD)).sum()),
        "very_bad": int((finite > PARETO_BAD).sum()),
        "unknown": int(unknown.sum()),
        "max_k": float(np.max(finite)) if finite.size else np.nan,
        "firms": int(k.size),
        "elpd_finite": bool(np.isfinite(float(elpd.elpd))),
    }


def loo_row(name: str, elpd) -> dict:
    counts = pareto_k_counts(elpd)
    return {"model": name, "elpd_loo": float(elpd.elpd), "se": float(elpd.se), "p_loo": float(elpd.p), **counts}


def loo_verdict(counts: dict) -> str:
    n = counts["firms"]
    unknown = counts.get("unknown", 0)
    if unknown or not counts.get("elpd_finite", True):
        which = f"{unknown} of {n} firms have" if unknown else "the sum has"
        return (
            f"PSIS-LOO cannot be computed because {which} a log-likelihood or Pareto k that is not a finite number "
            "(non-finite draws of the per-firm log-likelihood): no elpd from this fit is usable."
        )
    high = counts["bad"] + counts["very_bad"]
    if high == 0:
        return f"PSIS-LOO is reliable: all {n} firms have Pareto k <= {counts['good_k']:.2f}."
    share = high / n
    tail = (
        "a handful; the elpd estimate is usable, but check those firms"
        if share <= 0.05
        else "too many for a trustworthy elpd: leaving a firm out moves its own alpha_i a lot. Use K-fold "
        "cross-validation by firm, or a log-likelihood with alpha_i integrated out, before ranking models on it"
    )
    return f"{high} of {n} firms ({100 * share:.0f}%) have Pareto k above {counts['good_k']:.2f} (max {counts['max_k']:.2f}): {tail}."


@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame  # arviz_stats.compare, best first
    pareto: pd.DataFrame  # Pareto-k counts per model
    verdicts: list[str]


def load_fits(dirs) -> dict:
    """{model name: Fit} of fit folders (the folder added to a repeated name)."""
    from bayes_spill.inference.results import FittedModel

    fits: dict = {}
    for d in dirs:
        fit = FittedModel.load(d)
        name = _name(fit.tree, Path(d).name)
        if name in fits:
            name = f"{name} ({Path(d)})"
        fits[name] = fit
    return fits


def compare(fits) -> Comparison:
    """LOO comparison of fits, refusing fits whose log-likelihoods do not cover the same data.

    Parameters
    ----------
    fits : dict or list
        {name: Fit or DataTree}, or a list of fit folders.

    Returns
    -------
    Comparison
        arviz_stats.compare's table (best first), Pareto-k counts per fit and the verdicts.

    Raises
    ------
    ComparisonError
        Saying why the fits cannot be compared.
    """
    import arviz_stats as azs

    fits = {name: as_fit(f) for name, f in fits.items()} if isinstance(fits, dict) else load_fits(fits)
    check_comparable(fits)
    elpds = {name: loo(fit) for name, fit in fits.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = azs.compare(elpds, round_to="none")
    pareto = pd.DataFrame([loo_row(n, e) for n, e in elpds.items()]).set_index("model")
    best = table.index[0]
    verdicts = []
    for name in table.index[1:]:
        diff, dse = float(table.loc[name, "elpd_diff"]), float(table.loc[name, "dse"])
        if not (np.isfinite(diff) and np.isfinite(dse)):
            verdicts.append(
                f"{best} against {name}: the elpd difference cannot be computed because one of the elpds is not a finite number."
            )
            continue
        clear = abs(diff) > 2 * dse if dse > 0 else abs(diff) > 0
        verdicts.append(
            f"{best} predicts held-out firms better than {name} by {abs(diff):.1f} elpd (se {dse:.1f}): "
            + ("a clear difference (more than 2 se)." if clear else "within 2 se, so the data do not separate them.")
        )
    for name, e in elpds.items():
        verdicts.append(f"{name}: {loo_verdict(pareto_k_counts(e))}")
    return Comparison(table=table, pareto=pareto, verdicts=verdicts)


# -- prior-to-posterior contraction ---------------------------------------------------------------
@lru_cache(maxsize=256)  # compiles the prior's density and quantile function; a prior's variance never changes
def prior_variance(prior, log: bool = False) -> float:
    """Variance of the prior (of its log with ``log=True``), from the model's own PyMC
    distribution (model/priors.py); inf for a prior without a variance (StudentT with nu <= 2)."""
    return PriorDistribution(prior).var(log=log)


def contraction(fit, parameters=CONTRACTION_PARAMETERS) -> pd.DataFrame:
    """Posterior contraction 1 - var_post / var_prior for each key parameter with a prior in the
    fit's stored configuration, plus log(half-life) (the scale on which its LogNormal prior is
    spread evenly: the variance of the half-life itself is dominated by the prior's right tail).

    Near 1: the data pinned the parameter down; near 0: the posterior is the prior.

    Parameters
    ----------
    fit : Fit or xarray.DataTree
        The fit; its priors come from its stored configuration.
    parameters : sequence of str
        The parameters to report.

    Returns
    -------
    pandas.DataFrame
        Prior and posterior sd and the contraction, one row per parameter.
    """
    fit = as_fit(fit)
    config = fit.config
    post = fit.tree["posterior"].to_dataset()
    given = dict(config.priors)
    rows = []
    for name in parameters:
        if name not in post or name not in given or post[name].ndim != 2:
            continue
        values = post[name].values.ravel()
        entries = [(name, values, False)]
        if name == "halflife_km":
            entries.append(("log(halflife_km)", np.log(values), True))
        for label, v, log in entries:
            var_prior = prior_variance(given[name], log=log)
            nonfinite = int(np.sum(~np.isfinite(v)))
            var_post = float(np.var(v, ddof=1)) if nonfinite == 0 else np.nan
            # a non-finite variance on either side leaves the contraction undefined (NaN), and
            # contraction_verdicts says why instead of giving a percentage
            defined = np.isfinite(var_prior) and var_prior > 0 and np.isfinite(var_post)
            rows.append(
                {
                    "parameter": label,
                    "prior": f"{given[name].family}({', '.join(f'{k}={val:g}' for k, val in given[name].params)})",
                    "prior_sd": float(np.sqrt(var_prior)),
                    "posterior_sd": float(np.sqrt(var_post)),
                    "contraction": 1.0 - var_post / var_prior if defined else np.nan,
                    "nonfinite_draws": nonfinite,
                    "draws": int(v.size),
                }
            )
    return pd.DataFrame(rows).set_index("parameter")


def contraction_verdicts(table: pd.DataFrame) -> dict[str, str]:
    out = {}
    for name in ("gamma", "log(halflife_km)"):
        if name not in table.index:
            continue
        c = float(table.loc[name, "contraction"])
        label = "The half-life" if name.startswith("log") else "gamma"
        if not np.isfinite(c):
            row = table.loc[name]
            if row.get("nonfinite_draws", 0):
                why = f"{int(row['nonfinite_draws'])} of {int(row['draws'])} posterior draws are not finite numbers"
            elif not np.isfinite(row["prior_sd"]):
                why = "its prior has no finite variance"
            else:
                why = "its prior or posterior variance is not a positive finite number"
            out[name] = f"{label}: the contraction from prior to posterior cannot be computed because {why}."
            continue
        if c >= INFORMED:
            what = "the data pin it down"
        elif c >= WEAK:
            what = "the data inform it only partly; the prior still shapes the interval"
        else:
            what = "the posterior is essentially the prior: these data do not identify it, so its interval restates the prior"
        out[name] = f"{label}: posterior variance is {100 * (1 - c):.0f}% of the prior's (contraction {c:.2f}): {what}."
    return out
