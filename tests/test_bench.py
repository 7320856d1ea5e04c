"""`bayes-spill bench` runs end to end on a tiny industry and reports ratios against the baseline."""

from __future__ import annotations

import json

import pytest

from bayes_spill.bench import format_tables, run_bench
from bayes_spill.cli import main


@pytest.fixture(scope="module")
def tiny_bench():
    # The Python backend compiles nothing, so this stays fast; real runs use C, Numba and JAX.
    return run_bench(scales=(0.06,), backends=("Python",), repeats=2)


def test_each_formulation_is_timed(tiny_bench):
    rows = {(r["formulation"], r["backend"]): r for r in tiny_bench["gradients"]}
    assert set(rows) == {("occupied", "Python"), ("all_counties", "Python")}
    for row in rows.values():
        assert row["grad_ms"] > 0 and row["compile_s"] > 0
    # all counties carries a county effect for each of the 3,142 counties
    assert rows[("all_counties", "Python")]["parameters"] > 3142 > rows[("occupied", "Python")]["parameters"]
    assert rows[("all_counties", "Python")]["ratio_to_baseline"] == pytest.approx(1.0)


def test_tables_and_json(tiny_bench, tmp_path, capsys):
    text = format_tables(tiny_bench)
    assert "grad_ms" in text and "ratio_to_baseline" in text
    out = tmp_path / "bench.json"
    assert main(["bench", "--scales", "0.06", "--backends", "Python", "--formulations", "occupied", "--repeats", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["gradients"][0]["formulation"] == "occupied"


def test_unknown_backend_is_a_clear_error(capsys):
    assert main(["bench", "--backends", "Fortran"]) == 2
    assert "unknown backend" in capsys.readouterr().err
