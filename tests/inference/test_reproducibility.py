"""Reproducibility (tracker issue 8, part 3): the same data, configuration and seed give
bit-identical posterior draws on the same machine, for every supported sampler (nutpie, PyMC's
NUTS, and NumPyro when JAX and NumPyro import), and a fit records the versions of everything its
numbers depend on (attrs["versions"], and DIR/versions.json beside DIR/summary.csv).

The nutpie check is in the fast suite; PyMC's and NumPyro's are slow (each fit compiles).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from tiny_fits import NUTPIE_SEED, default_fit, nutpie_fit

import bayes_spill
from bayes_spill.inference import posterior_io
from bayes_spill.model.simulate import SimulationSettings, simulate_industry

TINY = dict(draws=15, tune=15, chains=2, progress=False, report=False)
VERSIONED = (
    "python",
    "bayes_spill",
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "arviz-base",
    "arviz-stats",
    "h5netcdf",
    "h5py",
)


@pytest.fixture(scope="module")
def panel():
    return simulate_industry(SimulationSettings(n_firms=30, first_year=1996, last_year=2003), seed=21)


def assert_bit_identical(first, second) -> None:
    for group in ("posterior", "log_likelihood", "log_prior", "prior"):
        a, b = first[group].to_dataset(), second[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            x, y = a[name].values, b[name].values
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), f"{group}/{name} differs between two fits with the same seed"


def fit_twice(panel, backend: str, seed: int = 5):
    first = bayes_spill.fit(data=panel, backend=backend, seed=seed, **TINY).tree
    second = bayes_spill.fit(data=panel, backend=backend, seed=seed, **TINY).tree
    return first, second


@pytest.fixture(scope="module")
def nutpie_fits():
    """Two nutpie fits of one tiny industry with the same seed: `bayes_spill.fit` in Python and
    `bayes-spill fit` read back from its folder (each nutpie fit compiles its model anew, so the
    pair is shared with test_fit.py)."""
    return nutpie_fit(NUTPIE_SEED), bayes_spill.load(default_fit()).tree


def test_nutpie_same_seed_bit_identical(nutpie_fits):
    first, second = nutpie_fits
    assert_bit_identical(first, second)
    assert first.attrs["seed"] == second.attrs["seed"] == NUTPIE_SEED
    assert first.attrs["model_config_hash"] == second.attrs["model_config_hash"]
    assert first.attrs["data_sha256"] == second.attrs["data_sha256"]


def test_versions_are_recorded_in_the_fit_and_beside_the_summary(nutpie_fits, tmp_path):
    tree = nutpie_fits[0]
    versions = json.loads(tree.attrs["versions"])
    for name in VERSIONED:
        assert versions.get(name) not in (None, "", "not installed"), name
    assert versions["bayes_spill"] == bayes_spill.__version__
    posterior_io.save(tree, tmp_path / "run")
    assert json.loads((tmp_path / "run" / posterior_io.VERSIONS_FILE).read_text()) == versions
    assert (tmp_path / "run" / "summary.csv").is_file()
    assert json.loads(bayes_spill.load(tmp_path / "run").tree.attrs["versions"]) == versions


@pytest.mark.slow
def test_pymc_same_seed_bit_identical(panel):
    first, second = fit_twice(panel, "pymc")
    assert_bit_identical(first, second)
    other = bayes_spill.fit(data=panel, backend="pymc", seed=6, **TINY).tree
    assert not np.array_equal(first["posterior"]["halflife_km"].values, other["posterior"]["halflife_km"].values)


NUMPYRO = importlib.util.find_spec("numpyro") is not None and importlib.util.find_spec("jax") is not None


@pytest.mark.slow
@pytest.mark.skipif(not NUMPYRO, reason="JAX and NumPyro are not installed (pip install 'bayes_spill[jax]')")
def test_numpyro_same_seed_bit_identical(panel):
    first, second = fit_twice(panel, "numpyro")
    assert_bit_identical(first, second)
    versions = json.loads(first.attrs["versions"])
    assert versions["jax"] != "not installed" and versions["numpyro"] != "not installed"
