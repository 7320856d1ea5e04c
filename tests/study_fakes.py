"""Stand-ins for a calibration replicate's fit, shared by tests/calibration/: module level in a
module on pytest's path, so process pools and Dask workers import them by reference."""

from __future__ import annotations

import os
import time

import numpy as np


def fake_sbc_fit(task: dict) -> dict:
    """A stand-in for an SBC fit: ranks from the task seed."""
    rng = np.random.default_rng(task["data_seed"])
    return {
        "key": task["key"],
        "index": task["index"],
        "truth": task["params"],
        "ranks": {p: int(rng.integers(0, task["ranks"] + 1)) for p in task["parameters"]},
        "n_ranks": task["ranks"],
        "posterior": {},
        "rhat": {},
        "ess_bulk": {p: 1000.0 for p in task["parameters"]},
        "divergences": 0,
        "fit_seconds": 0.01,
        "simulate_seconds": 0.0,
        "location_converged": True,
    }


def logged_fit(log: str, pause: float, task: dict) -> dict:
    """fake_sbc_fit that first records (key, process id) in ``log`` and then takes ``pause`` s:
    what ran where, and long enough to be caught running."""
    with open(log, "a") as f:
        f.write(f"{task['key']} {os.getpid()}\n")
    time.sleep(pause)
    return fake_sbc_fit(task)
