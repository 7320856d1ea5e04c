"""The fitted world every policy experiment works on: a fit's panel, configuration, spillover
inputs (choice set, pools) and parameter draws — posterior draws, or one draw at a simulation's
truth — and the credible interval the experiments report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import InputError, PosteriorError
from bayes_spill.inference.draws import PosteriorDraws
from bayes_spill.model.likelihood import COUNTY
from bayes_spill.spillover import kernel

INTERVAL = (0.05, 0.95)  # the 90% equal-tailed interval of every policy table


@dataclass(frozen=True, eq=False)
class FittedWorld:
    """A fit's panel, configuration, spillover inputs (choice set, pools) and parameter draws."""

    panel: PreparedPanel
    config: object  # ModelConfig
    spill: kernel.SpilloverInputs
    draws: PosteriorDraws
    notes: tuple[str, ...] = ()

    @property
    def choice_fips(self) -> np.ndarray:
        return self.panel.counties.fips[self.spill.choice_set]

    def sbar(self, draws: PosteriorDraws | None = None) -> np.ndarray:
        """Sbar_l(lambda) of the choice set per draw, transformed as the fit does: (D, L)."""
        draws = draws or self.draws
        spec = self.config.model
        return np.stack([spec.spillover_transform.choice(self.spill, h) for h in draws.halflife_km])

    def choice_position(self, fips: str) -> int | None:
        """Position of a county in the choice set, or None when it is not in it."""
        where = np.flatnonzero(self.choice_fips == fips)
        return int(where[0]) if len(where) else None


def load_world(source, counties=None, max_draws: int | None = None) -> FittedWorld:
    """The fitted world of a fit.

    Parameters
    ----------
    source : Fit, xarray.DataTree, str or pathlib.Path
        A Fit, a loaded DataTree, or a fit folder / posterior.nc.
    counties : str or pathlib.Path, optional
        The county table of the fit when it was not the built-in one (for a tree or a path).
    max_draws : int, optional
        Posterior draws to keep, evenly thinned (default all).

    Returns
    -------
    FittedWorld
        With the truth attached to the panel when the fit's data is an embedded simulation.
    """
    from bayes_spill.inference.results import as_fit

    fit = as_fit(source, counties)
    panel, spill = fit.panel, fit.model_data.spill
    post = fit.tree["posterior"]
    if COUNTY in post.coords:
        stored = post[COUNTY].values.astype(str)
        if not np.array_equal(stored, panel.counties.fips[spill.choice_set].astype(str)):
            raise PosteriorError("the posterior's choice set does not match the rebuilt panel (another county table?)")
    notes = []
    if fit.truth is not None:
        panel = PreparedPanel(**{**panel.__dict__, "truth": fit.truth})
        notes.append(
            f"the fit's data is the embedded dataset {fit.tree.attrs.get('data_source')}: its true parameters are known"
        )
    return FittedWorld(panel, fit.config, spill, fit.draws.thin(max_draws), tuple(notes))


def as_world(source, max_draws: int | None = None) -> FittedWorld:
    """A FittedWorld as it is, or the world of a Fit (or tree, or fit folder) with ``max_draws``."""
    return source if isinstance(source, FittedWorld) else load_world(source, max_draws=max_draws)


def attach_truth(world: FittedWorld, truth_file: str | Path) -> FittedWorld:
    """The same world with a simulation's truth (truth.json of ``bayes-spill simulate``) attached."""
    import json

    path = Path(truth_file)
    try:
        truth = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"cannot read the truth file ({exc})") from None
    panel = PreparedPanel(**{**world.panel.__dict__, "truth": truth})
    return FittedWorld(panel, world.config, world.spill, world.draws, world.notes)


def draws_from_truth(panel: PreparedPanel, spill: kernel.SpilloverInputs) -> PosteriorDraws:
    """The simulation's true parameters (``panel.truth``) as one draw on the panel's firms and the
    choice set of ``spill``."""
    return PosteriorDraws.from_truth(
        panel.truth, panel.firms.astype(str), panel.counties.fips[spill.choice_set].astype(str)
    )


def truth_world(world: FittedWorld) -> FittedWorld:
    """The world with its draws replaced by the simulation's truth (one draw)."""
    return FittedWorld(world.panel, world.config, world.spill, draws_from_truth(world.panel, world.spill), world.notes)


def world_from_panel(panel: PreparedPanel, config=None, draws: PosteriorDraws | None = None) -> FittedWorld:
    """A world from a panel and configuration (default: the lychagin2010 model); draws default
    to the panel's truth."""
    from bayes_spill.inference.fitting import resolve_config
    from bayes_spill.model.likelihood import model_data

    config = resolve_config(config) if config is not None else resolve_config()
    spill = model_data(panel, config).spill
    return FittedWorld(panel, config, spill, draws if draws is not None else draws_from_truth(panel, spill))
