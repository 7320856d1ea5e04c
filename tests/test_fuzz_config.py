"""Fuzzed model configurations (tracker issue 8, part 1): TOML files with unknown keys, wrong
types (strings, numbers, NaN/inf, booleans, dates, arrays, tables), invalid priors, missing or
extra pieces, and damaged text. Each one is either accepted, and then its effective
configuration reads back identically (same dict, same hash), or rejected with ConfigError whose
message names the offending key; never another exception.

Every mutation is one of three kinds: known-bad (must be rejected, naming the key), known-good
(must be accepted), or arbitrary (either, but only ConfigError). The fast suite runs the conftest
"fast" profile; the slow tests run >= 1,000 examples each and print the outcome counts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_spill.config import ModelConfig, load_config, parse_config
from bayes_spill.errors import ConfigError

MODELS = Path(__file__).resolve().parents[1] / "models"
MODEL_KEYS = {"name", "description", "model", "priors", "sampler", "panel"}
# models/ also holds other settings files (e.g. calibration.toml): model configurations are the
# files whose top-level keys are a model configuration's.
MODEL_FILES = sorted(p for p in MODELS.glob("*.toml") if set(tomllib.loads(p.read_text())) <= MODEL_KEYS)
BASES = {path.name: tomllib.loads(path.read_text()) for path in MODEL_FILES}

# The schema as DATA.md / the model files document it, written out independently of config.py:
# key -> (kind, rule for valid values).
SCHEMA = {
    "model": {
        "alpha": ("choice", ("heterogeneous", "homogeneous")),
        "sorting": ("bool", None),
        "spillover": ("choice", ("level", "log")),
        "log_floor_bil": ("float", lambda v: v > 0),
        "choice_set": ("choice", ("occupied", "all")),
        "own_stock": ("choice", ("exclude", "include")),
        "sbar_year": ("int", lambda v: True),
        "county_covariates": ("strings", None),
    },
    "sampler": {
        "backend": ("choice", ("nutpie", "pymc", "numpyro")),
        # the upper bounds: what the samplers and the posterior file take (docs/outputs.md)
        "chains": ("int", lambda v: 1 <= v <= 1024),
        "draws": ("int", lambda v: 1 <= v <= 2**31 - 1),
        "tune": ("int", lambda v: 0 <= v <= 2**31 - 1),
        "target_accept": ("float", lambda v: 0.5 <= v < 1.0),
        "seed": ("int", lambda v: 0 <= v <= 2**63 - 1),
        "cores": ("int", lambda v: v >= 1),
        "adaptation": ("choice", ("diag", "low_rank")),
    },
    "panel": {
        "depreciation": ("float", lambda v: 0 < v <= 1),
        "presample_growth": ("float", lambda v: v + 0.15 > 0),  # with the base depreciation 0.15
        "min_years": ("int", lambda v: v >= 2),
        "on_gap": ("choice", ("error", "restart")),
    },
}
FAMILIES = {
    "Normal": ("mu", "sigma"),
    "HalfNormal": ("sigma",),
    "LogNormal": ("mu", "sigma"),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "StudentT": ("nu", "mu", "sigma"),
}
POSITIVE_PARAMS = {"sigma", "lam", "alpha", "beta", "nu"}
POSITIVE_PRIORS = {"halflife_km", "sigma_alpha", "sigma_w", "county_tau"}
POSITIVE_FAMILIES = ("HalfNormal", "LogNormal", "Exponential", "Gamma")
REAL_FAMILIES = ("Normal", "StudentT")
ALL_PRIORS = (
    "halflife_km",
    "gamma",
    "mu_alpha",
    "sigma_alpha",
    "alpha",
    "beta_k",
    "beta_l",
    "beta_r",
    "beta_zero_rd",
    "sigma_w",
    "year_effect",
    "county_delta",
    "county_tau",
)


# -- a small TOML writer (tomllib only reads) ---------------------------------------------------------
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def dumps(document: dict) -> str:
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for name, table in document.items():
        if isinstance(table, dict):
            lines += ["", f"[{toml_key(name)}]"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -- values ---------------------------------------------------------------------------------------------
SCALARS = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
TOML_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def wrong_type_values(kind: str):
    """Values of a TOML type the field cannot take."""
    options = {
        "int": st.one_of(
            st.text(max_size=5), st.floats(), st.booleans(), st.dates(), st.lists(st.integers(), max_size=2)
        ),
        "float": st.one_of(
            st.text(max_size=5),
            st.booleans(),
            st.datetimes(),
            st.lists(st.floats(), max_size=2),
            st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), max_size=2),
        ),
        "bool": st.one_of(st.text(max_size=5), st.integers(), st.floats(), st.lists(st.booleans(), max_size=2)),
        "choice": st.one_of(
            st.integers(), st.floats(), st.booleans(), st.dates(), st.lists(st.text(max_size=3), max_size=2)
        ),
        "strings": st.one_of(
            st.text(max_size=5),
            st.integers(),
            st.lists(st.integers(), min_size=1, max_size=2),
            st.dictionaries(st.text(min_size=1, max_size=3), st.text(), max_size=2),
        ),
    }
    return options[kind]


def valid_values(kind: str, rule):
    if kind == "choice":
        return st.sampled_from(rule)
    if kind == "bool":
        return st.booleans()
    if kind == "strings":
        return st.just(["log_labor_force"])
    if kind == "int":
        return st.integers(-(2**63), 2**63 - 1)
    return st.floats(allow_nan=False, allow_infinity=False)


# -- cases ----------------------------------------------------------------------------------------------
ORDER = {"accept": 0, "either": 1, "reject": 2}


@dataclass
class Case:
    base: str
    document: dict
    # place ("sampler.chains", "priors.gamma", "model", ...) -> (verdict, name a rejection must
    # mention); a later mutation of a place, or of the table holding it, replaces what it noted
    verdicts: dict = field(default_factory=dict)
    mutations: list = field(default_factory=list)
    text: str | None = None

    def note(self, mutation: str, verdict: str, where: str, name: str | None = None) -> None:
        self.mutations.append(mutation)
        for place in [p for p in self.verdicts if p.startswith(where + ".")]:
            del self.verdicts[place]
        self.verdicts[where] = (verdict, name)

    @property
    def verdict(self) -> str:
        return max((v for v, _ in self.verdicts.values()), key=ORDER.__getitem__, default="accept")

    @property
    def keys(self) -> list[str]:
        """What a rejection must name, when exactly one place makes the file invalid."""
        bad = [(v, n) for v, n in self.verdicts.values() if v != "accept"]
        return [bad[0][1]] if len(bad) == 1 and bad[0][0] == "reject" and bad[0][1] else []


def required_priors(document: dict) -> list[str]:
    model = document.get("model", {})
    names = ["beta_k", "beta_l", "beta_r", "beta_zero_rd", "sigma_w", "halflife_km", "year_effect"]
    if model.get("alpha", "heterogeneous") == "homogeneous":
        return names + ["alpha"]
    names += ["mu_alpha", "sigma_alpha", "county_delta", "county_tau"]
    return names + (["gamma"] if model.get("sorting", True) else [])


def mutate_setting(draw, case: Case) -> None:
    section = draw(st.sampled_from(sorted(SCHEMA)))
    key = draw(st.sampled_from(sorted(SCHEMA[section])))
    kind, rule = SCHEMA[section][key]
    table = case.document.setdefault(section, {})
    if not isinstance(table, dict):
        return
    how = draw(st.sampled_from(("wrong type", "valid", "out of range", "anything")))
    if section == "model" and key in ("alpha", "sorting"):
        how = "wrong type" if how != "anything" else how  # other values change the required priors
    if key == "sbar_year" and how == "out of range":
        how = "valid"  # any year is a valid setting (the panel decides whether it has it)
    if section == "panel" and kind == "float" and how in ("valid", "out of range"):
        # depreciation + presample_growth must be positive: whether a value is valid depends on the other
        table[key] = draw(st.floats(allow_nan=False, allow_infinity=False))
        case.note(f"{section}.{key} = {table[key]!r}", "either", f"{section}.{key}")
        return
    if how == "wrong type":
        table[key] = draw(wrong_type_values(kind))
        case.note(f"{section}.{key} = {table[key]!r} (wrong type)", "reject", f"{section}.{key}", f"{section}.{key}")
    elif how == "valid" or (how == "out of range" and kind in ("bool", "strings")):
        value = draw(valid_values(kind, rule))
        ok = kind in ("choice", "bool", "strings") or rule(value)
        table[key] = value
        case.note(f"{section}.{key} = {value!r}", "accept" if ok else "reject", f"{section}.{key}", f"{section}.{key}")
    elif how == "out of range":
        value = (
            draw(st.text(max_size=6).filter(lambda t: t not in rule))
            if kind == "choice"
            else draw(
                valid_values(kind, rule).filter(lambda v: not rule(v)) if kind in ("int", "float") else st.nothing()
            )
        )
        table[key] = value
        case.note(f"{section}.{key} = {value!r} (out of range)", "reject", f"{section}.{key}", f"{section}.{key}")
    else:
        table[key] = draw(TOML_VALUES)
        case.note(f"{section}.{key} = {table[key]!r}", "either", f"{section}.{key}")


def mutate_unknown_key(draw, case: Case) -> None:
    where = draw(st.sampled_from(("top", "model", "sampler", "panel", "priors", "prior")))
    key = draw(st.text(min_size=1, max_size=10))
    value = draw(TOML_VALUES)
    place = f"{where}.{key}"
    if where == "top":
        if key in ("name", "description", "model", "priors", "sampler", "panel"):
            return
        case.document[key] = value
        place = key
    elif where == "prior":
        priors = case.document.get("priors")
        if not isinstance(priors, dict) or not priors:
            return
        name = draw(st.sampled_from(sorted(priors)))
        prior = priors.get(name)
        if not isinstance(prior, dict) or key in ("dist", "mu", "sigma", "lam", "alpha", "beta", "nu"):
            return
        prior[key] = value
        place = f"priors.{name}.{key}"
    else:
        section = case.document.setdefault(where, {})
        valid = SCHEMA.get(where, {}) if where != "priors" else ALL_PRIORS
        if key in valid or not isinstance(section, dict):
            return
        section[key] = value
    case.note(f"unknown key {key!r} in {where}", "reject", place, key)


def valid_prior(draw, name: str) -> dict:
    family = draw(st.sampled_from(POSITIVE_FAMILIES if name in POSITIVE_PRIORS else REAL_FAMILIES))
    prior = {"dist": family}
    for p in FAMILIES[family]:
        prior[p] = draw(st.floats(1e-3, 1e3)) if p in POSITIVE_PARAMS else draw(st.floats(-1e3, 1e3))
    return prior


def mutate_prior(draw, case: Case) -> None:
    priors = case.document.setdefault("priors", {})
    if not isinstance(priors, dict) or not isinstance(case.document.get("model", {}), dict):
        return
    needed = required_priors(case.document)
    name = draw(st.sampled_from(needed))
    key = f"priors.{name}"
    how = draw(
        st.sampled_from(
            (
                "valid",
                "unknown dist",
                "dist not a string",
                "drop param",
                "extra param",
                "non-positive",
                "not finite",
                "param type",
                "wrong support",
                "not a table",
                "missing",
                "anything",
            )
        )
    )
    prior = valid_prior(draw, name)
    if how == "valid":
        case.note(f"{key} = {prior}", "accept", key)
    elif how == "unknown dist":
        prior["dist"] = draw(st.text(max_size=10).filter(lambda t: t not in FAMILIES))
        case.note(f"{key}.dist = {prior['dist']!r}", "reject", key, key)
    elif how == "dist not a string":
        prior["dist"] = draw(
            st.one_of(
                st.lists(st.sampled_from(sorted(FAMILIES)), min_size=1, max_size=2),
                st.integers(),
                st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), max_size=1),
            )
        )
        case.note(f"{key}.dist = {prior['dist']!r}", "reject", key, key)
    elif how == "drop param":
        del prior[draw(st.sampled_from([p for p in prior if p != "dist"]))]
        case.note(f"{key} lacks a parameter", "reject", key, key)
    elif how == "extra param":
        extra = draw(
            st.sampled_from([p for p in ("mu", "sigma", "lam", "alpha", "beta", "nu", "scale") if p not in prior])
        )
        prior[extra] = 1.0
        case.note(f"{key} has {extra}", "reject", key, key)
    elif how == "non-positive":
        positive = [p for p in prior if p in POSITIVE_PARAMS]
        if not positive:
            return
        p = draw(st.sampled_from(positive))
        prior[p] = draw(st.sampled_from((0, 0.0, -0.0, -1.0, -1e300)))
        case.note(f"{key}.{p} = {prior[p]}", "reject", key, key)
    elif how == "not finite":
        p = draw(st.sampled_from([p for p in prior if p != "dist"]))
        prior[p] = draw(st.sampled_from((math.nan, math.inf, -math.inf)))
        case.note(f"{key}.{p} = {prior[p]}", "reject", key, key)
    elif how == "param type":
        p = draw(st.sampled_from([p for p in prior if p != "dist"]))
        prior[p] = draw(st.one_of(st.text(max_size=4), st.booleans(), st.dates(), st.lists(st.floats(), max_size=2)))
        case.note(f"{key}.{p} = {prior[p]!r}", "reject", key, key)
    elif how == "wrong support":
        family = draw(st.sampled_from(REAL_FAMILIES if name in POSITIVE_PRIORS else POSITIVE_FAMILIES))
        prior = {"dist": family, **{p: 1.0 for p in FAMILIES[family]}}
        case.note(f"{key} = {family}", "reject", key, key)
    elif how == "not a table":
        prior = draw(st.one_of(st.text(max_size=5), st.floats(), st.lists(st.integers(), max_size=2)))
        case.note(f"{key} = {prior!r}", "reject", key, key)
    elif how == "missing":
        priors.pop(name, None)
        case.note(f"{key} missing", "reject", key, name)
        return
    else:
        prior = draw(TOML_VALUES)
        case.note(f"{key} = {prior!r}", "either", key)
    priors[name] = prior


def mutate_top(draw, case: Case) -> None:
    how = draw(st.sampled_from(("name", "bad name", "no name", "description", "section type", "drop section")))
    if how == "name":
        case.document["name"] = draw(st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True))
        case.note(f"name = {case.document['name']!r}", "accept", "name")
    elif how == "bad name":
        case.document["name"] = draw(
            st.one_of(st.just(""), st.just("a b"), st.just("../x"), st.just("x/y"), st.integers(), st.booleans())
        )
        case.note(f"name = {case.document['name']!r}", "reject", "name", "name")
    elif how == "no name":
        case.document.pop("name", None)
        case.note("no name", "reject", "name", "name")
    elif how == "description":
        value = draw(st.one_of(st.text(max_size=20), st.integers(), st.lists(st.text(max_size=2), max_size=2)))
        case.document["description"] = value
        case.note(
            f"description = {value!r}", "accept" if isinstance(value, str) else "reject", "description", "description"
        )
    elif how == "section type":
        section = draw(st.sampled_from(("model", "sampler", "panel", "priors")))
        case.document[section] = draw(
            st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
        )
        case.note(f"{section} = {case.document[section]!r}", "reject", section, section)
    else:
        section = draw(st.sampled_from(("model", "sampler", "panel", "priors")))
        case.document.pop(section, None)
        # without [priors] every prior is missing; the other sections have defaults
        case.note(f"no [{section}]", "reject" if section == "priors" else "either", section, "priors")


MUTATIONS = (mutate_setting, mutate_setting, mutate_unknown_key, mutate_prior, mutate_prior, mutate_top)


@st.composite
def config_cases(draw) -> Case:
    base = draw(st.sampled_from(sorted(BASES)))
    case = Case(base=base, document=json.loads(json.dumps(BASES[base])))  # deep copy
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        mutation(draw, case)
    case.text = dumps(case.document)
    if draw(st.integers(0, 9)) == 0:  # damaged text: cut, a stray character, a repeated line
        text = case.text
        at = draw(st.integers(0, len(text)))
        damage = draw(st.sampled_from(("cut", "insert", "repeat line")))
        if damage == "cut":
            case.text = text[:at]
        elif damage == "insert":
            case.text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
        else:
            lines = text.splitlines()
            i = draw(st.integers(0, len(lines) - 1))
            case.text = "\n".join(lines[: i + 1] + lines[i:])
        case.note(f"text damaged ({damage})", "either", "text")
    return case


# -- checks -----------------------------------------------------------------------------------------------
def check_accepted(config: ModelConfig) -> None:
    again = parse_config(config.to_toml(), source="round trip")
    assert again.to_dict() == config.to_dict()
    assert again.hash() == config.hash()
    for name, prior in config.priors:
        for p, v in prior.params:
            assert math.isfinite(v) and (p not in POSITIVE_PARAMS or v > 0), (name, p, v)
        assert (prior.family in POSITIVE_FAMILIES) if name in POSITIVE_PRIORS else True
    s = config.sampler
    assert s.chains >= 1 and s.draws >= 1 and s.tune >= 0 and s.seed >= 0 and 0.5 <= s.target_accept < 1
    assert isinstance(config.name, str) and config.name


def run_case(case: Case, outcomes: Counter) -> None:
    try:
        config = parse_config(case.text, source="fuzz.toml")
    except ConfigError as error:
        message = str(error)
        assert message.startswith("fuzz.toml"), message
        assert case.verdict != "accept", f"rejected, but {case.mutations} are all valid: {message}"
        if case.keys:
            named = [k for k in case.keys if k in message or repr(k) in message or k.split(".")[-1] in message]
            assert named, f"the message does not name {case.keys}: {message}"
        outcomes["rejected"] += 1
        return
    assert case.verdict != "reject", f"accepted, but {case.mutations} are invalid"
    check_accepted(config)
    outcomes["accepted"] += 1


def test_every_model_file_is_accepted_and_reads_back():
    for path in MODEL_FILES:
        check_accepted(load_config(path))


def test_a_list_as_distribution_name_is_a_config_error():
    text = (
        (MODELS / "lychagin2010.toml").read_text().replace('gamma = { dist = "Normal"', 'gamma = { dist = ["Normal"]')
    )
    assert '["Normal"]' in text
    with pytest.raises(ConfigError, match="priors.gamma"):
        parse_config(text)


def test_description_with_any_character_reads_back():
    """Astral characters and DEL in strings survive to_toml (the posterior stores that text)."""
    text = (MODELS / "lychagin2010.toml").read_text()
    line = 'description = "spill \\u007f overs \U0001f600 \\u0000"'
    text = re.sub(r"^description = .*$", lambda _: line, text, flags=re.MULTILINE)
    config = parse_config(text)
    assert parse_config(config.to_toml()).description == config.description


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe n\x00a\x00m\x00e\x00", "name = 'Soci\xe9t\xe9'".encode("latin-1"), b"\x00\x01\x02", b"[model\n"],
    ids=["empty", "utf-16", "latin-1", "binary", "broken table"],
)
def test_unreadable_files_are_config_errors(tmp_path, content):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(path)


def test_a_folder_or_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="no such"):
        load_config(tmp_path / "missing.toml")


@given(case=config_cases())
def test_fuzzed_configs(case):
    run_case(case, Counter())


@given(text=st.text(max_size=200))
def test_arbitrary_text_is_accepted_or_a_config_error(text):
    try:
        parse_config(text, source="fuzz.toml")
    except ConfigError:
        pass


@pytest.mark.slow
def test_fuzzed_configs_1000():
    outcomes: Counter = Counter()

    @settings(settings.get_profile("slow"))
    @given(case=config_cases())
    def run(case):
        run_case(case, outcomes)

    run()
    tried = sum(outcomes.values())
    print(f"\nfuzzed model configurations: {tried} tried; outcomes {dict(outcomes)}")
    assert tried >= 1000 and outcomes["accepted"] > 0 and outcomes["rejected"] > 0


@pytest.mark.slow
def test_fuzzed_config_files_1000():
    """Whole files through load_config: mutated TOML written as UTF-8, or arbitrary bytes."""
    outcomes: Counter = Counter()

    @settings(settings.get_profile("slow"))
    @given(case=config_cases(), junk=st.one_of(st.none(), st.binary(max_size=100)))
    def run(case, junk):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.toml"
            path.write_bytes(junk if junk is not None else case.text.encode("utf-8"))
            try:
                config = load_config(path)
            except ConfigError as error:
                assert str(path) in str(error)
                outcomes["rejected"] += 1
                return
            check_accepted(config)
            outcomes["accepted"] += 1

    run()
    tried = sum(outcomes.values())
    print(f"\nfuzzed model configuration files: {tried} tried; outcomes {dict(outcomes)}")
    assert tried >= 1000
