"""Writing and reading fits: atomic files (never a half-written posterior) and provenance checks."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import xarray as xr

from bayes_spill import __version__
from bayes_spill.errors import PosteriorError

POSTERIOR_FILE = "posterior.nc"
SUMMARY_FILE = "summary.csv"
REQUIRED_GROUPS = ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data")


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; it replaces ``target`` only if the block succeeds.

    os.replace is atomic on one filesystem, so a reader sees the old file or the new one, and a
    crash or Ctrl-C inside the block leaves at most a stray temporary, which is removed here.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(tree: xr.DataTree, out_dir: str | Path) -> Path:
    """Write DIR/posterior.nc and DIR/summary.csv atomically; returns the posterior path."""
    from bayes_spill.reporting import summary_table

    out = Path(out_dir)
    target = out / POSTERIOR_FILE
    with atomic_path(target) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    with atomic_path(out / SUMMARY_FILE) as tmp:
        summary_table(tree, all_parameters=True).to_csv(tmp)
    return target


def load(path: str | Path, config=None) -> xr.DataTree:
    """Open a saved fit (a folder or its posterior.nc) fully into memory.

    With ``config`` (a ModelConfig), check that the fit was made with that configuration and say
    what differs; a fit from another package version is reported too.
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
    if config is not None:
        check_matches(tree, config, file)
    return tree


def check_matches(tree: xr.DataTree, config, file: Path | str = "posterior") -> None:
    stored = tree.attrs.get("model_config_hash")
    problems = []
    if stored != config.hash():
        problems.append(f"model configuration hash {str(stored)[:12]} != {config.hash()[:12]} of {config.source}")
    version = tree.attrs.get("bayes_spill_version")
    if version != __version__:
        problems.append(f"written by bayes_spill {version}, this is {__version__}")
    if problems:
        raise PosteriorError(f"{file} does not match: " + "; ".join(problems))
