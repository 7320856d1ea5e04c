"""Model configurations (models/*.toml): parsing, validation and hashing."""

from __future__ import annotations

import glob
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from bayes_spill.config import SamplerSpec, load_config, parse_config
from bayes_spill.errors import ConfigError

MODELS = Path(__file__).resolve().parents[1] / "models"

BASE = """
name = "test_model"
description = "a test"

[model]
alpha = "heterogeneous"
sorting = true
spillover = "level"
choice_set = "occupied"

[priors]
halflife_km = { dist = "LogNormal", mu = 4.6, sigma = 1.0 }
gamma = { dist = "Normal", mu = 0.0, sigma = 0.25 }
mu_alpha = { dist = "Normal", mu = 0.0, sigma = 1.0 }
sigma_alpha = { dist = "HalfNormal", sigma = 1.0 }
beta_k = { dist = "Normal", mu = 0.0, sigma = 1.0 }
beta_l = { dist = "Normal", mu = 0.0, sigma = 1.0 }
beta_r = { dist = "Normal", mu = 0.0, sigma = 1.0 }
beta_zero_rd = { dist = "Normal", mu = 0.0, sigma = 1.0 }
sigma_w = { dist = "HalfNormal", sigma = 1.0 }
year_effect = { dist = "Normal", mu = 0.0, sigma = 1.0 }
county_delta = { dist = "Normal", mu = 0.0, sigma = 2.0 }
county_tau = { dist = "HalfNormal", sigma = 2.0 }

[sampler]
backend = "nutpie"
chains = 4
draws = 1000
tune = 1000
target_accept = 0.9
seed = 2010

[panel]
depreciation = 0.15
presample_growth = 0.05
min_years = 3
on_gap = "error"
"""


def replace_line(text: str, start: str, new: str) -> str:
    """BASE with the line beginning with ``start`` replaced by ``new`` (exactly one such line)."""
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(start)]
    assert len(hits) == 1, f"{start!r} matches {len(hits)} lines"
    lines[hits[0]] = new
    return "\n".join(lines) + "\n"


def add_to_section(text: str, section: str, line: str) -> str:
    header = f"[{section}]\n"
    assert header in text
    return text.replace(header, header + line + "\n", 1)


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="test.toml")
    message = str(info.value)
    assert "test.toml" in message
    return message


def test_base_parses():
    config = parse_config(BASE)
    assert config.name == "test_model"
    assert config.model.location_block
    assert config.prior("halflife_km").family == "LogNormal"
    assert config.prior("halflife_km").kwargs() == {"mu": 4.6, "sigma": 1.0}


# -- the shipped models ------------------------------------------------------------------------
EXPECTED = {
    "lychagin2010": {"alpha": "heterogeneous", "sorting": True, "spillover": "level", "choice_set": "occupied"},
    "homogeneous": {"alpha": "homogeneous"},
    "no_sorting": {"alpha": "heterogeneous", "sorting": False},
    "log_spillover": {"spillover": "log", "choice_set": "occupied"},
    "all_counties": {"choice_set": "all", "spillover": "level"},
    "integrated_alpha": {"alpha": "heterogeneous", "integrate_alpha": True, "quadrature_nodes": 16},
}


def test_every_model_file_parses():
    files = sorted(MODELS.glob("*.toml"))
    assert {f.stem for f in files} >= set(EXPECTED), [f.stem for f in files]
    for path in files:
        config = load_config(path)
        assert config.name == path.stem, f"{path.name} is named {config.name!r}"
        assert config.description
        assert config.source == str(path)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_variants(name):
    config = load_config(MODELS / f"{name}.toml")
    for key, value in EXPECTED[name].items():
        assert getattr(config.model, key) == value, f"{name}: model.{key} = {getattr(config.model, key)!r}"
    assert config.model.own_stock == "exclude"
    priors = dict(config.priors)
    if config.model.alpha == "homogeneous":
        assert not config.model.location_block
        assert "alpha" in priors and "gamma" not in priors and "mu_alpha" not in priors
    else:
        assert config.model.location_block
        assert ("gamma" in priors) == config.model.sorting
        assert {"mu_alpha", "sigma_alpha", "county_delta", "county_tau"} <= set(priors)


# -- unknown keys ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "section, line, valid",
    [
        (None, 'colour = "blue"', ["name", "description", "model", "priors", "sampler", "panel"]),
        ("model", 'alfa = "heterogeneous"', ["alpha", "sorting", "spillover", "choice_set", "own_stock", "sbar_year"]),
        ("sampler", "draw = 10", ["backend", "chains", "draws", "tune", "target_accept", "seed"]),
        ("panel", "depreciaton = 0.2", ["depreciation", "presample_growth", "min_years", "on_gap"]),
        ("priors", 'sigma_u = { dist = "HalfNormal", sigma = 1.0 }', ["halflife_km", "gamma", "sigma_w", "county_tau"]),
    ],
)
def test_unknown_keys_list_the_valid_ones(section, line, valid):
    text = line + "\n" + BASE if section is None else add_to_section(BASE, section, line)
    message = config_error(text)
    bad_key = line.split("=")[0].strip()
    assert bad_key in message, message
    assert "valid keys" in message, message
    for key in valid:
        assert key in message, f"{key!r} not listed in {message!r}"


def test_prior_for_another_model_is_unknown():
    # a homogeneous model has no location block, so a gamma prior is an unknown key
    text = replace_line(BASE, "alpha = ", 'alpha = "homogeneous"')
    message = config_error(text)
    assert "gamma" in message and "valid keys" in message


# -- wrong types -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "start, new, phrase",
    [
        ("chains = ", 'chains = "4"', "integer"),
        ("chains = ", "chains = 4.0", "integer"),
        ("draws = ", "draws = true", "integer"),
        ("seed = ", "seed = 20.5", "integer"),
        ("target_accept = ", "target_accept = true", "number"),
        ("target_accept = ", 'target_accept = "0.9"', "number"),
        ("depreciation = ", "depreciation = false", "number"),
        ("min_years = ", 'min_years = "3"', "integer"),
        ("sorting = ", 'sorting = "yes"', "true or false"),
        ("sorting = ", "sorting = 1", "true or false"),
        ("spillover = ", "spillover = 1", "string"),
        ("name = ", "name = 5", "name"),
        ("description = ", "description = 5", "description"),
        ("backend = ", "backend = 3", "string"),
    ],
)
def test_wrong_types(start, new, phrase):
    message = config_error(replace_line(BASE, start, new))
    assert phrase in message, message


def test_list_of_strings_and_section_types():
    message = config_error(add_to_section(BASE, "model", 'county_covariates = "log_labor_force"'))
    assert "list of strings" in message
    message = config_error(add_to_section(BASE, "model", "county_covariates = [1, 2]"))
    assert "list of strings" in message
    for section in ("model", "sampler", "panel", "priors"):
        message = config_error(f"{section} = 3\n" + BASE.split("[model]")[0])
        assert f"[{section}]" in message and "must be a table" in message and "[[" not in message, message


@pytest.mark.parametrize(
    "start, new, phrase",
    [
        ("alpha = ", 'alpha = "mixed"', "model.alpha"),
        ("spillover = ", 'spillover = "sqrt"', "model.spillover"),
        ("choice_set = ", 'choice_set = "some"', "model.choice_set"),
        ("backend = ", 'backend = "stan"', "sampler.backend"),
        ("chains = ", "chains = 0", "sampler.chains"),
        ("tune = ", "tune = -1", "sampler.tune"),
        ("target_accept = ", "target_accept = 1.0", "sampler.target_accept"),
        ("seed = ", "seed = -1", "sampler.seed"),
        ("depreciation = ", "depreciation = 1.5", "depreciation"),
        ("min_years = ", "min_years = 1", "min_years"),
        ("on_gap = ", 'on_gap = "ignore"', "on_gap"),
        ("name = ", 'name = "has space"', "name"),
    ],
)
def test_invalid_values(start, new, phrase):
    message = config_error(replace_line(BASE, start, new))
    assert phrase in message, message


def test_sampler_ess_and_its_cap():
    """[sampler] ess: 0 (the default) draws exactly `draws`; a target makes `draws` the first batch
    and needs max_draws >= draws. A fixed-draws configuration hashes as before ess existed."""
    assert parse_config(BASE).sampler.ess == 0
    target = parse_config(add_to_section(BASE, "sampler", "ess = 800\nmax_draws = 5000"))
    assert (target.sampler.ess, target.sampler.max_draws) == (800, 5000)
    assert target.hash() != parse_config(BASE).hash()
    assert parse_config(add_to_section(BASE, "sampler", "max_draws = 5000")).hash() == parse_config(BASE).hash()
    assert "sampler.max_draws" in config_error(add_to_section(BASE, "sampler", "ess = 800\nmax_draws = 10"))
    assert "sampler.ess" in config_error(add_to_section(BASE, "sampler", "ess = -2"))


def test_the_first_batch_is_sized_from_the_ess_per_draw():
    """[sampler] ess_per_draw: the ESS rule's first checkpoint holds enough draws for the target at
    that rate (never fewer than `draws`, never more than `max_draws`); 0 (the default) keeps
    `draws`, and a configuration without it hashes as before it existed."""
    base = add_to_section(replace_line(BASE, "draws = ", "draws = 100"), "sampler", "ess = 1000\nmax_draws = 5000")
    assert parse_config(base).sampler.ess_per_draw == 0.0
    assert parse_config(base).sampler.first_batch == parse_config(base).sampler.draws
    sized = parse_config(add_to_section(base, "sampler", "ess_per_draw = 0.5")).sampler
    assert sized.first_batch == math.ceil(1000 / (sized.chains * 0.5))
    assert replace(sized, ess=4000).first_batch == math.ceil(4000 / (sized.chains * 0.5))
    assert replace(sized, ess_per_draw=1000.0).first_batch == sized.draws  # at least draws
    assert replace(sized, ess_per_draw=0.001).first_batch == sized.max_draws  # at most the cap
    assert replace(sized, ess=0).first_batch == sized.draws  # fixed draws: the rate plays no part
    unsized = parse_config(add_to_section(base, "sampler", "ess_per_draw = 0"))
    assert unsized.hash() == parse_config(base).hash()
    assert parse_config(add_to_section(base, "sampler", "ess_per_draw = 0.5")).hash() != parse_config(base).hash()
    assert "sampler.ess_per_draw" in config_error(add_to_section(base, "sampler", "ess_per_draw = -0.5"))


def test_log_floor_must_be_positive():
    assert "log_floor_bil" in config_error(add_to_section(BASE, "model", "log_floor_bil = 0.0"))


# -- priors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "new, phrase",
    [
        ('gamma = { dist = "Cauchy", alpha = 0.0, beta = 1.0 }', "is not one of"),
        ("gamma = { mu = 0.0, sigma = 1.0 }", "must be a table like"),
        ("gamma = 0.5", "must be a table like"),
        ('gamma = { dist = "Normal", mu = 0.0 }', "takes exactly mu, sigma"),
        ('gamma = { dist = "Normal", mu = 0.0, sigma = 1.0, nu = 3.0 }', "takes exactly mu, sigma"),
        ('gamma = { dist = "Normal", mu = 0.0, sigma = 0.0 }', "must be positive"),
        ('gamma = { dist = "Normal", mu = 0.0, sigma = -1.0 }', "must be positive"),
        ('gamma = { dist = "Normal", mu = "0", sigma = 1.0 }', "finite number"),
        ('gamma = { dist = "Normal", mu = true, sigma = 1.0 }', "finite number"),
        ('gamma = { dist = "Normal", mu = nan, sigma = 1.0 }', "finite number"),
        ('gamma = { dist = "Normal", mu = 0.0, sigma = inf }', "finite number"),
        ('gamma = { dist = "HalfNormal", sigma = 1.0 }', "real line"),
    ],
)
def test_invalid_priors(new, phrase):
    message = config_error(replace_line(BASE, "gamma = ", new))
    assert phrase in message, message
    assert "priors.gamma" in message, message


@pytest.mark.parametrize("name", ["halflife_km", "sigma_w", "sigma_alpha", "county_tau"])
@pytest.mark.parametrize(
    "prior", ['{ dist = "Normal", mu = 0.0, sigma = 1.0 }', '{ dist = "StudentT", nu = 3.0, mu = 0.0, sigma = 1.0 }']
)
def test_real_line_prior_on_a_positive_parameter(name, prior):
    message = config_error(replace_line(BASE, f"{name} = ", f"{name} = {prior}"))
    assert f"priors.{name}" in message and "positive distribution" in message, message


def test_other_prior_families_parse():
    text = replace_line(BASE, "halflife_km = ", 'halflife_km = { dist = "Gamma", alpha = 2.0, beta = 0.02 }')
    text = replace_line(text, "sigma_w = ", 'sigma_w = { dist = "Exponential", lam = 2 }')
    text = replace_line(text, "gamma = ", 'gamma = { dist = "StudentT", nu = 3, mu = 0, sigma = 0.5 }')
    config = parse_config(text)
    assert config.prior("halflife_km").kwargs() == {"alpha": 2.0, "beta": 0.02}
    assert config.prior("sigma_w").kwargs() == {"lam": 2.0}
    assert config.prior("gamma").kwargs() == {"nu": 3.0, "mu": 0.0, "sigma": 0.5}
    assert all(isinstance(v, float) for v in config.prior("gamma").kwargs().values())


@pytest.mark.parametrize("name", ["halflife_km", "gamma", "county_tau", "year_effect"])
def test_missing_prior(name):
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith(f"{name} = "))
    message = config_error(text)
    assert "missing" in message and name in message, message


def test_no_sorting_needs_no_gamma_prior():
    text = replace_line(BASE, "sorting = ", "sorting = false")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("gamma = "))
    config = parse_config(text)
    assert not config.model.sorting
    with pytest.raises(ConfigError, match="no prior for 'gamma'"):
        config.prior("gamma")


# -- files and TOML ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ['name = "x"\n[model\n', 'name = "unterminated\n', "= 3\n", "[model]\nalpha = \n"])
def test_invalid_toml(text):
    assert "not valid TOML" in config_error(text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such model configuration file"):
        load_config(tmp_path / "nope.toml")


def test_missing_name():
    message = config_error("\n".join(line for line in BASE.splitlines() if not line.startswith("name = ")))
    assert "'name'" in message


def test_defaults_fill_missing_sections():
    text = BASE.split("[sampler]")[0]
    config = parse_config(text)
    assert config.sampler == SamplerSpec()
    assert config.panel.depreciation == 0.15 and config.panel.min_years == 3


# -- hash --------------------------------------------------------------------------------------
def reorder_and_comment(text: str) -> str:
    """The same configuration with comments added and keys in other orders."""
    out = []
    for block in re.split(r"\n(?=\[)", text.strip()):
        lines = block.splitlines()
        header, body = (lines[0], lines[1:]) if lines[0].startswith("[") else ("", lines)
        body = [line for line in body if line.strip()]
        out.append("\n".join(([header] if header else []) + ["# a comment"] + body[::-1]))
    # inline-table keys in another order, and a float written as an int where allowed
    return (
        "\n\n".join(out).replace(
            '{ dist = "Normal", mu = 0.0, sigma = 1.0 }', '{ sigma = 1.0, mu = 0, dist = "Normal" }'
        )
        + "\n"
    )


def test_hash_is_stable_under_reordering_and_comments():
    original = parse_config(BASE)
    shuffled_text = reorder_and_comment(BASE)
    assert shuffled_text != BASE
    shuffled = parse_config(shuffled_text)
    assert shuffled.to_dict() == original.to_dict()
    assert shuffled.hash() == original.hash()
    assert re.fullmatch(r"[0-9a-f]{64}", original.hash())
    assert parse_config(BASE).hash() == original.hash()


def test_hash_changes_with_a_prior_and_the_model():
    original = parse_config(BASE).hash()
    prior = parse_config(replace_line(BASE, "gamma = ", 'gamma = { dist = "Normal", mu = 0.0, sigma = 0.5 }')).hash()
    family = parse_config(
        replace_line(BASE, "gamma = ", 'gamma = { dist = "StudentT", nu = 3.0, mu = 0.0, sigma = 0.25 }')
    ).hash()
    model = parse_config(replace_line(BASE, "choice_set = ", 'choice_set = "all"')).hash()
    draws = parse_config(replace_line(BASE, "draws = ", "draws = 500")).hash()
    assert len({original, prior, family, model, draws}) == 5


def test_hash_ignores_cores():
    config = parse_config(BASE)
    assert config.with_sampler(cores=2).hash() == config.hash()


def test_with_sampler_validates():
    config = parse_config(BASE)
    changed = config.with_sampler(draws=50, chains=2, tune=None)
    assert (changed.sampler.draws, changed.sampler.chains, changed.sampler.tune) == (50, 2, 1000)
    assert changed.priors == config.priors and changed.model == config.model
    assert config.sampler.draws == 1000  # the original is untouched
    for bad in (
        {"draws": 0},
        {"draws": -5},
        {"draws": "100"},
        {"chains": 1.5},
        {"backend": "stan"},
        {"target_accept": 0.2},
        {"thin": 2},
        {"ess": -1},
        {"ess": 500, "draws": 300, "max_draws": 200},  # the cap below the first batch
    ):
        with pytest.raises(ConfigError):
            config.with_sampler(**bad)


@pytest.mark.parametrize("path", sorted(glob.glob("models/*.toml")))
def test_effective_config_round_trips_through_toml(path):
    from bayes_spill.config import parse_config

    config = load_config(path).with_sampler(seed=99, draws=123, chains=3)
    again = parse_config(config.to_toml())
    assert again.hash() == config.hash()
    assert again.sampler.seed == 99 and again.sampler.draws == 123


def test_default_model_is_the_paper_model_with_alpha_integrated_out():
    """`bayes-spill fit` defaults to the formulation bench chose at every size; it must stay the
    model of models/lychagin2010.toml (priors, data settings, sampler), only computed with alpha_i
    integrated out. How the sampler adapts to the formulation's geometry (tuning steps, target
    acceptance, the ESS per draw that sizes the first checkpoint) is the formulation's own; the
    rest (backend, chains, seed, the ESS target) is shared."""
    from dataclasses import replace

    from bayes_spill.config import DEFAULT_MODEL

    default = load_config(f"models/{DEFAULT_MODEL}.toml")
    latent = load_config("models/lychagin2010.toml")
    assert default.model.integrate_alpha and not latent.model.integrate_alpha
    as_latent = replace(default.model, integrate_alpha=False, quadrature_nodes=latent.model.quadrature_nodes)
    assert as_latent == latent.model
    assert default.priors == latent.priors
    own = {"tune": None, "target_accept": None, "ess_per_draw": None}
    assert replace(default.sampler, **own) == replace(latent.sampler, **own) and default.panel == latent.panel
