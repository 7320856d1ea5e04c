"""Crash-safe outputs (tracker issue 8, part 2): a fit interrupted at any point (SIGINT, SIGTERM,
an exception in sampling) leaves DIR/posterior.nc as it was (the previous complete posterior, or
none) or a complete, readable new one, and never a temporary file.

The kill tests run the real ``bayes-spill fit`` in a subprocess on a tiny simulated CSV and signal
it: while it writes (``BAYES_SPILL_TEST_WRITE_DELAY`` holds the written temporary file in place
before the rename, so the signal lands inside the atomic writer) and, in the slow suite, at
several delays from the start (imports, compilation, sampling).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayes_spill
from bayes_spill.cli.main import main
from bayes_spill.errors import PosteriorError
from bayes_spill.inference import fit_folder, fitting, posterior_io
from bayes_spill.model.simulate import SimulationSettings, simulate_industry, write_simulation

REPO = Path(__file__).resolve().parents[2]
TINY = ["--draws", "20", "--tune", "20", "--chains", "2", "--no-progress", "--seed", "4"]
SCRIPT = Path(sys.executable).with_name("bayes-spill")


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    panel = simulate_industry(SimulationSettings(n_firms=30, first_year=1996, last_year=2003), seed=8)
    csv_path, _ = write_simulation(panel, tmp_path_factory.mktemp("tiny"))
    return csv_path


def small_tree(seed: int = 0) -> xr.DataTree:
    """A small DataTree with the groups a fit has (what 'the previous posterior' is here)."""
    rng = np.random.default_rng(seed)
    draws = {"chain": 2, "draw": 5}
    posterior = xr.Dataset(
        {"gamma": (("chain", "draw"), rng.normal(size=(2, 5)))}, coords={k: np.arange(v) for k, v in draws.items()}
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 5), bool))}, coords=posterior.coords)
    loglik = xr.Dataset({"firm_loglik": (("chain", "draw", "firm"), rng.normal(size=(2, 5, 3)))})
    data = xr.Dataset({"x": (("obs",), np.arange(3.0))})
    tree = xr.DataTree.from_dict(
        {
            "/posterior": posterior,
            "/sample_stats": stats,
            "/log_likelihood": loglik,
            "/observed_data": data,
            "/constant_data": data,
        }
    )
    tree.attrs["model_name"] = "previous"
    return tree


def previous_posterior(out: Path) -> bytes:
    posterior_io.save(small_tree(), out)
    return (out / "posterior.nc").read_bytes()


def leftovers(out: Path) -> list[str]:
    """Temporary files, stages, aside folders and journals: nothing of an unfinished write may stay."""
    if not out.exists():
        return []
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != fit_folder.LOCK)


def check_outcome(out: Path, before: bytes | None) -> str:
    """The posterior is the previous one, absent (when there was none) or complete and readable."""
    assert not leftovers(out), f"temporary files left: {leftovers(out)}"
    target = out / "posterior.nc"
    if not target.exists():
        assert before is None, "the previous posterior was removed"
        return "absent"
    if before is not None and target.read_bytes() == before:
        assert fit_folder.verify(out) == [], fit_folder.verify(out)  # the previous run, whole
        return "previous"
    assert fit_folder.verify(out) == [], fit_folder.verify(out)  # the new run, whole
    tree = bayes_spill.load(out).tree  # complete: every group, readable
    assert tree["posterior"].sizes["draw"] == 20 and tree["posterior"].sizes["chain"] == 2
    return "new"


# -- in-process: exceptions and interrupts inside sampling ----------------------------------------------
def test_an_exception_in_sampling_keeps_the_previous_posterior(tiny_csv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = previous_posterior(out)

    def failing_sample(*args, **kwargs):
        raise RuntimeError("the sampler crashed")

    monkeypatch.setattr(fitting, "sample", failing_sample)
    with pytest.raises(RuntimeError, match="sampler crashed"):
        bayes_spill.fit(data=str(tiny_csv), out=out, draws=5, tune=5, chains=1, progress=False, report=False)
    assert check_outcome(out, before) == "previous"


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupt_in_sampling_exits_cleanly(tiny_csv, tmp_path, monkeypatch, capsys, signal_name):
    """Ctrl-C, or SIGTERM (which the CLI turns into it), while sampling: exit 130 / 143 with a
    message, and the previous posterior untouched."""
    out = tmp_path / "run"
    before = previous_posterior(out)
    signum = getattr(signal, signal_name)

    def interrupted_sample(*args, **kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here
        raise AssertionError("the signal was not delivered")

    monkeypatch.setattr(fitting, "sample", interrupted_sample)
    # A shell starts background jobs with SIGINT ignored (as CI may run us); a user's terminal
    # delivers Ctrl-C, so give this process Python's own handler for the test.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["fit", "--data", str(tiny_csv), "--out", str(out), *TINY])
    finally:
        signal.signal(signal.SIGINT, previous_int)
    err = capsys.readouterr().err
    assert code == 128 + signum, err
    assert "interrupted" in err and "Traceback" not in err
    assert f"{out} holds the fit of" in err and "as before" in err  # says what the folder holds
    assert check_outcome(out, before) == "previous"
    assert signal.getsignal(signal.SIGTERM) == handler  # main restores the handler it replaced


def test_a_sampler_that_swallows_ctrl_c_does_not_yield_a_short_fit():
    """nutpie and PyMC catch KeyboardInterrupt and return the draws so far; fit must not keep them."""
    config = fitting.resolve_config("lychagin2010").with_sampler(chains=2, draws=20)
    short = xr.DataTree.from_dict({"/posterior": xr.Dataset({"gamma": (("chain", "draw"), np.zeros((2, 7)))})})
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        fitting._require_complete(short, config)
    one_chain = xr.DataTree.from_dict({"/posterior": xr.Dataset({"gamma": (("chain", "draw"), np.zeros((1, 20)))})})
    with pytest.raises(KeyboardInterrupt):
        fitting._require_complete(one_chain, config)
    full = xr.DataTree.from_dict({"/posterior": xr.Dataset({"gamma": (("chain", "draw"), np.zeros((2, 20)))})})
    assert fitting._require_complete(full, config) is full


def test_a_failed_write_leaves_no_temporary_and_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "run"
    before = previous_posterior(out)

    def half_write(self, path, **kwargs):
        Path(path).write_bytes(b"\x89HDF half")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", half_write)
    with pytest.raises(OSError):
        posterior_io.save(small_tree(1), out)
    assert check_outcome(out, before) == "previous"


def test_saved_files_have_the_usual_permissions(tmp_path):
    posterior_io.save(small_tree(), tmp_path / "run")
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("posterior.nc", "summary.csv"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# -- loading checks what a posterior claims ---------------------------------------------------------
def test_load_names_what_differs_from_the_configuration(tmp_path):
    from bayes_spill.config import load_config

    config = load_config(REPO / "models" / "lychagin2010.toml").with_sampler(seed=3)
    tree = small_tree()
    tree.attrs.update(
        {
            "model_config": config.to_toml(),
            "model_config_hash": config.hash(),
            "bayes_spill_version": bayes_spill.__version__,
        }
    )
    posterior_io.save(tree, tmp_path / "run")
    assert bayes_spill.load(tmp_path / "run", config=config).tree.attrs["model_config_hash"] == config.hash()
    other = load_config(REPO / "models" / "lychagin2010.toml").with_sampler(seed=4, draws=7)
    with pytest.raises(PosteriorError) as info:
        bayes_spill.load(tmp_path / "run", config=other)
    message = str(info.value)
    assert "sampler.seed: 3 in the posterior, 4 in" in message
    assert f"sampler.draws: {config.sampler.draws} in the posterior, 7 in" in message


def test_load_rejects_a_posterior_whose_configuration_was_altered(tmp_path):
    from bayes_spill.config import load_config

    config = load_config(REPO / "models" / "lychagin2010.toml")
    tree = small_tree()
    tree.attrs.update(
        {
            "model_config": config.with_sampler(seed=config.sampler.seed + 1).to_toml(),
            "model_config_hash": config.hash(),
            "bayes_spill_version": bayes_spill.__version__,
        }
    )
    posterior_io.save(tree, tmp_path / "run")
    with pytest.raises(PosteriorError, match="altered"):
        bayes_spill.load(tmp_path / "run")


def test_load_reports_another_package_version(tmp_path):
    from bayes_spill.config import load_config

    config = load_config(REPO / "models" / "lychagin2010.toml")
    tree = small_tree()
    tree.attrs.update(
        {"model_config": config.to_toml(), "model_config_hash": config.hash(), "bayes_spill_version": "0.0.1"}
    )
    posterior_io.save(tree, tmp_path / "run")
    with pytest.raises(PosteriorError, match="written by bayes_spill 0.0.1"):
        bayes_spill.load(tmp_path / "run", config=config)


# -- the real command, killed ------------------------------------------------------------------------
def start_fit(csv: Path, out: Path, write_delay: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(posterior_io.WRITE_DELAY_ENV, None)
    if write_delay is not None:
        env[posterior_io.WRITE_DELAY_ENV] = write_delay
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bayes_spill.cli.main"]
    return subprocess.Popen(
        [*command, "fit", "--data", str(csv), "--out", str(out), *TINY],
        cwd=out.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_temporary(process: subprocess.Popen, out: Path, name: str, timeout: float = 400.0) -> None:
    start = time.monotonic()
    while not list(out.glob(f"{fit_folder.STAGE_PREFIX}*/.{name}.held")):  # written in the fit's stage, and held
        assert process.poll() is None, f"the fit ended before writing {name}: {process.communicate()}"
        assert time.monotonic() - start < timeout, f"no temporary {name} after {timeout} s"
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"the fit did not stop within {timeout} s of the signal: {err[-3000:]}") from None
    return process.returncode, err


def kill_while_writing(
    csv: Path, out: Path, signum: int, name: str = "posterior.nc", before: bytes | None = None
) -> str:
    process = start_fit(csv, out, write_delay=f"{name}=120")
    wait_for_temporary(process, out, name)
    process.send_signal(signum)
    code, err = finish(process)
    assert code == 128 + signum, f"exit code {code}: {err[-3000:]}"
    assert "interrupted; no partial output was written" in err and "as before" in err and "Traceback" not in err, err[
        -3000:
    ]
    return check_outcome(out, before)


def test_sigterm_early_in_a_real_fit_keeps_the_previous_posterior(tiny_csv, tmp_path):
    """A few seconds in (imports, data, model build): the cheap case, in the fast suite."""
    out = tmp_path / "run"
    before = previous_posterior(out)
    process = start_fit(tiny_csv, out)
    time.sleep(4.0)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code in (128 + signal.SIGTERM, -signal.SIGTERM), f"exit code {code}: {err[-3000:]}"  # -15: before main ran
    assert check_outcome(out, before) == "previous"


@pytest.mark.slow
def test_sigterm_while_the_posterior_is_written_keeps_the_previous_one(tiny_csv, tmp_path):
    out = tmp_path / "run"
    before = previous_posterior(out)
    assert kill_while_writing(tiny_csv, out, signal.SIGTERM, before=before) == "previous"


@pytest.mark.slow
def test_kills_at_every_stage_of_a_real_fit(tiny_csv, tmp_path):
    """SIGINT and SIGTERM while each file is written, with and without a previous posterior, and
    at delays from the start (imports, compilation, sampling); then a run that completes."""
    outcomes = []
    out = tmp_path / "run"
    outcomes.append(("SIGINT writing, no previous", kill_while_writing(tiny_csv, out, signal.SIGINT, before=None)))
    assert outcomes[-1][1] == "absent"
    before = previous_posterior(out)
    outcomes.append(("SIGINT writing posterior", kill_while_writing(tiny_csv, out, signal.SIGINT, before=before)))
    assert outcomes[-1][1] == "previous"
    # the summary is written after the posterior, into the same stage: a kill there keeps the
    # previous run whole (tracker issue 20: never a new posterior beside an old summary)
    outcomes.append(
        ("SIGTERM writing summary", kill_while_writing(tiny_csv, out, signal.SIGTERM, "summary.csv", before=before))
    )
    assert outcomes[-1][1] == "previous"
    before = (out / "posterior.nc").read_bytes()
    rng = np.random.default_rng(0)
    for i, delay in enumerate(sorted(rng.uniform(0.5, 30.0, size=6))):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        process = start_fit(tiny_csv, out)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signum)
        code, err = finish(process)
        assert "Traceback" not in err or code != 128 + signum, err[-3000:]
        result = check_outcome(out, before)
        outcomes.append((f"{signal.Signals(signum).name} after {delay:.1f} s (exit {code})", result))
        if result == "new":
            before = (out / "posterior.nc").read_bytes()
    process = start_fit(tiny_csv, out)
    code, err = finish(process, timeout=600)
    assert code == 0, err[-3000:]
    outcomes.append(("uninterrupted", check_outcome(out, before)))
    assert outcomes[-1][1] == "new"
    print("\n" + "\n".join(f"{what}: {result}" for what, result in outcomes))
