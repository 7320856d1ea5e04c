"""Where the studies' replicates run: in this process, in a local process pool, or on a Dask
cluster, all behind one ``run(fn, tasks)`` that yields each outcome as it completes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from bayes_spill.errors import BayesSpillError


@dataclass
class Outcome:
    task: dict
    result: dict | None = None
    error: str | None = None


class SerialExecutor:
    """Runs tasks one after another in this process (tests, debugging)."""

    name = "serial"

    def run(self, fn: Callable[[dict], dict], tasks: list[dict]) -> Iterator[Outcome]:
        for task in tasks:
            try:
                yield Outcome(task, fn(task))
            except Exception as exc:
                yield Outcome(task, error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        pass


class LocalExecutor:
    """A local process pool (spawned processes, so no forked sampler threads)."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or (os.cpu_count() or 1))
        self.name = f"local process pool ({self.workers} workers)"

    def run(self, fn, tasks: list[dict]) -> Iterator[Outcome]:
        if not tasks:
            return
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            pending = {pool.submit(fn, task): task for task in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    exc = future.exception()
                    if exc is None:
                        yield Outcome(task, future.result())
                    else:
                        yield Outcome(task, error=f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


class StudyInterrupted(Exception):
    """The executor lost its workers as a whole (a Dask scheduler went away): what finished is
    stored, and running the same command again resumes."""


class DaskExecutor:
    """A Dask distributed cluster at a scheduler address (workers need bayes_spill installed).

    Results come back to this process, which stores them (store.run_study): the study folder
    lives where the command runs, workers write nothing. Each result is released on the cluster
    as soon as it is read, so a worker that dies later takes no finished replicate with it; a
    task running on a dying worker is rerun elsewhere by Dask (up to its allowed-failures, then
    it is recorded as failed and retried on the next run); a lost scheduler ends the run as
    interrupted."""

    def __init__(self, address: str, timeout: str = "30s"):
        try:
            from distributed import Client
        except ImportError:
            raise BayesSpillError(
                "--scheduler needs Dask distributed, which is not installed: pip install 'bayes_spill[dask]' "
                "(or pip install 'distributed>=2024.1') here and on every worker"
            ) from None
        try:
            self.client = Client(address, timeout=timeout)
        except Exception as exc:
            raise BayesSpillError(
                f"cannot connect to the Dask scheduler at {address}: {type(exc).__name__}: {exc}"
            ) from None
        self.address = address
        try:
            check_workers(self.client)
        except BaseException:
            self.client.close()
            raise
        self.name = f"Dask cluster at {address}"

    def run(self, fn, tasks: list[dict]) -> Iterator[Outcome]:
        from distributed import as_completed

        if not tasks:
            return
        futures = {
            self.client.submit(fn, task, key=f"{task['key']}-{_task_token(task)}", pure=False): task for task in tasks
        }
        try:
            for future in as_completed(list(futures)):
                task = futures.pop(future)
                if future.cancelled():
                    raise StudyInterrupted(f"the Dask scheduler at {self.address} went away")
                try:
                    outcome = Outcome(task, future.result())
                except Exception as exc:
                    outcome = Outcome(task, error=f"{type(exc).__name__}: {exc}")
                future.release()
                yield outcome
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.client.close()


def check_workers(client) -> None:
    """Every worker connected now imports the same bayes_spill version as this process (a worker
    with another version would compute other replicates under the same keys)."""
    import bayes_spill

    try:
        found = client.run(_worker_version)
    except Exception as exc:  # the function is sent by reference: a worker without bayes_spill cannot load it
        raise BayesSpillError(
            f"the Dask workers cannot run bayes_spill ({type(exc).__name__}: {exc}): install bayes_spill "
            f"{bayes_spill.__version__} with the dask extra on every worker and restart it"
        ) from None
    wrong = {addr: v for addr, v in found.items() if v != bayes_spill.__version__}
    if wrong:
        listed = ", ".join(f"{a}: {v}" for a, v in sorted(wrong.items()))
        raise BayesSpillError(
            f"Dask workers must run bayes_spill {bayes_spill.__version__} like this process; found {listed}: "
            "install the same version on every worker and restart it"
        )


def _worker_version() -> str:
    import bayes_spill

    return bayes_spill.__version__


def make_executor(workers: int | None = None, scheduler: str | None = None):
    """A DaskExecutor when a scheduler address is given, else a local process pool."""
    if scheduler:
        return DaskExecutor(scheduler)
    return LocalExecutor(workers)


def _task_token(task: dict) -> str:
    return hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()[:10]
