"""`bayes-spill bench` runs end to end on a tiny industry and reports ratios against the baseline."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest

from bayes_spill.cli import bench as bench_command
from bayes_spill.cli.main import build_parser, main
from bayes_spill.inference.bench import DEFAULT_FORMULATIONS, format_tables, run_bench


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """`bayes-spill bench` on a tiny industry with the default formulations, written as JSON. The
    Python backend compiles nothing, so this stays fast; real runs use C, Numba and JAX."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", "--scales", "0.06", "--backends", "Python", "--repeats", "2", "--json", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_bench(bench_json):
    return json.loads(bench_json.read_text())


def test_each_formulation_is_timed(tiny_bench):
    rows = {(r["formulation"], r["backend"]): r for r in tiny_bench["gradients"]}
    assert set(rows) == {(f, "Python") for f in ("occupied", "all_counties", "all_counties_exact")}
    for row in rows.values():
        assert row["grad_ms"] > 0 and row["compile_s"] > 0
    # all counties carries a county effect for each of the 3,142 counties
    assert rows[("all_counties", "Python")]["parameters"] > 3142 > rows[("occupied", "Python")]["parameters"]
    assert rows[("all_counties_exact", "Python")]["ratio_to_baseline"] == pytest.approx(1.0)
    assert rows[("all_counties", "Python")]["ratio_to_paper_scale"] is None  # no 688-firm run here
    # the gradient's cost per firm-year and per county of the choice set
    assert rows[("all_counties", "Python")]["counties"] == 3142 > rows[("occupied", "Python")]["counties"] > 0
    for row in rows.values():
        assert row["firm_years"] > row["firms"]
        assert row["us_per_firm_year"] == pytest.approx(1000 * row["grad_ms"] / row["firm_years"])
        assert row["us_per_county"] == pytest.approx(1000 * row["grad_ms"] / row["counties"])
    assert tiny_bench["limits"] == []  # only with limits=True (bench --limits)


def test_evaluation_point_is_near_the_papers_values():
    from bayes_spill.inference.bench import _config, evaluation_point
    from bayes_spill.model.likelihood import build_model
    from bayes_spill.model.simulate import SimulationSettings, simulate_industry

    model = build_model(simulate_industry(SimulationSettings(n_firms=30), seed=2), _config("occupied"))
    point = evaluation_point(model)
    assert float(point["gamma"]) == 0.3 and float(np.exp(point["halflife_km_log__"])) == pytest.approx(59.0)
    assert np.std(point["alpha_raw"]) > 0.3  # the firms' c_i differ, so the denominator's bins are exercised


def test_gradients_are_timed_in_interleaved_rounds():
    """Slow phases of the machine fall on every function alike, not on one of them."""
    from bayes_spill.inference.bench import time_gradients

    calls = []

    def fake(name):
        def fn(x):
            calls.append(name)
            return np.float64(0.0), x

        return fn

    medians = time_gradients([(fake("a"), np.zeros(2)), (fake("b"), np.zeros(2))], repeats=4, rounds=2)
    assert calls == ["a", "a", "b", "b", "a", "a", "b", "b"]
    assert len(medians) == 2 and all(m >= 0 for m in medians)


def test_ratios_in_one_run():
    from bayes_spill.inference.bench import GradientTiming, SamplingRun, _add_ratios

    grads = [
        GradientTiming(1.0, 688, "all_counties_exact", "C", 10, 1.0, 40.0),
        GradientTiming(1.0, 688, "all_counties", "C", 10, 1.0, 2.0),
        GradientTiming(10.0, 6880, "all_counties", "C", 10, 1.0, 20.0),
    ]
    runs = [
        SamplingRun(1.0, "all_counties_exact", "pymc", 50, 50, 2, 100.0, 15.0, 0.5, 0.4),
        SamplingRun(1.0, "all_counties", "nutpie", 200, 200, 2, 20.0, 15.0, 20.0, 8.0),
    ]
    _add_ratios(grads, runs)
    assert grads[1].ratio_to_baseline == pytest.approx(20.0) and grads[2].ratio_to_paper_scale == pytest.approx(10.0)
    assert runs[1].ratio_ess_per_s_gamma == pytest.approx(40.0) and runs[1].ratio_ess_per_s_halflife == pytest.approx(
        20.0
    )


def test_tables_and_json(tiny_bench):
    text = format_tables(tiny_bench)  # the tables the command printed, from its JSON
    assert "grad_ms" in text and "ratio_to_baseline" in text
    assert [row["formulation"] for row in tiny_bench["gradients"]] == list(DEFAULT_FORMULATIONS)


def test_formulations_option_selects_the_formulations():
    args = build_parser().parse_args(["bench", "--formulations", "occupied", "--backends", "Python", "--repeats", "1"])
    with mock.patch.object(
        bench_command, "run_bench", return_value={"gradients": [], "sampling": [], "limits": []}
    ) as run:
        assert args.func(args) == 0
    assert run.call_args.kwargs["formulations"] == ("occupied",) and run.call_args.kwargs["repeats"] == 1


def test_the_limits_table():
    from dataclasses import asdict

    from bayes_spill.inference.bench import LimitRun

    row = LimitRun(1.0, "default (integrated_alpha)", 9000, 40, 300, 400, 4, 3.0, 1.0, 20.0, 10.0, 15.0, 2.0, 0.2, 0.05,
                   20.0, 1200.0, 1.003, 0)  # fmt: skip
    text = format_tables({"gradients": [], "sampling": [], "limits": [asdict(row)]})
    assert "distance to the limit" in text and "steps_per_ess" in text and "tuning_s" in text


@pytest.mark.slow  # compiles the default model and the baseline formulation for nutpie
def test_limits_split_the_wall_for_the_default_and_the_baseline():
    result = run_bench(scales=(0.06,), backends=(), draws=30, tune=30, chains=2, limits=True)
    default, baseline = result["limits"]
    assert default["formulation"].startswith("default") and baseline["formulation"] == "all_counties_exact"
    assert baseline["counties"] == 3142 > default["counties"]
    for row in (default, baseline):
        assert row["build_s"] > 0 and row["compile_s"] > 0 and row["tuning_s"] > 0 and row["sampling_s"] > 0
        assert row["us_per_firm_year"] > 0 and row["steps_per_ess"] > 0 and row["draws"] == 30


def test_unknown_backend_is_a_clear_error(capsys):
    assert main(["bench", "--backends", "Fortran"]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_bad_pairs_are_a_clear_error(capsys):
    assert main(["bench", "--pairs", "occupied:stan"]) == 2
    assert "formulation:sampler" in capsys.readouterr().err


@pytest.mark.slow  # compiles and samples a model (about a minute)
def test_a_sampling_pair_reports_steps_and_ess_per_second():
    result = run_bench(
        scales=(0.06,),
        formulations=("occupied",),
        backends=(),
        pairs=(("occupied", "pymc"),),
        draws=30,
        tune=30,
        chains=1,
    )
    (row,) = result["sampling"]
    assert (row["formulation"], row["sampler"], row["draws"]) == ("occupied", "pymc", 30)
    assert row["wall_s"] > 0 and row["steps_per_draw"] >= 1
    assert np.isfinite(row["ess_per_s_gamma"]) and row["ess_per_s_gamma"] > 0
    assert row["ratio_ess_per_s_gamma"] is None  # the baseline pair was not run


def test_scaled_industries_keep_the_spillovers_effect_at_the_papers_magnitude():
    """Above the paper's scale the pools grow with the firms and alpha_i shrinks by 1/scale, so
    c_i x range(Sbar), which sets the logit denominator's bins, measures firms and not a stronger
    economy; the evaluation point's alpha spread follows."""
    from bayes_spill.inference.bench import _config, _panel, alpha_scale, evaluation_point
    from bayes_spill.model.likelihood import build_model
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS

    assert alpha_scale(10.0) == pytest.approx(0.1) and alpha_scale(0.06) == 1.0 and alpha_scale(1.0) == 1.0
    doubled = _panel(2.0, seed=1).truth["parameters"]
    assert doubled["mu_alpha"] == pytest.approx(SOFTWARE_SETTINGS.mu_alpha / 2)
    assert doubled["sigma_alpha2"] == pytest.approx(SOFTWARE_SETTINGS.sigma_alpha2 / 4)
    small = _panel(0.06, seed=1)
    assert small.truth["parameters"]["mu_alpha"] == SOFTWARE_SETTINGS.mu_alpha
    point = evaluation_point(build_model(small, _config("occupied_integrated")), alpha_spread=0.25)
    assert float(np.exp(point["sigma_alpha_log__"])) == pytest.approx(0.16)
