"""Sampling to a precision (inference/precision.py): the ESS rule stops when the target is reached,
continues the same chains rather than restarting them, gives way to --draws, and says in the
posterior's attrs which rule stopped sampling.

One toy model compiled once for nutpie (a compile costs seconds) serves every sampling test here.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayes_spill.cli.main import main
from bayes_spill.config import MAX_DRAWS
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference import assembly, fitting, precision

FIRST, TARGET = 20, 150


@pytest.fixture(scope="module")
def toy():
    """A toy model whose parameters carry key-parameter names, and its nutpie compile."""
    import pymc as pm

    with pm.Model() as model:
        gamma = pm.Normal("gamma", 0.0, 1.0)
        sigma_w = pm.HalfNormal("sigma_w", 1.0)
        pm.Normal("y", gamma, sigma_w, observed=np.array([0.3, -0.2, 0.5, 0.1]))
    return model, fitting.compile_nutpie(model)


def toy_config(**sampler):
    settings = dict(backend="nutpie", chains=2, tune=60, draws=FIRST, seed=11, cores=1, ess_per_draw=0.0)
    return fitting.resolve_config("integrated_alpha").with_sampler(**{**settings, **sampler})


@pytest.fixture(scope="module")
def ess_run(toy):
    model, compiled = toy
    config = toy_config(draws=FIRST, ess=TARGET, max_draws=5000)
    return fitting.sample(model, config, progress=False, compiled=compiled)


def test_the_ess_rule_stops_once_the_target_is_reached(ess_run):
    attrs = ess_run.attrs
    assert attrs["stopping_rule"] == precision.RULE_ESS
    drawn = ess_run["posterior"].sizes["draw"]
    assert attrs["draws_per_chain"] == drawn
    # 2 chains x FIRST draws cannot hold TARGET effective draws: the chains were continued
    assert drawn > FIRST and attrs["ess_checks"] >= 2
    reached = precision.diagnostics(ess_run["posterior"].to_dataset())
    assert reached.meets(TARGET)
    assert attrs["ess_reached_min"] == min(reached.ess_bulk, reached.ess_tail) >= TARGET
    assert attrs["rhat_max"] <= precision.RHAT_LIMIT and attrs["ess_target"] == TARGET
    assert not np.isnan(ess_run["posterior"]["gamma"].values).any()
    # the chains ran at once (cores = chains, though toy_config asks for one core): the time at
    # which the last of them finished tuning is known
    assert attrs["tuning_wall_seconds"] > 0


def test_continuing_does_not_restart_the_chains(toy, ess_run):
    """The ESS-stopped run's draws are exactly those of a fixed-draws run of the same length and
    seed: the draws after the first checkpoint continue the same chains with the adaptation of
    the one tuning phase (a restart would re-tune: other step sizes, other draws)."""
    model, compiled = toy
    drawn = ess_run["posterior"].sizes["draw"]
    fixed = fitting.sample(model, toy_config(draws=drawn), progress=False, compiled=compiled)
    xr.testing.assert_equal(ess_run["posterior"].to_dataset(), fixed["posterior"].to_dataset())  # attrs: timestamps
    step = ess_run["sample_stats"]["step_size_bar"].values
    assert np.array_equal(step, fixed["sample_stats"]["step_size_bar"].values)
    # one adapted step size per chain across the extension point, before and after it alike
    assert (step == step[:, :1]).all()
    assert "stopping_rule" not in fixed.attrs  # assembly.stopping_attrs records "draws"


def test_the_first_checkpoint_is_sized_from_the_ess_per_draw(toy, ess_run, capsys):
    """With sampler.ess_per_draw the first checkpoint holds what the target needs at that rate
    (here more than `draws`), and the draws are those of the run that started from FIRST: the
    size of the first batch changes when the rule looks, not the chains."""
    model, compiled = toy
    config = toy_config(draws=FIRST, ess=TARGET, max_draws=5000, ess_per_draw=0.4)
    first = config.sampler.first_batch
    assert first == int(np.ceil(TARGET / (2 * 0.4))) > FIRST
    capsys.readouterr()
    sized = fitting.sample(model, config, progress=False, compiled=compiled)
    checkpoints = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision: ")]
    assert checkpoints[0].startswith(f"precision: {first} draws per chain"), checkpoints
    assert sized.attrs["ess_checks"] == len(checkpoints) and sized.attrs["draws_per_chain"] >= first
    common = min(sized["posterior"].sizes["draw"], ess_run["posterior"].sizes["draw"])
    xr.testing.assert_equal(
        sized["posterior"].to_dataset().isel(draw=slice(0, common)),
        ess_run["posterior"].to_dataset().isel(draw=slice(0, common)),
    )


def test_the_cap_stops_a_target_out_of_reach(toy):
    model, compiled = toy
    run = fitting.sample(
        model, toy_config(draws=FIRST, ess=10**6, max_draws=2 * FIRST), progress=False, compiled=compiled
    )
    assert run.attrs["stopping_rule"] == precision.RULE_MAX_DRAWS
    assert run["posterior"].sizes["draw"] == run.attrs["draws_per_chain"] == 2 * FIRST
    assert run.attrs["ess_reached_min"] < 10**6


def test_draws_turn_the_rule_off():
    config = fitting.resolve_config("integrated_alpha")
    assert config.sampler.ess > 0  # the shipped default samples to a precision
    assert config.with_sampler(draws=50).sampler.ess == 0
    assert config.with_sampler(draws=50, ess=400).sampler.ess == 400  # a first batch of 50
    with pytest.raises(BayesSpillError, match="not both"):
        fitting.fit(model=config, draws=50, ess=400, progress=False, report=False)


def test_other_samplers_refuse_an_explicit_target(monkeypatch):
    monkeypatch.setattr(fitting, "sample", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(BayesSpillError, match="cannot"):
        fitting.fit(model="integrated_alpha", backend="pymc", ess=400, progress=False, report=False)


def test_the_stopping_attrs_of_a_fixed_draws_run():
    tree = xr.DataTree.from_dict({"/posterior": xr.Dataset({"gamma": (("chain", "draw"), np.zeros((2, 7)))})})
    assert assembly.stopping_attrs(tree, toy_config()) == {"stopping_rule": precision.RULE_DRAWS, "draws_per_chain": 7}


def interrupted(draws: int, padded: bool) -> xr.DataTree:
    logp = np.zeros((2, draws))
    if padded:
        logp[1, -3:] = np.nan  # the second chain stopped 3 draws short
    return xr.DataTree.from_dict(
        {
            "/posterior": xr.Dataset({"gamma": (("chain", "draw"), logp.copy())}),
            "/sample_stats": xr.Dataset({"logp": (("chain", "draw"), logp)}),
        }
    )


def test_complete_accepts_ess_stopped_runs_and_rejects_interrupted_ones():
    config = toy_config(draws=FIRST, ess=TARGET)
    stopped = interrupted(FIRST + 13, padded=False)
    stopped.attrs["draws_per_chain"] = FIRST + 13
    assert fitting._require_complete(stopped, config) is stopped
    uneven = interrupted(FIRST + 13, padded=True)
    uneven.attrs["draws_per_chain"] = FIRST + 13
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        fitting._require_complete(uneven, config)
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        fitting._require_complete(interrupted(FIRST - 1, padded=False), toy_config(draws=FIRST))


def test_next_checkpoint_projects_from_the_ess_per_draw():
    reached = precision.Reached(draws=100, ess_bulk=500.0, ess_tail=250.0, rhat=1.0)
    assert precision.next_checkpoint(reached, 1000, 10**6) == 440  # 100 x 1000/250 x 1.1
    assert precision.next_checkpoint(reached, 200, 10**6) == 125  # at least MIN_GROWTH
    assert precision.next_checkpoint(reached, 1000, 300) == 300  # the cap
    unknown = precision.Reached(draws=100, ess_bulk=float("nan"), ess_tail=250.0, rhat=float("nan"))
    assert not unknown.meets(1) and precision.next_checkpoint(unknown, 1000, 10**6) == 200


def test_the_cli_passes_ess_and_rejects_bad_values(monkeypatch, capsys):
    seen = {}

    def fake_fit(**kwargs):
        seen.update(kwargs)
        raise BayesSpillError("stop here")

    monkeypatch.setattr(fitting, "fit", fake_fit)
    assert main(["fit", "--ess", "4000", "--no-progress"]) != 0
    assert seen["ess"] == 4000 and seen["draws"] is None
    for bad in ("0", "-5", "many", str(MAX_DRAWS + 1)):
        with pytest.raises(SystemExit):
            main(["fit", "--ess", bad])
        assert "--ess" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--ess", "400", "--draws", "100"])
    assert "not allowed with argument" in capsys.readouterr().err
