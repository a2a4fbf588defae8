"""``micrograd.reference``: the plain versions are right (central differences, PyTorch), and
every fast kernel of ``micrograd.kernels`` computes what they compute, forward and backward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import micrograd.functional as F
from micrograd import reference
from micrograd.tensor import Tensor
from tests.conftest import optional_import
from tests.gradcheck import gradcheck, loss_weights

# (x shape, weight shape, stride, padding, groups): a dense conv, strided and padded ones, a
# 1x1, a grouped one and depthwise ones (groups == channels), as EfficientNet uses them
CONVS = {
    "3x3": ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1),
    "3x3-stride2": ((2, 3, 9, 8), (5, 3, 3, 3), 2, 1, 1),
    "5x5-stride2-nopad": ((1, 2, 11, 10), (3, 2, 5, 5), 2, 0, 1),
    "1x1": ((2, 6, 4, 5), (3, 6, 1, 1), 1, 0, 1),
    "grouped": ((2, 4, 6, 6), (6, 2, 3, 3), 1, 1, 2),
    "depthwise-3x3": ((2, 4, 7, 7), (4, 1, 3, 3), 1, 1, 4),
    "depthwise-5x5-stride2": ((1, 3, 9, 9), (3, 1, 5, 5), 2, 2, 3),
}


def arrays(*shapes: tuple[int, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def forward_and_grads(
    fn: Callable[..., Tensor], inputs: Sequence[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``fn`` on float64 tensors: its output and the gradients of a non-uniform loss."""
    tensors = [Tensor(a.copy(), requires_grad=True, dtype=None) for a in inputs]
    out = fn(*tensors)
    (out * Tensor(loss_weights(out.shape), dtype=None)).sum().backward()
    return out.numpy(), [np.asarray(t.grad) for t in tensors]


def assert_same(
    fast: Callable[..., Tensor], plain: Callable[..., Tensor], inputs: Sequence[np.ndarray]
) -> None:
    out, grads = forward_and_grads(fast, inputs)
    want, want_grads = forward_and_grads(plain, inputs)
    np.testing.assert_allclose(out, want, atol=1e-10, rtol=1e-10)
    for i, (g, w) in enumerate(zip(grads, want_grads, strict=True)):
        np.testing.assert_allclose(g, w, atol=1e-10, rtol=1e-10, err_msg=f"input {i}")


@pytest.mark.parametrize("case", CONVS, ids=list(CONVS))
def test_every_conv_kernel_computes_the_reference(case: str) -> None:
    xs, ws, stride, padding, groups = CONVS[case]
    inputs = arrays(xs, ws, (ws[0],))
    assert_same(
        lambda x, w, b: F.conv2d(x, w, b, stride, padding, groups),
        lambda x, w, b: reference.conv2d(x, w, b, stride, padding, groups),
        inputs,
    )


@pytest.mark.parametrize("case", ["3x3-stride2", "grouped", "depthwise-5x5-stride2"])
def test_reference_conv_against_central_differences(case: str) -> None:
    xs, ws, stride, padding, groups = CONVS[case]
    gradcheck(lambda x, w: reference.conv2d(x, w, None, stride, padding, groups), arrays(xs, ws))


@pytest.mark.parametrize("case", CONVS, ids=list(CONVS))
def test_reference_conv_against_pytorch(case: str) -> None:
    torch = optional_import("torch")
    xs, ws, stride, padding, groups = CONVS[case]
    x, w, b = arrays(xs, ws, (ws[0],))
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding, 1, groups
    )
    got = reference.conv2d(
        Tensor(x, dtype=None), Tensor(w, dtype=None), Tensor(b, dtype=None), stride, padding, groups
    )
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_kernel_computes_the_reference(kernel: int, stride: int, padding: int) -> None:
    (x,) = arrays((2, 3, 7, 8))
    assert_same(
        lambda t: F.max_pool2d(t, kernel, stride, padding),
        lambda t: reference.max_pool2d(t, kernel, stride, padding),
        [x],
    )


def test_reference_max_pool_against_pytorch() -> None:
    torch = optional_import("torch")
    (x,) = arrays((2, 3, 7, 8))
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy()
    np.testing.assert_array_equal(
        reference.max_pool2d(Tensor(x, dtype=None), 3, 2, 1).numpy(), want
    )


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 6)], ids=["1d", "2d"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_kernel_computes_the_reference(shape: tuple[int, ...], training: bool) -> None:
    c = shape[1]
    x, weight, bias = arrays(shape, (c,), (c,))
    stats: dict[str, list[np.ndarray]] = {"fast": [], "plain": []}

    def run(fn: Any, key: str) -> Callable[..., Tensor]:
        mean, var = np.linspace(-1, 1, c), np.linspace(0.5, 2, c)
        stats[key] = [mean, var]
        return lambda t, g, b: fn(t, mean, var, g, b, training, 0.1, 1e-5)

    assert_same(run(F.batch_norm, "fast"), run(reference.batch_norm, "plain"), [x, weight, bias])
    for fast, plain in zip(stats["fast"], stats["plain"], strict=True):  # running statistics
        np.testing.assert_allclose(fast, plain, atol=1e-12)


def test_reference_batch_norm_against_pytorch() -> None:
    torch = optional_import("torch")
    x, weight, bias = arrays((3, 4, 5, 6), (4,), (4,))
    mean, var = np.zeros(4), np.ones(4)
    got = reference.batch_norm(
        Tensor(x, dtype=None),
        mean,
        var,
        Tensor(weight, dtype=None),
        Tensor(bias, dtype=None),
        training=True,
    )
    tmean, tvar = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    want = torch.nn.functional.batch_norm(
        torch.from_numpy(x),
        tmean,
        tvar,
        torch.from_numpy(weight),
        torch.from_numpy(bias),
        training=True,
        momentum=0.1,
        eps=1e-5,
    )
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-10)
    np.testing.assert_allclose(mean, tmean.numpy(), atol=1e-12)
    np.testing.assert_allclose(var, tvar.numpy(), atol=1e-12)


def test_the_reference_conv_is_short() -> None:
    """A student reads it in one look: at most 40 lines, docstring included."""
    import inspect

    assert len(inspect.getsource(reference.conv2d).splitlines()) <= 40
