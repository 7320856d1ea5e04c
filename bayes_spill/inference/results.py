"""``Fit``: one fitted model, what ``bayes_spill.fit`` and ``bayes_spill.load`` return.

A Fit holds the posterior DataTree (``fit.tree``, which ArviZ reads as it is) and the folder it
was read from or written to (``fit.path``). What every after-fit step needs from the tree — the
model configuration, the panel, the model's data and the posterior draws — is parsed on first use
and kept, so that a command parses the configuration once however many steps it runs. The steps
themselves live downstream (checking/, policy/) and are reached through methods that import them
when called: ``summary``, ``check``, ``counterfactual``, ``sorting_dominance``, ``county_shock``
and ``loo``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import xarray as xr


class Fit:
    """A fitted model: the posterior DataTree and what is parsed from it, once.

    Parameters
    ----------
    tree : xarray.DataTree
        The posterior as ``bayes-spill fit`` writes it (groups posterior, sample_stats,
        log_likelihood, observed_data, constant_data; provenance in its attrs).
    path : str or pathlib.Path, optional
        The fit folder the tree was read from or written to; None for a fit held only in memory.
    counties : str, pathlib.Path or Counties, optional
        The county table of the fit when it was not the built-in one (needed to rebuild the panel).

    Attributes
    ----------
    tree : xarray.DataTree
        The posterior; pass it to ArviZ (``arviz_stats.summary(fit.tree)``).
    path : pathlib.Path or None
        The fit folder.
    config : ModelConfig
        The model configuration the fit was made with (parsed from the TOML stored in the tree).
    panel : PreparedPanel
        The panel the fit was made on, rebuilt from the tree's observed and constant data.
    model_data : ModelData
        The model's numbers for that panel and configuration (spillover inputs, choice set).
    draws : PosteriorDraws
        Every posterior draw of the parameters as numpy arrays; ``fit.draws.thin(n)`` keeps n.
    truth : dict or None
        The true parameters when the fit's data is an embedded simulated dataset.

    See Also
    --------
    bayes_spill.fit : sample a model and return a Fit.
    bayes_spill.load : open a saved fit folder as a Fit.

    Examples
    --------
    >>> fit = bayes_spill.load("posterior/mine")              # doctest: +SKIP
    >>> fit.summary()                                          # doctest: +SKIP
    >>> fit.counterfactual("06085", 220.0, 2002).summary()     # doctest: +SKIP
    """

    def __init__(self, tree: xr.DataTree, path: str | Path | None = None, counties=None):
        self.tree = tree
        self.path = Path(path) if path is not None else None
        self.counties = counties

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, config=None, counties=None) -> Fit:
        """Open a saved fit (a folder or its posterior.nc) fully into memory.

        Parameters
        ----------
        path : str or pathlib.Path
            A fit folder written by ``bayes-spill fit`` or ``bayes_spill.fit(out=...)``, or its
            posterior.nc.
        config : ModelConfig, optional
            When given, the fit must have been made with this configuration (PosteriorError
            naming every setting that differs otherwise).
        counties : str, pathlib.Path or Counties, optional
            The county table of the fit when it was not the built-in one.

        Returns
        -------
        Fit
        """
        from bayes_spill.inference import posterior_io

        tree, stored = posterior_io.open_tree(path, config)
        folder = Path(path)
        fit = cls(tree, folder if folder.is_dir() else folder.parent, counties)
        if stored is not None:  # parsed once already, to check the file's claims
            fit.__dict__["config"] = stored
        return fit

    # -- parsed once -----------------------------------------------------------------------------
    @functools.cached_property
    def config(self):
        """The ModelConfig the fit was made with."""
        from bayes_spill.inference.posterior_io import config_from_tree

        return config_from_tree(self.tree)

    @functools.cached_property
    def panel(self):
        """The PreparedPanel the fit was made on, rebuilt from the tree (no truth attached)."""
        from bayes_spill.inference.posterior_io import panel_from_tree

        return panel_from_tree(self.tree, self.counties, config=self.config)

    @functools.cached_property
    def model_data(self):
        """The ModelData of the panel under the fit's configuration."""
        from bayes_spill.model.likelihood import model_data

        return model_data(self.panel, self.config)

    @functools.cached_property
    def draws(self):
        """Every posterior draw of the parameters (PosteriorDraws), firms in the panel's order."""
        from bayes_spill.inference.draws import PosteriorDraws

        return PosteriorDraws.from_posterior(self.tree["posterior"].to_dataset(), firms=self.panel.firms)

    @functools.cached_property
    def truth(self) -> dict | None:
        """The truth of the embedded (simulated) dataset when the fit was made on it, else None."""
        source = str(self.tree.attrs.get("data_source", ""))
        if not source.startswith("embedded:"):
            return None
        import json

        from bayes_spill.data.datasets import DATASETS, dataset_path

        name = source.split(":", 1)[1]
        if name not in DATASETS:
            return None
        path = dataset_path(name).with_name(DATASETS[name][1])
        return json.loads(path.read_text()) if path.exists() else None

    # -- plain facts -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The model's name (as stored in the tree), or the folder's name."""
        fallback = self.path.name if self.path is not None else "?"
        return str(self.tree.attrs.get("model_name", fallback))

    @property
    def seed(self) -> int:
        """The seed the fit was sampled with (0 when the tree does not say)."""
        return int(self.tree.attrs.get("seed", 0))

    def __repr__(self) -> str:
        post = self.tree["posterior"] if "posterior" in self.tree.children else None
        shape = f"{post.sizes.get('chain', 0)} chains x {post.sizes.get('draw', 0)} draws" if post is not None else "no posterior"
        where = f" in {self.path}" if self.path is not None else ""
        return f"<Fit {self.name} on {self.tree.attrs.get('data_source', '?')}: {shape}{where}>"

    # -- after the fit ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Write the fit to a folder (posterior.nc, summary.csv, versions.json, atomically).

        Parameters
        ----------
        out_dir : str or pathlib.Path
            The fit folder; it becomes ``fit.path``.

        Returns
        -------
        pathlib.Path
            The posterior file written.
        """
        from bayes_spill.inference import posterior_io

        target = posterior_io.save(self.tree, out_dir)
        self.path = Path(out_dir)
        return target

    def summary(self, all_parameters: bool = False):
        """The parameter table: median, 90% interval, R-hat and bulk/tail ESS (and the truth when
        the fit's data is an embedded simulation).

        Parameters
        ----------
        all_parameters : bool, default False
            Every posterior variable (vectors flattened with their coordinates) instead of the
            key scalars.

        Returns
        -------
        pandas.DataFrame
            One row per parameter.
        """
        from bayes_spill.inference.summary import summary_table, truth_values

        return summary_table(self.tree, all_parameters=all_parameters, truth=truth_values(self.truth))

    def loo(self):
        """PSIS-LOO over the per-firm log-likelihood.

        Returns
        -------
        arviz_stats ELPDData
            Pointwise elpd and Pareto k per firm.
        """
        from bayes_spill.checking.comparison import loo

        return loo(self)

    def check(self, n_draws: int | None = None, n_bootstrap: int | None = None, seed: int | None = None, make_figures: bool = True, out_dir=None):
        """Every check of the fit, as ``bayes-spill check`` runs them: sampler diagnostics,
        identification, posterior predictive checks, PSIS-LOO and Table 4 on the data; writes
        report.md, checks.csv, figures/ and the posterior_predictive group into the fit folder.

        Parameters
        ----------
        n_draws : int, optional
            Posterior draws for the predictive checks (default 200, thinned evenly).
        n_bootstrap : int, optional
            Bootstrap resamples for Table 4's t-statistics (default 200).
        seed : int, optional
            Random seed; None uses the fit's, so a check is reproducible.
        make_figures : bool, default True
            Draw the figures.
        out_dir : str or pathlib.Path, optional
            Where to write; default ``fit.path`` (a fit held only in memory needs one).

        Returns
        -------
        CheckReport
            The verdicts, the tables behind them and the files written.
        """
        from bayes_spill.checking.report import DEFAULT_BOOTSTRAP, check

        boot = DEFAULT_BOOTSTRAP if n_bootstrap is None else n_bootstrap
        return check(self, n_draws=n_draws, n_bootstrap=boot, seed=seed, make_figures=make_figures, out_dir=out_dir)

    def counterfactual(
        self,
        county: str,
        rd_stock_mil: float,
        year: int,
        neighbors: list[str] | None = None,
        alpha: str = "firm",
        county_sales: dict[str, float] | None = None,
        radius_km: float = 100.0,
        n_draws: int | None = 1000,
        truth: bool = True,
    ):
        """Table 6: the percent gain in the aggregate sales of a county's and its neighbours'
        firms when an entrant with an R&D stock enters the county, under the paper's three
        mechanisms (distance decay only, sorting only, both).

        Parameters
        ----------
        county : str
            5-digit FIPS code of the county the entrant enters.
        rd_stock_mil : float
            The entrant's R&D stock, $ million (the paper: 220).
        year : int
            The year of entry (the paper: 2002).
        neighbors : list of str, optional
            Counties to report besides the entrant's; default those with sample firms within
            ``radius_km``.
        alpha : {"firm", "implied"}, default "firm"
            "firm": the posterior alpha_i of each county's sample firms; "implied": the
            model-implied f(alpha | county).
        county_sales : dict, optional
            {fips: sales in $ million}, for the gains in dollars.
        radius_km : float, default 100
            Radius of the default neighbours.
        n_draws : int or None, default 1000
            Posterior draws to use, evenly thinned (None: all).
        truth : bool, default True
            Attach the cells at the true parameters when the fit's data is an embedded simulation.

        Returns
        -------
        Table6Result
            Per-draw cells; ``.summary()`` gives the table, ``table6.format_table6`` the text.
        """
        from bayes_spill.policy.table6 import table6, table6_truth
        from bayes_spill.policy.world import load_world

        world = load_world(self, max_draws=n_draws)
        options = dict(neighbors=neighbors, alpha=alpha, county_sales=county_sales, radius_km=radius_km)
        result = table6(world, county, rd_stock_mil, year, **options)
        if truth and world.panel.truth is not None and "alpha" in world.panel.truth:
            result = result.with_truth(table6_truth(world, county, rd_stock_mil, year, **options))
        return result

    def sorting_dominance(self, pairs=None, n_draws: int | None = 1000):
        """Proposition 1 per county pair: the posterior probability that the absorptive capacity
        of the higher-spillover county's firms stochastically dominates the other's.

        Parameters
        ----------
        pairs : list of (str, str), optional
            County pairs as FIPS codes; default the county with the most sample firms against the
            next four.
        n_draws : int or None, default 1000
            Posterior draws to use, evenly thinned (None: all).

        Returns
        -------
        list of PairDraws
            One per pair; ``sorting_table`` makes them a DataFrame.
        """
        from bayes_spill.policy import proposition1
        from bayes_spill.policy.world import load_world

        world = load_world(self, max_draws=n_draws)
        return proposition1.sorting_dominance(world, pairs if pairs is not None else proposition1.default_pairs(world))

    def county_shock(self, county: str, rd_stock_mil: float, n_draws: int | None = 100, damping: float = 0.5):
        """Re-solve the fitted location equilibrium of each draw after exogenous R&D appears in a
        county.

        Parameters
        ----------
        county : str
            5-digit FIPS code of the county where the R&D appears.
        rd_stock_mil : float
            The R&D stock added there, $ million.
        n_draws : int or None, default 100
            Posterior draws to solve, evenly thinned (None: all).
        damping : float, default 0.5
            Weight of the new iterate in the damped fixed point.

        Returns
        -------
        CountyShockResult
            Base and shocked shares per draw; ``.county_table()`` summarises them.
        """
        from bayes_spill.policy.equilibrium import county_shock
        from bayes_spill.policy.world import load_world

        return county_shock(load_world(self, max_draws=n_draws), county, rd_stock_mil, damping=damping)


def as_fit(source, counties=None) -> Fit:
    """A Fit from a Fit (returned as it is), a DataTree, or a fit folder / posterior.nc path.

    Parameters
    ----------
    source : Fit, xarray.DataTree, str or pathlib.Path
        What to turn into a Fit.
    counties : str, pathlib.Path or Counties, optional
        The county table of the fit when it was not the built-in one (ignored for a Fit).

    Returns
    -------
    Fit
    """
    if isinstance(source, Fit):
        return source
    if isinstance(source, xr.DataTree):
        return Fit(source, counties=counties)
    return Fit.load(source, counties=counties)
