"""Reading and checking a user's firm panel (docs/data.md): every bad input becomes an InputError
naming the file, the column and the offending rows; the only drop is the paper's
minimum-years sample rule, and it is counted and printed."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from bayes_spill.data import geography
from bayes_spill.data.files import (
    FIRST_DATA_LINE,
    FRAME_NAME,
    LINE,
    read_table,
    require_unique_columns,
    table_name,
    text_columns_as_strings,
)
from bayes_spill.data.geography import Counties
from bayes_spill.data.panel import (
    PANEL_COLUMNS,
    PanelSettings,
    PreparedPanel,
    build_panel,
)
from bayes_spill.errors import InputError

NUMERIC_COLUMNS = ("fyear", "sale", "emp", "ppent", "xrd")
POSITIVE_COLUMNS = ("sale", "emp", "ppent")
EXAMPLES_SHOWN = 3
TOP_COUNTIES = 5
# Plausible magnitudes of sale, emp, ppent and a positive xrd in their units ($ million; emp in
# thousands). Outside them a value is a unit or typing error, and the R&D stock and the logs
# would overflow or leave double precision's normal range.
MONEY_RANGE = (1e-9, 1e12)
FYEAR_RANGE = (1000, 9999)  # a fiscal year is a 4-digit calendar year


# -- validation ------------------------------------------------------------------------------
def validate_panel(
    frame: pd.DataFrame, counties: Counties, file: str | os.PathLike, settings: PanelSettings | None = None
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """Check every rule of docs/data.md; return (clean frame, dropped counts, messages to print).

    Row numbers in errors are file line numbers taken from the index when ``read_table`` made
    it, else the row position counted as if the frame were a CSV file. Checks run in an order
    where each message is meaningful: columns, then values, then numbers, then codes, then
    firms. Firms seen in fewer than ``settings.min_years`` years are the only rows dropped;
    year gaps are checked after that drop, on the firms that stay.
    """
    settings = settings or PanelSettings()
    file = str(file)
    frame = _with_line_index(frame)
    require_unique_columns(frame, file)
    _require_columns(frame, file)
    frame = text_columns_as_strings(frame)
    _require_values(frame, file)
    frame = _parse_numbers(frame, file)
    _check_fips_format(frame, file)
    _check_duplicates(frame, file)
    _check_signs(frame, file)
    _check_magnitudes(frame, file)
    _check_fips_known(frame, counties, file)
    _check_one_county_per_firm(frame, file)
    frame, dropped, messages = _drop_short_firms(frame, settings.min_years)
    if frame.empty:
        raise InputError(
            file,
            None,
            f"no firm is seen in at least {settings.min_years} years, so nothing is left to fit",
            hint="The model needs within-firm variation; check that gvkey identifies firms across years",
        )
    messages += _check_gaps(frame, file, settings.on_gap)
    return frame, dropped, messages


def _with_line_index(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if frame.index.name != LINE:
        frame.index = pd.RangeIndex(FIRST_DATA_LINE, FIRST_DATA_LINE + len(frame), name=LINE)
    return frame


def _lines(frame: pd.DataFrame, mask: pd.Series) -> list[int]:
    return [int(line) for line in frame.index[mask.to_numpy(dtype=bool)]]


def _examples(values: pd.Series) -> str:
    shown = list(dict.fromkeys(str(v) for v in values))[:EXAMPLES_SHOWN]
    return ", ".join(repr(v) for v in shown)


def _require_columns(frame: pd.DataFrame, file: str) -> None:
    missing = [c for c in PANEL_COLUMNS if c not in frame.columns]
    if not missing:
        return
    found = ", ".join(str(c) for c in frame.columns) or "no columns"
    hint = f"The panel needs the Compustat mnemonics {', '.join(PANEL_COLUMNS)}; extra columns are ignored"
    lower = {str(c).lower(): str(c) for c in frame.columns}
    renames = [f"{lower[m]} -> {m}" for m in missing if m in lower]
    if renames:
        hint += f"; names are lower case: rename {', '.join(renames)}"
    raise InputError(file, ", ".join(missing), f"missing required column(s); the file has: {found}", hint=hint)


def _is_blank(values: pd.Series) -> pd.Series:
    blank = values.isna()
    if not pd.api.types.is_numeric_dtype(values):
        blank |= values.astype(str).str.strip().eq("")
    return blank


def _require_values(frame: pd.DataFrame, file: str) -> None:
    for column in PANEL_COLUMNS:
        blank = _is_blank(frame[column])
        if blank.any():
            hint = "Every firm-year needs a value in each of " + ", ".join(PANEL_COLUMNS)
            if column == "xrd":
                hint = (
                    "Compustat leaves xrd empty when R&D is not reported; decide for those firm-years "
                    "whether it means 0 and fill it in, or remove them"
                )
            raise InputError(file, column, "missing values (empty cells or NA)", rows=_lines(frame, blank), hint=hint)


def _parse_numbers(frame: pd.DataFrame, file: str) -> pd.DataFrame:
    numbers = {column: _to_number(frame[column]) for column in NUMERIC_COLUMNS}
    for column, values in numbers.items():
        bad = values.isna()
        if bad.any():
            raise InputError(
                file,
                column,
                f"non-numeric values ({_examples(frame.loc[bad, column])})",
                rows=_lines(frame, bad),
                hint="Write plain numbers: no thousands separators, units, currency signs or text",
            )
    for column, values in numbers.items():
        infinite = pd.Series(np.isinf(values.to_numpy(dtype=float)), index=frame.index)
        if infinite.any():
            raise InputError(file, column, "infinite values", rows=_lines(frame, infinite), hint="Use finite numbers")
    fyear = numbers["fyear"]
    fractional = fyear % 1 != 0
    if fractional.any():
        raise InputError(
            file,
            "fyear",
            f"fiscal years that are not whole numbers ({_examples(fyear[fractional])})",
            rows=_lines(frame, fractional),
            hint="The column fyear is the Compustat fiscal year, a whole number such as 2002",
        )
    outside = (fyear < FYEAR_RANGE[0]) | (fyear > FYEAR_RANGE[1])
    if outside.any():
        raise InputError(
            file,
            "fyear",
            f"fiscal years outside {FYEAR_RANGE[0]}-{FYEAR_RANGE[1]} ({_examples(fyear[outside])})",
            rows=_lines(frame, outside),
            hint="The column fyear is the Compustat fiscal year, a 4-digit year such as 2002",
        )
    frame = frame.copy()
    for column, values in numbers.items():
        frame[column] = values.to_numpy(dtype=np.int64 if column == "fyear" else float)
    return frame


def _to_number(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(np.nan, index=values.index)
    if not pd.api.types.is_numeric_dtype(values):
        values = values.astype(str).str.strip()
    return pd.to_numeric(values, errors="coerce").astype(float)


def _check_fips_format(frame: pd.DataFrame, file: str) -> None:
    malformed = ~frame["fips"].str.fullmatch(r"[0-9]{5}").astype(bool)
    if not malformed.any():
        return
    bad = frame.loc[malformed, "fips"]
    hint = "A county FIPS code is 5 digits: 2 for the state, 3 for the county (e.g. 06085 for Santa Clara, CA)"
    if bad.str.fullmatch(r"[0-9]{4}").any():
        hint = (
            "4-digit codes have probably lost their leading zero (the column was read as a number, "
            "e.g. opened in Excel); write them as text with 5 digits, e.g. 06085, not 6085"
        )
    raise InputError(
        file,
        "fips",
        f"FIPS codes that are not exactly 5 digits ({_examples(bad)})",
        rows=_lines(frame, malformed),
        hint=hint,
    )


def _check_duplicates(frame: pd.DataFrame, file: str) -> None:
    duplicated = frame.duplicated(["gvkey", "fyear"], keep=False)
    if not duplicated.any():
        return
    first = frame.loc[duplicated].iloc[0]
    raise InputError(
        file,
        "gvkey, fyear",
        f"duplicated (gvkey, fyear) pairs, e.g. gvkey {first['gvkey']} in {first['fyear']}",
        rows=_lines(frame, duplicated),
        hint=(
            "Keep one row per firm and fiscal year (a Compustat extract repeats firm-years unless "
            "filtered to indfmt=INDL, datafmt=STD, consol=C, popsrc=D)"
        ),
    )


def _check_signs(frame: pd.DataFrame, file: str) -> None:
    for column in POSITIVE_COLUMNS:
        not_positive = frame[column] <= 0
        if not_positive.any():
            raise InputError(
                file,
                column,
                f"values <= 0 ({_examples(frame.loc[not_positive, column])}): the model takes their log",
                rows=_lines(frame, not_positive),
                hint="The columns sale, emp and ppent must be positive; correct or remove those firm-years",
            )
    negative = frame["xrd"] < 0
    if negative.any():
        raise InputError(
            file,
            "xrd",
            f"negative R&D expense ({_examples(frame.loc[negative, 'xrd'])})",
            rows=_lines(frame, negative),
            hint="R&D expense (xrd) must be >= 0 (0 for a firm-year without R&D)",
        )


def _check_magnitudes(frame: pd.DataFrame, file: str) -> None:
    low, high = MONEY_RANGE
    for column in (*POSITIVE_COLUMNS, "xrd"):
        values = frame[column]
        implausible = (values > high) | ((values > 0) & (values < low))
        if implausible.any():
            raise InputError(
                file,
                column,
                f"implausible magnitudes outside [{low:g}, {high:g}] ({_examples(values[implausible])})",
                rows=_lines(frame, implausible),
                hint="sale, ppent and xrd are in $ million and emp in thousands (Compustat's units); check the units",
            )


def _check_fips_known(frame: pd.DataFrame, counties: Counties, file: str) -> None:
    known = set(np.asarray(counties.fips).tolist())
    unknown = ~frame["fips"].isin(known)
    if not unknown.any():
        return
    raise InputError(
        file,
        "fips",
        f"FIPS codes not in the county table '{counties.source}' ({_examples(frame.loc[unknown, 'fips'])})",
        rows=_lines(frame, unknown),
        hint="Check the codes (the built-in table has the counties of the 50 states and DC), or pass a county table that has them",
    )


def _check_one_county_per_firm(frame: pd.DataFrame, file: str) -> None:
    ordered = frame.sort_values(["gvkey", "fyear"], kind="stable")
    codes = ordered.groupby("gvkey", sort=True)["fips"].unique()
    movers = codes[codes.map(len) > 1]
    if movers.empty:
        return
    raise InputError(
        file,
        "fips",
        "firms whose headquarters county changes over time (the model places each firm in one county)",
        rows=[f"gvkey {gvkey} ({'/'.join(fips)})" for gvkey, fips in movers.items()],
        unit="firm",
        hint="Give each firm one fips code in every year, e.g. its main or most recent headquarters",
    )


def _drop_short_firms(frame: pd.DataFrame, min_years: int) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    years_seen = frame.groupby("gvkey")["fyear"].transform("size")
    short = years_seen < min_years
    if not short.any():
        return frame, {}, []
    firms = sorted(frame.loc[short, "gvkey"].unique().tolist())
    rule = f"fewer than {min_years} years"
    dropped = {f"firms with {rule}": len(firms), f"firm-years of firms with {rule}": int(short.sum())}
    shown = ", ".join(firms[:EXAMPLES_SHOWN]) + (
        f" and {len(firms) - EXAMPLES_SHOWN} more" if len(firms) > EXAMPLES_SHOWN else ""
    )
    message = (
        f"Dropped {len(firms)} firm{'s' if len(firms) != 1 else ''} ({int(short.sum())} firm-years) seen in "
        f"{rule} (the paper's sample rule): gvkey {shown}"
    )
    return frame.loc[~short], dropped, [message]


def _check_gaps(frame: pd.DataFrame, file: str, on_gap: str) -> list[str]:
    gaps = _missing_years_by_firm(frame)
    if not gaps:
        return []
    if on_gap == "restart":
        n = len(gaps)
        return [
            f"{n} firm{'s have' if n != 1 else ' has'} gaps in their years; their R&D stock restarts "
            f"after each gap with the start rule (on_gap='restart')"
        ]
    raise InputError(
        file,
        "fyear",
        "firms with missing years inside their panel (the R&D stock needs consecutive years)",
        rows=[f"gvkey {gvkey} (no {_year_spans(missing)})" for gvkey, missing in gaps.items()],
        unit="firm",
        hint="Fill in the missing years, or pass on_gap='restart' to restart the R&D stock after each gap",
    )


def _missing_years_by_firm(frame: pd.DataFrame) -> dict[str, list[int]]:
    gaps = {}
    for gvkey, years in frame.groupby("gvkey", sort=True)["fyear"]:
        seen = set(years.tolist())
        missing = [y for y in range(min(seen), max(seen) + 1) if y not in seen]
        if missing:
            gaps[gvkey] = missing
    return gaps


def _year_spans(years: list[int]) -> str:
    """[2003, 2004, 2007] -> '2003-2004 & 2007'."""
    spans: list[list[int]] = []
    for year in years:
        if spans and year == spans[-1][1] + 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    return " & ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


# -- loading and reporting ---------------------------------------------------------------------
def load_panel(
    path: str | os.PathLike | pd.DataFrame,
    counties: Counties | str | os.PathLike | pd.DataFrame | None = None,
    settings: PanelSettings | None = None,
) -> PreparedPanel:
    """Read, check and prepare a firm panel; prints the rows dropped and why to stdout.

    Parameters
    ----------
    path
        The panel: a CSV, CSV.gz, Parquet or Stata .dta file, or a pandas DataFrame (errors then
        name it ``DataFrame`` and count rows as lines, row 1 = line 2).
    counties
        None for the built-in table, a county file, a DataFrame, or a Counties object.
    settings
        How raw firm-years become model variables (default: PanelSettings()).

    Returns
    -------
    PreparedPanel
        The checked panel; its ``source`` is the path, or ``DataFrame``.
    """
    settings = settings or PanelSettings()
    counties = resolve_counties(counties)
    name = table_name(path)
    frame = read_table(path)
    clean, dropped, messages = validate_panel(frame, counties, name, settings)
    for message in messages:
        print(message)
    return build_panel(clean, counties, source=name, settings=settings, dropped=dropped)


def resolve_counties(counties: Counties | str | os.PathLike | pd.DataFrame | None) -> Counties:
    """The county table from None (built in), a path, a DataFrame or a Counties object.

    Parameters
    ----------
    counties
        What the user gave.

    Returns
    -------
    Counties
        The checked table.
    """
    if counties is None:
        return geography.load_counties()
    if isinstance(counties, Counties):
        return counties
    if isinstance(counties, pd.DataFrame):
        # load_counties takes a path; a frame goes through the same reader and checks
        return geography.counties_from_frame(read_table(counties), FRAME_NAME)
    if isinstance(counties, (str, os.PathLike)):
        return geography.load_counties(counties)
    raise TypeError(f"counties must be None, a path, a DataFrame or a Counties object, got {type(counties).__name__}")


def validation_report(panel: PreparedPanel) -> str:
    """What ``bayes-spill validate`` prints: the panel's size, coverage and what was dropped."""
    s = panel.summary()
    n_years = len(panel.years)
    zero_share = s["zero_rd_firm_years"] / s["firm_years"] if s["firm_years"] else 0.0
    lines = [
        f"Panel {s['source']}",
        f"  firms                {s['firms']:,}",
        f"  firm-years           {s['firm_years']:,}",
        f"  years                {s['years']} ({n_years} year{'s' if n_years != 1 else ''})",
        f"  mean years per firm  {s['mean_years_per_firm']:.1f}",
        f"  counties occupied    {s['counties_occupied']:,} of {len(panel.counties):,} (county table: {panel.counties.source})",
        *_top_counties_lines(panel),
        f"  zero-R&D firm-years  {s['zero_rd_firm_years']:,} ({zero_share:.1%})",
    ]
    n_gap_firms = _firms_with_gaps(panel)
    if n_gap_firms:
        lines.append(f"  firms with year gaps {n_gap_firms:,} (R&D stock restarts after each gap)")
    if s["dropped"]:
        lines.append("  dropped")
        lines += [f"    {count:,} {reason}" for reason, count in s["dropped"].items()]
    else:
        lines.append("  dropped              nothing")
    return "\n".join(lines)


def _top_counties_lines(panel: PreparedPanel) -> list[str]:
    firms_per_county = np.bincount(panel.firm_county, minlength=len(panel.counties))
    top = [c for c in np.argsort(-firms_per_county, kind="stable")[:TOP_COUNTIES] if firms_per_county[c] > 0]
    lines = ["  top counties by firms"]
    lines += [f"    {firms_per_county[c]:>5,}  {panel.counties.label(int(c))}" for c in top]
    return lines


def _firms_with_gaps(panel: PreparedPanel) -> int:
    fyear = panel.years[panel.obs_year]
    same_firm = panel.obs_firm[1:] == panel.obs_firm[:-1]
    jumps = same_firm & (fyear[1:] != fyear[:-1] + 1)
    return len(np.unique(panel.obs_firm[1:][jumps]))
