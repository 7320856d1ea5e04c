"""Model configurations: one TOML file per named variant (``models/*.toml``), parsed by tomllib
into frozen dataclasses. Unknown keys, wrong types and invalid priors are errors that list what
is valid. Priors and sampler settings live in the file, not in code.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from bayes_spill.data.panel import PanelSettings
from bayes_spill.errors import ConfigError
from bayes_spill.spillover.kernel import SpilloverTransform

# The model files that come with the package: models/ at the top of a checkout, and in an installed
# wheel the data-only package bayes_spill.model_files, which pyproject.toml maps onto models/.
INSTALLED_MODELS = "model_files"
_CHECKOUT = Path(__file__).resolve().parents[1]


def shipped_models(folder: str = "") -> Path:
    """The folder of the model files that ship with the package.

    Parameters
    ----------
    folder : str
        A subfolder of ``models/``: ``""`` for the model configurations, ``"studies"`` for the
        calibration studies.

    Returns
    -------
    Path
        ``models/<folder>`` of the checkout this module runs from (editable installs and
        ``PYTHONPATH`` runs read the files a contributor edits), else the copy installed with the
        package (``bayes_spill.model_files``, found through importlib.resources).
    """
    checkout = _CHECKOUT / "models"
    if checkout.is_dir() and (_CHECKOUT / "pyproject.toml").is_file():
        return checkout / folder if folder else checkout
    # Through the regular package bayes_spill: model_files holds no __init__.py (a namespace
    # package), files() of a namespace package is no pathlib.Path, and an editable install does
    # not map it at all (hence the checkout first, above).
    installed = Path(str(resources.files("bayes_spill"))) / INSTALLED_MODELS
    return installed / folder if folder else installed


def find_model_file(model: str | Path, folder: str = "") -> Path:
    """The file a model (or calibration study) argument names.

    Parameters
    ----------
    model : str or Path
        A path to a TOML file, or the name of one (no ``.toml``): ``NAME`` is looked up as
        ``./models/<folder>/NAME.toml`` in the working directory first, then among the files
        that ship with the package (`shipped_models`).
    folder : str
        ``""`` for model configurations, ``"studies"`` for calibration studies.

    Returns
    -------
    Path
        The file found, or ``model`` unchanged when nothing matches (reading it then reports
        the missing file).
    """
    path = Path(model)
    if path.exists() or path.suffix == ".toml":
        return path
    for base in (Path.cwd() / "models", shipped_models()):
        candidate = (base / folder if folder else base) / f"{model}.toml"
        if candidate.is_file():
            return candidate
    return path


# Distributions a prior may name, with their parameters (PyMC names) and positivity rules.
PRIOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "Normal": ("mu", "sigma"),
    "HalfNormal": ("sigma",),
    "LogNormal": ("mu", "sigma"),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "StudentT": ("nu", "mu", "sigma"),
}
# The model `bayes-spill fit` uses unless told otherwise, at every size: alpha_i integrated out,
# the formulation with the most effective samples per second by `bayes-spill bench` at the paper's
# scale, even with latent alpha_i at 10 times its firms, and the one whose fit at 30 times them
# finished within the time and memory limits (docs/performance.md, "Scale"): its leapfrog steps
# per draw stay at about 15 while the latent model's grow with the firms (15, 20, 27, 31 at 1, 4,
# 6 and 10 times). models/lychagin2010.toml is the same model and posterior, alpha_i latent.
DEFAULT_MODEL = "integrated_alpha"
DEFAULT_MODEL_REASON = "the default at every size, the faster formulation by `bayes-spill bench`"


POSITIVE_PARAMETERS = {"sigma", "lam", "alpha", "beta", "nu"}

# Which support each model parameter needs, so a prior cannot put mass where it is undefined.
POSITIVE_SUPPORT = {"halflife_km", "sigma_alpha", "sigma_w", "county_tau"}
REAL_SUPPORT = {
    "gamma",
    "mu_alpha",
    "alpha",
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "year_effect",
    "county_delta",
}
POSITIVE_FAMILIES = {"HalfNormal", "LogNormal", "Exponential", "Gamma"}
REAL_FAMILIES = {"Normal", "StudentT"}

SAMPLERS = ("nutpie", "pymc", "numpyro")

# A model file is a page of TOML; anything far larger is the wrong file (or /dev/zero).
MAX_MODEL_FILE_BYTES = 1024**2
# What the samplers and the saved posterior take: nutpie reads the seed as an unsigned 64-bit
# integer, and the posterior's attributes and a TOML file hold signed 64-bit integers.
MAX_SEED = 2**63 - 1
# PyMC sizes its draw arrays with C ints; more draws or tuning steps than this is a typo.
MAX_DRAWS = 2**31 - 1
MAX_CHAINS = 1024


@dataclass(frozen=True)
class Prior:
    family: str
    params: tuple[tuple[str, float], ...]

    def kwargs(self) -> dict[str, float]:
        return dict(self.params)


@dataclass(frozen=True)
class ModelSpec:
    """What the likelihood contains.

    alpha: "heterogeneous" (alpha_i ~ Normal(mu_alpha, sigma_alpha), spec. 2) or "homogeneous"
        (one alpha for all firms, no location block: spec. 1 of Table 3).
    sorting: False fixes gamma = 0 (the location block stays, so LOO compares like with like).
    spillover: "level" ($ bil, the paper's choice) or "log" (log of max(S, log_floor_bil)).
    choice_set: "occupied" counties (default, the paper's setting) or "all" counties.
    own_stock: "exclude" (S_it = S_{l_i t} - R_it, default) or "include".
    sbar_year: None averages S_lt over the sample years for the location choice; a year uses it.
    county_covariates: covariates of the county-effect prior; "log_labor_force" is built in,
        other names are numeric columns of the county table (used as given, centred).
    evaluation: "interpolated" (default: the fields S_lt(h) and Sbar_l(h) tabulated in ln h, and
        the logit denominator by binned Taylor expansion in gamma alpha_i, or with alpha_i
        integrated out by a cubic Hermite table in c where the firms x nodes rows number
        bayes_spill.model.likelihood.TABLE_ROWS_PER_COUNTY per county, within likelihood_tolerance of the direct sums
        over the whole location log-likelihood; see spillover/interpolation.py and model/denominator.py) or "exact" (direct sums:
        counties x sources x years, firms x counties).
    denominator_bins: 0 chooses the logit denominator's bins at each evaluation (Numba, C); K >= 1
        fixes K, with the direct sum wherever K bins cannot keep the expansion's radius (static
        shapes, as JAX needs; the numpyro sampler uses 16 when this is 0), and the expansion
        then serves an integrated model too.
    integrate_alpha: False (default) samples the N alpha_i as latent variables; True integrates
        them out (production block in closed form, location block by quadrature_nodes-point
        Gauss-Hermite quadrature) and draws them back from their conditional posterior after
        sampling, so checks and counterfactuals read alpha_i draws either way (integrated.py).
    """

    alpha: str = "heterogeneous"
    sorting: bool = True
    spillover: str = "level"
    log_floor_bil: float = 0.001
    choice_set: str = "occupied"
    own_stock: str = "exclude"
    sbar_year: int | None = None
    county_covariates: tuple[str, ...] = ("log_labor_force",)
    evaluation: str = "interpolated"
    likelihood_tolerance: float = 1e-6
    denominator_bins: int = 0
    integrate_alpha: bool = False
    quadrature_nodes: int = 16

    @property
    def location_block(self) -> bool:
        return self.alpha == "heterogeneous"

    @property
    def spillover_transform(self) -> SpilloverTransform:
        """The spillover as this model uses it (spillover, log_floor_bil, own_stock together)."""
        return SpilloverTransform(self.spillover, self.log_floor_bil, self.own_stock == "exclude")


@dataclass(frozen=True)
class SamplerSpec:
    backend: str = "nutpie"
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    target_accept: float = 0.9
    seed: int = 2010
    cores: int | None = None
    adaptation: str = "diag"  # nutpie's mass-matrix adaptation: "diag" or "low_rank"
    # Sampling to a precision (inference/precision.py): with ess > 0, `first_batch` draws come
    # first and the same chains continue until every key parameter has bulk and tail ESS >= ess and
    # R-hat <= 1.01, or max_draws per chain. 0 draws exactly `draws`.
    ess: int = 0
    max_draws: int = 20000
    # What the formulation is known to deliver: the worst key parameter's ESS (the least of bulk
    # and tail) per draw of one chain. With ess > 0 it sizes the first batch to reach ess at that
    # rate (never fewer than `draws`); 0: the first batch is `draws`.
    ess_per_draw: float = 0.0

    @property
    def first_batch(self) -> int:
        """Draws per chain at the ESS rule's first checkpoint: enough for ``ess`` at
        ``ess_per_draw`` (at least ``draws``, at most ``max_draws``)."""
        if not (self.ess and self.ess_per_draw):
            return self.draws
        return min(self.max_draws, max(self.draws, math.ceil(self.ess / (self.chains * self.ess_per_draw))))


@dataclass(frozen=True)
class ModelConfig:
    name: str
    description: str
    model: ModelSpec
    priors: tuple[tuple[str, Prior], ...]
    sampler: SamplerSpec
    panel: PanelSettings
    source: str = "<memory>"
    text: str = ""

    def prior(self, name: str) -> Prior:
        for key, prior in self.priors:
            if key == name:
                return prior
        raise ConfigError(
            f"{self.source}: no prior for '{name}' (priors given: {', '.join(k for k, _ in self.priors)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "model": asdict(self.model),
            "priors": {k: {"dist": p.family, **p.kwargs()} for k, p in self.priors},
            "sampler": asdict(self.sampler),
            "panel": asdict(self.panel),
        }

    def to_toml(self) -> str:
        """The effective configuration (overrides applied) as TOML that parse_config reads back."""
        d = self.to_dict()
        lines = [f"name = {_toml_value(d['name'])}", f"description = {_toml_value(d['description'])}"]
        for section in ("model", "priors", "sampler", "panel"):
            lines += ["", f"[{section}]"]
            for key, value in d[section].items():
                if value is None:
                    continue  # absent means default (None) when read back
                if isinstance(value, dict):
                    inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
                    lines.append(f"{key} = {{ {inner} }}")
                else:
                    lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    def hash(self) -> str:
        """sha256 of the canonical configuration (independent of comments and key order)."""
        canonical = {k: v for k, v in self.to_dict().items() if k != "sampler"}
        # ess and max_draws leave the hash of a fixed-draws configuration as it was before they
        # existed, so posteriors written then still verify.
        unhashed = ("cores",) if self.sampler.ess else ("cores", "ess", "max_draws")
        if not self.sampler.ess_per_draw:
            unhashed += ("ess_per_draw",)
        canonical["sampler"] = {k: v for k, v in asdict(self.sampler).items() if k not in unhashed}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def with_sampler(self, **changes: Any) -> "ModelConfig":
        """A copy with the sampler settings given (None keeps the current value). Giving
        ``draws`` without ``ess`` fixes the draw count: it sets ess = 0."""
        if changes.get("draws") is not None and changes.get("ess") is None:
            changes = {**changes, "ess": 0}
        values = {**asdict(self.sampler), **{k: v for k, v in changes.items() if v is not None}}
        sampler = _build_section(SamplerSpec, values, self.source, "sampler")
        _check_sampler(sampler, self.source)
        return ModelConfig(
            self.name, self.description, self.model, self.priors, sampler, self.panel, self.source, self.text
        )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string when non-ASCII characters are kept as they are
        # (JSON would write astral characters as surrogate pairs, which TOML forbids) and DEL,
        # which JSON leaves alone but TOML must escape, is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


TOP_LEVEL_KEYS = ("name", "description", "model", "priors", "sampler", "panel")


def required_priors(model: ModelSpec) -> tuple[str, ...]:
    names = ["beta_k", "beta_l", "beta_r", "beta_zero_rd", "sigma_w", "halflife_km", "year_effect"]
    if model.alpha == "homogeneous":
        names.append("alpha")
    else:
        names += ["mu_alpha", "sigma_alpha", "county_delta", "county_tau"]
        if model.sorting:
            names.append("gamma")
    return tuple(names)


def load_config(path: str | Path) -> ModelConfig:
    """Parse and validate a model TOML file (a regular file of at most MAX_MODEL_FILE_BYTES)."""
    path = Path(path)
    text = read_small_text(path, MAX_MODEL_FILE_BYTES, "model configuration")
    return parse_config(text, source=str(path))


def read_small_text(path: str | Path, limit: int, what: str) -> str:
    """The UTF-8 text of a small file, checked before it is opened: a regular file (so that
    /dev/zero or a pipe is never read), of at most ``limit`` bytes.

    Parameters
    ----------
    path : str or Path
        The file.
    limit : int
        The most bytes it may hold.
    what : str
        What the file is, for messages ("model configuration").

    Returns
    -------
    str
        Its text. ConfigError names the file and what is wrong.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
        raise ConfigError(f"{path}: is {kind}, not a {what} file (a TOML file)")
    if info.st_size > limit:
        raise ConfigError(
            f"{path}: is {info.st_size:,} bytes, more than the {limit:,} a {what} file may hold; is it the right file?"
        )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)  # the file may have grown since stat
        if len(raw) > limit:
            raise ConfigError(
                f"{path}: holds more than the {limit:,} bytes a {what} file may hold; is it the right file?"
            )
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from None


def parse_config(text: str, source: str = "<memory>") -> ModelConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    reject_unknown_keys(raw, TOP_LEVEL_KEYS, source, "top level")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or not all(c.isalnum() or c in "-_" for c in name):
        raise ConfigError(
            f"{source}: 'name' must be a non-empty string of letters, digits, '-' or '_' (it names the output folder)"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: 'description' must be a string")
    model = _build_section(ModelSpec, raw.get("model", {}), source, "model")
    _check_model(model, source)
    sampler = _build_section(SamplerSpec, raw.get("sampler", {}), source, "sampler")
    _check_sampler(sampler, source)
    try:
        panel = _build_section(PanelSettings, raw.get("panel", {}), source, "panel")
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{source}: [panel] {exc}") from None
    priors = _parse_priors(raw.get("priors", {}), model, source)
    return ModelConfig(name, description, model, priors, sampler, panel, source, text)


def reject_unknown_keys(table: Any, valid: tuple[str, ...], source: str, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid keys: {', '.join(valid)}"
        )


def _build_section(cls, table: Any, source: str, where: str):
    valid = tuple(f.name for f in fields(cls))
    reject_unknown_keys(table, valid, source, f"[{where}]" if where != "top level" else where)
    values = {}
    defaults = cls()
    for f in fields(cls):
        if f.name not in table:
            continue
        values[f.name] = _coerce(table[f.name], getattr(defaults, f.name), f"{where}.{f.name}", source, f.type)
    return cls(**values)


def _coerce(value: Any, default: Any, key: str, source: str, annotation: Any):
    optional = "None" in str(annotation)
    if value is None and optional:
        return None
    if isinstance(default, bool) or "bool" in str(annotation):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{source}: {key} must be a list of strings, got {value!r}")
    if "int" in str(annotation) and "float" not in str(annotation):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
    if isinstance(default, float) or "float" in str(annotation):
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value == value
            and abs(value) != float("inf")
        ):
            return float(value)
        raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
    if isinstance(default, str) or "str" in str(annotation):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
    return value


def _check_choice(value: str, valid: tuple[str, ...], key: str, source: str) -> None:
    if value not in valid:
        raise ConfigError(f"{source}: {key} = {value!r} is not one of {', '.join(map(repr, valid))}")


def _check_model(m: ModelSpec, source: str) -> None:
    _check_choice(m.alpha, ("heterogeneous", "homogeneous"), "model.alpha", source)
    _check_choice(m.spillover, ("level", "log"), "model.spillover", source)
    _check_choice(m.choice_set, ("occupied", "all"), "model.choice_set", source)
    _check_choice(m.own_stock, ("exclude", "include"), "model.own_stock", source)
    _check_choice(m.evaluation, ("interpolated", "exact"), "model.evaluation", source)
    if m.log_floor_bil <= 0:
        raise ConfigError(f"{source}: model.log_floor_bil must be positive, got {m.log_floor_bil}")
    if m.denominator_bins < 0:
        raise ConfigError(
            f"{source}: model.denominator_bins must be 0 (adaptive) or a positive number of bins, got {m.denominator_bins}"
        )
    if m.integrate_alpha and m.alpha != "heterogeneous":
        raise ConfigError(
            f"{source}: model.integrate_alpha needs model.alpha = 'heterogeneous' (one alpha has nothing to integrate)"
        )
    if not 2 <= m.quadrature_nodes <= 64:
        raise ConfigError(f"{source}: model.quadrature_nodes must be between 2 and 64, got {m.quadrature_nodes}")
    if not 1e-12 <= m.likelihood_tolerance <= 1e-2:
        raise ConfigError(
            f"{source}: model.likelihood_tolerance must be between 1e-12 and 1e-2, got {m.likelihood_tolerance}"
        )


def _check_sampler(s: SamplerSpec, source: str) -> None:
    _check_choice(s.backend, SAMPLERS, "sampler.backend", source)
    _check_choice(s.adaptation, ("diag", "low_rank"), "sampler.adaptation", source)
    for key in ("chains", "draws"):
        if getattr(s, key) < 1:
            raise ConfigError(f"{source}: sampler.{key} must be at least 1, got {getattr(s, key)}")
    if s.tune < 0:
        raise ConfigError(f"{source}: sampler.tune must be non-negative, got {s.tune}")
    if s.ess < 0:
        raise ConfigError(
            f"{source}: sampler.ess must be 0 (draw exactly sampler.draws) or a positive target, got {s.ess}"
        )
    if not (math.isfinite(s.ess_per_draw) and s.ess_per_draw >= 0):
        raise ConfigError(
            f"{source}: sampler.ess_per_draw must be 0 (unknown) or the ESS one chain's draw delivers, got {s.ess_per_draw}"
        )
    if s.ess and s.max_draws < s.draws:
        raise ConfigError(
            f"{source}: sampler.max_draws ({s.max_draws}) must be at least sampler.draws ({s.draws}), the first batch"
        )
    for key, most in (
        ("chains", MAX_CHAINS),
        ("draws", MAX_DRAWS),
        ("tune", MAX_DRAWS),
        ("seed", MAX_SEED),
        ("ess", MAX_DRAWS),
        ("max_draws", MAX_DRAWS),
    ):
        if getattr(s, key) > most:
            raise ConfigError(f"{source}: sampler.{key} must be at most {most:,}, got {getattr(s, key):,}")
    if not 0.5 <= s.target_accept < 1.0:
        raise ConfigError(f"{source}: sampler.target_accept must be in [0.5, 1), got {s.target_accept}")
    if s.seed < 0:
        raise ConfigError(f"{source}: sampler.seed must be non-negative, got {s.seed}")
    if s.cores is not None and s.cores < 1:
        raise ConfigError(f"{source}: sampler.cores must be at least 1, got {s.cores}")


def _parse_priors(table: Any, model: ModelSpec, source: str) -> tuple[tuple[str, Prior], ...]:
    needed = required_priors(model)
    reject_unknown_keys(table, needed, source, "[priors] (for this model)")
    missing = [n for n in needed if n not in table]
    if missing:
        raise ConfigError(f"{source}: [priors] is missing {', '.join(missing)}")
    return tuple((name, parse_prior(name, table[name], source)) for name in needed)


def parse_prior(name: str, spec: Any, source: str) -> Prior:
    key = f"priors.{name}"
    if not isinstance(spec, dict) or "dist" not in spec:
        raise ConfigError(f'{source}: {key} must be a table like {{ dist = "Normal", mu = 0.0, sigma = 1.0 }}')
    family = spec["dist"]
    if not isinstance(family, str) or family not in PRIOR_FAMILIES:
        raise ConfigError(f"{source}: {key}.dist = {family!r} is not one of {', '.join(PRIOR_FAMILIES)}")
    expected = PRIOR_FAMILIES[family]
    given = {k: v for k, v in spec.items() if k != "dist"}
    if set(given) != set(expected):
        raise ConfigError(
            f"{source}: {key} ({family}) takes exactly {', '.join(expected)}; got {', '.join(given) or 'nothing'}"
        )
    params = []
    for p in expected:
        v = given[p]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
            raise ConfigError(f"{source}: {key}.{p} must be a finite number, got {v!r}")
        if p in POSITIVE_PARAMETERS and v <= 0:
            raise ConfigError(f"{source}: {key}.{p} must be positive, got {v}")
        params.append((p, float(v)))
    if name in POSITIVE_SUPPORT and family not in POSITIVE_FAMILIES:
        raise ConfigError(
            f"{source}: {key} must be a positive distribution ({', '.join(sorted(POSITIVE_FAMILIES))}), got {family}"
        )
    if name in REAL_SUPPORT and family not in REAL_FAMILIES:
        raise ConfigError(
            f"{source}: {key} must be a distribution on the real line ({', '.join(sorted(REAL_FAMILIES))}), got {family}"
        )
    return Prior(family, tuple(params))
