"""The structural simulator and the embedded default dataset."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bayes_spill.data.datasets import load_dataset
from bayes_spill.data.geography import load_counties
from bayes_spill.data.inputs import load_panel
from bayes_spill.model.simulate import TRUTH_PARAMETERS, SimulationSettings, simulate_industry, write_simulation
from bayes_spill.spillover import kernel

SMALL = SimulationSettings(n_firms=60)
ARRAYS = ("firms", "firm_county", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock")


@pytest.fixture(scope="module")
def small():
    return simulate_industry(SMALL, seed=11)


@pytest.fixture(scope="module")
def default():
    return load_dataset()


def truth_text(panel) -> str:
    return json.dumps(dict(panel.truth), sort_keys=True, default=str)


# -- reproducibility ---------------------------------------------------------------------------
def test_same_seed_same_panel_and_truth(small):
    again = simulate_industry(SMALL, seed=11)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(small, name), getattr(again, name), err_msg=name)
    assert truth_text(small) == truth_text(again)


def test_different_seed_differs(small):
    other = simulate_industry(SMALL, seed=12)
    assert truth_text(small) != truth_text(other)
    assert small.n_obs != other.n_obs or not np.array_equal(small.sale, other.sale)
    assert small.truth["alpha"] != other.truth["alpha"]


# -- what a simulated panel looks like --------------------------------------------------------
def test_small_simulation_is_a_valid_panel(small):
    s = SMALL
    assert small.n_firms == s.n_firms
    fyear = small.years[small.obs_year]
    assert fyear.min() >= s.first_year and fyear.max() <= s.last_year
    assert np.all(small.years_per_firm >= 3), f"years per firm: {np.bincount(small.years_per_firm)}"
    # rows sorted by firm then year, consecutive years inside each firm
    assert np.all(np.diff(small.obs_firm) >= 0)
    same_firm = small.obs_firm[1:] == small.obs_firm[:-1]
    assert np.all(np.diff(fyear)[same_firm] == 1)
    for name in ("sale", "emp", "ppent"):
        values = getattr(small, name)
        assert np.all(np.isfinite(values) & (values > 0)), name
    assert np.all(small.xrd >= 0) and np.all(small.rd_stock >= 0)
    assert small.zero_rd.sum() < small.n_obs / 2
    # one county per firm, in every year
    frame = small.to_frame()
    assert frame.groupby("gvkey")["fips"].nunique().eq(1).all()
    assert len(small.firm_county) == small.n_firms


def test_small_simulation_truth(small):
    truth = small.truth
    for name in TRUTH_PARAMETERS:
        assert name in truth["parameters"], name
        assert truth["parameters"][name] == pytest.approx(float(getattr(SMALL, name)))
    assert truth["parameters"]["sigma_alpha2"] == pytest.approx(SMALL.sigma_alpha2)
    assert set(truth["alpha"]) == set(small.firms.tolist())
    assert all(np.isfinite(a) for a in truth["alpha"].values())
    counties = load_counties()
    assert set(truth["county_effect"]) == set(counties.fips.tolist())
    assert "location_movers_at_stop" in truth
    movers = truth["location_movers_at_stop"]
    assert isinstance(movers, int) and 0 <= movers <= SMALL.n_firms
    assert truth["location_converged"] == (movers == 0)
    assert 1 <= truth["location_iterations"] <= SMALL.max_location_iterations
    assert truth["seed"] == 11


def test_write_and_load_round_trip(small, tmp_path, capsys):
    csv_path, truth_path = write_simulation(small, tmp_path / "sim")
    assert csv_path.exists() and truth_path.exists()
    loaded = load_panel(csv_path)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(small, name), err_msg=name)
    truth = json.loads(truth_path.read_text())
    assert truth["alpha"] == dict(small.truth["alpha"])
    assert truth["parameters"] == dict(small.truth["parameters"])
    assert truth["location_movers_at_stop"] == small.truth["location_movers_at_stop"]


# -- sorting: the location choice responds to gamma --------------------------------------------
def sorting_stats(gamma: float, seed: int = 0) -> dict:
    s = SimulationSettings(n_firms=150, gamma=gamma, sigma_alpha2=4.0, max_location_iterations=25)
    panel = simulate_industry(s, seed=seed)
    inputs = kernel.spillover_inputs(panel)
    sbar = kernel.choice_spillover(inputs, s.halflife_km)[inputs.firm_choice]
    alpha = np.array([panel.truth["alpha"][g] for g in panel.firms])
    high = alpha > np.median(alpha)
    ranks_a, ranks_s = np.argsort(np.argsort(alpha)), np.argsort(np.argsort(sbar))
    return {
        "gamma": gamma,
        "sbar_high_alpha": float(sbar[high].mean()),
        "sbar_low_alpha": float(sbar[~high].mean()),
        "spearman": float(np.corrcoef(ranks_a, ranks_s)[0, 1]),
        "movers_at_stop": panel.truth["location_movers_at_stop"],
    }


def test_location_choice_responds_to_gamma():
    sorted_ = sorting_stats(5.0)
    control = sorting_stats(0.0)
    numbers = f"gamma=5: {sorted_}; gamma=0: {control}"
    assert sorted_["sbar_high_alpha"] > 3.0 * sorted_["sbar_low_alpha"], numbers
    assert sorted_["spearman"] > 0.5, numbers
    assert abs(control["spearman"]) < 0.3, numbers
    assert sorted_["spearman"] > control["spearman"] + 0.4, numbers


# -- the embedded default --------------------------------------------------------------------
def test_embedded_default_dataset(default):
    s = default.summary()
    years_per_firm = default.years_per_firm
    assert s["firms"] == 688, s
    assert 4600 <= s["firm_years"] <= 5300, s
    assert (int(default.years.min()), int(default.years.max())) == (1978, 2006), s
    assert years_per_firm.min() >= 3, f"fewest years {years_per_firm.min()}"
    firms_per_county = np.bincount(default.firm_county, minlength=len(default.counties))
    top3 = default.counties.fips[np.argsort(-firms_per_county, kind="stable")[:3]].tolist()
    assert "06085" in top3, f"top 3 counties by firms: {top3} with {np.sort(firms_per_county)[::-1][:3]}"
    assert 150 <= s["counties_occupied"] <= 500, s
    assert s["dropped"] == {}, s


def test_embedded_default_truth_is_the_papers(default):
    p = default.truth["parameters"]
    paper = {
        "beta_k": 0.11,
        "beta_l": 0.66,
        "beta_r": 0.09,
        "halflife_km": 59.0,
        "gamma": 0.053,
        "mu_alpha": -0.05,
        "sigma_alpha2": 0.41,
    }
    for name, value in paper.items():
        assert p[name] == pytest.approx(value, rel=1e-12), f"{name}: {p[name]} vs the paper's {value}"
    assert p["sigma_alpha"] == pytest.approx(np.sqrt(0.41), rel=1e-12)
    assert set(default.truth["alpha"]) == set(default.firms.tolist())
    assert default.source == "embedded:software"


# -- invalid settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {"n_firms": 1},
        {"n_firms": 0},
        {"first_year": 2000, "last_year": 2001},  # 2 years < min_years = 3
        {"last_year": 1970},
        {"mean_years": 2.0},
        {"mean_years": 40.0},
        {"halflife_km": 0.0},
        {"halflife_km": -59.0},
        {"sigma_w": 0.0},
        {"sigma_alpha2": -0.1},
    ],
)
def test_invalid_settings_raise(changes):
    with pytest.raises(ValueError):
        replace(SimulationSettings(), **changes)


def test_simulator_defaults_are_the_papers_published_values():
    from bayes_spill import paper

    s = SimulationSettings()
    for name, value in paper.PAPER_VALUES.items():
        assert getattr(s, name) == value, name
    assert (s.n_firms, s.first_year, s.last_year) == (paper.FIRMS, paper.FIRST_YEAR, paper.LAST_YEAR)
    assert set(paper.PAPER_TABLES) == set(paper.PAPER_VALUES)
    assert kernel.decay_rate(paper.HALFLIFE_KM) * paper.HALFLIFE_KM == pytest.approx(np.log(2.0), rel=1e-15)
