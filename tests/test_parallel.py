"""The batch jobs' units on this machine's threads (``training.parallel.in_order``): results in
order, every unit once, errors raised, and the same bits as a one-BLAS-thread process (a
cluster's worker) whatever the process's own BLAS thread count."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from training.parallel import QUEUED_PER_THREAD, in_order

ROOT = Path(__file__).resolve().parent.parent


def test_results_come_in_order_each_unit_once() -> None:
    finished: list[int] = []

    def slow_first(i: int) -> int:
        time.sleep(0.05 if i % 3 == 0 else 0.0)  # later units finish before earlier ones
        return i * i

    out = list(in_order(slow_first, range(20), finished.append, threads=3))
    assert out == [i * i for i in range(20)]
    assert sorted(finished) == list(range(20))


def test_units_run_at_once_but_no_more_are_out_than_the_limit() -> None:
    lock, running, most, taken = threading.Lock(), [0], [0], [0]

    def units():
        for i in range(30):
            taken[0] += 1
            yield i

    def run(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return i

    results = in_order(run, units(), threads=3)
    assert next(results) == 0
    assert taken[0] <= 3 * (1 + QUEUED_PER_THREAD) + 3  # read lazily, not all at once
    assert list(results) == list(range(1, 30))
    assert most[0] == 3


def test_an_error_in_a_unit_is_raised_in_order() -> None:
    def run(i: int) -> int:
        if i == 5:
            raise ValueError("unit 5")
        return i

    got = []
    with pytest.raises(ValueError, match="unit 5"):
        for value in in_order(run, range(10), threads=2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


_SCRIPT = """
import hashlib, sys
sys.path.insert(0, {root!r})
import numpy as np
from tests.test_backend import _network
from micrograd import Tensor, no_grad
from training.parallel import in_order

net = _network()
x = np.random.default_rng(1).standard_normal((40, 3, 8, 8)).astype(np.float32)

def unit(start):
    with no_grad():
        return net(Tensor(x[start : start + 8])).numpy()

starts = range(0, 40, 8)
if {threads} == 0:  # a cluster's worker: one BLAS thread for the process, units one by one
    out = [unit(start) for start in starts]
else:
    out = list(in_order(unit, starts, threads={threads}))
print(hashlib.sha256(np.concatenate(out).tobytes()).hexdigest())
"""


def _digest(blas_threads: str, threads: int) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": blas_threads, "OMP_NUM_THREADS": blas_threads}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(root=str(ROOT), threads=threads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_the_units_bits_do_not_depend_on_the_thread_counts() -> None:
    """The plain path in a process whose BLAS has 2 or 3 threads, on 1, 2 or 3 threads of its
    own, gives a one-thread worker's bits (OpenBLAS alone does not, on some CPUs)."""
    worker = _digest("1", 0)
    assert {_digest(blas, threads) for blas in ("2", "3") for threads in (1, 2, 3)} == {worker}
