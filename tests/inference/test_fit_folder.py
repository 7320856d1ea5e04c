"""A fit folder is one run's outputs (tracker issue 20, part 1), tested on plain files: a new run
removes what the run before left; an addition commits only onto the run it read; a lock orders
two writers; a process killed between any two writes of a commit leaves the old run or the new
one, entirely; an interrupt says which."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from folder_helpers import read_only

from bayes_spill.errors import BayesSpillError
from bayes_spill.inference import fit_folder
from bayes_spill.inference.fit_folder import FolderBusy, FolderChanged, Interrupted, Transaction

REPO = Path(__file__).resolve().parents[2]


def write_run(folder: Path, tag: str, extra: dict[str, str] | None = None) -> str:
    """A new run whose fit files say ``tag``; returns its run id."""
    with Transaction(folder, "fit", new_run=True) as tx:
        for name in fit_folder.FIT_FILES:
            (tx.stage / name).write_text(f"{name} of {tag}\n")
        for name, text in (extra or {}).items():
            (tx.stage / name).parent.mkdir(parents=True, exist_ok=True)
            (tx.stage / name).write_text(text)
    return tx.run_id


def add_check(folder: Path, tag: str, expect: str | None) -> None:
    with Transaction(folder, "check", expect_run=expect, replaces=("figures",)) as tx:
        (tx.stage / "report.md").write_text(f"report of {tag}\n")
        (tx.stage / "checks.csv").write_text(f"checks of {tag}\n")
        (tx.stage / "figures").mkdir()
        (tx.stage / "figures" / "ppc.png").write_text(f"figure of {tag}\n")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != fit_folder.LOCK)


def test_a_run_is_recorded_and_verifies(tmp_path):
    run = write_run(tmp_path / "fit", "A")
    manifest = fit_folder.read_manifest(tmp_path / "fit")
    assert manifest["run_id"] == run and sorted(manifest["files"]) == sorted(fit_folder.FIT_FILES)
    assert fit_folder.verify(tmp_path / "fit") == [] and hidden(tmp_path / "fit") == []


def test_a_refit_into_a_checked_folder_leaves_no_old_report(tmp_path):
    folder = tmp_path / "fit"
    first = write_run(folder, "A")
    add_check(folder, "A", first)
    (folder / "counterfactual_06085_2002_median.csv").write_text("old\n")
    (folder / "my_notes.txt").write_text("the user's own file\n")
    assert fit_folder.verify(folder) == ["counterfactual_06085_2002_median.csv is not an output of run " + first[:8]]
    write_run(folder, "B")
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == sorted([*fit_folder.FIT_FILES, fit_folder.MANIFEST, "my_notes.txt"])
    assert (folder / "posterior.nc").read_text() == "posterior.nc of B\n"
    assert fit_folder.verify(folder) == [] and hidden(folder) == []


def test_a_refit_clears_a_folder_written_before_run_records(tmp_path):
    folder = tmp_path / "fit"
    folder.mkdir()
    for name in (*fit_folder.FIT_FILES, "report.md", "report.html", "checks.csv", "sorting.csv"):
        (folder / name).write_text("legacy\n")
    (folder / "figures").mkdir()
    (folder / "figures" / "old.png").write_text("legacy\n")
    write_run(folder, "B")
    assert fit_folder.verify(folder) == []
    assert not (folder / "report.md").exists() and not (folder / "figures").exists()
    assert not (folder / "report.html").exists()


def test_a_check_adds_to_the_run_it_read(tmp_path):
    folder = tmp_path / "fit"
    run = write_run(folder, "A", {"figures/stale.png": "x"})
    add_check(folder, "A", run)
    manifest = fit_folder.read_manifest(folder)
    assert manifest["run_id"] == run
    assert sorted(manifest["files"]) == sorted([*fit_folder.FIT_FILES, "report.md", "checks.csv", "figures/ppc.png"])
    assert not (folder / "figures" / "stale.png").exists()  # the figures are replaced as a whole
    assert fit_folder.verify(folder) == []


def test_a_check_of_a_run_that_was_replaced_writes_nothing(tmp_path):
    folder = tmp_path / "fit"
    first = write_run(folder, "A")
    write_run(folder, "B")
    with pytest.raises(FolderChanged, match=r"changed while check ran: it now holds the fit of .*nothing was written"):
        add_check(folder, "A", first)
    assert not (folder / "report.md").exists() and fit_folder.verify(folder) == [] and hidden(folder) == []


def test_a_read_only_folder_fails_before_the_block_runs(tmp_path):
    folder = tmp_path / "fit"
    write_run(folder, "A")
    ran = []
    with read_only(folder):
        with pytest.raises(BayesSpillError, match=r"cannot write to .*fit.*nothing was computed"):
            with Transaction(folder, "check"):
                ran.append(True)
    assert ran == []


# -- interrupts ----------------------------------------------------------------------------------------
def test_an_interrupt_before_the_commit_keeps_the_old_run_and_says_so(tmp_path):
    folder = tmp_path / "fit"
    run = write_run(folder, "A")
    with pytest.raises(Interrupted) as caught:
        with Transaction(folder, "fit", new_run=True) as tx:
            (tx.stage / "posterior.nc").write_text("half")
            raise KeyboardInterrupt
    assert f"no partial output was written: {folder} holds the fit of" in caught.value.outcome
    assert f"(run {run[:8]}), as before" in caught.value.outcome
    assert fit_folder.current_run(folder) == run and fit_folder.verify(folder) == [] and hidden(folder) == []


def test_a_signal_during_the_commit_is_held_until_the_new_run_is_whole(tmp_path, monkeypatch):
    folder = tmp_path / "fit"
    write_run(folder, "A")
    apply = fit_folder._apply

    def signalled_apply(where, journal):
        os.kill(os.getpid(), signal.SIGINT)  # held back: the commit completes first
        apply(where, journal)

    monkeypatch.setattr(fit_folder, "_apply", signalled_apply)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted) as caught:
            write_run(folder, "B")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert f"after {folder} was written in full: it holds the new outputs of fit" == caught.value.outcome
    assert (folder / "posterior.nc").read_text() == "posterior.nc of B\n" and fit_folder.verify(folder) == []


KILL_SCRIPT = """
import sys
from pathlib import Path
from bayes_spill.inference.fit_folder import Transaction
folder = Path(sys.argv[1])
with Transaction(folder, "fit", new_run=True) as tx:
    for name in ("posterior.nc", "summary.csv", "versions.json"):
        (tx.stage / name).write_text(f"{name} of B\\n")
"""


def test_a_kill_between_any_two_writes_of_a_commit_leaves_one_whole_run(tmp_path):
    """A kill -9 after each action of the journal (old outputs aside, each file into place, the
    run record, the journal removed): the next writer completes the commit, and the folder is
    then the new run; before the journal, the old one."""
    outcomes = []
    for step in range(1, 12):
        folder = tmp_path / f"step{step}"
        old = write_run(folder, "A")
        add_check(folder, "A", old)
        env = {**os.environ, "PYTHONPATH": str(REPO), fit_folder.TEST_STOP_ENV: f"apply:{step}"}
        done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(folder)], env=env, capture_output=True, text=True)
        killed = done.returncode == 137
        fit_folder.recover(folder)
        assert fit_folder.verify(folder) == [], (step, done.stderr)
        assert hidden(folder) == [], step
        tags = {(folder / name).read_text().split(" of ")[1] for name in fit_folder.FIT_FILES}
        assert len(tags) == 1, (step, tags)
        outcomes.append((step, killed, tags.pop().strip()))
        if not killed:
            break
    assert all(tag == "B" for _, _, tag in outcomes), outcomes  # the journal existed: completed
    assert outcomes[-1][1] is False and len(outcomes) >= 6  # every action was a kill point


def test_a_stage_left_by_a_killed_process_is_removed(tmp_path):
    folder = tmp_path / "fit"
    run = write_run(folder, "A")
    stale = folder / f"{fit_folder.STAGE_PREFIX}deadbeef0000"
    stale.mkdir()
    (stale / fit_folder.OWNER).write_text(f"{os.uname().nodename} 999999999\n")
    (stale / "posterior.nc").write_text("half")
    fit_folder.recover(folder)
    assert not stale.exists() and fit_folder.current_run(folder) == run


# -- the lock ------------------------------------------------------------------------------------------
def test_a_second_writer_says_who_holds_the_lock(tmp_path):
    folder = tmp_path / "fit"
    folder.mkdir()
    errors = []

    def second():
        try:
            with fit_folder.locked(folder, "check", wait=0.3):
                pass
        except FolderBusy as exc:
            errors.append(str(exc))

    with fit_folder.locked(folder, "fit"):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(errors) == 1 and f"is being written by fit (pid {os.getpid()}" in errors[0]


def test_a_second_writer_waits_for_the_first(tmp_path, capsys):
    folder = tmp_path / "fit"
    folder.mkdir()
    order = []

    def second():
        with fit_folder.locked(folder, "check", wait=30):
            order.append("check")

    with fit_folder.locked(folder, "fit"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("fit")
    thread.join()
    assert order == ["fit", "check"]
    assert "waiting for" in capsys.readouterr().err


def test_the_run_record_is_json_a_person_can_read(tmp_path):
    write_run(tmp_path / "fit", "A")
    text = (tmp_path / "fit" / fit_folder.MANIFEST).read_text()
    record = json.loads(text)
    assert record["written"]["command"] == "fit" and "sha256" in record["files"]["posterior.nc"]
