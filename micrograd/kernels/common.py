"""What the fast kernels share: fused activations, a pool of scratch buffers, and BLAS
``gemm`` products that add into their output in place.

Every convolution and BatchNorm kernel in ``micrograd.kernels`` is an autograd ``Function``
named ``...Op`` (``Conv2dOp``, ``BatchNormOp``), so it is never mistaken for the module of the
same idea in ``micrograd.nn`` (``nn.Conv2d``, ``nn.BatchNorm2d``).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any

from micrograd.backend import xp
from micrograd.tensor import Array, Function


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"input of size {size} is too small for kernel {kernel}")
    return out


# ---------------------------------------------------------------------- fused activations
#: The activations ``conv2d`` and ``batch_norm`` can apply to their output in the same op, as
#: (low, high) clipping bounds.
ACTIVATIONS: dict[str, tuple[float, float]] = {"relu": (0.0, float("inf")), "relu6": (0.0, 6.0)}


def activation_bounds(activation: str | None) -> tuple[float, float] | None:
    """The clipping bounds of an ``ACTIVATIONS`` name (None for None); ``ValueError`` for any
    other name."""
    if activation is None:
        return None
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or None")
    return ACTIVATIONS[activation]


def _inside(out: Array, bounds: tuple[float, float]) -> Array:
    """Where a clipped output let the gradient through: strictly inside ``bounds`` (0 at the
    bounds themselves, as PyTorch's ``relu``/``relu6`` give it)."""
    inside = out > bounds[0]
    if bounds[1] != float("inf"):
        inside &= out < bounds[1]
    return inside


class Activated(Function):
    """An op whose output may be clipped in place by a fused activation (``bounds``): the
    clipped output is kept (when a gradient will be asked for) to mask the output gradient."""

    bounds: tuple[float, float] | None = None
    out: Array | None = None

    def _activate(self, out: Array, bounds: tuple[float, float] | None) -> Array:
        if bounds is not None:
            xp.clip(out, *bounds, out=out)
            if any(self.needs_grad):
                self.out, self.bounds = out, bounds
        return out

    def _passed(self, grad: Array) -> Array:
        """The output gradient where the activation passed it, 0 where it clipped."""
        if self.bounds is None or self.out is None:
            return grad
        return grad * _inside(self.out, self.bounds)


# ---------------------------------------------------------------------- scratch and BLAS
class _Scratch:
    """Large work arrays kept for reuse, by shape and dtype, up to ``max_bytes`` in all.

    A training step needs tens of MB of padded images and product buffers per conv; asking the
    OS for fresh memory every step costs a page fault per page touched (about as long as
    filling the page), so buffers go back here once their op is done with them. At most
    ``keep`` spares are kept per shape, and the least recently returned shapes are let go first
    once the pool holds more than ``max_bytes``, so a server that saw one huge batch does not
    keep its buffers forever.
    A lock makes it safe for concurrent graphs (app users): no two get the same buffer.
    """

    def __init__(self, keep: int = 4, max_bytes: int = 512 * 2**20) -> None:
        self.keep, self.max_bytes = keep, max_bytes
        self.free: OrderedDict[tuple[tuple[int, ...], str], list[Array]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: Any) -> Array:
        with self.lock:
            spares = self.free.get((shape, xp.dtype(dtype).str))
            if spares:
                array = spares.pop()
                self.bytes -= array.nbytes
                return array
        return xp.empty(shape, dtype=dtype)

    def give(self, array: Array) -> None:
        key = (array.shape, array.dtype.str)
        with self.lock:
            spares = self.free.setdefault(key, [])
            if len(spares) >= self.keep:
                return
            spares.append(array)
            self.free.move_to_end(key)
            self.bytes += array.nbytes
            while self.bytes > self.max_bytes:
                oldest, kept = next(iter(self.free.items()))
                if kept:
                    self.bytes -= kept.pop(0).nbytes
                if not kept:
                    del self.free[oldest]


_scratch = _Scratch()


def _padded(a: Array, p: int) -> Array:
    """``(N, H, W, C)`` -> zero-padded ``(N, H+2p, W+2p, C)`` in a scratch buffer."""
    if p == 0:
        return a
    n, h, w, c = a.shape
    out = _scratch.take((n, h + 2 * p, w + 2 * p, c), a.dtype)
    out[:, :p], out[:, h + p :], out[:, :, :p], out[:, :, w + p :] = 0, 0, 0, 0
    out[:, p : p + h, p : p + w] = a
    return out


@functools.cache
def _gemm(dtype: Any) -> Any:
    """scipy's BLAS ``?gemm`` for ``dtype`` (``C <- alpha A B + beta C``, in place), or None.

    numpy's ``matmul`` always writes a fresh result, so a sum of products would cost an extra
    pass over the output per term; ``gemm`` with ``beta=1`` adds each product where it lies.
    scipy comes with scikit-image; imported on first use, as it takes a fifth of a second.
    """
    if xp.__name__ != "numpy" or xp.dtype(dtype) not in (xp.float32, xp.float64):
        return None
    try:
        from scipy.linalg import blas
    except ImportError:  # pragma: no cover - scipy is a dependency of scikit-image
        return None
    return blas.get_blas_funcs("gemm", dtype=xp.dtype(dtype))


def _blas_operand(m: Array) -> tuple[Array, int] | None:
    """``m`` as a column-major operand ``x`` and transpose flag ``t`` with ``op(x) = mᵀ``, the
    form ``gemm`` takes without copying; None if ``m`` is neither C- nor F-contiguous."""
    if m.flags.c_contiguous:
        return m.T, 0
    if m.flags.f_contiguous:
        return m, 1
    return None


def _matmul(a: Array, b: Array, out: Array, accumulate: bool = False) -> Array:
    """``out (M, N) = a (M, K) @ b (K, N)``, or ``+=`` with ``accumulate``, in place.

    Every matrix product of the convolutions goes through here, to scipy's BLAS ``gemm`` when it
    takes the arrays as they are (row-major ``out`` is the column-major ``outᵀ = bᵀ aᵀ``; a
    transposed view is passed with a transpose flag), so no operand is copied, a sum of products
    is added where it lies, and one BLAS thread pool does the work. Otherwise numpy's matmul.
    """
    gemm = _gemm(out.dtype)
    if gemm is not None and out.flags.c_contiguous and a.dtype == b.dtype == out.dtype:
        first, second = _blas_operand(b), _blas_operand(a)
        if first is not None and second is not None:
            gemm(1.0, first[0], second[0], beta=float(accumulate), c=out.T,
                 trans_a=first[1], trans_b=second[1], overwrite_c=True)  # fmt: skip
            return out
    if accumulate:
        out += a @ b
    else:
        xp.matmul(a, b, out=out)
    return out


# ---------------------------------------------------------------------- ReLU6
class ReLU6Op(Activated):
    """``min(max(x, 0), 6)``, MobileNet's activation, fused: one pass forward, and the
    backward's mask read off the output (0 < out < 6), so nothing else is kept. The gradient is
    0 at exactly 0 and 6, as ``torch.nn.functional.relu6`` gives it."""

    def forward(self, x: Array) -> Array:
        self.bounds = ACTIVATIONS["relu6"]
        self.out = xp.clip(x, *self.bounds)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (self._passed(grad),)
