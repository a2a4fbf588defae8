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


#: The longest inner dimension one BLAS product sums at once (see ``k_blocks``).
K_BLOCK = 256


def k_blocks(k: int) -> list[slice | None]:
    """How a matrix product with inner dimension ``k`` is summed: ``[None]`` (at once) when
    ``k <= K_BLOCK``, else consecutive slices of ``K_BLOCK``, added in order.

    OpenBLAS splits a long inner dimension into blocks of its own, and how depends on its
    thread count, so a product's last bits would depend on how many threads it ran on. Summed
    in blocks this short, each BLAS call is one block whatever the thread count, so a batch
    scores the same bits on 1 thread or 16, in one process or on a cluster's one-thread
    workers. (Not whatever the batch: BLAS picks other kernels for small matrices, so the
    photos that share a forward pass still matter; batch jobs cut theirs the same way.)
    """
    if k <= K_BLOCK:
        return [None]
    return [slice(start, min(start + K_BLOCK, k)) for start in range(0, k, K_BLOCK)]


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` (numpy's rules for shapes), summed over the inner dimension in ``k_blocks``."""
    parts = k_blocks(a.shape[-1]) if a.ndim >= 1 and b.ndim >= 2 else [None]
    if parts == [None]:
        return a @ b
    out = a[..., parts[0]] @ b[..., parts[0], :]
    for part in parts[1:]:
        out += a[..., part] @ b[..., part, :]
    return out
