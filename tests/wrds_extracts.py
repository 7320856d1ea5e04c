"""Raw WRDS extracts (comp.funda, comp.company) made from a known firm panel, for the tests of
``prepare`` and the timing script: what a user downloads, with everything ``prepare`` must undo.

``raw_extract(panel)`` turns a DATA.md panel (2002 dollars) into FUNDA and COMPANY frames with:
nominal dollars (the built-in deflator), several format rows per firm-year (FS / SUMM_STD copies
with other values), sich missing in early years (the header sic says 7372), xrd missing where the
panel has 0 (every other such firm-year; the rest written as 0), ZIPs as 5 digits, ZIP+4 and with
leading zeros lost, and extra firms that must be left out, each with the rule that should do it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_spill.data import prices, zip_county

MONEY = ("sale", "ppent", "xrd")
SOFTWARE = 7372

# gvkey -> the rule that must exclude it (the extra firms raw_extract adds)
EXTRA_FIRMS = {
    "900001": "foreign",  # Canadian headquarters, a Canadian postal code
    "900002": "industry",  # pharmaceuticals (sich 2834 every year)
    "900003": "no_zip",  # software, US, addzip empty
    "900004": "years",  # software, only before the sample years
    "900005": "format",  # only FS rows
    "900006": "foreign",  # US-listed, Bermuda-incorporated, headquartered in Bermuda (loc BMU)
    "900007": "zip_not_found",  # a well-formed ZIP that no county has
    "900008": "missing_values",  # every year without employees
}


def zip_of_county() -> dict[str, str]:
    """One ZIP per county from the shipped crosswalk (its Census-coded rows first)."""
    walk = zip_county.crosswalk().reset_index()
    walk = walk.assign(by_name=walk["source"] != "census-zcta").sort_values(["by_name", "zip"])
    return walk.drop_duplicates("fips").set_index("fips")["zip"].to_dict()


def zip_forms(zip5: str, i: int) -> str:
    """The i-th way a ZIP comes in a download: 5 digits, ZIP+4, its leading zeros lost, or both."""
    form = i % 4
    if form == 0:
        return zip5
    if form == 1:
        return f"{zip5}-{1000 + i % 9000}"
    if form == 2:
        return zip5.lstrip("0") or "0"
    return f"{zip5.lstrip('0')}{1000 + i % 9000}" if zip5.startswith("0") else f"{zip5}{1000 + i % 9000}"


def raw_extract(panel: pd.DataFrame, seed: int = 0, extras: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FUNDA, COMPANY) frames whose prepared panel (sic 7372, the panel's years) is ``panel``."""
    rng = np.random.default_rng(seed)
    level = prices.load_price_index().level
    zips = zip_of_county()
    panel = panel.sort_values(["gvkey", "fyear"]).reset_index(drop=True)
    funda = panel[["gvkey", "fyear", "sale", "emp", "ppent", "xrd"]].copy()
    for column in MONEY:
        funda[column] = funda[column] * level.reindex(funda["fyear"]).to_numpy()
    zero = funda["xrd"] == 0
    funda["xrd"] = funda["xrd"].where(~(zero & (np.arange(len(funda)) % 2 == 0)))
    first_year = funda.groupby("gvkey")["fyear"].transform("min")
    funda["sich"] = np.where(funda["fyear"] < first_year + 2, np.nan, SOFTWARE)
    funda["datadate"] = funda["fyear"].astype(int).astype(str) + "-12-31"
    funda["curcd"] = "USD"
    funda = _formats(funda, rng)

    firms = panel.drop_duplicates("gvkey")[["gvkey", "fips"]].reset_index(drop=True)
    company = pd.DataFrame(
        {
            "gvkey": firms["gvkey"],
            "conm": "FIRM " + firms["gvkey"],
            "sic": str(SOFTWARE),
            "naics": "511210",
            "addzip": [zip_forms(zips[f], i) for i, f in enumerate(firms["fips"])],
            "state": [zip_county.crosswalk().at[zips[f], "state"] for f in firms["fips"]],
            "city": [zip_county.crosswalk().at[zips[f], "city"] for f in firms["fips"]],
            "loc": "USA",
            "fic": "USA",
            "extra_column": "ignored",
        }
    )
    if extras:
        funda, company = _add_extra_firms(funda, company, int(panel["fyear"].min()), int(panel["fyear"].max()))
    order = rng.permutation(len(funda))
    return funda.iloc[order].reset_index(drop=True), company


def _formats(funda: pd.DataFrame, rng) -> pd.DataFrame:
    standard = funda.assign(indfmt="INDL", datafmt="STD", popsrc="D", consol="C")
    fs = standard.sample(frac=0.5, random_state=int(rng.integers(1 << 31))).assign(indfmt="FS")
    summary = standard.sample(frac=0.3, random_state=int(rng.integers(1 << 31))).assign(datafmt="SUMM_STD")
    for copy in (fs, summary):
        for column in (*MONEY, "emp"):
            copy[column] = copy[column] * 1.37
    return pd.concat([standard, fs, summary], ignore_index=True)


def _add_extra_firms(funda, company, first: int, last: int):
    years = np.arange(first, first + 5)
    rows, firms = [], []

    def firm(gvkey, years, sich=SOFTWARE, emp=1.0, indfmt="INDL", **company_columns):
        for year in years:
            rows.append(
                dict(
                    gvkey=gvkey,
                    fyear=year,
                    sale=10.0,
                    emp=emp,
                    ppent=5.0,
                    xrd=1.0,
                    sich=sich,
                    datadate=f"{year}-12-31",
                    curcd="USD",
                    indfmt=indfmt,
                    datafmt="STD",
                    popsrc="D",
                    consol="C",
                )
            )
        base = dict(
            gvkey=gvkey,
            conm=f"EXTRA {gvkey}",
            sic=str(SOFTWARE),
            naics="511210",
            addzip="95054",
            state="CA",
            city="Santa Clara",
            loc="USA",
            fic="USA",
            extra_column="ignored",
        )
        firms.append({**base, **company_columns})

    firm("900001", years, addzip="M5V 2T6", state="ON", city="Toronto", loc="CAN", fic="CAN")
    firm("900002", years, sich=2834, sic="2834", naics="325412")
    firm("900003", years, addzip=None)
    firm("900004", np.arange(first - 6, first - 1))
    firm("900005", years, indfmt="FS")
    firm("900006", years, addzip="HM 11", state=None, city="Hamilton", loc="BMU", fic="BMU")
    firm("900007", years, addzip="00000")
    firm("900008", years, emp=np.nan)
    return pd.concat([funda, pd.DataFrame(rows)], ignore_index=True), pd.concat(
        [company, pd.DataFrame(firms)], ignore_index=True
    )


def drift_extract():
    """Three software firms: one leaves software (sich 7373 from its 4th year), one entered it
    (header sic 7373 today, sich 7372 in the panel's years), one has no sich at all."""
    rows = []
    for gvkey, sich in (("000001", [7372, 7372, 7372, 7373, 7373]), ("000002", [7372] * 5), ("000003", [None] * 5)):
        for i, year in enumerate(range(2000, 2005)):
            rows.append(dict(gvkey=gvkey, fyear=year, sale=100.0 + i, emp=1.0, ppent=10.0, xrd=2.0, sich=sich[i]))
    funda = pd.DataFrame(rows)
    company = pd.DataFrame(
        dict(
            gvkey=["000001", "000002", "000003"],
            sic=["7373", "7373", "7372"],
            addzip=["95054", "02139", "98052"],
            loc="USA",
        )
    )
    return funda, company
