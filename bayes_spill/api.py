"""The public face of a fit: ``bayes_spill.fit``, ``bayes_spill.load`` and the ``Fit`` they return.

This module is the last stage before the command line: a ``Fit`` is the inference stage's
``FittedModel`` (the posterior DataTree and what is parsed from it, once) with the after-fit stages
(checking/, policy/) as methods, so that a user reaches every step from one object while each
stage still imports only from the stages before it.
"""

from __future__ import annotations

from pathlib import Path

from bayes_spill.checking.comparison import loo as _loo
from bayes_spill.checking.report import DEFAULT_BOOTSTRAP, check
from bayes_spill.checking.tables import parameter_table
from bayes_spill.inference import fitting
from bayes_spill.inference.results import FittedModel
from bayes_spill.policy import proposition1
from bayes_spill.policy.equilibrium import county_shock
from bayes_spill.policy.table6 import table6, table6_truth
from bayes_spill.policy.world import load_world


class Fit(FittedModel):
    """A fitted model: the posterior DataTree, what is parsed from it once, and every after-fit step.

    Its constructor, attributes (``tree``, ``path``, ``config``, ``panel``, ``model_data``,
    ``draws``, ``truth``) and ``summary``/``save`` are FittedModel's
    (``bayes_spill.inference.results``); the methods below run the after-fit stages on it.

    See Also
    --------
    fit : sample a model and return a Fit.
    load : open a saved fit folder as a Fit.

    Examples
    --------
    >>> fit = bayes_spill.load("posterior/mine")  # doctest: +SKIP
    >>> fit.summary()  # doctest: +SKIP
    >>> fit.counterfactual("06085", 220.0, 2002).summary()  # doctest: +SKIP
    """

    @classmethod
    def of(cls, fitted: FittedModel) -> Fit:
        """The Fit of a FittedModel, sharing what it has parsed already."""
        if isinstance(fitted, cls):
            return fitted
        out = cls.__new__(cls)
        out.__dict__.update(fitted.__dict__)
        return out

    def loo(self):
        """PSIS-LOO over the per-firm log-likelihood.

        Returns
        -------
        arviz_stats ELPDData
            Pointwise elpd and Pareto k per firm.
        """
        return _loo(self)

    def table(self, *others, baseline=None, which: str = "parameters", labels=None):
        """The paper's Table 3 and/or Table 5 with this fit (and ``others``) in columns, as
        ``bayes-spill table`` writes it: posterior median, 90% interval and sd per parameter.

        Parameters
        ----------
        *others : Fit, FittedModel, DataTree or path
            More fits, one column each after this one.
        baseline : BaselineResult, str or pathlib.Path, optional
            The two-step estimator on the same data, or the folder ``bayes-spill baseline --out``
            wrote: its columns (estimate, bootstrap 90% interval and s.e.) follow the fits'.
        which : {"parameters", "3", "5"}, default "parameters"
            Table 3 (production function), Table 5 (location choice), or both.
        labels : list of str, optional
            Column headings of the fits (default: the model names).

        Returns
        -------
        pandas.DataFrame
            Rows (name, label); columns (column, statistic), statistic one of estimate, lower,
            upper, sd. ``bayes_spill.checking.tables.parameter_table`` gives it with its LaTeX
            and Markdown layouts.
        """
        return parameter_table([self, *others], baseline=baseline, which=which, labels=labels).frame

    def check(
        self,
        n_draws: int | None = None,
        n_bootstrap: int | None = None,
        seed: int | None = None,
        make_figures: bool = True,
        out_dir=None,
    ):
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
        return county_shock(load_world(self, max_draws=n_draws), county, rd_stock_mil, damping=damping)


def fit(data=None, model=None, out=None, **options) -> Fit:
    """Fit the joint model with NUTS and return a ``Fit``; write the fit folder when given one.

    Parameters
    ----------
    data : str, pathlib.Path, pandas.DataFrame or PreparedPanel, optional
        A panel file (CSV, CSV.gz, Parquet, Stata .dta), a DataFrame with the panel's columns, or
        a prepared panel; None fits the embedded default dataset.
    model : str, pathlib.Path or ModelConfig, optional
        A TOML path, the name of a model file (``models/``), or a ModelConfig; None chooses the
        default for the panel's number of firms.
    out : str or pathlib.Path, optional
        The fit folder to write (posterior.nc, summary.csv, versions.json, atomically).
    **options
        ``out_root``, ``seed``, ``chains``, ``draws``, ``ess``, ``tune``, ``backend``, ``counties``,
        ``progress``, ``report``: see ``bayes_spill.inference.fitting.fit``.

    Returns
    -------
    Fit
        The posterior (``fit.tree``) with its configuration, panel and draws; ``fit.path`` is the
        folder written, or None.
    """
    return Fit.of(fitting.fit(data=data, model=model, out=out, **options))


def load(path: str | Path, config=None, counties=None) -> Fit:
    """Open a saved fit (a folder or its posterior.nc) as a ``Fit``.

    Parameters
    ----------
    path : str or pathlib.Path
        A fit folder written by ``bayes-spill fit`` (or ``bayes_spill.fit(out=...)``), or its
        posterior.nc.
    config : ModelConfig, optional
        When given, the fit must have been made with this configuration; the PosteriorError says
        what differs.
    counties : str, pathlib.Path or Counties, optional
        The county table of the fit when it was not the built-in one.

    Returns
    -------
    Fit
    """
    return Fit.load(path, config=config, counties=counties)
