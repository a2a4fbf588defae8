"""``BatchNormOp``: BatchNorm over channels-last rows, in blocked passes (see the class)."""

from __future__ import annotations

from micrograd.backend import xp
from micrograd.kernels.common import _inside
from micrograd.tensor import Array, Function


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


class BatchNormOp(Function):
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
