"""Embedded datasets, loadable by name. ``software`` is the default a new user fits: one simulated
software industry calibrated to Lychagin (2010) — 688 firms over 1978-2006, parameters of
Tables 3 and 5 — drawn by ``scripts/build_default_data.py`` with ``model.simulate.SOFTWARE_SETTINGS``."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from bayes_spill.data.inputs import load_panel
from bayes_spill.data.panel import PreparedPanel
from bayes_spill.errors import BayesSpillError

DEFAULT_DATASET = "software"

DATASETS = {"software": ("software.csv", "software_truth.json")}


def dataset_path(name: str = DEFAULT_DATASET) -> Path:
    if name not in DATASETS:
        raise BayesSpillError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return Path(str(resources.files("bayes_spill") / "data" / DATASETS[name][0]))


def load_dataset(name: str = DEFAULT_DATASET) -> PreparedPanel:
    """The embedded dataset as a PreparedPanel, with its truth attached."""
    panel_file = dataset_path(name)
    truth = json.loads(panel_file.with_name(DATASETS[name][1]).read_text())
    panel = load_panel(panel_file)
    return PreparedPanel(**{**panel.__dict__, "truth": truth, "source": f"embedded:{name}"})
