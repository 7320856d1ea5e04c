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
    from bayes_spill.model.simulate import SOFTWARE_SETTINGS
    from bayes_spill.model.simulate import simulate_industry, write_simulation

    settings = replace(SOFTWARE_SETTINGS, n_firms=60, first_year=1995, last_year=2004, mean_years=6.0)
    csv, _ = write_simulation(simulate_industry(settings, seed=21), ROOT / "data")
    return csv


def tiny_config(model: str = "lychagin2010"):
    from bayes_spill.inference.fitting import resolve_config

    backend, cores = SAMPLER
    return resolve_config(model).with_sampler(draws=DRAWS, tune=TUNE, chains=CHAINS, backend=backend, cores=cores, seed=3)


@functools.cache
def tiny_fit(model: str = "lychagin2010") -> Path:
    """A fit folder of ``model`` on tiny_csv(); do not write into it (use fit_copy)."""
    import bayes_spill

    out = ROOT / f"fit_{model}"
    bayes_spill.fit(data=tiny_csv(), model=tiny_config(model), out=out, progress=False, report=False)
    return out


def fit_copy(model: str, dest: Path) -> Path:
    shutil.copytree(tiny_fit(model), dest)
    return dest
