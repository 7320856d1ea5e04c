"""The fast suite's units of work for xdist (tests/conftest.py): a file runs whole on one worker,
the files reading one tiny fit run on one worker, the longest units start first, and the tiny
fits (tests/tiny_fits.py) are made once per run, whichever worker needs them first; PyTensor keeps
no stack trace per graph node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import conftest
import tiny_fits

TESTS = Path(__file__).resolve().parent


def test_every_file_of_a_shared_fit_group_exists():
    names = {path.name for path in TESTS.rglob("test_*.py")}
    for group, files in conftest.SHARED_FIT_GROUPS.items():
        missing = sorted(set(files) - names)
        assert not missing, f"{group} names files that do not exist (renamed?): {missing}"


def test_a_file_and_its_shared_fit_group_are_one_unit():
    group_of = conftest.group_of
    assert group_of("tests/inference/test_fit.py::test_a") == group_of(
        "tests/inference/test_reproducibility.py::test_b"
    )
    assert group_of("tests/checking/test_checks.py::test_a[x-1]") == group_of("tests/checking/test_figures.py::test_b")
    assert group_of("tests/checking/test_tables.py::test_a") == group_of("tests/test_readme.py::test_b")
    assert group_of("tests/checking/test_tables.py::test_a") == group_of("tests/inference/test_fit.py::test_b")
    assert group_of("tests/inference/test_fit.py::test_a") != group_of("tests/checking/test_checks.py::test_a")
    assert group_of("tests/checking/test_checks.py::test_a") != group_of("tests/test_readme.py::test_b")
    assert group_of("tests/model/test_integrated.py::test_a") != group_of("tests/test_readme.py::test_b")
    # other files: one unit per file, whatever the test, its parameters or an xdist "@group" suffix
    assert group_of("tests/test_config.py::test_a[p@q]") == group_of("tests/test_config.py::test_b@g")
    assert group_of("tests/test_config.py::test_a") != group_of("tests/data/test_inputs.py::test_a")


def test_loadgroup_schedules_by_these_units(pytestconfig, monkeypatch):
    from xdist.scheduler import LoadScopeScheduling

    values = {"dist": "loadgroup", "tx": ["2*popen"]}  # as `-n 2 --dist loadgroup` sets them
    real = pytestconfig.getvalue
    monkeypatch.setattr(pytestconfig, "getvalue", lambda name: values[name] if name in values else real(name))
    scheduler = conftest.pytest_xdist_make_scheduler(pytestconfig, None)
    assert isinstance(scheduler, LoadScopeScheduling)
    nodeid = "tests/inference/test_reproducibility.py::test_b"
    assert scheduler._split_scope(nodeid) == conftest.group_of(nodeid) == "default_fit"
    values["dist"] = "load"
    assert conftest.pytest_xdist_make_scheduler(pytestconfig, None) is None  # other modes: xdist's own


def test_the_longest_units_are_groups():
    assert set(conftest.LONGEST_FIRST) <= set(conftest.SHARED_FIT_GROUPS)


def test_the_longest_units_are_handed_out_first(pytestconfig, monkeypatch):
    values = {"dist": "loadgroup", "tx": ["2*popen"]}
    real = pytestconfig.getvalue
    monkeypatch.setattr(pytestconfig, "getvalue", lambda name: values[name] if name in values else real(name))
    scheduler = conftest.pytest_xdist_make_scheduler(pytestconfig, None)
    for scope in ("tests/test_config.py", *reversed(conftest.LONGEST_FIRST), "tests/data/test_inputs.py"):
        scheduler.workqueue[scope] = {f"{scope}::test_a": False}
    handed = []
    monkeypatch.setattr(
        type(scheduler).__mro__[1],
        "_assign_work_unit",
        lambda self, node: handed.append(self.workqueue.popitem(False)[0]),
    )
    for _ in range(len(conftest.LONGEST_FIRST) + 2):
        scheduler._assign_work_unit(None)
    assert handed[: len(conftest.LONGEST_FIRST)] == list(conftest.LONGEST_FIRST)


def test_a_tiny_fit_folder_is_made_once_for_every_process_of_the_run(tmp_path, monkeypatch):
    """The workers share tiny_fits.ROOT (conftest.py sets it before xdist starts them): a folder
    made by one process is found by another, which makes nothing."""
    assert conftest.TINY_FITS_ENV == tiny_fits.ROOT_ENV
    assert str(tiny_fits.ROOT) == conftest.os.environ[tiny_fits.ROOT_ENV]
    monkeypatch.setattr(tiny_fits, "ROOT", tmp_path)
    made = []
    tiny_fits.made_once("thing", lambda out: (out.mkdir(), (out / "x").write_text("1"), made.append(out)))
    tiny_fits.made_once("thing", lambda out: made.append(out))
    assert made == [tmp_path / "thing"]
    other = (
        "import sys, tiny_fits; from pathlib import Path; tiny_fits.ROOT = Path(sys.argv[1]); "
        "tiny_fits.made_once('thing', lambda out: sys.exit(3)); "
        "tiny_fits.made_once('other', lambda out: out.mkdir())"
    )
    env = {**conftest.os.environ, "PYTHONPATH": str(TESTS)}
    assert subprocess.run([sys.executable, "-c", other, str(tmp_path)], env=env).returncode == 0
    assert (tmp_path / "other").is_dir() and (tmp_path / "thing" / "x").read_text() == "1"


def test_pytensor_records_no_stack_at_each_node_in_the_suite():
    """conftest.py turns PyTensor's traceback bookkeeping off for this process and its children."""
    import pytensor

    assert pytensor.config.traceback__limit == 0
    child = [sys.executable, "-c", "import pytensor; print(pytensor.config.traceback__limit)"]
    assert subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip() == "0"


def test_the_files_of_a_group_run_in_the_order_it_lists_them():
    class Item:
        def __init__(self, path):
            self.path = Path(path)

    files = conftest.SHARED_FIT_GROUPS["default_fit"]
    items = [Item("tests/test_config.py"), *(Item(f"tests/x/{name}") for name in reversed(files))]
    items.append(Item("tests/data/test_inputs.py"))
    conftest.pytest_collection_modifyitems(items)
    assert [item.path.name for item in items] == ["test_config.py", *files, "test_inputs.py"]
