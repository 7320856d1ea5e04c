"""The resumable study folder: both studies store every finished replicate as one JSON file under
STUDY/replicates/ (written atomically), so an interrupted study resumes where it stopped: run the
same command again. STUDY/study.json records the settings a folder was started with."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bayes_spill.calibration.executors import LocalExecutor, StudyInterrupted
from bayes_spill.errors import BayesSpillError
from bayes_spill.inference.posterior_io import atomic_path

REPLICATES = "replicates"


FAILURES = "failures"


STUDY_FILE = "study.json"


@dataclass
class StudyRun:
    done: int
    total: int
    ran: int
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    why: str = ""


def _write_json(path: Path, payload: dict) -> None:
    from bayes_spill.twostep.results import finite_or_none

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_or_none(payload), indent=1, default=_json_default, allow_nan=False))


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# A study may be extended in its folder (more simulations or datasets, another method): replicate
# i of a method is the same whatever the others, so these are not part of what must match.
EXTENSIBLE = ("sims", "datasets", "methods")


def prepare_study(study_dir: Path, kind: str, spec: dict) -> None:
    """Create the study folder, or check that an existing one was started with the same spec
    (the number of simulations or datasets may grow)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / STUDY_FILE
    spec = {k: v for k, v in spec.items() if k not in EXTENSIBLE}
    record = {"kind": kind, "spec": json.loads(json.dumps(spec, default=_json_default))}
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("kind") != kind or stored.get("spec") != record["spec"]:
            changed = sorted(
                k
                for k in set(stored.get("spec", {})) | set(record["spec"])
                if stored.get("spec", {}).get(k) != record["spec"].get(k)
            )
            raise BayesSpillError(
                f"{study_dir} holds a {stored.get('kind')} study started with other settings (differs in: {', '.join(changed) or 'kind'}); "
                "resume it with the same options, or choose a new --out folder"
            )
        return
    _write_json(path, record)


def completed_keys(study_dir: Path) -> set[str]:
    return {p.stem for p in (study_dir / REPLICATES).glob("*.json")}


def load_replicates(study_dir: Path, keys: Iterable[str] | None = None) -> list[dict]:
    """The stored replicates (only those named in ``keys`` when given), in key order."""
    wanted = None if keys is None else set(keys)
    return [
        json.loads(p.read_text())
        for p in sorted((study_dir / REPLICATES).glob("*.json"))
        if wanted is None or p.stem in wanted
    ]


def run_study(
    study_dir: str | Path, tasks: list[dict], fn: Callable[[dict], dict], executor=None, progress: bool = True
) -> StudyRun:
    """Run fn(task) for every task whose result is not yet stored; store each result as
    STUDY/replicates/KEY.json the moment it arrives (a failure as STUDY/failures/KEY.json, retried
    on the next run). Only this process writes the folder, one file per replicate, so a replicate
    is stored once however often a cluster reran it. Ctrl-C, or an executor that loses its
    workers (StudyInterrupted), stops cleanly: what finished is kept, a rerun resumes."""
    study_dir = Path(study_dir)
    executor = executor or LocalExecutor()
    done = completed_keys(study_dir)
    todo = [t for t in tasks if t["key"] not in done]
    run = StudyRun(done=len(tasks) - len(todo), total=len(tasks), ran=0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(tasks), initial=run.done, desc=tasks[0]["key"].split("-")[0] if tasks else "study", unit="fit"
        )
    try:
        for outcome in executor.run(fn, todo):
            key = outcome.task["key"]
            if outcome.error is None:
                _write_json(study_dir / REPLICATES / f"{key}.json", outcome.result)
                (study_dir / FAILURES / f"{key}.json").unlink(missing_ok=True)
                run.done += 1
            else:
                _write_json(study_dir / FAILURES / f"{key}.json", {"key": key, "error": outcome.error})
                run.failed[key] = outcome.error
            run.ran += 1
            if bar is not None:
                bar.update(1 if outcome.error is None else 0)
                bar.set_postfix(failed=len(run.failed))
    except KeyboardInterrupt:
        run.interrupted = True
    except StudyInterrupted as exc:
        run.interrupted, run.why = True, str(exc)
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    return run


def stored_only(out: Path, tasks: list[dict]) -> StudyRun:
    """The run record of a study that is only reported on, not run."""
    done = completed_keys(out)
    return StudyRun(done=sum(t["key"] in done for t in tasks), total=len(tasks), ran=0)


def status_line(run: StudyRun) -> str:
    parts = [f"{run.done} of {run.total} replicates stored ({run.ran} attempted now)"]
    if run.failed:
        first = next(iter(run.failed.items()))
        parts.append(
            f"{len(run.failed)} failed (kept under failures/, retried on the next run; e.g. {first[0]}: {first[1]})"
        )
    if run.interrupted:
        parts.append(f"interrupted{f' ({run.why})' if run.why else ''}: run the same command again to resume")
    return "; ".join(parts)


def stored_number(value) -> float:
    """A stored number (null in JSON for nan) as a float."""
    return float("nan") if value is None else float(value)
