"""Reading and checking a user's firm panel: every rule of DATA.md's "Bad input"."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from bayes_spill.data import geography
from bayes_spill.data.files import read_table
from bayes_spill.data.geography import Counties
from bayes_spill.data.inputs import load_panel, validate_panel, validation_report
from bayes_spill.data.panel import PanelSettings
from bayes_spill.errors import InputError

COUNTIES = Counties(
    fips=np.array(["06085", "25017", "53033", "06081"]),
    name=np.array(["Santa Clara", "Middlesex", "King", "San Mateo"]),
    state=np.array(["CA", "MA", "WA", "CA"]),
    lat=np.array([37.23, 42.49, 47.49, 37.43]),
    lon=np.array([-121.70, -71.39, -121.83, -122.33]),
    covariates={"labor_force": np.array([900_000.0, 850_000.0, 1_100_000.0, 400_000.0])},
    source="test counties",
)
FIRMS = (("001004", "06085"), ("012141", "25017"), ("020530", "53033"))
YEARS = (2000, 2001, 2002, 2003)


def good_frame() -> pd.DataFrame:
    """3 firms x 4 years; row i of the frame is line i + 2 of the written CSV."""
    rows = []
    for f, (gvkey, fips) in enumerate(FIRMS):
        for t, year in enumerate(YEARS):
            rows.append(
                {
                    "gvkey": gvkey,
                    "fyear": year,
                    "sale": 100.0 + 10 * f + t,
                    "emp": 1.5 + 0.1 * t,
                    "ppent": 20.0 + f + 0.5 * t,
                    "xrd": 4.0 + f + t,
                    "fips": fips,
                }
            )
    return pd.DataFrame(rows)


def with_cells(frame: pd.DataFrame, column: str, values: dict) -> pd.DataFrame:
    """A copy with some cells replaced by anything (text included), keyed by frame row."""
    frame = frame.astype({column: object})
    for row, value in values.items():
        frame.loc[row, column] = value
    return frame


def write_csv(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def load(frame: pd.DataFrame, tmp_path, name: str = "panel.csv", **settings):
    return load_panel(write_csv(frame, tmp_path / name), counties=COUNTIES, settings=PanelSettings(**settings))


def load_error(frame: pd.DataFrame, tmp_path, name: str = "panel.csv", **settings) -> InputError:
    with pytest.raises(InputError) as info:
        load(frame, tmp_path, name, **settings)
    return info.value


def assert_reports(error: InputError, file: str, column: str | None, rows: list, *phrases: str) -> None:
    text = str(error)
    assert file in text
    if column is not None:
        assert error.column == column and f"'{column}'" in text
    assert error.rows == rows
    for row in rows[:5]:
        assert str(row) in text
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in {text!r}"


def arrays(panel) -> dict:
    names = ("firms", "firm_county", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock")
    return {name: getattr(panel, name) for name in names}


def assert_same_arrays(a, b) -> None:
    for name, value in arrays(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)


# -- a good file -------------------------------------------------------------------------------
def test_good_csv_loads(tmp_path, capsys):
    panel = load(good_frame(), tmp_path)
    assert panel.n_firms == 3 and panel.n_obs == 12
    assert panel.years.tolist() == list(YEARS)
    assert panel.source.endswith("panel.csv")
    assert dict(panel.dropped) == {}
    assert capsys.readouterr().out == ""


def test_csv_parquet_and_gzip_give_the_same_panel(tmp_path):
    frame = good_frame()
    from_csv = load(frame, tmp_path)
    frame.to_parquet(tmp_path / "panel.parquet", index=False)
    frame.to_parquet(tmp_path / "panel.pq", index=False)
    frame.to_csv(tmp_path / "panel.csv.gz", index=False)
    for name in ("panel.parquet", "panel.pq", "panel.csv.gz"):
        assert_same_arrays(from_csv, load_panel(tmp_path / name, counties=COUNTIES))


def test_leading_zeros_survive_csv_and_parquet(tmp_path):
    frame = good_frame()
    frame.to_parquet(tmp_path / "panel.parquet", index=False)
    for panel in (load(frame, tmp_path), load_panel(tmp_path / "panel.parquet", counties=COUNTIES)):
        assert panel.firms.tolist() == ["001004", "012141", "020530"]
        assert panel.firm_fips.tolist() == ["06085", "25017", "53033"]


def test_read_table_reads_codes_as_text_and_numbers_raw(tmp_path):
    frame = with_cells(good_frame(), "sale", {0: "n.a."})
    table = read_table(write_csv(frame, tmp_path / "panel.csv"))
    assert table["gvkey"].iloc[0] == "001004" and table["fips"].iloc[0] == "06085"
    assert table["sale"].iloc[0] == "n.a."
    assert table.index[0] == 2  # file line numbers: the header is line 1


def test_extra_columns_are_ignored(tmp_path):
    plain = load(good_frame(), tmp_path, "plain.csv")
    extra = good_frame().assign(conm="ACME CORP", sic="7372", notes=None)
    assert_same_arrays(plain, load(extra, tmp_path, "extra.csv"))


def test_surrounding_whitespace_in_codes_is_harmless(tmp_path):
    frame = good_frame()
    frame["fips"] = " " + frame["fips"] + " "
    assert load(frame, tmp_path).firm_fips.tolist() == ["06085", "25017", "53033"]


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    path = tmp_path / "panel.csv"
    text = with_cells(good_frame(), "sale", {4: "oops"}).to_csv(index=False)
    lines = text.splitlines()
    lines.insert(3, "")  # a blank line 4; the bad row moves from line 6 to line 7
    path.write_text("\n".join(lines) + "\n\n")
    with pytest.raises(InputError) as info:
        load_panel(path, counties=COUNTIES)
    assert info.value.rows == [7]


# -- files that cannot be read -----------------------------------------------------------------
def test_unsupported_extension(tmp_path):
    path = tmp_path / "panel.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"panel\.xlsx.*unsupported file type.*\.csv"):
        read_table(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.csv: file not found"):
        read_table(tmp_path / "nothere.csv")


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"empty\.csv.*empty"):
        read_table(path)


def test_header_without_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("gvkey,fyear,sale,emp,ppent,xrd,fips\n")
    with pytest.raises(InputError, match=r"header\.csv: has a header but no data rows"):
        read_table(path)


def test_undecodable_bytes_are_an_encoding_error(tmp_path):
    path = tmp_path / "latin1.csv"
    good_frame().assign(conm="NESTLÉ").to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(InputError, match=r"latin1\.csv: is not UTF-8.*0xc9.*Save it as UTF-8"):
        read_table(path)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    good_frame().to_csv(path, index=False, encoding="utf-8-sig")
    assert list(read_table(path).columns)[0] == "gvkey"


def test_unparseable_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('gvkey,fyear\n001004,2000\n001004,2001,7,8,9\n"unterminated\n')
    with pytest.raises(InputError, match=r"ragged\.csv: could not be read as CSV"):
        read_table(path)


@pytest.mark.parametrize(("name", "magic"), [("broken.parquet", b"PAR1"), ("broken.csv.gz", b"\x1f\x8b")])
def test_corrupt_binary_file(tmp_path, name, magic):
    """The right magic number, then garbage: a damaged file of the kind its name says."""
    path = tmp_path / name
    path.write_bytes(magic + b"this is not what the extension says\n" * 3)
    with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: could not be read"):
        read_table(path)


@pytest.mark.parametrize("name", ["broken.parquet", "broken.csv.gz"])
def test_text_under_a_binary_extension_is_called_text(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not what the extension says\n" * 3)
    with pytest.raises(
        InputError, match=rf"{name.replace('.', '[.]')}: is text, not .* as its name says. Rename it to broken.csv"
    ):
        read_table(path)


def test_gzip_csv_is_read(tmp_path):
    path = tmp_path / "panel.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(good_frame().to_csv(index=False))
    assert len(read_table(path)) == 12


# -- columns -----------------------------------------------------------------------------------
def test_missing_required_columns_named_with_those_found(tmp_path):
    error = load_error(good_frame().drop(columns=["fyear", "xrd"]).assign(conm="X"), tmp_path)
    text = str(error)
    assert "panel.csv" in text and error.column == "fyear, xrd"
    assert "missing required column" in text
    assert "the file has: gvkey, sale, emp, ppent, fips, conm" in text


def test_upper_case_columns_get_a_rename_hint(tmp_path):
    error = load_error(good_frame().rename(columns={"gvkey": "GVKEY"}), tmp_path)
    assert error.column == "gvkey" and "rename GVKEY -> gvkey" in str(error)


# -- values ------------------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["gvkey", "fyear", "sale", "emp", "ppent", "xrd", "fips"])
def test_missing_values(tmp_path, column):
    frame = with_cells(good_frame(), column, {1: None, 6: "NA"})
    error = load_error(frame, tmp_path)
    assert_reports(error, "panel.csv", column, [3, 8], "missing values")


def test_missing_xrd_hint_asks_the_user_to_decide(tmp_path):
    error = load_error(with_cells(good_frame(), "xrd", {0: None}), tmp_path)
    assert "not reported" in str(error) and "fill it in" in str(error)


@pytest.mark.parametrize("column", ["fyear", "sale", "emp", "ppent", "xrd"])
def test_non_numeric_values(tmp_path, column):
    frame = with_cells(good_frame(), column, {2: "1,234", 9: "n.a."})
    error = load_error(frame, tmp_path)
    assert_reports(error, "panel.csv", column, [4, 11], "non-numeric", "'1,234'", "'n.a.'")


@pytest.mark.parametrize("column", ["sale", "emp", "ppent", "xrd"])
def test_infinite_values(tmp_path, column):
    error = load_error(with_cells(good_frame(), column, {5: "inf"}), tmp_path)
    assert_reports(error, "panel.csv", column, [7], "infinite")


@pytest.mark.parametrize("column", ["sale", "emp", "ppent"])
@pytest.mark.parametrize("bad", [0.0, -3.5])
def test_values_that_have_no_log(tmp_path, column, bad):
    error = load_error(with_cells(good_frame(), column, {0: bad, 11: bad}), tmp_path)
    assert_reports(error, "panel.csv", column, [2, 13], "<= 0", "log")


def test_negative_rd(tmp_path):
    error = load_error(with_cells(good_frame(), "xrd", {3: -1.0}), tmp_path)
    assert_reports(error, "panel.csv", "xrd", [5], "negative")


def test_zero_rd_is_fine(tmp_path):
    frame = good_frame()
    frame["xrd"] = 0.0
    assert load(frame, tmp_path).zero_rd.all()


def test_fractional_fiscal_year(tmp_path):
    error = load_error(with_cells(good_frame(), "fyear", {1: 2001.5}), tmp_path)
    assert_reports(error, "panel.csv", "fyear", [3], "not whole numbers", "2001.5")


def test_duplicated_firm_years_list_every_copy(tmp_path):
    frame = pd.concat([good_frame(), good_frame().iloc[[5]]], ignore_index=True)
    error = load_error(frame, tmp_path)
    assert_reports(error, "panel.csv", "gvkey, fyear", [7, 14], "duplicated (gvkey, fyear)", "012141 in 2001")


# -- counties ----------------------------------------------------------------------------------
def test_fips_that_lost_its_leading_zero(tmp_path):
    frame = good_frame()
    frame.loc[frame["fips"] == "06085", "fips"] = "6085"
    error = load_error(frame, tmp_path)
    assert_reports(error, "panel.csv", "fips", [2, 3, 4, 5], "not exactly 5 digits", "'6085'", "leading zero", "Excel")


def test_malformed_fips_without_the_zero_hint(tmp_path):
    error = load_error(with_cells(good_frame(), "fips", {4: "2501X", 5: "250170"}), tmp_path)
    assert_reports(error, "panel.csv", "fips", [6, 7], "not exactly 5 digits", "'2501X'", "'250170'")
    assert "leading zero" not in str(error)


def test_numeric_fips_in_parquet_is_reported_as_lost_zeros(tmp_path):
    frame = good_frame()
    frame["fips"] = frame["fips"].astype(int)
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(InputError) as info:
        load_panel(path, counties=COUNTIES)
    assert info.value.rows == [2, 3, 4, 5] and "'6085'" in str(info.value) and "leading zero" in str(info.value)


def test_unknown_fips_names_the_county_table(tmp_path):
    error = load_error(with_cells(good_frame(), "fips", {8: "99999", 9: "99999", 10: "99999", 11: "99999"}), tmp_path)
    assert_reports(error, "panel.csv", "fips", [10, 11, 12, 13], "not in the county table", "test counties", "'99999'")


def test_a_firm_that_moves(tmp_path):
    frame = with_cells(good_frame(), "fips", {2: "06081", 3: "06081", 4: "06085"})
    error = load_error(frame, tmp_path)
    assert_reports(
        error, "panel.csv", "fips", ["gvkey 001004 (06085/06081)", "gvkey 012141 (06085/25017)"], "changes over time"
    )


# -- the sample rule and gaps ------------------------------------------------------------------
def short_firm_frame() -> pd.DataFrame:
    short = good_frame().iloc[:2].assign(gvkey="099999", fips="06081")
    return pd.concat([good_frame(), short], ignore_index=True)


def test_firms_with_fewer_than_three_years_are_dropped_and_counted(tmp_path, capsys):
    panel = load(short_firm_frame(), tmp_path)
    assert dict(panel.dropped) == {"firms with fewer than 3 years": 1, "firm-years of firms with fewer than 3 years": 2}
    assert panel.n_firms == 3 and panel.n_obs == 12
    assert_same_arrays(panel, load(good_frame(), tmp_path, "good.csv"))
    out = capsys.readouterr().out
    assert "Dropped 1 firm (2 firm-years)" in out and "fewer than 3 years" in out and "099999" in out


def test_min_years_is_a_setting(tmp_path):
    panel = load(short_firm_frame(), tmp_path, min_years=2)
    assert panel.n_firms == 4 and dict(panel.dropped) == {}


def test_nothing_left_after_the_drop(tmp_path):
    frame = good_frame()
    frame = frame[frame["fyear"] <= 2001]
    error = load_error(frame, tmp_path)
    assert "panel.csv" in str(error) and "at least 3 years" in str(error)


def gap_frame() -> pd.DataFrame:
    rows = good_frame()
    rows = rows[~((rows["gvkey"] == "001004") & (rows["fyear"] == 2001))]
    extra = good_frame().iloc[4:8].assign(fyear=[2006, 2007, 2009, 2010])
    return pd.concat([rows, extra], ignore_index=True)


def test_gaps_are_an_error_by_default(tmp_path):
    error = load_error(gap_frame(), tmp_path)
    assert_reports(
        error,
        "panel.csv",
        "fyear",
        ["gvkey 001004 (no 2001)", "gvkey 012141 (no 2004-2005 & 2008)"],
        "missing years",
        "on_gap='restart'",
    )


def test_gaps_restart_the_rd_stock_when_asked(tmp_path, capsys):
    panel = load(gap_frame(), tmp_path, on_gap="restart")
    assert panel.n_obs == 15
    out = capsys.readouterr().out
    assert "2 firms have gaps" in out and "restarts" in out
    firm = panel.obs_firm == 0
    years = panel.years[panel.obs_year[firm]]
    stock, xrd = panel.rd_stock[firm], panel.xrd[firm]
    assert years.tolist() == [2000, 2002, 2003]
    np.testing.assert_allclose(stock[1], xrd[1] / 0.2)  # restarted with the start rule
    np.testing.assert_allclose(stock[2], 0.85 * stock[1] + xrd[1])


def test_gaps_of_dropped_firms_do_not_matter(tmp_path):
    short = good_frame().iloc[:2].assign(gvkey="099999", fips="06081", fyear=[2000, 2003])
    panel = load(pd.concat([good_frame(), short], ignore_index=True), tmp_path)
    assert panel.n_firms == 3


# -- validate_panel on a frame, and the report --------------------------------------------------
def test_validate_panel_on_a_frame_counts_rows_as_file_lines():
    frame = with_cells(good_frame(), "emp", {0: -1.0})
    with pytest.raises(InputError) as info:
        validate_panel(frame, COUNTIES, "mine.csv", PanelSettings())
    assert info.value.rows == [2] and "mine.csv" in str(info.value)


def test_validate_panel_returns_typed_clean_frame():
    clean, dropped, messages = validate_panel(good_frame().assign(conm="X"), COUNTIES, "mine.csv", PanelSettings())
    assert clean["fyear"].dtype == np.int64 and clean["sale"].dtype == np.float64
    assert clean["fips"].tolist()[0] == "06085" and "conm" in clean.columns
    assert dropped == {} and messages == []


def test_load_panel_takes_a_county_file_or_the_built_in_table(tmp_path):
    if not hasattr(geography, "load_counties"):
        pytest.skip("geography.load_counties is not available yet")
    path = write_csv(good_frame(), tmp_path / "panel.csv")
    built_in = load_panel(path)
    assert built_in.firm_fips.tolist() == ["06085", "25017", "53033"]
    assert built_in.counties.label(int(built_in.firm_county[0])).startswith("Santa Clara")
    county_file = tmp_path / "counties.csv"
    pd.DataFrame({"fips": COUNTIES.fips, "lat": COUNTIES.lat, "lon": COUNTIES.lon}).to_csv(county_file, index=False)
    from_file = load_panel(path, counties=county_file)
    assert from_file.firm_fips.tolist() == ["06085", "25017", "53033"] and len(from_file.counties) == 4


def test_validation_report(tmp_path, capsys):
    panel = load(short_firm_frame(), tmp_path)
    report = validation_report(panel)
    for phrase in (
        "panel.csv",
        "firms                3",
        "firm-years           12",
        "2000-2003 (4 years)",
        "mean years per firm  4.0",
        "counties occupied    3 of 4",
        "Santa Clara, CA (06085)",
        "King, WA (53033)",
        "zero-R&D firm-years  0",
        "1 firms with fewer than 3 years",
        "2 firm-years of firms with fewer than 3 years",
    ):
        assert phrase in report, f"{phrase!r} not in\n{report}"
    assert len(report.splitlines()) < 20


def test_validation_report_mentions_gaps_and_no_drops(tmp_path):
    report = validation_report(load(gap_frame(), tmp_path, on_gap="restart"))
    assert "firms with year gaps 2" in report and "dropped              nothing" in report


def test_a_column_named_twice_in_the_header_is_rejected_not_renamed(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("gvkey,fyear,sale,emp,ppent,xrd,fips,sale\n001,2000,1,1,1,1,06085,2\n")
    with pytest.raises(InputError) as info:
        read_table(path)
    assert "twice.csv" in str(info.value) and "'sale'" in str(info.value) and "more than once" in str(info.value)


def test_a_repeated_header_name_is_reported_with_its_column_not_as_unreadable(tmp_path):
    path = tmp_path / "repeat.csv"
    path.write_text("gvkey,fyear,sale,emp,ppent,xrd,fips, gvkey\n001,2000,1,1,1,1,06085,001\n")
    with pytest.raises(InputError) as info:
        read_table(path)
    assert info.value.column == "gvkey" and "could not be read" not in str(info.value)
