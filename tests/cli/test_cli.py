"""The ``bayes-spill`` command line: help, simulate and validate (fit is tested elsewhere)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from bayes_spill.cli.main import main
from bayes_spill.model.simulate import SimulationSettings, simulate_industry


def report_numbers(text: str) -> dict[str, int]:
    """firms, firm-years and counties occupied as printed by ``validate``."""
    numbers = {}
    for key, label in (("firms", "firms"), ("firm_years", "firm-years"), ("counties_occupied", "counties occupied")):
        match = re.search(rf"^\s+{label}\s+([\d,]+)", text, flags=re.MULTILINE)
        assert match, f"no '{label}' line in:\n{text}"
        numbers[key] = int(match.group(1).replace(",", ""))
    return numbers


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """`bayes-spill simulate --seed 3 --firms 50` once: (folder, stdout)."""
    out = tmp_path_factory.mktemp("sim")
    capture = pytest.MonkeyPatch()
    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        code = main(["simulate", "--out", str(out), "--seed", "3", "--firms", "50"])
    finally:
        capture.undo()
    assert code == 0
    return out, buffer.getvalue()


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "bayes-spill" in out
    for command in ("fit", "validate", "simulate"):
        assert re.search(rf"^\s+{command}\s", out, flags=re.MULTILINE), f"{command} not listed in:\n{out}"


@pytest.mark.parametrize("command", ["fit", "validate", "simulate"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "--data" in capsys.readouterr().out or command == "simulate"


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_simulate_writes_panel_and_truth(simulated):
    out, stdout = simulated
    assert (out / "panel.csv").is_file() and (out / "truth.json").is_file()
    expected = simulate_industry(replace(SimulationSettings(), n_firms=50), seed=3).summary()
    assert f"simulated {expected['firms']} firms, {expected['firm_years']} firm-years" in stdout, stdout
    assert f"{expected['counties_occupied']} counties occupied" in stdout, stdout
    assert "panel.csv" in stdout and "truth.json" in stdout


def test_validate_reports_the_simulation(simulated, capsys):
    out, _ = simulated
    assert main(["validate", "--data", str(out / "panel.csv")]) == 0
    captured = capsys.readouterr()
    expected = simulate_industry(replace(SimulationSettings(), n_firms=50), seed=3).summary()
    got = report_numbers(captured.out)
    assert got == {k: expected[k] for k in got}, f"validate says {got}, the simulation has {expected}"
    assert got["firms"] == 50
    assert "dropped              nothing" in captured.out
    assert captured.err == ""


def test_validate_bad_file_exit_code_and_message(simulated, tmp_path, capsys):
    out, _ = simulated
    frame = pd.read_csv(out / "panel.csv", dtype={"gvkey": str, "fips": str})
    frame.loc[6, "xrd"] = -2.5  # frame row 6 is line 8 of the file (header = line 1)
    bad = tmp_path / "bad_panel.csv"
    frame.to_csv(bad, index=False)
    assert main(["validate", "--data", str(bad)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert str(bad) in err, err
    assert "'xrd'" in err and "negative" in err, err
    assert re.search(r"\b8\b", err.split("'xrd'", 1)[1]), f"line 8 not named in {err!r}"
    assert "Traceback" not in err + captured.out
    assert err.startswith("bayes-spill validate: error:"), err


def test_validate_missing_file(tmp_path, capsys):
    assert main(["validate", "--data", str(tmp_path / "nothing.csv")]) == 2
    err = capsys.readouterr().err
    assert "nothing.csv" in err and "not found" in err and "Traceback" not in err


def test_simulate_bad_settings_exit_code(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--halflife-km", "-1"]) == 2
    err = capsys.readouterr().err
    assert "halflife_km" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def console_script() -> Path:
    return Path(sys.executable).parent / "bayes-spill"


def test_installed_console_script():
    script = console_script()
    assert script.exists(), f"{script} is not installed"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("fit", "validate", "simulate"):
        assert command in result.stdout


# -- a Compustat extract written by someone else -----------------------------------------------
# Extra WRDS columns, another column order, leading-zero gvkeys, '12.50'-style numbers, a
# firm with zero R&D, and a firm seen in only 2 years (dropped by the paper's rule).
WRDS_CSV = """\
conm,gvkey,datadate,fyear,indfmt,consol,sic,fips,xrd,sale,emp,ppent,curcd
ACME SOFTWARE,001004,19991231,1999,INDL,C,7372,06085,12.50,150.00,1.250,20.00,USD
ACME SOFTWARE,001004,20001231,2000,INDL,C,7372,06085,13.00,160.50,1.300,21.10,USD
ACME SOFTWARE,001004,20011231,2001,INDL,C,7372,06085,14.25,170.75,1.400,22.00,USD
BYTEWORKS INC,012141,20000630,2000,INDL,C,7372,25017,0.00,55.5,0.40,3.0,USD
BYTEWORKS INC,012141,20010630,2001,INDL,C,7372,25017,0.0,60,0.45,3.5,USD
BYTEWORKS INC,012141,20020630,2002,INDL,C,7372,25017,0,66.25,0.5,4,USD
BYTEWORKS INC,012141,20030630,2003,INDL,C,7372,25017,1.5e0,70.0,0.55,4.25,USD
CLOUDCO,020530,20021231,2002,INDL,C,7372,06085,3.10,12.000,0.100,1.00,USD
CLOUDCO,020530,20031231,2003,INDL,C,7372,06085,3.20,13.000,0.110,1.10,USD
CLOUDCO,020530,20041231,2004,INDL,C,7372,06085,3.30,14.000,0.120,1.20,USD
SHORTLIVED,004321,20031231,2003,INDL,C,7372,53033,1.00,5.00,0.05,0.50,USD
SHORTLIVED,004321,20041231,2004,INDL,C,7372,53033,1.00,5.00,0.05,0.50,USD
"""


def test_validate_a_wrds_style_extract(tmp_path, capsys):
    path = tmp_path / "compustat_extract.csv"
    path.write_text(WRDS_CSV)
    assert main(["validate", "--data", str(path)]) == 0
    captured = capsys.readouterr()
    got = report_numbers(captured.out)
    assert got == {"firms": 3, "firm_years": 10, "counties_occupied": 2}, f"{got}\n{captured.out}"
    assert "1999-2004" in captured.out
    assert "Dropped 1 firm (2 firm-years)" in captured.out and "004321" in captured.out
    assert "Santa Clara" in captured.out and "06085" in captured.out
    # BYTEWORKS: xrd 0, 0, 0, 1.5 gives a zero stock in all 4 years (R_it uses last year's xrd)
    assert "zero-R&D firm-years  4 " in captured.out, captured.out
    assert captured.err == ""


def test_wrds_extract_values_are_read_exactly(tmp_path, capsys):
    from bayes_spill.data.inputs import load_panel

    path = tmp_path / "compustat_extract.csv"
    path.write_text(WRDS_CSV)
    panel = load_panel(path)
    capsys.readouterr()
    assert panel.firms.tolist() == ["001004", "012141", "020530"]
    assert panel.firm_fips.tolist() == ["06085", "25017", "06085"]
    assert panel.sale[:3].tolist() == [150.0, 160.5, 170.75]
    assert panel.xrd[:3].tolist() == [12.5, 13.0, 14.25]
    assert panel.xrd[3:7].tolist() == [0.0, 0.0, 0.0, 1.5]
    assert panel.rd_stock[3:7].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert panel.zero_rd.sum() == 4
    # perpetual inventory: R_0 = 12.5 / 0.2, R_1 = 0.85 R_0 + 12.5
    assert panel.rd_stock[:2].tolist() == pytest.approx([62.5, 0.85 * 62.5 + 12.5], rel=1e-15)
