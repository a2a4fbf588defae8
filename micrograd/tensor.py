"""Tensor: reverse-mode autograd over n-dimensional arrays.

The design follows ``torch.autograd.Function``: every primitive op is a ``Function`` subclass
named ``...Op`` (``AddOp``, ``ReLUOp``: never the name of a ``micrograd.nn`` module) whose
``forward`` computes the result from raw arrays and saves what its ``backward`` needs, and whose
``backward`` turns the gradient of the output into gradients of the inputs. Forward and backward
sit side by side, one class per op. Everything else (sub, div, mean, tanh from sigmoid, softmax
from log-softmax, the losses...) is composed from these primitives, so each derivative is
written once. A few fused Functions live elsewhere, where composing would cost too much time or
memory: convolution and BatchNorm in ``micrograd.kernels``, log-softmax and the sliding windows
behind pooling in ``micrograd.functional``.

Broadcasting works everywhere; a single helper, ``unbroadcast``, sums a gradient back to the
shape of the input it belongs to.

Shapes follow PyTorch: images are NCHW, ``matmul`` is batched over leading axes.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from micrograd.backend import DEFAULT_DTYPE, to_numpy, xp
from micrograd.graph import toposort

Array = Any  # an xp.ndarray (numpy or cupy)
Scalar = int | float

# Per thread, as in PyTorch: a web server answers each visitor on its own thread, and one
# visitor's inference under no_grad() must not switch off another's saliency backward pass.
_state = threading.local()


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: ops inside build no graph (inference, optimizer updates).
    Affects the calling thread only."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


def is_grad_enabled() -> bool:
    """True unless this thread is inside ``no_grad()``."""
    return getattr(_state, "grad_enabled", True)


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class Function:
    """One differentiable op. Subclasses define ``forward`` (arrays in, array out) and
    ``backward`` (output gradient in, one gradient per input out, ``None`` where not needed).

    ``forward`` may stash anything ``backward`` needs on ``self``. ``self.needs_grad[i]`` tells
    ``backward`` whether input ``i`` wants a gradient, so it can skip work.
    """

    parents: tuple[Tensor, ...]
    needs_grad: tuple[bool, ...]

    def forward(self, *arrays: Array, **kwargs: Any) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        raise NotImplementedError

    def release(self) -> None:
        """Called once the graph is freed after backward (not with ``retain_graph=True``):
        an op may hand back buffers it saved for its backward."""

    @classmethod
    def apply(cls, *inputs: Tensor, **kwargs: Any) -> Tensor:
        """Run the op on tensors and, if any input needs a gradient, record it in the graph."""
        fn = cls()
        record = is_grad_enabled() and any(t.requires_grad for t in inputs)
        # set before forward, so an op can skip saving what no backward will read
        fn.needs_grad = tuple(record and t.requires_grad for t in inputs)
        out = Tensor(fn.forward(*(t.data for t in inputs), **kwargs), dtype=None)
        if record:
            fn.parents = inputs
            out.requires_grad = True
            out._ctx = fn
        return out


class Tensor:
    """An array with an optional gradient.

    ``Tensor(data, requires_grad=False, dtype=float32)``: ``data`` is anything ``xp.asarray``
    accepts. ``dtype=None`` keeps the array's own dtype (used for float64 gradient checks).
    """

    __slots__ = ("_ctx", "data", "grad", "requires_grad")
    __array_priority__ = 1000  # so ``ndarray * Tensor`` defers to Tensor.__rmul__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = DEFAULT_DTYPE) -> None:
        if isinstance(data, Tensor):
            data = data.data
        arr = xp.asarray(data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        self.data: Array = arr
        self.grad: Array | None = None
        self.requires_grad: bool = requires_grad
        self._ctx: Function | None = None

    # ------------------------------------------------------------------ basics
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def size(self, dim: int | None = None) -> Any:
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> Any:
        """The data as a numpy array (shares memory on the numpy backend)."""
        return to_numpy(self.data)

    def item(self) -> float:
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data, dtype=None)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ backward
    def backward(
        self,
        grad: Any = None,
        retain_graph: bool = False,
        inputs: Sequence[Tensor] | None = None,
    ) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` defaults to ones (so ``self`` is usually a scalar loss). The graph is walked
        iteratively (no recursion limit) in reverse topological order; gradients always
        accumulate with ``+=`` so reused tensors get the sum of all their paths.
        ``inputs``: if given, only these leaves receive ``.grad`` (as in PyTorch), so e.g. a
        saliency map can be taken without touching the shared model's parameters.
        """
        wanted = None if inputs is None else {id(t) for t in inputs}
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if grad is None:
            grad = xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.data.dtype)

        order = toposort(self, _graph_inputs)
        # With ``inputs``, only nodes from which a wanted leaf can be reached carry gradients:
        # an op is told (through needs_grad) to skip the rest, e.g. a conv its weight gradient.
        leads = None if wanted is None else _leading_to(order, wanted)

        grads: dict[int, Array] = {id(self): grad}
        while order:
            # popped, so that once a node's backward has run (and, without retain_graph, its
            # op let go of its inputs) nothing here holds it: activations nobody else refers to
            # are freed as the walk goes, instead of all at its end
            node = order.pop()
            g = grads.pop(id(node), None)
            fn = node._ctx
            if g is not None and fn is None and (wanted is None or id(node) in wanted):
                # a leaf keeps its gradient; g may be a read-only broadcast view, or the very
                # array another leaf got (Add hands one grad to both inputs): copy it, so
                # in-place edits stay local
                node.grad = g.copy() if node.grad is None else node.grad + g
            if g is not None and fn is not None:
                self._push(fn, g, grads, leads)
            if fn is not None and not retain_graph:
                fn.release()
                node._ctx = None

    @staticmethod
    def _push(fn: Function, g: Array, grads: dict[int, Array], leads: set[int] | None) -> None:
        """Run ``fn``'s backward on its output's gradient ``g``; add the results to ``grads``."""
        needs = fn.needs_grad
        if leads is not None:
            pairs = zip(needs, fn.parents, strict=True)
            fn.needs_grad = tuple(n and id(p) in leads for n, p in pairs)
        try:
            input_grads = fn.backward(g)
        finally:
            fn.needs_grad = needs
        for parent, pg in zip(fn.parents, input_grads, strict=True):
            if pg is None or not parent.requires_grad:
                continue
            if leads is not None and id(parent) not in leads:
                continue
            pg = unbroadcast(pg, parent.shape)
            if pg.dtype != parent.dtype:  # e.g. float64 constants must not leak into float32
                pg = pg.astype(parent.dtype)
            key = id(parent)
            grads[key] = grads[key] + pg if key in grads else pg

    def zero_grad(self) -> None:
        self.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Turn gradient tracking of this (leaf) tensor on or off, in place; returns self."""
        self.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other: Tensor | Scalar) -> Tensor:
        return AddOp.apply(self, _lift(other, self))

    def __mul__(self, other: Tensor | Scalar) -> Tensor:
        return MulOp.apply(self, _lift(other, self))

    def __pow__(self, exponent: Tensor | Scalar) -> Tensor:
        return PowOp.apply(self, _lift(exponent, self))

    def __rpow__(self, base: Scalar) -> Tensor:
        return PowOp.apply(_lift(base, self), self)

    def __neg__(self) -> Tensor:
        return self * -1.0

    def __sub__(self, other: Tensor | Scalar) -> Tensor:
        return self + (-_lift(other, self))

    def __truediv__(self, other: Tensor | Scalar) -> Tensor:
        if isinstance(other, Tensor):
            return self * other**-1
        return self * (1.0 / other)

    def __radd__(self, other: Scalar) -> Tensor:
        return self + other

    def __rmul__(self, other: Scalar) -> Tensor:
        return self * other

    def __rsub__(self, other: Scalar) -> Tensor:
        return _lift(other, self) - self

    def __rtruediv__(self, other: Scalar) -> Tensor:
        return _lift(other, self) / self

    def __matmul__(self, other: Tensor) -> Tensor:
        return MatMulOp.apply(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return MatMulOp.apply(_lift(other, self), self)

    # comparisons give plain boolean arrays, elementwise like PyTorch's: they have no gradient.
    # Tensors are told apart by identity (``is``, ``id``), never by ``==``.
    def __eq__(self, other: object) -> Array:  # type: ignore[override]
        return self.data == _raw(other)

    def __ne__(self, other: object) -> Array:  # type: ignore[override]
        return self.data != _raw(other)

    def __lt__(self, other: Any) -> Array:
        return self.data < _raw(other)

    def __le__(self, other: Any) -> Array:
        return self.data <= _raw(other)

    def __gt__(self, other: Any) -> Array:
        return self.data > _raw(other)

    def __ge__(self, other: Any) -> Array:
        return self.data >= _raw(other)

    # ------------------------------------------------------------------ elementwise
    def exp(self) -> Tensor:
        return ExpOp.apply(self)

    def log(self) -> Tensor:
        return LogOp.apply(self)

    def sqrt(self) -> Tensor:
        return self**0.5

    def relu(self) -> Tensor:
        return ReLUOp.apply(self)

    def leaky_relu(self, negative_slope: float = 0.01) -> Tensor:
        return self.relu() - (-self).relu() * negative_slope

    def abs(self) -> Tensor:
        return self.relu() + (-self).relu()

    def sigmoid(self) -> Tensor:
        return SigmoidOp.apply(self)

    def tanh(self) -> Tensor:
        return (self * 2.0).sigmoid() * 2.0 - 1.0

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:
        return ClipOp.apply(self, low=min, high=max)

    clamp = clip

    # ------------------------------------------------------------------ reductions
    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return SumOp.apply(self, axis=_axes(axis), keepdims=keepdims)

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = _axes(axis)
        count = self.data.size if axes is None else _prod(self.shape[a] for a in axes)
        return self.sum(axes, keepdims) * (1.0 / count)

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        return MaxOp.apply(self, axis=_axes(axis), keepdims=keepdims)

    def var(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Biased variance (divides by n), as used by batch norm."""
        centred = self - self.mean(axis, keepdims=True)
        return (centred * centred).mean(axis, keepdims)

    def argmax(self, axis: int | None = None) -> Array:
        return self.data.argmax(axis=axis)

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return ReshapeOp.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim: int = 0) -> Tensor:
        return self.reshape(*self.shape[:start_dim], -1)

    def permute(self, *dims: int) -> Tensor:
        if len(dims) == 1 and isinstance(dims[0], tuple | list):
            dims = tuple(dims[0])
        return PermuteOp.apply(self, dims=dims)

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        """Swap two axes (PyTorch's ``transpose``); with no arguments, the last two."""
        if self.ndim < 2:
            return self
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(*dims)

    def __getitem__(self, index: Any) -> Tensor:
        return GetItemOp.apply(self, index=_raw_index(index))

    def pad(self, pad_width: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
        """Constant padding; ``pad_width`` is numpy-style, one (before, after) per axis."""
        return PadOp.apply(self, pad_width=tuple(tuple(p) for p in pad_width), value=value)


# ---------------------------------------------------------------------- helpers
def _quiet() -> Any:
    """Silence numpy's floating-point warnings (a no-op context for other array libraries)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(all="ignore") if errstate is not None else contextlib.nullcontext()


def _graph_inputs(node: Tensor) -> list[Tensor]:
    """The inputs of ``node`` that carry gradients (none for a leaf)."""
    return [p for p in node._ctx.parents if p.requires_grad] if node._ctx is not None else []


def _leading_to(order: list[Tensor], wanted: set[int]) -> set[int]:
    """Ids of the nodes of ``order`` (inputs first) from which a ``wanted`` leaf is reached."""
    leads: set[int] = set()
    for node in order:
        parents = node._ctx.parents if node._ctx is not None else ()
        if id(node) in wanted or any(id(p) in leads for p in parents):
            leads.add(id(node))
    return leads


def _lift(x: Any, like: Tensor) -> Tensor:
    """Wrap a Python number or array as a constant tensor of ``like``'s dtype."""
    return x if isinstance(x, Tensor) else Tensor(x, dtype=like.dtype)


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _raw_index(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_raw(i) for i in index)
    return _raw(index)


def _axes(axis: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    return (axis,) if isinstance(axis, int) else tuple(axis)


def _prod(values: Any) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _expand_reduced(grad: Array, shape: tuple[int, ...], axis: Any, keepdims: bool) -> Array:
    """Reshape the gradient of a reduction so it broadcasts against the input ``shape``."""
    if axis is None:
        return grad.reshape((1,) * len(shape))
    if not keepdims:
        axes = sorted(a % len(shape) for a in axis)
        for a in axes:
            grad = xp.expand_dims(grad, a)
    return grad


# ---------------------------------------------------------------------- primitives
class AddOp(Function):
    def forward(self, a: Array, b: Array) -> Array:
        return a + b

    def backward(self, grad: Array) -> tuple[Array, Array]:
        return grad, grad


class MulOp(Function):
    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        return a * b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        return (
            grad * self.b if self.needs_grad[0] else None,
            grad * self.a if self.needs_grad[1] else None,
        )


class PowOp(Function):
    """``a ** b`` elementwise, with PyTorch's values and gradients at the domain's edges:
    a negative base with an integer exponent is fine (``(-2) ** 2 == 4``); the gradient for
    the base is 0 wherever the exponent is 0 (even at base 0); the gradient for the exponent
    is 0 at base 0 with a non-negative exponent and ``nan`` for a negative base (no real log).
    """

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        # a 0-d exponent as a Python number takes numpy's fast paths (square, sqrt, reciprocal)
        self.out = a ** (b.item() if b.ndim == 0 else b)
        return self.out

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.a, self.b
        da = db = None
        with _quiet():  # 0 ** -1 and log(-2) are meant: inf and nan, masked or kept on purpose
            if self.needs_grad[0]:
                exponent = b.item() if b.ndim == 0 else b
                da = grad * xp.where(b == 0, 0, b * a ** (exponent - 1))
            if self.needs_grad[1]:
                db = grad * xp.where((a == 0) & (b >= 0), 0, self.out * xp.log(a))
        return da, db


class MatMulOp(Function):
    """``a @ b``, batched over leading axes like ``numpy.matmul``; 1-D operands as in numpy."""

    def forward(self, a: Array, b: Array) -> Array:
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad  # restore the axes numpy dropped for 1-D operands (both, for a 0-d dot product)
        if b.ndim == 1:
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        ga = g @ xp.swapaxes(b2, -1, -2) if self.needs_grad[0] else None
        gb = xp.swapaxes(a2, -1, -2) @ g if self.needs_grad[1] else None
        if ga is not None and a.ndim == 1:
            ga = ga.reshape(*ga.shape[:-2], ga.shape[-1])
        if gb is not None and b.ndim == 1:
            gb = gb.reshape(*gb.shape[:-1])
        return ga, gb


class ExpOp(Function):
    def forward(self, x: Array) -> Array:
        self.out = xp.exp(x)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * self.out,)


class LogOp(Function):
    def forward(self, x: Array) -> Array:
        self.x = x
        return xp.log(x)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad / self.x,)


class ReLUOp(Function):
    def forward(self, x: Array) -> Array:
        # numpy clips between two bounds in SIMD: 2x faster than maximum(x, 0), same values
        self.out = xp.clip(x, 0, xp.inf)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * (self.out > 0),)


class SigmoidOp(Function):
    """1 / (1 + e^-x), computed without overflow for large |x|."""

    def forward(self, x: Array) -> Array:
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        self.out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * self.out * (1 - self.out),)


class ClipOp(Function):
    def forward(self, x: Array, low: float | None, high: float | None) -> Array:
        self.inside = xp.ones(x.shape, dtype=bool)
        if low is not None:
            self.inside &= x >= low
        if high is not None:
            self.inside &= x <= high
        return xp.clip(x, low, high)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad * self.inside,)


class SumOp(Function):
    def forward(self, x: Array, axis: tuple[int, ...] | None, keepdims: bool) -> Array:
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad: Array) -> tuple[Array]:
        g = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return (xp.broadcast_to(g, self.shape),)


class MaxOp(Function):
    """Maximum over axes. The gradient goes to the first maximal element of each reduced block
    (in C order), as PyTorch's ``max_pool2d`` and ``max(dim)`` do.

    Three ways, by the size of the reduced blocks: small ones, such as pooling windows, by an
    elementwise ``maximum`` over the block positions (far faster than numpy's strided reduce);
    one large axis by ``argmax`` along it, in place; several large axes by ``argmax`` over the
    blocks moved to the front and flattened (a copy).
    """

    def forward(self, x: Array, axis: tuple[int, ...] | None, keepdims: bool) -> Array:
        axes = tuple(range(x.ndim)) if axis is None else tuple(sorted(a % x.ndim for a in axis))
        self.shape, self.axes = x.shape, axes
        self.count = _prod(x.shape[a] for a in axes)
        if self.count <= 64:
            self.front = xp.moveaxis(x, axes, tuple(range(len(axes))))
            self.positions = list(itertools.product(*(range(x.shape[a]) for a in axes)))
            out = xp.array(self.front[self.positions[0]], order="K")  # a copy; 0-d if all
            for pos in self.positions[1:]:
                xp.maximum(out, self.front[pos], out=out)
        elif len(axes) == 1:
            self.arg = xp.expand_dims(x.argmax(axis=axes[0]), axes[0])
            out = xp.take_along_axis(x, self.arg, axis=axes[0]).squeeze(axes[0])
        else:
            flat = xp.moveaxis(x, axes, tuple(range(len(axes)))).reshape(self.count, -1)
            self.arg = flat.argmax(axis=0)
            out = flat[self.arg, xp.arange(flat.shape[1])]
            out = out.reshape([n for i, n in enumerate(x.shape) if i not in axes])
        self.out = out
        if keepdims:
            return out.reshape([1 if i in axes else n for i, n in enumerate(x.shape)])
        return out

    def backward(self, grad: Array) -> tuple[Array]:
        g = grad.reshape(self.out.shape)
        if self.count > 64 and len(self.axes) == 1:
            dx = xp.zeros(self.shape, dtype=g.dtype)
            xp.put_along_axis(dx, self.arg, xp.expand_dims(g, self.axes[0]), axis=self.axes[0])
            return (dx,)
        front = len(self.axes)
        if self.count <= 64:
            dfront = xp.zeros(self.front.shape, dtype=g.dtype)
            taken = xp.zeros(self.out.shape, dtype=bool)
            for pos in self.positions:
                first = (self.front[pos] == self.out) & ~taken
                dfront[pos] = g * first
                taken |= first
        else:
            moved = [self.shape[a] for a in self.axes]
            moved += [n for i, n in enumerate(self.shape) if i not in self.axes]
            dfront = xp.zeros(moved, dtype=g.dtype)
            dflat = dfront.reshape(self.count, -1)
            dflat[self.arg, xp.arange(dflat.shape[1])] = g.reshape(-1)
        return (xp.moveaxis(dfront, tuple(range(front)), self.axes),)


class ReshapeOp(Function):
    def forward(self, x: Array, shape: tuple[int, ...]) -> Array:
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad.reshape(self.shape),)


class PermuteOp(Function):
    def forward(self, x: Array, dims: tuple[int, ...]) -> Array:
        self.dims = tuple(d % x.ndim for d in dims)  # argsort inverts only non-negative dims
        return x.transpose(self.dims)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad.transpose(xp.argsort(xp.asarray(self.dims)).tolist()),)


class GetItemOp(Function):
    def forward(self, x: Array, index: Any) -> Array:
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, grad: Array) -> tuple[Array]:
        out = xp.zeros(self.shape, dtype=grad.dtype)
        xp.add.at(out, self.index, grad)  # add.at: repeated fancy indices accumulate
        return (out,)


class PadOp(Function):
    def forward(self, x: Array, pad_width: tuple[tuple[int, int], ...], value: float) -> Array:
        self.slices = tuple(slice(b, b + n) for (b, _), n in zip(pad_width, x.shape, strict=True))
        return xp.pad(x, pad_width, constant_values=value)

    def backward(self, grad: Array) -> tuple[Array]:
        return (grad[self.slices],)


class ConcatenateOp(Function):
    def forward(self, *arrays: Array, axis: int) -> Array:
        self.axis = axis
        self.bounds = xp.cumsum(xp.asarray([a.shape[axis] for a in arrays]))[:-1].tolist()
        return xp.concatenate(arrays, axis=axis)

    def backward(self, grad: Array) -> tuple[Array, ...]:
        return tuple(xp.split(grad, self.bounds, axis=self.axis))


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along ``axis`` (``torch.cat``)."""
    return ConcatenateOp.apply(*tensors, axis=axis)


cat = concatenate


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new ``axis`` (``torch.stack``)."""
    axis %= tensors[0].ndim + 1  # a negative axis counts from the end of the *output*
    return concatenate([t.reshape(*t.shape[:axis], 1, *t.shape[axis:]) for t in tensors], axis)


class WhereOp(Function):
    """``condition ? a : b``. A primitive rather than ``a*m + b*(1-m)``: an inf or nan in the
    branch not taken (``where(x > 0, x.log(), 0)``) must not leak into the result as ``0*inf``."""

    def forward(self, a: Array, b: Array, condition: Array) -> Array:
        self.condition = condition
        return xp.where(condition, a, b)

    def backward(self, grad: Array) -> tuple[Array | None, Array | None]:
        zero = xp.zeros((), dtype=grad.dtype)
        return (
            xp.where(self.condition, grad, zero) if self.needs_grad[0] else None,
            xp.where(self.condition, zero, grad) if self.needs_grad[1] else None,
        )


def where(condition: Any, a: Tensor, b: Tensor | Scalar) -> Tensor:
    """``condition ? a : b`` elementwise (``torch.where``); all three broadcast together."""
    return WhereOp.apply(a, _lift(b, a), condition=xp.asarray(_raw(condition), dtype=bool))


def tensor(data: Any, requires_grad: bool = False, dtype: Any = DEFAULT_DTYPE) -> Tensor:
    """``torch.tensor``-style constructor."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: int, requires_grad: bool = False, dtype: Any = DEFAULT_DTYPE) -> Tensor:
    return Tensor(xp.zeros(shape, dtype=dtype), requires_grad=requires_grad, dtype=None)


def ones(*shape: int, requires_grad: bool = False, dtype: Any = DEFAULT_DTYPE) -> Tensor:
    return Tensor(xp.ones(shape, dtype=dtype), requires_grad=requires_grad, dtype=None)
