"""Fuzzed firm panels and county tables (tracker issue 8, part 1).

Hypothesis builds a valid small panel (or county table), applies a few mutations from DATA.md's
list of bad input (wrong types, NaN/inf, money <= 0, duplicated keys, moving firms, malformed or
unknown FIPS, empty files, wrong encodings, missing columns, huge values, one firm only, all firms
in one county, ...), writes it as CSV, gzipped CSV or Parquet and loads it. Every file must be

* accepted, with a prepared panel that satisfies every DATA.md rule (and, when the test knows
  each value it wrote, equals an independent computation), on which the spillover kernel is
  finite under ``np.errstate(all="raise")``; or
* rejected with ``InputError`` whose message names the file and the column (for a column
  problem; ``column is None`` only for problems of the whole file), blaming a column the
  mutations could have broken and listing the mutated line among the offending rows.

Any other exception fails the test. The fast suite runs the conftest "fast" profile; the slow
tests run >= 1,000 examples each and print the outcome counts.
"""

from __future__ import annotations

import gzip
import io
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_spill.data.geography import Counties, load_counties
from bayes_spill.data.inputs import load_panel
from bayes_spill.data.panel import PANEL_COLUMNS, PanelSettings, PreparedPanel
from bayes_spill.errors import ConfigError, InputError
from bayes_spill.model.likelihood import model_data  # imported here: PyMC raises the recursion limit on import
from bayes_spill.spillover import kernel

NUMERIC = ("fyear", "sale", "emp", "ppent", "xrd")
MONEY = ("sale", "emp", "ppent", "xrd")
POSITIVE = ("sale", "emp", "ppent")
# Real counties far apart (Alaska, Hawaii, Maine, Florida ...): distances up to ~8,000 km, so
# short half-lives push the kernel's weights far below the smallest double.
KNOWN_FIPS = ("06085", "25017", "53033", "36061", "48201", "17031", "02013", "15001", "12086", "23029")
UNKNOWN_FIPS = ("99999", "00000", "06999", "72001")  # 72 = Puerto Rico, not in the built-in table
HALFLIVES_KM = (1.0, 100.0, 5000.0)
IDENTITY_BLAME = {"gvkey", "fyear", "gvkey, fyear", "fips", None}  # a changed firm or year moves rows between firms

# Curated cell values: (text written to the file, value it stands for or None if not a number).
CURATED = [
    ("", None),
    ("nan", None),
    ("NA", None),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("1e400", math.inf),
    ("0", 0.0),
    ("-0", 0.0),
    ("-1.5", -1.5),
    ("-1e-300", -1e-300),
    ("1e-300", 1e-300),
    ("5e-324", 5e-324),
    ("12", 12.0),
    (" 12 ", 12.0),
    ("+7.25", 7.25),
    ("2000.0", 2000.0),
    ("2001.5", 2001.5),
    ("1e11", 1e11),
    ("1e13", 1e13),
    ("1e300", 1e300),
    ("1.7976931348623157e308", 1.7976931348623157e308),
    ("-1e308", -1e308),
    ("1,000", None),
    ("$5", None),
    ("12 kg", None),
    ("True", None),
    ("0x10", None),
    ("١٢", None),
    ("twelve", None),
    ("1e18", 1e18),
    ("-5", -5.0),
    ("3000", 3000.0),
    ("999", 999.0),
]
MONEY_RANGE = (1e-9, 1e12)  # plausible magnitudes ($ million, emp in thousands), as DATA.md's units
YEAR_RANGE = (1000, 9999)


def cell_is_valid(column: str, value: float | None) -> bool:
    """Whether a curated value is acceptable in a numeric column (independent of the package)."""
    if value is None or not math.isfinite(value):
        return False
    if column == "fyear":
        return value == int(value) and YEAR_RANGE[0] <= value <= YEAR_RANGE[1]
    if column == "xrd" and value == 0.0:
        return True
    return MONEY_RANGE[0] <= value <= MONEY_RANGE[1]


@dataclass
class Case:
    """One generated input file and what the test expects of it."""

    frame: pd.DataFrame
    suffix: str = ".csv"
    encoding: str = "utf-8"
    settings: PanelSettings = field(default_factory=PanelSettings)
    mutations: list[str] = field(default_factory=list)
    blame: set = field(default_factory=set)  # columns (or None) an error may name
    must_reject: bool = False
    exact: bool = True  # every value in the file is known, so the panel can be recomputed
    lines: dict = field(default_factory=dict)  # column -> file lines that were made bad
    raw: bytes | None = None  # bytes written instead of the frame
    any_column: bool = False  # damage that can break any column (random bytes, truncation)
    touched: set = field(default_factory=set)  # (row, column) cells already mutated

    def note(self, mutation: str, blame, reject: bool = False, exact: bool = True) -> None:
        self.mutations.append(mutation)
        self.blame |= set(blame)
        self.must_reject |= reject
        self.exact &= exact


# -- the valid base panel ---------------------------------------------------------------------
@st.composite
def base_panels(draw) -> pd.DataFrame:
    n_firms = draw(st.integers(1, 5))
    gvkeys = draw(st.lists(st.integers(1, 999_999), min_size=n_firms, max_size=n_firms, unique=True))
    one_county = draw(st.booleans())
    shared = draw(st.sampled_from(KNOWN_FIPS))
    money = st.floats(1e-3, 1e6, allow_nan=False)
    rows = []
    for gvkey in gvkeys:
        n_years = draw(st.integers(1, 6))
        start = draw(st.integers(1950, 2020))
        fips = shared if one_county else draw(st.sampled_from(KNOWN_FIPS))
        does_rd = draw(st.booleans())
        for year in range(start, start + n_years):
            rows.append(
                {
                    "gvkey": f"{gvkey:06d}",
                    "fyear": year,
                    "sale": draw(money),
                    "emp": draw(money),
                    "ppent": draw(money),
                    "xrd": draw(st.one_of(st.just(0.0), st.floats(1e-3, 1e4))) if does_rd else 0.0,
                    "fips": fips,
                }
            )
    frame = pd.DataFrame(rows, columns=list(PANEL_COLUMNS)).astype(object)
    if draw(st.booleans()):
        frame["conm"] = "Firm " + frame["gvkey"]  # extra columns are kept and ignored
    return frame


def data_lines(frame: pd.DataFrame) -> list[int]:
    return list(range(2, 2 + len(frame)))


# -- mutations --------------------------------------------------------------------------------
def mutate_cell(draw, case: Case) -> None:
    """A curated or arbitrary value in one cell of a numeric column."""
    frame = case.frame
    if frame.empty:
        return
    pos = draw(st.integers(0, len(frame) - 1))
    column = draw(st.sampled_from(NUMERIC))
    if (pos, column) in case.touched:
        return
    case.touched.add((pos, column))
    if draw(st.integers(0, 3)):
        text, value = draw(st.sampled_from(CURATED))
        known = True
    else:
        text = draw(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
        )
        value, known = None, False
    frame.iat[pos, frame.columns.get_loc(column)] = text
    line = pos + 2
    if column == "fyear":
        # another year can duplicate a firm-year, open a gap or fall outside the range
        case.note(
            f"fyear={text!r}",
            {"fyear", "gvkey, fyear", None},
            reject=known and not cell_is_valid(column, value),
            exact=False,
        )
    else:
        case.note(f"{column}={text!r}", {column}, reject=known and not cell_is_valid(column, value), exact=False)
    if known and not cell_is_valid(column, value):
        case.lines.setdefault(column, set()).add(line)


def mutate_text_cell(draw, case: Case) -> None:
    """Arbitrary text, blank or a malformed/unknown code in gvkey or fips."""
    frame = case.frame
    if frame.empty:
        return
    pos = draw(st.integers(0, len(frame) - 1))
    column = draw(st.sampled_from(("gvkey", "fips")))
    if (pos, column) in case.touched:
        return
    case.touched.add((pos, column))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        text = ""
        reject = True
    elif column == "fips" and choice == 1:
        text = draw(
            st.sampled_from(("6085", "060850", "06O85", "06085.0", "٠٦٠٨٥", "0608", "6 085", "-6085", *UNKNOWN_FIPS))
        )
        reject = True
    elif column == "fips" and choice == 2:
        text = " " + frame.iat[pos, frame.columns.get_loc("fips")] + "\t"  # whitespace is stripped
        reject = False
    else:
        text = draw(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=10)
        )
        reject = False
    frame.iat[pos, frame.columns.get_loc(column)] = text
    blame = {"fips"} if column == "fips" else IDENTITY_BLAME
    case.note(f"{column}={text!r}", blame, reject=reject, exact=False)
    if reject and text == "":
        case.lines.setdefault(column, set()).add(pos + 2)


def mutate_moving_firm(draw, case: Case) -> None:
    frame = case.frame
    counts = frame["gvkey"].value_counts()
    movers = counts[counts > 1].index.tolist()
    if not movers:
        return
    gvkey = draw(st.sampled_from(sorted(movers)))
    rows = np.flatnonzero(frame["gvkey"].to_numpy() == gvkey)
    cut = draw(st.integers(1, len(rows) - 1))
    old = frame.iat[rows[0], frame.columns.get_loc("fips")]
    new = draw(st.sampled_from([f for f in KNOWN_FIPS if f != old]))
    if any((r, "fips") in case.touched for r in rows):
        return
    for r in rows:
        case.touched.add((r, "fips"))
    for r in rows[cut:]:
        frame.iat[r, frame.columns.get_loc("fips")] = new
    case.note(f"firm {gvkey} moves", {"fips"}, reject=True, exact=False)


def mutate_duplicate(draw, case: Case) -> None:
    frame = case.frame
    if frame.empty:
        return
    pos = draw(st.integers(0, len(frame) - 1))
    copy = frame.iloc[[pos]].copy()
    if draw(st.booleans()):
        copy["sale"] = 1.0  # same key, other values
    at = draw(st.integers(0, len(frame)))
    case.frame = pd.concat([frame.iloc[:at], copy, frame.iloc[at:]], ignore_index=True)
    case.note("duplicated firm-year", {"gvkey, fyear"}, reject=True, exact=False)


def mutate_missing_column(draw, case: Case) -> None:
    present = [c for c in PANEL_COLUMNS if c in case.frame.columns]
    if not present:
        return
    column = draw(st.sampled_from(present))
    if draw(st.booleans()):
        case.frame = case.frame.drop(columns=[column])
        case.note(f"no column {column}", {column}, reject=True)
    else:
        case.frame = case.frame.rename(columns={column: column.upper()})
        case.note(f"column {column} upper case", {column}, reject=True)


def mutate_header(draw, case: Case) -> None:
    """Headers with spaces (stripped), a second column that strips to the same name, extra junk."""
    choice = draw(st.integers(0, 2))
    frame = case.frame
    if choice == 0:
        frame.columns = [f" {c} " for c in frame.columns]
        case.note("padded header", set())
    elif choice == 1:
        present = [c for c in PANEL_COLUMNS if c in frame.columns]
        if not present:
            return
        column = draw(st.sampled_from(present))
        frame[f" {column}"] = frame[column]
        case.note(f"two {column} columns", {column}, reject=True)
    else:
        frame["junk"] = draw(st.sampled_from(([None] * len(frame), ["x"] * len(frame), list(range(len(frame))))))
        case.note("junk column", set())


def mutate_gap(draw, case: Case) -> None:
    frame = case.frame
    counts = frame["gvkey"].value_counts()
    long = counts[counts >= 3].index.tolist()
    if not long:
        return
    gvkey = draw(st.sampled_from(sorted(long)))
    rows = np.flatnonzero(frame["gvkey"].to_numpy() == gvkey)
    drop = rows[draw(st.integers(1, len(rows) - 2))]
    case.frame = frame.drop(index=frame.index[drop]).reset_index(drop=True)
    # rejected with on_gap="error" unless the firm is dropped for too few years
    reject = case.settings.on_gap == "error" and len(rows) - 1 >= case.settings.min_years
    case.note(f"gap in firm {gvkey}", {"fyear"}, reject=reject)


def mutate_scale(draw, case: Case) -> None:
    """Huge but finite, or tiny, values in a whole money column."""
    column = draw(st.sampled_from(MONEY))
    factor = draw(st.sampled_from((1e-300, 1e-6, 1e6, 1e9, 1e20, 1e300)))
    values = case.frame[column].astype(float) * factor
    case.frame[column] = values.astype(object)
    bad = ~values.map(lambda v: cell_is_valid(column, v)).to_numpy(dtype=bool)
    if bad.any():
        case.note(f"{column} x {factor:g}", {column}, reject=True)
        case.lines.setdefault(column, set()).update((np.flatnonzero(bad) + 2).tolist())
    else:
        case.note(f"{column} x {factor:g}", set())


def mutate_one_firm(draw, case: Case) -> None:
    frame = case.frame
    if frame.empty:
        return
    gvkey = draw(st.sampled_from(sorted(frame["gvkey"].unique())))
    case.frame = frame[frame["gvkey"] == gvkey].reset_index(drop=True)
    case.note("one firm only", set())


def mutate_one_county(draw, case: Case) -> None:
    case.frame["fips"] = draw(st.sampled_from(KNOWN_FIPS))
    case.note("all firms in one county", set())


def mutate_shuffle(draw, case: Case) -> None:
    order = draw(st.permutations(range(len(case.frame))))
    case.frame = case.frame.iloc[list(order)].reset_index(drop=True)
    case.note("rows shuffled", set())


# Applied in this order, so that no mutation undoes an earlier one and the bad lines stay where
# they were put: rows first (which firms and years exist), then whole columns' values, then
# cells, then the header.
MUTATIONS = (
    mutate_one_firm,
    mutate_one_county,
    mutate_gap,
    mutate_duplicate,
    mutate_shuffle,
    mutate_scale,
    mutate_moving_firm,
    mutate_cell,
    mutate_cell,
    mutate_text_cell,
    mutate_missing_column,
    mutate_header,
)


# -- writing the file, with file-level damage -----------------------------------------------------
def to_csv_bytes(frame: pd.DataFrame, line_end: str = "\n") -> bytes:
    return frame.to_csv(index=False, lineterminator=line_end).encode("utf-8")


def to_parquet_bytes(case: Case, draw) -> bytes | None:
    frame = case.frame.copy()
    casts = draw(
        st.sampled_from(("text", "numbers", "fips as numbers", "gvkey as numbers", "bool sale", "datetime fyear"))
    )
    for column in frame.columns:
        values = frame[column]
        if casts != "text" and column in NUMERIC:
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().sum() == values.map(lambda v: v is not None and str(v).strip() != "").sum():
                frame[column] = numbers.astype(float)
                continue
        frame[column] = values.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    if casts == "fips as numbers" and "fips" in frame:
        frame["fips"] = pd.to_numeric(frame["fips"], errors="coerce")  # 06085 -> 6085: leading zero lost
        case.note("fips stored as numbers", {"fips"}, exact=False)
    elif casts == "gvkey as numbers" and "gvkey" in frame:
        frame["gvkey"] = pd.to_numeric(frame["gvkey"], errors="coerce")
        case.note("gvkey stored as numbers", IDENTITY_BLAME, exact=False)
    elif casts == "bool sale" and "sale" in frame:
        frame["sale"] = True
        case.note("sale stored as booleans", {"sale"}, reject=True)
    elif casts == "datetime fyear" and "fyear" in frame:
        frame["fyear"] = pd.Timestamp("2001-01-01")
        case.note("fyear stored as dates", {"fyear"}, reject=True)
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer, index=False)
    except Exception:  # pyarrow cannot store some mixes; those files cannot exist
        return None
    return buffer.getvalue()


@st.composite
def panel_cases(draw) -> Case:
    case = Case(frame=draw(base_panels()))
    case.settings = PanelSettings(min_years=draw(st.integers(2, 4)), on_gap=draw(st.sampled_from(("error", "restart"))))
    chosen = draw(st.lists(st.integers(0, len(MUTATIONS) - 1), max_size=3))
    for index in sorted(chosen):
        MUTATIONS[index](draw, case)
    case.suffix = draw(st.sampled_from((".csv", ".csv", ".csv", ".csv.gz", ".parquet", ".txt")))
    if case.suffix == ".txt":
        case.note("unsupported extension", {None}, reject=True)
        case.raw = to_csv_bytes(case.frame)
        return case
    if case.suffix == ".parquet":
        raw = to_parquet_bytes(case, draw)
        if raw is None:
            case.suffix = ".csv"
        else:
            case.raw = raw
            if draw(st.integers(0, 9)) == 0:
                case.raw = raw[: draw(st.integers(0, len(raw) - 1))]
                case.note("truncated parquet", {None}, reject=True)
            return case
    damage = draw(
        st.sampled_from(
            ("none",) * 6
            + (
                "empty",
                "header only",
                "latin-1",
                "utf-16",
                "bom",
                "crlf",
                "blank lines",
                "truncated",
                "random bytes",
                "bad line",
                "semicolons",
            )
        )
    )
    frame = case.frame
    raw = to_csv_bytes(frame)
    if damage == "empty":
        raw = b""
        case.note("empty file", {None}, reject=True)
    elif damage == "header only":
        raw = to_csv_bytes(frame.iloc[:0])
        case.note("header only", {None}, reject=True)
    elif damage == "latin-1":
        if "conm" in frame:
            frame["conm"] = "Société " + frame["conm"].astype(str)
        elif len(frame) and "gvkey" in frame:
            frame.iat[0, frame.columns.get_loc("gvkey")] = "é" + str(frame.iat[0, frame.columns.get_loc("gvkey")])
        raw = frame.to_csv(index=False).encode("latin-1", errors="replace")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            case.note("latin-1", {None}, reject=True)
        else:
            case.note("latin-1 (ASCII only)", set(), exact=False)
    elif damage == "utf-16":
        raw = frame.to_csv(index=False).encode("utf-16")
        case.note("utf-16", {None}, reject=True)
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
        case.note("utf-8 byte-order mark", set())
    elif damage == "crlf":
        raw = to_csv_bytes(frame, "\r\n")
        case.note("CRLF line ends", set())
    elif damage == "blank lines":
        lines = raw.split(b"\n")
        at = draw(st.integers(1, max(1, len(lines) - 1)))
        raw = b"\n".join(lines[:at] + [b""] + lines[at:])
        case.note("blank line", set())
        case.lines = {}  # line numbers after the blank line shift; do not check them
    elif damage == "truncated":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
        case.note("truncated", {None}, exact=False)
        case.any_column = True
        case.lines = {}
    elif damage == "random bytes":
        raw = draw(st.binary(max_size=200))
        case.note("random bytes", {None}, exact=False)
        case.any_column = True
        case.lines = {}
    elif damage == "bad line":
        raw = raw + b"1,2,3,4,5,6,7,8,9,10,11\n"
        case.note("line with too many fields", {None}, reject=True)
    elif damage == "semicolons":
        raw = frame.to_csv(index=False, sep=";").encode()
        case.note("semicolon separated", {", ".join(PANEL_COLUMNS), None}, reject=True, exact=False)
    if case.suffix == ".csv.gz":
        raw = gzip.compress(raw)
        if draw(st.integers(0, 9)) == 0:
            cut = draw(st.integers(0, max(0, len(raw) - 1)))
            raw = raw[:cut] + bytes([raw[cut] ^ 0xFF]) + raw[cut + 1 :] if draw(st.booleans()) and raw else raw[:cut]
            case.note("damaged gzip", {None}, exact=False)
            case.any_column = True
            case.lines = {}
    case.raw = raw
    return case


# -- checks -----------------------------------------------------------------------------------
def check_rejection(error: InputError, case: Case, path: Path) -> str:
    message = str(error)
    assert str(path) in message, f"the message does not name the file: {message}"
    if error.column is not None:
        for part in error.column.split(", "):
            assert part in message
        assert f"column '{error.column}'" in message
    if error.column is None and error.problem.startswith("no firm is seen in at least"):
        # the sample rule left nothing (firms' rows may have been re-labelled by the mutations)
        if case.exact:
            assert expected_panel(case.frame, case.settings).empty, message
        return "rejected: no firm with enough years"
    if error.column is not None and case.any_column:
        assert set(error.column.split(", ")) <= set(PANEL_COLUMNS), error.column
    else:
        # several missing columns are named together: "gvkey, fyear"
        assert error.column in case.blame or set(error.column.split(", ")) <= case.blame, (
            f"blamed column {error.column!r}, but the mutations {case.mutations} could only break {case.blame}: {message}"
        )
    if error.column in case.lines and error.unit == "line" and len(case.mutations) == 1:
        assert case.lines[error.column] & set(error.rows), (
            f"rows {error.rows} miss the bad lines {case.lines[error.column]}"
        )
    if error.unit == "line" and error.rows:
        assert all(isinstance(r, int) and r >= 2 for r in error.rows), error.rows
    return f"rejected: {error.column}"


def expected_panel(frame: pd.DataFrame, settings: PanelSettings) -> pd.DataFrame:
    """The firm-years that must survive and their R&D stocks, computed directly from DATA.md."""
    rows = frame.rename(columns=lambda c: str(c).strip())[list(PANEL_COLUMNS)].copy()
    for column in NUMERIC:
        rows[column] = rows[column].astype(float)
    rows["gvkey"] = rows["gvkey"].astype(str).str.strip()
    rows = rows.sort_values(["gvkey", "fyear"])
    rows = rows[rows.groupby("gvkey")["fyear"].transform("size") >= settings.min_years]
    stocks = []
    for _, firm in rows.groupby("gvkey", sort=True):
        stock, last_year, last_xrd = None, None, None
        for year, xrd in zip(firm["fyear"], firm["xrd"]):
            if stock is None or year != last_year + 1:
                stock = xrd / (settings.presample_growth + settings.depreciation)
            else:
                stock = (1 - settings.depreciation) * stock + last_xrd
            stocks.append(stock)
            last_year, last_xrd = year, xrd
    rows["rd_stock"] = stocks
    return rows.reset_index(drop=True)


def check_panel(panel: PreparedPanel, case: Case, n_data_rows: int | None) -> str:
    assert isinstance(panel, PreparedPanel)
    assert not case.must_reject, f"accepted, but the mutations {case.mutations} make the file invalid"
    counties = panel.counties
    for name in ("sale", "emp", "ppent", "xrd", "rd_stock", "q", "k", "n", "r"):
        values = getattr(panel, name)
        assert np.all(np.isfinite(values)), f"{name} is not finite"
    assert np.all(panel.sale > 0) and np.all(panel.emp > 0) and np.all(panel.ppent > 0)
    assert np.all(panel.xrd >= 0) and np.all(panel.rd_stock >= 0)
    assert panel.n_firms >= 1 and np.all(panel.years_per_firm >= case.settings.min_years)
    order = np.lexsort((panel.obs_year, panel.obs_firm))
    np.testing.assert_array_equal(order, np.arange(panel.n_obs))
    pairs = set(zip(panel.obs_firm.tolist(), panel.obs_year.tolist()))
    assert len(pairs) == panel.n_obs, "a firm-year appears twice"
    assert all(len(f) == 5 and f.isascii() and f.isdigit() for f in panel.firm_fips)
    assert np.all(panel.firm_county < len(counties))
    if case.settings.on_gap == "error":
        years = panel.years[panel.obs_year]
        same = panel.obs_firm[1:] == panel.obs_firm[:-1]
        assert np.all(years[1:][same] == years[:-1][same] + 1), "a gap was accepted with on_gap='error'"
    if n_data_rows is not None:
        dropped = dict(panel.dropped)
        lost = sum(v for k, v in dropped.items() if k.startswith("firm-years"))
        assert panel.n_obs + lost == n_data_rows, (panel.n_obs, lost, n_data_rows)
    if case.exact:
        want = expected_panel(case.frame, case.settings)
        got = panel.to_frame()
        np.testing.assert_array_equal(got["gvkey"].to_numpy(str), want["gvkey"].to_numpy(str))
        np.testing.assert_array_equal(got["fyear"].to_numpy(), want["fyear"].to_numpy())
        np.testing.assert_array_equal(got["fips"].to_numpy(str), want["fips"].astype(str).str.strip().to_numpy(str))
        for column in MONEY:
            np.testing.assert_array_equal(got[column].to_numpy(float), want[column].to_numpy(float), err_msg=column)
        np.testing.assert_allclose(panel.rd_stock, want["rd_stock"].to_numpy(float), rtol=1e-12, atol=0)
    check_kernel_finite(panel)
    return "accepted"


def check_kernel_finite(panel: PreparedPanel) -> None:
    """The numpy spillover kernel on an accepted panel: finite, with every numpy error raised."""
    with np.errstate(all="raise"):
        for choice_set in ("occupied", "all"):
            inputs = kernel.spillover_inputs(panel, choice_set=choice_set)
            for h in HALFLIVES_KM:
                s_it = kernel.firm_year_spillover(inputs, h)
                sbar = kernel.choice_spillover(inputs, h)
                for values in (s_it, sbar, kernel.transform(s_it, "log", 0.001), kernel.transform(sbar, "log", 0.001)):
                    assert np.all(np.isfinite(values))


def run_panel_case(case: Case, outcomes: Counter) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"panel{case.suffix}"
        path.write_bytes(case.raw if case.raw is not None else to_csv_bytes(case.frame))
        n_rows = len(case.frame) if case.raw is not None and case.suffix in (".csv", ".csv.gz", ".parquet") else None
        if any(
            m in ("truncated", "random bytes", "damaged gzip", "blank line", "truncated parquet")
            for m in case.mutations
        ):
            n_rows = None
        try:
            with np.errstate(all="raise"):
                panel = load_panel(path, settings=case.settings)
        except InputError as error:
            outcomes[check_rejection(error, case, path)] += 1
            return
        outcomes[check_panel(panel, case, n_rows)] += 1


def test_a_valid_panel_is_accepted_exactly(tmp_path):
    frame = pd.DataFrame(
        {
            "gvkey": ["000001"] * 3 + ["000002"] * 3,
            "fyear": [2000, 2001, 2002] * 2,
            "sale": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "emp": [0.1] * 6,
            "ppent": [2.0] * 6,
            "xrd": [0.0, 1.0, 2.0, 0.5, 0.5, 0.5],
            "fips": ["06085"] * 3 + ["02013"] * 3,
        }
    ).astype(object)
    outcomes = Counter()
    run_panel_case(Case(frame=frame), outcomes)
    assert outcomes == {"accepted": 1}


@given(case=panel_cases())
def test_fuzzed_panels(case):
    run_panel_case(case, Counter())


@pytest.mark.slow
def test_fuzzed_panels_1000():
    outcomes: Counter = Counter()

    @settings(settings.get_profile("slow"))
    @given(case=panel_cases())
    def run(case):
        run_panel_case(case, outcomes)

    run()
    tried = sum(outcomes.values())
    print(f"\nfuzzed panels: {tried} files tried; outcomes {dict(outcomes.most_common())}")
    assert tried >= 1000
    assert outcomes["accepted"] > 0 and tried - outcomes["accepted"] > 0


# -- county tables ------------------------------------------------------------------------------
@st.composite
def base_counties(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 6))
    codes = draw(st.lists(st.integers(1000, 99999), min_size=n, max_size=n, unique=True))
    frame = pd.DataFrame(
        {
            "fips": [f"{c:05d}" for c in codes],
            "name": [f"County {i}" for i in range(n)],
            "state": draw(st.lists(st.sampled_from(("CA", "MA", "AK", "HI")), min_size=n, max_size=n)),
            "lat": draw(st.lists(st.floats(-90, 90), min_size=n, max_size=n)),
            "lon": draw(st.lists(st.floats(-180, 180), min_size=n, max_size=n)),
            "labor_force": draw(st.lists(st.floats(1.0, 1e7), min_size=n, max_size=n)),
        }
    )
    if draw(st.booleans()):
        frame["income"] = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    return frame.astype(object)


COUNTY_VALUES = [
    ("", None),
    ("nan", None),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("abc", None),
    ("0", 0.0),
    ("-1", -1.0),
    ("91", 91.0),
    ("-181", -181.0),
    ("1e308", 1e308),
    ("-1e308", -1e308),
    ("1e-320", 1e-320),
    ("45.5", 45.5),
]


@dataclass
class CountyCase:
    frame: pd.DataFrame
    suffix: str = ".csv"
    raw: bytes | None = None
    blame: set = field(default_factory=set)
    must_reject: bool = False
    mutations: list[str] = field(default_factory=list)
    bad_covariates: set = field(default_factory=set)
    touched: set = field(default_factory=set)

    def note(self, mutation: str, blame, reject: bool = False) -> None:
        self.mutations.append(mutation)
        self.blame |= set(blame)
        self.must_reject |= reject


@st.composite
def county_cases(draw) -> CountyCase:
    case = CountyCase(frame=draw(base_counties()))
    # in this order, so that no mutation undoes an earlier one
    kinds = ("one", "duplicate", "value", "value", "fips", "text column", "missing")
    for kind in [kinds[i] for i in sorted(draw(st.lists(st.integers(0, len(kinds) - 1), max_size=3)))]:
        frame = case.frame
        pos = draw(st.integers(0, len(frame) - 1))
        if kind == "value":
            column = draw(st.sampled_from([c for c in frame.columns if c in ("lat", "lon", "labor_force", "income")]))
            if (pos, column) in case.touched:
                continue
            case.touched.add((pos, column))
            text, value = draw(st.sampled_from(COUNTY_VALUES))
            frame.iat[pos, frame.columns.get_loc(column)] = text
            bad = value is None or not math.isfinite(value)
            if column in ("lat", "lon"):
                case.note(f"{column}={text!r}", {column}, reject=bad or abs(value) > {"lat": 90, "lon": 180}[column])
            else:
                # a bad covariate is rejected, or the column is no covariate at all (mostly text)
                case.note(f"{column}={text!r}", {column})
                if bad or abs(value) > 1e100:
                    case.bad_covariates.add(column)
        elif kind == "fips":
            if (pos, "fips") in case.touched or "duplicated county" in case.mutations:
                continue  # (a new code on a duplicated row would undo the duplicate)
            case.touched.add((pos, "fips"))
            text = draw(st.sampled_from(("6085", "060850", "06O85", "", "٠٦٠٨٥", "06085.0", " 06085 ")))
            frame.iat[pos, frame.columns.get_loc("fips")] = text
            clash = text.strip() in set(frame["fips"].drop(index=frame.index[pos]).astype(str))
            case.note(f"fips={text!r}", {"fips"}, reject=text.strip() != "06085" or clash)
        elif kind == "duplicate":
            case.frame = pd.concat([frame, frame.iloc[[pos]]], ignore_index=True)
            case.note("duplicated county", {"fips"}, reject=True)
        elif kind == "missing":
            present = [c for c in ("fips", "lat", "lon") if c in frame.columns]
            if not present:
                continue
            column = draw(st.sampled_from(present))
            case.frame = frame.drop(columns=[column])
            case.note(f"no {column}", {column}, reject=True)
        elif kind == "one":
            case.frame = frame.iloc[[pos]].reset_index(drop=True)
            case.note("one county", set())
        else:
            frame["note"] = pd.Series(
                draw(st.lists(st.text(max_size=5), min_size=len(frame), max_size=len(frame))), dtype=object
            )
            case.note("text column", {"note"})  # a column of mostly number-like strings is a covariate
    damage = draw(st.sampled_from(("none",) * 5 + ("empty", "header only", "latin-1", "random bytes", "parquet")))
    raw = case.frame.to_csv(index=False).encode()
    if damage == "empty":
        raw = b""
        case.note("empty", {None}, reject=True)
    elif damage == "header only":
        raw = case.frame.iloc[:0].to_csv(index=False).encode()
        case.note("header only", {None}, reject=True)
    elif damage == "latin-1":
        raw = raw.replace(b"County", "Comté".encode("latin-1"))
        case.note("latin-1", {None}, reject=b"County" in case.frame.to_csv(index=False).encode())
    elif damage == "random bytes":
        raw = draw(st.binary(max_size=100))
        case.note("random bytes", {None, "fips", "lat", "lon", "fips, lat, lon", "lat, lon", "fips, lat", "fips, lon"})
    elif damage == "parquet":
        buffer = io.BytesIO()
        try:
            case.frame.astype(str).to_parquet(buffer, index=False)
            raw, case.suffix = buffer.getvalue(), ".parquet"
        except Exception:
            pass
    case.raw = raw
    return case


def panel_in(counties: Counties) -> pd.DataFrame:
    """A valid panel over (up to three of) the given counties."""
    rows = []
    for i, fips in enumerate(counties.fips[:3]):
        for year in (2000, 2001, 2002):
            rows.append(
                {
                    "gvkey": f"{i + 1:06d}",
                    "fyear": year,
                    "sale": 10.0 + i,
                    "emp": 1.0,
                    "ppent": 5.0,
                    "xrd": 1.0 * i,
                    "fips": fips,
                }
            )
    return pd.DataFrame(rows)


def run_county_case(case: CountyCase, outcomes: Counter) -> None:
    from bayes_spill.config import parse_config

    config = parse_config((Path(__file__).resolve().parents[2] / "models" / "lychagin2010.toml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"counties{case.suffix}"
        path.write_bytes(case.raw)
        try:
            with np.errstate(all="raise"):
                counties = load_counties(path)
        except InputError as error:
            message = str(error)
            assert str(path) in message
            if error.column is not None:
                assert f"column '{error.column}'" in message
            assert error.column in case.blame or set(str(error.column).split(", ")) <= case.blame, (
                f"blamed {error.column!r}; mutations {case.mutations} could break {case.blame}: {message}"
            )
            outcomes[f"table rejected: {error.column}"] += 1
            return
        assert not case.must_reject, f"accepted, but {case.mutations} make the table invalid"
        fips = counties.fips.tolist()
        assert len(set(fips)) == len(fips) and all(len(f) == 5 and f.isascii() and f.isdigit() for f in fips)
        assert np.all(np.abs(counties.lat) <= 90) and np.all(np.abs(counties.lon) <= 180)
        for name, values in counties.covariates.items():
            assert np.all(np.isfinite(values)), name
        assert not case.bad_covariates & set(counties.covariates), "a covariate with bad values was accepted"
        # a panel located in those counties, and the model's numpy inputs (covariates, kernel)
        panel_path = Path(tmp) / "panel.csv"
        panel_in(counties).to_csv(panel_path, index=False)
        try:
            with np.errstate(all="raise"):
                panel = load_panel(panel_path, counties=counties)
                data = model_data(panel, config)
        except (InputError, ConfigError) as error:
            assert "labor_force" in str(error), str(error)
            outcomes["model rejects the table"] += 1
            return
        assert np.all(np.isfinite(data.county_covariates))
        check_kernel_finite(panel)
        outcomes["accepted"] += 1


@given(case=county_cases())
def test_fuzzed_county_tables(case):
    run_county_case(case, Counter())


@pytest.mark.slow
def test_fuzzed_county_tables_1000():
    outcomes: Counter = Counter()

    @settings(settings.get_profile("slow"))
    @given(case=county_cases())
    def run(case):
        run_county_case(case, outcomes)

    run()
    tried = sum(outcomes.values())
    print(f"\nfuzzed county tables: {tried} files tried; outcomes {dict(outcomes.most_common())}")
    assert tried >= 1000
