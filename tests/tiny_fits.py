"""Tiny fits shared by the check, comparison, figure and README tests: made once per test run, in
a temporary folder removed at the end. Tests that write into a fit copy it first (``fit_copy``),
so the shared folders stay as sampled.

Once per run, not per process: under pytest-xdist every worker reads the folder that
tests/conftest.py names in ``ROOT_ENV`` for the whole run, and the first worker to need a fit
makes it there while holding a lock on it (``made_once``); a worker that needs it meanwhile
waits, then reads the same folder. Without that folder (this module imported outside pytest) a
process makes its own, removed at exit.

Every fit is of the same small industry (``tiny_csv``), so that the tables and the comparisons
can put them side by side. The default model's fit is the command line's, with nutpie (its
compiled model is shared by the other nutpie fits of a process); the other models' are PyMC's,
with one core (PyTensor caches its compiled C code across processes).
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT_ENV = "BAYES_SPILL_TINY_FITS"


def _root() -> Path:
    shared = os.environ.get(ROOT_ENV)
    if shared:
        return Path(shared)
    own = Path(tempfile.mkdtemp(prefix="bayes_spill_tiny_"))
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own


ROOT = _root()


def made_once(name: str, make: Callable[[Path], object]) -> Path:
    """ROOT/name, made by ``make(ROOT/name)`` unless a process of this run already made it.

    A file lock serialises the makers: the first makes the folder and marks it done, the others
    wait for it and then find the mark. A maker that failed left no mark: the next one starts
    afresh."""
    out, done = ROOT / name, ROOT / f"{name}.done"
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            make(out)
            done.touch()
    return out


DRAWS = 40
TUNE = 60
CHAINS = 2
SAMPLER = ("pymc", 1)  # backend, cores


@functools.cache
def tiny_csv() -> Path:
    """A small simulated industry clustered like the embedded default (60 firms, 1995-2004)."""
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS, simulate_industry, write_simulation

    settings = replace(SOFTWARE_SETTINGS, n_firms=60, first_year=1995, last_year=2004, mean_years=6.0)
    return made_once("data", lambda out: write_simulation(simulate_industry(settings, seed=21), out)) / "panel.csv"


def tiny_config(model: str = "lychagin2010"):
    from bayes_spill.inference.fitting import resolve_config

    backend, cores = SAMPLER
    return resolve_config(model).with_sampler(
        draws=DRAWS, tune=TUNE, chains=CHAINS, backend=backend, cores=cores, seed=3
    )


# How often each tiny fit prepared its model data and built the half-life table (the fit must do
# each once: tests/model/test_integrated.py reads this instead of compiling a fit of its own),
# counted by the process that made the fit and stored beside it for the others.
PREPARATIONS: dict[str, dict[str, int]] = {}


def made_once_counting_preparations(name: str, model: str, run: Callable[[Path], object]) -> Path:
    """``made_once(name, run)``, counting the model-data preparations and half-life tables of the
    making process into PREPARATIONS[model] (stored beside the fit for the processes that read it)."""
    from unittest import mock

    from bayes_spill.inference import fitting
    from bayes_spill.spillover import interpolation

    counts = ROOT / f"{name}.preparations.json"

    def make(out: Path) -> None:
        calls = {"model_data": 0, "table": 0}

        def counting(key, real):
            def counted(*args, **kwargs):
                calls[key] += 1
                return real(*args, **kwargs)

            return counted

        with (
            mock.patch.object(fitting, "model_data", counting("model_data", fitting.model_data)),
            mock.patch.object(
                interpolation, "build_halflife_table", counting("table", interpolation.build_halflife_table)
            ),
        ):
            run(out)
        counts.write_text(json.dumps(calls))

    out = made_once(name, make)
    PREPARATIONS[model] = json.loads(counts.read_text())
    return out


@functools.cache
def tiny_fit(model: str = "lychagin2010") -> Path:
    """A fit folder of ``model`` on tiny_csv(); do not write into it (use fit_copy). The default
    model's is the command line's fit with nutpie (``default_fit``); the others are PyMC's."""
    from bayes_spill.config import DEFAULT_MODEL

    if model == DEFAULT_MODEL:
        return default_fit()

    def run(out: Path) -> None:
        import bayes_spill

        bayes_spill.fit(data=tiny_csv(), model=tiny_config(model), out=out, progress=False, report=False)

    return made_once_counting_preparations(f"fit_{model}", model, run)


def fit_copy(model: str, dest: Path) -> Path:
    shutil.copytree(tiny_fit(model), dest)
    return dest


# -- fits of the default model with the default sampler (nutpie) ----------------------------------
# nutpie's compile, not the few draws, is nearly all of a tiny fit's time: the fast suite compiles
# the default model on tiny_csv() once per process (fitting keeps the compiled model), in the
# command line's fit; every other nutpie fit of it (other seeds, a DataFrame, a Stata file) and
# every test of `fit`'s outputs, its CLI, its reproducibility, the tables and the walkthrough read
# that fit or sample the model it compiled (these files are one xdist unit, tests/conftest.py).
NUTPIE_SEED = 3
NUTPIE_OPTIONS = dict(draws=DRAWS, tune=40, chains=CHAINS)


def nutpie_cli_args() -> list[str]:
    """NUTPIE_OPTIONS as command-line options."""
    return [*(token for k, v in NUTPIE_OPTIONS.items() for token in (f"--{k}", str(v))), "--no-progress"]


@functools.cache
def default_fit() -> Path:
    """`bayes-spill fit --data tiny_csv() --seed NUTPIE_SEED` (no --model: the default model,
    nutpie) into a folder; do not write into it."""
    from bayes_spill.cli.main import main
    from bayes_spill.config import DEFAULT_MODEL

    def run(out: Path) -> None:
        argv = ["fit", "--data", str(tiny_csv()), "--out", str(out / "run"), "--seed", str(NUTPIE_SEED)]
        assert main([*argv, *nutpie_cli_args()]) == 0

    return made_once_counting_preparations("default_fit", DEFAULT_MODEL, run) / "run"


@functools.cache
def nutpie_fit(seed: int = NUTPIE_SEED):
    """``bayes_spill.fit`` of tiny_csv() in memory, as the command line's fit but for the seed. The
    command line's fit is made first, so that it is the one that compiles the model in a process."""
    import bayes_spill

    default_fit()
    return bayes_spill.fit(data=str(tiny_csv()), seed=seed, progress=False, report=False, **NUTPIE_OPTIONS).tree
