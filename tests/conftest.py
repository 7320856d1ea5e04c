"""Shared test set-up: Hypothesis profiles for the fuzz suites, PyTensor's flags, and the units of
work that pytest-xdist hands its workers.

Profiles: "fast" (the default: the fast suite's example count) and "slow" (>= 1,000 examples:
the fuzz tests marked ``slow`` apply it with ``settings(settings.get_profile("slow"))``).
``HYPOTHESIS_PROFILE=slow`` makes every fuzz test use the slow count. Neither profile keeps an
example database (nothing is written to the working tree) and neither has a deadline (two cores
shared with sampling jobs make timings noisy).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from hypothesis import HealthCheck, settings

# PyTensor records the Python stack at every graph node it makes (for its error messages); the
# suite builds and rewrites the models' graphs many times over, and that bookkeeping is a tenth
# of its time. Set here, before anything imports PyTensor, so that xdist's workers and the
# commands the tests start in subprocesses inherit it.
os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, (os.environ.get("PYTENSOR_FLAGS"), "traceback__limit=0")))
if "pytensor" in sys.modules:  # imported first by a plugin: the flag is read at import
    sys.modules["pytensor"].config.traceback__limit = 0

FAST_EXAMPLES = 120
SLOW_EXAMPLES = 1000

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# The fast suite is derandomized so CI is repeatable; the slow suite searches with fresh seeds.
settings.register_profile("fast", max_examples=FAST_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("slow", max_examples=SLOW_EXAMPLES, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


# With pytest-xdist (`make test` runs two workers, `--dist loadgroup`) each file runs whole on
# one worker, so its module fixtures are built once. The tiny fits (tests/tiny_fits.py) are made
# once per run whichever worker first needs them; the files that read the same fit form one unit
# so that one worker makes it while the other has other work (two units that read two different
# fits can start together without either waiting for the other's fit).
SHARED_FIT_GROUPS = {
    "lychagin2010_fit": (
        "test_checks.py",
        "test_figures.py",
        "test_fit_folders.py",
        "test_no_nan_verdicts.py",
        "test_sensitivity.py",
    ),
    # the default model's fit, nutpie's (tests/tiny_fits.py default_fit): its compiled model is kept
    # per process (fitting._COMPILED), and the other nutpie fits of these files sample it. The
    # tables read the lychagin2010 fit too, which the other worker makes meanwhile: they come last.
    "default_fit": (
        "test_fit_inputs.py",
        "test_fit.py",
        "test_reproducibility.py",
        "test_readme.py",
        "test_tables.py",
    ),
    # not a fit: the models compiled once on one simulated industry (tests/modes.py)
    "industry80_models": ("test_model.py", "test_interpolation.py"),
}
# The units that take longest go first (the others, shorter, fill in behind them): a long unit
# started last would leave one worker idle while the other finishes it.
LONGEST_FIRST = ("default_fit", "lychagin2010_fit")
GROUP_OF_FILE = {name: group for group, names in SHARED_FIT_GROUPS.items() for name in names}


def group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its file's shared-fit group, else its file."""
    path = nodeid.split("::")[0].split("@")[0]
    return GROUP_OF_FILE.get(path.rsplit("/", 1)[-1], path)


def pytest_collection_modifyitems(items):
    """The files of a shared-fit group run in the order the group lists them (other tests keep
    their places)."""
    for files in SHARED_FIT_GROUPS.values():
        places = [i for i, item in enumerate(items) if item.path.name in files]
        ordered = sorted((items[i] for i in places), key=lambda item: files.index(item.path.name))
        for i, item in zip(places, ordered):
            items[i] = item


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with the groups above, read from each test's file name.

    xdist's own loadgroup scheduler groups by an "@group" suffix that its worker appends to
    ``item._nodeid``; pytest 9 reads node ids from ``item._id``, so the suffix never appears and
    every test became its own unit: each file's tests, and the shared fits they read, were spread
    over both workers and the fits sampled on each. This scheduler needs no suffix."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            for scope in reversed(LONGEST_FIRST):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return SharedFitScheduling(config, log)


# The tiny fits' folder (tests/tiny_fits.py ROOT_ENV): made by the process that starts the run,
# before xdist starts its workers, so that they inherit it and share every fit made there;
# removed by that process at the end.
TINY_FITS_ENV = "BAYES_SPILL_TINY_FITS"
_made_tiny_root: list[str] = []


def pytest_configure(config):
    if TINY_FITS_ENV not in os.environ:
        os.environ[TINY_FITS_ENV] = tempfile.mkdtemp(prefix="bayes_spill_tiny_")
        _made_tiny_root.append(os.environ[TINY_FITS_ENV])


def pytest_unconfigure(config):
    for root in _made_tiny_root:
        shutil.rmtree(root, ignore_errors=True)
        os.environ.pop(TINY_FITS_ENV, None)
