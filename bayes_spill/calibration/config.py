"""Calibration studies' configuration (models/studies/*.toml): the calibration prior of the
simulator's parameters, the SBC and Monte Carlo settings, and what the studies simulate and fit
(the simulator's settings, the fitted model's TOML)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bayes_spill import paper
from bayes_spill.config import Prior, find_model_file, parse_prior, reject_unknown_keys, shipped_models
from bayes_spill.errors import ConfigError

# Study configurations live in models/studies/: models/*.toml are model configurations only.
STUDIES = shipped_models("studies")


DEFAULT_CALIBRATION = "calibration"


# The parameters the simulator takes from SimulationSettings: the calibration prior must give all.
SIMULATOR_PARAMETERS = (
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "sigma_w",
    "halflife_km",
    "gamma",
    "mu_alpha",
    "sigma_alpha",
)


SBC_PARAMETERS = (
    "gamma",
    "halflife_km",
    "mu_alpha",
    "sigma_alpha",
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "sigma_w",
)


MC_PARAMETERS = ("halflife_km", "gamma", "mu_alpha", "sigma_alpha2", "beta_k", "beta_l", "beta_r", "sigma_w")


METHODS = ("joint", "twostep")


@dataclass(frozen=True)
class SBCSpec:
    sims: int = 100
    firms: int = 150
    draws: int = 300
    tune: int = 300
    chains: int = 2
    ranks: int = 99  # L thinned posterior draws per fit: ranks lie in 0..L
    bins: int = 10  # chi-square bins; (L + 1) must be a multiple
    seed: int = 20100
    parameters: tuple[str, ...] = SBC_PARAMETERS
    simulation: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class MonteCarloSpec:
    datasets: int = 20
    firms: int = paper.FIRMS
    draws: int = 500
    tune: int = 500
    chains: int = 4
    bootstrap: int = 99
    level: float = 0.9
    seed: int = 20101
    methods: tuple[str, ...] = METHODS
    parameters: tuple[str, ...] = MC_PARAMETERS
    simulation: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class CalibrationConfig:
    """models/studies/calibration.toml, parsed."""

    base_model: str
    priors: tuple[tuple[str, Prior], ...]
    simulation: tuple[tuple[str, Any], ...]
    sbc: SBCSpec
    montecarlo: MonteCarloSpec
    sampler: str | None = None
    cores_per_fit: int = 1
    source: str = "<memory>"

    def prior(self, name: str) -> Prior:
        return dict(self.priors)[name]


def resolve_calibration(path: str | Path | None = None) -> Path:
    return find_model_file(DEFAULT_CALIBRATION if path is None else path, folder="studies")


def load_calibration(path: str | Path | None = None) -> CalibrationConfig:
    path = resolve_calibration(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the calibration configuration ({exc})") from None
    return parse_calibration(text, str(path))


def _simulation_table(table: dict, source: str, where: str) -> tuple[tuple[str, Any], ...]:
    from bayes_spill.model.simulate import SimulationSettings

    valid = [
        f for f in SimulationSettings.__dataclass_fields__ if f not in ("panel", *SIMULATOR_PARAMETERS, "sigma_alpha2")
    ]
    reject_unknown_keys(table, valid, source, where)
    out = []
    for key, value in table.items():
        if key == "county_shift":
            value = tuple((str(f), float(s)) for f, s in value)
        out.append((key, value))
    return tuple(out)


def _spec(cls, table: dict, source: str, where: str):
    names = [f for f in cls.__dataclass_fields__]
    reject_unknown_keys(table, names, source, where)
    values = {}
    for key, value in table.items():
        if key == "simulation":
            values[key] = _simulation_table(value, source, f"{where}.simulation")
        elif key in ("parameters", "methods"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {where}.{key} must be a list of names")
            values[key] = tuple(value)
        else:
            default = getattr(cls(), key)
            if isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{source}: {where}.{key} must be an integer, got {value!r}")
            if isinstance(default, float) and not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: {where}.{key} must be a number, got {value!r}")
            values[key] = value
    return cls(**values)


def parse_calibration(text: str, source: str = "<memory>") -> CalibrationConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    reject_unknown_keys(
        raw,
        ("name", "description", "model", "sampler", "cores_per_fit", "prior", "simulation", "sbc", "montecarlo"),
        source,
        "top level",
    )
    table = raw.get("prior", {})
    reject_unknown_keys(table, SIMULATOR_PARAMETERS, source, "[prior]")
    missing = [p for p in SIMULATOR_PARAMETERS if p not in table]
    if missing:
        raise ConfigError(
            f"{source}: [prior] must give every parameter the simulator takes; missing {', '.join(missing)}"
        )
    priors = tuple((name, parse_prior(name, table[name], source)) for name in SIMULATOR_PARAMETERS)
    sbc = _spec(SBCSpec, raw.get("sbc", {}), source, "[sbc]")
    mc = _spec(MonteCarloSpec, raw.get("montecarlo", {}), source, "[montecarlo]")
    check_sbc(sbc, source)
    check_montecarlo(mc, source)
    cores = raw.get("cores_per_fit", 1)
    if not isinstance(cores, int) or cores < 1:
        raise ConfigError(f"{source}: cores_per_fit must be a positive integer, got {cores!r}")
    return CalibrationConfig(
        base_model=str(raw.get("model", "lychagin2010")),
        priors=priors,
        simulation=_simulation_table(raw.get("simulation", {}), source, "[simulation]"),
        sbc=sbc,
        montecarlo=mc,
        sampler=raw.get("sampler"),
        cores_per_fit=cores,
        source=source,
    )


def check_sbc(s: SBCSpec, source: str = "sbc") -> None:
    for key in ("sims", "firms", "draws", "chains", "ranks", "bins"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{source}: sbc.{key} must be at least 1, got {getattr(s, key)}")
    if (s.ranks + 1) % s.bins:
        raise ConfigError(
            f"{source}: sbc.ranks + 1 ({s.ranks + 1}) must be a multiple of sbc.bins ({s.bins}) so every bin holds as many ranks"
        )
    if s.ranks > s.draws * s.chains:
        raise ConfigError(
            f"{source}: sbc.ranks ({s.ranks}) cannot exceed the posterior draws ({s.draws} x {s.chains} chains)"
        )
    unknown = [p for p in s.parameters if p not in SBC_PARAMETERS]
    if unknown:
        raise ConfigError(f"{source}: sbc.parameters {unknown} are not among {', '.join(SBC_PARAMETERS)}")


def check_montecarlo(m: MonteCarloSpec, source: str = "montecarlo") -> None:
    for key in ("datasets", "firms", "draws", "chains"):
        if getattr(m, key) < 1:
            raise ConfigError(f"{source}: montecarlo.{key} must be at least 1, got {getattr(m, key)}")
    if not 0 < m.level < 1:
        raise ConfigError(f"{source}: montecarlo.level must be in (0, 1), got {m.level}")
    if m.bootstrap < 2 and "twostep" in m.methods:
        raise ConfigError(
            f"{source}: montecarlo.bootstrap must be at least 2 for two-step intervals, got {m.bootstrap}"
        )
    bad = [x for x in m.methods if x not in METHODS]
    if bad:
        raise ConfigError(f"{source}: montecarlo.methods {bad} are not among {', '.join(METHODS)}")


def simulation_settings(base: dict, params: dict | None = None):
    """SimulationSettings from plain overrides and (optionally) model parameters
    (sigma_alpha becomes sigma_alpha2)."""
    from bayes_spill.model.simulate import SimulationSettings

    values = dict(base)
    if "county_shift" in values:
        values["county_shift"] = tuple((str(f), float(s)) for f, s in values["county_shift"])
    for name, value in (params or {}).items():
        if name == "sigma_alpha":
            values["sigma_alpha2"] = float(value) ** 2
        else:
            values[name] = float(value)
    return replace(SimulationSettings(), **values)


def fitted_model_toml(
    cal: CalibrationConfig, draws: int, tune: int, chains: int, seed: int, calibration_priors: bool
) -> str:
    """The TOML of the joint model the studies fit: the base model with (for SBC) the calibration
    prior for the simulator's parameters, and the study's sampler settings."""
    from bayes_spill.inference.fitting import resolve_config

    base = resolve_config(cal.base_model)
    if base.model.alpha != "heterogeneous" or not base.model.sorting:
        raise ConfigError(
            f"{cal.source}: the calibration model {cal.base_model!r} must have heterogeneous alpha and sorting"
        )
    priors = dict(base.priors)
    if calibration_priors:
        priors.update(dict(cal.priors))
    config = replace(base, name=f"{base.name}-calibration", priors=tuple(priors.items()))
    config = config.with_sampler(
        draws=draws, tune=tune, chains=chains, seed=seed, cores=cal.cores_per_fit, backend=cal.sampler
    )
    return config.to_toml()
