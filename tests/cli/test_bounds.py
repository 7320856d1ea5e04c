"""Bounded inputs on the command line (tracker issue 20, part 3): seeds, draws, tuning steps and
chains within what the samplers take, with the number in the message; a model file that is a
device, a folder or far too large fails at once."""

from __future__ import annotations

import os
import time

import pytest
from tiny_fits import tiny_csv

from bayes_spill.cli.main import main
from bayes_spill.config import MAX_MODEL_FILE_BYTES, MAX_SEED, load_config, shipped_models
from bayes_spill.errors import ConfigError
from bayes_spill.inference import fitting


@pytest.fixture(autouse=True)
def no_sampling(monkeypatch):
    monkeypatch.setattr(fitting, "sample", lambda *a, **k: pytest.fail("sampling started"))


def run_fit(extra: list[str], tmp_path, capsys) -> tuple[int, str]:
    try:
        code = main(["fit", "--data", str(tiny_csv()), "--out", str(tmp_path / "fit"), "--no-progress", *extra])
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--seed", "99999999999999999999", f"must be a whole number from 0 to {MAX_SEED:,}, got 99999999999999999999"),
        ("--seed", "-1", f"must be a whole number from 0 to {MAX_SEED:,}, got -1"),
        ("--seed", "1e3", "must be a whole number, got '1e3'"),
        ("--draws", "0", "must be a whole number from 1 to 2,147,483,647, got 0"),
        ("--draws", "99999999999", "must be a whole number from 1 to 2,147,483,647, got 99999999999"),
        ("--tune", "-3", "must be a whole number from 0 to 2,147,483,647, got -3"),
        ("--chains", "5000", "must be a whole number from 1 to 1,024, got 5000"),
    ],
)
def test_out_of_range_sampler_options_are_usage_errors(tmp_path, capsys, option, value, says):
    code, err = run_fit([option, value], tmp_path, capsys)
    assert code == 2 and f"argument {option}: {says}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrate", "sbc", "--draws", "99999999999"],
        ["calibrate", "montecarlo", "--seed", "99999999999999999999"],
        ["bench", "--chains", "5000"],
        ["bench", "--baseline-draws", "0"],
        ["baseline", "--seed", "-1"],
    ],
)
def test_the_other_sampling_commands_bound_their_options_too(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {argv[-2]}: must be a whole number from" in err


def test_the_largest_seed_reaches_the_sampler(tmp_path, capsys, monkeypatch):
    seen = {}

    def record(model, config, progress=True, **given):
        seen["seed"] = config.sampler.seed
        raise KeyboardInterrupt("stop here")

    monkeypatch.setattr(fitting, "sample", record)
    code, err = run_fit(["--seed", str(MAX_SEED), "--draws", "5", "--tune", "5"], tmp_path, capsys)
    assert seen["seed"] == MAX_SEED and code == 130, err


# -- model files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_the_model_file_fails_at_once(tmp_path, capsys, device):
    start = time.monotonic()
    code, err = run_fit(["--model", device], tmp_path, capsys)
    assert time.monotonic() - start < 10
    assert code == 2 and f"{device}: is a device, pipe or socket, not a model configuration file" in err


def test_a_fifo_as_the_model_file_does_not_block(tmp_path, capsys):
    fifo = tmp_path / "model.toml"
    os.mkfifo(fifo)  # opening it would wait for a writer
    start = time.monotonic()
    code, err = run_fit(["--model", str(fifo)], tmp_path, capsys)
    assert time.monotonic() - start < 10 and code == 2 and "is a device, pipe or socket" in err


def test_a_folder_as_the_model_file(tmp_path):
    (tmp_path / "model.toml").mkdir()
    with pytest.raises(ConfigError, match=r"model\.toml: is a folder, not a model configuration file"):
        load_config(tmp_path / "model.toml")


def test_a_huge_model_file_is_refused_by_its_size(tmp_path):
    path = tmp_path / "big.toml"
    text = (shipped_models() / "lychagin2010.toml").read_text()
    path.write_text(text + "#" * MAX_MODEL_FILE_BYTES)
    with pytest.raises(
        ConfigError, match=rf"big\.toml: is {path.stat().st_size:,} bytes, more than the {MAX_MODEL_FILE_BYTES:,}"
    ):
        load_config(path)
    path.write_text(text + "#" * (MAX_MODEL_FILE_BYTES - len(text.encode()) - 1) + "\n")  # exactly at the limit
    assert load_config(path).name == "lychagin2010"


def test_a_model_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        (shipped_models() / "lychagin2010.toml").read_bytes().replace(b'description = "', b'description = "\xe9')
    )
    with pytest.raises(ConfigError, match=r"latin1\.toml: cannot read the model configuration"):
        load_config(path)
