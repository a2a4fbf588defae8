"""``DepthwiseConv2dOp``: one filter per channel (``groups == channels``), as sums over the
kernel offsets' sliding windows (see the class)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from micrograd.backend import xp
from micrograd.kernels.common import Activated, _out_size, _padded, _scratch
from micrograd.tensor import Array

#: Floats of output gradient that a strided depthwise conv's ``dx`` scatter works on at a time:
#: small enough (256 KB) to stay in the CPU's cache across all k*k offsets, where whole-tensor
#: passes would stream the activations through memory k*k times (2.3x slower for a 5x5 kernel
#: on 56x56x144 maps).
DEPTHWISE_BLOCK = 65536


Window = tuple[int, slice, slice]


class DepthwiseGeometry(NamedTuple):
    """Input ``(n, c, height, width)``, a ``kh x kw`` kernel per channel, ``stride``,
    ``padding``, output ``ho x wo``."""

    n: int
    c: int
    height: int
    width: int
    kh: int
    kw: int
    stride: int
    padding: int
    ho: int
    wo: int


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


class DepthwiseConv2dOp(Activated):
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
        self.geometry = DepthwiseGeometry(*x.shape, kh, kw, s, p, ho, wo)
        return self._activate(out.transpose(0, 3, 1, 2), bounds)

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        geo = self.geometry
        h, wd, kh, kw = geo.height, geo.width, geo.kh, geo.kw
        s, p, ho, wo = geo.stride, geo.padding, geo.ho, geo.wo
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
        geo = self.geometry
        n, c, h, wd, kh, kw, s, p = (
            geo.n,
            geo.c,
            geo.height,
            geo.width,
            geo.kh,
            geo.kw,
            geo.stride,
            geo.padding,
        )
        ho, wo = geo.ho, geo.wo
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
