"""Tiny fits shared by the check, comparison, figure and README tests: made once per test process
(functools.cache), in a temporary folder removed at exit. Tests that write into a fit copy it
first (``fit_copy``), so the shared folders stay as sampled.

Sampler: PyMC's NUTS with one core. Its compiled C code is cached by PyTensor across processes,
so after the first run on a machine a fit takes seconds (nutpie recompiles with numba every time).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(tempfile.mkdtemp(prefix="bayes_spill_tiny_"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)

DRAWS = 40
TUNE = 60
CHAINS = 2
SAMPLER = ("pymc", 1)  # backend, cores


@functools.cache
def tiny_csv() -> Path:
    """A small simulated industry clustered like the embedded default (60 firms, 1995-2004)."""
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS, simulate_industry, write_simulation

    settings = replace(SOFTWARE_SETTINGS, n_firms=60, first_year=1995, last_year=2004, mean_years=6.0)
    csv, _ = write_simulation(simulate_industry(settings, seed=21), ROOT / "data")
    return csv


def tiny_config(model: str = "lychagin2010"):
    from bayes_spill.inference.fitting import resolve_config

    backend, cores = SAMPLER
    return resolve_config(model).with_sampler(
        draws=DRAWS, tune=TUNE, chains=CHAINS, backend=backend, cores=cores, seed=3
    )


# How often each tiny fit prepared its model data and built the half-life table (the fit must do
# each once: tests/model/test_integrated.py reads this instead of compiling a fit of its own).
PREPARATIONS: dict[str, dict[str, int]] = {}


@functools.cache
def tiny_fit(model: str = "lychagin2010") -> Path:
    """A fit folder of ``model`` on tiny_csv(); do not write into it (use fit_copy)."""
    from unittest import mock

    import bayes_spill
    from bayes_spill.inference import fitting
    from bayes_spill.spillover import interpolation

    calls = PREPARATIONS[model] = {"model_data": 0, "table": 0}

    def counting(name, real):
        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return counted

    out = ROOT / f"fit_{model}"
    with (
        mock.patch.object(fitting, "model_data", counting("model_data", fitting.model_data)),
        mock.patch.object(interpolation, "build_halflife_table", counting("table", interpolation.build_halflife_table)),
    ):
        bayes_spill.fit(data=tiny_csv(), model=tiny_config(model), out=out, progress=False, report=False)
    return out


def fit_copy(model: str, dest: Path) -> Path:
    shutil.copytree(tiny_fit(model), dest)
    return dest


# -- fits with the default sampler (nutpie) ---------------------------------------------------------
# nutpie compiles the model afresh for every fit (its numba callbacks cannot be cached; the
# compile, not the few draws, is nearly all of a tiny fit's time), so the fast suite makes each of
# these once and every test of `fit`'s outputs, its CLI and its reproducibility reads them.
NUTPIE_SEED = 3
NUTPIE_OPTIONS = dict(draws=40, tune=40, chains=2)


@functools.cache
def nutpie_csv() -> Path:
    """A tiny simulated industry (40 firms, 1995-2004) for the default model and sampler."""
    from bayes_spill.model.simulate import SimulationSettings, simulate_industry, write_simulation

    panel = simulate_industry(SimulationSettings(n_firms=40, first_year=1995, last_year=2004), seed=5)
    csv, _ = write_simulation(panel, ROOT / "nutpie_data")
    return csv


def nutpie_cli_args() -> list[str]:
    """NUTPIE_OPTIONS as command-line options."""
    return [*(token for k, v in NUTPIE_OPTIONS.items() for token in (f"--{k}", str(v))), "--no-progress"]


@functools.cache
def nutpie_cli_fit() -> Path:
    """`bayes-spill fit --data nutpie_csv() --seed NUTPIE_SEED` (no --model: the default for 40
    firms) into a folder; do not write into it."""
    from bayes_spill.cli.main import main

    out = ROOT / "nutpie_cli" / "run"
    assert (
        main(["fit", "--data", str(nutpie_csv()), "--out", str(out), "--seed", str(NUTPIE_SEED), *nutpie_cli_args()])
        == 0
    )
    return out


@functools.cache
def nutpie_fit(seed: int = NUTPIE_SEED):
    """``bayes_spill.fit`` of nutpie_csv() in memory, as the command line's fit but for the seed."""
    import bayes_spill

    return bayes_spill.fit(data=str(nutpie_csv()), seed=seed, progress=False, report=False, **NUTPIE_OPTIONS).tree
