"""The spillover kernel: S_lt(lambda) = sum_m exp(-lambda rho(l, m)) calR_mt (paper eq. 2).

One formula, written once against an array namespace, so numpy (simulator, checks,
counterfactuals) and PyTensor (the model's log-density) evaluate the same expression:
``backend=np`` or ``backend=pytensor.tensor``. Cost: receivers x sources x years, where sources are
the counties holding R&D (occupied counties) — never all counties squared.

Units: pools and fields in $ billion, distances in km, half-life h = ln 2 / lambda in km.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from bayes_spill.data.geography import distance_matrix_km
from bayes_spill.data.panel import MILLION_PER_BILLION, PreparedPanel
from bayes_spill.errors import ConfigError
from bayes_spill.paper import LN2

# A weight exp(-lambda rho) below exp(-600) ~ 1e-261 is 0 for any purpose (a county's own pool
# has weight 1). Returning exactly 0 there keeps exp out of the underflow range at short
# half-lives and long distances (h = 1 km, 8,000 km: exponent -5,500), keeps weight x pool (pools
# >= 1e-15 $ bil) in double precision's normal range, and makes the gradient exactly 0 there.
MIN_EXPONENT = -600.0


def decay_rate(halflife_km):
    """lambda = ln 2 / h (per km)."""
    return LN2 / halflife_km


def decay_weights(distance_km, halflife_km, backend: ModuleType = np):
    """exp(-lambda rho): the share of a pool that reaches a county at that distance (exactly 0
    where lambda rho > 600, i.e. below 1e-261)."""
    exponent = -decay_rate(halflife_km) * distance_km
    return backend.where(exponent > MIN_EXPONENT, backend.exp(backend.maximum(exponent, MIN_EXPONENT)), 0.0)


def spillover_field(distance_km, pool, halflife_km, backend: ModuleType = np):
    """S_lt for receivers l (rows of distance_km) and years t (columns of pool): shape (L, Y)."""
    return backend.dot(decay_weights(distance_km, halflife_km, backend), pool)


def firm_spillover(field, obs_receiver, obs_year, own_stock_bil=None):
    """S_it = S_{l_i t}, minus the firm's own stock R_it when given (the own-stock exclusion:
    a firm's own R&D is already in r_it)."""
    s = field[obs_receiver, obs_year]
    return s if own_stock_bil is None else s - own_stock_bil


@dataclass(frozen=True, eq=False)
class SpilloverInputs:
    """Everything the kernel needs from a panel, precomputed once (numpy arrays).

    production_*: receivers are the occupied counties; obs_receiver maps each firm-year to its
    row. choice_*: receivers are the location-choice set; choice_pool is the pool averaged over
    sample years (or the reference year), so Sbar_l(lambda) = exp(-lambda rho) @ choice_pool.
    """

    sources: np.ndarray  # county indices holding R&D
    pool: np.ndarray  # (M, Y) $ bil
    production_distance: np.ndarray  # (L_occ, M) km
    obs_receiver: np.ndarray  # (n_obs,) row in production_distance
    obs_year: np.ndarray  # (n_obs,)
    own_stock_bil: np.ndarray | None  # (n_obs,) or None when the own stock is kept
    choice_set: np.ndarray  # county indices of the choice set
    choice_distance: np.ndarray  # (L_choice, M) km
    choice_pool: np.ndarray  # (M,) $ bil
    firm_choice: np.ndarray  # (N,) position of each firm's county in choice_set


def spillover_inputs(
    panel: PreparedPanel,
    choice_set: str = "occupied",
    exclude_own: bool = True,
    sbar_year: int | None = None,
) -> SpilloverInputs:
    """Precompute distances and pools for a panel.

    choice_set: "occupied" (counties with a sample firm, the paper's setting) or "all".
    sbar_year: None averages S_lt over the sample years; a year uses that year's field.
    """
    sources, pool = panel.rd_pool()
    occupied = panel.occupied
    if choice_set == "occupied":
        choice = occupied
    elif choice_set == "all":
        choice = np.arange(len(panel.counties))
    else:
        raise ValueError(f"choice_set must be 'occupied' or 'all', got {choice_set!r}")
    if sbar_year is None:
        choice_pool = pool.mean(axis=1)
    else:
        where = np.flatnonzero(panel.years == sbar_year)
        if len(where) == 0:
            raise ConfigError(
                f"model.sbar_year = {sbar_year} is not a year of the panel ({panel.years.min()}-{panel.years.max()})"
            )
        choice_pool = pool[:, where[0]]
    return SpilloverInputs(
        sources=sources,
        pool=pool,
        production_distance=distance_matrix_km(panel.counties, occupied, sources),
        obs_receiver=np.searchsorted(occupied, panel.obs_county),
        obs_year=np.asarray(panel.obs_year),
        own_stock_bil=panel.rd_stock / MILLION_PER_BILLION if exclude_own else None,
        choice_set=choice,
        choice_distance=distance_matrix_km(panel.counties, choice, sources),
        choice_pool=choice_pool,
        firm_choice=np.searchsorted(choice, panel.firm_county),
    )


def firm_year_spillover(inputs: SpilloverInputs, halflife_km, backend: ModuleType = np):
    """S_it(lambda) for every firm-year, own stock excluded when the inputs say so."""
    field = spillover_field(inputs.production_distance, inputs.pool, halflife_km, backend)
    return firm_spillover(field, inputs.obs_receiver, inputs.obs_year, inputs.own_stock_bil)


def choice_spillover(inputs: SpilloverInputs, halflife_km, backend: ModuleType = np):
    """Sbar_l(lambda) for every county of the choice set."""
    return backend.dot(decay_weights(inputs.choice_distance, halflife_km, backend), inputs.choice_pool)


def transform(s, kind: str, floor_bil: float, backend: ModuleType = np):
    """Levels (the paper's default, footnote 9) or log S with a floor for near-empty counties."""
    if kind == "level":
        return s
    if kind == "log":
        return backend.log(backend.maximum(s, floor_bil))
    raise ValueError(f"unknown spillover transform {kind!r}: use 'level' or 'log'")


@dataclass(frozen=True)
class SpilloverTransform:
    """The spillover as a fit uses it: S_it with the firm's own stock excluded or not, in levels or
    as log max(S, floor_bil). One object carries the three settings (``ModelSpec.spillover_transform``
    builds it from a configuration), so the likelihood, the checks, the counterfactuals and the
    two-step estimator cannot transform S differently.

    Parameters
    ----------
    kind : str
        "level" ($ bil, the paper's choice) or "log".
    floor_bil : float
        The floor of the log variant, $ bil (positive).
    exclude_own : bool
        S_it = S_{l_i t} - R_it (the firm's own R&D is already in r_it) or the county's whole field.
    """

    kind: str = "level"
    floor_bil: float = 0.001
    exclude_own: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("level", "log"):
            raise ValueError(f"unknown spillover transform {self.kind!r}: use 'level' or 'log'")

    def apply(self, s, backend: ModuleType = np):
        """T(S): S itself, or log max(S, floor_bil); numpy or PyTensor."""
        return transform(s, self.kind, self.floor_bil, backend)

    def inputs(
        self, panel: PreparedPanel, choice_set: str = "occupied", sbar_year: int | None = None
    ) -> SpilloverInputs:
        """The kernel's inputs for a panel, with the own stock excluded as this transform says."""
        return spillover_inputs(panel, choice_set, self.exclude_own, sbar_year)

    def firm_year(self, inputs: SpilloverInputs, halflife_km, backend: ModuleType = np):
        """T(S_it(lambda)) for every firm-year (own stock excluded where ``inputs`` holds it)."""
        return self.apply(firm_year_spillover(inputs, halflife_km, backend), backend)

    def choice(self, inputs: SpilloverInputs, halflife_km, backend: ModuleType = np):
        """T(Sbar_l(lambda)) for every county of the choice set."""
        return self.apply(choice_spillover(inputs, halflife_km, backend), backend)


LEVELS = SpilloverTransform()  # the paper's: S in $ bil, the firm's own stock excluded
