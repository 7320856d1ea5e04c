"""Calibration studies on Dask distributed (calibration/executors.py DaskExecutor): a LocalCluster
of two worker processes on 127.0.0.1 gives the serial run's results; a worker killed mid-study
loses and repeats nothing; a cluster that goes away mid-study leaves a study that resumes on
another cluster with every replicate stored once; (slow) the same with real fits.

The stand-in fits come from tests/study_fakes.py (a module on the test path, so worker processes
import them by reference). Each cluster is closed in its fixture's teardown or its own ``with`` block."""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import distributed
import pytest
from study_fakes import fake_sbc_fit, logged_fit

from bayes_spill.calibration import config as study_config
from bayes_spill.calibration import executors, sbc, store

# Bounds on every wait here, so a broken cluster fails the test instead of hanging it.
DEADLINE_S = 300


def local_cluster(n_workers: int):
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )


@pytest.fixture(scope="module")
def config():
    return study_config.load_calibration()


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as c:
        yield c


def starts(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(k, int(p)) for k, p in (line.split() for line in log.read_text().splitlines())]


def serial_replicates(config, spec) -> dict[str, dict]:
    return {t["key"]: json.loads(json.dumps(fake_sbc_fit(t))) for t in sbc.sbc_tasks(config, spec)}


def stored(study: Path) -> dict[str, dict]:
    return {r["key"]: r for r in store.load_replicates(study)}


@pytest.fixture
def writes(monkeypatch):
    """Counts the study store's writes of each replicate file."""
    counts: dict[str, int] = {}
    real = store._write_json

    def counting(path: Path, payload: dict) -> None:
        if path.parent.name == store.REPLICATES:
            counts[path.stem] = counts.get(path.stem, 0) + 1
        real(path, payload)

    monkeypatch.setattr(store, "_write_json", counting)
    return counts


def run_sbc(*args, **kwargs):
    """sbc.run_sbc in a thread, failing the test after DEADLINE_S instead of hanging it (the
    cluster's teardown then ends the run)."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = sbc.run_sbc(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        raise TimeoutError(f"the study did not finish within {DEADLINE_S} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_local_cluster_gives_the_serial_results(config, cluster, tmp_path):
    spec = replace(config.sbc, sims=4)
    executor = executors.make_executor(scheduler=cluster.scheduler_address)
    assert executor.name == f"Dask cluster at {cluster.scheduler_address}"
    log = tmp_path / "starts.log"
    run, text = run_sbc(
        tmp_path / "dask",
        config,
        spec,
        executor=executor,
        progress=False,
        fn=functools.partial(logged_fit, str(log), 0.2),
        plot=False,
    )
    assert run.done == 4 and run.ran == 4 and not run.failed and not run.interrupted
    assert all(a.startswith("tcp://127.0.0.1:") for a in cluster.scheduler_info["workers"])  # loopback only
    assert stored(tmp_path / "dask") == serial_replicates(config, spec)
    assert sorted(k for k, _ in starts(log)) == [f"sbc-{i:04d}" for i in range(4)]
    assert all(pid != os.getpid() for _, pid in starts(log))  # fitted in the worker processes
    assert "4 of 4 simulations done" in text


def test_a_killed_worker_loses_and_repeats_nothing(config, cluster, tmp_path, writes):
    """SIGKILL the worker process running the first simulation: Dask reruns that simulation on
    the other worker (the nanny restarts the killed one); every result is stored once and equals
    the serial run's, and no finished simulation runs again."""
    spec = replace(config.sbc, sims=5)
    log = tmp_path / "starts.log"
    victim: list[tuple[str, int]] = []

    def kill_first_runner():
        wait_for(lambda: starts(log), "a simulation to start")
        victim.append(starts(log)[0])
        os.kill(victim[0][1], signal.SIGKILL)

    killer = threading.Thread(target=kill_first_runner, daemon=True)
    killer.start()
    run, _ = run_sbc(
        tmp_path / "s",
        config,
        spec,
        executor=executors.make_executor(scheduler=cluster.scheduler_address),
        progress=False,
        fn=functools.partial(logged_fit, str(log), 1.5),
        plot=False,
    )
    killer.join(DEADLINE_S)
    assert victim, "no worker was killed"
    key, pid = victim[0]
    assert run.done == 5 and not run.failed and not run.interrupted
    assert stored(tmp_path / "s") == serial_replicates(config, spec)
    assert writes == {f"sbc-{i:04d}": 1 for i in range(5)}
    ran = [k for k, _ in starts(log)]
    assert ran.count(key) == 2 and sorted(set(ran)) == sorted(writes)  # the killed one again, elsewhere
    assert len(ran) == 6
    assert [p for k, p in starts(log) if k == key][1] != pid


def test_a_study_resumes_on_another_cluster_after_its_cluster_went_away(config, cluster, tmp_path, writes):
    """Close the whole cluster once two simulations are stored: the run stops as interrupted with
    what finished kept; running again on another cluster runs only what is missing."""
    spec = replace(config.sbc, sims=6)
    study, log = tmp_path / "s", tmp_path / "starts.log"
    fn = functools.partial(logged_fit, str(log), 0.5)
    with local_cluster(1) as doomed:
        executor = executors.DaskExecutor(doomed.scheduler_address, timeout="5s")

        def close_after_two():
            wait_for(lambda: len(writes) >= 2, "two stored simulations")
            doomed.close()

        closer = threading.Thread(target=close_after_two, daemon=True)
        closer.start()
        first, text = run_sbc(study, config, spec, executor=executor, progress=False, fn=fn, plot=False)
        closer.join(DEADLINE_S)
    assert first.interrupted and "went away" in text and "run the same command again" in text
    assert 2 <= first.done < 6 and not first.failed
    kept = set(stored(study))
    assert kept == set(writes)
    ran_first = len(starts(log))

    second, _ = run_sbc(
        study,
        config,
        spec,
        executor=executors.make_executor(scheduler=cluster.scheduler_address),
        progress=False,
        fn=fn,
        plot=False,
    )
    assert second.done == 6 and second.ran == 6 - len(kept) and not second.interrupted
    resumed = [k for k, _ in starts(log)[ran_first:]]
    assert sorted(resumed) == sorted(set(serial_replicates(config, spec)) - kept)  # only the missing ones
    assert writes == {f"sbc-{i:04d}": 1 for i in range(6)}
    assert stored(study) == serial_replicates(config, spec)


def test_workers_of_another_version_are_refused(cluster, monkeypatch):
    import bayes_spill
    from bayes_spill.errors import BayesSpillError

    monkeypatch.setattr(bayes_spill, "__version__", "0.0.0-other")
    with pytest.raises(BayesSpillError, match="same version on every worker"):
        executors.make_executor(scheduler=cluster.scheduler_address)


def test_cli_scheduler_option_runs_the_study_on_the_cluster(config, cluster, tmp_path, monkeypatch, capsys):
    """`bayes-spill calibrate sbc --scheduler tcp://127.0.0.1:PORT` (stand-in fits)."""
    from bayes_spill.cli.main import main

    monkeypatch.setattr(sbc, "run_sbc", functools.partial(sbc.run_sbc, fn=fake_sbc_fit, plot=False))
    out = tmp_path / "cli"
    code = main(
        [
            "calibrate",
            "sbc",
            "--scheduler",
            cluster.scheduler_address,
            "--out",
            str(out),
            "--sims",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"on Dask cluster at {cluster.scheduler_address}" in printed and "3 of 3 replicates stored" in printed
    assert stored(out) == serial_replicates(config, replace(config.sbc, sims=3))


def test_the_cluster_guide_commands_parse():
    """docs/calibration.md's `bayes-spill calibrate --scheduler` lines are valid commands."""
    from bayes_spill.cli.main import build_parser

    guide = Path(__file__).resolve().parents[2] / "docs" / "calibration.md"
    lines = [line.split() for line in guide.read_text(encoding="utf-8").splitlines() if line.startswith("bayes-spill")]
    assert len(lines) == 2 and all("--scheduler" in words for words in lines)
    for words in lines:
        args = build_parser().parse_args(words[1:])
        assert args.scheduler.startswith("tcp://")


def test_workers_without_bayes_spill_are_refused():
    from bayes_spill.errors import BayesSpillError

    class NoPackage:
        def run(self, fn):
            raise ModuleNotFoundError("No module named 'bayes_spill'")

    with pytest.raises(BayesSpillError, match="cannot run bayes_spill .*install bayes_spill"):
        executors.check_workers(NoPackage())


# ---- slow: real fits ------------------------------------------------------------------------


TINY = dict(sims=2, firms=30, draws=20, tune=20, chains=1, ranks=19, bins=5)


@pytest.mark.slow
def test_real_sbc_fits_on_a_local_cluster_equal_the_serial_run(config, cluster, tmp_path):
    """Two real simulate-and-fit replicates (PyMC's sampler: its compiled code is cached across
    processes) on the two workers and in this process: the same numbers, timings aside."""
    cal = replace(config, sampler="pymc")
    spec = replace(config.sbc, simulation=(("first_year", 1996), ("last_year", 2005)), **TINY)
    runs = {}
    for name, executor in (
        ("serial", executors.SerialExecutor()),
        ("dask", executors.make_executor(scheduler=cluster.scheduler_address)),
    ):
        run, _ = sbc.run_sbc(tmp_path / name, cal, spec, executor=executor, progress=False, plot=False)
        assert run.done == 2 and not run.failed, run.failed
        runs[name] = {
            k: {f: v for f, v in r.items() if not f.endswith("_seconds")} for k, r in stored(tmp_path / name).items()
        }
    assert runs["dask"] == runs["serial"]
