"""`bayes-spill prepare` end to end: WRDS files in, a panel that `validate` reads and its record out."""

from __future__ import annotations

import pandas as pd
from wrds_extracts import EXTRA_FIRMS, drift_extract, raw_extract

from bayes_spill.cli.main import main
from bayes_spill.data.datasets import dataset_path
from bayes_spill.data.files import write_table


def test_prepare_then_validate_on_the_command_line(tmp_path, capsys):
    panel = pd.read_csv(dataset_path(), dtype={"gvkey": str, "fips": str})
    panel = panel[(panel["fips"] != "51590") & panel["gvkey"].isin(sorted(panel["gvkey"].unique())[:40])]
    funda, company = raw_extract(panel)
    funda_path = write_table(funda, tmp_path / "funda.csv.gz")
    company_path = write_table(company, tmp_path / "company.dta")
    out = tmp_path / "out" / "panel.csv"
    years = f"{panel['fyear'].min()}-{panel['fyear'].max()}"
    argv = ["prepare", "--funda", str(funda_path), "--company", str(company_path), "--sic", "7372", "--years", years]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "firms with headquarters outside the US" in printed and f"wrote {out}" in printed
    record = pd.read_csv(tmp_path / "out" / "panel_record.csv", dtype={"gvkey": str})
    excluded = record[record["action"] == "excluded firm"]
    assert dict(zip(excluded["gvkey"], excluded["rule"])) == EXTRA_FIRMS
    assert main(["validate", "--data", str(out)]) == 0
    assert f"firms                {panel['gvkey'].nunique()}" in capsys.readouterr().out


def test_bad_raw_input_exits_2_with_the_file_column_and_line(tmp_path, capsys):
    funda, company = drift_extract()
    company.loc[1, "addzip"] = "O2139"
    funda_path, company_path = write_table(funda, tmp_path / "f.csv"), write_table(company, tmp_path / "c.csv")
    code = main(
        [
            "prepare",
            "--funda",
            str(funda_path),
            "--company",
            str(company_path),
            "--sic",
            "7372",
            "--out",
            str(tmp_path / "p.csv"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"{company_path}, column 'addzip'" in err and "1 line: 3" in err
    assert not (tmp_path / "p.csv").exists()
