"""Posterior predictive checks: the replicated data, the statistics and their p-values (which must
turn extreme when the replicates come from a deliberately wrong model), and `bayes-spill check`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from tiny_fits import fit_copy, tiny_fit

import bayes_spill
from bayes_spill.checking import ppc as checks
from bayes_spill.cli.main import main
from bayes_spill.model.within import within_firm


def _within(values, obs_firm, n_firms):
    return within_firm(values, obs_firm, np.bincount(obs_firm, minlength=n_firms).astype(float), axis=-1)


N_DRAWS = 30


@pytest.fixture(scope="module")
def fit():
    return bayes_spill.load(tiny_fit("lychagin2010"))


@pytest.fixture(scope="module")
def tree(fit):
    return fit.tree


@pytest.fixture(scope="module")
def cd(fit):
    return checks.check_data(fit, N_DRAWS)


@pytest.fixture(scope="module")
def ppc(fit, cd):
    return checks.run_ppc(fit, n_draws=N_DRAWS)


# -- p-values ------------------------------------------------------------------------------------
def test_ppp_value_counts_ties_half_and_skips_nan():
    assert checks.ppp_value(1.0, np.array([0.0, 1.0, 2.0, 3.0])) == pytest.approx((2 + 0.5) / 4)
    assert checks.ppp_value(np.array([0.0, np.nan]), np.array([1.0, 5.0])) == 1.0
    assert np.isnan(checks.ppp_value(1.0, np.array([np.nan])))
    assert checks.is_extreme(0.01) and checks.is_extreme(0.99) and not checks.is_extreme(0.5)


def _ar1_panel(rng, n_firms, years, rho):
    obs_firm = np.repeat(np.arange(n_firms), years)
    year = np.tile(np.arange(years), n_firms)
    e = np.empty((n_firms, years))
    e[:, 0] = rng.normal(size=n_firms)
    for t in range(1, years):
        e[:, t] = rho * e[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=n_firms)
    return e.ravel(), obs_firm, year


def test_autocorrelated_data_give_an_extreme_p_value():
    """Replicates from an iid model against AR(1) data (rho = 0.6): Assumption 2 fails, the
    lag-1 statistic must land in the tail; against iid data it must not."""
    rng = np.random.default_rng(0)
    n_firms, years, draws = 150, 8, 200
    dof = n_firms * (years - 1)
    reps = []
    for _ in range(draws):
        e, obs_firm, year = _ar1_panel(rng, n_firms, years, 0.0)
        reps.append(_within(e[None, :], obs_firm, n_firms)[0])
    rep_stats = checks.residual_statistics(np.array(reps), obs_firm, year, dof)
    for rho, extreme in ((0.6, True), (0.0, False)):
        e, obs_firm, year = _ar1_panel(np.random.default_rng(7), n_firms, years, rho)
        obs_stats = checks.residual_statistics(_within(e[None, :], obs_firm, n_firms), obs_firm, year, dof)
        p = checks.ppp_value(obs_stats["autocorrelation"], rep_stats["autocorrelation"])
        assert checks.is_extreme(p) is extreme, (rho, p)
        if extreme:
            assert p < 0.01  # the data's autocorrelation is above every replicate


def test_residual_statistics_of_known_series():
    e = np.array([1.0, -1.0, 1.0, -1.0, 2.0, 2.0, -2.0, -2.0])
    obs_firm = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    year = np.array([1, 2, 3, 4, 1, 2, 3, 4])
    stats = checks.residual_statistics(e, obs_firm, year, dof=6.0)
    assert stats["spread"][0] == pytest.approx(np.sqrt(20.0 / 6.0))
    assert stats["autocorrelation"][0] == pytest.approx((-3.0 + 4.0 - 4.0 + 4.0) / 20.0)
    # a gap in the years breaks the lag pair
    gap = checks.residual_statistics(e, obs_firm, np.array([1, 2, 4, 5, 1, 2, 3, 4]), dof=6.0)
    assert gap["autocorrelation"][0] == pytest.approx((-1.0 - 1.0 + 4.0 - 4.0 + 4.0) / 20.0)


def test_herfindahl():
    assert checks.herfindahl(np.array([[0, 0, 1, 1]]), 3)[0] == pytest.approx(0.5)
    assert checks.herfindahl(np.array([[2, 2, 2, 2]]), 3)[0] == pytest.approx(1.0)


# -- replicated data ------------------------------------------------------------------------------
def test_thinned_draws_are_spread_over_every_chain(fit, tree):
    thinned = fit.draws.thin_per_chain(10)
    chains, draws = thinned.chain_labels, thinned.draw_labels
    assert (
        list(chains) == [0, 1]
        and len(draws) == 5
        and draws[0] == 0
        and draws[-1] == tree["posterior"].sizes["draw"] - 1
    )
    every = fit.draws.thin_per_chain(10_000).draw_labels
    assert len(every) == tree["posterior"].sizes["draw"]


def test_replicated_log_sales_keep_firm_means_and_replace_within_part(cd):
    rng = np.random.default_rng(1)
    reps = checks.replicate(cd, rng)
    panel = cd.panel
    q = cd.data.q
    firm_mean = lambda x: np.bincount(panel.obs_firm, weights=x, minlength=panel.n_firms) / panel.years_per_firm  # noqa: E731
    for k in (0, cd.params.n_draws - 1):
        np.testing.assert_allclose(firm_mean(reps.log_sales[k]), firm_mean(q), atol=1e-10)
        # within-firm: replicated residuals are exactly the demeaned fresh noise
        mu = checks._linear_predictor(cd, cd.params.alpha)[k]
        within = _within((reps.log_sales[k] - mu)[None, :], panel.obs_firm, panel.n_firms)[0]
        np.testing.assert_allclose(within, reps.noise[k], atol=1e-10)
        assert np.std(reps.noise[k]) == pytest.approx(
            cd.params.sigma_w[k] * np.sqrt(1 - panel.n_firms / panel.n_obs), rel=0.25
        )
    assert reps.choice.shape == (cd.params.n_draws, panel.n_firms)
    assert reps.choice.min() >= 0 and reps.choice.max() < len(cd.data.spill.choice_set)


def test_replicated_choices_follow_the_logit(cd):
    """Force one county's effect far above the rest: every replicated firm goes there."""
    p = cd.params
    effect = p.county_effect.copy()
    effect[:, 3] += 50.0
    rigged = checks.CheckData(**{**cd.__dict__, "params": replace(p, county_effect=effect)})
    reps = checks.replicate(rigged, np.random.default_rng(2))
    assert np.all(reps.choice == 3)


def test_alpha_given_county_follows_the_population_without_sorting(cd):
    p = cd.params
    no_sorting = replace(p, gamma=np.zeros(p.n_draws))
    fresh = checks.alpha_given_county(
        checks.CheckData(**{**cd.__dict__, "params": no_sorting}), np.random.default_rng(3)
    )
    z = (fresh - p.mu_alpha[:, None]) / p.sigma_alpha[:, None]
    assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1


def test_ppc_group_and_table(ppc, tree):
    group = ppc.group
    assert set(group.data_vars) == {"log_sales", "county"}
    assert group["log_sales"].dims == ("chain", "draw", "obs")
    assert group["county"].dims == ("chain", "draw", "firm")
    assert set(np.unique(group["county"].values)) <= set(tree["constant_data"]["choice_county"].values.astype(str))
    table = ppc.table()
    assert set(table["check"]) == {"locations", "sorting", "production"}
    assert table["p_value"].between(0, 1).all()
    assert len(table[table["check"] == "sorting"]) == 8  # 4 slopes x 2 replicates
    verdicts = checks.ppc_verdicts(table)
    assert set(verdicts) == {"locations", "sorting", "production"}
    assert all(v.startswith(("OK", "MISFIT")) for v in verdicts.values())


def test_replicated_group_is_the_ppcs_group_without_its_statistics(fit, ppc):
    xr.testing.assert_identical(checks.replicated_group(fit, n_draws=N_DRAWS), ppc.group)
    other = checks.replicated_group(fit, n_draws=N_DRAWS, seed=fit.seed + 1)
    assert not np.array_equal(other["log_sales"].values, ppc.group["log_sales"].values)


def test_misspecified_noise_makes_the_spread_extreme(tree, ppc):
    """Replicate with twice the posterior sigma_w: the observed residual spread must sit far
    below every replicate (p near 1), while the fitted sigma_w gives an unremarkable p."""
    honest = ppc.table()
    doubled = tree.copy()
    post = tree["posterior"].to_dataset()
    doubled["posterior"] = xr.DataTree(post.assign(sigma_w=post["sigma_w"] * 2.0))
    wrong = checks.run_ppc(doubled, n_draws=N_DRAWS).table()
    name = "residual spread (sd of within-firm residuals)"
    assert not honest.loc[name, "extreme"]
    assert wrong.loc[name, "p_value"] > 0.99 and wrong.loc[name, "extreme"]
    assert "MISFIT" in checks.ppc_verdicts(wrong)["production"]


def test_misspecified_county_effects_make_the_largest_share_extreme(tree):
    doubled = tree.copy()
    post = tree["posterior"].to_dataset()
    flat = post["county_effect"] * 0.0  # every county equally attractive: no clustering
    doubled["posterior"] = xr.DataTree(post.assign(county_effect=flat, gamma=post["gamma"] * 0.0))
    table = checks.run_ppc(doubled, n_draws=N_DRAWS).table()
    locations = table[table["check"] == "locations"]
    assert locations.iloc[0]["extreme"] and locations.iloc[0]["p_value"] < 0.05  # the largest county
    assert "MISFIT" in checks.ppc_verdicts(table)["locations"]


# -- bayes-spill check ----------------------------------------------------------------------------
def test_check_command_writes_report_and_group(tmp_path, capsys):
    """Figures are tested in test_figures.py; here the verdicts, report.md, checks.csv and the
    posterior_predictive group."""
    fit_dir = fit_copy("lychagin2010", tmp_path / "fit")
    code = main(["check", str(fit_dir), "--ppc-draws", "20", "--bootstrap", "10", "--no-figures"])
    assert code == 0
    out = capsys.readouterr().out
    for title in (
        "Sampler:",
        "Identification",
        "Locations (PPC):",
        "Sorting, Table 4 (PPC):",
        "Production residuals (PPC):",
        "PSIS-LOO:",
    ):
        assert title in out
    report = (fit_dir / "report.md").read_text()
    assert "## Verdicts" in report and "## Table 4 on these data" in report and "t (bootstrap)" in report
    tree = bayes_spill.load(fit_dir).tree
    assert tree["posterior_predictive"]["log_sales"].sizes["draw"] == 10
    assert (fit_dir / "checks.csv").is_file()
    assert not list(fit_dir.glob(".*.tmp"))


def test_check_leaves_the_posterior_whole_when_writing_fails(tmp_path, monkeypatch):
    from bayes_spill.checking import report

    fit_dir = fit_copy("lychagin2010", tmp_path / "fit")
    before = (fit_dir / "posterior.nc").read_bytes()

    def crash(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        report.check(fit_dir, n_draws=10, n_bootstrap=0, make_figures=False)
    assert (fit_dir / "posterior.nc").read_bytes() == before
    assert not list(fit_dir.glob(".*.tmp"))


def test_check_of_a_missing_fit_is_a_clean_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nothing")]) == 2
    assert "no posterior" in capsys.readouterr().err


def test_check_of_a_fit_held_in_memory_needs_a_folder(tree):
    from bayes_spill.errors import BayesSpillError

    with pytest.raises(BayesSpillError, match="save the fit first"):
        bayes_spill.Fit(tree).check(n_draws=10, n_bootstrap=0, make_figures=False)
