"""`bayes-spill fit` end to end on a tiny simulated industry: the files it writes, what they hold,
loading them back, same seed -> same draws, and no half-written posterior after a crash."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tiny_fits
import xarray as xr
from tiny_fits import NUTPIE_SEED, default_fit, nutpie_cli_args, nutpie_fit

import bayes_spill
from bayes_spill.cli.main import main
from bayes_spill.config import DEFAULT_MODEL, load_config
from bayes_spill.errors import PosteriorError
from bayes_spill.inference import posterior_io

TINY = nutpie_cli_args()  # --draws 40 --tune 40 --chains 2 --no-progress


@pytest.fixture(scope="module")
def tiny_csv():
    return tiny_fits.tiny_csv()


@pytest.fixture(scope="module")
def cli_fit():
    """`bayes-spill fit --seed 3` of tiny_csv (40 draws, 2 chains), shared with the reproducibility tests."""
    return default_fit()


@pytest.fixture(scope="module")
def cli_tree(cli_fit):
    """The command line's fit loaded once (a load costs about a second), for the tests that only
    read it."""
    return bayes_spill.load(cli_fit).tree


def test_cli_fit_writes_posterior_and_summary(cli_fit, capsys):
    assert (cli_fit / "posterior.nc").is_file()
    assert (cli_fit / "summary.csv").is_file()
    assert not list(cli_fit.glob(".*.tmp")), "a temporary file was left behind"


def test_posterior_groups_dims_and_names(cli_tree):
    tree = cli_tree
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in tree.children
    post = tree["posterior"]
    for name in (
        "gamma",
        "halflife_km",
        "mu_alpha",
        "sigma_alpha",
        "beta_k",
        "beta_l",
        "beta_r",
        "sigma_w",
        "alpha",
        "county_effect",
    ):
        assert name in post.data_vars, name
    assert post["alpha"].dims == ("chain", "draw", "firm")
    assert post["county_effect"].dims == ("chain", "draw", "county")
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 40
    loglik = tree["log_likelihood"]["firm_loglik"]
    assert loglik.dims == ("chain", "draw", "firm")
    assert np.all(np.isfinite(loglik.values)) and np.all(loglik.values < 0)


def test_attrs_carry_provenance(cli_tree, tiny_csv):
    import hashlib

    attrs = cli_tree.attrs
    config = load_config(f"models/{DEFAULT_MODEL}.toml")  # the CLI's default
    assert attrs["model_config_hash"] == config.with_sampler(seed=3, draws=40, tune=40, chains=2).hash()
    assert attrs["data_sha256"] == hashlib.sha256(tiny_csv.read_bytes()).hexdigest()
    assert attrs["seed"] == 3
    assert attrs["stopping_rule"] == "draws" and attrs["draws_per_chain"] == 40  # --draws: no ESS rule
    assert attrs["bayes_spill_version"] == bayes_spill.__version__
    assert "halflife_km" in attrs["model_config"]


def test_arviz_summary_works_on_the_loaded_tree(cli_tree):
    import arviz_stats as azs

    table = azs.summary(cli_tree, var_names=["gamma", "halflife_km"])
    assert len(table) == 2


def test_loaded_equals_written(cli_fit, tmp_path):
    tree = bayes_spill.load(cli_fit).tree
    again = tmp_path / "again"
    posterior_io.save(tree, again)
    reloaded = bayes_spill.load(again).tree
    for group in ("posterior", "log_likelihood", "log_prior", "prior", "observed_data", "constant_data"):
        xr.testing.assert_identical(tree[group].to_dataset(), reloaded[group].to_dataset())
    assert tree.attrs == reloaded.attrs


def test_load_checks_the_configuration(cli_fit):
    with pytest.raises(PosteriorError, match="model configuration hash"):
        posterior_io.load_tree(cli_fit, config=load_config("models/no_sorting.toml"))


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(PosteriorError, match="no posterior"):
        posterior_io.load_tree(tmp_path)
    (tmp_path / "posterior.nc").write_bytes(b"not a netcdf file")
    with pytest.raises(PosteriorError, match="not a readable posterior"):
        posterior_io.load_tree(tmp_path)


def test_summary_csv_has_interval_and_diagnostics(cli_fit):
    import pandas as pd

    table = pd.read_csv(cli_fit / "summary.csv", index_col=0)
    assert {"median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"} <= set(table.columns)
    assert "gamma" in table.index and "halflife_km" in table.index
    assert (table["q5"] <= table["median"]).all() and (table["median"] <= table["q95"]).all()


def test_same_seed_same_draws(cli_tree):
    # the command line's fit and the same fit from Python (each compile of a nutpie fit costs
    # seconds, so the pair is shared with test_reproducibility.py)
    first = cli_tree
    second = nutpie_fit(NUTPIE_SEED)
    other = nutpie_fit(NUTPIE_SEED + 1)
    for name in ("gamma", "halflife_km", "alpha"):
        np.testing.assert_array_equal(first["posterior"][name].values, second["posterior"][name].values)
    assert not np.array_equal(first["posterior"]["halflife_km"].values, other["posterior"]["halflife_km"].values)
    # one model and data: the fits after the first in this process sample the model it compiled
    # (fitting._COMPILED), whichever fit came first
    reused = [tree.attrs["compiled_model_reused"] for tree in (first, second, other)]
    assert sum(reused) >= 1, reused
    for tree in (first, second, other):
        assert (tree.attrs["compile_wall_seconds"] < 1.0) == bool(tree.attrs["compiled_model_reused"])


def test_a_compiled_model_is_reused_only_for_the_same_model_and_data(tiny_csv, tmp_path):
    from bayes_spill.data.files import write_table
    from bayes_spill.inference import fitting

    config, panel, _ = fitting.resolve_model_and_data(None, tiny_csv)
    key = fitting.compiled_key(panel, config)
    assert fitting.compiled_key(panel, config.with_sampler(seed=9, draws=7, tune=5, chains=3)) == key
    assert fitting.compiled_key(panel, config.with_sampler(backend="pymc")) != key
    assert fitting.compiled_key(replace(panel, sale=panel.sale * 1.01), config) != key
    # the same data from another file format: the same compiled model
    same = fitting.resolve_model_and_data(None, write_table(panel.to_frame(), tmp_path / "panel.dta"))[1]
    assert fitting.compiled_key(same, config) == key
    other_model = fitting.resolve_config("lychagin2010").with_sampler(**{"seed": config.sampler.seed})
    assert fitting.compiled_key(panel, other_model) != key
    moved = replace(panel.counties, lat=panel.counties.lat + 0.5)
    assert fitting.compiled_key(replace(panel, counties=moved), config) != key


def test_crash_while_writing_keeps_the_previous_posterior(cli_fit, tmp_path, monkeypatch):
    out = tmp_path / "run"
    tree = bayes_spill.load(cli_fit).tree
    posterior_io.save(tree, out)
    before = (out / "posterior.nc").read_bytes()

    def exploding_write(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.DataTree, "to_netcdf", exploding_write)
    with pytest.raises(KeyboardInterrupt):
        posterior_io.save(tree, out)
    assert (out / "posterior.nc").read_bytes() == before
    assert not list(out.glob(".*.tmp"))


def test_fit_without_a_model_fits_the_default_at_any_size(tiny_csv):
    """No --model: config.DEFAULT_MODEL, however many firms; a named model is kept."""
    from bayes_spill.inference.fitting import resolve_model_and_data

    chosen, panel, _ = resolve_model_and_data(None, tiny_csv)
    assert (chosen.name, panel.n_firms) == (DEFAULT_MODEL, 60)
    assert resolve_model_and_data("lychagin2010", tiny_csv)[0].name == "lychagin2010"


def test_fit_report_prints_truth_and_diagnostics(tiny_csv, tmp_path, capsys):
    sim_dir = tiny_csv.parent
    truth = json.loads((sim_dir / "truth.json").read_text())
    from bayes_spill.inference.summary import fit_report

    tree = bayes_spill.load_dataset  # noqa: F841  (lazy attribute resolves)
    fitted = nutpie_fit(NUTPIE_SEED + 1)  # a fit of tiny_csv made in Python, shared with test_same_seed_same_draws
    text = fit_report(fitted, truth)
    assert "truth" in text and "halflife_km" in text
    assert "divergences" in text and "e_bfmi" in text


def test_bad_data_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("gvkey,fyear,sale,emp,ppent,xrd,fips\n001,2000,1,1,1,-1,06085\n")
    code = main(["fit", "--data", str(bad), "--out", str(tmp_path / "out"), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.csv" in err and "xrd" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "posterior.nc").exists()


def test_panel_and_config_rebuilt_from_the_posterior(cli_tree, tiny_csv):
    from bayes_spill.data.inputs import load_panel

    tree = cli_tree
    rebuilt = posterior_io.panel_from_tree(tree)
    original = load_panel(tiny_csv)
    for name in ("firms", "years", "obs_firm", "obs_year", "sale", "emp", "ppent", "xrd", "rd_stock", "firm_county"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(original, name), err_msg=name)
    assert posterior_io.config_from_tree(tree).hash() == tree.attrs["model_config_hash"]


def test_load_returns_a_fit_that_parses_lazily_and_once(cli_fit, monkeypatch):
    """bayes_spill.load gives a Fit holding the tree and its folder; the configuration (parsed
    once while loading, to check the file's claims), the panel, the model data and the draws are
    each built on first use and then kept."""
    from bayes_spill.inference import results
    from bayes_spill.model import likelihood

    calls = {"config_from_tree": 0, "panel_from_tree": 0, "model_data": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(posterior_io, "config_from_tree")
    counted(posterior_io, "panel_from_tree")
    counted(likelihood, "model_data")
    fit = bayes_spill.load(cli_fit)
    assert isinstance(fit, bayes_spill.Fit) and isinstance(fit, results.FittedModel)
    assert isinstance(fit.tree, xr.DataTree) and fit.path == cli_fit
    assert calls == {"config_from_tree": 1, "panel_from_tree": 0, "model_data": 0}  # nothing built yet
    assert not {"panel", "model_data", "draws"} & set(vars(fit))
    assert fit.config.hash() == fit.tree.attrs["model_config_hash"]
    assert fit.panel.n_firms == 60 and fit.model_data.panel is fit.panel
    draws = fit.draws
    post = fit.tree["posterior"]
    assert draws.n_draws == post.sizes["chain"] * post.sizes["draw"]
    np.testing.assert_array_equal(draws.alpha[1], post["alpha"].values[0, 1])  # chain-major, firms in panel order
    for _ in range(2):
        assert (
            fit.config is fit.config
            and fit.panel is fit.panel
            and fit.draws is draws
            and fit.model_data is fit.model_data
        )
    assert calls == {"config_from_tree": 1, "panel_from_tree": 1, "model_data": 1}
    thinned = draws.thin(7)
    assert (
        thinned.n_draws == 7
        and thinned.halflife_km[0] == draws.halflife_km[0]
        and thinned.halflife_km[-1] == draws.halflife_km[-1]
    )
    assert fit.truth is None  # not the embedded dataset
    assert "Fit" in repr(fit) and str(cli_fit) in repr(fit)
    # a tree in memory parses on first use too
    lazy = results.FittedModel(fit.tree)
    assert lazy.path is None and lazy.config.hash() == fit.config.hash()
    assert calls["config_from_tree"] == 2


def test_fit_methods_delegate_to_the_after_fit_steps(cli_fit):
    fit = bayes_spill.load(cli_fit)
    table = fit.summary()
    assert "gamma" in table.index and {"median", "q5", "q95", "r_hat"} <= set(table.columns)
    assert fit.loo().elpd < 0


def test_data_enter_the_compiled_model_as_inputs_so_numba_can_cache_it(tiny_csv):
    # numba cannot cache code that embeds an array over 1 MB: the data must be inputs, and the
    # model with them as inputs must have the same log density and gradient.
    import numpy as np
    import pytensor
    from modes import value_function
    from pymc.model.fgraph import fgraph_from_model
    from pytensor.graph.basic import Constant

    from bayes_spill.inference import fitting

    def data_constants(model):
        fgraph, _ = fgraph_from_model(model)
        return [
            v
            for v in fgraph.variables
            if isinstance(v, Constant) and isinstance(v.data, np.ndarray) and v.data.ndim > 0 and v.data.nbytes > 8
        ]

    config, panel, _ = fitting.resolve_model_and_data(None, tiny_csv)
    _, model, _ = fitting._build(panel, config)
    as_inputs = fitting.with_data_as_inputs(model, min_bytes=9)
    assert data_constants(model), "the tiny model should have data arrays to move"
    assert not data_constants(as_inputs)
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0.0, 0.1, np.shape(v)) for k, v in model.initial_point().items()}
    names = [v.name for v in model.value_vars]  # the two models may order their variables differently

    def logp_and_gradient(m):
        values = {v.name: v for v in m.value_vars}
        logp = m.logp()
        return value_function(m, [logp, *pytensor.grad(logp, [values[n] for n in names])])(point)

    for mine, theirs in zip(logp_and_gradient(as_inputs), logp_and_gradient(model), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10)
    assert set(as_inputs.named_vars) == set(model.named_vars)


def test_the_default_model_keeps_no_array_numba_cannot_cache():
    import numpy as np
    from pymc.model.fgraph import fgraph_from_model
    from pytensor.graph.basic import Constant
    from pytensor.link.numba.dispatch.basic import NUMBA_CONSTANT_SIZE_LIMIT

    from bayes_spill.inference import fitting

    config, panel, _ = fitting.resolve_model_and_data(None, None)
    _, model, _ = fitting._build(panel, config)

    def largest_constant(m):
        fgraph, _ = fgraph_from_model(m)
        return max(
            v.data.nbytes for v in fgraph.variables if isinstance(v, Constant) and isinstance(v.data, np.ndarray)
        )

    assert largest_constant(model) > NUMBA_CONSTANT_SIZE_LIMIT  # what the test guards against
    assert largest_constant(fitting.with_data_as_inputs(model)) <= NUMBA_CONSTANT_SIZE_LIMIT
