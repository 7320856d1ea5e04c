"""``FittedModel``: one fitted model as the inference stage leaves it, parsed once.

A FittedModel holds the posterior DataTree (``fit.tree``, which ArviZ reads as it is) and the folder it
was read from or written to (``fit.path``). What every after-fit step needs from the tree — the
model configuration, the panel, the model's data and the posterior draws — is parsed on first use
and kept, so that a command parses the configuration once however many steps it runs. The after-fit
stages (checking/, policy/) take a FittedModel; the public ``bayes_spill.Fit`` (bayes_spill/api.py,
the last stage) is a FittedModel with those stages as methods, which is what ``bayes_spill.fit``
and ``bayes_spill.load`` return.
"""

from __future__ import annotations

import functools
from pathlib import Path

import xarray as xr


class FittedModel:
    """A fitted model: the posterior DataTree and what is parsed from it, once.

    Parameters
    ----------
    tree : xarray.DataTree
        The posterior as ``bayes-spill fit`` writes it (groups posterior, sample_stats,
        log_likelihood, log_prior, prior, observed_data, constant_data: docs/outputs.md;
        provenance in its attrs).
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
    bayes_spill.Fit : a FittedModel with the after-fit steps as methods.
    """

    def __init__(self, tree: xr.DataTree, path: str | Path | None = None, counties=None):
        self.tree = tree
        self.path = Path(path) if path is not None else None
        self.counties = counties

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, config=None, counties=None) -> FittedModel:
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
        shape = (
            f"{post.sizes.get('chain', 0)} chains x {post.sizes.get('draw', 0)} draws"
            if post is not None
            else "no posterior"
        )
        where = f" in {self.path}" if self.path is not None else ""
        return f"<{type(self).__name__} {self.name} on {self.tree.attrs.get('data_source', '?')}: {shape}{where}>"

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


def as_fit(source, counties=None) -> FittedModel:
    """A FittedModel from a FittedModel or Fit (returned as it is), a DataTree, or a fit folder /
    posterior.nc path.

    Parameters
    ----------
    source : FittedModel, xarray.DataTree, str or pathlib.Path
        What to turn into a FittedModel.
    counties : str, pathlib.Path or Counties, optional
        The county table of the fit when it was not the built-in one (ignored for a Fit).

    Returns
    -------
    FittedModel
    """
    if isinstance(source, FittedModel):
        return source
    if isinstance(source, xr.DataTree):
        return FittedModel(source, counties=counties)
    return FittedModel.load(source, counties=counties)
