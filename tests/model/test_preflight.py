"""Before sampling (tracker issue 20, parts 3 and 5): a degenerate panel is warned about with the
parameters it cannot inform, and draws that cannot fit in memory stop the fit with the numbers.
No test here samples: ``fitting.sample`` is replaced by one that fails if it is reached, or that
stops right after the preflight."""

from __future__ import annotations

import pandas as pd
import pytest
from tiny_fits import tiny_config, tiny_csv

import bayes_spill
from bayes_spill.cli.main import main
from bayes_spill.data.inputs import load_panel
from bayes_spill.errors import ConfigError
from bayes_spill.inference import fitting
from bayes_spill.model import preflight
from bayes_spill.model.likelihood import build_model, model_data


def frame() -> pd.DataFrame:
    return pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str})


def one_firm() -> pd.DataFrame:
    data = frame()
    return data[data["gvkey"] == data["gvkey"].iloc[0]].reset_index(drop=True)


def one_county() -> pd.DataFrame:
    data = frame()
    return data.assign(fips=data["fips"].iloc[0])


def no_rd() -> pd.DataFrame:
    return frame().assign(xrd=0.0)


def findings(data, model: str = "lychagin2010") -> dict[str, tuple[str, ...]]:
    config = tiny_config(model)
    found = preflight.degenerate_panel(model_data(load_panel(data, settings=config.panel), config), config)
    return {item.condition: item.parameters for item in found}


def test_a_usual_panel_gets_no_warning():
    assert findings(frame()) == {}
    assert findings(frame(), "integrated_alpha") == {}


def test_one_firm():
    found = findings(one_firm())
    assert found["the panel holds one firm"] == ("sigma_alpha", "gamma")
    assert found["the location choice has one county to choose from"] == (
        "gamma",
        "county_effect",
        "county_delta",
        "county_tau",
    )
    # a firm's own stock is excluded, so one firm receives no spillover at all
    assert found["the spillover a firm receives does not change over its years"] == (
        "alpha",
        "mu_alpha",
        "sigma_alpha",
        "halflife_km",
    )


def test_all_firms_in_one_county():
    found = findings(one_county())
    assert "the location choice has one county to choose from" in found
    assert found["the spillover firms receive does not depend on distance (all R&D is in the firms' own counties)"] == (
        "halflife_km",
    )
    assert "the panel holds one firm" not in found


def test_no_rd_anywhere():
    found = findings(no_rd())
    assert found == {
        "no firm-year has an R&D stock": (
            "beta_r",
            "beta_zero_rd",
            "alpha",
            "mu_alpha",
            "sigma_alpha",
            "halflife_km",
            "gamma",
        )
    }


def test_the_homogeneous_model_names_its_one_alpha():
    assert findings(no_rd(), "homogeneous") == {
        "no firm-year has an R&D stock": ("beta_r", "beta_zero_rd", "alpha", "halflife_km")
    }
    assert "the panel holds one firm" not in findings(one_firm(), "homogeneous")  # no spread of alpha to speak of


def stop_at_sampling(*args, **kwargs):
    raise RuntimeError("reached sampling")


def test_fit_prints_the_warnings_before_sampling(monkeypatch, capsys):
    monkeypatch.setattr(fitting, "sample", stop_at_sampling)
    with pytest.raises(RuntimeError, match="reached sampling"):
        bayes_spill.fit(data=one_county(), model=tiny_config(), progress=False, report=False)
    err = capsys.readouterr().err
    assert "warning: DataFrame: the location choice has one county to choose from: gamma, county_effect" in err
    assert "halflife_km has its prior only" in err


def test_fit_of_a_usual_panel_prints_no_warning(monkeypatch, capsys):
    monkeypatch.setattr(fitting, "sample", stop_at_sampling)
    with pytest.raises(RuntimeError, match="reached sampling"):
        bayes_spill.fit(data=tiny_csv(), model=tiny_config(), progress=False, report=False)
    assert "warning" not in capsys.readouterr().err


# -- memory -----------------------------------------------------------------------------------------------
def test_values_per_draw_counts_what_a_posterior_stores():
    config = tiny_config()
    panel = load_panel(tiny_csv(), settings=config.panel)
    model = build_model(panel, config, model_data(panel, config))
    count = preflight.values_per_draw(model, panel.n_firms, config)
    # alpha_i, the per-firm log-likelihood and the county effects are in every draw
    assert count > 2 * panel.n_firms + len(panel.occupied)
    assert count < 10 * (panel.n_firms + len(panel.occupied) + 50)


def test_draws_that_cannot_fit_in_memory_stop_before_sampling(monkeypatch):
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: 50 * 1024**2)
    monkeypatch.setattr(fitting, "sample", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ConfigError) as caught:
        bayes_spill.fit(data=tiny_csv(), model=tiny_config(), draws=1_000_000, chains=2, progress=False, report=False)
    message = str(caught.value)
    assert "1,000,000 draws x 2 chains x" in message and "values per draw x 8 bytes" in message
    assert "52.4 MB of memory available" in message and "use at most" in message
    most = int(message.split("use at most ")[1].split(" draws")[0].replace(",", ""))
    monkeypatch.setattr(fitting, "sample", stop_at_sampling)
    with pytest.raises(RuntimeError, match="reached sampling"):  # the number it suggests passes
        bayes_spill.fit(data=tiny_csv(), model=tiny_config(), draws=most, chains=2, progress=False, report=False)


def test_the_command_line_says_the_same_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: 8 * 1024**3)
    monkeypatch.setattr(fitting, "sample", lambda *a, **k: pytest.fail("sampling started"))
    code = main(
        ["fit", "--data", str(tiny_csv()), "--out", str(tmp_path / "fit"), "--draws", "100000000", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "100,000,000 draws x 4 chains" in err and "Traceback" not in err


def test_unknown_memory_does_not_stop_a_fit(monkeypatch):
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: None)
    config = tiny_config()
    panel = load_panel(tiny_csv(), settings=config.panel)
    preflight.require_draws_fit_memory(
        build_model(panel, config, model_data(panel, config)), panel.n_firms, config.with_sampler(draws=10**9)
    )


def test_config_error_is_raised_with_sampler_bounds():
    with pytest.raises(
        ConfigError, match="sampler.seed must be at most 9,223,372,036,854,775,807, got 99,999,999,999,999,999,999"
    ):
        tiny_config().with_sampler(seed=99999999999999999999)


def test_sampling_to_an_ess_target_stops_where_memory_ends(monkeypatch, capsys):
    config = tiny_config().with_sampler(backend="nutpie", ess=1000, draws=100, max_draws=10_000, chains=2)
    panel = load_panel(tiny_csv(), settings=config.panel)
    data = model_data(panel, config)
    model = build_model(panel, config, data)
    per_draw = preflight.values_per_draw(model, panel.n_firms, config)
    # memory for 2,500 draws per chain, held TRACE_COPIES times
    monkeypatch.setattr(preflight, "available_memory_bytes", lambda: preflight.TRACE_COPIES * 2 * per_draw * 8 * 2500)
    capped = preflight.before_sampling(model, data, config)
    assert capped.sampler.max_draws == 2500 and capped.sampler.draws == 100 and capped.sampler.ess == 1000
    assert "memory holds at most 2,500 draws per chain" in capsys.readouterr().err
    # a fixed number of draws that fits, or a cap that fits, is left as it is
    for fits in (config.with_sampler(draws=2000), config.with_sampler(max_draws=2500)):
        assert preflight.before_sampling(model, data, fits) == fits
    assert "memory holds" not in capsys.readouterr().err
