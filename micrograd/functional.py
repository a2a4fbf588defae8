"""Neural-network functions on Tensors, with PyTorch's names and shapes.

Images are NCHW, convolution weights are ``(out_channels, in_channels, kh, kw)``. Most functions
are compositions of the primitives in ``micrograd.tensor``; a few are fused into one ``Function``
each because they dominate training time or need special care for numerical stability:
``conv2d`` (a sum of shifted matrix products on channels-last rows; depthwise as one einsum over
the kernel offsets' windows; either with the ReLU or ReLU6 after it), ``batch_norm`` (likewise),
``relu6``, ``log_softmax`` and the sliding windows behind ``max_pool2d`` and ``avg_pool2d``.
Arrays behind NCHW tensors are stored channels-last where an op makes them, so the next conv or
batch norm reads them without a transpose copy.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from micrograd.backend import xp
from micrograd.tensor import Array, Function, Tensor, _lift, _raw, concatenate

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cross_entropy",
    "dropout",
    "global_avg_pool2d",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "relu",
    "relu6",
    "sigmoid",
    "softmax",
    "tanh",
]


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


class _Activated(Function):
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


# ---------------------------------------------------------------------- convolution
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


#: Rows of the phase images one weight-gradient pass takes for all taps at a time (under 1 MB
#: of input and gradient at 32 channels), so the reads of a row for every tap come from the
#: CPU's cache: 25% faster on one thread than one whole-array product per tap.
DW_ROWS = 4096

Tap = tuple[int, int, int]  # kernel row i, kernel column j, row offset in the phase image


class Conv2d(_Activated):
    """2-D cross-correlation as a sum of shifted matrix products, computed channels-last, with
    no im2col matrix.

    **Stride 1.** Lay the images one after another as rows of ``C`` channels, each image row
    followed by ``p`` zero pixels and each image by ``p`` zero rows: pixel ``(n, h, w)`` is row
    ``q = (n*Hs + h)*Ws + w`` of ``X`` (``Hs = H+p``, ``Ws = W+p``; ``p*Ws + p`` zero rows go
    first). The zeros after one row are the padding on the right of that row *and* on the left
    of the next, so output pixel ``q`` finds kernel offset ``(i, j)`` at row ``q + i*Ws + j`` of
    ``X``, and each offset is one contiguous slice of it:

        out[q] = Σ_ij X[q + i*Ws + j] @ W_ij        (W_ij = w[:, :, i, j]ᵀ, (C, O))

    BLAS ``gemm`` adds the ``kh*kw`` products into ``out`` in place. Rows ``q`` on the zero
    pixels compute garbage that is dropped: ``Hs*Ws / (H*W)`` times the work (1.06x at 32x32,
    1.27x at 8x8), in exchange for never writing the ``kh*kw``-fold im2col matrix and keeping
    only ``X`` for backward (a 1x1 conv keeps nothing: ``X`` is the input itself).

    **Stride s.** Split the zero-padded input ``P`` into its ``s*s`` phases,
    ``X_ab = P[a::s, b::s]``: a stride-``s`` conv is the sum over phases of stride-1 convs of
    ``X_ab`` with the taps ``w[:, :, s*i + a, s*j + b]``. The phases are laid out as above (with
    their own zero borders) on one ``Hs x Ws`` grid, so that their output rows line up.

    Backward, with ``G`` the output gradient on the same grid (zero off the output pixels):
    ``dW_ij = Σ_q X[q + off_ij]ᵀ @ G[q]`` (the zero rows add nothing), and each phase's
    ``dX[r] = Σ_ij G[r - off_ij] @ W_ijᵀ``, a stride-1 product again.
    """

    def forward(
        self,
        x: Array,
        w: Array,
        b: Array | None = None,
        *,
        stride: int,
        padding: int,
        bounds: tuple[float, float] | None = None,
    ) -> Array:
        n, c, h, wd = x.shape
        o, ci, kh, kw = w.shape
        if ci != c:
            raise ValueError(f"conv2d: input has {c} channels, weight expects {ci}")
        s, p = stride, padding
        ho, wo = _out_size(h, kh, s, p), _out_size(wd, kw, s, p)
        if s == 1 and p < min(kh, kw):  # shared zero borders, as in the docstring
            hs, ws, lead = h + p, wd + p, p * (wd + p) + p
        else:  # each phase on a grid with its own zero border
            hs, ws, lead = ho + (kh - 1) // s, wo + (kw - 1) // s, 0
        self.geometry = (x.shape, w.shape, s, p, ho, wo, hs, ws, lead)
        taps = self._taps()
        self.phases = self._phase_images(x.transpose(0, 2, 3, 1), taps)
        # tap (i, j)'s (C, O) matrix is [i, j]: copied so each is contiguous, except a 1x1
        # kernel's one tap, a transposed view that BLAS takes as it is
        by_offset = w.transpose(2, 3, 1, 0)
        if kh * kw > 1:
            by_offset = by_offset.copy()
        out = self._products(self.phases, taps, by_offset, b).reshape(n, hs, ws, o)
        if (hs, ws) != (ho, wo):
            grid, out = out, xp.ascontiguousarray(out[:, :ho, :wo])
            _scratch.give(grid.reshape(-1, o))
        if not self.needs_grad[1]:  # only dW reads the phase images
            self.release()
        self.w, self.has_bias = w, b is not None
        return self._activate(out.transpose(0, 3, 1, 2), bounds)

    def _taps(self) -> dict[tuple[int, int], list[Tap]]:
        """Per phase ``(a, b)``: its kernel taps ``(i, j)`` and their row offsets on the grid."""
        _, (_, _, kh, kw), s, _, _, _, _, ws, _ = self.geometry
        taps: dict[tuple[int, int], list[Tap]] = {}
        for i in range(kh):
            for j in range(kw):
                taps.setdefault((i % s, j % s), []).append((i, j, (i // s) * ws + j // s))
        return taps

    def _phase_slices(self, a: int, b: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Phase ``(a, b)``: where in each image's ``Hs x Ws`` block the input pixels lie (the
        rest is zeros), and which pixels of the ``(N, H, W, C)`` input those are."""
        (_, _, h, wd), _, s, p, _, _, hs, ws, lead = self.geometry
        if lead or (s, p) == (1, 0):  # stride 1: the whole input, at the top left
            return (slice(0, h), slice(0, wd)), (slice(None), slice(None))

        def axis(a: int, size: int, grid: int) -> tuple[slice, slice]:
            lo = max(0, -((a - p) // s))  # first grid index whose pixel s*lo + a - p >= 0
            hi = max(lo, min(grid, (size - 1 + p - a) // s + 1))
            first = s * lo + a - p
            return slice(lo, hi), slice(first, first + s * (hi - lo), s)

        (grid_rows, rows), (grid_cols, cols) = axis(a, h, hs), axis(b, wd, ws)
        return (grid_rows, grid_cols), (rows, cols)

    def _phase_images(
        self, x: Array, taps: dict[tuple[int, int], list[Tap]]
    ) -> dict[tuple[int, int], Array]:
        """``x (N, H, W, C)`` -> for each phase of ``taps``, the rows ``X (lead + N*Hs*Ws, C)``
        of the docstring (a scratch buffer; ``x`` itself for a stride-1 conv without padding)."""
        (n, c, _, _), _, s, p, _, _, hs, ws, lead = self.geometry
        if s == 1 and p == 0:
            return {(0, 0): xp.ascontiguousarray(x).reshape(-1, c)}
        images = {}
        for a, b in taps:
            image = _scratch.take((lead + n * hs * ws, c), x.dtype)
            image[:lead] = 0
            grid = image[lead:].reshape(n, hs, ws, c)
            (gr, gc), (xr, xc) = self._phase_slices(a, b)
            grid[:, : gr.start], grid[:, gr.stop :] = 0, 0
            grid[:, :, : gc.start], grid[:, :, gc.stop :] = 0, 0
            grid[:, gr, gc] = x[:, xr, xc]
            images[a, b] = image
        return images

    def _products(
        self,
        images: dict[tuple[int, int], Array],
        taps: dict[tuple[int, int], list[Tap]],
        by_offset: Array,
        bias: Array | None,
    ) -> Array:
        """``out (N*Hs*Ws, O) = bias + Σ over phases and taps of X[q + off] @ by_offset[i, j]``,
        the forward's sum (``by_offset (kh, kw, C, O)``). Rows past the last full slice are
        unset. The bias is where the sum starts: BLAS would otherwise zero ``out`` first."""
        (n, *_), _, _, _, _, _, hs, ws, _ = self.geometry
        first_image = next(iter(images.values()))
        span = len(first_image) - max(off for t in taps.values() for *_, off in t)
        out = _scratch.take((n * hs * ws, by_offset.shape[3]), first_image.dtype)
        first = bias is None
        if bias is not None:
            out[:span] = bias
        for ab, image in images.items():
            for i, j, off in taps[ab]:
                _matmul(image[off : off + span], by_offset[i, j], out[:span], not first)
                first = False
        return out

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        (n, c, h, wd), (o, *_), s, _, ho, wo, hs, ws, lead = self.geometry
        grad = self._passed(grad)
        taps = self._taps()
        reach = max(off for ts in taps.values() for *_, off in ts)
        rows = n * hs * ws
        if reach == lead == 0 and (hs, ws) == (ho, wo):  # G is the gradient itself
            gbuf = g = xp.ascontiguousarray(grad.transpose(0, 2, 3, 1)).reshape(rows, o)
        else:  # G on the grid, between zero rows so that every G[r - off] of dX is a slice
            gbuf = _scratch.take((reach - lead + rows + lead, o), grad.dtype)
            gbuf[: reach - lead], gbuf[reach - lead + rows :] = 0, 0
            grid = gbuf[reach - lead : reach - lead + rows].reshape(n, hs, ws, o)
            grid[:, :ho, :wo] = grad.transpose(0, 2, 3, 1)
            grid[:, ho:], grid[:, :ho, wo:] = 0, 0
            g = grid.reshape(rows, o)
        dw = None
        if self.needs_grad[1]:
            dw = self._weight_gradient(g, taps, lead + rows - reach)
        dx = None
        if self.needs_grad[0]:
            dx = xp.zeros((n, h, wd, c), dtype=grad.dtype) if s > 1 else None
            for (a, b), ts in taps.items():
                dphase = _scratch.take((rows, c), grad.dtype)  # dX of the image rows after lead
                for t, (i, j, off) in enumerate(ts):
                    tap = xp.ascontiguousarray(self.w[:, :, i, j])  # (O, C)
                    at = reach - off  # G[r + lead - off], r counted from the first image
                    _matmul(gbuf[at : at + rows], tap, dphase, t > 0)
                (gr, gc), (xr, xc) = self._phase_slices(a, b)
                on_input = dphase.reshape(n, hs, ws, c)[:, gr, gc]
                if s > 1:
                    dx[:, xr, xc] = on_input
                elif (hs, ws) == (h, wd):  # stride 1 without padding: dX is dx
                    dx = on_input
                    continue
                else:  # stride 1: the one phase covers the whole input
                    dx = on_input.copy()
                _scratch.give(dphase)
            dx = dx.transpose(0, 3, 1, 2)
        if gbuf is not g:
            _scratch.give(gbuf)
        db = grad.sum(axis=(0, 2, 3)) if self.has_bias and self.needs_grad[2] else None
        return (dx, dw, db) if self.has_bias else (dx, dw)

    def _weight_gradient(
        self, g: Array, taps: dict[tuple[int, int], list[Tap]], span: int
    ) -> Array:
        """``dW (O, C, kh, kw)`` from the gradient rows ``g`` on the grid: ``Σ_q X[q + off]ᵀ G[q]``
        over the first ``span`` rows.

        Within a phase, the ``nj`` taps of a kernel row read rows ``q + off, q + off + 1, ...``
        of ``X``: copied out side by side once (``nj*C`` wide), a block of rows serves every tap
        of every kernel row in products ``nj`` times larger than one per tap (the kernel rows
        are the same copy ``Ws`` rows further on). Blocks of ``DW_ROWS`` rows keep it in cache.
        """
        _, (o, c, kh, kw), *_ = self.geometry
        dtype, item = g.dtype, g.dtype.itemsize
        dw = xp.empty((o, c, kh, kw), dtype=dtype)
        for ab, ts in taps.items():
            image = self.phases[ab]
            kernel_rows = [list(row) for _, row in itertools.groupby(ts, key=lambda t: t[0])]
            nj, reach = len(kernel_rows[0]), kernel_rows[-1][0][2]  # taps a row, last row's off
            sums = xp.empty((len(kernel_rows), nj * c, o), dtype=dtype)
            spare = _scratch.take(((DW_ROWS + reach) * nj * c,), dtype) if nj > 1 else None
            for r in range(0, span, DW_ROWS):
                end = min(span, r + DW_ROWS)
                if spare is not None:  # rows r.. of X with their nj-1 successors, side by side
                    shape = (end - r + reach, nj * c)
                    side_by_side = xp.lib.stride_tricks.as_strided(
                        image[r:], shape, (c * item, item), writeable=False
                    )
                    rows = spare[: side_by_side.size].reshape(shape)
                    xp.copyto(rows, side_by_side)
                else:
                    rows = image[r : end + reach]
                for total, row in zip(sums, kernel_rows, strict=True):
                    at = row[0][2]
                    _matmul(rows[at : at + end - r].T, g[r:end], total, accumulate=r > 0)
            if spare is not None:
                _scratch.give(spare)
            for total, row in zip(sums, kernel_rows, strict=True):
                for t, (i, j, _) in enumerate(row):
                    dw[:, :, i, j] = total[t * c : (t + 1) * c].T
        return dw

    def release(self) -> None:
        _, _, s, p, *_ = self.geometry
        if self.phases is not None and (s, p) != (1, 0):  # scratch buffers, not x itself
            for image in self.phases.values():
                _scratch.give(image)
        self.phases = None


#: Floats of output gradient that a strided depthwise conv's ``dx`` scatter works on at a time:
#: small enough (256 KB) to stay in the CPU's cache across all k*k offsets, where whole-tensor
#: passes would stream the activations through memory k*k times (2.3x slower for a 5x5 kernel
#: on 56x56x144 maps).
DEPTHWISE_BLOCK = 65536


Window = tuple[int, slice, slice]


def _block_rows(wo: int, c: int) -> int:
    """Output rows per block: ``DEPTHWISE_BLOCK`` floats, at least one row."""
    return max(1, DEPTHWISE_BLOCK // max(1, wo * c))


def _blocks(
    n: int, ho: int, wo: int, c: int, kh: int, kw: int, s: int
) -> Iterator[tuple[tuple[int, slice], list[tuple[int, Window]]]]:
    """The cache-sized pieces of an ``(n, ho, wo, c)`` depthwise output: for each, its index in
    the output and, per kernel offset (tap ``i*kw + j``), the index of the window of the padded
    input that the offset reads (and that the backward writes)."""
    rows = _block_rows(wo, c)
    for b in range(n):
        for r in range(0, ho, rows):
            end = min(ho, r + rows)
            windows = [
                (
                    i * kw + j,
                    (b, slice(r * s + i, (end - 1) * s + i + 1, s), slice(j, j + s * wo, s)),
                )
                for i in range(kh)
                for j in range(kw)
            ]
            yield (b, slice(r, end)), windows


def _windows(a: Array, kh: int, kw: int, s: int, ho: int, wo: int) -> Array:
    """``(N, Hp, Wp, C)`` -> the read-only view ``(N, kh, kw, ho, X)`` whose ``[n, i, j, h]``
    holds the ``wo`` pixels ``(s*h + i, s*w + j)`` of every kernel offset's input window.

    ``X`` is ``wo*C`` where those pixels lie one after another (stride 1, channels-last rows),
    so that einsum runs its loops along whole rows; otherwise ``(wo, C)``."""
    n, _, _, c = a.shape
    sn, sh, sw, sc = a.strides
    if s == 1 and sw == c * sc:
        shape, strides = (n, kh, kw, ho, wo * c), (sn, sh, sw, sh, sc)
    else:
        shape, strides = (n, kh, kw, ho, wo, c), (sn, sh, sw, s * sh, s * sw, sc)
    return xp.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)


def _window_sum(windows: Array, taps: Array) -> Array:
    """``Σ_ij windows[n, i, j, h, ...] * taps[i, j]`` -> ``(N, ho, wo, C)``; ``taps (kh, kw, C)``
    tiled along the row when ``windows`` has whole rows (``_windows``)."""
    n, ho = windows.shape[0], windows.shape[3]
    c = taps.shape[2]
    if windows.ndim == 5:  # rows of wo*C
        wide = xp.tile(taps, (1, 1, windows.shape[4] // c))
        return xp.einsum("nijhx,ijx->nhx", windows, wide).reshape(n, ho, -1, c)
    return xp.einsum("nijhwc,ijc->nhwc", windows, taps)


class DepthwiseConv2d(_Activated):
    """Depthwise 2-D cross-correlation (one kxk filter per channel, ``groups == channels``) as
    one ``einsum`` over a strided view of every kernel offset's input window.

    An im2col here would copy every pixel ``kh*kw`` times only to multiply it by one number.
    With ``V[n, i, j, h, w, c] = x[n, s*h + i, s*w + j, c]`` (a view, ``_windows``):

        out[n, h, w, c]  = Σ_ij V[n, i, j, h, w, c] * w[c, i, j]
        dW[c, i, j]      = Σ_nhw V[n, i, j, h, w, c] * g[n, h, w, c]

    numpy's einsum runs each as one multiply-accumulate loop along the channels (whole image rows
    of them at stride 1), contiguous in every operand: 2-3x faster than a multiply and an add per
    offset. For stride 1, ``dx`` is the same einsum on the zero-padded gradient with the kernel
    flipped; for larger strides it scatters ``g * w[:, i, j]`` back to each offset's window, in
    cache-sized blocks of rows (``DEPTHWISE_BLOCK``), all offsets for one block at a time.
    """

    def forward(
        self,
        x: Array,
        w: Array,
        b: Array | None = None,
        *,
        stride: int,
        padding: int,
        bounds: tuple[float, float] | None = None,
    ) -> Array:
        _, c, h, wd = x.shape
        o, ci, kh, kw = w.shape
        if ci != 1 or o != c:
            raise ValueError(f"depthwise conv2d needs weight ({c}, 1, k, k), got {w.shape}")
        s, p = stride, padding
        ho, wo = _out_size(h, kh, s, p), _out_size(wd, kw, s, p)
        src = _padded(x.transpose(0, 2, 3, 1), p)  # (N, H+2p, W+2p, C)
        taps = xp.ascontiguousarray(w.reshape(c, kh, kw).transpose(1, 2, 0))  # (kh, kw, C)
        out = _window_sum(_windows(src, kh, kw, s, ho, wo), taps)
        if b is not None:
            out += b
        if p:
            _scratch.give(src)
        self.x = x.transpose(0, 2, 3, 1) if self.needs_grad[1] else None  # dW pads it again
        self.taps, self.has_bias = taps, b is not None
        self.geometry = (x.shape, kh, kw, ho, wo, s, p)
        return self._activate(out.transpose(0, 3, 1, 2), bounds)

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        (_, _, h, wd), kh, kw, ho, wo, s, p = self.geometry
        g = self._passed(grad).transpose(0, 2, 3, 1)  # (N, Ho, Wo, C), free for our outputs
        dw = None
        if self.needs_grad[1]:
            src = _padded(self.x, p)
            windows = _windows(src, kh, kw, s, ho, wo)
            if windows.ndim == 5:  # rows of wo*C: sum the wo pixels of each row afterwards
                rows = g.reshape(len(g), ho, -1)
                dw = xp.einsum("nijhx,nhx->ijx", windows, rows).reshape(kh, kw, wo, -1).sum(2)
            else:
                dw = xp.einsum("nijhwc,nhwc->ijc", windows, g)
            dw = xp.ascontiguousarray(dw.transpose(2, 0, 1))[:, None]
            if src is not self.x:
                _scratch.give(src)
        dx = None
        if self.needs_grad[0] and s == 1 and kh == kw and p < kh:
            gpad = _padded(g, kh - 1 - p)  # dx is a correlation of it with the flipped kernel
            flipped = xp.ascontiguousarray(self.taps[::-1, ::-1])
            dx = _window_sum(_windows(gpad, kh, kw, 1, h, wd), flipped)
            if gpad is not g:
                _scratch.give(gpad)
        elif self.needs_grad[0]:
            dx = self._scatter(g)
        db = g.sum(axis=(0, 1, 2)) if self.has_bias and self.needs_grad[2] else None
        if dx is not None:
            dx = dx.transpose(0, 3, 1, 2)
        return (dx, dw, db) if self.has_bias else (dx, dw)

    def _scatter(self, g: Array) -> Array:
        """``dx (N, H, W, C)``: ``g * w[:, i, j]`` added back to each offset's input window."""
        (n, c, h, wd), kh, kw, ho, wo, s, p = self.geometry
        taps = self.taps.reshape(kh * kw, c)
        dpad = xp.zeros((n, h + 2 * p, wd + 2 * p, c), dtype=g.dtype)
        term = xp.empty((min(ho, _block_rows(wo, c)), wo, c), dtype=g.dtype)
        for at, windows in _blocks(n, ho, wo, c, kh, kw, s):
            gb = g[at]
            t = term[: len(gb)]
            for tap, window in windows:
                xp.multiply(gb, taps[tap], out=t)
                dpad[window] += t
        return dpad[:, p : p + h, p : p + wd]

    def release(self) -> None:
        self.x = None


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    activation: str | None = None,
) -> Tensor:
    """``x (N, C, H, W)``, ``weight (O, C/groups, kh, kw)``, ``bias (O,)`` -> ``(N, O, Ho, Wo)``.

    ``groups`` splits the channels as PyTorch does: input channels ``[g*C/groups, ...)`` feed
    output channels ``[g*O/groups, ...)`` only. ``groups == C == O`` (depthwise) has a fused
    kernel; other groupings run one convolution per group and join the results.
    ``activation`` (``"relu"`` or ``"relu6"``, see ``ACTIVATIONS``) is applied to the result in
    the same op, in place: ``relu(conv2d(x, ...))`` without a second array or graph node.
    """
    inputs = (x, weight) if bias is None else (x, weight, bias)
    stride, padding, groups = int(stride), int(padding), int(groups)
    bounds = activation_bounds(activation)
    c, o = x.shape[1], weight.shape[0]
    if groups == 1:
        return Conv2d.apply(*inputs, stride=stride, padding=padding, bounds=bounds)
    if groups < 1 or c % groups or o % groups or weight.shape[1] * groups != c:
        raise ValueError(
            f"conv2d: groups={groups} does not divide {c} input and {o} output channels "
            f"with weight {tuple(weight.shape)}"
        )
    if groups == c == o:
        return DepthwiseConv2d.apply(*inputs, stride=stride, padding=padding, bounds=bounds)
    ci, co = c // groups, o // groups
    outs = [
        conv2d(
            x[:, g * ci : (g + 1) * ci],
            weight[g * co : (g + 1) * co],
            None if bias is None else bias[g * co : (g + 1) * co],
            stride,
            padding,
            activation=activation,
        )
        for g in range(groups)
    ]
    return concatenate(outs, axis=1)


# ---------------------------------------------------------------------- pooling
class _Windows(Function):
    """Sliding windows as a view: ``(N, C, H, W)`` -> ``(N, C, Ho, Wo, kh, kw)``.

    Pooling with overlapping or padded windows is then a plain ``max``/``mean`` over the last
    two axes. The backward scatters each window position back with one add per kernel offset.
    """

    def forward(self, x: Array, kernel: tuple[int, int], stride: tuple[int, int]) -> Array:
        (kh, kw), (sh, sw) = kernel, stride
        self.shape, self.kernel, self.stride = x.shape, kernel, stride
        view = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
        return view[:, :, ::sh, ::sw]

    def backward(self, grad: Array) -> tuple[Array]:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ho, wo = grad.shape[2:4]
        dx = xp.zeros(self.shape, dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += grad[..., i, j]
        return (dx,)


def _pool(
    x: Tensor, kernel_size: Any, stride: Any, padding: Any, fill: float, reduce: str
) -> Tensor:
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(kernel_size if stride is None else stride)
    (ph, pw) = _pair(padding)
    n, c, h, w = x.shape
    if (kh, kw) == (sh, sw) and (ph, pw) == (0, 0) and h % kh == 0 and w % kw == 0:
        # non-overlapping windows: a reshape exposes each window as two axes, no copy
        windows = x.reshape(n, c, h // kh, kh, w // kw, kw)
        axes: tuple[int, ...] = (3, 5)
    else:
        if ph or pw:
            x = x.pad(((0, 0), (0, 0), (ph, ph), (pw, pw)), value=fill)
        windows = _Windows.apply(x, kernel=(kh, kw), stride=(sh, sw))
        axes = (4, 5)
    return windows.max(axes) if reduce == "max" else windows.mean(axes)


def max_pool2d(
    x: Tensor, kernel_size: int | tuple[int, int], stride: Any = None, padding: Any = 0
) -> Tensor:
    """Max over ``kernel_size`` windows: ``(N, C, H, W)`` -> ``(N, C, Ho, Wo)``.

    Within a window the gradient goes to the first maximal element (row-major), as in PyTorch.
    """
    return _pool(x, kernel_size, stride, padding, -float("inf"), "max")


def avg_pool2d(
    x: Tensor, kernel_size: int | tuple[int, int], stride: Any = None, padding: Any = 0
) -> Tensor:
    """Mean over windows (zero padding counted, as PyTorch's default): NCHW -> NCHW."""
    return _pool(x, kernel_size, stride, padding, 0.0, "mean")


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple[int, int]) -> Tensor:
    """Average-pool to a fixed ``output_size``; ``(N, C, H, W)`` -> ``(N, C, oh, ow)``.

    Supports sizes that divide the input evenly (including 1, global pooling).
    """
    oh, ow = _pair(output_size)
    h, w = x.shape[2:]
    if h % oh or w % ow:
        raise ValueError(f"adaptive_avg_pool2d: {h}x{w} is not divisible into {oh}x{ow}")
    return avg_pool2d(x, (h // oh, w // ow))


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over the spatial axes: ``(N, C, H, W)`` -> ``(N, C)``."""
    return x.mean(axis=(2, 3))


# ---------------------------------------------------------------------- normalisation
def _channel_rows(a: Array) -> Array:
    """``(N, C, ...)`` -> ``(N*..., C)``: one column per channel. A free view for conv outputs,
    which are stored channels-last; a copy otherwise."""
    return xp.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _from_channel_rows(rows: Array, shape: tuple[int, ...]) -> Array:
    """Inverse of ``_channel_rows``: a ``shape`` (N, C, ...) view of ``(N*..., C)`` rows."""
    return xp.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)


#: Floats per block of the fused elementwise passes (BatchNorm with its activation): 256 KB, so
#: the several passes over a block run in the CPU's cache and the activations, the largest
#: arrays of a network, stream from memory once per sweep instead of once per numpy call.
ELEMENTWISE_BLOCK = 65536

#: Floats per row that per-channel passes are given at least, where the channels allow: numpy
#: runs one inner loop per row, and on 32-float rows the loops' overhead (and, for column
#: sums, their access pattern) costs up to six times the arithmetic.
WIDE_ROW = 1024


def _wide(rows: Array) -> tuple[Array, int]:
    """``(M, C)`` rows -> ``(M/k, k*C)`` (a free view of contiguous rows) and ``k``: the
    largest power of two with ``k*C <= WIDE_ROW`` that divides ``M``. Column ``j`` of the wide
    rows holds channel ``j % C``: per-channel vectors are tiled ``k`` times to match, per-column
    sums folded back."""
    m, c = rows.shape
    k = 1
    while 2 * k * c <= WIDE_ROW and m % (2 * k) == 0:
        k *= 2
    return rows.reshape(m // k, k * c), k


def _row_blocks(rows: int, width: int) -> list[slice]:
    """``ELEMENTWISE_BLOCK``-float blocks of an ``(rows, width)`` array, at least a row each."""
    step = max(1, ELEMENTWISE_BLOCK // max(1, width))
    return [slice(r, min(rows, r + step)) for r in range(0, rows, step)]


def _mean_var(rows: Array, blocks: list[slice]) -> tuple[Array, Array]:
    """Per-column mean and (biased) variance of ``rows (M, C)``, in one sweep over memory: each
    block's own mean and centred sum of squares, merged as Chan et al. do (exact, and as
    stable as the two-pass formula). Accumulated in float64; ``(C,)`` each."""
    c = rows.shape[1]
    mean, m2, count = xp.zeros(c), xp.zeros(c), 0
    centred = xp.empty((blocks[0].stop - blocks[0].start, c), dtype=rows.dtype)
    for block in blocks:
        part = rows[block]
        k = len(part)
        block_mean = part.mean(axis=0)  # a few rows: exact enough in the input's precision
        d = xp.subtract(part, block_mean, out=centred[:k])
        block_mean = block_mean.astype(xp.float64)
        delta = block_mean - mean
        mean += delta * (k / (count + k))
        m2 += xp.einsum("ij,ij->j", d, d) + delta * delta * (count * k / (count + k))
        count += k
    return mean, m2 / count


class BatchNorm(Function):
    """Batch normalisation over every axis but 1 (channels), for ``(N, C)`` or ``(N, C, H, W)``,
    optionally followed by ReLU or ReLU6 (``bounds``, from ``activation_bounds``): one fused op,
    computed on one column per channel (rows made ``WIDE_ROW`` wide, see ``_wide``), in
    cache-sized blocks of rows (``ELEMENTWISE_BLOCK``).

    Composed from primitives, BatchNorm + ReLU6 would make about twelve passes over the largest
    activations of the network, each streaming them through memory; here the forward reads the
    input twice (statistics, then normalisation) and writes the output once, and the backward
    reads its inputs twice. In training it normalises with the batch statistics and moves the
    running buffers (updated in place) towards them, using the unbiased variance as PyTorch does.

    Nothing the size of the activations is kept for backward but the input and (with an
    activation) the output, which the graph holds anyway: ``x̂ = (x - mean) * inv_std`` is folded
    into per-channel coefficients, ``dW = inv_std * (Σ g x - mean Σ g)`` and ``dx = a g + b x + c``,
    with ``g`` the output gradient masked where the activation clipped (``0 < out < 6`` for
    ReLU6; 0 at the edges, as PyTorch).
    """

    def forward(
        self,
        x: Array,
        weight: Array,
        bias: Array,
        *,
        running_mean: Array | None,
        running_var: Array | None,
        training: bool,
        momentum: float,
        eps: float,
        bounds: tuple[float, float] | None,
    ) -> Array:
        rows, k = _wide(_channel_rows(x))  # (M/k, k*C)
        m = rows.shape[0] * k
        blocks = _row_blocks(*rows.shape)
        if training:
            wide_mean, wide_var = _mean_var(rows, blocks)  # per column: fold the k of a channel
            groups = wide_mean.reshape(k, -1)
            mean = groups.mean(axis=0)
            var = (wide_var.reshape(k, -1) + (groups - mean) ** 2).mean(axis=0)
            if running_mean is not None and running_var is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += momentum * var * (m / max(m - 1, 1))
        else:
            if running_mean is None or running_var is None:
                raise ValueError("batch_norm in eval mode needs running statistics")
            mean, var = running_mean, running_var
        mean = mean.astype(x.dtype)
        inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        scale = (weight * inv_std).astype(x.dtype)
        # (x - mean) * scale + bias. With fixed statistics, as x * scale + shift: one pass
        # fewer (PyTorch's inference form); with batch statistics centred first, which keeps
        # precision when a channel's mean is large next to its spread.
        centre = xp.tile(mean, k) if training else None
        wide_scale = xp.tile(scale, k)
        wide_bias = xp.tile(bias if training else bias - mean * scale, k).astype(x.dtype)
        out = xp.empty_like(rows)
        for block in blocks:
            o = out[block]
            if centre is not None:
                xp.subtract(rows[block], centre, out=o)
                o *= wide_scale
            else:
                xp.multiply(rows[block], wide_scale, out=o)
            o += wide_bias
            if bounds is not None:
                xp.clip(o, *bounds, out=o)
        if any(self.needs_grad):
            self.rows, self.mean, self.inv_std, self.scale = rows, mean, inv_std, scale
            self.out = out if bounds is not None else None
        self.shape, self.count, self.k = x.shape, m, k
        self.training, self.bounds = training, bounds
        return _from_channel_rows(out.reshape(m, -1), x.shape)

    def _masked(self, g: Array, block: slice, out: Array) -> Array:
        """The output gradient of ``block`` where the activation passed it, 0 where it clipped."""
        return xp.multiply(g[block], _inside(self.out[block], self.bounds), out=out)

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        k = self.k
        g = _channel_rows(grad).reshape(self.rows.shape)  # wide, as the saved input
        blocks = _row_blocks(*g.shape)
        dx = xp.empty_like(g) if self.needs_grad[0] else None
        spare = xp.empty((blocks[0].stop - blocks[0].start, g.shape[1]), dtype=g.dtype)
        g_sum, gx_sum = xp.zeros(g.shape[1]), xp.zeros(g.shape[1])
        for block in blocks:  # sweep 1: Σ g and Σ g x (the masked g kept in dx for sweep 2)
            gm = g[block]
            if self.bounds is not None:
                gm = self._masked(g, block, dx[block] if dx is not None else spare[: len(gm)])
            g_sum += gm.sum(axis=0)
            gx_sum += xp.einsum("ij,ij->j", gm, self.rows[block])
        dbias = g_sum.reshape(k, -1).sum(axis=0).astype(g.dtype)
        dweight = self.inv_std * (
            gx_sum.reshape(k, -1).sum(axis=0).astype(g.dtype) - self.mean * dbias
        )
        if dx is not None:  # sweep 2: dx = scale * g + per_x * x + constant
            per_x = -self.scale * self.inv_std * dweight / self.count
            constant = -self.scale * dbias / self.count - self.mean * per_x
            wide_scale, per_x, constant = (xp.tile(v, k) for v in (self.scale, per_x, constant))
            for block in blocks:
                d = dx[block]
                if self.bounds is not None:
                    d *= wide_scale
                else:
                    xp.multiply(g[block], wide_scale, out=d)
                if self.training:  # the batch statistics depend on x too
                    d += xp.multiply(self.rows[block], per_x, out=spare[: len(d)])
                    d += constant
            dx = _from_channel_rows(dx.reshape(self.count, -1), self.shape)
        return dx, dweight, dbias


def batch_norm(
    x: Tensor,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Tensor,
    bias: Tensor,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    activation: str | None = None,
) -> Tensor:
    """Normalise each channel of ``x`` (``(N, C)`` or ``(N, C, H, W)``); same shape out.

    ``running_mean``/``running_var`` are ``(C,)`` arrays, updated in place while training.
    ``activation`` (``"relu"`` or ``"relu6"``, see ``ACTIVATIONS``) is applied to the result in
    the same op: ``relu(batch_norm(x))``, without its own passes over memory.
    """
    return BatchNorm.apply(
        x,
        weight,
        bias,
        running_mean=running_mean,
        running_var=running_var,
        training=training,
        momentum=momentum,
        eps=eps,
        bounds=activation_bounds(activation),
    )


# ---------------------------------------------------------------------- activations
def relu(x: Tensor) -> Tensor:
    return x.relu()


class ReLU6(_Activated):
    """``min(max(x, 0), 6)``, MobileNet's activation, fused: one pass forward, and the
    backward's mask read off the output (0 < out < 6), so nothing else is kept. The gradient is
    0 at exactly 0 and 6, as ``torch.nn.functional.relu6`` gives it."""

    def forward(self, x: Array) -> Array:
        self.bounds = ACTIVATIONS["relu6"]
        self.out = xp.clip(x, *self.bounds)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (self._passed(grad),)


def relu6(x: Tensor) -> Tensor:
    """``min(max(x, 0), 6)`` elementwise (see ``ReLU6``); same shape out."""
    return ReLU6.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return x.leaky_relu(negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


class LogSoftmax(Function):
    """``x - logsumexp(x)`` along ``axis``, shifted by the max so it never overflows."""

    def forward(self, x: Array, axis: int) -> Array:
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=dim)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return log_softmax(x, dim).exp()


# ---------------------------------------------------------------------- layers as functions
def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x (..., in)``, ``weight (out, in)``, ``bias (out,)`` -> ``(..., out)``."""
    out = x @ weight.T
    return out if bias is None else out + bias


def dropout(x: Tensor, p: float = 0.5, training: bool = True, rng: Any = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    rng = rng if rng is not None else xp.random.default_rng()
    keep = (rng.random(x.shape) >= p).astype(x.dtype) / (1.0 - p)
    return x * Tensor(keep, dtype=None)


# ---------------------------------------------------------------------- losses
def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def cross_entropy(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy with integer class targets, as ``torch.nn.functional``.

    ``logits (N, K)``, ``target (N,)`` ints, ``weight (K,)`` per-class weights. With weights,
    ``mean`` divides by the total weight of the targets (PyTorch's convention).
    """
    t = xp.asarray(target.data if isinstance(target, Tensor) else target).astype(xp.int64)
    n, k = logits.shape
    logp = log_softmax(logits, dim=1)
    w = xp.ones(k, dtype=logits.dtype) if weight is None else xp.asarray(_raw(weight))
    w = w.astype(logits.dtype)
    wt = w[t]  # weight of each sample's target class, (N,)
    nll = -logp[xp.arange(n), t] * wt
    if label_smoothing:
        smooth = -(logp * w).sum(axis=1) * (1.0 / k)
        loss = nll * (1.0 - label_smoothing) + smooth * label_smoothing
    else:
        loss = nll
    if reduction == "mean":
        return loss.sum() * (1.0 / float(wt.sum()))
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(
    logits: Tensor,
    target: Any,
    weight: Any = None,
    pos_weight: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression (any shape; target same shape).

    ``loss = (1 - y) x + (1 + (pw - 1) y) * softplus(-x)``, with
    ``softplus(-x) = log(1 + e^-|x|) + max(-x, 0)`` so no exponent ever exceeds 0.
    """
    y = _lift(target, logits)
    softplus_neg = (1.0 + (-logits.abs()).exp()).log() + (-logits).relu()
    if pos_weight is None:
        loss = (1.0 - y) * logits + softplus_neg
    else:
        pw = _lift(pos_weight, logits)
        loss = (1.0 - y) * logits + (1.0 + (pw - 1.0) * y) * softplus_neg
    if weight is not None:
        loss = loss * _lift(weight, logits)
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    diff = input - _lift(target, input)
    return _reduce(diff * diff, reduction)
