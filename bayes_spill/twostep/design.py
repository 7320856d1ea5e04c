"""The two-step estimator's design (estimator.py has the method): the arrays it reads, as plain
numpy (picklable for the bootstrap's worker processes), the spillovers transformed as the model
does, and the projection M_i(lambda) = I - x_i (x_i' x_i)^-1 x_i' of eq. (9)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import BayesSpillError
from bayes_spill.model.within import segment_sum, within_firm
from bayes_spill.spillover import kernel

# the zero-variation rule of alpha_hat, shared so that alpha_hat and the projection agree
from bayes_spill.twostep.table4 import RELATIVE_ZERO_VARIATION

BETA_NAMES = ("beta_k", "beta_l", "beta_r", "beta_zero_rd")


@dataclass(frozen=True)
class BaselineSettings:
    """Numerical settings of the two-step estimator.

    halflife_bounds_km: the search interval of the half-life (both specifications).
    grid_points: log-spaced grid points of the profile before the bounded refinement.
    quadrature_nodes: Gauss-Hermite nodes for the share integral of the contraction.
    firm_quadrature_nodes: Gauss-Hermite nodes for each firm's likelihood integral.
    contraction_tol: stop when the county effects move less than this (max abs).
    n_bootstrap: bootstrap resamples of firms (0: point estimates only).
    workers: processes for the bootstrap (None: the CPU count, at most 4; 1: in this process).
    seed: seed of the bootstrap resampling.
    spec1: also estimate the homogeneous specification (1) of Table 3.
    """

    halflife_bounds_km: tuple[float, float] = (5.0, 5000.0)
    grid_points: int = 41
    quadrature_nodes: int = 40
    firm_quadrature_nodes: int = 24
    contraction_tol: float = 1e-12
    contraction_max_iter: int = 20_000
    n_bootstrap: int = 199
    workers: int | None = None
    seed: int = 0
    spec1: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.halflife_bounds_km
        if not 0 < lo < hi:
            raise ValueError(f"halflife_bounds_km must satisfy 0 < low < high, got {self.halflife_bounds_km}")
        if self.grid_points < 3:
            raise ValueError(f"grid_points must be at least 3, got {self.grid_points}")
        if self.n_bootstrap < 0:
            raise ValueError(f"n_bootstrap must be non-negative, got {self.n_bootstrap}")
        if self.quadrature_nodes < 2 or self.firm_quadrature_nodes < 2:
            raise ValueError("quadrature node counts must be at least 2")


# -- the design: everything the estimator reads, as plain arrays (picklable for worker processes)
@dataclass(frozen=True, eq=False)
class Design:
    spill: kernel.SpilloverInputs
    transform: kernel.SpilloverTransform  # the spillover as the model uses it
    obs_firm: np.ndarray  # (n_obs,) sorted
    years_per_firm: np.ndarray  # (N,)
    q_dm: np.ndarray  # (n_obs,) within-firm demeaned log sales
    z_dm: np.ndarray  # (n_obs, p) within-firm demeaned regressors
    z_names: tuple[str, ...]
    years: np.ndarray  # (Y,)
    firm_choice: np.ndarray  # (N,) position of each firm's county in the occupied set
    n_firms: int


def design(
    panel: PreparedPanel, transform: kernel.SpilloverTransform = kernel.LEVELS, sbar_year: int | None = None
) -> Design:
    """Precompute the estimator's arrays from a panel (rows sorted by firm, as PreparedPanel is).

    Parameters
    ----------
    panel : PreparedPanel
        The firms and their years.
    transform : SpilloverTransform
        The spillover as the model uses it (``ModelSpec.spillover_transform``; default: levels,
        own stock excluded).
    sbar_year : int or None
        None averages S_lt over the sample years for the location choice; a year uses that year's.

    Returns
    -------
    Design
    """
    if panel.n_firms < 2:
        raise BayesSpillError("the two-step estimator needs at least two firms")
    spill = transform.inputs(panel, "occupied", sbar_year)
    obs_firm = np.asarray(panel.obs_firm)
    t_i = panel.years_per_firm.astype(float)
    year_dummies = (panel.obs_year[:, None] == np.arange(1, len(panel.years))[None, :]).astype(float)
    z = np.column_stack([panel.k, panel.n, panel.r, panel.zero_rd, year_dummies])
    names = (*BETA_NAMES, *[f"year_{int(y)}" for y in panel.years[1:]])
    return Design(
        spill=spill,
        transform=transform,
        obs_firm=obs_firm,
        years_per_firm=t_i,
        q_dm=within_firm(panel.q, obs_firm, t_i),
        z_dm=within_firm(z, obs_firm, t_i),
        z_names=names,
        years=np.asarray(panel.years),
        firm_choice=np.asarray(spill.firm_choice),
        n_firms=panel.n_firms,
    )


def design_from_config(panel: PreparedPanel, config) -> Design:
    """The design for a ModelConfig's spillover options (levels or logs, own stock, Sbar year)."""
    spec = config.model
    if spec.choice_set != "occupied":
        raise BayesSpillError(
            f"the two-step estimator needs the occupied-county choice set (the BLP contraction needs positive shares); "
            f"{config.source} has choice_set = {spec.choice_set!r}"
        )
    return design(panel, spec.spillover_transform, spec.sbar_year)


def firm_spillover(d: Design, halflife_km: float) -> np.ndarray:
    """S_it(lambda) for every firm-year, transformed as configured."""
    return d.transform.firm_year(d.spill, float(halflife_km))


def location_spillover(d: Design, halflife_km: float) -> np.ndarray:
    """Sbar_l(lambda) over the occupied counties (the location-choice regressor)."""
    return np.asarray(d.transform.choice(d.spill, float(halflife_km)))


@dataclass(frozen=True, eq=False)
class Projection:
    """The pieces of M_i(lambda) = I - x_i (x_i' x_i)^-1 x_i' for every firm."""

    s_dm: np.ndarray  # (n_obs,) within-demeaned S
    s_variation: np.ndarray  # (N,) sum_t (S_it - mean_i S)^2, 0 where S does not vary
    rank: np.ndarray  # (N,) rank of x_i: 2, or 1 when S does not vary
    dof: np.ndarray  # (N,) T_i - rank

    def apply(self, d: Design, v_dm: np.ndarray) -> np.ndarray:
        """M_i v for within-demeaned v (n_obs,) or (n_obs, p); rows of firms with dof 0 are 0."""
        s = self.s_dm if v_dm.ndim == 1 else self.s_dm[:, None]
        cross = segment_sum(s * v_dm, d.obs_firm, d.n_firms)
        denom = np.where(self.s_variation > 0, self.s_variation, 1.0)
        coef = cross / (denom if v_dm.ndim == 1 else denom[:, None])
        coef[self.s_variation <= 0] = 0.0
        out = v_dm - s * coef[d.obs_firm]
        zero = (self.dof <= 0)[d.obs_firm]
        out[zero] = 0.0
        return out


def projection(d: Design, s: np.ndarray) -> Projection:
    s_dm = within_firm(s, d.obs_firm, d.years_per_firm)
    variation = segment_sum(s_dm * s_dm, d.obs_firm, d.n_firms)
    # the zero-variation rule of table4.within_slope: below rounding at the field's scale
    level = float(np.max(np.abs(s))) if len(s) else 0.0
    none = variation <= d.years_per_firm * (RELATIVE_ZERO_VARIATION * level) ** 2
    variation = np.where(none, 0.0, variation)
    rank = np.where(none, 1, 2)
    return Projection(s_dm=s_dm, s_variation=variation, rank=rank, dof=d.years_per_firm - rank)


def projection_matrix(s_i: np.ndarray) -> np.ndarray:
    """M_i = I - x_i (x_i' x_i)^-1 x_i' for one firm, x_it = [S_it, 1] (eq. 9), by the textbook
    formula (pseudo-inverse when S does not vary): for checks and small examples. S is scaled to
    unit maximum first (M_i depends only on the span of x_i), so a remote firm's tiny S stays
    well conditioned."""
    s_i = np.asarray(s_i, float)
    top = np.max(np.abs(s_i)) if len(s_i) else 0.0
    x = np.column_stack([s_i / top if top > 0 else s_i, np.ones(len(s_i))])
    return np.eye(len(s_i)) - x @ np.linalg.pinv(x.T @ x) @ x.T
