"""County geography: the counties of the 50 states and DC, their centroids, and great-circle distances."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

import numpy as np
import pandas as pd

from bayes_spill.data.files import read_table
from bayes_spill.errors import InputError

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
REQUIRED_COLUMNS = ("fips", "lat", "lon")
TEXT_COLUMNS = ("fips", "name", "state")
# Numbers nearer 0 than TINY are read as 0 (1e-100 degrees is 0 for any purpose; it keeps the
# trigonometry and the covariate standardisation in double precision's normal range), and
# covariates larger than HUGE in magnitude are rejected (their squares would overflow).
TINY, HUGE = 1e-100, 1e100


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
        counties.lat[rows][:, None],
        counties.lon[rows][:, None],
        counties.lat[cols][None, :],
        counties.lon[cols][None, :],
    )


def load_counties(path: str | os.PathLike | None = None) -> Counties:
    """The county table: the built-in one (``bayes_spill/data/counties.csv``) or a user's CSV/Parquet file.

    A user table needs ``fips`` (5-digit text), ``lat`` and ``lon`` (degrees); ``name`` and ``state``
    are optional; every other numeric column becomes a covariate. Problems raise InputError naming
    the file, the column and the file line numbers (header = line 1) of the offending rows.
    """
    if path is None:
        return _builtin_counties()

    return counties_from_frame(read_table(path), str(path))


@functools.lru_cache(maxsize=1)
def _builtin_counties() -> Counties:
    with resources.files("bayes_spill").joinpath("data/counties.csv").open("rb") as f:
        frame = pd.read_csv(f, dtype={c: str for c in TEXT_COLUMNS})
    frame.index = pd.RangeIndex(2, 2 + len(frame))
    return counties_from_frame(frame, "built-in counties.csv", source="built-in")


def counties_from_frame(frame: pd.DataFrame, file: str, source: str | None = None) -> Counties:
    """Validate a county table whose index holds file line numbers, and build Counties from it."""

    def lines(mask: pd.Series) -> list[int]:
        return [int(i) for i in frame.index[mask.to_numpy(dtype=bool)]]

    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise InputError(
            file,
            ", ".join(missing),
            f"missing required column(s); columns found: {found}",
            hint="a county table needs fips, lat and lon; name, state and numeric covariates are optional",
        )
    if frame.empty:
        raise InputError(file, None, "the county table has no data rows")

    fips = frame["fips"].astype("str").str.strip().fillna("")
    malformed = ~fips.str.fullmatch(r"[0-9]{5}")
    if malformed.any():
        hint = "a county FIPS code is exactly 5 digits, e.g. 06085 for Santa Clara, CA"
        if fips[malformed].str.fullmatch(r"[0-9]{4}").any():
            hint = (
                "4-digit codes have probably lost their leading zero (the column was read as numbers); "
                "write them as 5-digit text, e.g. 06085, not 6085"
            )
        raise InputError(file, "fips", "malformed FIPS codes (not exactly 5 digits)", rows=lines(malformed), hint=hint)
    duplicated = fips.duplicated(keep=False)
    if duplicated.any():
        codes = ", ".join(sorted(set(fips[duplicated]))[:5])
        raise InputError(
            file, "fips", f"duplicated FIPS codes ({codes})", rows=lines(duplicated), hint="list each county once"
        )

    coords = {}
    for column, limit in (("lat", 90), ("lon", 180)):
        values = _numbers(frame[column])
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(file, column, "missing, non-numeric or non-finite values", rows=lines(bad))
        outside = values.abs() > limit
        if outside.any():
            raise InputError(
                file,
                column,
                f"values outside [-{limit}, {limit}] degrees",
                rows=lines(outside),
                hint="lat and lon are decimal degrees; were they swapped?",
            )
        coords[column] = values.to_numpy()

    covariates = {}
    for column in frame.columns:
        if column in REQUIRED_COLUMNS or column in TEXT_COLUMNS or frame[column].isna().all():
            continue
        values = _numbers(frame[column])
        # A text column (at most half its values numbers) is not a covariate; a numeric one must be all numbers.
        if not pd.api.types.is_numeric_dtype(frame[column]) and values.notna().sum() * 2 <= frame[column].notna().sum():
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(
                file,
                str(column),
                "missing, non-numeric or non-finite values in a covariate column",
                rows=lines(bad),
                hint="every county needs a finite number in each covariate column",
            )
        huge = values.abs() > HUGE
        if huge.any():
            raise InputError(
                file,
                str(column),
                f"covariate values larger than {HUGE:g} in magnitude",
                rows=lines(huge),
                hint="rescale the covariate (e.g. thousands instead of units, or its log)",
            )
        covariates[str(column)] = values.to_numpy()

    def text(column: str) -> np.ndarray:
        if column not in frame.columns:
            return np.full(len(frame), "")
        return frame[column].astype(object).where(frame[column].notna(), "").astype(str).to_numpy(dtype=str)

    return Counties(
        fips=fips.to_numpy(dtype=str),
        name=text("name"),
        state=text("state"),
        lat=coords["lat"],
        lon=coords["lon"],
        covariates=covariates,
        source=source or file,
    )


def _numbers(values: pd.Series) -> pd.Series:
    """Floats, NaN where a value is missing or not a number."""
    if not pd.api.types.is_numeric_dtype(values):
        values = values.astype(object).where(values.notna(), None)
        values = values.map(lambda v: None if v is None else str(v).strip())
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return numbers.where(~(numbers.abs() < TINY), 0.0)
