"""micrograd.functional against central differences and torch.nn.functional.

Every layer function is checked for output shape and values and for the gradients of all its
inputs (under a non-uniform loss, see ``tests.gradcheck``), on small shapes with odd sizes,
non-square images, strides and padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import micrograd.functional as F
import micrograd.kernels.batchnorm as kernel_batchnorm
import micrograd.kernels.common as kernel_common
import micrograd.kernels.conv as kernel_conv
from micrograd import Tensor
from micrograd.kernels.common import _scratch
from micrograd.kernels.conv import Conv2dOp
from tests.conftest import optional_import
from tests.gradcheck import compare_with_torch, gradcheck


@pytest.fixture(scope="module")
def torch() -> Any:
    return optional_import("torch")


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _check(
    ours: Callable[..., Tensor],
    theirs: Callable[..., Any],
    inputs: list[np.ndarray],
    torch: Any,
    check_gradients: bool = True,
) -> None:
    """Compare with PyTorch and, when asked, with central differences too."""
    compare_with_torch(ours, theirs, inputs, torch)
    if check_gradients:
        gradcheck(ours, inputs)


# ---------------------------------------------------------------------- convolution
CONV_CASES = [
    # x shape, weight shape, stride, padding, bias
    pytest.param((2, 3, 5, 6), (4, 3, 3, 3), 1, 0, True, id="3x3"),
    pytest.param((2, 3, 7, 5), (2, 3, 3, 3), 2, 1, False, id="3x3-stride2-pad1"),
    pytest.param((1, 2, 6, 6), (3, 2, 1, 1), 1, 0, True, id="1x1"),
    pytest.param((2, 2, 6, 7), (3, 2, 5, 5), 1, 2, True, id="5x5-pad2"),
    pytest.param((3, 4, 5, 7), (5, 4, 3, 3), 1, 1, False, id="3x3-same"),
    pytest.param((2, 3, 1, 2), (2, 3, 3, 3), 1, 1, True, id="3x3-same-tiny"),
    pytest.param((1, 3, 8, 7), (2, 3, 2, 2), 2, 0, False, id="2x2-stride2"),
    pytest.param((1, 2, 5, 6), (2, 2, 3, 2), 1, 1, True, id="3x2-kernel"),
    pytest.param((2, 1, 4, 9), (2, 1, 3, 3), 3, 1, True, id="stride3"),
    pytest.param((2, 3, 7, 6), (4, 3, 1, 1), 2, 0, True, id="1x1-stride2"),
    pytest.param((1, 2, 9, 8), (3, 2, 5, 5), 2, 2, False, id="5x5-stride2"),
    pytest.param((2, 2, 5, 6), (2, 2, 2, 3), 2, 2, True, id="2x3-stride2-pad2"),
    pytest.param((1, 2, 4, 5), (2, 2, 3, 3), 1, 3, False, id="pad-wider-than-kernel"),
]


def _conv_inputs(
    xs: tuple[int, ...], ws: tuple[int, ...], bias: bool, scale: float = 1.0
) -> list[np.ndarray]:
    """Input ``xs`` (times ``scale``), weight ``ws`` and, with ``bias``, a bias for ``ws[0]``."""
    inputs = [randn(*xs, seed=1) * scale, randn(*ws, seed=2)]
    if bias:
        inputs.append(randn(ws[0], seed=3))
    return inputs


def _conv_pair(
    torch: Any, activation: str | None = None, **conv: int
) -> tuple[Callable[..., Tensor], Callable[..., Any]]:
    """``F.conv2d(..., **conv, activation=)`` and PyTorch's conv2d (then the activation)."""

    def ours(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        return F.conv2d(x, w, b, **conv, activation=activation)

    def theirs(x: Any, w: Any, b: Any = None) -> Any:
        out = torch.nn.functional.conv2d(x, w, b, **conv)
        return out if activation is None else getattr(torch.nn.functional, activation)(out)

    return ours, theirs


@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "bias"), CONV_CASES)
def test_conv2d(
    xs: tuple[int, ...], ws: tuple[int, ...], stride: int, padding: int, bias: bool, torch: Any
) -> None:
    ours, theirs = _conv_pair(torch, stride=stride, padding=padding)
    _check(ours, theirs, _conv_inputs(xs, ws, bias), torch)


GROUPED_CASES = [
    # x shape, weight shape, stride, padding, groups, bias
    pytest.param((2, 4, 7, 6), (4, 1, 3, 3), 1, 1, 4, True, id="depthwise-3x3"),
    pytest.param((2, 3, 9, 7), (3, 1, 3, 3), 2, 1, 3, False, id="depthwise-3x3-stride2"),
    pytest.param((1, 5, 9, 8), (5, 1, 5, 5), 1, 2, 5, True, id="depthwise-5x5"),
    pytest.param((2, 3, 11, 9), (3, 1, 5, 5), 2, 2, 3, True, id="depthwise-5x5-stride2-odd"),
    pytest.param((1, 2, 6, 6), (2, 1, 3, 3), 1, 0, 2, False, id="depthwise-no-padding"),
    pytest.param((2, 4, 7, 5), (6, 2, 3, 3), 1, 1, 2, True, id="two-groups"),
    pytest.param((1, 3, 7, 7), (6, 1, 3, 3), 2, 1, 3, True, id="channel-multiplier-2"),
]


@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "groups", "bias"), GROUPED_CASES)
def test_grouped_and_depthwise_conv2d(
    xs: tuple[int, ...],
    ws: tuple[int, ...],
    stride: int,
    padding: int,
    groups: int,
    bias: bool,
    torch: Any,
) -> None:
    ours, theirs = _conv_pair(torch, stride=stride, padding=padding, groups=groups)
    _check(ours, theirs, _conv_inputs(xs, ws, bias), torch)


def test_depthwise_conv2d_after_a_conv_and_twice_with_retain_graph(torch: Any) -> None:
    # a depthwise conv reads the channels-last view a 1x1 conv returns; its saved input must
    # survive a second backward with retain_graph
    x, w1, w2 = randn(2, 3, 8, 8, seed=4), randn(6, 3, 1, 1, seed=5), randn(6, 1, 5, 5, seed=6)

    def ours(x: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, w1), w2, padding=2, stride=2, groups=6)

    def theirs(x: Any, w1: Any, w2: Any) -> Any:
        f = torch.nn.functional
        return f.conv2d(f.conv2d(x, w1), w2, padding=2, stride=2, groups=6)

    _check(ours, theirs, [x, w1, w2], torch)
    tensors = [Tensor(a, requires_grad=True, dtype=None) for a in (x, w1, w2)]
    out = ours(*tensors).sum()
    out.backward(retain_graph=True)
    first = [t.grad.copy() for t in tensors]
    for t in tensors:
        t.grad = None
    out.backward()
    for a, t in zip(first, tensors, strict=True):
        np.testing.assert_allclose(t.grad, a, rtol=1e-12)


FUSED_CASES = [
    # x shape, weight shape, stride, padding, groups, bias
    pytest.param((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, True, id="3x3-same"),
    pytest.param((1, 2, 6, 6), (3, 2, 1, 1), 1, 0, 1, True, id="1x1"),
    pytest.param((2, 3, 7, 5), (2, 3, 3, 3), 2, 1, 1, False, id="3x3-stride2"),
    pytest.param((2, 4, 7, 6), (4, 1, 3, 3), 1, 1, 4, True, id="depthwise"),
    pytest.param((2, 3, 9, 7), (3, 1, 5, 5), 2, 2, 3, True, id="depthwise-stride2"),
    pytest.param((2, 4, 7, 5), (6, 2, 3, 3), 1, 1, 2, True, id="two-groups"),
]


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize(("xs", "ws", "stride", "padding", "groups", "bias"), FUSED_CASES)
def test_conv2d_with_fused_activation(
    xs: tuple[int, ...],
    ws: tuple[int, ...],
    stride: int,
    padding: int,
    groups: int,
    bias: bool,
    activation: str,
    torch: Any,
) -> None:
    """``conv2d(..., activation=)`` is ``relu(conv2d(...))``: values and every gradient."""
    inputs = _conv_inputs(xs, ws, bias, scale=3)  # outputs below 0, in (0, 6), above 6
    ours, theirs = _conv_pair(torch, activation, stride=stride, padding=padding, groups=groups)
    out = ours(*(Tensor(a, dtype=None) for a in inputs)).data
    assert (out == 0).any() and (out > 0).any()
    if activation == "relu6":
        assert (out == 6).any()
    _check(ours, theirs, inputs, torch)


def test_conv2d_refuses_unknown_activation() -> None:
    with pytest.raises(ValueError, match="activation"):
        F.conv2d(Tensor(np.zeros((1, 2, 3, 3))), Tensor(np.zeros((2, 2, 1, 1))), activation="gelu")


def test_conv2d_bad_groups_raise() -> None:
    x = Tensor(np.zeros((1, 4, 5, 5)))
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(x, Tensor(np.zeros((4, 2, 3, 3))), groups=3)
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(x, Tensor(np.zeros((4, 1, 3, 3))), groups=2)


def test_relu6(torch: Any) -> None:
    x = randn(3, 4, seed=7) * 5  # values below 0, inside (0, 6) and above 6
    assert (x > 6).any() and (x < 0).any()
    _check(F.relu6, torch.nn.functional.relu6, [x], torch)


def test_conv2d_channel_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="channels"):
        F.conv2d(Tensor(np.zeros((1, 3, 4, 4))), Tensor(np.zeros((2, 2, 3, 3))))


def test_conv2d_of_a_conv_output(torch: Any) -> None:
    # conv2d returns an NCHW view of channel-major memory; a second conv must read it correctly
    def ours(x: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, w1, padding=1).relu(), w2, stride=2)

    def theirs(x: Any, w1: Any, w2: Any) -> Any:
        conv = torch.nn.functional.conv2d
        return conv(conv(x, w1, padding=1).relu(), w2, stride=2)

    _check(ours, theirs, [randn(2, 2, 6, 5), randn(3, 2, 3, 3, seed=1), randn(2, 3, 2, 2)], torch)


@pytest.mark.parametrize("blas", [True, False], ids=["gemm-in-place", "numpy-matmul"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_same_conv2d_in_float32(k: int, blas: bool, torch: Any, monkeypatch: Any) -> None:
    """The shifted-product convolution in float32 (BLAS sgemm accumulating in place, or the
    numpy fallback), on a channels-last input as a network hands it over, against PyTorch;
    the weight gradient summed over blocks of 50 rows (a last, shorter block included)."""
    monkeypatch.setattr(kernel_conv, "DW_ROWS", 50)
    if not blas:
        monkeypatch.setattr(kernel_common, "_gemm", lambda dtype: None)
    rng = np.random.default_rng(k)
    x = rng.standard_normal((3, 5, 9, 7), dtype=np.float32)
    w = rng.standard_normal((6, 5, k, k), dtype=np.float32) * 0.3
    b = rng.standard_normal(6, dtype=np.float32)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    ours = [Tensor(a, requires_grad=True) for a in (channels_last, w, b)]
    out = F.conv2d(*ours, padding=k // 2)
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ref = torch.nn.functional.conv2d(*theirs, padding=k // 2)
    assert out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, ref.detach().numpy(), atol=2e-5, rtol=1e-4)
    weights = rng.standard_normal(out.shape, dtype=np.float32)
    (out * Tensor(weights)).sum().backward()
    (ref * torch.from_numpy(weights)).sum().backward()
    for mine, their in zip(ours, theirs, strict=True):
        assert mine.grad.dtype == np.float32
        np.testing.assert_allclose(mine.grad, their.grad.numpy(), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------- pooling
POOL_CASES = [
    # x shape, kernel, stride, padding
    pytest.param((2, 3, 4, 6), 2, None, 0, id="k2-fast-path"),
    pytest.param((1, 2, 6, 9), 3, 3, 0, id="k3-fast-path"),
    pytest.param((1, 2, 5, 5), 2, 2, 0, id="k2-odd-size"),
    pytest.param((1, 2, 7, 7), 3, 2, 0, id="overlapping"),
    pytest.param((1, 2, 6, 5), 3, 2, 1, id="overlapping-padded"),
    pytest.param((2, 1, 5, 6), (2, 3), (1, 2), (1, 1), id="rectangular"),
]


@pytest.mark.parametrize(("xs", "kernel", "stride", "padding"), POOL_CASES)
def test_max_pool2d(
    xs: tuple[int, ...], kernel: Any, stride: Any, padding: Any, torch: Any
) -> None:
    def ours(x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel, stride, padding)

    def theirs(x: Any) -> Any:
        return torch.nn.functional.max_pool2d(x, kernel, stride, padding)

    _check(ours, theirs, [randn(*xs)], torch)


@pytest.mark.parametrize(("xs", "kernel", "stride", "padding"), POOL_CASES)
def test_avg_pool2d(
    xs: tuple[int, ...], kernel: Any, stride: Any, padding: Any, torch: Any
) -> None:
    def ours(x: Tensor) -> Tensor:
        return F.avg_pool2d(x, kernel, stride, padding)

    def theirs(x: Any) -> Any:
        return torch.nn.functional.avg_pool2d(x, kernel, stride, padding)

    _check(ours, theirs, [randn(*xs)], torch)


@pytest.mark.parametrize(
    ("kernel", "stride"), [pytest.param(2, 2, id="fast-path"), pytest.param(3, 1, id="windows")]
)
def test_max_pool2d_ties_match_torch(kernel: int, stride: int, torch: Any) -> None:
    # after a ReLU whole windows are 0: the gradient goes to one element per window, as in torch
    data = np.maximum(randn(1, 2, 6, 6), 0.5) - 0.5
    x = Tensor(data, requires_grad=True, dtype=None)
    t = torch.tensor(data, requires_grad=True)
    weights = randn(*F.max_pool2d(x, kernel, stride).shape, seed=5)
    (F.max_pool2d(x, kernel, stride) * Tensor(weights, dtype=None)).sum().backward()
    (torch.nn.functional.max_pool2d(t, kernel, stride) * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("size", [1, 2, (3, 2)])
def test_adaptive_avg_pool2d(size: Any, torch: Any) -> None:
    def ours(x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, size)

    def theirs(x: Any) -> Any:
        return torch.nn.functional.adaptive_avg_pool2d(x, size)

    _check(ours, theirs, [randn(2, 3, 6, 4)], torch)


def test_adaptive_avg_pool2d_needs_divisible_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        F.adaptive_avg_pool2d(Tensor(np.zeros((1, 1, 5, 5))), 2)


def test_global_avg_pool2d(torch: Any) -> None:
    def theirs(x: Any) -> Any:
        return torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)

    _check(F.global_avg_pool2d, theirs, [randn(2, 3, 5, 4)], torch)


def test_pool_keeps_float32() -> None:
    x = Tensor(randn(1, 2, 6, 6), requires_grad=True)
    out = F.max_pool2d(x, 3, 2, 1) + F.avg_pool2d(x, 3, 2, 1)
    out.sum().backward()
    assert out.dtype == np.float32 and x.grad is not None and x.grad.dtype == np.float32


# ---------------------------------------------------------------------- batch norm
@pytest.mark.parametrize(
    "shape", [(4, 3, 3, 2), (6, 3), (3, 2, 3, 3)], ids=["2d", "1d", "2d-odd-rows"]
)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("block", [None, 7], ids=["one-block", "blocks-of-7"])
def test_batch_norm(
    shape: tuple[int, ...],
    training: bool,
    activation: str | None,
    block: int | None,
    torch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Against torch's batch_norm (then relu / relu6) and central differences, in one block or
    in blocks of 7 floats (2 rows of 3 channels, and a shorter last block)."""
    if block:
        monkeypatch.setattr(kernel_batchnorm, "ELEMENTWISE_BLOCK", block)
    c = shape[1]
    mean0, var0 = randn(c, seed=7) * 0.3, np.abs(randn(c, seed=8)) + 0.5
    after = {None: lambda t: t, "relu": torch.relu, "relu6": torch.nn.functional.relu6}

    def ours(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        rm, rv = mean0.copy(), var0.copy()  # fresh buffers: gradcheck calls this many times
        return F.batch_norm(
            x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-3, activation=activation
        )

    def theirs(x: Any, w: Any, b: Any) -> Any:
        rm, rv = torch.tensor(mean0), torch.tensor(var0)
        return after[activation](
            torch.nn.functional.batch_norm(x, rm, rv, w, b, training, 0.2, 1e-3)
        )

    # weights up to about 10, so that some outputs pass 6 and ReLU6 clips both ends
    inputs = [randn(*shape) * 2 + 1, randn(c, seed=2) * 4 + 2, randn(c, seed=3) + 1]
    _check(ours, theirs, inputs, torch)


def test_batch_norm_refuses_unknown_activation() -> None:
    w, b = Tensor(np.ones(2)), Tensor(np.zeros(2))
    with pytest.raises(ValueError, match="activation"):
        F.batch_norm(Tensor(np.zeros((3, 2))), None, None, w, b, True, activation="gelu")


@pytest.mark.parametrize(
    ("shape", "module"), [((8, 3, 5, 4), "BatchNorm2d"), ((10, 4), "BatchNorm1d")]
)
@pytest.mark.parametrize("block", [None, 5], ids=["one-block", "blocks-of-5"])
def test_batch_norm_running_stats_match_torch(
    shape: tuple[int, ...], module: str, block: int | None, torch: Any, monkeypatch: Any
) -> None:
    """Batch statistics merged over blocks (Chan et al.) are as exact as one pass."""
    if block:
        monkeypatch.setattr(kernel_batchnorm, "ELEMENTWISE_BLOCK", block)
    c = shape[1]
    reference = getattr(torch.nn, module)(c, momentum=0.1, eps=1e-5).double()
    running_mean, running_var = np.zeros(c), np.ones(c)
    w, b = Tensor(np.ones(c), dtype=None), Tensor(np.zeros(c), dtype=None)
    for step in range(3):
        data = randn(*shape, seed=step) * (step + 1) + step
        out = F.batch_norm(Tensor(data, dtype=None), running_mean, running_var, w, b, True)
        ref = reference(torch.tensor(data))
        np.testing.assert_allclose(out.data, ref.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(running_mean, reference.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(running_var, reference.running_var.numpy(), atol=1e-12)
    reference.eval()
    data = randn(*shape, seed=9)
    out = F.batch_norm(Tensor(data, dtype=None), running_mean, running_var, w, b, False)
    np.testing.assert_allclose(out.data, reference(torch.tensor(data)).detach().numpy(), atol=1e-10)


def test_batch_norm_eval_needs_running_stats() -> None:
    w, b = Tensor(np.ones(2)), Tensor(np.zeros(2))
    with pytest.raises(ValueError, match="running"):
        F.batch_norm(Tensor(np.zeros((3, 2))), None, None, w, b, training=False)


# ---------------------------------------------------------------------- activations and linear
@pytest.mark.parametrize(
    ("ours", "name"),
    [(F.relu, "relu"), (F.sigmoid, "sigmoid"), (F.tanh, "tanh"), (F.leaky_relu, "leaky_relu")],
)
def test_activations(ours: Callable[[Tensor], Tensor], name: str, torch: Any) -> None:
    data = randn(3, 4)
    data[np.abs(data) < 0.1] = 0.5  # keep eps away from the kink at 0
    _check(ours, getattr(torch.nn.functional, name), [data], torch)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_log_softmax_and_softmax(dim: int, torch: Any) -> None:
    x = randn(3, 5) * 3
    _check(
        lambda t: F.log_softmax(t, dim),
        lambda t: torch.nn.functional.log_softmax(t, dim),
        [x],
        torch,
    )
    _check(lambda t: F.softmax(t, dim), lambda t: torch.nn.functional.softmax(t, dim), [x], torch)


def test_softmax_is_stable_at_extreme_logits(torch: Any) -> None:
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        compare_with_torch(
            F.log_softmax, lambda t: torch.nn.functional.log_softmax(t, -1), [logits], torch
        )
        compare_with_torch(F.softmax, lambda t: torch.nn.functional.softmax(t, -1), [logits], torch)
        x = Tensor(logits, requires_grad=True)  # float32 too
        F.log_softmax(x).sum().backward()
    assert np.isfinite(x.grad).all()


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias: bool, torch: Any) -> None:
    inputs = [randn(2, 3, 4), randn(5, 4, seed=1)] + ([randn(5, seed=2)] if bias else [])
    _check(F.linear, torch.nn.functional.linear, inputs, torch)


# ---------------------------------------------------------------------- losses
TARGETS = np.array([0, 3, 1, 3, 2])
CLASS_WEIGHTS = np.array([0.5, 2.0, 1.0, 3.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(reduction: str, weighted: bool, smoothing: float, torch: Any) -> None:
    weight = CLASS_WEIGHTS if weighted else None

    def ours(logits: Tensor) -> Tensor:
        return F.cross_entropy(logits, TARGETS, weight, smoothing, reduction)

    def theirs(logits: Any) -> Any:
        return torch.nn.functional.cross_entropy(
            logits,
            torch.tensor(TARGETS),
            weight=None if weight is None else torch.tensor(weight),
            label_smoothing=smoothing,
            reduction=reduction,
        )

    _check(ours, theirs, [randn(5, 4) * 2], torch)


def test_cross_entropy_is_stable_at_extreme_logits(torch: Any) -> None:
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [0.0, 1000.0]])
    target = np.array([1, 1, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        compare_with_torch(
            lambda t: F.cross_entropy(t, target, label_smoothing=0.1),
            lambda t: torch.nn.functional.cross_entropy(
                t, torch.tensor(target), label_smoothing=0.1
            ),
            [logits],
            torch,
        )


def test_cross_entropy_rejects_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(Tensor(np.zeros((2, 2))), [0, 1], reduction="avg")


BCE_TARGETS = np.array([[0.0, 1.0, 0.3, 1.0], [1.0, 0.0, 0.0, 0.7], [0.5, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [None, np.array([1.0, 3.0, 0.5, 2.0])], ids=["", "pw"])
@pytest.mark.parametrize("weight", [None, np.array([2.0, 1.0, 0.5, 1.0])], ids=["", "w"])
def test_binary_cross_entropy_with_logits(
    reduction: str, pos_weight: Any, weight: Any, torch: Any
) -> None:
    def ours(logits: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            logits, BCE_TARGETS, weight, pos_weight, reduction
        )

    def theirs(logits: Any) -> Any:
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits,
            torch.tensor(BCE_TARGETS),
            weight=None if weight is None else torch.tensor(weight),
            pos_weight=None if pos_weight is None else torch.tensor(pos_weight),
            reduction=reduction,
        )

    logits = randn(3, 4) * 2
    logits[np.abs(logits) < 0.1] = 0.3  # |x| has a kink at 0
    _check(ours, theirs, [logits], torch)


def test_binary_cross_entropy_is_stable_at_extreme_logits(torch: Any) -> None:
    logits = np.array([1000.0, -1000.0, 1000.0, -1000.0])
    target = np.array([0.0, 1.0, 1.0, 0.0])
    pos_weight = np.array([2.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        compare_with_torch(
            lambda t: F.binary_cross_entropy_with_logits(t, target, pos_weight=pos_weight),
            lambda t: torch.nn.functional.binary_cross_entropy_with_logits(
                t, torch.tensor(target), pos_weight=torch.tensor(pos_weight)
            ),
            [logits],
            torch,
        )
        x = Tensor(logits, requires_grad=True)  # float32 too
        loss = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        loss.sum().backward()
    np.testing.assert_allclose(loss.data, [1000.0, 1000.0, 0.0, 0.0])
    np.testing.assert_allclose(x.grad, [1.0, -1.0, 0.0, 0.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction: str, torch: Any) -> None:
    target = randn(3, 4, seed=4)
    _check(
        lambda x: F.mse_loss(x, target, reduction),
        lambda x: torch.nn.functional.mse_loss(x, torch.tensor(target), reduction=reduction),
        [randn(3, 4)],
        torch,
    )


# ---------------------------------------------------------------------- dropout
def test_dropout_scales_kept_units_and_is_seeded() -> None:
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    out = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(42))
    again = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(out.data, again.data)
    assert set(np.unique(out.data).tolist()) == {0.0, np.float32(1 / 0.7)}
    assert abs((out.data == 0).mean() - 0.3) < 0.02
    assert out.dtype == np.float32
    weights = np.random.default_rng(0).standard_normal(x.shape)
    (out * Tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad, weights * out.data, rtol=1e-6)  # mask/(1-p) * upstream


def test_dropout_matches_torch_in_expectation(torch: Any) -> None:
    x = np.ones((400, 250), dtype=np.float32)
    ours = F.dropout(Tensor(x), 0.4, training=True, rng=np.random.default_rng(1)).data
    theirs = torch.nn.functional.dropout(torch.tensor(x), 0.4, training=True).numpy()
    assert set(np.unique(ours).tolist()) == set(np.unique(theirs).tolist())
    assert abs(ours.mean() - theirs.mean()) < 0.02  # both unbiased: mean ~ 1


def test_dropout_identity_in_eval_and_at_zero() -> None:
    x = Tensor(np.arange(6.0))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x
    with pytest.raises(ValueError):
        F.dropout(x, 1.0, training=True)


def test_conv2d_backward_twice_with_retain_graph() -> None:
    """The padded input saved for dW survives a retained graph and is reused after."""
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True, dtype=None)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True, dtype=None)
    out = F.conv2d(x, w, padding=1).sum()
    out.backward(retain_graph=True)
    once_x, once_w = x.grad.copy(), w.grad.copy()
    out.backward()
    np.testing.assert_allclose(x.grad, 2 * once_x)
    np.testing.assert_allclose(w.grad, 2 * once_w)


@pytest.mark.parametrize(
    ("k", "stride", "padding"), [(1, 1, 0), (3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 1, 2)]
)
def test_conv2d_results_are_never_buffers_of_the_scratch_pool(
    k: int, stride: int, padding: int
) -> None:
    """What a conv returns (output, dx, dW) must not be a work buffer handed back to the pool,
    where the next op would overwrite it (a leaf's .grad is a copy: look at the op's own)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7), dtype=np.float32)
    w = rng.standard_normal((4, 3, k, k), dtype=np.float32)
    conv = Conv2dOp()
    conv.needs_grad = (True, True)
    out = conv.forward(x, w, stride=stride, padding=padding)
    dx, dw = conv.backward(np.ones_like(out))
    conv.release()
    pooled = [b for spares in _scratch.free.values() for b in spares]
    for result in (out, dx, dw):
        assert not any(np.shares_memory(result, b) for b in pooled)


def test_scratch_pool_is_bounded_and_reuses_buffers() -> None:
    from micrograd.kernels.common import _Scratch

    pool = _Scratch(keep=2, max_bytes=3 * 800)
    a = pool.take((10, 10), np.float64)  # 800 bytes
    pool.give(a)
    assert pool.take((10, 10), np.float64) is a  # handed back, then reused
    for shape in [(10, 10), (10, 10), (10, 10), (5, 20), (20, 5)]:
        pool.give(np.empty(shape))
    assert pool.bytes <= 3 * 800
    assert len(pool.free[(10, 10), np.dtype(np.float64).str]) <= 2
    assert sum(x.nbytes for spares in pool.free.values() for x in spares) == pool.bytes
