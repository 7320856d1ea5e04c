"""Rebuild the embedded default dataset (bayes_spill/data/software.csv and its truth).

.venv/bin/python scripts/build_default_data.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bayes_spill.data.datasets import DATASETS
from bayes_spill.model.simulate import SOFTWARE_SEED, SOFTWARE_SETTINGS, simulate_industry, write_simulation

DATA = Path(__file__).resolve().parents[1] / "bayes_spill" / "data"


def main() -> None:
    panel = simulate_industry(SOFTWARE_SETTINGS, seed=SOFTWARE_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, truth_path = write_simulation(panel, tmp)
        csv_name, truth_name = DATASETS["software"]
        shutil.copyfile(csv_path, DATA / csv_name)
        shutil.copyfile(truth_path, DATA / truth_name)
    for key, value in panel.summary().items():
        print(f"{key}: {value}")
    print(
        "location fixed point:",
        panel.truth["location_iterations"],
        "iterations, firms still moving:",
        panel.truth["location_movers_at_stop"],
    )


if __name__ == "__main__":
    main()
