"""Reading a user's table (CSV, CSV.gz, Parquet, Stata .dta, or a pandas DataFrame) into a frame
whose index holds each row's line number, so that every later error can name the rows. Shared by
the panel, the county table and the raw Compustat extracts that ``prepare`` reads."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
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

# The most bytes a table may hold, on disk and (for gzip and Parquet) once decompressed: a panel of
# every Compustat firm-year is a few hundred MB as CSV, and pandas needs several times a file's
# size in memory, so a larger file is far more likely a wrong file than a panel. The environment
# variable raises (or lowers) it.
MAX_TABLE_BYTES = 2 * 1024**3
MAX_TABLE_BYTES_ENV = "BAYES_SPILL_MAX_TABLE_BYTES"
SNIFF_BYTES = 4096

# What a file's first bytes say it is (magic numbers), checked before its extension is trusted.
MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PAR1", "parquet"),
    (b"<stata_dta>", "stata"),  # formats 117-119
    (b"PK\x03\x04", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"%PDF", "pdf"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"\xff\xfe", "utf16"),
    (b"\xfe\xff", "utf16"),
)
CONTENT_NAMES = {
    "gzip": "a gzip-compressed file",
    "parquet": "a Parquet file",
    "stata": "a Stata .dta file",
    "zip": "a zip archive",
    "xlsx": "an Excel workbook (.xlsx)",
    "ole2": "an old-style Excel workbook (.xls) or another Microsoft Office file",
    "hdf5": "an HDF5 or netCDF-4 file",
    "bzip2": "a bzip2-compressed file",
    "xz": "an xz-compressed file",
    "zstd": "a zstd-compressed file",
    "pdf": "a PDF document",
    "sqlite": "an SQLite database",
    "utf16": "UTF-16 text",
    "binary": "binary data of an unknown kind",
    "text": "text",
}
# What each extension promises, and the extension that content would need.
EXPECTED_CONTENT = {"csv": "text", "csv.gz": "gzip", "parquet": "parquet", "stata": "stata"}
EXPECTED_NAMES = {
    "text": "UTF-8 CSV text",
    "gzip": "gzip-compressed CSV",
    "parquet": "a Parquet file",
    "stata": "a Stata .dta file",
}
SUFFIX_FOR_CONTENT = {"text": ".csv", "gzip": ".csv.gz", "parquet": ".parquet", "stata": ".dta"}


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
        _require_content_matches(name, kind)
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
    content = ""
    if path.is_file():
        found = sniff_content(path)
        content = f"; it is {CONTENT_NAMES[found]}" if found not in ("text", "binary") else ""
    raise InputError(
        path,
        None,
        f"unsupported file type '{''.join(path.suffixes) or path.name}'{content}",
        hint=f"Use one of {', '.join(FILE_KINDS)} (e.g. save a spreadsheet as CSV UTF-8)",
    )


def max_table_bytes() -> int:
    """The size limit of an input table in bytes: MAX_TABLE_BYTES, or the environment variable
    BAYES_SPILL_MAX_TABLE_BYTES when it holds a positive whole number."""
    setting = os.environ.get(MAX_TABLE_BYTES_ENV, "").strip()
    return int(setting) if setting.isdigit() and int(setting) > 0 else MAX_TABLE_BYTES


def size_text(n_bytes: float) -> str:
    """A byte count for messages: '512 bytes', '3.2 MB', '2.1 GB' (powers of 1000)."""
    if n_bytes < 1000:
        return f"{int(n_bytes)} bytes"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n_bytes /= 1000.0
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.1f} {unit}"
    raise AssertionError("unreachable")


def _too_large(path: Path, what: str, n_bytes: int | None, limit: int) -> InputError:
    """'is 3.1 GB, over the 2.1 GB limit ...'; n_bytes None: 'decompresses to more than the ...'."""
    size = f"{what} {size_text(n_bytes)}, over the" if n_bytes is not None else f"{what} more than the"
    return InputError(
        path,
        None,
        f"{size} {size_text(limit)} limit for an input table",
        hint=f"Check that this is the right file; to read a larger one set {MAX_TABLE_BYTES_ENV} to a number of bytes",
    )


def _require_nonempty_file(path: Path) -> None:
    """A regular file (a device such as /dev/zero or a FIFO is never read), not empty, within
    the size limit."""
    if not path.exists():
        raise InputError(path, None, "file not found")
    info = path.stat()
    if stat.S_ISDIR(info.st_mode):
        raise InputError(path, None, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            path, None, "is not a regular file (a device, pipe or socket)", hint="Give the path of a table file"
        )
    if info.st_size == 0:
        raise InputError(path, None, "is empty (0 bytes)")
    limit = max_table_bytes()
    if info.st_size > limit:
        raise _too_large(path, "is", info.st_size, limit)


def sniff_content(path: Path) -> str:
    """What a file's first bytes say it is, whatever its name.

    Parameters
    ----------
    path
        A regular file.

    Returns
    -------
    str
        A key of CONTENT_NAMES: a format with a magic number ("gzip", "parquet", "stata", "zip",
        "xlsx", ...), "text" for bytes that decode as UTF-8 (a byte-order mark allowed), else
        "binary".
    """
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for magic, kind in MAGIC:
        if head.startswith(magic):
            if kind == "zip" and _is_xlsx(path):
                return "xlsx"
            return kind
    # Stata formats 104-115: the format number, the byte order (1 or 2), file type 1, a zero byte.
    if len(head) >= 4 and 104 <= head[0] <= 115 and head[1] in (1, 2) and head[2] == 1 and head[3] == 0:
        return "stata"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the sample is still text
        if exc.start < len(head) - 3 and b"\x00" in head:
            return "binary"
    return "text"


def _is_xlsx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.startswith("xl/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _require_content_matches(path: Path, kind: str) -> None:
    """InputError when the content is not what the extension promises, saying what it is."""
    expected = EXPECTED_CONTENT["csv.gz" if kind == "csv" and path.name.lower().endswith(".gz") else kind]
    found = sniff_content(path)
    if found == expected or (expected == "text" and found == "binary"):
        return  # binary bytes in a .csv: the CSV reader names the undecodable byte and its offset
    stem = path.name[: -len(_matching_suffix(path))]
    if found in SUFFIX_FOR_CONTENT:
        hint = f"Rename it to {stem}{SUFFIX_FOR_CONTENT[found]}"
        if found == "text":
            hint += " if it is CSV"
    elif found == "utf16":
        hint = "Save it as UTF-8 (in Excel: 'CSV UTF-8'; or convert with iconv -f utf-16 -t utf-8)"
    else:
        hint = f"Export the table as one of {', '.join(FILE_KINDS)} (e.g. in Excel: save as 'CSV UTF-8')"
    raise InputError(
        path, None, f"is {CONTENT_NAMES[found]}, not {EXPECTED_NAMES[expected]} as its name says", hint=hint
    )


def _matching_suffix(path: Path) -> str:
    name = path.name.lower()
    return max((suffix for suffix in FILE_KINDS if name.endswith(suffix)), key=len)


class _LimitedReader(io.RawIOBase):
    """A binary stream that raises once more than ``limit`` bytes were read from ``raw`` (a gzip
    file can decompress to far more than its size on disk)."""

    def __init__(self, raw, limit: int, path: Path) -> None:
        super().__init__()
        self.raw, self.limit, self.path, self.count = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        if self.count > self.limit:
            raise _too_large(self.path, "decompresses to", None, self.limit)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


@contextmanager
def _csv_source(path: Path):
    """What pandas reads a CSV from: the path, or for .gz a size-limited decompressing stream."""
    if not path.name.lower().endswith(".gz"):
        yield path
        return
    with io.BufferedReader(_LimitedReader(gzip.open(path, "rb"), max_table_bytes(), path)) as stream:
        yield stream


def _read_csv(path: Path, text_columns: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    try:
        # utf-8-sig also reads plain UTF-8 and drops the byte-order mark Excel writes. The code
        # columns are named as the header writes them (' fips ' too), so they stay text.
        _require_distinct_header_names(path)
        with _csv_source(path) as source:
            header = pd.read_csv(source, nrows=0, encoding="utf-8-sig").columns
        text = {c: str for c in header if str(c).strip() in text_columns}
        with _csv_source(path) as source:
            return pd.read_csv(source, dtype=text, encoding="utf-8-sig", skip_blank_lines=False)
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
    with _csv_source(path) as source:
        raw = pd.read_csv(source, header=None, nrows=1, dtype=str, encoding="utf-8-sig", keep_default_na=False)
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
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        # Encoded pages can be far smaller than the table (a repeated value is stored once):
        # count at least 8 bytes a cell, what pandas holds for a number.
        encoded = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        unpacked = max(encoded, metadata.num_rows * metadata.num_columns * 8)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(path, None, f"could not be read as Parquet: {exc}") from exc
    if unpacked > max_table_bytes():
        raise _too_large(
            path,
            f"holds {metadata.num_rows:,} rows x {metadata.num_columns} columns, at least",
            unpacked,
            max_table_bytes(),
        )
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
