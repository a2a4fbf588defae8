"""Scalar reverse-mode autograd, API-compatible with Karpathy's micrograd.

A :class:`Value` wraps one Python number. Every operation returns a new ``Value`` that remembers
its inputs (``_prev``), the name of the op (``_op``) and a function (``_backward``), defined next
to the forward computation, that pushes the output's gradient to the inputs by the chain rule.
``root.backward()`` orders the graph topologically and calls those functions from the root down
to the leaves.

Differences from the original, invisible to code that uses the public API:

- ``backward()`` walks the graph with an explicit stack, so a graph of any depth works under
  Python's default recursion limit;
- a node's ``_backward`` receives the node's gradient as its argument instead of reading
  ``out.grad``, and binds what else it needs (``self``, ``other``, a saved result) as default
  arguments instead of closing over them. It thus holds no reference to its own output: the
  graph has no reference cycles and is freed by reference counting as soon as it is dropped, and
  no closure cells are allocated. On graphs of 10**5 nodes, walking those cycles and cells is
  where Python's garbage collector would otherwise spend most of the time;
- ``_prev`` is the tuple of inputs (``x + x`` gives ``(x, x)``) rather than a set, and nodes use
  ``__slots__``; leaves share one no-op backward: fewer and smaller objects per node;
- extra ops: ``tanh``, ``exp``, ``log``, a numerically stable ``sigmoid``, and exponents that are
  themselves ``Value`` objects (``a ** b``, ``2 ** a``).

Out-of-domain inputs fail as Python's own numbers do (``Value(0.0).log()`` raises ``ValueError``,
``1 / Value(0.0)`` raises ``ZeroDivisionError``, ``Value(1000.0).exp()`` raises ``OverflowError``);
``sigmoid`` and ``tanh`` are defined, and computed without overflow, for every float.

Example (Karpathy's README)::

    >>> a = Value(-4.0); b = Value(2.0)
    >>> c = a + b; d = a * b + b**3
    >>> c += c + 1; c += 1 + c + (-a)
    >>> d += d * 2 + (b + a).relu(); d += 3 * d + (b - a).relu()
    >>> e = c - d; f = e**2; g = f / 2.0; g += 10.0 / f
    >>> g.backward()
    >>> round(g.data, 4), round(a.grad, 4), round(b.grad, 4)
    (24.7041, 138.8338, 645.5773)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from micrograd.graph import toposort

Number = int | float


def _inputs(node: Value) -> tuple[Value, ...]:
    return node._prev


def _leaf_backward(grad: float) -> None:
    """Backward of a leaf: nothing to propagate. Shared, so leaves don't each allocate a lambda."""


class Value:
    """A scalar in a computation graph, with the gradient of the last ``backward()`` root.

    Attributes:
        data: the number this node holds.
        grad: d(root)/d(self) after ``root.backward()``; accumulates across calls until reset.
        _prev: the input nodes this node was computed from, in argument order (empty for leaves).
        _op: the name of the op that produced this node (``""`` for leaves), for ``draw_dot``.

    Nodes hash and compare by identity, so they can live in sets and dicts.
    """

    __slots__ = ("_backward", "_op", "_prev", "data", "grad", "label")

    def __init__(
        self, data: Number, _children: Iterable[Value] = (), _op: str = "", label: str = ""
    ) -> None:
        self.data = data
        self.grad = 0.0
        self._backward: Callable[[float], None] = _leaf_backward
        self._prev: tuple[Value, ...] = tuple(_children)
        self._op = _op
        self.label = label  # a name for draw_dot (x1, w1, ...), as in micrograd's lecture

    # -- primitives: each forward with its backward ----------------------------------------------

    def __add__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward(grad: float, self: Value = self, other: Value = other) -> None:
            self.grad += grad
            other.grad += grad

        out._backward = _backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward(grad: float, self: Value = self, other: Value = other) -> None:
            self.grad += other.data * grad
            other.grad += self.data * grad

        out._backward = _backward
        return out

    def __pow__(self, other: Value | Number) -> Value:
        if isinstance(other, Value):
            return self._pow_value(other)
        if not isinstance(other, int | float):
            return NotImplemented
        out = Value(self.data**other, (self,), f"**{other}")

        def _backward(grad: float, self: Value = self, other: Number = other) -> None:
            self.grad += _dpow_dbase(self.data, other) * grad

        out._backward = _backward
        return out

    def _pow_value(self, other: Value) -> Value:
        """``self ** other`` with a differentiable exponent."""
        power = self.data**other.data
        out = Value(power, (self, other), "**")

        def _backward(
            grad: float, self: Value = self, other: Value = other, power: float = power
        ) -> None:
            base, exponent = self.data, other.data
            self.grad += _dpow_dbase(base, exponent) * grad
            other.grad += _dpow_dexponent(base, exponent, power) * grad

        out._backward = _backward
        return out

    def relu(self) -> Value:
        """max(0, x); the gradient at 0 is 0, as in PyTorch."""
        out = Value(0.0 if self.data < 0 else self.data, (self,), "ReLU")

        def _backward(grad: float, self: Value = self) -> None:
            self.grad += (self.data > 0) * grad

        out._backward = _backward
        return out

    def tanh(self) -> Value:
        """Hyperbolic tangent, as one node: exact derivative 1 - t**2, no overflow."""
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward(grad: float, self: Value = self, t: float = t) -> None:
            self.grad += (1.0 - t * t) * grad

        out._backward = _backward
        return out

    def exp(self) -> Value:
        """e**x."""
        e = math.exp(self.data)
        out = Value(e, (self,), "exp")

        def _backward(grad: float, self: Value = self, e: float = e) -> None:
            self.grad += e * grad  # d/dx e**x = e**x

        out._backward = _backward
        return out

    def log(self) -> Value:
        """Natural logarithm."""
        x = self.data
        out = Value(math.log(x), (self,), "log")

        def _backward(grad: float, self: Value = self, x: float = x) -> None:
            self.grad += grad / x

        out._backward = _backward
        return out

    def sigmoid(self) -> Value:
        """1 / (1 + e**-x), evaluated so that e**|x| is never formed: no overflow at x = ±1000.

        One node rather than a composition of ``exp`` and ``/``: the composed graph would overflow
        for large negative x, and s * (1 - s) is the exact derivative.
        """
        x = self.data
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            z = math.exp(x)
            s = z / (1.0 + z)
        out = Value(s, (self,), "sigmoid")

        def _backward(grad: float, self: Value = self, s: float = s) -> None:
            self.grad += s * (1.0 - s) * grad

        out._backward = _backward
        return out

    # -- composed from the primitives -------------------------------------------------------------

    def __neg__(self) -> Value:  # -self
        return self * -1

    def __radd__(self, other: Number) -> Value:  # other + self
        return self + other

    def __sub__(self, other: Value | Number) -> Value:  # self - other
        return self + (-other)

    def __rsub__(self, other: Number) -> Value:  # other - self
        return other + (-self)

    def __rmul__(self, other: Number) -> Value:  # other * self
        return self * other

    def __truediv__(self, other: Value | Number) -> Value:  # self / other
        return self * other**-1

    def __rtruediv__(self, other: Number) -> Value:  # other / self
        return other * self**-1

    def __rpow__(self, other: Number) -> Value:  # other ** self
        return Value(other) ** self

    # -- the backward pass ------------------------------------------------------------------------

    def backward(self) -> None:
        """Set ``self.grad = 1`` and accumulate d(self)/d(node) into every node's ``grad``.

        Gradients add to what is already there (set each parameter's ``grad`` back to 0 between
        steps, or call ``zero_grad()`` on a ``micrograd.nn`` module), so a node used several
        times receives the sum of its contributions. The topological sort is iterative:
        graph depth is limited by memory, not by the recursion limit.
        """
        topo = toposort(self, _inputs)
        self.grad = 1.0
        for node in reversed(topo):
            node._backward(node.grad)

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"


def _dpow_dbase(base: float, exponent: float) -> float:
    """d(base**exponent)/d(base) = exponent * base**(exponent - 1), with PyTorch's edge cases.

    An exponent of 0 makes the power constant, so the derivative is 0 even at base 0; at
    base 0 a fractional or negative exponent gives an infinite slope instead of Python's
    ``ZeroDivisionError``.
    """
    if exponent == 0:
        return 0.0
    if base == 0 and exponent < 1:
        return math.copysign(math.inf, exponent)
    return exponent * base ** (exponent - 1)


def _dpow_dexponent(base: float, exponent: float, power: float) -> float:
    """d(base**exponent)/d(exponent) = base**exponent * ln(base), with PyTorch's edge cases.

    At base 0 with a non-negative exponent the power is flat (0 or 1), so the derivative is 0;
    a negative base has no real logarithm, so it is ``nan``.
    """
    if base > 0:
        return power * math.log(base)
    if base == 0 and exponent >= 0:
        return 0.0
    return math.nan
