"""``prepare``: raw WRDS extracts made from a known panel give that panel back, and the record
names every firm left out with the rule that did it (tests/wrds_extracts.py builds the extracts)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from wrds_extracts import EXTRA_FIRMS, drift_extract, raw_extract

from bayes_spill.data import prices
from bayes_spill.data.compustat import parse_years, prepare, record_path, write_prepared
from bayes_spill.data.datasets import dataset_path
from bayes_spill.data.files import write_table
from bayes_spill.data.inputs import load_panel
from bayes_spill.data.prepare_record import CHANGED, DROPPED, DUPLICATE, EXCLUDED, NOTE
from bayes_spill.errors import BayesSpillError, InputError

RTOL = 1e-9
N_FIRMS = 120


@functools.cache
def known_panel() -> pd.DataFrame:
    """The first firms of the embedded default, gvkeys as Compustat writes them (6 digits).
    Danville, VA (51590) is no ZIP's dominant county (see zip_county_notes.md), so its firms
    cannot come back from a ZIP and are left out here."""
    panel = pd.read_csv(dataset_path(), dtype={"gvkey": str, "fips": str})
    panel = panel[panel["fips"] != "51590"]
    panel["gvkey"] = panel["gvkey"].str.zfill(6)
    firms = sorted(panel["gvkey"].unique())[:N_FIRMS]
    return panel[panel["gvkey"].isin(firms)].sort_values(["gvkey", "fyear"]).reset_index(drop=True)


def span(panel: pd.DataFrame) -> tuple[int, int]:
    return int(panel["fyear"].min()), int(panel["fyear"].max())


def assert_same_panel(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected.sort_values(["gvkey", "fyear"]).reset_index(drop=True)
    assert list(got.columns) == ["gvkey", "fyear", "sale", "emp", "ppent", "xrd", "fips"]
    assert got["gvkey"].tolist() == expected["gvkey"].tolist()
    assert got["fyear"].tolist() == expected["fyear"].tolist()
    assert got["fips"].tolist() == expected["fips"].tolist()
    for column in ("sale", "emp", "ppent", "xrd"):
        np.testing.assert_allclose(
            got[column].to_numpy(), expected[column].to_numpy(), rtol=RTOL, atol=0, err_msg=column
        )


def test_prepare_gives_back_the_panel_the_extract_was_made_from_and_records_every_exclusion():
    panel = known_panel()
    funda, company = raw_extract(panel)
    got, record = prepare(funda, company, sic=[7372], years=span(panel))
    assert_same_panel(got, panel)

    excluded = record.excluded()
    assert dict(zip(excluded["gvkey"], excluded["rule"])) == EXTRA_FIRMS
    assert (excluded["action"] == EXCLUDED).all() and excluded["detail"].str.len().gt(0).all()
    assert record.counts["firms in the panel"] == panel["gvkey"].nunique()
    assert record.counts["firms with headquarters outside the US"] == 2
    assert record.counts["firms with no ZIP (addzip empty)"] == 1
    # every firm-year whose xrd was empty in FUNDA is listed, and only those
    standard = funda[
        (funda["indfmt"] == "INDL") & (funda["datafmt"] == "STD") & funda["gvkey"].isin(set(panel["gvkey"]))
    ]
    empty = standard[standard["xrd"].isna()]
    changed = record.lines[record.lines["rule"] == "xrd_zero"]
    assert (changed["action"] == CHANGED).all()
    assert changed["firm_years"].sum() == len(empty) == record.counts["firm-years with xrd missing, set to 0"] > 0
    assert set(changed["gvkey"]) == set(empty["gvkey"])
    # the early years without sich were classified by the header sic, and said so
    header = record.lines[record.lines["rule"] == "industry_from_header"]
    assert set(header["gvkey"]) == set(panel["gvkey"]) and (header["action"] == NOTE).all()
    # an excluded firm has exactly one line; nothing else is listed for it
    assert not record.lines[record.lines["gvkey"].isin(EXTRA_FIRMS)]["action"].ne(EXCLUDED).any()
    assert "FUNDA rows with indfmt other than INDL" in record.report()


def test_the_prepared_panel_goes_straight_into_validate(tmp_path):
    panel = known_panel()
    got, record = prepare(*raw_extract(panel), sic=[7372], years=span(panel))
    panel_path, written = write_prepared(got, record, tmp_path / "panel.csv")
    assert written == tmp_path / "panel_record.csv" and written.exists()
    loaded = load_panel(panel_path)
    assert loaded.n_firms == panel["gvkey"].nunique()
    lines = pd.read_csv(written, dtype={"gvkey": str})
    assert set(lines.loc[lines["action"] == EXCLUDED, "gvkey"]) == set(EXTRA_FIRMS)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".dta"])
def test_every_file_format_gives_the_same_panel(tmp_path, suffix):
    panel = known_panel()
    funda, company = raw_extract(panel)
    # upper-case headers as SAS exports write them, in CSV
    if suffix == ".csv":
        funda.columns = [c.upper() for c in funda.columns]
    funda_path = write_table(funda, tmp_path / f"funda{suffix}")
    company_path = write_table(company, tmp_path / f"company{suffix}")
    got, record = prepare(funda_path, company_path, sic=["7372"], years=f"{span(panel)[0]}-{span(panel)[1]}")
    assert_same_panel(got, panel)
    assert dict(zip(record.excluded()["gvkey"], record.excluded()["rule"])) == EXTRA_FIRMS
    assert record.sources["FUNDA"] == str(funda_path)


def test_industry_by_historical_sich_where_present_else_the_header_sic():
    funda, company = drift_extract()
    got, record = prepare(
        funda, company, sic=[7372], price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0})
    )
    kept = got.groupby("gvkey")["fyear"].apply(list).to_dict()
    assert kept == {"000001": [2000, 2001, 2002], "000002": list(range(2000, 2005)), "000003": list(range(2000, 2005))}
    dropped = record.lines[(record.lines["gvkey"] == "000001") & (record.lines["rule"] == "industry")].iloc[0]
    assert dropped["action"] == DROPPED and dropped["fyears"] == "2003-2004" and "sich 7373" in dropped["detail"]
    assert got.loc[got["gvkey"] == "000001", "fips"].iloc[0] == "06085"
    assert got.loc[got["gvkey"] == "000002", "fips"].iloc[0] == "25017"
    # a 3-digit prefix takes the whole group
    got, record = prepare(
        funda, company, sic=["737"], price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0})
    )
    assert len(got) == 15 and record.excluded().empty


def test_naics_selects_by_naicsh_else_the_header_naics():
    funda, company = drift_extract()
    funda["naicsh"] = [511210] * 3 + [541511] * 2 + [None] * 10
    company["naics"] = ["511210", "511210", "334111"]
    got, record = prepare(
        funda, company, naics=["5112"], price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0})
    )
    assert got.groupby("gvkey").size().to_dict() == {"000001": 3, "000002": 5}
    assert record.excluded()[["gvkey", "rule"]].values.tolist() == [["000003", "industry"]]


def test_any_base_year_of_a_price_index_gives_the_same_2002_dollars(tmp_path):
    panel = known_panel()
    funda, company = raw_extract(panel, extras=False)
    builtin = prices.load_price_index().level
    own = pd.DataFrame({"fyear": builtin.index, "price_index": builtin.to_numpy() * 123.4})  # another base
    path = write_table(own, tmp_path / "deflator.csv")
    got, record = prepare(funda, company, sic=[7372], price_index=path)
    assert_same_panel(got, panel)
    assert record.sources["price index"] == str(path)


def test_a_price_index_missing_a_year_the_panel_needs_names_the_years(tmp_path):
    funda, company = drift_extract()
    path = write_table(
        pd.DataFrame({"fyear": [2000, 2001, 2002], "price_index": [90.0, 95.0, 100.0]}), tmp_path / "p.csv"
    )
    with pytest.raises(InputError) as caught:
        prepare(funda, company, sic=[7372], price_index=path)
    assert caught.value.file == str(path) and caught.value.column == "fyear"
    assert "2003, 2004" in caught.value.problem
    without_2002 = write_table(pd.DataFrame({"fyear": [2000, 2001], "price_index": [90.0, 95.0]}), tmp_path / "q.csv")
    with pytest.raises(InputError, match="no value for 2002"):
        prepare(funda, company, sic=[7372], price_index=without_2002)


def test_missing_xrd_error_names_the_funda_lines(tmp_path):
    funda, company = drift_extract()
    funda.loc[[1, 7], "xrd"] = np.nan
    path = write_table(funda, tmp_path / "funda.csv")
    with pytest.raises(InputError) as caught:
        prepare(path, company, sic=[7372], missing_xrd="error")
    assert caught.value.file == str(path) and caught.value.column == "xrd" and caught.value.rows == [3, 9]
    got, record = prepare(path, company, sic=[7372])
    xrd = got.set_index(["gvkey", "fyear"])["xrd"]
    assert xrd[("000001", 2001)] == 0.0 and xrd[("000002", 2002)] == 0.0 and (xrd > 0).sum() == len(xrd) - 2
    assert record.lines.loc[record.lines["rule"] == "xrd_zero", "fyears"].tolist() == ["2001", "2002"]


@pytest.mark.parametrize(
    ("table", "drop", "column"),
    [
        ("funda", "fyear", "fyear"),
        ("company", "addzip", "addzip"),
        ("company", "loc", "loc, fic"),
        ("company", "sic", "sic"),
    ],
)
def test_raw_tables_without_a_needed_column_name_the_file_and_column(tmp_path, table, drop, column):
    funda, company = drift_extract()
    frames = {"funda": funda, "company": company}
    frames[table] = frames[table].drop(columns=drop)
    paths = {k: write_table(v, tmp_path / f"{k}.csv") for k, v in frames.items()}
    with pytest.raises(InputError) as caught:
        prepare(paths["funda"], paths["company"], sic=[7372])
    assert caught.value.file == str(paths[table]) and caught.value.column == column


def test_a_gvkey_absent_from_company_is_an_error_naming_the_funda_lines(tmp_path):
    funda, company = drift_extract()
    path = write_table(funda, tmp_path / "funda.parquet")
    with pytest.raises(InputError) as caught:
        prepare(path, company[company["gvkey"] != "000002"], sic=[7372])
    assert caught.value.column == "gvkey" and caught.value.rows == [7, 8, 9, 10, 11]
    assert "absent from COMPANY" in str(caught.value)


def test_an_unreadable_zip_of_a_us_firm_is_an_error_naming_the_company_line(tmp_path):
    funda, company = drift_extract()
    company.loc[2, "addzip"] = "98O52"
    path = write_table(company, tmp_path / "company.csv")
    with pytest.raises(InputError) as caught:
        prepare(funda, path, sic=[7372])
    assert caught.value.file == str(path) and caught.value.column == "addzip" and caught.value.rows == [4]


def test_gvkeys_read_as_numbers_match_their_company_rows():
    funda, company = drift_extract()
    funda["gvkey"] = funda["gvkey"].astype(int)
    got, _ = prepare(
        funda, company, sic=[7372], price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0})
    )
    assert sorted(got["gvkey"].unique()) == ["000001", "000002", "000003"]


def test_state_cross_check_currency_and_duplicate_fiscal_years_are_recorded():
    funda, company = drift_extract()
    company["state"] = ["CA", "NY", "WA"]  # 02139 is in MA
    company["city"] = ["SANTA CLARA", "Cambridge", "Bellevue"]  # 98052 is Redmond
    funda["curcd"] = "USD"
    funda.loc[0, "curcd"] = "CAD"
    funda["datadate"] = funda["fyear"].astype(str) + "-06-30"
    again = funda.iloc[[12]].assign(datadate="2002-12-31", sale=555.0)  # a change of fiscal year end
    funda = pd.concat([funda, again], ignore_index=True)
    got, record = prepare(
        funda, company, sic=[7372], price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0})
    )
    lines = record.lines.set_index(["gvkey", "rule"])
    assert lines.loc[("000002", "zip_state"), "action"] == EXCLUDED
    assert "in MA" in lines.loc[("000002", "zip_state"), "detail"]
    assert lines.loc[("000003", "city"), "action"] == NOTE
    assert lines.loc[("000001", "currency"), "fyears"] == "2000"
    assert lines.loc[("000003", "duplicate_fyear"), "action"] == DUPLICATE
    assert got.loc[(got["gvkey"] == "000003") & (got["fyear"] == 2002), "sale"].item() == 555.0
    assert got.groupby("gvkey").size().to_dict() == {"000001": 2, "000003": 5}  # 000001: 2003-2004 not software


def test_usage_errors():
    funda, company = drift_extract()
    with pytest.raises(BayesSpillError, match="industry"):
        prepare(funda, company)
    with pytest.raises(BayesSpillError, match="missing_xrd"):
        prepare(funda, company, sic=[7372], missing_xrd="drop")
    with pytest.raises(BayesSpillError, match="years"):
        parse_years("78-06")
    assert parse_years("1978-2006") == (1978, 2006) and parse_years("2002") == (2002, 2002)
    assert record_path("out/panel.csv.gz").name == "panel_record.csv"


def test_counties_outside_the_county_table_are_recorded():
    funda, company = drift_extract()
    counties = pd.DataFrame({"fips": ["06085", "53033"], "lat": [37.2, 47.5], "lon": [-121.7, -121.8]})
    got, record = prepare(
        funda,
        company,
        sic=[7372],
        counties=counties,
        price_index=pd.DataFrame({"fyear": range(2000, 2005), "price_index": 1.0}),
    )
    assert sorted(got["fips"].unique()) == ["06085", "53033"]
    excluded = record.excluded().iloc[0]
    assert (excluded["gvkey"], excluded["rule"]) == ("000002", "county_not_in_table") and "25017" in excluded["detail"]
