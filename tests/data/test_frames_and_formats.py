"""Panels and county tables from every format (CSV, CSV.gz, Parquet, Stata .dta) and from pandas
DataFrames, and the data hash of a DataFrame (the fits are in test_fit_inputs.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_fits import tiny_config, tiny_csv

from bayes_spill.data import geography
from bayes_spill.data.files import read_table, write_table
from bayes_spill.data.inputs import load_panel, resolve_counties
from bayes_spill.errors import InputError
from bayes_spill.inference.fitting import resolve_data


def small_frame() -> pd.DataFrame:
    frame = pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})
    return frame[frame["gvkey"].isin(sorted(frame["gvkey"].unique())[:12])].reset_index(drop=True)


def same_panel(a, b) -> None:
    for name in ("firms", "firm_county", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("suffix", [".csv.gz", ".parquet", ".dta"])
def test_every_panel_format_and_a_dataframe_load_the_same_panel(tmp_path, suffix):
    frame = small_frame()
    reference = load_panel(write_table(frame, tmp_path / "panel.csv"))
    same_panel(load_panel(write_table(frame, tmp_path / f"panel{suffix}")), reference)
    from_frame = load_panel(frame)
    same_panel(from_frame, reference)
    assert from_frame.source == "DataFrame"


def test_errors_in_a_dataframe_name_it_and_count_rows_as_lines():
    frame = small_frame()
    frame.loc[3, "sale"] = -1.0
    with pytest.raises(InputError) as caught:
        load_panel(frame)
    assert caught.value.file == "DataFrame" and caught.value.column == "sale" and caught.value.rows == [5]


def test_stata_empty_strings_are_missing_and_codes_keep_their_zeros(tmp_path):
    frame = small_frame()
    frame.loc[2, "fips"] = ""
    table = read_table(write_table(frame, tmp_path / "panel.dta"))
    assert pd.isna(table.loc[4, "fips"]) and table["gvkey"].tolist() == frame["gvkey"].tolist()
    assert table.index[0] == 2  # row 1 is line 2, as for Parquet


def test_county_tables_from_stata_and_dataframes(tmp_path):
    builtin = geography.load_counties()
    frame = pd.DataFrame(
        {"fips": builtin.fips, "lat": builtin.lat, "lon": builtin.lon, "labor_force": builtin.covariates["labor_force"]}
    )
    for counties in (resolve_counties(frame), resolve_counties(write_table(frame, tmp_path / "counties.dta"))):
        assert counties.fips.tolist() == builtin.fips.tolist()
        np.testing.assert_array_equal(counties.covariates["labor_force"], builtin.covariates["labor_force"])
    assert resolve_counties(frame).source == "DataFrame"
    panel = load_panel(small_frame(), counties=frame)
    assert panel.counties.source == "DataFrame"


def test_a_dataframe_hashes_like_the_panel_built_from_it():
    frame = small_frame()
    config = tiny_config()
    panel, digest = resolve_data(frame, config)
    assert resolve_data(panel, config)[1] == digest
    assert resolve_data(frame.sample(frac=1.0, random_state=1), config)[1] == digest  # row order is not data
    changed = frame.copy()
    changed.loc[0, "sale"] *= 1.5
    assert resolve_data(changed, config)[1] != digest
