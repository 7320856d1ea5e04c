"""The fast suite's units of work for xdist (tests/conftest.py): a file runs whole on one worker,
and the files sharing a tiny fit run on one worker, so each shared fit is sampled once."""

from __future__ import annotations

from pathlib import Path

import conftest

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
    assert group_of("tests/checking/test_checks.py::test_a[x-1]") == group_of("tests/test_readme.py::test_b")
    assert group_of("tests/inference/test_fit.py::test_a") != group_of("tests/checking/test_checks.py::test_a")
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
    assert scheduler._split_scope(nodeid) == conftest.group_of(nodeid) == "nutpie_fits"
    values["dist"] = "load"
    assert conftest.pytest_xdist_make_scheduler(pytestconfig, None) is None  # other modes: xdist's own
