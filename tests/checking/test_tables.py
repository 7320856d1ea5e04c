"""`bayes-spill table` and ``checking.tables``: the paper's Tables 3, 5 and 6 from two tiny fits
(tests/tiny_fits.py, shared) and a tiny two-step baseline on the same data; the numbers are the
posterior's medians and quantiles, the LaTeX is well formed (and compiles where pdflatex is
installed: the slow test)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess

import arviz_stats as azs
import numpy as np
import pandas as pd
import pytest
from tiny_fits import tiny_csv, tiny_fit

import bayes_spill
from bayes_spill.checking import table_format, tables
from bayes_spill.cli.main import main
from bayes_spill.errors import BayesSpillError

MODELS = ("lychagin2010", "integrated_alpha")


@pytest.fixture(scope="module")
def fits():
    # integrated_alpha's fit first: this file's xdist unit makes it (tests/conftest.py), while the
    # unit of the lychagin2010 fit makes that one on the other worker
    made = {m: tiny_fit(m) for m in reversed(MODELS)}
    return [made[m] for m in MODELS]


@pytest.fixture(scope="module")
def loaded(fits):
    """The fits, each loaded once (a load costs about a second): the tables of the tests that are
    about their numbers read these; the command line's reads the folders."""
    return [bayes_spill.load(f) for f in fits]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The two-step estimator on the fits' data, with a few bootstrap replicates."""
    out = tmp_path_factory.mktemp("baseline")
    argv = ["baseline", "--data", str(tiny_csv()), "--bootstrap", "8", "--workers", "1", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def counterfactual(loaded, tmp_path_factory):
    """Table 6 on the first fit: an entrant in the county with the most sample firms."""
    fit = loaded[0]
    counties = pd.Series(fit.tree["observed_data"]["county"].values).value_counts()
    county = str(counties.index[0])
    result = fit.counterfactual(county, 220.0, 2002, n_draws=40, county_sales={county: 7640.0})
    path = tmp_path_factory.mktemp("cf") / f"counterfactual_{county}_2002_firm.csv"
    result.summary().to_csv(path, index=False)
    return result, path


@functools.cache
def _posterior_group(fit_dir):
    # the shared tiny fits are never written to: each is read once (a load costs about a second)
    return bayes_spill.load(fit_dir).tree["posterior"]


def _posterior(fit_dir, name):
    return _posterior_group(fit_dir)[name]


def _number(cell: str) -> tuple[float, int]:
    text = cell.strip().rstrip("%").replace(",", "")
    return float(text), len(text.split(".")[1]) if "." in text else 0


def _close(cell: str, value: float) -> bool:
    """The cell is ``value`` rounded to the decimals the cell shows."""
    shown, places = _number(cell)
    return abs(shown - value) <= 0.5 * 10.0**-places + 1e-12


def _markdown_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows[2:]]


# -- the numbers -----------------------------------------------------------------------------------
def test_markdown_cells_are_the_posterior_medians_and_quantiles(fits, loaded):
    table = tables.parameter_table(loaded)
    rows = _markdown_rows(table.to_markdown())
    labels = dict(zip(table.frame.index.get_level_values("label"), table.frame.index.get_level_values("name")))
    checked = 0
    for i, row in enumerate(rows):
        name = labels.get(row[0])
        if name is None or name.startswith("n_"):
            continue
        below = rows[i + 1]
        for k, fit_dir in enumerate(fits):
            draws = _posterior(fit_dir, name)
            # ArviZ's own summary and numpy agree on the median and the 90% equal-tailed interval
            summ = azs.summary(draws.to_dataset(), kind="stats_median", ci_prob=0.9, round_to="none")
            values = draws.values.ravel()
            assert np.isclose(summ["median"].iloc[0], np.median(values))
            assert _close(row[1 + k], np.median(values)), (name, row)
            lo, hi = below[1 + k].strip("[]").split(", ")
            assert _close(lo, np.quantile(values, 0.05)) and _close(lo, summ["eti90_lb"].iloc[0]), (name, below)
            assert _close(hi, np.quantile(values, 0.95)) and _close(hi, summ["eti90_ub"].iloc[0]), (name, below)
            checked += 1
    assert checked >= 2 * 9  # beta_k, beta_l, beta_r, beta_zero_rd, half-life, sigma_w, gamma, mu_alpha, sigma_alpha^2
    assert rows[-2][1:] == ["333", "333"] and rows[-1][0] == "# of firms"


def test_sd_spread_is_the_posterior_sd(fits, loaded):
    text = tables.parameter_table(loaded[:1], which="5").to_markdown(spread="sd")
    rows = _markdown_rows(text)
    assert rows[0][0] == "Attraction parameter, gamma"
    sd = np.std(_posterior(fits[0], "gamma").values.ravel(), ddof=1)
    assert rows[1][1].startswith("(") and _close(rows[1][1].strip("()"), sd)
    assert "posterior sd in parentheses" in text and "credible interval" not in text


def test_csv_from_the_command_line_holds_the_unrounded_quantiles(fits, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert main(["table", *map(str, fits), "--out", str(out)]) == 0  # the format from the suffix
    frame = pd.read_csv(out, index_col=[0, 1])
    for model, fit_dir in zip(MODELS, fits):
        for name in ("gamma", "halflife_km", "sigma_alpha2", "beta_l"):
            values = _posterior(fit_dir, name).values.ravel()
            row = frame.xs(name, level="name").iloc[0]
            expected = [np.median(values), *np.quantile(values, [0.05, 0.95]), np.std(values, ddof=1)]
            got = [row[f"{model}: {s}"] for s in ("estimate", "lower", "upper", "sd")]
            np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert frame.xs("n_obs", level="name")[f"{MODELS[0]}: estimate"].iloc[0] == 333


def test_the_baseline_columns_are_its_estimates_and_bootstrap_percentiles(fits, loaded, baseline):
    frame = tables.parameter_table(loaded, baseline=baseline).frame
    stored = json.loads((baseline / "baseline.json").read_text())
    boot = pd.read_csv(baseline / "bootstrap.csv")
    for name in ("halflife_km", "gamma", "mu_alpha", "beta_l"):
        cell = frame.xs(name, level="name")["Two-step (2)"].iloc[0]
        assert cell["estimate"] == stored["estimates"][name]
        np.testing.assert_allclose([cell["lower"], cell["upper"]], np.quantile(boot[name], [0.05, 0.95]))
        assert np.isclose(cell["sd"], np.std(boot[name], ddof=1))
    spec1 = frame.xs("alpha", level="name")["Two-step (1)"].iloc[0]
    assert spec1["estimate"] == stored["estimates"]["spec1_alpha"]
    # Table 5 has no spec. (1) column: it has no location model
    assert "Two-step (1)" not in tables.parameter_table(loaded, baseline=baseline, which="5").frame.columns
    # from Python: the Fit's method gives the same frame
    pd.testing.assert_frame_equal(loaded[0].table(fits[1], baseline=baseline), frame)  # a folder beside it


def test_a_baseline_on_other_data_is_refused(loaded, baseline, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(baseline, other)
    stored = json.loads((other / "baseline.json").read_text())
    stored["n_obs"] += 1
    (other / "baseline.json").write_text(json.dumps(stored))
    with pytest.raises(BayesSpillError, match="not on the fit's data"):
        tables.parameter_table(loaded, baseline=other)
    (other / "baseline.json").write_text("{not json")
    with pytest.raises(BayesSpillError, match="not a baseline"):
        tables.parameter_table(loaded, baseline=other)
    with pytest.raises(BayesSpillError, match="no two-step baseline"):
        tables.parameter_table(loaded, baseline=tmp_path / "missing")


def test_table6_cells_are_the_counterfactual_quantiles(counterfactual):
    result, path = counterfactual
    table = tables.counterfactual_table(result)
    summary = result.summary()
    both = table.frame["Both"]
    np.testing.assert_allclose(both["estimate"], summary["both_pct_median"])
    np.testing.assert_allclose(both["lower"], summary["both_pct_q5"])
    np.testing.assert_allclose(table.frame[tables.DOLLAR_COLUMN]["upper"], summary["both_usd_mil_q95"])
    rows = _markdown_rows(table.to_markdown())
    assert rows[0][0] == summary["county"].iloc[0] and rows[0][1] == "0"
    assert rows[0][4].endswith("%") and _close(rows[0][4], summary["both_pct_median"].iloc[0])
    assert _markdown_rows(table.to_markdown(spread="sd"))[1] == rows[1]  # no sd in Table 6: the interval stays
    # the CSV the counterfactual command writes gives the same table
    pd.testing.assert_frame_equal(tables.counterfactual_table(path).frame, table.frame, check_exact=False)


# -- the layout ------------------------------------------------------------------------------------
def _check_latex(text: str) -> None:
    body = text[text.index(r"\begin{tabular}") : text.index(r"\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{([lc]+)\}", body).group(1)
    lines = body.splitlines()
    assert lines[1] == r"\toprule" and lines[-1] == r"\bottomrule"
    assert body.count(r"\toprule") == 1 and body.count(r"\bottomrule") == 1 and r"\hline" not in text
    assert r"\midrule" in body
    depth = 0
    for ch in re.sub(r"\\[{}]", "", text):  # escaped braces are text
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    for line in lines[1:]:
        if line.endswith(r"\\"):  # a row: its cells (a multicolumn spans several) fill the columns
            spans = sum(int(k) - 1 for k in re.findall(r"\\multicolumn\{(\d+)\}", line))
            assert line.count("&") - line.count(r"\&") + spans == len(spec) - 1, line
    outside_math = re.sub(r"\$[^$]*(?<!\\)\$", "", text.replace(r"\$", ""))
    assert not re.search(r"(?<!\\)[_%#]", outside_math), "unescaped _ % or # outside math"
    assert text.replace(r"\$", "").count("$") % 2 == 0  # math opened is closed


def test_latex_is_booktabs_with_balanced_braces_and_columns(fits, baseline, counterfactual, capsys):
    assert main(["table", *map(str, fits), "--baseline", str(baseline), "--format", "latex"]) == 0
    text = capsys.readouterr().out
    _check_latex(text)
    assert r"integrated\_alpha" in text and r"Two-step (2)" in text and r"\cmidrule" not in text
    assert "{lcccc}" in text  # two fits and the two-step's two specifications
    _check_latex(tables.counterfactual_table(counterfactual[0]).to_latex(spread="sd"))
    assert r"\cmidrule(lr){3-5}" in tables.counterfactual_table(counterfactual[0]).to_latex()


def test_rounding_as_a_paper_rounds():
    assert table_format.decimals([0.053]) == 3 and table_format.decimals([0.41, 0.66]) == 2
    assert table_format.decimals([0.00001]) == 4  # at most four decimals
    assert table_format.decimals([1931.0], "whole") == 0 and table_format.decimals([3.7], "percent") == 2
    assert [table_format.decimals([v], "dollars") for v in (114, 36, 3.75, 0.67)] == [0, 0, 1, 2]
    assert table_format.format_number(1931.4, 0) == "1,931" and table_format.format_number(-0.001, 2) == "0.00"
    assert table_format.format_number(float("nan"), 2) == ""
    assert table_format.escape_latex("a_b & 5% $#") == r"a\_b \& 5\% \$\#"


def test_command_line_errors_are_one_message(fits, counterfactual, tmp_path, capsys):
    assert main(["table", *map(str, fits), "--table", "6"]) == 2
    assert "Table 6 is made from one counterfactual" in capsys.readouterr().err
    assert main(["table", str(fits[0]), "--baseline", str(tmp_path)]) == 2
    assert "no two-step baseline" in capsys.readouterr().err
    assert main(["table", str(tmp_path), "--table", "6"]) == 2  # a folder without a counterfactual
    assert "needs one counterfactual" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("fips,county\n06085,x\n")
    assert main(["table", str(tmp_path / "bad.csv"), "--table", "6"]) == 2
    assert "not a table written by `bayes-spill counterfactual`" in capsys.readouterr().err
    assert main(["table", str(fits[0]), "--labels", "a,b"]) == 2
    assert "2 labels for 1 fits" in capsys.readouterr().err
    out = tmp_path / "t6.md"
    assert main(["table", str(counterfactual[1]), "--table", "6", "--out", str(out)]) == 0
    assert out.read_text().startswith("**Spillovers from an entrant")


# -- a real LaTeX engine -----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (Debian: texlive-latex-recommended)")
def test_latex_compiles_with_pdflatex(fits, baseline, counterfactual, tmp_path):
    fragment = tmp_path / "tables.tex"
    argv = ["table", *map(str, fits), "--baseline", str(baseline), "--out", str(fragment)]
    assert main(argv) == 0
    assert main(["table", str(counterfactual[1]), "--table", "6", "--out", str(tmp_path / "table6.tex")]) == 0
    document = tmp_path / "paper.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{tables.tex}\n\\input{table6.tex}\n\\end{document}\n"
    )
    standalone = tmp_path / "standalone.tex"
    assert main([*argv[:-2], "--spread", "sd", "--standalone", "--out", str(standalone)]) == 0
    for tex in (document, standalone):
        run = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout[-3000:]
        assert tex.with_suffix(".pdf").stat().st_size > 1000
    # the standalone document (1 in margins) holds the widest table within its text width
    assert "Overfull \\hbox" not in standalone.with_suffix(".log").read_text(errors="replace")
