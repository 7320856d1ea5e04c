"""The prepared panel: R&D stocks by perpetual inventory, logs, the zero-R&D dummy, county pools."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_spill.data.geography import Counties
from bayes_spill.data.inputs import load_panel
from bayes_spill.data.panel import PanelSettings, build_panel, rd_stock_by_perpetual_inventory

COUNTIES = Counties(
    fips=np.array(["06085", "25017", "53033"]),
    name=np.array(["Santa Clara", "Middlesex", "King"]),
    state=np.array(["CA", "MA", "WA"]),
    lat=np.array([37.23, 42.49, 47.49]),
    lon=np.array([-121.70, -71.39, -121.83]),
    source="test counties",
)
XRD = [10.0, 20.0, 0.0, 5.0]


def one_firm_stock(xrd, years=None, **settings) -> np.ndarray:
    years = np.arange(2000, 2000 + len(xrd)) if years is None else np.asarray(years)
    return rd_stock_by_perpetual_inventory(
        np.zeros(len(xrd), dtype=int), years, np.asarray(xrd), PanelSettings(**settings)
    )


def frame(rows) -> pd.DataFrame:
    """rows: (gvkey, fyear, xrd, fips); sale, emp, ppent are filled in."""
    out = pd.DataFrame(rows, columns=["gvkey", "fyear", "xrd", "fips"])
    return out.assign(sale=100.0 + np.arange(len(out)), emp=2.0, ppent=30.0)


def two_county_panel():
    rows = [("A", 2000 + t, x, "06085") for t, x in enumerate(XRD)]
    rows += [("B", 2000 + t, 2.0, "06085") for t in range(4)]
    rows += [("C", 2001 + t, 1.0, "25017") for t in range(3)]
    return build_panel(frame(rows), COUNTIES, source="hand-made")


def test_perpetual_inventory_by_hand():
    # R0 = 10 / (0.05 + 0.15) = 50; then R_t = 0.85 R_t-1 + XR_t-1
    np.testing.assert_allclose(one_firm_stock(XRD), [50.0, 52.5, 64.625, 54.93125])


def test_depreciation_and_growth_are_settings():
    # delta = 0.2, g = 0: R0 = 10 / 0.2 = 50, 0.8*50 + 10 = 50, 0.8*50 + 20 = 60, 0.8*60 + 0 = 48
    np.testing.assert_allclose(one_firm_stock(XRD, depreciation=0.2, presample_growth=0.0), [50.0, 50.0, 60.0, 48.0])
    # g = 0.1 changes only the start: R0 = 10 / 0.25 = 40, 0.85*40 + 10 = 44, 0.85*44 + 20 = 57.4, 0.85*57.4 = 48.79
    np.testing.assert_allclose(one_firm_stock(XRD, presample_growth=0.1), [40.0, 44.0, 57.4, 48.79])


def test_each_firm_starts_its_own_stock():
    stock = rd_stock_by_perpetual_inventory(
        np.array([0, 0, 1, 1]), np.array([2000, 2001, 2000, 2001]), np.array([10.0, 20.0, 4.0, 8.0]), PanelSettings()
    )
    np.testing.assert_allclose(stock, [50.0, 52.5, 20.0, 21.0])


def test_stock_restarts_after_a_gap():
    # years 2000, 2001, 2004, 2005: the start rule again in 2004 (R&D of 2002-2003 is unknown)
    stock = one_firm_stock([10.0, 20.0, 4.0, 5.0], years=[2000, 2001, 2004, 2005], on_gap="restart")
    np.testing.assert_allclose(stock, [50.0, 52.5, 4.0 / 0.2, 0.85 * 20.0 + 4.0])


def _stock_row_by_row(obs_firm, fyear, xrd, settings):
    """The perpetual inventory as a loop over rows (the implementation before the vectorised one)."""
    delta, g = settings.depreciation, settings.presample_growth
    stock = np.empty(len(xrd))
    for pos in range(len(xrd)):
        starts_firm = pos == 0 or obs_firm[pos] != obs_firm[pos - 1]
        after_gap = not starts_firm and fyear[pos] != fyear[pos - 1] + 1
        if starts_firm or after_gap:
            stock[pos] = xrd[pos] / (g + delta)
        else:
            stock[pos] = (1.0 - delta) * stock[pos - 1] + xrd[pos - 1]
    return stock


def test_vectorised_stock_equals_the_row_loop_bit_for_bit():
    rng = np.random.default_rng(5)
    spans = rng.integers(1, 30, size=300)
    obs_firm = np.repeat(np.arange(300), spans)
    start = rng.integers(1978, 2000, size=300)
    fyear = start[obs_firm] + np.concatenate([np.arange(n) for n in spans])
    fyear = fyear + np.cumsum(rng.random(len(fyear)) < 0.05)  # gaps inside firms
    xrd = np.where(rng.random(len(fyear)) < 0.1, 0.0, np.exp(rng.normal(1.0, 2.0, len(fyear))))
    for settings in (PanelSettings(), PanelSettings(depreciation=0.2, presample_growth=0.03)):
        np.testing.assert_array_equal(
            rd_stock_by_perpetual_inventory(obs_firm, fyear, xrd, settings),
            _stock_row_by_row(obs_firm, fyear, xrd, settings),
        )
    assert rd_stock_by_perpetual_inventory(obs_firm[:0], fyear[:0], xrd[:0], PanelSettings()).shape == (0,)


def test_zero_rd_gets_the_dummy_and_r_zero_never_log_zero():
    rows = [("A", 2000 + t, x, "06085") for t, x in enumerate([0.0, 0.0, 6.0])]
    rows += [("B", 2000 + t, 3.0, "25017") for t in range(3)]
    with np.errstate(all="raise"):
        panel = build_panel(frame(rows), COUNTIES, source="hand-made")
        r, zero = panel.r, panel.zero_rd
    np.testing.assert_allclose(panel.rd_stock, [0.0, 0.0, 0.0, 15.0, 15.75, 16.3875])
    np.testing.assert_array_equal(zero, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(r, [0.0, 0.0, 0.0, np.log(15.0), np.log(15.75), np.log(16.3875)])
    assert np.isfinite(r).all()


def test_logs_of_sale_capital_and_employment():
    panel = two_county_panel()
    np.testing.assert_allclose(panel.q, np.log(panel.sale))
    np.testing.assert_allclose(panel.k, np.log(30.0))
    np.testing.assert_allclose(panel.n, np.log(2.0))


def test_rd_pool_sums_stocks_by_county_and_year_in_billions():
    panel = two_county_panel()
    sources, pool = panel.rd_pool()
    assert COUNTIES.fips[sources].tolist() == ["06085", "25017"]
    a = np.array([50.0, 52.5, 64.625, 54.93125])
    b = np.array([10.0, 10.5, 10.925, 11.28625])  # 2 / 0.2, then 0.85 R + 2
    c = np.array([5.0, 5.25, 5.4625])  # 1 / 0.2, then 0.85 R + 1, from 2001
    np.testing.assert_allclose(pool[0], (a + b) / 1000.0)
    np.testing.assert_allclose(pool[1], np.r_[0.0, c] / 1000.0)


def test_sizes_and_indices():
    panel = two_county_panel()
    assert panel.firms.tolist() == ["A", "B", "C"]
    assert panel.years.tolist() == [2000, 2001, 2002, 2003]
    assert panel.years_per_firm.tolist() == [4, 4, 3]
    assert panel.firm_fips.tolist() == ["06085", "06085", "25017"]
    assert panel.occupied.tolist() == [0, 1]


def test_arrays_are_read_only():
    panel = two_county_panel()
    for name in ("firms", "firm_county", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock"):
        with pytest.raises(ValueError):
            getattr(panel, name)[0] = getattr(panel, name)[1]
    with pytest.raises(AttributeError):
        panel.sale = np.zeros(3)  # type: ignore[misc]


def test_panel_settings_reject_nonsense():
    for bad in (
        {"depreciation": 0.0},
        {"min_years": 1},
        {"on_gap": "ignore"},
        {"depreciation": 0.1, "presample_growth": -0.2},
    ):
        with pytest.raises(ValueError):
            PanelSettings(**bad)


def test_to_frame_round_trips_through_a_csv_file(tmp_path, capsys):
    rows = [("001004", 2000 + t, x, "06085") for t, x in enumerate(XRD)]
    rows += [("012141", 2000 + t, 2.0 / 3.0, "25017") for t in range(3)]
    panel = build_panel(frame(rows).assign(sale=lambda f: f["sale"] / 7.0), COUNTIES, source="hand-made")
    path = tmp_path / "round.csv"
    panel.to_frame().to_csv(path, index=False)
    again = load_panel(path, counties=COUNTIES)
    for name in ("firms", "firm_county", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock"):
        np.testing.assert_array_equal(getattr(again, name), getattr(panel, name), err_msg=name)
    assert again.firms.tolist() == ["001004", "012141"]
