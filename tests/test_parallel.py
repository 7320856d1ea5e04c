"""parallel.ordered_in_threads: results in the items' order, errors where the result is taken, and
a bounded number of tasks in flight however many items."""

from __future__ import annotations

import threading
import time

import pytest

from bayes_spill import parallel


@pytest.fixture(params=[1, 2, 3])
def threads(request, monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda limit=None: request.param)
    return request.param


def test_results_come_in_the_order_of_the_items(threads):
    def slow_first(i):  # the early items finish last
        time.sleep(0.002 * (10 - i))
        return i * i

    assert list(parallel.ordered_in_threads(slow_first, range(10))) == [i * i for i in range(10)]


def test_a_task_error_is_raised_where_its_result_is_taken(threads):
    def task(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    results = parallel.ordered_in_threads(task, range(6))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3"):
        next(results)


def test_items_are_read_only_as_results_are_taken(threads):
    """At most threads + 1 items are taken ahead of the results consumed: the memory of a few
    tasks, however many items (the summary table's blocks at 30 times the paper's firms)."""
    read = []
    lock = threading.Lock()

    def items():
        for i in range(50):
            with lock:
                read.append(i)
            yield i

    results = parallel.ordered_in_threads(lambda i: i, items())
    for taken in range(1, 20):
        next(results)
        with lock:
            assert len(read) <= taken + threads + 1, (taken, len(read))


def test_workers_are_the_cores_at_most_the_limit():
    assert parallel.workers() >= 1
    assert parallel.workers(1) == 1
    assert parallel.workers(10_000) == parallel.workers()
