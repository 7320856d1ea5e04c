"""No verdict from NaN (tracker issue 20, part 4): a statistic that is NaN or infinite is reported
as "cannot be computed because ...", never as OK or a percentage, and check names non-finite
posterior draws. And compare identifies data by the panel a fit stores (part 6)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from tiny_fits import fit_copy, tiny_config, tiny_csv

import bayes_spill
from bayes_spill.checking import comparison, ppc, report
from bayes_spill.cli.main import main
from bayes_spill.config import load_config
from bayes_spill.data.inputs import load_panel
from bayes_spill.inference import posterior_io
from bayes_spill.inference.assembly import constant_data, observed_data
from bayes_spill.inference.fitting import REPO_MODELS

NAN_PERCENT = re.compile(r"\bnan\b|\binf\b", re.IGNORECASE)


def ppc_table(p_values, observed=None) -> pd.DataFrame:
    n = len(p_values)
    observed = [1.0] * n if observed is None else observed
    return pd.DataFrame(
        {
            "check": ["sorting"] * n,
            "observed": observed,
            "replicated_median": [1.0] * n,
            "replicated_q5": [0.5] * n,
            "replicated_q95": [1.5] * n,
            "p_value": p_values,
            "extreme": [ppc.is_extreme(p) for p in p_values],
        },
        index=pd.Index([f"slope {i}" for i in range(n)], name="statistic"),
    )


def test_all_statistics_nan_is_not_ok():
    verdict = ppc.ppc_verdicts(ppc_table([np.nan, np.nan], observed=[np.nan, np.nan]))["sorting"]
    assert verdict.startswith("CANNOT BE COMPUTED")
    assert "slope 0 and slope 1 cannot be computed because they are not defined on the observed data" in verdict
    assert "OK" not in verdict and not NAN_PERCENT.search(verdict)


def test_some_statistics_nan_is_incomplete_not_ok():
    verdict = ppc.ppc_verdicts(ppc_table([0.4, np.nan]))["sorting"]
    assert verdict.startswith("INCOMPLETE: slope 1 cannot be computed because")
    assert "p from 0.40 to 0.40" in verdict and not NAN_PERCENT.search(verdict)
    misfit = ppc.ppc_verdicts(ppc_table([0.001, np.nan]))["sorting"]
    assert misfit.startswith("MISFIT") and "Besides, slope 1 cannot be computed" in misfit


def test_finite_statistics_keep_their_verdicts():
    assert ppc.ppc_verdicts(ppc_table([0.3, 0.6]))["sorting"].startswith("OK")


def tree_with(posterior: dict, loglik: np.ndarray) -> xr.DataTree:
    text = (Path(REPO_MODELS) / "lychagin2010.toml").read_text()
    tree = xr.DataTree.from_dict(
        {
            "/posterior": xr.Dataset({k: (("chain", "draw"), v) for k, v in posterior.items()}),
            "/log_likelihood": xr.Dataset({"firm_loglik": (("chain", "draw", "firm"), loglik)}),
            "/observed_data": xr.Dataset(),
            "/constant_data": xr.Dataset(),
            "/sample_stats": xr.Dataset(),
        }
    )
    tree.attrs.update({"model_name": "lychagin2010", "model_config": text})
    return tree


def test_contraction_of_nan_draws_cannot_be_computed():
    rng = np.random.default_rng(0)
    gamma = rng.normal(0, 0.1, (2, 100))
    gamma[0, 3] = np.nan
    halflife = np.exp(rng.normal(4, 0.5, (2, 100)))
    halflife[1, 7] = np.inf
    table = comparison.contraction(tree_with({"gamma": gamma, "halflife_km": halflife}, rng.normal(size=(2, 100, 5))))
    verdicts = comparison.contraction_verdicts(table)
    assert (
        verdicts["gamma"]
        == "gamma: the contraction from prior to posterior cannot be computed because 1 of 200 posterior draws are not finite numbers."
    )
    assert "cannot be computed because 1 of 200" in verdicts["log(halflife_km)"]
    assert not any(NAN_PERCENT.search(v) or "%" in v for v in verdicts.values())


def test_loo_of_a_nonfinite_log_likelihood_cannot_be_computed():
    rng = np.random.default_rng(1)
    loglik = rng.normal(-5, 0.3, (2, 100, 6))
    loglik[:, :, 2] = np.nan
    tree = tree_with({"gamma": rng.normal(size=(2, 100))}, loglik)
    counts = comparison.pareto_k_counts(comparison.loo(tree))
    verdict = comparison.loo_verdict(counts)
    assert verdict.startswith("PSIS-LOO cannot be computed because") and "reliable" not in verdict
    assert not NAN_PERCENT.search(verdict)


def test_check_reports_nonfinite_draws_and_never_says_ok_from_them(tmp_path, capsys):
    folder = fit_copy("lychagin2010", tmp_path / "fit")
    tree = bayes_spill.load(folder).tree
    tree["posterior"]["gamma"].values[0, :5] = np.nan  # in place: the loaded draws are numpy arrays
    assert int(np.isnan(tree["posterior"]["gamma"].values).sum()) == 5
    posterior_io.save(tree, folder)
    assert main(["check", str(folder), "--ppc-draws", "10", "--bootstrap", "0", "--no-figures"]) == 0
    out = capsys.readouterr().out
    verdicts = dict(line[2:].split(": ", 1) for line in out.splitlines() if line.startswith("- "))
    assert verdicts["Sampler"].startswith(
        "PROBLEMS: The posterior holds draws that are not finite numbers: gamma (5 of 80)"
    )
    assert (
        "R-hat" in verdicts["Sampler"]
        and "of gamma cannot be computed because its draws are not all finite numbers" in verdicts["Sampler"]
    )
    assert (
        "gamma: the contraction from prior to posterior cannot be computed because 5 of 80"
        in verdicts["Identification (prior to posterior)"]
    )
    assert (  # power-scaling (checking/sensitivity.py) gives no number from them either
        "gamma: the power-scaling sensitivity cannot be computed because its posterior draws are not all finite"
        in verdicts["Identification (prior to posterior)"]
    )
    for name, verdict in verdicts.items():
        assert "nan%" not in verdict.lower() and not re.search(r"p from nan", verdict), (name, verdict)
    assert "not finite numbers: gamma (5 of 80)" in (folder / "report.md").read_text()


def test_nonfinite_draws_counts_each_variable():
    values = np.zeros((2, 3))
    values[1, 2] = -np.inf
    tree = xr.DataTree.from_dict(
        {"/posterior": xr.Dataset({"g": (("chain", "draw"), values), "h": (("chain", "draw"), np.ones((2, 3)))})}
    )
    assert report.nonfinite_draws(tree) == {"g": (1, 6)}


# -- compare: data identified by the panel ------------------------------------------------------------
def stored_panel_tree(csv: Path, data_sha: str) -> xr.DataTree:
    config = load_config(Path(REPO_MODELS) / "lychagin2010.toml")
    panel = load_panel(csv, settings=config.panel)
    tree = xr.DataTree.from_dict(
        {"/observed_data": observed_data(panel, config), "/constant_data": constant_data(panel, config)}
    )
    tree.attrs["data_sha256"] = data_sha
    return tree


def test_the_same_data_with_crlf_line_ends_is_the_same_data(tmp_path):
    lf = tiny_csv()
    crlf = tmp_path / "panel_crlf.csv"
    crlf.write_bytes(lf.read_bytes().replace(b"\n", b"\r\n"))
    assert lf.read_bytes() != crlf.read_bytes()
    a, b = stored_panel_tree(lf, "bytes-of-lf"), stored_panel_tree(crlf, "bytes-of-crlf")
    assert comparison.data_identity(a) == comparison.data_identity(b)
    assert comparison.data_identity(a)[0] == "panel sha256"
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(lf, dtype=str).sample(frac=1.0, random_state=3).to_csv(shuffled, index=False)
    assert comparison.data_identity(stored_panel_tree(shuffled, "x")) == comparison.data_identity(
        a
    )  # row order is not data


def test_changed_data_is_other_data(tmp_path):
    frame = pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})
    frame.loc[0, "sale"] *= 1.01
    changed = tmp_path / "changed.csv"
    frame.to_csv(changed, index=False)
    assert comparison.data_identity(stored_panel_tree(changed, "x")) != comparison.data_identity(
        stored_panel_tree(tiny_csv(), "x")
    )


@pytest.mark.slow
def test_compare_accepts_fits_of_the_same_data_read_from_different_bytes(tmp_path):
    """Two fit folders of one panel, one read from LF and one from CRLF: compare runs."""
    crlf = tmp_path / "panel_crlf.csv"
    crlf.write_bytes(tiny_csv().read_bytes().replace(b"\n", b"\r\n"))
    config = tiny_config().with_sampler(draws=10, tune=10, chains=1)
    bayes_spill.fit(data=tiny_csv(), model=config, out=tmp_path / "lf", progress=False, report=False)
    other = tiny_config("integrated_alpha").with_sampler(draws=10, tune=10, chains=1)
    bayes_spill.fit(data=crlf, model=other, out=tmp_path / "crlf", progress=False, report=False)
    trees = [bayes_spill.load(tmp_path / name).tree for name in ("lf", "crlf")]
    assert trees[0].attrs["data_sha256"] != trees[1].attrs["data_sha256"]
    assert comparison.comparability_problems({"lf": trees[0], "crlf": trees[1]}) == []


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_ppp_value_of_nonfinite_draws_only_is_nan_and_not_extreme(value):
    p = ppc.ppp_value(np.array([value] * 4), np.array([value] * 4))
    assert np.isnan(p) and not ppc.is_extreme(p)


@pytest.mark.slow
def test_check_of_a_one_firm_fit_says_what_cannot_be_computed(tmp_path, capsys):
    """The case of the issue: Table 4's slopes have no value on one firm, so the sorting check
    cannot be computed (it said OK with 'p from nan to nan'); the fit warned first."""
    frame = pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})
    one = tmp_path / "one.csv"
    frame[frame["gvkey"] == frame["gvkey"].iloc[0]].to_csv(one, index=False)
    config = tiny_config().with_sampler(draws=20, tune=20, chains=2)
    bayes_spill.fit(data=one, model=config, out=tmp_path / "fit", progress=False, report=False)
    assert "the panel holds one firm: sigma_alpha, gamma" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "fit"), "--ppc-draws", "10", "--bootstrap", "0", "--no-figures"]) == 0
    sorting = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("- Sorting"))
    assert "CANNOT BE COMPUTED" in sorting and "OK" not in sorting and "nan" not in sorting
