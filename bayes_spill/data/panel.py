"""The prepared firm panel: one typed, immutable container shared by the loader and the simulator.

Built from a validated Compustat-style frame (see ``inputs.py``): R&D stocks by perpetual
inventory (docs/model.md, paper footnote 7), logs, the zero-R&D dummy, and the county R&D pools that
the spillover kernel turns into S_lt(lambda).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from bayes_spill.data.geography import Counties

MILLION_PER_BILLION = 1000.0

# The columns of a firm panel, Compustat mnemonics (docs/data.md).
PANEL_COLUMNS = ("gvkey", "fyear", "sale", "emp", "ppent", "xrd", "fips")


@dataclass(frozen=True)
class PanelSettings:
    """How raw firm-years become model variables.

    depreciation: R&D depreciation delta in R_it = (1 - delta) R_i,t-1 + XR_i,t-1 (paper: 0.15).
    presample_growth: g in the start value R_i0 = XR_i0 / (g + delta).
    min_years: firms seen in fewer years are dropped, with a printed count (paper: 3).
    on_gap: a firm with a missing year inside its panel: "error" (default) rejects the file
        naming the firms; "restart" starts the perpetual inventory again after the gap with the
        start rule, because the R&D spent in the unseen years is unknown.
    """

    depreciation: float = 0.15
    presample_growth: float = 0.05
    min_years: int = 3
    on_gap: Literal["error", "restart"] = "error"

    def __post_init__(self) -> None:
        if not 0.0 < self.depreciation <= 1.0:
            raise ValueError(f"depreciation must be in (0, 1], got {self.depreciation}")
        if self.presample_growth + self.depreciation <= 0.0:
            raise ValueError("presample_growth + depreciation must be positive (start rule divides by it)")
        if self.min_years < 2:
            raise ValueError(f"min_years must be at least 2 (within-firm variation), got {self.min_years}")
        if self.on_gap not in ("error", "restart"):
            raise ValueError(f"on_gap must be 'error' or 'restart', got {self.on_gap!r}")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class PreparedPanel:
    """A firm-year panel ready for the spillover kernel and the model.

    Observations are sorted by firm, then year. Firms are indexed 0..N-1 (``firms`` holds the
    gvkeys), years 0..Y-1 (``years`` holds the fiscal years), counties by their row in
    ``counties`` (the whole geography, not only occupied counties).
    """

    source: str
    counties: Counties
    firms: np.ndarray  # (N,) gvkey strings
    firm_county: np.ndarray  # (N,) index into counties
    years: np.ndarray  # (Y,) sorted fiscal years
    obs_firm: np.ndarray  # (n_obs,) firm index
    obs_year: np.ndarray  # (n_obs,) year index
    sale: np.ndarray  # (n_obs,) $ million
    emp: np.ndarray  # (n_obs,) thousands
    ppent: np.ndarray  # (n_obs,) $ million
    xrd: np.ndarray  # (n_obs,) $ million
    rd_stock: np.ndarray  # (n_obs,) R_it, $ million
    settings: PanelSettings = field(default_factory=PanelSettings)
    dropped: Mapping[str, int] = field(default_factory=dict)
    truth: Mapping | None = None

    def __post_init__(self) -> None:
        for name in (
            "firms",
            "firm_county",
            "years",
            "obs_firm",
            "obs_year",
            "sale",
            "emp",
            "ppent",
            "xrd",
            "rd_stock",
        ):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "dropped", MappingProxyType(dict(self.dropped)))
        if self.truth is not None:
            object.__setattr__(self, "truth", MappingProxyType(dict(self.truth)))
        n_obs = len(self.obs_firm)
        for name in ("obs_year", "sale", "emp", "ppent", "xrd", "rd_stock"):
            if len(getattr(self, name)) != n_obs:
                raise ValueError(f"PreparedPanel: {name} has {len(getattr(self, name))} rows, expected {n_obs}")
        if len(self.firm_county) != len(self.firms):
            raise ValueError("PreparedPanel: firm_county and firms differ in length")

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_firms(self) -> int:
        return len(self.firms)

    @property
    def n_obs(self) -> int:
        return len(self.obs_firm)

    @property
    def years_per_firm(self) -> np.ndarray:
        return np.bincount(self.obs_firm, minlength=self.n_firms)

    @property
    def firm_fips(self) -> np.ndarray:
        return self.counties.fips[self.firm_county]

    @property
    def occupied(self) -> np.ndarray:
        """Sorted county indices with at least one sample firm (the default choice set)."""
        return np.unique(self.firm_county)

    # -- model variables ---------------------------------------------------------------------
    @property
    def q(self) -> np.ndarray:
        return np.log(self.sale)

    @property
    def k(self) -> np.ndarray:
        return np.log(self.ppent)

    @property
    def n(self) -> np.ndarray:
        return np.log(self.emp)

    @property
    def zero_rd(self) -> np.ndarray:
        """1.0 where the R&D stock is zero (then r = 0 and this dummy carries the level)."""
        return (self.rd_stock <= 0.0).astype(float)

    @property
    def r(self) -> np.ndarray:
        out = np.zeros(self.n_obs)
        pos = self.rd_stock > 0.0
        out[pos] = np.log(self.rd_stock[pos])
        return out

    @property
    def obs_county(self) -> np.ndarray:
        return self.firm_county[self.obs_firm]

    def rd_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """County R&D pools calR_mt in $ billion over the counties that hold any R&D.

        Returns (source_counties, pool) with pool of shape (len(source_counties), Y):
        the sum of R_jt over sample firms j located in m and seen in year t.
        """
        sources, inverse = np.unique(self.obs_county, return_inverse=True)
        pool = np.zeros((len(sources), len(self.years)))
        np.add.at(pool, (inverse, self.obs_year), self.rd_stock / MILLION_PER_BILLION)
        return sources, pool

    @cached_property
    def content_sha256(self) -> str:
        """sha256 of the panel's data written as CSV (``to_frame``): alike for a frame, a file in
        any format and the panel built from either; computed once per panel."""
        return hashlib.sha256(self.to_frame().to_csv(index=False).encode()).hexdigest()

    def to_frame(self) -> pd.DataFrame:
        """The panel as a Compustat-style frame (the columns of docs/data.md), one row per firm-year."""
        return pd.DataFrame(
            {
                "gvkey": self.firms[self.obs_firm],
                "fyear": self.years[self.obs_year],
                "sale": self.sale,
                "emp": self.emp,
                "ppent": self.ppent,
                "xrd": self.xrd,
                "fips": self.counties.fips[self.obs_county],
            }
        )

    def summary(self) -> dict:
        """What a user wants to know before a long fit."""
        return {
            "source": self.source,
            "firms": self.n_firms,
            "firm_years": self.n_obs,
            "years": f"{int(self.years.min())}-{int(self.years.max())}" if len(self.years) else "",
            "mean_years_per_firm": float(self.years_per_firm.mean()) if self.n_firms else 0.0,
            "counties_occupied": int(len(self.occupied)),
            "zero_rd_firm_years": int(self.zero_rd.sum()),
            "dropped": dict(self.dropped),
        }


def rd_stock_by_perpetual_inventory(
    obs_firm: np.ndarray, fyear: np.ndarray, xrd: np.ndarray, settings: PanelSettings
) -> np.ndarray:
    """R_it = (1 - delta) R_i,t-1 + XR_i,t-1, starting at R_i0 = XR_i0 / (g + delta).

    Rows must be sorted by firm then year. After a gap (only reached with on_gap="restart")
    the stock restarts with the start rule at the first year after the gap.
    """
    delta, g = settings.depreciation, settings.presample_growth
    obs_firm, fyear, xrd = np.asarray(obs_firm), np.asarray(fyear), np.asarray(xrd, dtype=float)
    n = len(xrd)
    starts = np.ones(n, dtype=bool)
    starts[1:] = (obs_firm[1:] != obs_firm[:-1]) | (fyear[1:] != fyear[:-1] + 1)
    # Each row's position in its run of consecutive years; the recursion runs over positions (at
    # most the number of years), every row of a position at once, with the same arithmetic per
    # row as a loop over rows (and so the same numbers), instead of over the rows one by one.
    run_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    position = np.arange(n) - run_start
    stock = np.empty(n)
    stock[starts] = xrd[starts] / (g + delta)
    for k in range(1, int(position.max(initial=0)) + 1):
        rows = np.flatnonzero(position == k)
        stock[rows] = (1.0 - delta) * stock[rows - 1] + xrd[rows - 1]
    return stock


def build_panel(
    frame: pd.DataFrame,
    counties: Counties,
    source: str,
    settings: PanelSettings | None = None,
    dropped: Mapping[str, int] | None = None,
    truth: Mapping | None = None,
) -> PreparedPanel:
    """Turn a validated frame (columns PANEL_COLUMNS, every rule of docs/data.md already checked)
    into a PreparedPanel. Firms are ordered by gvkey, years ascending."""
    settings = settings or PanelSettings()
    frame = frame.sort_values(["gvkey", "fyear"], kind="stable").reset_index(drop=True)
    firms, obs_firm = np.unique(frame["gvkey"].to_numpy(dtype=str), return_inverse=True)
    fyear = frame["fyear"].to_numpy(dtype=np.int64)
    years, obs_year = np.unique(fyear, return_inverse=True)
    first_row = np.searchsorted(obs_firm, np.arange(len(firms)))
    firm_fips = frame["fips"].to_numpy(dtype=str)[first_row]
    xrd = frame["xrd"].to_numpy(dtype=float)
    return PreparedPanel(
        source=source,
        counties=counties,
        firms=firms,
        firm_county=counties.index_of(firm_fips),
        years=years,
        obs_firm=obs_firm,
        obs_year=obs_year,
        sale=frame["sale"].to_numpy(dtype=float),
        emp=frame["emp"].to_numpy(dtype=float),
        ppent=frame["ppent"].to_numpy(dtype=float),
        xrd=xrd,
        rd_stock=rd_stock_by_perpetual_inventory(obs_firm, fyear, xrd, settings),
        settings=settings,
        dropped=dropped or {},
        truth=truth,
    )
