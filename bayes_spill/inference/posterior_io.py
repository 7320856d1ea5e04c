"""Writing and reading fits: atomic files (never a half-written posterior) and provenance checks."""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import xarray as xr

from bayes_spill import __version__
from bayes_spill.errors import PosteriorError

POSTERIOR_FILE = "posterior.nc"
SUMMARY_FILE = "summary.csv"
VERSIONS_FILE = "versions.json"
# Test hook: seconds to wait, with the temporary file written, before it replaces the target, so
# a test can interrupt a real fit while it writes (tests/inference/test_crash_safety.py):
# "SECONDS" for every file, "NAME=SECONDS" for one (e.g. "summary.csv=60"); while it waits, the
# marker file .NAME.held lies beside the target. Unset: no wait.
WRITE_DELAY_ENV = "BAYES_SPILL_TEST_WRITE_DELAY"
REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; it replaces ``target`` only if the block succeeds.

    os.replace is atomic on one filesystem, so a reader sees the old file or the new one, and a
    crash or Ctrl-C inside the block leaves at most a stray temporary, which is removed here.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        yield Path(tmp)
        _test_write_delay(target)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _test_write_delay(target: Path) -> None:
    setting = os.environ.get(WRITE_DELAY_ENV)
    if not setting:
        return
    name, _, seconds = setting.rpartition("=")
    if not name or name == target.name:
        # a marker says the file is written and now held, so a test signals the wait itself
        # and not the write before it
        (target.parent / f".{target.name}.held").touch()
        time.sleep(float(seconds))


def save(tree: xr.DataTree, out_dir: str | Path) -> Path:
    """Write a fit into a folder as a new run: posterior.nc, summary.csv and versions.json are
    committed together, and whatever the run before left there (report, checks, figures, ...)
    goes in the same step (``fit_folder.Transaction``). The tree gets the run's id
    (``attrs["run_id"]``).

    Parameters
    ----------
    tree : xarray.DataTree
        The fit.
    out_dir : str or pathlib.Path
        The fit folder.

    Returns
    -------
    pathlib.Path
        The posterior file.
    """
    from bayes_spill.inference import fit_folder

    out = Path(out_dir)
    previous = tree.attrs.get(fit_folder.RUN_ATTR)
    try:
        with fit_folder.Transaction(out, "fit", new_run=True) as tx:
            tree.attrs[fit_folder.RUN_ATTR] = tx.run_id
            write_files(tree, tx.stage)
    except BaseException:
        if previous is None:
            tree.attrs.pop(fit_folder.RUN_ATTR, None)
        else:
            tree.attrs[fit_folder.RUN_ATTR] = previous
        raise
    return out / POSTERIOR_FILE


def write_files(tree: xr.DataTree, folder: str | Path) -> Path:
    """Write posterior.nc, summary.csv and versions.json into a folder, each atomically (a
    Transaction's stage; ``save`` is what writes a fit folder).

    Parameters
    ----------
    tree : xarray.DataTree
        The fit.
    folder : str or pathlib.Path
        Where to write.

    Returns
    -------
    pathlib.Path
        The posterior file.
    """
    from bayes_spill.inference.summary import summary_table

    out = Path(folder)
    target = out / POSTERIOR_FILE
    with atomic_path(target) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    with atomic_path(out / SUMMARY_FILE) as tmp:
        summary_table(tree, all_parameters=True).to_csv(tmp)
    if "versions" in tree.attrs:
        with atomic_path(out / VERSIONS_FILE) as tmp:
            tmp.write_text(json.dumps(json.loads(tree.attrs["versions"]), indent=1, sort_keys=True) + "\n")
    return target


def require_writable(out_dir: str | Path) -> None:
    """BayesSpillError unless ``out_dir`` can be created and written (checked before a long fit)."""
    from bayes_spill.errors import BayesSpillError

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise BayesSpillError(f"cannot write the fit to {out}: {exc.strerror or exc}") from None


def open_tree(path: str | Path, config=None):
    """(tree, the configuration it stores or None): a saved fit read fully into memory and checked.

    The configuration comes back when checking the file's claims parsed it (fits of this package
    version), so that a Fit need not parse it again.
    """
    path = Path(path)
    file = path / POSTERIOR_FILE if path.is_dir() else path
    if not file.exists():
        raise PosteriorError(f"no posterior at {file}: run 'bayes-spill fit --out {path}' first")
    try:
        tree = xr.open_datatree(file, engine="h5netcdf").load()
    except Exception as exc:  # a truncated or foreign file
        raise PosteriorError(f"{file} is not a readable posterior file ({type(exc).__name__}: {exc})") from None
    missing = [g for g in REQUIRED_GROUPS if g not in tree.children]
    if missing:
        raise PosteriorError(f"{file} lacks the group(s) {', '.join(missing)}: it was not written by bayes-spill fit")
    stored = check_claims(tree, file)
    if config is not None:
        check_matches(tree, config, file)
    return tree, stored


def load_tree(path: str | Path, config=None) -> xr.DataTree:
    """Open a saved fit (a folder or its posterior.nc) fully into memory, as a bare DataTree.

    Parameters
    ----------
    path : str or pathlib.Path
        A fit folder or its posterior.nc.
    config : ModelConfig, optional
        When given, the fit must have been made with this configuration; the PosteriorError says
        what differs. A fit from another package version is reported too.

    Returns
    -------
    xarray.DataTree
    """
    return open_tree(path, config)[0]


def config_from_tree(tree: xr.DataTree):
    """The ModelConfig a fit was made with (parsed from the TOML text stored in its attrs)."""
    from bayes_spill.config import parse_config

    return parse_config(
        tree.attrs["model_config"], source=f"{tree.attrs.get('model_name', '?')} (stored in the posterior)"
    )


def panel_from_tree(tree: xr.DataTree, counties=None, config=None):
    """Rebuild the PreparedPanel a fit was made on from its observed and constant data.

    counties: the county table used for the fit when it was not the built-in one.
    config: the fit's ModelConfig when already parsed (else parsed from the tree).
    """
    import numpy as np
    import pandas as pd

    from bayes_spill.data.inputs import resolve_counties
    from bayes_spill.data.panel import build_panel

    const = tree["constant_data"].to_dataset()
    obs = tree["observed_data"].to_dataset()
    firm_county = dict(zip(obs["firm"].values.astype(str), obs["county"].values.astype(str)))
    firms = const["obs_firm"].values.astype(str)
    frame = pd.DataFrame(
        {
            "gvkey": firms,
            "fyear": const["obs_year"].values.astype(np.int64),
            "sale": const["sale"].values,
            "emp": const["emp"].values,
            "ppent": const["ppent"].values,
            "xrd": const["xrd"].values,
            "fips": [firm_county[f] for f in firms],
        }
    )
    config = config if config is not None else config_from_tree(tree)
    return build_panel(
        frame, resolve_counties(counties), source=tree.attrs.get("data_source", "posterior"), settings=config.panel
    )


def check_matches(tree: xr.DataTree, config, file: Path | str = "posterior") -> None:
    """PosteriorError unless the fit was made with ``config`` by this package version; the message
    names every setting that differs."""
    stored = tree.attrs.get("model_config_hash")
    problems = []
    if stored != config.hash():
        problems.append(f"model configuration hash {str(stored)[:12]} != {config.hash()[:12]} of {config.source}")
        problems += config_differences(tree, config)
    version = tree.attrs.get("bayes_spill_version")
    if version != __version__:
        problems.append(f"written by bayes_spill {version}, this is {__version__}")
    if problems:
        raise PosteriorError(f"{file} does not match: " + "; ".join(problems))


def check_claims(tree: xr.DataTree, file: Path | str = "posterior"):
    """PosteriorError if the configuration text a fit stores does not hash to the hash it records
    (an altered file). Only for fits of this package version: hashing may change between versions.
    Returns the configuration it parsed, or None when it did not check."""
    attrs = tree.attrs
    if (
        attrs.get("bayes_spill_version") != __version__
        or "model_config" not in attrs
        or "model_config_hash" not in attrs
    ):
        return None
    from bayes_spill.errors import ConfigError

    try:
        claimed = config_from_tree(tree)
    except ConfigError as exc:
        raise PosteriorError(f"{file}: the model configuration it stores is not valid ({exc})") from None
    if claimed.hash() != attrs["model_config_hash"]:
        raise PosteriorError(
            f"{file}: the model configuration it stores hashes to {claimed.hash()[:12]}, not to the recorded "
            f"{str(attrs['model_config_hash'])[:12]}: the file was altered after it was written"
        )
    return claimed


def config_differences(tree: xr.DataTree, config) -> list[str]:
    """'section.key: <in the posterior> in the posterior, <in config> in <source>' per difference."""
    from bayes_spill.errors import ConfigError

    try:
        stored = config_from_tree(tree).to_dict()
    except (KeyError, ConfigError):
        return ["the posterior stores no readable model configuration"]
    wanted = config.to_dict()
    out = []
    for key in sorted(set(_flatten(stored)) | set(_flatten(wanted))):
        a, b = _flatten(stored).get(key, "(absent)"), _flatten(wanted).get(key, "(absent)")
        if a != b and key != "sampler.cores":
            out.append(f"{key}: {a!r} in the posterior, {b!r} in {config.source}")
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
