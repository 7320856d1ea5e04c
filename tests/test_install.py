"""bayes_spill installs like a package: the model files ship with the wheel.

models/ stays at the top of the checkout for users to read and copy; pyproject.toml maps it onto
the data-only package ``bayes_spill.model_files`` so that a non-editable install has the default
model and the calibration studies (``config.shipped_models``, ``config.find_model_file``).

The slow test builds an sdist, a wheel from that sdist, installs the wheel into a fresh venv of
the same Python and fits the embedded default from a folder with no ``models/`` in it. It installs
with ``--no-deps`` and borrows the running environment's site-packages through a ``.pth`` file
(which adds the folder to ``sys.path`` without running that folder's own ``.pth`` files, so an
editable install of the checkout there stays out of the way): nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from bayes_spill import config

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SHIPPED = "bayes_spill.model_files"


def test_wheel_lists_every_subpackage():
    # pyproject.toml lists the packages by hand (package-dir cannot be combined with
    # packages.find): a new subpackage missing from the list would be missing from the wheel.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bayes_spill").rglob("__init__.py")}
    model_files = {SHIPPED} | {f"{SHIPPED}.{d.name}" for d in (REPO / "models").iterdir() if d.is_dir()}
    assert listed == found | model_files


def test_every_model_file_is_package_data():
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"][SHIPPED] == "models"
    data = setuptools["package-data"]
    for path in (REPO / "models").rglob("*"):
        if path.is_file():
            package = ".".join([SHIPPED, *path.parent.relative_to(REPO / "models").parts])
            assert any(path.match(pattern) for pattern in data.get(package, [])), f"{path} is not in the wheel"


def test_every_data_file_of_the_package_is_package_data():
    # A data file the patterns miss is absent from a non-editable install (the ZIP-county table
    # once was: `*.csv` does not match `.csv.gz`).
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for path in (REPO / "bayes_spill").rglob("*"):
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts:
            package = ".".join(path.parent.relative_to(REPO).parts)
            patterns = data.get(package, [])
            assert any(path.match(pattern) for pattern in patterns), f"{path} is not in the wheel ({patterns})"


def test_checkout_reads_its_own_models():
    assert config.shipped_models() == REPO / "models"
    assert config.shipped_models("studies") == REPO / "models" / "studies"


def test_find_model_file_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A name: the shipped file when ./models/ has none of that name.
    assert config.find_model_file("integrated_alpha") == REPO / "models" / "integrated_alpha.toml"
    assert config.find_model_file("calibration", folder="studies") == REPO / "models" / "studies" / "calibration.toml"
    # ./models/NAME.toml in the working directory comes first.
    (tmp_path / "models" / "studies").mkdir(parents=True)
    mine = tmp_path / "models" / "integrated_alpha.toml"
    mine.write_text((REPO / "models" / "integrated_alpha.toml").read_text())
    (tmp_path / "models" / "studies" / "mine.toml").write_text("")
    assert config.find_model_file("integrated_alpha") == mine
    assert config.find_model_file("mine", folder="studies") == tmp_path / "models" / "studies" / "mine.toml"
    # A path is taken as given, found or not; an unknown name comes back unchanged.
    assert config.find_model_file(mine) == mine
    assert config.find_model_file("elsewhere/x.toml") == Path("elsewhere/x.toml")
    assert config.find_model_file("no_such_model") == Path("no_such_model")


# No PYTHONPATH: a checkout on it (and its egg-info) would stand in for the installed wheel.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(command: list, cwd: Path, timeout: int = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=CLEAN_ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def _pep517(backend_call: str, source: Path, out: Path) -> Path:
    code = f"from setuptools import build_meta; print(build_meta.{backend_call}({str(out)!r}))"
    name = _run([sys.executable, "-c", code], cwd=source).strip().splitlines()[-1]
    return out / name


@pytest.mark.slow
def test_wheel_installed_elsewhere_fits_the_embedded_default(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools (the test extra)")
    started = time.perf_counter()
    # Build from a copy, so the checkout gets no egg-info or build/ folder.
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "posterior", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"
        ),
    )
    sdist = _pep517("build_sdist", source, tmp_path / "dist")
    shutil.unpack_archive(sdist, tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheel = _pep517("build_wheel", unpacked, tmp_path / "dist")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    venv_site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip()
    )
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=tmp_path,
    )
    # After the install: pip would otherwise see the borrowed editable install and skip the wheel.
    (venv_site / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        [
            python,
            "-c",
            "import bayes_spill, bayes_spill.config as c; print(bayes_spill.__file__); print(c.shipped_models())",
        ],
        cwd=elsewhere,
    )
    package, models = (Path(line) for line in where.strip().splitlines())
    assert package.is_relative_to(venv_site) and models.is_relative_to(venv_site), where
    assert (models / "integrated_alpha.toml").is_file() and (models / "studies" / "calibration.toml").is_file()

    _run(
        [venv / "bin" / "bayes-spill", "fit", "--draws", "100", "--tune", "100", "--chains", "2", "--no-progress"],
        cwd=elsewhere,
    )
    assert (elsewhere / "posterior" / "integrated_alpha" / "posterior.nc").is_file()
    assert (elsewhere / "posterior" / "integrated_alpha" / "summary.csv").is_file()
    print(f"sdist -> wheel -> venv -> fit: {time.perf_counter() - started:.0f} s")
