"""LOO comparison across variants (only of fits whose log-likelihoods cover the same data) and the
prior-to-posterior contraction. Synthetic fits: no sampling, so these run in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayes_spill.checking import comparison
from bayes_spill.checking.comparison import ComparisonError
from bayes_spill.cli.main import main
from bayes_spill.config import Prior
from bayes_spill.inference import posterior_io
from bayes_spill.inference.fitting import REPO_MODELS

N_FIRMS, CHAINS, DRAWS = 40, 2, 200


def fake_fit(
    model: str = "lychagin2010", data_sha="abc", firms=N_FIRMS, loglik_shift=0.0, seed=0, gamma_sd=0.1, log_h_sd=0.5
) -> xr.DataTree:
    """A DataTree shaped like a fit: posterior draws, per-firm log-likelihood, observed data and
    the stored configuration of ``models/<model>.toml``."""
    rng = np.random.default_rng(seed)
    firm_ids = [f"{1000 + i}" for i in range(firms)]
    base = rng.normal(-5.0, 1.0, firms)
    loglik = base[None, None, :] + loglik_shift + rng.normal(0, 0.3, (CHAINS, DRAWS, firms))
    posterior = {
        "halflife_km": (("chain", "draw"), np.exp(rng.normal(4.0, log_h_sd, (CHAINS, DRAWS)))),
        "sigma_w": (("chain", "draw"), np.abs(rng.normal(0.3, 0.01, (CHAINS, DRAWS)))),
    }
    if model not in ("homogeneous", "no_sorting"):
        posterior["gamma"] = (("chain", "draw"), rng.normal(0.05, gamma_sd, (CHAINS, DRAWS)))
    text = (Path(REPO_MODELS) / f"{model}.toml").read_text()
    tree = xr.DataTree.from_dict(
        {
            "/posterior": xr.Dataset(posterior),
            "/sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((CHAINS, DRAWS), bool))}),
            "/log_likelihood": xr.Dataset(
                {"firm_loglik": (("chain", "draw", "firm"), loglik)}, coords={"firm": firm_ids}
            ),
            "/observed_data": xr.Dataset(
                {"log_sales": (("obs",), np.arange(3.0 * firms)), "county": (("firm",), ["06085"] * firms)},
                coords={"firm": firm_ids},
            ),
            "/constant_data": xr.Dataset(),
        }
    )
    tree.attrs.update({"model_name": model, "model_config": text, "data_sha256": data_sha, "seed": 1})
    return tree


def test_loo_compares_variants_of_the_same_data_and_ranks_the_better_one():
    result = comparison.compare(
        {"lychagin2010": fake_fit(), "no_sorting": fake_fit("no_sorting", loglik_shift=-0.5, seed=1)}
    )
    assert list(result.table.index) == ["lychagin2010", "no_sorting"]
    assert result.table.loc["no_sorting", "elpd_diff"] < 0
    assert set(result.pareto.columns) >= {"good", "bad", "very_bad", "max_k", "good_k"}
    assert (result.pareto[["good", "bad", "very_bad"]].sum(axis=1) == N_FIRMS).all()
    assert any("predicts held-out firms better" in v for v in result.verdicts)


def test_loo_refuses_a_homogeneous_fit_beside_a_joint_one():
    with pytest.raises(ComparisonError, match="no location term") as info:
        comparison.compare({"lychagin2010": fake_fit(), "homogeneous": fake_fit("homogeneous")})
    assert "county choices" in str(info.value)


def test_loo_refuses_other_data_other_firms_and_other_choice_sets():
    with pytest.raises(ComparisonError, match="other data"):
        comparison.compare({"a": fake_fit(), "b": fake_fit("no_sorting", data_sha="def")})
    with pytest.raises(ComparisonError, match="different firms"):
        comparison.compare({"a": fake_fit(), "b": fake_fit("no_sorting", firms=N_FIRMS - 1)})
    with pytest.raises(ComparisonError, match="choice"):
        comparison.compare({"a": fake_fit(), "b": fake_fit("all_counties")})
    with pytest.raises(ComparisonError, match="at least two"):
        comparison.compare({"a": fake_fit()})
    # production-only with production-only is fine
    assert comparison.comparability_problems({"a": fake_fit("homogeneous"), "b": fake_fit("homogeneous", seed=2)}) == []


def test_compare_command_on_saved_fits(tmp_path, capsys):
    dirs = {}
    for name, model in (("joint", "lychagin2010"), ("nosort", "no_sorting"), ("homog", "homogeneous")):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        fake_fit(model, seed=len(name)).to_netcdf(dirs[name] / posterior_io.POSTERIOR_FILE, engine="h5netcdf")
    assert main(["compare", str(dirs["joint"]), str(dirs["nosort"])]) == 0
    out = capsys.readouterr().out
    assert "elpd_diff" in out and "Pareto k" in out
    assert main(["compare", str(dirs["joint"]), str(dirs["homog"])]) == 2
    assert "no location term" in capsys.readouterr().err


def test_pareto_k_verdict_names_the_share_of_bad_firms():
    counts = {"good_k": 0.7, "good": 30, "bad": 8, "very_bad": 2, "max_k": 1.4, "firms": 40}
    assert "10 of 40 firms (25%)" in comparison.loo_verdict(counts)
    assert "reliable" in comparison.loo_verdict({**counts, "good": 40, "bad": 0, "very_bad": 0, "max_k": 0.3})


@pytest.mark.parametrize(
    "prior, variance",
    [
        (Prior("Normal", (("mu", 0.0), ("sigma", 0.25))), 0.0625),
        (Prior("HalfNormal", (("sigma", 1.0),)), 1 - 2 / np.pi),
        (Prior("LogNormal", (("mu", 4.6), ("sigma", 1.0))), (np.e - 1) * np.exp(2 * 4.6 + 1)),
        (Prior("Exponential", (("lam", 2.0),)), 0.25),
        (Prior("Gamma", (("alpha", 3.0), ("beta", 2.0))), 0.75),
        (Prior("StudentT", (("nu", 5.0), ("mu", 0.0), ("sigma", 1.0))), 5 / 3),
    ],
)
def test_prior_variance_uses_pymc_parametrisations(prior, variance):
    assert comparison.prior_variance(prior) == pytest.approx(variance, rel=1e-9)


def test_prior_variance_on_the_log_scale():
    lognormal = Prior("LogNormal", (("mu", 4.6), ("sigma", 1.0)))
    assert comparison.prior_variance(lognormal, log=True) == 1.0
    gamma = Prior("Gamma", (("alpha", 3.0), ("beta", 2.0)))  # Var(log X) = trigamma(alpha)
    from scipy.special import polygamma

    assert comparison.prior_variance(gamma, log=True) == pytest.approx(float(polygamma(1, 3.0)), rel=0.02)


def test_contraction_separates_informed_from_prior_only_parameters():
    informed = comparison.contraction(fake_fit(gamma_sd=0.025, log_h_sd=0.1))
    assert informed.loc["gamma", "contraction"] == pytest.approx(0.99, abs=0.005)
    assert informed.loc["log(halflife_km)", "contraction"] == pytest.approx(0.99, abs=0.005)
    assert informed.loc["gamma", "prior_sd"] == pytest.approx(0.25)
    assert "pin it down" in comparison.contraction_verdicts(informed)["gamma"]

    prior_only = comparison.contraction(fake_fit(gamma_sd=0.25, log_h_sd=1.0))
    assert abs(prior_only.loc["gamma", "contraction"]) < 0.15
    assert "not identify" in comparison.contraction_verdicts(prior_only)["log(halflife_km)"]
    # a model without gamma reports the half-life only
    assert "gamma" not in comparison.contraction(fake_fit("no_sorting")).index
