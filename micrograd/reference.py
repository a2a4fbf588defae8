"""The network operations, written plainly: start here to learn what they compute.

Each function below is built from the autograd primitives of ``micrograd.tensor`` (slicing,
reshape, matmul, sums, powers), so its backward pass comes for free and is right by
construction. ``micrograd.functional`` computes exactly the same with the hand-tuned kernels of
``micrograd.kernels``, which are faster and leaner but hard to read; the tests check every
kernel against these, forward and backward.

Shapes follow PyTorch: images ``(N, C, H, W)``, convolution weights ``(O, C/groups, kh, kw)``.
"""

from __future__ import annotations

from micrograd.backend import xp
from micrograd.tensor import Array, Tensor, concatenate


def windows(x: Tensor, kh: int, kw: int, stride: int) -> Tensor:
    """Every ``kh x kw`` window of ``x``, ``stride`` apart: ``(N, C, H, W)`` ->
    ``(N, C, kh*kw, Ho, Wo)``. Entry ``[:, :, i*kw + j]`` is the pixel at offset ``(i, j)`` in
    each window: one strided slice of the input per offset."""
    n, c, h, w = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    views = [
        x[:, :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(kh)
        for j in range(kw)
    ]
    return concatenate([v.reshape(n, c, 1, ho, wo) for v in views], axis=2)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch): ``(N, C, H, W)`` with ``weight
    (O, C/groups, kh, kw)`` -> ``(N, O, Ho, Wo)``.

    Each output pixel is a dot product of one window of the input (all its channels and kernel
    offsets, ``C/groups * kh * kw`` numbers) with one filter. Laid out as matrices, that is one
    matrix product per group: filters ``(O/groups, C/groups*kh*kw)`` times windows
    ``(C/groups*kh*kw, Ho*Wo)``.
    """
    n = x.shape[0]
    o, per_group, kh, kw = weight.shape
    if padding:
        x = x.pad(((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = windows(x, kh, kw, stride)  # (N, C, kh*kw, Ho, Wo)
    ho, wo = cols.shape[3:]
    # channels are grouped in order, so each group's windows are one block of rows
    cols = cols.reshape(n, groups, per_group * kh * kw, ho * wo)
    filters = weight.reshape(groups, o // groups, per_group * kh * kw)
    out = (filters @ cols).reshape(n, o, ho, wo)  # (N, groups, O/groups, Ho*Wo) first
    return out if bias is None else out + bias.reshape(1, o, 1, 1)


def max_pool2d(x: Tensor, kernel_size: int, stride: int | None = None, padding: int = 0) -> Tensor:
    """The largest value of each window: ``(N, C, H, W)`` -> ``(N, C, Ho, Wo)``; padding is
    ``-inf``, so it never wins. The gradient goes to the (first) largest value."""
    if padding:
        pad = ((0, 0), (0, 0), (padding, padding), (padding, padding))
        x = x.pad(pad, value=-float("inf"))
    return windows(x, kernel_size, kernel_size, stride or kernel_size).max(axis=2)


def batch_norm(
    x: Tensor,
    running_mean: Array | None,
    running_var: Array | None,
    weight: Tensor,
    bias: Tensor,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel, then scale and shift it: ``(N, C)`` or ``(N, C, H, W)``, same
    shape out.

    Training uses the batch's own mean and (biased) variance per channel and moves the running
    statistics ``momentum`` of the way towards them (the unbiased variance, as PyTorch does);
    evaluation uses the running statistics.
    """
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    if training:
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        if running_mean is not None and running_var is not None:
            count = x.data.size // x.shape[1]
            running_mean *= 1 - momentum
            running_mean += momentum * xp.ravel(mean.data)
            running_var *= 1 - momentum
            running_var += momentum * xp.ravel(var.data) * count / max(count - 1, 1)
    else:
        mean = Tensor(xp.reshape(running_mean, shape), dtype=None)
        var = Tensor(xp.reshape(running_var, shape), dtype=None)
    normalised = (x - mean) / (var + eps) ** 0.5
    return normalised * weight.reshape(shape) + bias.reshape(shape)
