"""Proposition 1 (proposition1.py): dominance read off the implied CDFs agrees with the analytic
condition gamma (Sbar_high - Sbar_low) > 0 draw by draw; the CLI on a stand-in posterior."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from policy_fixtures import fake_fit, small_panel

from bayes_spill.cli.main import main
from bayes_spill.errors import BayesSpillError
from bayes_spill.policy import proposition1 as p1
from bayes_spill.policy.implied import implied_alpha_density, implied_cdf
from bayes_spill.policy.world import FittedWorld, load_world


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    # gamma draws on both sides of zero, so that dominance holds in some draws and not in others
    return fake_fit(small_panel(seed=3, n_firms=70), tmp_path_factory.mktemp("p1") / "fit", n_draws=60, gamma_sd=0.2)


@pytest.fixture(scope="module")
def world(fit_dir):
    return load_world(fit_dir)


def test_dominance_from_cdfs_equals_the_analytic_condition(world):
    pairs = p1.default_pairs(world, n=3)
    results = p1.sorting_dominance(world, pairs)
    for r in results:
        assert np.array_equal(r.dominates, r.analytic), r.row()
        row = r.row()
        assert row["draws_disagreeing"] == 0
        assert row["p_dominance"] == pytest.approx(row["p_gamma_dS"])
        assert np.median(r.sbar_high) >= np.median(r.sbar_low)
    # gamma straddles zero in these draws: both outcomes occur somewhere
    all_dom = np.concatenate([r.dominates for r in results])
    assert all_dom.any() and not all_dom.all()


def test_implied_mean_gap_has_the_sign_of_gamma_dS(world):
    for r in p1.sorting_dominance(world, p1.default_pairs(world, n=2)):
        sign = np.sign(r.gamma * (r.sbar_high - r.sbar_low))
        strong = np.abs(r.implied_gap) > 1e-12
        assert np.all(np.sign(r.implied_gap[strong]) == sign[strong])
        assert np.all(r.max_cdf_gap[r.dominates] > 0)


def test_without_sorting_there_is_no_dominance(world):
    draws = world.draws
    flat = replace(draws, gamma=np.zeros_like(draws.gamma))
    w0 = FittedWorld(world.panel, world.config, world.spill, flat)
    (r,) = p1.sorting_dominance(w0, p1.default_pairs(w0, n=1))
    assert not r.dominates.any() and not r.analytic.any()
    np.testing.assert_allclose(r.implied_gap, 0.0, atol=1e-10)


def test_dominance_at_a_known_positive_tilt():
    """Two counties, gamma > 0, Sbar_2 > Sbar_1: F(. | 2) <= F(. | 1) on the whole grid."""
    grid, dens = implied_alpha_density(np.array([0.0, 0.5, -0.2]), 0.8, np.array([0.1, 2.0, 0.5]), -0.05, 0.64, [0, 1])
    cdf = implied_cdf(grid, dens)
    assert np.all(cdf[1] <= cdf[0] + 1e-15) and (cdf[0] - cdf[1]).max() > 0.1


def test_pairs_parsing_and_errors(world):
    assert p1.parse_pairs("06085:06087, 06085:06081") == [("06085", "06087"), ("06085", "06081")]
    for bad in ("06085", "06085:06085", "6085:06087", ""):
        with pytest.raises(BayesSpillError):
            p1.parse_pairs(bad)
    outside = next(f for f in ("06087", "02013", "02016", "02020") if world.choice_position(f) is None)
    inside = str(world.choice_fips[0])
    with pytest.raises(BayesSpillError, match="not in the fit's choice set"):
        p1.sorting_dominance(world, [(inside, outside)])


def test_cli_sorting(fit_dir, world, tmp_path, capsys):
    import pandas as pd

    a, b = p1.default_pairs(world, n=1)[0]
    out = tmp_path / "sorting.csv"
    code = main(["sorting", str(fit_dir), "--pairs", f"{a}:{b}", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "P(dominance)" in text
    table = pd.read_csv(out, dtype={"high": str, "low": str})
    assert {table.loc[0, "high"], table.loc[0, "low"]} == {a, b}
    assert table.loc[0, "p_dominance"] == pytest.approx(table.loc[0, "p_gamma_dS"])
    assert main(["sorting", str(fit_dir), "--pairs", "06085"]) == 2


def test_fit_sorting_dominance_is_that_of_its_world(fit_dir):
    import bayes_spill

    fit = bayes_spill.load(fit_dir)
    world = load_world(fit_dir, max_draws=20)
    pairs = p1.default_pairs(world, n=1)
    (ours,) = fit.sorting_dominance(pairs, n_draws=20)
    (direct,) = p1.sorting_dominance(world, pairs)
    np.testing.assert_array_equal(ours.dominates, direct.dominates)
    np.testing.assert_array_equal(ours.implied_gap, direct.implied_gap)
