"""Gradient checks for the Tensor engine: central differences, and PyTorch as an oracle.

Both checks reduce an op's output with a *non-uniform* loss, ``(fn(*xs) * W).sum()`` with ``W``
fixed random weights of the output's shape, so a backward that permutes, drops or averages
gradient entries cannot hide behind a plain sum (whose upstream gradient is all ones).

Inputs are float64 numpy arrays; the engine keeps float64 when tensors are built with
``dtype=None``, which is what makes central differences accurate to about 1e-8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from micrograd.tensor import Tensor, no_grad

__all__ = ["compare_with_torch", "gradcheck", "loss_weights"]


def loss_weights(shape: tuple[int, ...], seed: int = 1234) -> np.ndarray:
    """The fixed random weights ``W`` of the non-uniform loss for an output of ``shape``."""
    return np.asarray(np.random.default_rng(seed).standard_normal(shape))


def _as_float64(inputs: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(x, dtype=np.float64) for x in inputs]


def _weighted_loss(out: Tensor, weights: np.ndarray) -> Tensor:
    return (out * Tensor(weights, dtype=None)).sum()


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 1234,
) -> list[np.ndarray]:
    """Assert that the engine's backward of ``fn`` matches central differences.

    ``fn(*tensors) -> Tensor`` is called on float64 tensors built from ``inputs`` (arrays of any
    shape). Every input gets a gradient, checked element by element against
    ``(L(x + eps) - L(x - eps)) / (2 eps)`` with ``L = (fn(*xs) * W).sum()``.
    Returns the analytic gradients (one array per input, same shapes as the inputs).
    """
    arrays = _as_float64(inputs)
    tensors = [Tensor(a.copy(), requires_grad=True, dtype=None) for a in arrays]
    out = fn(*tensors)
    assert out.dtype == np.float64, f"float64 inputs gave a {out.dtype} output"
    weights = loss_weights(out.shape, seed)
    _weighted_loss(out, weights).backward()

    def loss_at(values: list[np.ndarray]) -> float:
        with no_grad():
            ts = [Tensor(v, dtype=None) for v in values]
            return float((fn(*ts).data * weights).sum())

    analytic = []
    for i, (a, t) in enumerate(zip(arrays, tensors, strict=True)):
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.shape == a.shape, f"input {i}: grad shape {t.grad.shape} != {a.shape}"
        numeric = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            values = [v.copy() for v in arrays]
            values[i][idx] = a[idx] + eps
            plus = loss_at(values)
            values[i][idx] = a[idx] - eps
            minus = loss_at(values)
            numeric[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(
            t.grad, numeric, atol=atol, rtol=rtol, err_msg=f"gradient of input {i}"
        )
        analytic.append(np.asarray(t.grad))
    return analytic


def compare_with_torch(
    fn: Callable[..., Tensor],
    torch_fn: Callable[..., Any],
    inputs: Sequence[Any],
    torch: Any,
    atol: float = 1e-7,
    rtol: float = 1e-6,
    grads: bool = True,
    seed: int = 1234,
) -> None:
    """Assert that ``fn`` on Tensors and ``torch_fn`` on torch tensors agree, forward and backward.

    Both run in float64 on the same ``inputs``; outputs must have the same shape and values, and
    (with ``grads``) the gradients of the same non-uniform loss with respect to every input must
    match.
    """
    arrays = _as_float64(inputs)
    ours = [Tensor(a.copy(), requires_grad=grads, dtype=None) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=grads) for a in arrays]
    out = fn(*ours)
    ref = torch_fn(*theirs)
    assert tuple(out.shape) == tuple(ref.shape), f"shape {out.shape} != torch {tuple(ref.shape)}"
    np.testing.assert_allclose(
        out.data, ref.detach().numpy(), atol=atol, rtol=rtol, err_msg="forward"
    )
    if not grads:
        return
    weights = loss_weights(out.shape, seed)
    _weighted_loss(out, weights).backward()
    (ref * torch.tensor(weights)).sum().backward()
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        expected = np.zeros(arrays[i].shape) if t.grad is None else t.grad.numpy()
        got = np.zeros(arrays[i].shape) if o.grad is None else o.grad
        assert np.shape(got) == arrays[i].shape, f"input {i}: grad shape {np.shape(got)}"
        np.testing.assert_allclose(got, expected, atol=atol, rtol=rtol, err_msg=f"grad {i}")
