"""Location equilibria (equilibrium.py): the two-city model of Section 2.6 (one equilibrium at
high transport costs, three at low ones, Figure 1), and the L-county re-solve after a shock."""

from __future__ import annotations

import numpy as np
import pytest
from policy_fixtures import fake_fit, small_panel

from bayes_spill.cli.main import main
from bayes_spill.errors import BayesSpillError
from bayes_spill.policy import equilibrium as eq
from bayes_spill.policy import two_city
from bayes_spill.policy.world import load_world

P = two_city.TwoCity()  # sigma 5, b 1, 59 km half-life, 100 km apart


def shares(eqs):
    return [e.share for e in eqs]


def test_one_equilibrium_at_high_tau_three_at_low_tau():
    high = two_city.two_city_equilibria(3.0, P)
    assert len(high) == 1 and high[0].share == pytest.approx(0.5) and high[0].stable
    low = two_city.two_city_equilibria(1.05, P)
    assert len(low) == 3
    assert [e.stable for e in low] == [True, False, True]
    assert low[1].share == pytest.approx(0.5)
    assert low[0].share + low[2].share == pytest.approx(1.0, abs=1e-9)  # symmetric cities
    assert low[0].share < 0.1


def test_roots_are_fixed_points_and_stability_is_the_slope():
    for tau in (1.0, 1.3, 1.5, 1.6, 2.0):
        for e in two_city.two_city_equilibria(tau, P):
            assert float(two_city.best_response(e.share, tau, P)) == pytest.approx(e.share, abs=1e-10)
            assert e.stable == (e.slope < 1.0)


def test_slope_at_the_symmetric_point_without_trade_costs():
    """tau = 1: market access is equal, BR = S1^gamma / (S1^gamma + S2^gamma), slope at 1/2 is
    gamma (1 - e) / (1 + e) with e = exp(-lambda d)."""
    (mid,) = [e for e in two_city.two_city_equilibria(1.0, P) if abs(e.share - 0.5) < 1e-9]
    e = P.decay
    assert mid.slope == pytest.approx(P.gamma * (1 - e) / (1 + e), rel=1e-5)


def test_no_multiplicity_without_spillover_attraction():
    weak = two_city.TwoCity(b=20.0)  # gamma = 0.2: too weak to agglomerate
    for tau in (1.0, 1.5, 3.0):
        assert len(two_city.two_city_equilibria(tau, weak)) == 1


def test_branches_and_table():
    table = two_city.two_city_table(np.linspace(1.0, 2.5, 31), P)
    counts = table.groupby("tau")["n_equilibria"].first()
    assert counts.iloc[0] == 3 and counts.iloc[-1] == 1
    assert set(counts.unique()) <= {1, 3, 5}
    branches = two_city.equilibrium_branches(table)
    assert sum(len(b) for b in branches) == len(table)
    assert "equilibria" in two_city.format_two_city(table)


def test_bad_two_city_parameters():
    with pytest.raises(BayesSpillError):
        two_city.TwoCity(sigma=1.0)
    with pytest.raises(BayesSpillError):
        two_city.best_response(0.5, 0.5, P)


def test_cli_two_city_writes_figure_and_table(tmp_path, capsys):
    import pandas as pd

    out = tmp_path / "two"
    code = main(["equilibrium", "two-city", "--tau-grid", "1:2.5:16", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    png = out / "figure1.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "equilibria.csv")
    assert {"tau", "share_city1", "br_slope", "stable", "n_equilibria"} <= set(table.columns)
    assert "3 equilibria" in text and "1 equilibrium" in text


# ---------------------------------------------------------------------------------------------
# L counties
# ---------------------------------------------------------------------------------------------
def toy_problem(gamma: float, shock: float = 0.0) -> eq.CountyProblem:
    """Three counties, two close together: strong attraction makes several equilibria."""
    distance = np.array([[0.0, 20.0, 800.0], [20.0, 0.0, 800.0], [800.0, 800.0, 0.0]])
    weights = np.exp(-np.log(2) / 50.0 * distance)
    exogenous = np.array([0.0, 0.0, shock])
    return eq.CountyProblem(np.zeros(3), gamma, 1.0, 0.2, weights, 5.0, exogenous)


def test_fixed_point_solves_the_equation():
    prob = toy_problem(0.5)
    fp = eq.solve_fixed_point(prob, np.ones(3))
    assert fp.converged
    np.testing.assert_allclose(prob.shares(fp.shares), fp.shares, atol=1e-10)
    assert fp.shares.sum() == pytest.approx(1.0)


def test_several_equilibria_are_found_from_different_starts():
    prob = toy_problem(3.0)
    a = eq.solve_fixed_point(prob, np.array([0.45, 0.45, 0.10]))
    b = eq.solve_fixed_point(prob, eq.concentrated_start(np.ones(3) / 3, 2))
    assert a.converged and b.converged
    assert a.shares[2] < 0.2 and b.shares[2] > 0.8


def test_a_shock_attracts_firms_when_alpha_and_gamma_are_positive():
    base = eq.solve_fixed_point(toy_problem(0.5), np.ones(3))
    shocked_prob = toy_problem(0.5, shock=2.0)
    shocked = eq.solve_fixed_point(shocked_prob, np.ones(3))
    assert shocked.shares[2] > base.shares[2]
    # the shocked county's mean alpha rises: high-alpha firms sort into it (Proposition 1)
    assert shocked_prob.mean_alpha(shocked.shares)[2] > toy_problem(0.5).mean_alpha(base.shares)[2]


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    return fake_fit(small_panel(seed=4, n_firms=60), tmp_path_factory.mktemp("eq") / "fit", n_draws=8)


def test_county_shock_zero_is_no_change_and_positive_moves_the_field(fit_dir):
    world = load_world(fit_dir)
    fips = str(world.choice_fips[int(np.argmax(np.bincount(world.spill.firm_choice)))])
    zero = eq.county_shock(world, fips, 0.0)
    np.testing.assert_array_equal(zero.shocked, zero.base)
    assert zero.converged.all()
    big = eq.county_shock(world, fips, 5000.0)
    p = big.shock_position
    assert np.all(big.sbar_shocked[:, p] > big.sbar_base[:, p] + 4.0)
    np.testing.assert_allclose(big.shocked.sum(axis=1), 1.0)
    table = big.county_table()
    assert len(table) == len(world.choice_fips) and table.loc[0, "fips"] in set(world.choice_fips)
    text = eq.format_county_shock(big)
    assert "several equilibria" in text and "change in mean alpha" in text


def test_fit_county_shock_is_that_of_its_world(fit_dir):
    import bayes_spill

    fit = bayes_spill.load(fit_dir)
    fips = str(fit.panel.counties.fips[fit.model_data.spill.choice_set[0]])
    ours = fit.county_shock(fips, 500.0, n_draws=3)
    direct = eq.county_shock(load_world(fit_dir, max_draws=3), fips, 500.0)
    assert ours.n_draws == 3
    np.testing.assert_array_equal(ours.shocked, direct.shocked)


def test_cli_counties(fit_dir, tmp_path, capsys):
    import pandas as pd

    world = load_world(fit_dir)
    fips = str(world.choice_fips[0])
    out = tmp_path / "eq.csv"
    code = main(
        [
            "equilibrium",
            "counties",
            str(fit_dir),
            "--shock-county",
            fips,
            "--shock-rd-stock",
            "1000",
            "--draws",
            "4",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "over 4 draws" in text
    assert "shocked_share_median" in pd.read_csv(out).columns
    assert main(["equilibrium", "counties", str(fit_dir), "--shock-county", "99999", "--shock-rd-stock", "1"]) == 2
