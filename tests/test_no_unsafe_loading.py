"""No unsafe loading (tracker issue 8, part 5): nothing a user passes is unpickled or evaluated.

* The package source (read as syntax trees, so comments and strings do not count) calls no
  eval/exec/compile/__import__, no pickle/marshal/shelve/dill/joblib/yaml loader, no
  ``read_pickle`` and no ``np.load(..., allow_pickle=True)``, and imports none of those modules;
  model configurations are parsed by tomllib.
* Crafted files (TOML, CSV, Parquet, netCDF) carrying Python payloads, pickles and the pyarrow
  extension-type pickle of CVE-2023-47248 are read or rejected, and the payload never runs: it
  would create a sentinel file.
"""

from __future__ import annotations

import ast
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xarray as xr

import bayes_spill
from bayes_spill.config import load_config, parse_config
from bayes_spill.data.files import read_table
from bayes_spill.data.geography import load_counties
from bayes_spill.data.inputs import load_panel
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference import posterior_io

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "bayes_spill").rglob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "dill",
    "cloudpickle",
    "marshal",
    "shelve",
    "joblib",
    "yaml",
    "jsonpickle",
}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__", "execfile"}
UNSAFE_ATTRIBUTES = {"read_pickle", "unsafe_load", "full_load", "loads_pickle"}


def unsafe_calls(path: Path) -> list[str]:
    return unsafe_calls_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))


def unsafe_calls_in(text: str, label: str) -> list[str]:
    tree = ast.parse(text, filename=label)
    found = []
    for node in ast.walk(tree):
        where = f"{label}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
                found.append(f"{where} {func.id}(...)")
            elif isinstance(func, ast.Attribute):
                owner = func.value.id if isinstance(func.value, ast.Name) else ""
                if (
                    func.attr in UNSAFE_ATTRIBUTES
                    or owner in UNSAFE_MODULES
                    or (owner == "builtins" and func.attr in UNSAFE_BUILTINS)
                ):
                    found.append(f"{where} {owner}.{func.attr}(...)")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"{where} allow_pickle={ast.unparse(keyword.value)}")
    return found


def test_the_source_has_no_unsafe_loading():
    assert SOURCES, "no source files found"
    found = [hit for path in SOURCES for hit in unsafe_calls(path)]
    assert not found, "unsafe loading in the package:\n" + "\n".join(found)


def test_the_scanner_finds_what_it_looks_for():
    text = (
        "import pickle\nimport numpy as np\nx = eval('1')\ny = pickle.loads(b'')\n"
        "z = np.load('f', allow_pickle=True)\nimport yaml\nyaml.load('')\nimport re\nre.compile('x')\n"
        "s = 'eval(1) pickle.load'  # eval(2)\nimport ast\nast.literal_eval('1')\n"
    )
    hits = unsafe_calls_in(text, "probe.py")
    assert len(hits) == 6, hits


def test_text_search_agrees():
    """A plain-text search as well, for forms the syntax check could miss."""
    needles = ("pickle.load", "allow_pickle=True", "yaml.load(", "read_pickle(", "marshal.load", "shelve.open")
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for needle in needles:
            assert needle not in text, f"{path.relative_to(REPO)} contains {needle}"


def test_configurations_are_parsed_by_tomllib():
    source = (REPO / "bayes_spill" / "config.py").read_text()
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "tomllib" in imported
    assert not imported & {"toml", "tomli", "yaml", "configparser"}
    assert "tomllib.loads(" in source


# -- crafted files ------------------------------------------------------------------------------------
@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload in a crafted file was executed"


def payloads(sentinel: Path) -> list[str]:
    code = f"__import__('pathlib').Path({str(sentinel)!r}).write_text('pwned')"
    return [
        code,
        f"eval({code!r})",
        f"exec({code!r})",
        "!!python/object/apply:os.system ['touch " + str(sentinel) + "']",
        "=cmd|' /C calc'!A0",
        "${" + code + "}",
        "{{" + code + "}}",
    ]


class Payload:
    """Unpickling this runs the payload (pickling it here is safe; nothing here unpickles)."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (Path.write_text, (Path(self.sentinel), "pwned"))


def test_toml_with_payloads(tmp_path, sentinel):
    base = (REPO / "models" / "lychagin2010.toml").read_text()
    for payload in payloads(sentinel):
        quoted = json.dumps(payload)
        texts = [
            base.replace('name = "lychagin2010"', f"name = {quoted}"),
            re.sub(r"^description = .*$", lambda _: f"description = {quoted}", base, flags=re.MULTILINE),
            base.replace('gamma = { dist = "Normal"', f"gamma = {{ dist = {quoted}"),
            base + f"\n[{quoted}]\nx = {quoted}\n",
            base.replace("seed = 2010", f"seed = {quoted}"),
        ]
        for text in texts:
            path = tmp_path / "crafted.toml"
            path.write_text(text)
            try:
                config = load_config(path)
            except BayesSpillError:
                continue
            parse_config(config.to_toml())  # what a posterior stores reads back as text too


def test_csv_and_county_tables_with_payloads(tmp_path, sentinel):
    for payload in payloads(sentinel):
        frame = pd.DataFrame(
            {
                "gvkey": [payload] * 3 + ["000002"] * 3,
                "fyear": [2000, 2001, 2002] * 2,
                "sale": [1.0, 2.0, payload, 1.0, 1.0, 1.0],
                "emp": [1.0] * 6,
                "ppent": [1.0] * 6,
                "xrd": [0.0] * 6,
                "fips": ["06085"] * 3 + [payload] * 3,
                payload: [payload] * 6,
            }
        )
        for suffix in (".csv", ".parquet"):
            path = tmp_path / f"panel{suffix}"
            frame.astype(str).to_csv(path, index=False) if suffix == ".csv" else frame.astype(str).to_parquet(path)
            with pytest.raises(BayesSpillError):
                load_panel(path)
            clean = frame.assign(sale=1.0, fips="06085")
            clean.astype({"sale": float}).to_csv(path, index=False) if suffix == ".csv" else clean.to_parquet(path)
            panel = load_panel(path)  # the payload is only a firm identifier, kept as text
            assert payload in panel.firms.tolist()
        counties = tmp_path / "counties.csv"
        pd.DataFrame(
            {"fips": ["06085", "02013"], "lat": [37.0, payload], "lon": [-121.0, -161.0], payload: [payload, "1"]}
        ).to_csv(counties, index=False)
        with pytest.raises(BayesSpillError):
            load_counties(counties)


def test_parquet_with_crafted_pandas_metadata(tmp_path, sentinel):
    code = payloads(sentinel)[0]
    table = pa.table(
        {
            "gvkey": ["000001"] * 3,
            "fyear": [2000, 2001, 2002],
            "sale": [1.0] * 3,
            "emp": [1.0] * 3,
            "ppent": [1.0] * 3,
            "xrd": [0.0] * 3,
            "fips": ["06085"] * 3,
        }
    )
    metadata = {
        "index_columns": [code],
        "column_indexes": [{"name": code, "pandas_type": code, "numpy_type": code, "metadata": {"x": code}}],
        "columns": [
            {"name": n, "field_name": n, "pandas_type": code, "numpy_type": "object", "metadata": {"type": code}}
            for n in table.column_names
        ],
        "creator": {"library": code},
        "pandas_version": code,
    }
    path = tmp_path / "crafted.parquet"
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(metadata).encode()}), path)
    try:
        read_table(path)
    except BayesSpillError:
        pass


def test_parquet_with_a_pickled_extension_type(tmp_path, sentinel):
    """CVE-2023-47248: pyarrow < 14.0.1 unpickled 'arrow.py_extension_type' metadata on read."""
    field = pa.field(
        "gvkey",
        pa.binary(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(Payload(sentinel)),
        },
    )
    table = pa.Table.from_arrays([pa.array([b"000001"] * 3)], schema=pa.schema([field]))
    path = tmp_path / "crafted.parquet"
    pq.write_table(table, path)
    try:
        read_table(path)
    except BayesSpillError:
        pass


def crafted_posterior(path: Path, sentinel: Path) -> None:
    code = payloads(sentinel)[0]
    config_text = (
        (REPO / "models" / "lychagin2010.toml")
        .read_text()
        .replace('description = "', f"description = {json.dumps(code)[:-1]} ", 1)
    )
    data = xr.Dataset({"x": (("obs",), np.arange(3.0))})
    posterior = xr.Dataset({"gamma": (("chain", "draw"), np.zeros((1, 3)))})
    pickled = np.frombuffer(pickle.dumps(Payload(sentinel)), dtype=np.uint8)
    tree = xr.DataTree.from_dict(
        {
            "/posterior": posterior,
            "/sample_stats": xr.Dataset({"pickled": (("byte",), pickled)}),
            "/log_likelihood": xr.Dataset({"firm_loglik": (("chain", "draw", "firm"), np.zeros((1, 3, 2)))}),
            "/observed_data": data,
            "/constant_data": data,
        }
    )
    tree.attrs.update(
        {
            "model_config": config_text,
            "model_config_hash": code,
            "bayes_spill_version": bayes_spill.__version__,
            "truth_parameters": code,
            "versions": code,
            "pickled": pickled,  # the bytes of a pickle, as an attribute
            "model_name": code,
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    tree.to_netcdf(path / "posterior.nc", engine="h5netcdf")


def test_netcdf_with_payloads_and_pickles(tmp_path, sentinel):
    from bayes_spill.config import ModelConfig

    fit_dir = tmp_path / "fit"
    crafted_posterior(fit_dir, sentinel)
    try:
        tree = posterior_io.load_tree(fit_dir)
    except BayesSpillError:
        tree = xr.open_datatree(fit_dir / "posterior.nc", engine="h5netcdf").load()
    assert isinstance(posterior_io.config_from_tree(tree), ModelConfig)
    try:
        from bayes_spill.checking import figures
    except ImportError:
        figures = None
    if figures is not None and hasattr(figures, "truth_parameters"):
        assert figures.truth_parameters(tree) == {}
    with pytest.raises(BayesSpillError):
        posterior_io.load_tree(fit_dir, config=load_config(REPO / "models" / "lychagin2010.toml"))
