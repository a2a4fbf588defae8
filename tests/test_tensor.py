"""The Tensor engine: every op against central differences and against PyTorch.

Each case in ``CASES`` is one op with its PyTorch twin and its inputs. Every case is checked
three ways: gradcheck (float64 central differences), PyTorch (forward values, output shape and
input gradients under the same non-uniform loss), and dtype (float32 in, float32 out, float32
gradients all the way down).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import micrograd.tensor as tensor_module
from micrograd import Tensor, no_grad
from micrograd.engine import Value
from micrograd.kernels.conv import Conv2dOp
from micrograd.tensor import concatenate, ones, stack, unbroadcast, where, zeros
from tests.conftest import optional_import
from tests.gradcheck import compare_with_torch, gradcheck
from tests.math_cases import MATH_CASES, POW_EDGES, MathCase, reference


@pytest.fixture(scope="module")
def torch() -> Any:
    return optional_import("torch")


_rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return _rng.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return _rng.uniform(0.5, 2.0, shape)


def nonzero(*shape: int) -> np.ndarray:
    """Values at least 0.2 away from 0, so kinks (relu, abs) are never straddled by eps."""
    return _rng.uniform(0.2, 1.0, shape) * _rng.choice([-1.0, 1.0], shape)


def away_from_bounds(*shape: int) -> np.ndarray:
    """Values in [-1, 1] at least 0.05 away from the clip bounds -0.5, 0.3 and 0."""
    x = _rng.uniform(-1.0, 1.0, shape)
    for bound in (-0.5, 0.0, 0.3):
        near = np.abs(x - bound) < 0.05
        x[near] = bound + 0.1
    return x


MASK = np.array([[True, False, True], [False, False, True]])
BOOL_ROWS = np.array([True, False, True, True])


def _case(
    name: str, ours: Callable[..., Any], theirs: Callable[..., Any], *inputs: np.ndarray
) -> Any:
    return pytest.param(ours, theirs, inputs, id=name)


CASES = [
    # arithmetic and broadcasting (both directions, scalars on either side)
    _case("add", lambda a, b: a + b, lambda t, a, b: a + b, randn(3, 4), randn(3, 4)),
    _case("add_col_row", lambda a, b: a + b, lambda t, a, b: a + b, randn(3, 1), randn(1, 4)),
    _case("mul_trailing", lambda a, b: a * b, lambda t, a, b: a * b, randn(2, 3, 4), randn(4)),
    _case("mul_leading", lambda a, b: a * b, lambda t, a, b: a * b, randn(4), randn(2, 3, 4)),
    _case("mul_middle", lambda a, b: a * b, lambda t, a, b: a * b, randn(2, 1, 4), randn(3, 1)),
    _case("add_scalar", lambda a: a + 2.5, lambda t, a: a + 2.5, randn(3)),
    _case("radd_scalar", lambda a: 2.5 + a, lambda t, a: 2.5 + a, randn(3)),
    _case("sub", lambda a, b: a - b, lambda t, a, b: a - b, randn(2, 3), randn(3)),
    _case("rsub_scalar", lambda a: 1.5 - a, lambda t, a: 1.5 - a, randn(2, 3)),
    _case("mul_scalar", lambda a: a * -3.0, lambda t, a: a * -3.0, randn(2, 3)),
    _case("rmul_scalar", lambda a: -3.0 * a, lambda t, a: -3.0 * a, randn(2, 3)),
    _case("div", lambda a, b: a / b, lambda t, a, b: a / b, randn(2, 3), positive(2, 1)),
    _case("div_scalar", lambda a: a / 4.0, lambda t, a: a / 4.0, randn(2, 3)),
    _case("rdiv_scalar", lambda b: 2.0 / b, lambda t, b: 2.0 / b, positive(2, 3)),
    _case("neg", lambda a: -a, lambda t, a: -a, randn(2, 3)),
    _case("pow_int", lambda a: a**3, lambda t, a: a**3, randn(2, 3)),
    _case("pow_half", lambda a: a**0.5, lambda t, a: a**0.5, positive(2, 3)),
    _case("pow_negative", lambda a: a**-1.5, lambda t, a: a**-1.5, positive(2, 3)),
    _case("pow_tensor", lambda a, b: a**b, lambda t, a, b: a**b, positive(2, 3), randn(2, 3)),
    _case("rpow", lambda a: 2.0**a, lambda t, a: 2.0**a, randn(2, 3)),
    # matmul: 2-D, batched, broadcast batch, and 1-D operands on either side
    _case("matmul", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(3, 4), randn(4, 5)),
    _case(
        "matmul_batched", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(2, 3, 4), randn(2, 4, 5)
    ),
    _case(
        "matmul_bcast_batch", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(2, 3, 4), randn(4, 5)
    ),
    _case(
        "matmul_bcast_left", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(3, 4), randn(2, 4, 5)
    ),
    _case("matmul_vec_mat", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(4), randn(4, 5)),
    _case("matmul_mat_vec", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(3, 4), randn(4)),
    _case("matmul_vec_vec", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(4), randn(4)),
    _case(
        "matmul_vec_batched", lambda a, b: a @ b, lambda t, a, b: a @ b, randn(5), randn(2, 5, 3)
    ),
    # elementwise functions
    _case("exp", lambda a: a.exp(), lambda t, a: a.exp(), randn(2, 3)),
    _case("log", lambda a: a.log(), lambda t, a: a.log(), positive(2, 3)),
    _case("sqrt", lambda a: a.sqrt(), lambda t, a: a.sqrt(), positive(2, 3)),
    _case("relu", lambda a: a.relu(), lambda t, a: a.relu(), nonzero(3, 4)),
    _case(
        "leaky_relu",
        lambda a: a.leaky_relu(0.1),
        lambda t, a: t.nn.functional.leaky_relu(a, 0.1),
        nonzero(3, 4),
    ),
    _case("abs", lambda a: a.abs(), lambda t, a: a.abs(), nonzero(3, 4)),
    _case("tanh", lambda a: a.tanh(), lambda t, a: a.tanh(), randn(3, 4) * 2),
    _case("sigmoid", lambda a: a.sigmoid(), lambda t, a: a.sigmoid(), randn(3, 4) * 3),
    _case(
        "clip",
        lambda a: a.clip(-0.5, 0.3),
        lambda t, a: a.clamp(-0.5, 0.3),
        away_from_bounds(4, 5),
    ),
    _case("clip_min", lambda a: a.clip(min=0.0), lambda t, a: a.clamp(min=0.0), nonzero(4, 5)),
    _case("clamp_max", lambda a: a.clamp(max=0.3), lambda t, a: a.clamp(max=0.3), randn(4, 5)),
    # reductions
    _case("sum_all", lambda a: a.sum(), lambda t, a: a.sum(), randn(2, 3, 4)),
    _case("sum_axis0", lambda a: a.sum(0), lambda t, a: a.sum(0), randn(2, 3, 4)),
    _case(
        "sum_last_keep",
        lambda a: a.sum(-1, keepdims=True),
        lambda t, a: a.sum(-1, keepdim=True),
        randn(2, 3, 4),
    ),
    _case("sum_axes", lambda a: a.sum((0, 2)), lambda t, a: a.sum((0, 2)), randn(2, 3, 4)),
    _case("mean_all", lambda a: a.mean(), lambda t, a: a.mean(), randn(2, 3, 4)),
    _case("mean_axis1", lambda a: a.mean(1), lambda t, a: a.mean(1), randn(2, 3, 4)),
    _case(
        "mean_axes_keep",
        lambda a: a.mean((0, -1), keepdims=True),
        lambda t, a: a.mean((0, -1), keepdim=True),
        randn(2, 3, 4),
    ),
    _case("max_all", lambda a: a.max(), lambda t, a: a.max(), randn(2, 3, 4)),
    _case("max_axis1", lambda a: a.max(1), lambda t, a: a.amax(1), randn(2, 3, 4)),
    _case(
        "max_axes_keep",
        lambda a: a.max((0, 2), keepdims=True),
        lambda t, a: a.amax((0, 2), keepdim=True),
        randn(2, 3, 4),
    ),
    _case("max_negative_axis", lambda a: a.max(-1), lambda t, a: a.amax(-1), randn(3, 5)),
    _case("max_big_block", lambda a: a.max(0), lambda t, a: a.amax(0), randn(70, 3)),
    _case("var_all", lambda a: a.var(), lambda t, a: a.var(correction=0), randn(2, 3, 4)),
    _case(
        "var_axis_keep",
        lambda a: a.var(1, keepdims=True),
        lambda t, a: a.var(1, correction=0, keepdim=True),
        randn(2, 3, 4),
    ),
    _case(
        "var_axes",
        lambda a: a.var((0, 2)),
        lambda t, a: a.var((0, 2), correction=0),
        randn(2, 3, 4),
    ),
    # shapes
    _case("reshape", lambda a: a.reshape(4, 6), lambda t, a: a.reshape(4, 6), randn(2, 3, 4)),
    _case(
        "reshape_tuple", lambda a: a.reshape((6, -1)), lambda t, a: a.reshape(6, -1), randn(2, 3, 4)
    ),
    _case("view_flat", lambda a: a.view(-1), lambda t, a: a.reshape(-1), randn(2, 3, 4)),
    _case("flatten", lambda a: a.flatten(1), lambda t, a: a.flatten(1), randn(2, 3, 4)),
    _case("permute", lambda a: a.permute(2, 0, 1), lambda t, a: a.permute(2, 0, 1), randn(2, 3, 4)),
    _case(
        "permute_negative",
        lambda a: a.permute(0, -1, 1),
        lambda t, a: a.permute(0, -1, 1),
        randn(2, 3, 4),
    ),
    _case("transpose", lambda a: a.transpose(0, 2), lambda t, a: a.transpose(0, 2), randn(2, 3, 4)),
    _case("T", lambda a: a.T, lambda t, a: a.T, randn(3, 4)),
    # indexing: ints, slices, fancy (repeated indices accumulate), masks
    _case("index_int", lambda a: a[1], lambda t, a: a[1], randn(4, 5)),
    _case("index_slices", lambda a: a[1:3, ::2], lambda t, a: a[1:3, ::2], randn(4, 5)),
    _case("index_negative", lambda a: a[:, -1], lambda t, a: a[:, -1], randn(4, 5)),
    _case("index_ellipsis", lambda a: a[..., 1], lambda t, a: a[..., 1], randn(2, 3, 4)),
    _case("index_newaxis", lambda a: a[None, 1:], lambda t, a: a[None, 1:], randn(4, 5)),
    _case("index_repeated", lambda a: a[[0, 0, 2, 0]], lambda t, a: a[[0, 0, 2, 0]], randn(4, 5)),
    _case(
        "index_pairs",
        lambda a: a[np.array([0, 2, 2]), np.array([1, 1, 4])],
        lambda t, a: a[t.tensor([0, 2, 2]), t.tensor([1, 1, 4])],
        randn(4, 5),
    ),
    _case(
        "index_tensor",
        lambda a: a[Tensor(np.array([3, 1, 3]), dtype=None)],
        lambda t, a: a[t.tensor([3, 1, 3])],
        randn(4, 5),
    ),
    _case("index_mask", lambda a: a[MASK], lambda t, a: a[t.tensor(MASK)], randn(2, 3)),
    _case(
        "index_mask_rows", lambda a: a[BOOL_ROWS], lambda t, a: a[t.tensor(BOOL_ROWS)], randn(4, 2)
    ),
    # joining, padding, selecting
    _case(
        "concatenate",
        lambda a, b: concatenate([a, b]),
        lambda t, a, b: t.cat([a, b]),
        randn(2, 3),
        randn(4, 3),
    ),
    _case(
        "concatenate_last",
        lambda a, b: concatenate([a, b], axis=-1),
        lambda t, a, b: t.cat([a, b], dim=-1),
        randn(2, 3),
        randn(2, 1),
    ),
    _case(
        "stack",
        lambda a, b, c: stack([a, b, c]),
        lambda t, a, b, c: t.stack([a, b, c]),
        randn(2, 3),
        randn(2, 3),
        randn(2, 3),
    ),
    _case(
        "stack_middle",
        lambda a, b: stack([a, b], axis=1),
        lambda t, a, b: t.stack([a, b], dim=1),
        randn(2, 3),
        randn(2, 3),
    ),
    _case(
        "stack_last",
        lambda a, b: stack([a, b], axis=-1),
        lambda t, a, b: t.stack([a, b], dim=-1),
        randn(2, 3),
        randn(2, 3),
    ),
    _case(
        "pad",
        lambda a: a.pad(((1, 2), (0, 1)), value=0.5),
        lambda t, a: t.nn.functional.pad(a, (0, 1, 1, 2), value=0.5),
        randn(2, 3),
    ),
    _case(
        "where",
        lambda a, b: where(MASK, a, b),
        lambda t, a, b: t.where(t.tensor(MASK), a, b),
        randn(2, 3),
        randn(3),
    ),
    _case(
        "where_scalar",
        lambda a: where(MASK, a, -2.0),
        lambda t, a: t.where(t.tensor(MASK), a, -2.0),
        randn(2, 3),
    ),
]


@pytest.mark.parametrize(("ours", "theirs", "inputs"), CASES)
def test_gradcheck(ours: Callable[..., Any], theirs: Any, inputs: tuple[np.ndarray, ...]) -> None:
    gradcheck(ours, inputs)


@pytest.mark.parametrize(("ours", "theirs", "inputs"), CASES)
def test_matches_torch(
    ours: Callable[..., Any], theirs: Any, inputs: tuple[np.ndarray, ...], torch: Any
) -> None:
    compare_with_torch(ours, lambda *xs: theirs(torch, *xs), inputs, torch)


@pytest.mark.parametrize(("ours", "theirs", "inputs"), CASES)
def test_float32_stays_float32(
    ours: Callable[..., Any],
    theirs: Any,
    inputs: tuple[np.ndarray, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every gradient an op hands back passes through unbroadcast: record their dtypes there, so a
    # float64 intermediate can't be hidden by the final cast to the parent's dtype.
    seen: list[Any] = []

    def recording_unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
        seen.append(grad.dtype)
        return unbroadcast(grad, shape)

    monkeypatch.setattr(tensor_module, "unbroadcast", recording_unbroadcast)
    xs = [Tensor(x, requires_grad=True) for x in inputs]
    assert all(x.dtype == np.float32 for x in xs)
    out = ours(*xs)
    assert out.dtype == np.float32
    (out * Tensor(np.ones(out.shape))).sum().backward()
    assert all(x.grad is not None and x.grad.dtype == np.float32 for x in xs)
    assert seen and set(seen) == {np.dtype(np.float32)}


# ---------------------------------------------------------------------- graph behaviour
def test_reused_node_accumulates() -> None:
    x = Tensor([3.0], requires_grad=True)
    y = (x + x) * x  # 2x², dy/dx = 4x
    y.backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad, [12.0])


def test_diamond_graph_accumulates() -> None:
    x = Tensor(2.0, requires_grad=True)
    a = x * 3.0
    b = a * a + a.exp() * a  # a reused on three paths
    b.backward()
    a_val = 6.0
    expected = (2 * a_val + np.exp(a_val) * (1 + a_val)) * 3.0
    np.testing.assert_allclose(x.grad, expected, rtol=1e-5)


def test_deep_chain_does_not_recurse() -> None:
    assert sys.getrecursionlimit() <= 100_000
    x = Tensor(1.0, requires_grad=True, dtype=None)
    y = x
    for _ in range(100_000):
        y = y * 1.0000001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0000001**100_000, rtol=1e-9)
    np.testing.assert_allclose(y.data, 1.0000001**100_000, rtol=1e-9)


def test_grads_accumulate_across_backward_calls_until_zeroed() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0 + 2.0, 3.0 + 4.0])
    x.zero_grad()
    assert x.grad is None


def test_leaf_grads_are_writable_and_unshared() -> None:
    # In-place gradient edits (clip_grad_norm_) must not touch another tensor's gradient.
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert a.grad is not None and b.grad is not None
    a.grad *= 2.0
    np.testing.assert_allclose(b.grad, np.ones(3))


def test_backward_with_explicit_gradient() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(x.grad, [2.0, 0.0, -6.0])


def test_backward_needs_requires_grad() -> None:
    with pytest.raises(RuntimeError):
        Tensor([1.0]).sum().backward()


def test_constants_get_no_gradient() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [5.0, 6.0])


def test_no_grad_builds_no_graph() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with no_grad():
        y = (x * 2.0).exp().sum()
    assert not y.requires_grad and y._ctx is None
    z = x * 2.0
    assert z.requires_grad and z._ctx is not None  # enabled again on exit


def test_detach_cuts_the_graph() -> None:
    x = Tensor([2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d._ctx is None
    assert np.shares_memory(d.data, x.data)
    (d * x).sum().backward()  # only the x path counts
    np.testing.assert_allclose(x.grad, [2.0])


# ---------------------------------------------------------------------- dtypes and values
def test_float32_is_the_default_dtype() -> None:
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(np.arange(3.0)).dtype == np.float32
    assert Tensor(2.5).dtype == np.float32
    assert zeros(2, 3).dtype == np.float32 and ones(2).dtype == np.float32
    assert Tensor(np.arange(3.0), dtype=None).dtype == np.float64


def test_python_scalars_keep_float32() -> None:
    x = Tensor([0.5, 1.5], requires_grad=True)
    y = ((x * 1e-3 + 2.0) ** 2 / 3.0 - 1.0) * (2.0**x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float32


def test_sigmoid_and_tanh_are_stable_at_extremes() -> None:
    x = Tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], requires_grad=True)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = x.sigmoid()
        t = x.tanh()
        (s + t).sum().backward()
    np.testing.assert_allclose(s.data, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(t.data, [-1.0, -1.0, 0.0, 1.0, 1.0], atol=1e-7)
    assert np.isfinite(x.grad).all()


def test_where_ignores_the_branch_not_taken() -> None:
    x = Tensor([-1.0, 0.5, 2.0], requires_grad=True)
    with np.errstate(invalid="ignore"):
        y = where(x > 0, x.log(), 0.0)  # log(-1) is nan, but it is never selected
    assert np.isfinite(y.data).all()
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 2.0, 0.5])
    masked = where(np.array([True, False]), Tensor([1.0, 2.0]), -np.inf)
    np.testing.assert_array_equal(masked.data, [1.0, -np.inf])


def test_max_gradient_goes_to_first_maximum() -> None:
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_max_ties_match_torch_max_dim(torch: Any) -> None:
    data = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, 2.0, 0.0, 2.0]])
    x = Tensor(data, requires_grad=True, dtype=None)
    x.max(axis=1).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    t.max(dim=1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, t.grad.numpy())


def test_unbroadcast_shapes() -> None:
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (2, 3, 4)) is g
    np.testing.assert_array_equal(unbroadcast(g, (4,)), np.full(4, 6.0))
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(unbroadcast(g, ()), 24.0)


def test_comparisons_give_arrays() -> None:
    x = Tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(x > 1.5, [False, True, True])
    np.testing.assert_array_equal(x <= Tensor([1.0, 1.0, 5.0]), [True, False, True])


def test_shape_helpers() -> None:
    x = Tensor(np.zeros((2, 3, 4)))
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.numel() == 24 and len(x) == 2
    assert x.size() == (2, 3, 4) and x.size(1) == 3
    assert Tensor([[1.0, 2.0]]).tolist() == [[1.0, 2.0]]
    assert Tensor(7.0).item() == 7.0


# ---------------------------------------------------------------------- the shared math table
math_case_params = pytest.mark.parametrize("case", MATH_CASES, ids=[c.name for c in MATH_CASES])


@math_case_params
def test_math_case_matches_value_engine(case: MathCase) -> None:
    values = [Value(x) for x in case.inputs]
    expected = case.fn(*values)
    expected.backward()
    tensors = [Tensor(x, requires_grad=True, dtype=None) for x in case.inputs]
    out = case.fn(*tensors)
    out.backward()
    assert out.shape == ()
    np.testing.assert_allclose(out.item(), expected.data, rtol=1e-12, atol=1e-12)
    for i, (t, v) in enumerate(zip(tensors, values, strict=True)):
        np.testing.assert_allclose(t.grad, v.grad, rtol=1e-10, atol=1e-12, err_msg=f"arg {i}")


@math_case_params
def test_math_case_elementwise_on_arrays(case: MathCase) -> None:
    rng = np.random.default_rng(len(case.name))
    low, high = case.domain
    arrays = [rng.uniform(low, high, size=(3, 4)) for _ in range(case.arity)]
    out = case.fn(*(Tensor(a, dtype=None) for a in arrays))
    assert out.shape == (3, 4)
    expected = [reference(case, point) for point in zip(*(a.ravel() for a in arrays), strict=True)]
    np.testing.assert_allclose(out.data.ravel(), expected, rtol=1e-10, atol=1e-12)
    gradcheck(case.fn, arrays)


def test_no_grad_is_per_thread() -> None:
    """One thread inside no_grad() must not stop another thread from building a graph."""

    inside = threading.Event()
    release = threading.Event()

    def infer() -> None:
        with no_grad():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=infer)
    worker.start()
    try:
        assert inside.wait(5)
        x = Tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad, [2.0, 4.0])
    finally:
        release.set()
        worker.join()


def test_pow_at_the_domain_edges() -> None:
    a, b, value, da, db = (np.array(column) for column in zip(*POW_EDGES, strict=True))
    x, y = Tensor(a, requires_grad=True, dtype=None), Tensor(b, requires_grad=True, dtype=None)
    out = x**y
    out.backward(np.ones_like(a))
    np.testing.assert_equal(out.data, value)
    np.testing.assert_equal(x.grad, da)
    np.testing.assert_equal(y.grad, db)


def test_pow_edge_table_is_what_torch_computes() -> None:
    torch = optional_import("torch")
    a, b, value, da, db = (
        torch.tensor(c, dtype=torch.float64) for c in zip(*POW_EDGES, strict=True)
    )
    x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
    (x**y).sum().backward()
    np.testing.assert_equal((a**b).numpy(), value.numpy())
    np.testing.assert_equal(x.grad.numpy(), da.numpy())
    np.testing.assert_equal(y.grad.numpy(), db.numpy())


def test_comparisons_are_elementwise_like_torch() -> None:
    t = Tensor([1.0, 2.0, 1.5])
    np.testing.assert_array_equal(t == 1.0, [True, False, False])
    np.testing.assert_array_equal(t != Tensor([1.0, 0.0, 1.5]), [False, True, False])
    np.testing.assert_array_equal(t < 1.5, [True, False, False])
    assert t.requires_grad_(True) is t and t.requires_grad


@pytest.mark.parametrize(("shape", "axis"), [((3, 10, 9), (1, 2)), ((3, 100, 2), 1), ((70,), None)])
def test_max_over_large_blocks_matches_torch(shape: tuple[int, ...], axis: Any) -> None:
    """Blocks of more than 64 elements take the argmax paths (one axis, or several flattened),
    with ties going to the first maximum as in PyTorch."""
    torch = optional_import("torch")
    x = np.random.default_rng(3).integers(0, 5, shape).astype(np.float64)  # many ties
    weights = np.random.default_rng(4).standard_normal(x.max(axis=axis).shape)
    t = Tensor(x, requires_grad=True, dtype=None)
    (t.max(axis=axis) * Tensor(weights, dtype=None)).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    dims = tuple(range(len(shape))) if axis is None else axis
    if isinstance(dims, int) or len(dims) == 1:
        ref = tt.max(dim=dims if isinstance(dims, int) else dims[0]).values
    else:
        ref = tt.flatten(start_dim=1).max(dim=1).values
    (ref * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(t.max(axis=axis).data, ref.detach().numpy())
    np.testing.assert_allclose(t.grad, tt.grad.numpy())


def test_backward_to_chosen_inputs_skips_the_branches_that_do_not_lead_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A saliency pass (gradient for the input only) never computes a weight gradient."""
    import micrograd.functional as F

    seen: list[tuple[bool, ...]] = []
    original = Conv2dOp.backward

    def spy(self: Any, grad: Any) -> Any:
        seen.append(self.needs_grad)
        return original(self, grad)

    monkeypatch.setattr(Conv2dOp, "backward", spy)
    x = Tensor(np.random.default_rng(0).standard_normal((1, 2, 5, 5)), requires_grad=True)
    w = Tensor(np.random.default_rng(1).standard_normal((3, 2, 3, 3)), requires_grad=True)
    F.conv2d(F.conv2d(x, w[:, :, :, :], padding=1)[:, :2], w, padding=1).sum().backward(inputs=[x])
    assert seen == [(True, False), (True, False)]
    assert x.grad is not None and w.grad is None
    full = Tensor(x.data, requires_grad=True)
    F.conv2d(F.conv2d(full, w, padding=1)[:, :2], w, padding=1).sum().backward()
    np.testing.assert_allclose(x.grad, full.grad, rtol=1e-5)


def test_backward_lets_go_of_activations_as_it_walks() -> None:
    """Without retain_graph, an activation nobody holds is freed once the walk is past it, so a
    step's memory falls during backward instead of peaking at its end."""
    import weakref

    from micrograd.tensor import Function

    freed: list[bool] = []

    class Check(Function):
        def forward(self, a: np.ndarray) -> np.ndarray:
            return a * 1.0

        def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
            freed.append(later() is None)
            return (grad,)

    x = Tensor(np.ones(3), requires_grad=True)
    top = (Check.apply(x) * 2.0).exp()
    later = weakref.ref(top.data)
    loss = top.sum()
    del top
    loss.backward()
    assert freed == [True]
    np.testing.assert_allclose(x.grad, 2 * np.exp(2.0) * np.ones(3))
