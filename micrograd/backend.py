"""The one place that picks the array library.

Every array operation in the Tensor engine goes through ``xp``. Today that is numpy; setting
``MICROGRAD_BACKEND=cupy`` swaps in CuPy (same API, arrays on the GPU) without touching any op.
"""

from __future__ import annotations

import os
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
