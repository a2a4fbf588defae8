"""The batch jobs' units in this process: on one thread per core, each on one BLAS thread.

``predict``, ``evaluate`` and the fine-tune's feature pass are cut into units (32 photos, a
forward pass's photos, 4 photos of one view). Here, without ``--ray``, ``in_order`` runs them
on a pool of threads, one per CPU, with BLAS on one thread (``micrograd.backend.
one_blas_thread``): numpy lets go of the interpreter lock inside its products and array loops,
so the threads keep the cores busy, and each unit is computed exactly as a cluster's
one-thread worker computes it (``training.cluster``). Same units, same bits, either way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from micrograd.backend import cpu_count, one_blas_thread

Unit = TypeVar("Unit")
Result = TypeVar("Result")

#: Units waiting for each thread besides the one it runs, so it never idles between two.
QUEUED_PER_THREAD = 1


def in_order(
    run: Callable[[Unit], Result],
    units: Iterable[Unit],
    done: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> Iterator[Result]:
    """``run(unit)`` for every unit, ``threads`` (default: one per CPU) at a time, yielded in
    the units' order. ``done(i)`` is called as unit ``i`` finishes (in any order).

    At most ``threads * (1 + QUEUED_PER_THREAD)`` units are out at once, so memory does not
    grow with the job. An error in a unit is raised here, in order; on an error, Ctrl-C or the
    caller stopping early, units not started are dropped (those running finish on their own).
    """
    threads = threads or cpu_count()
    queue = iter(enumerate(units))
    pending: dict[Future[Result], int] = {}
    finished: dict[int, Future[Result]] = {}
    following = 0
    pool = ThreadPoolExecutor(threads, thread_name_prefix="unit")

    def submit(count: int) -> None:
        for i, unit in itertools.islice(queue, count):
            pending[pool.submit(run, unit)] = i

    try:
        with one_blas_thread():
            submit(threads * (1 + QUEUED_PER_THREAD))
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    i = pending.pop(future)
                    finished[i] = future
                    if done is not None and future.exception() is None:
                        done(i)
                submit(len(ready))
                while following in finished:
                    yield finished.pop(following).result()
                    following += 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
