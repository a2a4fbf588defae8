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

from typing import Any

from micrograd.backend import xp
from micrograd.kernels.batchnorm import BatchNormOp
from micrograd.kernels.common import ReLU6Op, _pair, activation_bounds
from micrograd.kernels.conv import Conv2dOp
from micrograd.kernels.depthwise import DepthwiseConv2dOp
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
        return Conv2dOp.apply(*inputs, stride=stride, padding=padding, bounds=bounds)
    if groups < 1 or c % groups or o % groups or weight.shape[1] * groups != c:
        raise ValueError(
            f"conv2d: groups={groups} does not divide {c} input and {o} output channels "
            f"with weight {tuple(weight.shape)}"
        )
    if groups == c == o:
        return DepthwiseConv2dOp.apply(*inputs, stride=stride, padding=padding, bounds=bounds)
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
class WindowsOp(Function):
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
        windows = WindowsOp.apply(x, kernel=(kh, kw), stride=(sh, sw))
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
    return BatchNormOp.apply(
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


def relu6(x: Tensor) -> Tensor:
    """``min(max(x, 0), 6)`` elementwise (see ``kernels.common.ReLU6Op``); same shape out."""
    return ReLU6Op.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return x.leaky_relu(negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


class LogSoftmaxOp(Function):
    """``x - logsumexp(x)`` along ``axis``, shifted by the max so it never overflows."""

    def forward(self, x: Array, axis: int) -> Array:
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True),)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return LogSoftmaxOp.apply(x, axis=dim)


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
