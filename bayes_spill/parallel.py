"""numpy work on every core: the steps after sampling (pointwise log-likelihood, alpha_i drawn
back, the summary table) spend their time in large array operations, which release the GIL, so
threads share one process's arrays instead of copying them to workers."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def workers(limit: int | None = None) -> int:
    """Threads to use: the cores this process may run on, at most ``limit``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, limit) if limit else cores)


def ordered_in_threads(
    task: Callable[[Item], Result], items: Iterable[Item], limit: int | None = None
) -> Iterator[Result]:
    """task(item) for each item, in the order of the items, computed on ``workers(limit)`` threads.

    At most one task more than the threads is submitted ahead of the results taken (items are
    read only as results are taken, and the threads stay busy while the caller works on a
    result), so memory stays at a few tasks' arrays however many items there are; a task's
    error is raised where its result is taken. One worker computes in the caller's thread.

    Parameters
    ----------
    task : callable
        Called with one item; must not depend on the other items' tasks having run.
    items : iterable
        The items, read lazily.
    limit : int, optional
        At most this many threads.

    Yields
    ------
    The results, in the items' order.
    """
    n = workers(limit)
    if n == 1:
        yield from map(task, items)
        return
    with ThreadPoolExecutor(n) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(task, item))
            if len(pending) > n:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
