"""LOO-PIT of a fit's log sales with ArviZ's own tools (``arviz_stats.loo_pit``, ``arviz_plots.plot_loo_pit``).

ArviZ pairs a variable of ``observed_data`` with the variable of the same name in
``log_likelihood`` (its PSIS weights) and in ``posterior_predictive`` (the replicates). A fit stores
the first two at every posterior draw; the replicates of ``bayes-spill check`` (checking/ppc.py)
are at a thinned set of draws, so the tree handed to ArviZ keeps the posterior and the
log-likelihood at those draws only (a subset of posterior draws is still a posterior sample).

Only log sales have a PIT: the chosen county is an unordered category.
"""

from __future__ import annotations

import xarray as xr

from bayes_spill.inference.results import as_fit
from bayes_spill.model.likelihood import LOG_SALES

PPC_GROUP = "posterior_predictive"


def loo_pit_tree(fit, group: xr.Dataset | None = None, n_draws: int | None = None) -> xr.DataTree:
    """The fit's posterior, log_likelihood and observed_data with a posterior_predictive group, at
    the replicates' draws: what ``arviz_stats.loo_pit`` and ``arviz_plots.plot_loo_pit`` read.

    Parameters
    ----------
    fit : Fit, xarray.DataTree, str or pathlib.Path
        The fit.
    group : xarray.Dataset, optional
        The posterior_predictive group; default the fit's own (written by ``bayes-spill check``),
        else replicated now (``ppc.replicated_group``: run_ppc's group).
    n_draws : int, optional
        Draws to replicate at when there is no group (ppc's default when None).

    Returns
    -------
    xarray.DataTree
    """
    fit = as_fit(fit)
    tree = fit.tree
    if group is None and PPC_GROUP in tree.children:
        group = tree[PPC_GROUP].to_dataset()
    if group is None:
        from bayes_spill.checking import ppc

        group = ppc.replicated_group(fit, **({} if n_draws is None else {"n_draws": n_draws}))
    at = {"chain": group["chain"].values, "draw": group["draw"].values}
    return xr.DataTree.from_dict(
        {
            "/posterior": tree["posterior"].to_dataset().sel(at),
            "/log_likelihood": tree["log_likelihood"].to_dataset().sel(at),
            "/posterior_predictive": group,
            "/observed_data": tree["observed_data"].to_dataset(),
        }
    )


def loo_pit(fit, group: xr.Dataset | None = None) -> xr.Dataset:
    """LOO-PIT values of each firm-year's log sales (``arviz_stats.loo_pit``): uniform on [0, 1]
    for a calibrated model.

    Parameters
    ----------
    fit : Fit, xarray.DataTree, str or pathlib.Path
        The fit.
    group : xarray.Dataset, optional
        The posterior_predictive group (see ``loo_pit_tree``).

    Returns
    -------
    xarray.Dataset
        ``log_sales`` on the observation dimension.
    """
    import arviz_stats as azs

    return azs.loo_pit(loo_pit_tree(fit, group), var_names=[LOG_SALES])
