"""A fit folder holds one run's outputs, written as a unit.

Every command that writes into a fit folder (``fit``, ``check``, ``counterfactual``, ``sorting``)
does it through a ``Transaction``: its files are written into a hidden staging folder inside the
fit folder (so that a folder it cannot write fails before any work), then committed in one step
under a lock:

1. the lock (``DIR/.lock``, an flock) is taken; a second command waits for it, and after
   ``LOCK_WAIT_SECONDS`` says who holds it;
2. a command that adds to a run (``check``) commits only if the folder still holds the run it
   read (``run.json``'s run id, also stored in the posterior's attributes);
3. a journal (``DIR/.commit.json``: what moves where, what goes) is written atomically: this is
   the commit point. A fit's journal removes every output of the run before it (the files its
   ``run.json`` lists, and the outputs a check or a counterfactual leaves in folders written
   before run.json existed);
4. the journal is applied (the old outputs renamed aside, the staged files renamed into place,
   ``run.json`` rewritten) with Ctrl-C and SIGTERM held back, and removed; the aside folder and
   the stage are deleted.

A process killed between 3 and 4 leaves a journal that the next command to write the folder (or
``recover``) completes, so the folder is always one run: the old one before the journal exists,
the new one after. An interrupted command says which (``Interrupted.outcome``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from bayes_spill.errors import BayesSpillError

MANIFEST = "run.json"
LOCK = ".lock"
JOURNAL = ".commit.json"
STAGE_PREFIX = ".stage-"
ASIDE_PREFIX = ".aside-"
OWNER = ".owner"
RUN_ATTR = "run_id"  # the posterior's attribute holding the run id of the fit that wrote it
FIT_FILES = ("posterior.nc", "summary.csv", "versions.json")
# What the commands that add to a run leave in its folder, removed by the next fit even from a
# folder written before run.json existed. A user's own files there are never touched.
DERIVED_PATTERNS = (
    "report.md",
    "report.html",
    "checks.csv",
    "figures",
    "counterfactual_*.csv",
    "sorting.csv",
    "equilibrium_*.csv",
)
LOCK_WAIT_SECONDS = 60.0
STAGE_GRACE_SECONDS = 60.0  # a stage without its owner's name is left alone this long
# Test hook: "STEP" or "STEP=SECONDS". STEP is a step name of ``Transaction`` ("staged",
# "locked") to wait at, for SECONDS (default 600) or until the test removes the marker
# .STEP.held that the wait puts in the stage; or "apply:N" to end
# the process (os._exit, as a kill -9 would) after the journal's N-th action.
# tests/inference/test_fit_folder.py and tests/checking/test_fit_folders.py use it.
TEST_STOP_ENV = "BAYES_SPILL_TEST_FOLDER_STOP"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a command wrote a fit folder; ``outcome`` says what the folder holds."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class FolderChanged(BayesSpillError):
    """The fit folder holds another run than the one a command read: nothing was written."""


class FolderBusy(BayesSpillError):
    """Another command holds the fit folder's lock for longer than LOCK_WAIT_SECONDS."""


# -- the manifest --------------------------------------------------------------------------------------
def read_manifest(folder: str | Path) -> dict | None:
    """The run a fit folder holds (``run.json``), or None for a folder without one.

    Parameters
    ----------
    folder : str or Path
        A fit folder.

    Returns
    -------
    dict or None
        ``run_id``, ``written`` (command, time, host, pid of the fit) and ``files`` (relative
        path -> sha256, size and the command that wrote it).
    """
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BayesSpillError(f"{path}: not a readable run record ({exc})") from None


def current_run(folder: str | Path) -> str | None:
    """The run id of the fit a folder holds, or None (no fit, or one written before run ids)."""
    manifest = read_manifest(folder)
    return None if manifest is None else manifest.get("run_id")


def describe_run(folder: str | Path) -> str:
    """'the fit of <time> (run <id>)' for messages; 'no fit' or 'a fit written before run records'."""
    folder = Path(folder)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        return "a fit written before run records" if (folder / FIT_FILES[0]).exists() else "no fit"
    written = manifest.get("written", {})
    return f"the fit of {written.get('time', '?')} (run {str(manifest.get('run_id'))[:8]})"


def verify(folder: str | Path) -> list[str]:
    """What in a fit folder differs from its run record: files missing, changed, or outputs of
    another run. Empty when the folder is one run's outputs exactly.

    Parameters
    ----------
    folder : str or Path
        A fit folder.

    Returns
    -------
    list of str
        One line per problem.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return [f"{folder} has no {MANIFEST}"]
    problems = []
    for rel, record in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif _sha256(path) != record["sha256"]:
            problems.append(f"{rel} is not the file the run wrote")
    listed = set(manifest["files"])
    for rel in _outputs_present(folder):
        if rel != MANIFEST and rel not in listed and not any(r.startswith(rel + "/") for r in listed):
            problems.append(f"{rel} is not an output of run {manifest['run_id'][:8]}")
    if (folder / JOURNAL).exists():
        problems.append(f"{JOURNAL}: a commit was not completed")
    return problems


# -- the lock ------------------------------------------------------------------------------------------
@contextmanager
def locked(folder: str | Path, command: str, wait: float | None = None):
    """Hold the fit folder's lock (an exclusive flock on ``DIR/.lock``) for the block.

    Parameters
    ----------
    folder : str or Path
        The fit folder (created if missing).
    command : str
        What holds it, written into the lock file for the message of a command that waits.
    wait : float, optional
        Seconds to wait for another holder (default LOCK_WAIT_SECONDS); then FolderBusy names it.

    Returns
    -------
    contextmanager
    """
    import fcntl

    folder = Path(folder)
    wait = LOCK_WAIT_SECONDS if wait is None else wait
    handle = open(folder / LOCK, "a+", encoding="utf-8")
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(handle)
                if time.monotonic() - start >= wait:
                    raise FolderBusy(
                        f"{folder} is being written by {holder}; nothing was written. Run this again when it has finished"
                    ) from None
                if not told:
                    print(f"waiting for {folder}: {holder} is writing it", file=sys.stderr, flush=True)
                    told = True
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()} on {socket.gethostname()}, since {_now()})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _holder(handle) -> str:
    handle.seek(0)
    text = handle.read().strip()
    return text or "another command"


# -- transactions --------------------------------------------------------------------------------------
class Transaction:
    """Write a set of files into a fit folder as one unit.

    Parameters
    ----------
    folder : str or Path
        The fit folder.
    command : str
        The command writing ("fit", "check", ...), for the run record and messages.
    new_run : bool
        True for a fit: the committed files are a new run and every output of the run before
        goes. False: the files are added to the run the folder holds (replacing those of the same
        name, and whatever ``replaces`` names).
    expect_run : str or None
        For ``new_run=False``: commit only while the folder holds this run id (the posterior the
        command read); None takes the run the folder holds when the transaction starts.
    replaces : tuple of str
        Relative paths (files or folders) the commit removes before adding its own (a check
        replaces ``figures`` as a whole).

    Attributes
    ----------
    stage : Path
        Where the command writes its files, under the names they will have in the folder.
    run_id : str
        The run the committed files belong to (new for a fit).

    Examples
    --------
    >>> with Transaction(out, "fit", new_run=True) as tx:  # doctest: +SKIP
    ...     tree.attrs[RUN_ATTR] = tx.run_id
    ...     tree.to_netcdf(tx.stage / "posterior.nc")
    """

    def __init__(
        self,
        folder: str | Path,
        command: str,
        new_run: bool = False,
        expect_run: str | None = None,
        replaces: tuple[str, ...] = (),
    ) -> None:
        self.folder = Path(folder)
        self.command = command
        self.new_run = new_run
        self.expect_run = expect_run
        self.replaces = tuple(replaces)
        self.committed = False
        self.run_id = uuid.uuid4().hex if new_run else (expect_run or "")
        self.stage = self.folder / f"{STAGE_PREFIX}{uuid.uuid4().hex[:12]}"
        self._identity: tuple | None = None

    def __enter__(self) -> Transaction:
        if not self.new_run and not self.folder.is_dir():
            raise BayesSpillError(f"no fit folder at {self.folder}: run 'bayes-spill fit --out {self.folder}' first")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            recover(self.folder)
            self.stage.mkdir()
            (self.stage / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        except OSError as exc:
            raise BayesSpillError(
                f"cannot write to {self.folder}: {exc.strerror or exc}; nothing was computed"
            ) from None
        if not self.new_run:
            manifest = read_manifest(self.folder)
            held = None if manifest is None else manifest.get("run_id")
            if self.expect_run is None:
                self.expect_run = held
            self.run_id = self.expect_run or ""
            self._identity = _posterior_identity(self.folder)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is None and not self.committed:
            try:
                self.commit()
            except BaseException as failure:
                self._end(type(failure), failure)
                raise
            return False
        self._end(kind, exc)
        return False

    def _end(self, kind, exc) -> None:
        """Remove the stage of an uncommitted transaction; turn an interrupt into Interrupted,
        which says what the folder holds."""
        if not self.committed:
            _remove_tree(self.stage)
        if kind is None or not issubclass(kind, KeyboardInterrupt) or isinstance(exc, Interrupted):
            return
        if self.committed:
            raise Interrupted(
                f"after {self.folder} was written in full: it holds the new outputs of {self.command}"
            ) from None
        raise Interrupted(
            f"no partial output was written: {self.folder} holds {describe_run(self.folder)}, as before"
        ) from None

    def commit(self) -> None:
        """Move the staged files into the folder as one step (see the module's description)."""
        _test_stop("staged", self.stage)
        files = _staged_files(self.stage)
        records = {
            rel: {"sha256": _sha256(self.stage / rel), "size": (self.stage / rel).stat().st_size, "by": self.command}
            for rel in files
        }
        with locked(self.folder, self.command):
            _test_stop("locked", self.stage)
            manifest = read_manifest(self.folder)
            if not self.new_run:
                self._require_same_run(manifest)
            journal = self._journal(manifest, files, records)
            # a signal held back here is delivered as the block ends, after the commit: _end
            # then says the folder holds the new outputs
            with _signals_held():
                _write_json(self.folder / JOURNAL, journal)
                _apply(self.folder, journal)
                self.committed = True

    def _require_same_run(self, manifest: dict | None) -> None:
        held = None if manifest is None else manifest.get("run_id")
        if self.expect_run is not None and held == self.expect_run:
            return
        if self.expect_run is None and held is None and _posterior_identity(self.folder) == self._identity:
            return  # a folder written before run records: the posterior file is the one read
        raise FolderChanged(
            f"{self.folder} changed while {self.command} ran: it now holds {describe_run(self.folder)}, not the fit "
            f"{self.command} read; nothing was written. Run {self.command} again"
        )

    def _journal(self, manifest: dict | None, files: list[str], records: dict) -> dict:
        aside = f"{ASIDE_PREFIX}{uuid.uuid4().hex[:12]}"
        previous = dict(manifest["files"]) if manifest is not None else {}
        if self.new_run:
            remove = sorted((set(_top_levels(previous)) | set(_outputs_present(self.folder))) - {MANIFEST})
            kept: dict = {}
            written = {"command": self.command, "time": _now(), "host": socket.gethostname(), "pid": os.getpid()}
        else:
            remove = sorted({r for r in self.replaces if (self.folder / r).exists()})
            kept = {
                rel: record
                for rel, record in previous.items()
                if rel not in records and not any(rel == r or rel.startswith(r + "/") for r in self.replaces)
            }
            written = manifest.get("written", {}) if manifest is not None else {}
        # a file replaced by one of the same name is swapped by the rename itself, not removed first
        remove = [r for r in remove if r not in records]
        new_manifest = {"run_id": self.run_id or None, "written": written, "files": {**kept, **records}}
        return {"stage": self.stage.name, "aside": aside, "remove": remove, "moves": files, "manifest": new_manifest}


@contextmanager
def output_file(path: str | Path, fit: str | Path, command: str):
    """Where a command that reads a fit writes one output file, checked before it computes.

    Parameters
    ----------
    path : str or Path
        The file the command writes.
    fit : str or Path
        The fit folder (or its posterior.nc) the command reads.
    command : str
        The command, for the run record and messages.

    Returns
    -------
    contextmanager
        Yields the path to write. A file inside the fit folder is written into a Transaction's
        stage and committed onto the run the folder held when the block began (FolderChanged if
        a fit replaced it meanwhile); a file elsewhere is written where it is asked, once its
        folder proved writable. Either way a folder that cannot be written fails on entry.
    """
    path, fit = Path(path), Path(fit)
    folder = fit.parent if fit.is_file() else fit
    if path.parent.resolve() == folder.resolve():
        with Transaction(folder, command) as tx:
            yield tx.stage / path.name
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.probe"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise BayesSpillError(f"cannot write to {path.parent}: {exc.strerror or exc}; nothing was computed") from None
    yield path


def recover(folder: str | Path) -> None:
    """Finish a commit a killed process left (its journal), and remove stages and aside folders
    no live process owns. Called by every Transaction before it writes.

    Parameters
    ----------
    folder : str or Path
        A fit folder.
    """
    folder = Path(folder)

    def leftovers() -> list[Path]:
        return [
            path
            for path in folder.glob(".*-*")
            if path.name.startswith((STAGE_PREFIX, ASIDE_PREFIX)) and path.is_dir() and not _owned_by_live_process(path)
        ]

    if not (folder / JOURNAL).exists() and not leftovers():
        return
    # under the lock: an aside folder is what makes a journal's apply repeatable, so none is
    # removed while a commit (which holds the lock) may still need it
    with locked(folder, "recovery"):
        if (folder / JOURNAL).exists():
            with _signals_held():
                _apply(folder, json.loads((folder / JOURNAL).read_text(encoding="utf-8")))
        for path in leftovers():
            _remove_tree(path)


# -- applying a journal (idempotent: a killed apply is completed by running it again) ----------------
def _apply(folder: Path, journal: dict) -> None:
    stage, aside = folder / journal["stage"], folder / journal["aside"]
    step = 0
    for rel in journal["remove"]:
        # moved aside already when the aside copy exists (a rename is atomic: one of the two does)
        if (folder / rel).exists() and not (aside / rel).exists():
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder / rel, aside / rel)
        step = _test_kill_after(step)
    for rel in journal["moves"]:
        if (stage / rel).exists():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, folder / rel)
        step = _test_kill_after(step)
    _write_json(folder / MANIFEST, journal["manifest"])
    step = _test_kill_after(step)
    (folder / JOURNAL).unlink(missing_ok=True)
    step = _test_kill_after(step)
    _remove_tree(aside)
    _remove_tree(stage)


def _outputs_present(folder: Path) -> list[str]:
    """Top-level names in the folder that are run outputs (the fit's files and DERIVED_PATTERNS)."""
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    return sorted(
        n for n in names if n in FIT_FILES or n == MANIFEST or any(fnmatch.fnmatch(n, p) for p in DERIVED_PATTERNS)
    )


def _top_levels(files: dict) -> list[str]:
    return sorted({rel.split("/")[0] for rel in files})


def _staged_files(stage: Path) -> list[str]:
    # hidden files are a writer's temporaries and markers, never outputs
    files = sorted(
        str(p.relative_to(stage)).replace(os.sep, "/")
        for p in stage.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    # the posterior last: a reader that sees the new posterior sees the run's other files already there
    return sorted(files, key=lambda rel: rel == FIT_FILES[0])


def _posterior_identity(folder: Path) -> tuple | None:
    try:
        info = (folder / FIT_FILES[0]).stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _owned_by_live_process(path: Path) -> bool:
    if path.name.startswith(ASIDE_PREFIX):
        return False  # only a journal uses one, and journals are applied before leftovers go
    try:
        host, pid = (path / OWNER).read_text().split()
    except (OSError, ValueError):
        # a stage made an instant ago whose owner is not written yet, or one left by a crash
        try:
            return time.time() - path.stat().st_mtime < STAGE_GRACE_SECONDS
        except OSError:
            return False
    if host != socket.gethostname():
        return True  # another machine's process: cannot tell, leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z")


@contextmanager
def _signals_held():
    """Hold back SIGINT and SIGTERM for the block (their Python handlers, which run in the main
    thread, are swapped for one that notes the signal); one that arrived is then handed to the
    handler it was meant for, so the command exits as it would have, after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in arrived[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _test_stop(step: str, stage: Path) -> None:
    setting = os.environ.get(TEST_STOP_ENV, "")
    name, _, seconds = setting.partition("=")
    if name == step:
        # the marker tells the test that the wait began; removing it ends the wait
        marker = stage / f".{step}.held"
        marker.touch()
        end = time.monotonic() + float(seconds or 600)
        while marker.exists() and time.monotonic() < end:
            time.sleep(0.05)


def _test_kill_after(step: int) -> int:
    step += 1
    setting = os.environ.get(TEST_STOP_ENV, "")
    if setting == f"apply:{step}":
        os._exit(137)
    return step
