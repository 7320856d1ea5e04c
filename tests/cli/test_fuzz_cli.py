"""Fuzzed command lines (tracker issue 8, part 1).

Hypothesis builds argument vectors for every subcommand from the parser itself (options in any
order, repeated, missing, with numbers, NaN/inf, text, empty strings and paths to good, bad,
empty, missing or unwritable files and folders, plus stray tokens) and runs ``cli.main`` on them.
Each run must end in exactly one of:

* argparse's usage error: SystemExit(2) with "usage:" and "error:" on stderr (or SystemExit(0)
  for --help);
* our error: exit code 2 with "bayes-spill <command>: error: ..." on stderr;
* success (exit 0), or, for ``fit``, reaching the model build (the test stops it there: the
  arguments and inputs were all accepted), or, for ``simulate``, reaching the simulator with
  finite, valid settings (the test returns a small ready-made industry).

Never a traceback or any other exception. Commands that compute for long on valid input (baseline,
calibrate, equilibrium two-city) are fuzzed through the parser only; the commands that read a fit
run in full, on folders that hold no valid fit. A few runs go through a real subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_spill.cli import main as cli
from bayes_spill.inference import fitting  # noqa: F401  (imported here: PyMC raises the recursion limit on import)
from bayes_spill.model.simulate import SimulationSettings, simulate_industry

REPO = Path(__file__).resolve().parents[2]
RUN_IN_FULL = {"fit", "validate", "simulate", "counterfactual", "sorting", "equilibrium counties", "check", "compare"}
RUN_IN_FULL |= {"table"}  # reads fit, baseline and counterfactual files: cheap on the fuzzed folders
PATH_DESTS = {"data", "counties", "model", "out", "dir", "dirs", "county_sales", "truth", "config", "pairs"}
GOOD_NUMBERS = ["1", "2", "3", "5", "2000", "2003", "0.5"]  # valid for most numeric options
BAD_NUMBERS = [
    "0",
    "-1",
    "40000",
    "1e3",
    "1.5",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "99999999999999999999",
    "",
    " ",
    "x",
    "0x10",
    "٣",
]


class ReachedModelBuild(Exception):
    """Raised by the stubbed model build: fit accepted every argument and input."""


class ReachedSimulator(Exception):
    pass


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Files and folders the arguments point to; the fuzzed commands run inside ``root``."""
    root = tmp_path_factory.mktemp("cli_fuzz")
    panel = simulate_industry(
        SimulationSettings(n_firms=6, first_year=2000, last_year=2004, mean_years=4, max_years=5), seed=1
    )
    good = root / "good.csv"
    panel.to_frame().to_csv(good, index=False)
    bad = root / "bad.csv"
    bad.write_text("gvkey,fyear,sale,emp,ppent,xrd,fips\n001,2000,1,1,1,-1,06085\n")
    (root / "empty.csv").write_bytes(b"")
    (root / "latin1.csv").write_bytes("gvkey,fyear\nSoci\xe9t\xe9,2000\n".encode("latin-1"))
    (root / "panel.xlsx").write_bytes(b"PK\x03\x04")
    counties = root / "counties.csv"
    pd.DataFrame(
        {"fips": ["06085", "02013"], "lat": [37.2, 55.4], "lon": [-121.7, -161.7], "labor_force": [1e6, 1e3]}
    ).to_csv(counties, index=False)
    (root / "bad_counties.csv").write_text("fips,lat,lon\n6085,37,-121\n")
    (root / "bad.toml").write_text("name = 3\n")
    (root / "broken.toml").write_text("[model\n")
    (root / "folder").mkdir()
    fake_fit = root / "fake_fit"
    fake_fit.mkdir()
    (fake_fit / "posterior.nc").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (root / "a_file").write_text("not a folder")
    paths = {
        "data": [
            str(good),
            str(bad),
            str(root / "empty.csv"),
            str(root / "latin1.csv"),
            str(root / "panel.xlsx"),
            str(root / "missing.csv"),
            str(root / "folder"),
            "",
            "software",
        ],
        "counties": [str(counties), str(root / "bad_counties.csv"), str(root / "missing.csv"), ""],
        "model": [
            "lychagin2010",
            "no_sorting",
            "homogeneous",
            "log_spillover",
            str(root / "bad.toml"),
            str(root / "broken.toml"),
            "nonexistent",
            str(root / "folder"),
            "",
            str(REPO / "models" / "lychagin2010.toml"),
        ],
        "out": [
            str(root / "out"),
            str(root / "a_file"),
            str(root / "a_file" / "below"),
            "/proc/no_such_place",
            "out_here",
        ],
        "dir": [str(root / "missing_fit"), str(root / "folder"), str(fake_fit), str(root / "a_file"), ""],
    }
    paths["dirs"] = paths["dir"]
    for dest in ("county_sales", "truth", "config", "pairs"):
        paths[dest] = paths["data"][:7] + [str(root / "bad.toml")]
    small = simulate_industry(
        SimulationSettings(n_firms=3, first_year=2000, last_year=2003, mean_years=3, max_years=4), seed=2
    )
    return {"root": root, "paths": paths, "small_panel": small}


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every (sub)command path and its parser, found by walking the parser."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = commands(sub, (*prefix, name))
                out.update(inner or {(*prefix, name): sub})
    return out


def argument_tokens(draw, action: argparse.Action, paths: dict) -> list[str]:
    if action.nargs == 0:
        return list(action.option_strings[:1])
    if action.dest in PATH_DESTS and action.dest in paths:
        values = draw(
            st.lists(st.sampled_from(paths[action.dest]), min_size=1, max_size=3 if action.nargs in ("+", "*") else 1)
        )
    elif action.choices:
        values = [draw(st.sampled_from([*action.choices, "junk", ""]))]
    elif action.type is not None and getattr(action.type, "__name__", "").endswith("fips"):
        values = [draw(st.sampled_from(["06085", "02013", "06085,02013", "6085", "99999", "x", ""]))]
    elif action.type is not None:
        # mostly plausible values, so that whole command lines get past the parser often
        values = [
            draw(
                st.one_of(
                    st.sampled_from(GOOD_NUMBERS),
                    st.sampled_from(GOOD_NUMBERS),
                    st.sampled_from(BAD_NUMBERS),
                    st.text(max_size=6),
                )
            )
        ]
    else:
        values = [draw(st.one_of(st.sampled_from(["06085", "02013", "6085", "99999", "x", ""]), st.text(max_size=6)))]
    return [*action.option_strings[:1], *values]


@st.composite
def command_lines(draw, paths: dict, names: tuple[str, ...] | None = None) -> list[str]:
    parser = cli.build_parser()
    table = commands(parser)
    path = draw(st.sampled_from(sorted(names or table)))
    sub = table[path]
    actions = [a for a in sub._actions if not isinstance(a, argparse._HelpAction)]
    tokens = []
    for action in actions:
        # required arguments are usually given; optional ones sometimes, sometimes twice
        times = draw(st.sampled_from((0, 1, 1, 1, 1, 1, 1, 2) if action.required else (0, 0, 0, 1, 1, 2)))
        for _ in range(times):
            tokens.append(argument_tokens(draw, action, paths))
    tokens = draw(st.permutations(tokens)) if tokens else []
    argv = [*path, *(t for group in tokens for t in group)]
    if draw(st.integers(0, 9)) == 0:
        argv.insert(
            draw(st.integers(0, len(argv))),
            draw(st.one_of(st.sampled_from(["--bogus", "-x", "--", "-h", "fit", "--help"]), st.text(max_size=5))),
        )
    return argv


@contextlib.contextmanager
def stubs(small_panel):
    """The model build stops fit; the simulator checks its settings and returns a small panel."""

    def build_model(*args, **kwargs):
        raise ReachedModelBuild

    def simulate(settings: SimulationSettings, seed: int = 0, counties=None):
        for name in ("halflife_km", "gamma", "mu_alpha", "sigma_alpha2", "sigma_w"):
            value = getattr(settings, name)
            assert math.isfinite(value), f"simulate got {name} = {value}"
        assert (
            settings.halflife_km > 0 and settings.sigma_w > 0 and settings.sigma_alpha2 >= 0 and settings.n_firms >= 2
        )
        assert 1000 <= settings.first_year <= settings.last_year <= 9999 and seed >= 0
        return small_panel

    with (
        mock.patch("bayes_spill.inference.fitting.build_model", build_model),
        mock.patch("bayes_spill.model.simulate.simulate_industry", simulate),
    ):
        yield


def run_main(argv: list[str], root: Path) -> tuple[str, str, str]:
    """(outcome, stdout, stderr) of ``cli.main(argv)`` run in ``root``."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
                outcome = f"exit {code}"
            except SystemExit as exc:
                outcome = f"argparse exit {exc.code}"
            except ReachedModelBuild:
                outcome = "fit reached the model build"
    finally:
        os.chdir(cwd)
    return outcome, out.getvalue(), err.getvalue()


def check_outcome(argv: list[str], outcome: str, stdout: str, stderr: str) -> None:
    context = f"argv={argv!r}\nstdout={stdout[-2000:]}\nstderr={stderr[-2000:]}"
    assert "Traceback" not in stderr and "Traceback" not in stdout, context
    if outcome == "argparse exit 0":
        assert "usage:" in stdout, context
    elif outcome == "argparse exit 2":
        assert "usage:" in stderr and "error:" in stderr, context
    elif outcome == "exit 2":
        assert "error:" in stderr and stderr.startswith("bayes-spill "), context
    else:
        assert outcome in ("exit 0", "fit reached the model build"), context


def fuzz_once(argv: list[str], workspace, outcomes: Counter) -> None:
    with stubs(workspace["small_panel"]):
        outcome, stdout, stderr = run_main(argv, workspace["root"])
    check_outcome(argv, outcome, stdout, stderr)
    outcomes[f"{argv[0] if argv else '-'}: {outcome}"] += 1


def parse_once(argv: list[str], outcomes: Counter) -> None:
    """The parser alone: a namespace, or argparse's usage error; nothing else."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.build_parser().parse_args(argv)
            outcomes["parsed"] += 1
        except SystemExit as exc:
            assert exc.code in (0, 2), (argv, exc.code)
            assert exc.code == 0 or "usage:" in err.getvalue(), (argv, err.getvalue())
            outcomes[f"argparse exit {exc.code}"] += 1


def test_stubs_see_a_valid_fit_and_simulation(workspace):
    paths = workspace["paths"]
    outcomes = Counter()
    fuzz_once(["fit", "--data", paths["data"][0], "--out", paths["out"][0], "--draws", "3"], workspace, outcomes)
    fuzz_once(["simulate", "--out", paths["out"][0], "--firms", "3"], workspace, outcomes)
    fuzz_once(["validate", "--data", paths["data"][0]], workspace, outcomes)
    assert outcomes == {"fit: fit reached the model build": 1, "simulate: exit 0": 1, "validate: exit 0": 1}


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--out", "x", "--halflife-km", "nan"],
        ["simulate", "--out", "x", "--gamma", "inf"],
        ["simulate", "--out", "x", "--first-year", "1"],
        ["fit", "--chains", "0"],
        ["fit", "--sampler", "stan"],
    ],
)
def test_bad_numbers_are_usage_errors(argv, workspace):
    outcome, stdout, stderr = run_main(argv, workspace["root"])
    assert outcome == "argparse exit 2" and "usage:" in stderr


def test_an_unwritable_output_folder_is_reported_before_sampling(workspace):
    paths = workspace["paths"]
    with stubs(workspace["small_panel"]):
        outcome, _, stderr = run_main(
            ["fit", "--data", paths["data"][0], "--out", str(workspace["root"] / "a_file" / "below")], workspace["root"]
        )
    assert outcome == "exit 2" and "cannot write the fit" in stderr, stderr


@given(data=st.data())
def test_fuzzed_command_lines(workspace, data):
    argv = data.draw(command_lines(workspace["paths"], names=tuple(sorted(_run_in_full()))))
    fuzz_once(argv, workspace, Counter())


@given(data=st.data())
def test_fuzzed_command_lines_parse_or_give_usage(workspace, data):
    parse_once(data.draw(command_lines(workspace["paths"])), Counter())


def _run_in_full() -> set[tuple[str, ...]]:
    table = commands(cli.build_parser())
    return {path for path in table if " ".join(path) in RUN_IN_FULL}


@pytest.mark.slow
def test_fuzzed_command_lines_1000(workspace):
    outcomes: Counter = Counter()
    parsed: Counter = Counter()

    @settings(settings.get_profile("slow"))
    @given(data=st.data())
    def run(data):
        fuzz_once(
            data.draw(command_lines(workspace["paths"], names=tuple(sorted(_run_in_full())))), workspace, outcomes
        )
        parse_once(data.draw(command_lines(workspace["paths"])), parsed)

    run()
    tried = sum(outcomes.values())
    print(f"\nfuzzed command lines: {tried} run; outcomes {dict(outcomes.most_common())}")
    print(f"fuzzed command lines, parser only (every subcommand): {sum(parsed.values())}; outcomes {dict(parsed)}")
    assert tried >= 1000


@pytest.mark.parametrize(
    "argv, code, text",
    [
        ([], 2, "usage:"),
        (["fit", "--chains", "two"], 2, "usage:"),
        (["validate", "--data", "no_such_file.csv"], 2, "error:"),
        (["simulate", "--out", "x", "--halflife-km", "nan"], 2, "usage:"),
    ],
)
def test_the_installed_command_exits_2_without_a_traceback(argv, code, text, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bayes_spill.cli.main", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == code, result.stderr
    assert text in result.stderr and "Traceback" not in result.stderr, result.stderr
