"""inference/summary.py: the parameter table and E-BFMI come from arviz_stats (``summary``,
``bfmi``; the table's R-hat and ESS vectorised over rows and checked equal to arviz_stats' here),
with the report's columns and verdicts kept. Synthetic posteriors, no fit."""

from __future__ import annotations

import warnings

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr
from arviz_base import rcParams
from arviz_stats.base import array_stats

from bayes_spill.inference.summary import (
    COLUMNS,
    EBFMI_LOW,
    advice,
    chain_diagnostics,
    fit_report,
    sample_diagnostics,
    summary_table,
)


def _tree(energy: np.ndarray | None = None, seed: int = 0) -> xr.DataTree:
    rng = np.random.default_rng(seed)
    chains, draws = 2, 200
    posterior = xr.Dataset(
        {
            "gamma": (("chain", "draw"), rng.normal(0.05, 0.2, (chains, draws))),
            "halflife_km": (("chain", "draw"), rng.lognormal(4.0, 0.5, (chains, draws))),
            "alpha": (("chain", "draw", "firm"), rng.normal(size=(chains, draws, 3))),
            "year_effect": (("chain", "draw", "year"), np.zeros((chains, draws, 2))),  # the base year: constant
            "alpha_raw": (("chain", "draw", "firm"), rng.normal(size=(chains, draws, 3))),
            "both": (("chain", "draw", "firm", "year"), rng.normal(size=(chains, draws, 3, 2))),
        },
        coords={"chain": [0, 1], "draw": np.arange(draws), "firm": ["a", "b", "c"], "year": [1995, 1996]},
    )
    if energy is None:
        energy = rng.normal(size=(chains, draws)).cumsum(axis=1) * 0.05 + rng.normal(size=(chains, draws))
    stats = xr.Dataset(
        {
            "energy": (("chain", "draw"), energy),
            "diverging": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
            "reached_max_treedepth": (("chain", "draw"), np.zeros((chains, draws), dtype=bool)),
        },
        coords={"chain": [0, 1], "draw": np.arange(draws)},
    )
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    tree.attrs.update(model_name="synthetic", data_source="none", sampler="test", sampling_wall_seconds=1.0)
    return tree


def test_summary_table_is_arviz_stats_summary():
    tree = _tree()
    table = summary_table(tree, truth={"gamma": 0.05})
    assert list(table.index) == ["gamma", "halflife_km"]  # the key scalars present
    assert list(table.columns) == ["median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail", "truth"]
    post = tree["posterior"].to_dataset()
    ours = azs.summary(post, var_names=["gamma", "halflife_km"], kind="all_median", ci_prob=0.9, round_to="none")
    diagnostics = azs.summary(post, var_names=["gamma", "halflife_km"], kind="diagnostics", round_to="none")
    np.testing.assert_allclose(table["median"], ours["median"])
    np.testing.assert_allclose(table["q5"], ours["eti90_lb"])
    np.testing.assert_allclose(table["q95"], ours["eti90_ub"])
    np.testing.assert_allclose(table[["r_hat", "ess_bulk", "ess_tail"]], diagnostics[["r_hat", "ess_bulk", "ess_tail"]])
    # ArviZ's equal-tailed interval is numpy's quantiles of the pooled draws
    values = post["gamma"].values.ravel()
    np.testing.assert_allclose(table.loc["gamma", ["q5", "median", "q95"]], np.quantile(values, [0.05, 0.5, 0.95]))
    assert table.loc["gamma", "truth"] == 0.05 and np.isnan(table.loc["halflife_km", "truth"])


def test_all_parameters_flattens_vectors_and_keeps_constants():
    table = summary_table(_tree(), all_parameters=True)
    assert {"alpha[a]", "alpha[c]", "year_effect[1995]", "gamma"} <= set(table.index)
    assert not any(name.startswith(("alpha_raw", "both")) for name in table.index)  # hidden; two dimensions
    assert table.loc["year_effect[1995]", "median"] == 0 and np.isnan(table.loc["year_effect[1995]", "r_hat"])


def _awkward_rows(chains: int, draws: int, seed: int = 0) -> np.ndarray:
    """(rows, chains, draws): what the diagnostics' branches see. Slow and fast AR(1) chains (long
    and short autocorrelation sequences, where Geyer's monotone correction acts), chains that
    disagree, ties, a constant, an indicator and a NaN."""
    rng = np.random.default_rng(seed)
    rows = []
    for phi in (0.0, 0.5, 0.95, -0.6):
        e = rng.normal(size=(chains, draws))
        x = np.empty_like(e)
        x[:, 0] = e[:, 0]
        for t in range(1, draws):
            x[:, t] = phi * x[:, t - 1] + e[:, t]
        rows.append(x)
    rows.append(rng.normal(size=(chains, draws)) + np.arange(chains)[:, None])  # chains apart
    rows.append(np.round(rng.normal(size=(chains, draws))))  # many ties
    rows.append(np.full((chains, draws), 2.5))  # constant: R-hat NaN, ESS = draws
    rows.append((rng.uniform(size=(chains, draws)) < 0.03).astype(float))  # a rare indicator
    with_nan = rng.normal(size=(chains, draws))
    with_nan[0, 1] = np.nan
    rows.append(with_nan)
    rows.extend(rng.standard_t(3, size=(6, chains, draws)))
    return np.stack(rows)


def _arviz_row(x: np.ndarray) -> list[float]:
    """One row's columns as arviz_stats computes them (its per-row functions)."""
    r_hat = array_stats.rhat(x, chain_axis=0, draw_axis=1) if len(x) >= 2 else np.nan
    return [
        array_stats.median(x, axis=(0, 1)),
        *array_stats.eti(x, prob=0.9, axis=(0, 1)),
        r_hat,
        array_stats.ess(x, chain_axis=0, draw_axis=1, method="bulk"),
        array_stats.ess(x, chain_axis=0, draw_axis=1, method="tail", prob=rcParams["stats.ci_prob"]),
    ]


@pytest.mark.parametrize("chains, draws", [(4, 200), (2, 57), (1, 120), (3, 9), (2, 4), (2, 3)])
def test_sample_diagnostics_are_arviz_stats_to_the_last_digit(chains, draws):
    samples = _awkward_rows(chains, draws)
    ours = sample_diagnostics(samples)
    assert ours.shape == (len(COLUMNS), len(samples))
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = np.array([_arviz_row(x) for x in samples]).T
    np.testing.assert_array_equal(ours, theirs)  # NaN where arviz_stats has NaN, else equal bits
    if draws >= 4:
        assert np.isnan(ours[3:, 8]).all() and np.isfinite(ours[4:, 0]).all()  # the NaN row; an AR(1) row


@pytest.mark.parametrize("rows_per_block", [256, 2])
def test_all_parameters_table_is_arviz_stats_summary_row_for_row(rows_per_block, monkeypatch):
    from bayes_spill.inference import summary

    monkeypatch.setattr(summary, "ROWS_PER_BLOCK", rows_per_block)  # 2: several blocks per variable
    post = _tree()["posterior"].to_dataset()
    tree = _tree()
    table = summary_table(tree, all_parameters=True)
    names = ["gamma", "halflife_km", "alpha", "year_effect"]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = azs.summary(post, var_names=names, kind="stats_median", ci_prob=0.9, round_to="none")
        diagnostics = azs.summary(post, var_names=names, kind="diagnostics", round_to="none")
    assert list(table.index) == [str(i) for i in stats.index] == [str(i) for i in diagnostics.index]
    expected = np.column_stack(
        [stats["median"], stats["eti90_lb"], stats["eti90_ub"], *(diagnostics[c] for c in COLUMNS[3:])]
    ).astype(float)
    np.testing.assert_array_equal(table.to_numpy(), expected)


def test_no_key_parameters_is_an_empty_table_not_every_variable():
    tree = _tree()
    tree["posterior"] = tree["posterior"].to_dataset()[["alpha"]]
    table = summary_table(tree)
    assert table.empty and {"median", "r_hat"} <= set(table.columns)


def test_e_bfmi_is_arviz_stats_bfmi_per_chain():
    tree = _tree()
    diag = chain_diagnostics(tree)
    expected = azs.bfmi(tree["sample_stats"].to_dataset())["energy"].values
    np.testing.assert_allclose(diag["e_bfmi"].to_numpy(), expected)
    energy = tree["sample_stats"]["energy"].values
    textbook = [np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2) for e in energy]  # Betancourt (2016)
    np.testing.assert_allclose(diag["e_bfmi"].to_numpy(), textbook)
    assert list(diag.index) == [0, 1] and (diag["divergences"] == 0).all()


@pytest.mark.parametrize("low", [True, False])
def test_low_e_bfmi_gets_its_advice(low):
    # a slow random walk in the energy: consecutive energies barely differ, so E-BFMI is tiny
    energy = np.stack([np.cumsum(np.random.default_rng(c).normal(size=200)) for c in (1, 2)]) if low else None
    tree = _tree(energy=energy)
    diag = chain_diagnostics(tree)
    assert (diag["e_bfmi"] < EBFMI_LOW).all() == low
    lines = advice(diag, summary_table(tree))
    assert any("E-BFMI below" in line for line in lines) == low


def test_fit_report_shows_the_table_and_the_diagnostics():
    text = fit_report(_tree(), truth={"parameters": {"gamma": 0.05}})
    assert "gamma" in text and "truth" in text and "e_bfmi" in text and "divergences" in text


def test_chains_without_energy_have_no_e_bfmi():
    tree = _tree()
    tree["sample_stats"] = tree["sample_stats"].to_dataset().drop_vars("energy")
    assert chain_diagnostics(tree)["e_bfmi"].isna().all()
