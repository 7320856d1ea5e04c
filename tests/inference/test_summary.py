"""inference/summary.py: the parameter table and E-BFMI come from arviz_stats (``summary``,
``bfmi``), with the report's columns and verdicts kept. Synthetic posteriors, no fit."""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pytest
import xarray as xr

from bayes_spill.inference.summary import EBFMI_LOW, advice, chain_diagnostics, fit_report, summary_table


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
