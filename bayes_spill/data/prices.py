"""Price indices for converting nominal Compustat dollars to the 2002 dollars the model reads
(DATA.md): a user's table ``fyear, price_index`` in any base year, or the built-in BEA GDP
implicit price deflator (``gdp_deflator.csv``; source and vintage in ``gdp_deflator_notes.md``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from bayes_spill.data.files import Table, read_table, table_name
from bayes_spill.errors import InputError

BASE_YEAR = 2002  # the paper's dollars (Table 2)
BUILTIN_NAME = "built-in gdp_deflator.csv (BEA GDP implicit price deflator, A191RD3A086NBEA)"
COLUMNS = ("fyear", "price_index")


@dataclass(frozen=True)
class PriceIndex:
    """An annual price index rebased so that ``BASE_YEAR`` = 1.

    ``level`` maps each fiscal year to the index divided by the index of ``BASE_YEAR``; a
    nominal amount in year t is ``amount / level[t]`` in ``BASE_YEAR`` dollars.
    """

    level: pd.Series  # indexed by fyear (int), BASE_YEAR -> 1.0
    source: str

    def to_base_dollars(self, amounts: np.ndarray, fyear: np.ndarray) -> np.ndarray:
        """Nominal amounts of the given fiscal years in ``BASE_YEAR`` dollars.

        Parameters
        ----------
        amounts
            Nominal values.
        fyear
            Their fiscal years (same shape).

        Returns
        -------
        numpy.ndarray
            ``amounts * index(BASE_YEAR) / index(fyear)``.
        """
        fyear = np.asarray(fyear, dtype=np.int64)
        missing = sorted(set(fyear.tolist()) - set(self.level.index.tolist()))
        if missing:
            raise InputError(
                self.source,
                "fyear",
                f"no value for the fiscal year(s) {', '.join(map(str, missing))}, which the panel needs",
                hint="Add those years to the price index, or leave them out of the sample with --years",
            )
        return np.asarray(amounts, dtype=float) / self.level.reindex(fyear).to_numpy()


def load_price_index(source: Table | None = None) -> PriceIndex:
    """The price index: the built-in GDP deflator (None), or a user's table.

    Parameters
    ----------
    source
        None, or a file / DataFrame with columns ``fyear`` and ``price_index`` (any base year;
        other columns ignored). It must hold the base year 2002, every year once, and positive
        finite values.

    Returns
    -------
    PriceIndex
        The index rebased to 2002 = 1.
    """
    if source is None:
        return _builtin()
    return _from_frame(read_table(source), table_name(source))


@functools.lru_cache(maxsize=1)
def _builtin() -> PriceIndex:
    with resources.files("bayes_spill").joinpath("data/gdp_deflator.csv").open("rb") as f:
        frame = pd.read_csv(f)
    frame.index = pd.RangeIndex(2, 2 + len(frame))
    return _from_frame(frame, BUILTIN_NAME)


def _from_frame(frame: pd.DataFrame, name: str) -> PriceIndex:
    lower = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in COLUMNS if c not in lower]
    if missing:
        raise InputError(
            name,
            ", ".join(missing),
            f"missing required column(s); the file has: {', '.join(map(str, frame.columns))}",
            hint="A price index is a table with columns fyear and price_index (any base year)",
        )
    years = pd.to_numeric(frame[lower["fyear"]], errors="coerce")
    index = pd.to_numeric(frame[lower["price_index"]], errors="coerce")

    def lines(mask: pd.Series) -> list[int]:
        return [int(i) for i in frame.index[mask.to_numpy(dtype=bool)]]

    bad_year = years.isna() | (years % 1 != 0)
    if bad_year.any():
        raise InputError(
            name, "fyear", "missing or non-integer years", rows=lines(bad_year), hint="Write each year as e.g. 2002"
        )
    bad = ~np.isfinite(index) | (index <= 0)
    if bad.any():
        raise InputError(
            name,
            "price_index",
            "missing, non-numeric or non-positive values",
            rows=lines(bad),
            hint="A price index is a positive number",
        )
    repeated = years.duplicated(keep=False)
    if repeated.any():
        raise InputError(name, "fyear", "years listed more than once", rows=lines(repeated), hint="Give each year once")
    level = pd.Series(index.to_numpy(dtype=float), index=years.to_numpy(dtype=np.int64))
    if BASE_YEAR not in level.index:
        raise InputError(
            name,
            "fyear",
            f"no value for {BASE_YEAR}, the year the model's dollars are in",
            hint=f"Add the index of {BASE_YEAR}; the tool rebases any base year to {BASE_YEAR}",
        )
    return PriceIndex(level=(level / level[BASE_YEAR]).sort_index(), source=name)
