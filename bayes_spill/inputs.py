"""Reading and checking a user's firm panel (DATA.md): every bad input becomes an InputError
naming the file, the column and the offending rows; the only drop is the paper's
minimum-years sample rule, and it is counted and printed."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill import geography
from bayes_spill.errors import InputError
from bayes_spill.geography import Counties
from bayes_spill.panel import PANEL_COLUMNS, PanelSettings, PreparedPanel, build_panel

FILE_KINDS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}
TEXT_COLUMNS = ("gvkey", "fips")
NUMERIC_COLUMNS = ("fyear", "sale", "emp", "ppent", "xrd")
POSITIVE_COLUMNS = ("sale", "emp", "ppent")
LINE = "line"  # index name of a frame whose index holds 1-based file line numbers
FIRST_DATA_LINE = 2  # the header is line 1
EXAMPLES_SHOWN = 3
TOP_COUNTIES = 5
# Plausible magnitudes of sale, emp, ppent and a positive xrd in their units ($ million; emp in
# thousands). Outside them a value is a unit or typing error, and the R&D stock and the logs
# would overflow or leave double precision's normal range.
MONEY_RANGE = (1e-9, 1e12)
FYEAR_RANGE = (1000, 9999)  # a fiscal year is a 4-digit calendar year


# -- reading ---------------------------------------------------------------------------------
def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV (.csv, .csv.gz) or Parquet (.parquet, .pq) table, by the file's extension.

    gvkey and fips come back as text so leading zeros survive; other columns are read as they
    are (text allowed) so that bad values can be reported later. The index holds each row's
    line number in the file (header = line 1); for Parquet, the row number counted the same way.
    Entirely blank lines are skipped (they hold no data).
    """
    path = Path(path)
    kind = _file_kind(path)
    _require_nonempty_file(path)
    frame = _read_csv(path) if kind == "csv" else _read_parquet(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    _require_unique_columns(frame, path)
    frame = _text_columns_as_strings(frame)
    frame.index = pd.RangeIndex(FIRST_DATA_LINE, FIRST_DATA_LINE + len(frame), name=LINE)
    frame = frame.dropna(how="all")
    if frame.empty:
        raise InputError(path, None, "has a header but no data rows")
    return frame


def _require_unique_columns(frame: pd.DataFrame, path: Path | str) -> None:
    names = pd.Series(frame.columns)
    repeated = sorted(set(names[names.duplicated()]))
    if repeated:
        raise InputError(
            path,
            ", ".join(repeated),
            "the header names this column more than once (names are compared without surrounding spaces)",
            hint="Keep one column of each name",
        )


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in sorted(FILE_KINDS.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return kind
    raise InputError(
        path,
        None,
        f"unsupported file type '{''.join(path.suffixes) or path.name}'",
        hint=f"Use one of {', '.join(FILE_KINDS)} (e.g. save a spreadsheet as CSV UTF-8)",
    )


def _require_nonempty_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, None, "file not found")
    if not path.is_file():
        raise InputError(path, None, "is not a file")
    if path.stat().st_size == 0:
        raise InputError(path, None, "is empty (0 bytes)")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # utf-8-sig also reads plain UTF-8 and drops the byte-order mark Excel writes. The code
        # columns are named as the header writes them (' fips ' too), so they stay text.
        _require_distinct_header_names(path)
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
        text = {c: str for c in header if str(c).strip() in TEXT_COLUMNS}
        return pd.read_csv(path, dtype=text, encoding="utf-8-sig", skip_blank_lines=False)
    except InputError:
        raise  # already says what is wrong (an InputError is a ValueError too)
    except UnicodeDecodeError as exc:
        raise InputError(
            path,
            None,
            f"is not UTF-8 text (undecodable byte 0x{exc.object[exc.start]:02x} at byte {exc.start})",
            hint="Save it as UTF-8 (in Excel: 'CSV UTF-8'; or convert with iconv -f latin1 -t utf-8)",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError(path, None, "is empty (no header line)") from exc
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error) as exc:
        raise InputError(path, None, f"could not be read as CSV: {exc}") from exc


def _require_distinct_header_names(path: Path) -> None:
    """pandas renames a repeated name ('sale', 'sale' -> 'sale', 'sale.1') and the copy would be
    ignored silently; read the header as written and reject repeats."""
    raw = pd.read_csv(path, header=None, nrows=1, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    names = [str(name).strip() for name in raw.iloc[0].tolist()] if len(raw) else []
    read = set(PANEL_COLUMNS) | {"lat", "lon"}  # extra columns are ignored anyway
    repeated = sorted({name for name in names if names.count(name) > 1 and name in read})
    if repeated:
        raise InputError(
            path,
            ", ".join(repeated),
            "the header names this column more than once",
            hint="Keep one column of each name",
        )


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(path, None, f"could not be read as Parquet: {exc}") from exc


def _text_columns_as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = _as_text(frame[column])
    return frame


def _as_text(values: pd.Series) -> pd.Series:
    """Codes as stripped strings, missing kept missing; a numeric column (e.g. from Parquet)
    gives '6085', not '6085.0', so the malformed-FIPS check can say what went wrong."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(values).astype(float)
        present = numbers.dropna()
        # whole numbers that int64 holds exactly print without '.0'; others (1e30, inf) as floats
        if np.isfinite(present).all() and (present.abs() < 2.0**53).all() and (present % 1 == 0).all():
            numbers = numbers.astype("Int64")
        values = numbers.astype(object)
    out = values.astype(object).where(values.notna(), None)
    return pd.Series([None if v is None else str(v).strip() for v in out], index=values.index, dtype="str")


# -- validation ------------------------------------------------------------------------------
def validate_panel(
    frame: pd.DataFrame, counties: Counties, file: str | os.PathLike, settings: PanelSettings | None = None
) -> tuple[pd.DataFrame, dict[str, int], list[str]]:
    """Check every rule of DATA.md; return (clean frame, dropped counts, messages to print).

    Row numbers in errors are file line numbers taken from the index when ``read_table`` made
    it, else the row position counted as if the frame were a CSV file. Checks run in an order
    where each message is meaningful: columns, then values, then numbers, then codes, then
    firms. Firms seen in fewer than ``settings.min_years`` years are the only rows dropped;
    year gaps are checked after that drop, on the firms that stay.
    """
    settings = settings or PanelSettings()
    file = str(file)
    frame = _with_line_index(frame)
    _require_unique_columns(frame, file)
    _require_columns(frame, file)
    frame = _text_columns_as_strings(frame)
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
        file, "fips", f"FIPS codes that are not exactly 5 digits ({_examples(bad)})", rows=_lines(frame, malformed), hint=hint
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
    shown = ", ".join(firms[:EXAMPLES_SHOWN]) + (f" and {len(firms) - EXAMPLES_SHOWN} more" if len(firms) > EXAMPLES_SHOWN else "")
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
    path: str | os.PathLike,
    counties: Counties | str | os.PathLike | None = None,
    settings: PanelSettings | None = None,
) -> PreparedPanel:
    """Read, check and prepare a firm panel; prints the rows dropped and why to stdout.

    counties: None for the built-in table, a path to a county file, or a Counties object.
    """
    settings = settings or PanelSettings()
    counties = resolve_counties(counties)
    frame = read_table(path)
    clean, dropped, messages = validate_panel(frame, counties, path, settings)
    for message in messages:
        print(message)
    return build_panel(clean, counties, source=str(path), settings=settings, dropped=dropped)


def resolve_counties(counties: Counties | str | os.PathLike | None) -> Counties:
    if counties is None:
        return geography.load_counties()
    if isinstance(counties, Counties):
        return counties
    if isinstance(counties, (str, os.PathLike)):
        return geography.load_counties(counties)
    raise TypeError(f"counties must be None, a path or a Counties object, got {type(counties).__name__}")


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
