"""Helpers for the fit-folder tests: a folder made read-only even for root (chmod, and chattr +i
where root ignores modes), undone afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest


def _writable(folder: Path) -> bool:
    probe = folder / f".probe-{uuid.uuid4().hex[:6]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


@contextmanager
def read_only(folder: Path):
    """The folder cannot be written inside the block (skips the test where that cannot be arranged)."""
    folder = Path(folder)
    mode = folder.stat().st_mode & 0o777
    immutable = False
    os.chmod(folder, 0o555)
    try:
        if _writable(folder) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if _writable(folder):
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        os.chmod(folder, mode)
