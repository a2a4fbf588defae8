"""``Conv2dOp``: the dense convolution as a sum of shifted matrix products (see the class).

``micrograd.reference.conv2d`` computes the same in a dozen lines; this kernel exists because
that version's im2col matrix is ``kh*kw`` times the input, and training spends most of its time
here.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from micrograd.backend import xp
from micrograd.kernels.common import Activated, _matmul, _out_size, _scratch
from micrograd.tensor import Array

#: Rows of the phase images one weight-gradient pass takes for all taps at a time (under 1 MB
#: of input and gradient at 32 channels), so the reads of a row for every tap come from the
#: CPU's cache: 25% faster on one thread than one whole-array product per tap.
DW_ROWS = 4096

Tap = tuple[int, int, int]  # kernel row i, kernel column j, row offset in the phase image


class ConvGeometry(NamedTuple):
    """The sizes a convolution's forward and backward share, named as in ``Conv2dOp``.

    Input ``(n, c, height, width)``, weight ``(o, c, kh, kw)``, output ``ho x wo``; each phase
    image is laid out on an ``hs x ws`` grid per image, after ``lead`` zero rows.
    """

    n: int
    c: int
    height: int
    width: int
    o: int
    kh: int
    kw: int
    stride: int
    padding: int
    ho: int
    wo: int
    hs: int
    ws: int
    lead: int


class Conv2dOp(Activated):
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
        self.geometry = ConvGeometry(n, c, h, wd, o, kh, kw, s, p, ho, wo, hs, ws, lead)
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
        kh, kw, s, ws = self.geometry.kh, self.geometry.kw, self.geometry.stride, self.geometry.ws
        taps: dict[tuple[int, int], list[Tap]] = {}
        for i in range(kh):
            for j in range(kw):
                taps.setdefault((i % s, j % s), []).append((i, j, (i // s) * ws + j // s))
        return taps

    def _phase_slices(self, a: int, b: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Phase ``(a, b)``: where in each image's ``Hs x Ws`` block the input pixels lie (the
        rest is zeros), and which pixels of the ``(N, H, W, C)`` input those are."""
        g = self.geometry
        h, wd, s, p = g.height, g.width, g.stride, g.padding
        if g.lead or (s, p) == (1, 0):  # stride 1: the whole input, at the top left
            return (slice(0, h), slice(0, wd)), (slice(None), slice(None))

        def axis(a: int, size: int, grid: int) -> tuple[slice, slice]:
            lo = max(0, -((a - p) // s))  # first grid index whose pixel s*lo + a - p >= 0
            hi = max(lo, min(grid, (size - 1 + p - a) // s + 1))
            first = s * lo + a - p
            return slice(lo, hi), slice(first, first + s * (hi - lo), s)

        (grid_rows, rows), (grid_cols, cols) = axis(a, h, g.hs), axis(b, wd, g.ws)
        return (grid_rows, grid_cols), (rows, cols)

    def _phase_images(
        self, x: Array, taps: dict[tuple[int, int], list[Tap]]
    ) -> dict[tuple[int, int], Array]:
        """``x (N, H, W, C)`` -> for each phase of ``taps``, the rows ``X (lead + N*Hs*Ws, C)``
        of the docstring (a scratch buffer; ``x`` itself for a stride-1 conv without padding)."""
        g = self.geometry
        n, c, hs, ws, lead = g.n, g.c, g.hs, g.ws, g.lead
        if (g.stride, g.padding) == (1, 0):
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
        g = self.geometry
        first_image = next(iter(images.values()))
        span = len(first_image) - max(off for t in taps.values() for *_, off in t)
        out = _scratch.take((g.n * g.hs * g.ws, by_offset.shape[3]), first_image.dtype)
        first = bias is None
        if bias is not None:
            out[:span] = bias
        for ab, image in images.items():
            for i, j, off in taps[ab]:
                _matmul(image[off : off + span], by_offset[i, j], out[:span], not first)
                first = False
        return out

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        geo = self.geometry
        n, c, h, wd, o, s = geo.n, geo.c, geo.height, geo.width, geo.o, geo.stride
        ho, wo, hs, ws, lead = geo.ho, geo.wo, geo.hs, geo.ws, geo.lead
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
        o, c, kh, kw = self.geometry.o, self.geometry.c, self.geometry.kh, self.geometry.kw
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
        geo = self.geometry
        # the phase images are scratch buffers, except x itself for stride 1 without padding
        if self.phases is not None and (geo.stride, geo.padding) != (1, 0):
            for image in self.phases.values():
                _scratch.give(image)
        self.phases = None
