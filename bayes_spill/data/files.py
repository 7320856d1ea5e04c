"""Reading a user's table (CSV, CSV.gz, Parquet, Stata .dta, or a pandas DataFrame) into a frame
whose index holds each row's line number, so that every later error can name the rows. Shared by
the panel, the county table and the raw Compustat extracts that ``prepare`` reads."""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayes_spill.errors import InputError

FILE_KINDS = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet", ".dta": "stata"}
TEXT_COLUMNS = ("gvkey", "fips")
# Columns whose repetition in a header is an error (the panel's and the county table's); extra
# columns are ignored anyway.
READ_COLUMNS = ("gvkey", "fyear", "sale", "emp", "ppent", "xrd", "fips", "lat", "lon")
LINE = "line"  # index name of a frame whose index holds 1-based file line numbers
FIRST_DATA_LINE = 2  # the header is line 1
FRAME_NAME = "DataFrame"  # how errors name a table given as a pandas DataFrame

Table = str | os.PathLike | pd.DataFrame


def table_name(source: Table) -> str:
    """What errors call a table: its path, or ``DataFrame`` for one given in memory."""
    return FRAME_NAME if isinstance(source, pd.DataFrame) else str(source)


def read_table(source: Table, text: Sequence[str] = ()) -> pd.DataFrame:
    """A table from a file, by its extension (CSV .csv/.csv.gz, Parquet .parquet/.pq, Stata
    .dta), or a pandas DataFrame (copied; its own index is replaced).

    Parameters
    ----------
    source
        A path, or a DataFrame.
    text
        Further columns to read as text (codes whose leading zeros matter), besides gvkey and fips.

    Returns
    -------
    pandas.DataFrame
        gvkey, fips and the ``text`` columns as stripped strings (missing kept missing); other
        columns as they are (text allowed) so that bad values can be reported later. The index
        holds each row's line number in the file (header = line 1); for Parquet, Stata and a
        DataFrame, the row number counted the same way (row 1 is line 2). Entirely blank rows
        are skipped (they hold no data).
    """
    text_columns = (*TEXT_COLUMNS, *text)
    if isinstance(source, pd.DataFrame):
        name: Path | str = FRAME_NAME
        frame = source.copy()
    else:
        name = Path(source)
        kind = _file_kind(name)
        _require_nonempty_file(name)
        if kind == "csv":
            frame = _read_csv(name, text_columns)
        else:
            frame = _read_parquet(name) if kind == "parquet" else _read_stata(name)
    frame.columns = [str(c).strip() for c in frame.columns]
    require_unique_columns(frame, name)
    frame = text_columns_as_strings(frame, text_columns)
    frame.index = pd.RangeIndex(FIRST_DATA_LINE, FIRST_DATA_LINE + len(frame), name=LINE)
    frame = frame.dropna(how="all")
    if frame.empty:
        raise InputError(name, None, "has a header but no data rows")
    return frame


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table by the file's extension (as ``read_table`` reads it), atomically: a
    temporary file beside it is renamed into place, so an interrupted write leaves nothing.

    Parameters
    ----------
    frame
        The table; its index is not written.
    path
        .csv, .csv.gz, .parquet, .pq or .dta.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    kind = _file_kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if kind == "csv":
            compression = "gzip" if path.name.lower().endswith(".gz") else None
            frame.to_csv(temporary, index=False, compression=compression)
        elif kind == "parquet":
            frame.to_parquet(temporary, index=False)
        else:
            text = {c: frame[c].astype(object) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
            frame.assign(**text).to_stata(temporary, write_index=False, version=118)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def require_unique_columns(frame: pd.DataFrame, path: Path | str) -> None:
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


def _read_csv(path: Path, text_columns: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    try:
        # utf-8-sig also reads plain UTF-8 and drops the byte-order mark Excel writes. The code
        # columns are named as the header writes them (' fips ' too), so they stay text.
        _require_distinct_header_names(path)
        header = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
        text = {c: str for c in header if str(c).strip() in text_columns}
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
    read = set(READ_COLUMNS)
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


def _read_stata(path: Path) -> pd.DataFrame:
    try:
        # Value labels stay codes (a labelled numeric column is still a number), and Stata's
        # empty string, its missing value for text, becomes missing.
        frame = pd.read_stata(path, convert_categoricals=False)
    except Exception as exc:  # the Stata reader raises several unrelated types for a bad file
        raise InputError(path, None, f"could not be read as a Stata .dta file: {exc}") from exc
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].where(frame[column].astype(str).str.strip() != "")
    return frame


def text_columns_as_strings(frame: pd.DataFrame, columns: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    frame = frame.copy()
    for column in columns:
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


