"""Calibration studies (bayes_spill.calibration: config, executors, store, sbc, montecarlo): the configuration, prior draws, rank statistics,
uniformity tests, the study runner (every replicate stored as it completes; an interrupted study
resumes where it stopped) with a fake fit function, the local process pool, the Dask error (the Dask cluster itself: test_dask.py), and
(slow) a tiny real SBC and Monte Carlo."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from study_fakes import fake_sbc_fit

from bayes_spill.calibration import config as study_config
from bayes_spill.calibration import executors, montecarlo, sbc, store
from bayes_spill.errors import BayesSpillError, ConfigError


@pytest.fixture(scope="module")
def config():
    return study_config.load_calibration()


# ---- configuration and prior draws ---------------------------------------------------------


def test_calibration_toml_parses_and_covers_the_simulator(config):
    assert [n for n, _ in config.priors] == list(study_config.SIMULATOR_PARAMETERS)
    assert config.sbc.sims >= 100 and config.montecarlo.datasets >= 20 and config.montecarlo.firms == 688
    assert (config.sbc.ranks + 1) % config.sbc.bins == 0
    settings = study_config.simulation_settings(dict(config.simulation), {"sigma_alpha": 0.5, "halflife_km": 80.0})
    assert settings.sigma_alpha2 == pytest.approx(0.25) and settings.halflife_km == 80.0
    assert settings.county_shift[0] == ("06085", 2.0)


def test_calibration_toml_errors_are_clear(config):
    text = study_config.resolve_calibration().read_text()
    with pytest.raises(ConfigError, match="missing gamma"):
        study_config.parse_calibration(text.replace("gamma = {", "# gamma = {"), "x.toml")
    with pytest.raises(ConfigError, match="unknown key"):
        study_config.parse_calibration(text.replace("[sbc]\n", "[sbc]\nsimz = 3\n"), "x.toml")
    with pytest.raises(ConfigError, match="multiple of"):
        study_config.check_sbc(replace(config.sbc, ranks=98), "x")
    with pytest.raises(ConfigError, match="methods"):
        study_config.check_montecarlo(replace(config.montecarlo, methods=("joint", "mcmc")), "x")


def test_sbc_prior_draws_are_the_models_distributions(config):
    """The true parameters of the simulations are pm.draw draws of the calibration prior, seeded per
    simulation (model/priors.py; their moments are checked in tests/model/test_priors.py)."""
    from bayes_spill.model import priors

    tasks = sbc.sbc_tasks(config, replace(config.sbc, sims=2))
    ss = np.random.SeedSequence(config.sbc.seed).spawn(2)
    for task, seed in zip(tasks, ss):
        assert task["params"] == priors.draw(config.priors, np.random.default_rng(seed))
    assert set(tasks[0]["params"]) == set(study_config.SIMULATOR_PARAMETERS)
    assert tasks[0]["params"]["halflife_km"] > 0 and tasks[0]["params"]["sigma_alpha"] > 0


def test_sbc_tasks_are_deterministic_and_use_the_calibration_prior(config):
    spec = replace(config.sbc, sims=3)
    a, b = sbc.sbc_tasks(config, spec), sbc.sbc_tasks(config, spec)
    assert a == b
    assert [t["key"] for t in a] == ["sbc-0000", "sbc-0001", "sbc-0002"]
    assert len({t["data_seed"] for t in a}) == 3
    from bayes_spill.config import parse_config

    fitted = parse_config(a[0]["model_toml"])
    assert fitted.prior("halflife_km") == config.prior("halflife_km")  # the model is fitted with the same prior
    assert fitted.prior("gamma") == config.prior("gamma")
    assert fitted.sampler.cores == config.cores_per_fit and fitted.sampler.draws == spec.draws


# ---- ranks and uniformity ------------------------------------------------------------------


def test_rank_statistic_counts_thinned_draws_below_the_truth():
    draws = np.arange(1000.0).reshape(2, 500)
    assert sbc.rank_statistic(draws, -1.0, 99) == 0
    assert sbc.rank_statistic(draws, 1e9, 99) == 99
    assert sbc.rank_statistic(draws, 500.0, 99) in (49, 50)


def test_uniformity_tests_accept_uniform_and_reject_biased_ranks():
    rng = np.random.default_rng(3)
    n_ranks, bins = 99, 10
    ranks = pd.DataFrame(
        {"uniform": rng.integers(0, n_ranks + 1, 200), "biased": np.minimum(rng.integers(0, n_ranks + 1, 200), 60)}
    )
    table = sbc.uniformity_tests(ranks, n_ranks, bins)
    assert table.loc["uniform", "chi2_p"] > 0.01 and table.loc["uniform", "ks_p"] > 0.01
    assert table.loc["biased", "chi2_p"] < 1e-6
    assert table.loc["uniform", "pot_c_p"] > 0.01 and table.loc["biased", "pot_c_p"] < 1e-6  # ArviZ's test


def test_chi_square_bins_keep_five_per_bin():
    assert sbc.chi_square_bins(99, 10, 100) == 10
    assert sbc.chi_square_bins(99, 10, 20) == 4
    assert sbc.chi_square_bins(99, 10, 3) == 2
    assert sbc.chi_square_bins(19, 5, 100) == 5


def test_arviz_uniformity_test_of_the_ranks_holds_its_level():
    """The plot's and the table's POT-C p-value (ArviZ) rejects about 5% of uniform rank sets of
    50 simulations at 5% (it replaced a hand-written simultaneous ECDF band)."""
    import arviz_stats  # noqa: F401  (the .azstats accessor)

    rng = np.random.default_rng(2)
    n_ranks = 99
    draws = rng.integers(0, n_ranks + 1, (300, 50))
    pit = sbc.pit_values(pd.DataFrame(draws.T, columns=[f"p{i}" for i in range(300)]), n_ranks)
    assert pit.sizes == {"chain": 1, "draw": 50}
    assert float(pit["p0"].max()) < 1 and float(pit["p0"].min()) > 0
    p, _, _ = pit.azstats.uniformity_test(dim=["chain", "draw"], method="pot_c")
    rejected = np.mean([float(p[name]) < 0.05 for name in pit.data_vars])
    assert 0.01 <= rejected <= 0.10


def test_rank_plot_is_arviz_ecdf_pit(tmp_path, monkeypatch):
    import arviz_plots as azp

    calls = []
    real = azp.plot_ecdf_pit
    monkeypatch.setattr(azp, "plot_ecdf_pit", lambda tree, **kw: calls.append(tree) or real(tree, **kw))
    rng = np.random.default_rng(4)
    ranks = pd.DataFrame({"gamma": rng.integers(0, 20, 12), "halflife_km": rng.integers(0, 20, 12)})
    path = sbc.plot_ranks(ranks, 19, tmp_path / "ranks.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(calls[0]["prior_sbc"].data_vars) == {"gamma", "halflife_km"}


# ---- the study runner: store as completed, resume after an interruption --------------------


class Interrupting:
    """Fit function that raises KeyboardInterrupt on its n-th call (a Ctrl-C mid-study)."""

    def __init__(self, at: int):
        self.at, self.calls = at, []

    def __call__(self, task):
        self.calls.append(task["key"])
        if len(self.calls) == self.at:
            raise KeyboardInterrupt
        return fake_sbc_fit(task)


def test_interrupted_study_resumes_where_it_stopped(config, tmp_path):
    spec = replace(config.sbc, sims=6)
    first = Interrupting(at=4)
    run, text = sbc.run_sbc(
        tmp_path / "sbc", config, spec, executor=executors.SerialExecutor(), progress=False, fn=first, plot=False
    )
    assert run.interrupted and run.done == 3
    stored = sorted(p.name for p in (tmp_path / "sbc" / "replicates").glob("*.json"))
    assert stored == ["sbc-0000.json", "sbc-0001.json", "sbc-0002.json"]
    assert not list((tmp_path / "sbc" / "replicates").glob(".*.tmp"))  # atomic writes leave no temporaries
    assert "interrupted" in text

    second = Interrupting(at=10**6)
    run, text = sbc.run_sbc(
        tmp_path / "sbc", config, spec, executor=executors.SerialExecutor(), progress=False, fn=second
    )
    assert second.calls == ["sbc-0003", "sbc-0004", "sbc-0005"]  # only what was missing
    assert run.done == 6 and not run.interrupted
    assert (tmp_path / "sbc" / "sbc_uniformity.csv").is_file() and (tmp_path / "sbc" / "sbc_ranks.png").is_file()
    ranks = pd.read_csv(tmp_path / "sbc" / "sbc_ranks.csv", index_col=0)
    assert list(ranks.index) == [f"sbc-{i:04d}" for i in range(6)]
    # results are those of the tasks, not of the run they happened in
    expected = fake_sbc_fit(sbc.sbc_tasks(config, spec)[4])["ranks"]
    assert ranks.loc["sbc-0004"].to_dict() == expected


def test_failed_replicates_are_recorded_and_retried(config, tmp_path):
    spec = replace(config.sbc, sims=3)

    def flaky(task):
        if task["index"] == 1:
            raise RuntimeError("sampler blew up")
        return fake_sbc_fit(task)

    run, text = sbc.run_sbc(
        tmp_path / "s", config, spec, executor=executors.SerialExecutor(), progress=False, fn=flaky, plot=False
    )
    assert run.done == 2 and "sbc-0001" in run.failed
    failure = json.loads((tmp_path / "s" / "failures" / "sbc-0001.json").read_text())
    assert "sampler blew up" in failure["error"]
    run, _ = sbc.run_sbc(
        tmp_path / "s", config, spec, executor=executors.SerialExecutor(), progress=False, fn=fake_sbc_fit, plot=False
    )
    assert run.done == 3 and run.ran == 1
    assert not (tmp_path / "s" / "failures" / "sbc-0001.json").exists()


def test_a_study_folder_refuses_other_settings_but_can_grow(config, tmp_path):
    sbc.run_sbc(
        tmp_path / "s",
        config,
        replace(config.sbc, sims=2),
        executor=executors.SerialExecutor(),
        progress=False,
        fn=fake_sbc_fit,
        plot=False,
    )
    with pytest.raises(BayesSpillError, match="other settings"):
        sbc.run_sbc(
            tmp_path / "s",
            config,
            replace(config.sbc, sims=2, firms=99),
            executor=executors.SerialExecutor(),
            progress=False,
            fn=fake_sbc_fit,
        )
    calls = Interrupting(at=10**6)
    run, text = sbc.run_sbc(
        tmp_path / "s",
        config,
        replace(config.sbc, sims=4),
        executor=executors.SerialExecutor(),
        progress=False,
        fn=calls,
        plot=False,
    )
    assert calls.calls == ["sbc-0002", "sbc-0003"] and run.done == 4  # more simulations extend the study
    _, text = sbc.run_sbc(
        tmp_path / "s",
        config,
        replace(config.sbc, sims=3),
        executor=executors.SerialExecutor(),
        progress=False,
        fn=calls,
        plot=False,
    )
    assert "3 of 3 simulations done" in text  # a report covers the requested simulations only


def test_local_process_pool_runs_and_stores_every_replicate(config, tmp_path):
    spec = replace(config.sbc, sims=4)
    run, _ = sbc.run_sbc(
        tmp_path / "pool",
        config,
        spec,
        executor=executors.LocalExecutor(2),
        progress=False,
        fn=fake_sbc_fit,
        plot=False,
    )
    assert run.done == 4 and not run.failed
    serial_ranks = [fake_sbc_fit(t)["ranks"] for t in sbc.sbc_tasks(config, spec)]
    stored = [json.loads(p.read_text())["ranks"] for p in sorted((tmp_path / "pool" / "replicates").glob("*.json"))]
    assert stored == serial_ranks


def fake_mc_fit(task: dict) -> dict:
    rng = np.random.default_rng(task["data_seed"] + (task["method"] == "joint"))
    truth = {"halflife_km": 59.0, "gamma": 0.053}
    estimates = {}
    for name, t in truth.items():
        est = t + rng.normal(0, 0.1 * abs(t))
        estimates[name] = {"estimate": est, "lo": est - 0.2 * abs(t), "hi": est + 0.2 * abs(t), "sd": 0.1 * abs(t)}
    return {
        "key": task["key"],
        "index": task["index"],
        "method": task["method"],
        "truth": truth,
        "estimates": estimates,
        "level": 0.9,
        "wall_seconds": 1.0 + (task["method"] == "joint"),
    }


def test_montecarlo_table_and_resume(config, tmp_path):
    spec = replace(config.montecarlo, datasets=5, parameters=("halflife_km", "gamma"))
    tasks = montecarlo.montecarlo_tasks(config, spec)
    assert len(tasks) == 10 and {t["method"] for t in tasks} == {"joint", "twostep"}
    assert tasks[0]["data_seed"] == tasks[1]["data_seed"]  # both methods fit the same dataset
    run, text = montecarlo.run_montecarlo(
        tmp_path / "mc", config, spec, executor=executors.SerialExecutor(), progress=False, fn=_mc_interrupting(7)
    )
    assert run.interrupted and run.done == 6
    run, text = montecarlo.run_montecarlo(
        tmp_path / "mc", config, spec, executor=executors.SerialExecutor(), progress=False, fn=fake_mc_fit
    )
    assert run.done == 10 and run.ran == 4
    table = pd.read_csv(tmp_path / "mc" / "montecarlo_table.csv", index_col=[0, 1])
    assert set(table.index.get_level_values(1)) == {"joint", "twostep"}
    for column in ("bias", "rmse", "coverage", "width", "coverage_se"):
        assert column in table.columns
    assert (table["datasets"] == 5).all()
    assert "bias, RMSE and coverage side by side" in text and "wall time" in text
    # more datasets, report only: nothing is fitted and the table covers what is stored
    run, text = montecarlo.run_montecarlo(
        tmp_path / "mc",
        config,
        replace(spec, datasets=7),
        executor=executors.SerialExecutor(),
        progress=False,
        fn=None,
        report_only=True,
    )
    assert run.ran == 0 and run.done == 10 and run.total == 14
    reps = store.load_replicates(tmp_path / "mc")
    errors = [r["estimates"]["gamma"]["estimate"] - 0.053 for r in reps if r["method"] == "joint"]
    assert table.loc[("gamma", "joint"), "rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))))


def _mc_interrupting(at):
    calls = []

    def fn(task):
        calls.append(task)
        if len(calls) == at:
            raise KeyboardInterrupt
        return fake_mc_fit(task)

    return fn


# ---- the command line and the Dask executor ------------------------------------------------


def test_dask_executor_without_distributed_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("No module named 'distributed'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    with pytest.raises(BayesSpillError, match=r"pip install 'bayes_spill\[dask\]'"):
        executors.make_executor(scheduler="tcp://127.0.0.1:8786")


def test_cli_calibrate_help_and_errors(capsys):
    from bayes_spill.cli.main import main

    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    assert "sbc" in out and "montecarlo" in out
    with pytest.raises(SystemExit):
        main(["calibrate", "sbc", "--help"])
    assert "--scheduler" in capsys.readouterr().out
    code = main(["calibrate", "sbc", "--out", "unused", "--ranks", "98", "--no-progress"])
    assert code == 2
    assert "multiple of" in capsys.readouterr().err


# ---- slow: the real thing, tiny ------------------------------------------------------------


TINY_SIMULATION = (("first_year", 1996), ("last_year", 2005))


@pytest.mark.slow
def test_tiny_sbc_with_real_fits(config, tmp_path):
    spec = replace(
        config.sbc, sims=3, firms=60, draws=50, tune=50, chains=2, ranks=19, bins=5, simulation=TINY_SIMULATION
    )
    run, text = sbc.run_sbc(tmp_path / "sbc", config, spec, executor=executors.LocalExecutor(2), progress=False)
    assert run.done == 3 and not run.failed, run.failed
    for rep in store.load_replicates(tmp_path / "sbc"):
        assert set(rep["ranks"]) == set(spec.parameters)
        assert all(0 <= r <= spec.ranks for r in rep["ranks"].values())
        assert rep["firms"] > 0 and rep["fit_seconds"] > 0
    assert "uniformity not rejected" in text


@pytest.mark.slow
def test_tiny_montecarlo_with_real_fits(config, tmp_path):
    spec = replace(
        config.montecarlo, datasets=1, firms=60, draws=50, tune=50, chains=2, bootstrap=4, simulation=TINY_SIMULATION
    )
    run, text = montecarlo.run_montecarlo(
        tmp_path / "mc", config, spec, executor=executors.LocalExecutor(2), progress=False
    )
    assert run.done == 2 and not run.failed, run.failed
    table = pd.read_csv(tmp_path / "mc" / "montecarlo_table.csv", index_col=[0, 1])
    assert {("halflife_km", "joint"), ("halflife_km", "twostep"), ("gamma", "joint"), ("gamma", "twostep")} <= set(
        table.index
    )


# a few simulations for SBC: its study draws every simulation's parameters from the prior first
@pytest.mark.parametrize(("study", "size"), [("sbc", ["--sims", "4"]), ("montecarlo", [])])
def test_report_only_through_the_cli_fits_nothing(study, size, tmp_path, capsys):
    from bayes_spill.cli.main import main

    argv = ["calibrate", study, "--report-only", "--out", str(tmp_path / study), "--firms", "40", "--no-progress"]
    code = main([*argv, *size])
    out = capsys.readouterr().out
    assert code == 0
    assert "replicates stored (0 attempted now)" in out
