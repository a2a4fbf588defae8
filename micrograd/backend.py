"""The one place that picks the array library.

Every array operation in the Tensor engine goes through ``xp``. Today that is numpy; setting
``MICROGRAD_BACKEND=cupy`` swaps in CuPy (same API, arrays on the GPU) without touching any op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy

_name = os.environ.get("MICROGRAD_BACKEND", "numpy").lower()
if _name == "cupy":  # pragma: no cover - needs a GPU
    import cupy as xp  # type: ignore[import-not-found]
elif _name == "numpy":
    xp = numpy
else:
    raise ValueError(f"MICROGRAD_BACKEND must be 'numpy' or 'cupy', not {_name!r}")

name: str = _name
DEFAULT_DTYPE = xp.float32


def to_numpy(a: Any) -> numpy.ndarray:
    """Return ``a`` as a numpy array on the host (a no-op for the numpy backend)."""
    return a.get() if hasattr(a, "get") and not isinstance(a, numpy.ndarray) else numpy.asarray(a)


def cpu_count() -> int:
    """CPUs this process may run on (a container's or ``taskset``'s limit, not the host's
    count, where the OS says), at least 1. The one place the project asks."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside the block, every BLAS library of the process (numpy's and scipy's) runs on one
    thread; the thread count it had comes back after.

    A product's last bits can depend on BLAS's thread count (numpy's OpenBLAS on an AMD EPYC
    gives other bits on one thread than on two, even for products of 27 terms), so the batch jobs
    run each unit on one BLAS thread, many units at once: on threads here
    (``training.parallel``), on one-thread workers on a cluster. Either way a unit gives the
    same bits. Needs ``threadpoolctl``; scipy's BLAS, otherwise loaded on a conv's first
    product, is loaded first so that the limit reaches it too.
    """
    from threadpoolctl import threadpool_limits

    if name == "numpy":
        with contextlib.suppress(ImportError):  # scipy comes with scikit-image
            import scipy.linalg.blas  # noqa: F401
    with threadpool_limits(limits=1, user_api="blas"):
        yield
