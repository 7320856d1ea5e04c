"""County geography: the counties of the 50 states and DC, their centroids, and great-circle distances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


@dataclass(frozen=True, eq=False)
class Counties:
    """A county table: one row per county, indexed 0..L-1 in the order given.

    covariates holds the numeric columns available to the county-effect prior
    (the built-in table has ``labor_force``, the 2009 BLS labor force).
    """

    fips: np.ndarray  # (L,) 5-digit strings
    name: np.ndarray  # (L,) str
    state: np.ndarray  # (L,) 2-letter postal code
    lat: np.ndarray  # (L,) degrees
    lon: np.ndarray  # (L,) degrees
    covariates: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "built-in"

    def __post_init__(self) -> None:
        for name in ("fips", "name", "state", "lat", "lon"):
            a = np.array(getattr(self, name), copy=True)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        cov = {}
        for key, values in self.covariates.items():
            a = np.array(values, dtype=float, copy=True)
            a.setflags(write=False)
            cov[key] = a
        object.__setattr__(self, "covariates", MappingProxyType(cov))
        object.__setattr__(self, "_position", {f: i for i, f in enumerate(self.fips.tolist())})

    def __len__(self) -> int:
        return len(self.fips)

    def index_of(self, fips: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row indices of the given FIPS codes; KeyError naming the unknown ones."""
        position = self._position  # type: ignore[attr-defined]
        codes = [str(f) for f in np.asarray(fips).tolist()]
        unknown = sorted({c for c in codes if c not in position})
        if unknown:
            raise KeyError(f"unknown county FIPS code(s) in {self.source}: {', '.join(unknown[:10])}")
        return np.array([position[c] for c in codes], dtype=np.int64)

    def label(self, index: int) -> str:
        return f"{self.name[index]}, {self.state[index]} ({self.fips[index]})"


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine great-circle distance in km between points given in degrees (broadcasts)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    h = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def distance_matrix_km(counties: Counties, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """rho(l, m) in km for l in ``rows`` and m in ``cols`` (county indices): shape (len(rows), len(cols))."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    return great_circle_km(
        counties.lat[rows][:, None], counties.lon[rows][:, None], counties.lat[cols][None, :], counties.lon[cols][None, :]
    )
