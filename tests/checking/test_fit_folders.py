"""Fit folders with the real commands (tracker issue 20, parts 1 and 2): a refit into a checked
folder leaves no old report; a fit and a check started together leave one consistent run, in
either order; a read-only folder fails before sampling, checking or solving.

The concurrent cases hold one command in a subprocess just before its commit
(``fit_folder.TEST_STOP_ENV``: it waits until the test removes the marker it leaves) while the
test writes the folder, then let it go."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from folder_helpers import read_only
from tiny_fits import fit_copy, tiny_csv, tiny_fit

import bayes_spill
from bayes_spill.cli.main import main
from bayes_spill.inference import fit_folder, fitting, posterior_io

REPO = Path(__file__).resolve().parents[2]
CHECK = ["--ppc-draws", "10", "--bootstrap", "0", "--no-figures"]


def command(*args: str, hold: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(fit_folder.TEST_STOP_ENV, None)
    if hold:
        env[fit_folder.TEST_STOP_ENV] = hold
    return subprocess.Popen(
        [sys.executable, "-m", "bayes_spill.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_held(process: subprocess.Popen, folder: Path, step: str = "staged", timeout: float = 400.0) -> Path:
    start = time.monotonic()
    while True:
        markers = list(folder.glob(f"{fit_folder.STAGE_PREFIX}*/.{step}.held"))
        if markers:
            return markers[0]
        assert process.poll() is None, f"the command ended before its commit: {process.communicate()}"
        assert time.monotonic() - start < timeout
        time.sleep(0.05)


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_a_refit_into_a_checked_folder_leaves_no_old_report(tmp_path):
    folder = fit_copy("lychagin2010", tmp_path / "fit")
    assert main(["check", str(folder), *CHECK]) == 0
    assert (folder / "report.md").exists() and fit_folder.verify(folder) == []
    old_run = fit_folder.current_run(folder)
    # the refit: what fitting.fit commits, posterior_io.save of a newly sampled tree (the tiny fit's,
    # unchecked); sampling one here would add only a compile and a few draws to this test
    refit = bayes_spill.load(tiny_fit("lychagin2010")).tree
    posterior_io.save(refit, folder)
    assert outputs(folder) == sorted([*fit_folder.FIT_FILES, fit_folder.MANIFEST])
    assert fit_folder.verify(folder) == [] and fit_folder.current_run(folder) != old_run
    assert bayes_spill.load(folder).tree.attrs[fit_folder.RUN_ATTR] == refit.attrs[fit_folder.RUN_ATTR]
    assert refit.attrs[fit_folder.RUN_ATTR] == fit_folder.current_run(folder)
    assert (
        "posterior_predictive" not in bayes_spill.load(folder).tree.children
    )  # the check's group went with its report


# Slow: a check in a second process (imports and a check of its own); what it shows, a check of a
# run that a commit replaced writes nothing, is also tested on the folder transaction alone in
# tests/inference/test_fit_folder.py.
@pytest.mark.slow
def test_a_fit_that_commits_while_a_check_runs_stops_the_check(tmp_path):
    folder = fit_copy("lychagin2010", tmp_path / "fit")
    check = command("check", str(folder), *CHECK, hold="staged")
    marker = wait_held(check, folder)
    newer = bayes_spill.load(folder).tree
    posterior_io.save(newer, folder)  # a fit of the same data commits a new run meanwhile
    marker.unlink()
    _, err = check.communicate(timeout=120)
    assert check.returncode == 2, err[-2000:]
    assert "changed while check ran" in err and "nothing was written. Run check again" in err
    assert outputs(folder) == sorted([*fit_folder.FIT_FILES, fit_folder.MANIFEST])
    assert fit_folder.verify(folder) == [] and fit_folder.current_run(folder) == newer.attrs[fit_folder.RUN_ATTR]


# Slow: a fit in a second process (imports and a compile of its own); the commit order it shows
# is also tested on the folder transaction alone in tests/inference/test_fit_folder.py.
@pytest.mark.slow
def test_a_check_that_commits_while_a_fit_runs_is_replaced_by_the_fit(tmp_path):
    """The fit, held just before its commit; the check of the old run completes meanwhile; the
    fit's commit then removes the check's outputs with the run they describe."""
    folder = fit_copy("lychagin2010", tmp_path / "fit")
    fit = command(
        "fit",
        "--data",
        str(tiny_csv()),
        "--out",
        str(folder),
        "--draws",
        "10",
        "--tune",
        "10",
        "--chains",
        "1",
        "--sampler",
        "pymc",
        "--no-progress",
        hold="staged",
    )
    marker = wait_held(fit, folder)
    assert main(["check", str(folder), *CHECK]) == 0
    assert (folder / "report.md").exists()
    marker.unlink()
    _, err = fit.communicate(timeout=120)
    assert fit.returncode == 0, err[-2000:]
    assert outputs(folder) == sorted([*fit_folder.FIT_FILES, fit_folder.MANIFEST])
    assert fit_folder.verify(folder) == []
    assert bayes_spill.load(folder).tree["posterior"].sizes["draw"] == 10


# -- fail before the work ---------------------------------------------------------------------------
def must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the write check")


def test_a_fit_into_a_read_only_folder_fails_before_sampling(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "fit"
    folder.mkdir()
    monkeypatch.setattr(fitting, "sample", must_not_run)
    with read_only(folder):
        code = main(
            ["fit", "--data", str(tiny_csv()), "--out", str(folder), "--draws", "5", "--tune", "5", "--no-progress"]
        )
    assert code == 2 and "cannot write the fit to" in capsys.readouterr().err


def test_a_check_of_a_read_only_folder_fails_before_checking(tmp_path, monkeypatch, capsys):
    from bayes_spill.checking import report

    folder = fit_copy("lychagin2010", tmp_path / "fit")
    monkeypatch.setattr(report, "_run_checks", must_not_run)
    with read_only(folder):
        code = main(["check", str(folder), *CHECK])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to" in err and "nothing was computed" in err


@pytest.mark.parametrize("which", ["counterfactual", "sorting"])
def test_policy_commands_on_a_read_only_folder_fail_before_solving(tmp_path, monkeypatch, capsys, which):
    from bayes_spill.cli import policy

    folder = fit_copy("lychagin2010", tmp_path / "fit")
    monkeypatch.setattr(policy, "_world", must_not_run)
    args = ["--county", "06085", "--rd-stock", "220", "--year", "2002"] if which == "counterfactual" else []
    with read_only(folder):
        code = main([which, str(folder), *args])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write to" in err and "nothing was computed" in err


def test_a_policy_output_elsewhere_is_checked_too(tmp_path, monkeypatch, capsys):
    from bayes_spill.cli import policy

    folder = fit_copy("lychagin2010", tmp_path / "fit")
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    monkeypatch.setattr(policy, "_world", must_not_run)
    with read_only(elsewhere):
        code = main(["sorting", str(folder), "--out", str(elsewhere / "sorting.csv")])
    assert code == 2 and f"cannot write to {elsewhere}" in capsys.readouterr().err
