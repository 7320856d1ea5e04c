"""Figures of `bayes-spill check`: every PNG is written and linked from report.md, and the numbers
behind the decay curve and the county map are right."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from tiny_fits import fit_copy  # noqa: E402

import bayes_spill  # noqa: E402
from bayes_spill.checking import figures  # noqa: E402
from bayes_spill.twostep.table4 import spillover_at_firm_county  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
EXPECTED = (
    "rank",
    "trace",
    "halflife_gamma",
    "decay_curve",
    "ppc_statistics",
    "ppc_log_sales",
    "absorptive_capacity_vs_spillover",
    "county_map",
    "prior_posterior",  # checking/sensitivity.py
)


@pytest.fixture(scope="module")
def checked_and_parses(tmp_path_factory):
    """One full check (figures included) of a copy of the tiny fit, counting how often it parsed
    the fit's configuration and rebuilt its panel."""
    from bayes_spill.checking.report import check
    from bayes_spill.inference import posterior_io

    calls = {"config_from_tree": 0, "panel_from_tree": 0}

    def counted(name):
        real = getattr(posterior_io, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    fit_dir = fit_copy("lychagin2010", tmp_path_factory.mktemp("figs") / "fit")
    with pytest.MonkeyPatch.context() as mp:
        for name in calls:
            mp.setattr(posterior_io, name, counted(name))
        report = check(fit_dir, n_draws=16, n_bootstrap=0)
    return fit_dir, report, calls


@pytest.fixture(scope="module")
def checked(checked_and_parses):
    fit_dir, report, _ = checked_and_parses
    return fit_dir, report


def test_one_check_parses_the_configuration_and_rebuilds_the_panel_once(checked_and_parses):
    _, _, calls = checked_and_parses
    assert calls == {"config_from_tree": 1, "panel_from_tree": 1}


def test_every_figure_is_a_png_linked_from_the_report(checked):
    fit_dir, report = checked
    assert set(report.figures) == set(EXPECTED)
    text = (fit_dir / "report.md").read_text()
    for name in EXPECTED:
        path = fit_dir / "figures" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG, name
        assert path.stat().st_size > 5_000, name  # a drawn figure, not an empty canvas
        assert f"](figures/{name}.png)" in text


def test_decay_bands():
    d = np.array([0.0, 59.0, 118.0])
    bands = figures.decay_bands(np.full(100, 59.0), d)
    np.testing.assert_allclose(bands[:, 0], 1.0)
    np.testing.assert_allclose(bands[:, 1], 0.5)
    np.testing.assert_allclose(bands[:, 2], 0.25)
    spread = figures.decay_bands(np.array([20.0, 59.0, 200.0]), d, probs=(0.0, 0.5, 1.0))
    assert spread[0, 1] == pytest.approx(np.exp(-np.log(2) * 59 / 20)) and spread[2, 1] == pytest.approx(
        np.exp(-np.log(2) * 59 / 200)
    )


def test_county_values_match_firm_level_numbers(checked):
    fit_dir, _ = checked
    fit = bayes_spill.load(fit_dir)
    tree, panel = fit.tree, fit.panel
    values = figures.county_values(fit)
    h = values["halflife_km"]
    s_firm = spillover_at_firm_county(panel, h)
    np.testing.assert_allclose(values["sbar"][panel.firm_county], s_firm, rtol=1e-10)
    alpha_mean = tree["posterior"]["alpha"].mean(("chain", "draw")).values
    for pos, county in enumerate(values["occupied"][:5]):
        in_county = panel.firm_county == county
        assert values["firms"][pos] == in_county.sum()
        assert values["alpha"][pos] == pytest.approx(alpha_mean[in_county].mean())
    assert len(values["sbar"]) == len(panel.counties)


def test_no_alpha_figures_for_a_homogeneous_alpha():
    post = xr.Dataset({"alpha": (("chain", "draw"), np.zeros((2, 5)))})
    tree = xr.DataTree.from_dict({"/posterior": post})
    assert figures._alpha_summary(tree) is None


def test_truth_parameters_are_read_from_the_attrs():
    tree = xr.DataTree()
    assert figures.truth_parameters(tree) == {}
    tree.attrs["truth_parameters"] = repr({"gamma": 0.053, "halflife_km": 59.0})
    assert figures.truth_parameters(tree)["halflife_km"] == 59.0


def test_crafted_truth_attribute_cannot_crash_the_figures():
    import xarray as xr

    from bayes_spill.checking.figures import truth_parameters

    tree = xr.DataTree()
    tree.attrs["truth_parameters"] = "1" + "+1" * 100000
    assert truth_parameters(tree) == {}
