"""The built-in county table, great-circle distances, and reading/validating a user's county table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from bayes_spill.data.geography import distance_matrix_km, great_circle_km, load_counties
from bayes_spill.errors import InputError


@pytest.fixture(scope="module")
def counties():
    return load_counties()


def distance(counties, a: str, b: str) -> float:
    i, j = counties.index_of([a, b])
    return float(distance_matrix_km(counties, [i], [j])[0, 0])


# -- the built-in table ----------------------------------------------------------------------


def test_builtin_table_covers_50_states_and_dc(counties):
    assert 3000 < len(counties) < 3200
    assert set(counties.state) >= {"CA", "NY", "AK", "HI", "DC"}
    assert len(set(counties.state)) == 51
    assert all(re.fullmatch(r"\d{5}", f) for f in counties.fips)
    assert len(set(counties.fips)) == len(counties)
    assert list(counties.fips) == sorted(counties.fips)
    assert np.all(counties.covariates["labor_force"] > 0)
    assert counties.source == "built-in"


def test_builtin_table_is_cached_and_immutable(counties):
    assert load_counties() is counties
    with pytest.raises(ValueError):
        counties.lat[0] = 0.0


def test_santa_clara_centroid(counties):
    i = counties.index_of(["06085"])[0]
    assert counties.label(i) == "Santa Clara, CA (06085)"
    assert 37.1 < counties.lat[i] < 37.4
    assert -121.9 < counties.lon[i] < -121.6
    assert counties.covariates["labor_force"][i] > 800_000


def test_distances_between_known_counties(counties):
    sc_sf = distance(counties, "06085", "06075")
    sc_scz = distance(counties, "06085", "06087")
    ny_la = distance(counties, "36061", "06037")
    print(f"Santa Clara-San Francisco {sc_sf:.1f} km, Santa Clara-Santa Cruz {sc_scz:.1f} km, NY-LA {ny_la:.1f} km")
    # The paper's 68 km is between population-weighted reference points; geometric centroids are
    # farther apart (Santa Clara's lies in the empty Diablo Range, south-east of San Jose).
    assert 80 < sc_sf < 100
    assert 25 < sc_scz < 45
    assert 3900 < ny_la < 4000


def test_great_circle_known_value():
    # one degree of latitude along a meridian
    assert great_circle_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(111.195, abs=0.01)
    assert great_circle_km(10.0, 179.5, 10.0, -179.5) == pytest.approx(great_circle_km(10.0, 0.0, 10.0, 1.0))


def test_distance_matrix_shape_symmetry_and_diagonal(counties):
    idx = counties.index_of(["06085", "06075", "06087", "36061", "06037", "02016", "15003"])
    d = distance_matrix_km(counties, idx, idx)
    assert d.shape == (7, 7)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert np.all(d[~np.eye(7, dtype=bool)] > 0)
    assert distance_matrix_km(counties, idx[:2], idx).shape == (2, 7)


def test_index_of_names_unknown_codes(counties):
    with pytest.raises(KeyError, match="99999") as info:
        counties.index_of(["06085", "99999", "00000"])
    assert "00000" in str(info.value)


# -- a user's county table -------------------------------------------------------------------

GOOD = (
    "fips,name,state,lat,lon,pop,region\n"
    "06085,Santa Clara,CA,37.23,-121.70,1.8e6,west\n"
    "06075,San Francisco,CA,37.76,-122.44,8.1e5,west\n"
)


def write(tmp_path, text: str, name: str = "my_counties.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_csv_round_trips(tmp_path):
    path = write(tmp_path, GOOD)
    c = load_counties(path)
    assert list(c.fips) == ["06085", "06075"]
    assert list(c.name) == ["Santa Clara", "San Francisco"]
    assert list(c.covariates) == ["pop"]  # the text column 'region' is not a covariate
    np.testing.assert_allclose(c.covariates["pop"], [1.8e6, 8.1e5])
    np.testing.assert_allclose(c.lat, [37.23, 37.76])
    assert c.source == str(path)
    assert distance_matrix_km(c, [0], [1])[0, 0] == pytest.approx(great_circle_km(37.23, -121.70, 37.76, -122.44))


def test_user_table_without_name_and_state(tmp_path):
    c = load_counties(write(tmp_path, "fips,lat,lon,\n01001,32.5,-86.6,\n"))  # the empty last column is ignored
    assert list(c.name) == [""] and list(c.state) == [""]
    assert dict(c.covariates) == {}


def test_user_parquet(tmp_path):
    path = tmp_path / "counties.parquet"
    pd.DataFrame({"fips": ["06085"], "lat": [37.2], "lon": [-121.7], "x": [3]}).to_parquet(path)
    c = load_counties(path)
    assert list(c.fips) == ["06085"] and list(c.covariates["x"]) == [3.0]


def test_unsupported_extension(tmp_path):
    path = write(tmp_path, GOOD, "my_counties.xlsx")
    with pytest.raises(InputError, match="my_counties.xlsx"):
        load_counties(path)


BAD_TABLES = [
    # (table text, column named, line numbers named, words in the message)
    ("fips,latitude,lon\n06085,37.2,-121.7\n", "lat", [], "latitude"),
    ("fips,lat,lon\n06085,37.2,-121.7\n6075,37.7,-122.4\n", "fips", [3], "leading zero"),
    ("fips,lat,lon\n06085,37.2,-121.7\n06X75,37.7,-122.4\n,37.0,-122.0\n", "fips", [3, 4], "5 digits"),
    ("fips,lat,lon\n06085,37.2,-121.7\n06075,37.7,-122.4\n06085,37.2,-121.7\n", "fips", [2, 4], "duplicated"),
    ("fips,lat,lon\n06085,,-121.7\n06075,north,-122.4\n06087,inf,-122.0\n", "lat", [2, 3, 4], "non-numeric"),
    ("fips,lat,lon\n06085,37.2,-121.7\n06075,37.7,-222.4\n", "lon", [3], "outside"),
    ("fips,lat,lon\n06085,97.2,-121.7\n06075,37.7,-122.4\n", "lat", [2], "outside"),
    ("fips,lat,lon,pop\n06085,37.2,-121.7,1e6\n06075,37.7,-122.4,n/a\n06087,37,-122,2e5\n", "pop", [3], "covariate"),
    ("fips,lat,lon,pop\n06085,37.2,-121.7,1e6\n06075,37.7,-122.4,inf\n", "pop", [3], "non-finite"),
]


@pytest.mark.parametrize(("text", "column", "lines", "words"), BAD_TABLES)
def test_bad_table_is_reported(tmp_path, text, column, lines, words):
    with pytest.raises(InputError) as info:
        load_counties(write(tmp_path, text))
    message = str(info.value)
    assert "my_counties.csv" in message
    assert f"'{column}" in message
    assert words in message
    assert info.value.rows == lines
    for line in lines:
        assert str(line) in message


def test_empty_table(tmp_path):
    with pytest.raises(InputError, match="my_counties.csv"):
        load_counties(write(tmp_path, "fips,lat,lon\n"))
