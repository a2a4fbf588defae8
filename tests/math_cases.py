"""One table of math cases, shared by the scalar (``Value``) and tensor (``Tensor``) engines.

Each :class:`MathCase` is a function written once against a tiny protocol that every engine
object here speaks (``Value``, ``Tensor``, ``torch.Tensor``, and the plain-math :class:`Ref`):

- operators ``+ - * / **`` and unary ``-``, with the engine object on either side and Python
  floats as constants (``2.0 * a``, ``1.0 / a``, ``2.0 ** a``); the exponent of ``**`` may be a
  float or an engine object;
- methods ``.exp() .log() .tanh() .relu() .sigmoid()``.

The function gets its inputs as already-wrapped engine objects, one per argument, and returns
one. It uses nothing else: no ``math`` calls, no Python ``if`` on values, so it works unchanged
elementwise on arrays.

Fields:

- ``fn``: the function, ``fn(*args) -> engine object``;
- ``inputs``: one point, a float per argument, that the scalar tests always check;
- ``domain``: an open interval ``(low, high)`` from which every argument may be drawn; ``fn`` is
  defined and smooth on it (no ``log`` of a non-positive number, no division by zero, no ``relu``
  kink), so central differences are valid anywhere inside. :meth:`MathCase.sample` draws points.

How an engine uses the table:

- forward: ``fn(*wrapped)`` agrees with :func:`reference`, the same ``fn`` evaluated on
  :class:`Ref` numbers (plain floats and the ``math`` module, float64);
- backward: the engine's gradients agree with :func:`central_difference` of the reference.

A tensor engine draws arrays instead of scalars, e.g.
``[rng.uniform(*case.domain, size=(3, 4)) for _ in range(case.arity)]``, and compares elementwise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MATH_CASES", "POW_EDGES", "MathCase", "Ref", "central_difference", "reference"]


@dataclass(frozen=True)
class MathCase:
    """A scalar function written against the shared protocol, a point, and a smooth domain."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[float, ...]
    domain: tuple[float, float] = (-2.0, 2.0)

    def __post_init__(self) -> None:
        low, high = self.domain
        if not all(low < x < high for x in self.inputs):
            raise ValueError(f"{self.name}: inputs {self.inputs} lie outside {self.domain}")

    @property
    def arity(self) -> int:
        """How many arguments ``fn`` takes."""
        return len(self.inputs)

    def sample(self, n: int, seed: int = 0) -> list[tuple[float, ...]]:
        """``n`` points drawn uniformly from the domain, reproducibly from ``seed``."""
        rng = random.Random(f"{self.name}:{seed}")
        low, high = self.domain
        return [tuple(rng.uniform(low, high) for _ in range(self.arity)) for _ in range(n)]


class Ref:
    """A float that speaks the case protocol with the ``math`` module: the forward reference.

    Deliberately the plain textbook formula for each op, independent of the engines' code.
    """

    __slots__ = ("x",)

    def __init__(self, x: float) -> None:
        self.x = float(x)

    @staticmethod
    def _x(v: Ref | float) -> float:
        return v.x if isinstance(v, Ref) else float(v)

    def __add__(self, o: Ref | float) -> Ref:
        return Ref(self.x + Ref._x(o))

    def __radd__(self, o: float) -> Ref:
        return Ref(Ref._x(o) + self.x)

    def __sub__(self, o: Ref | float) -> Ref:
        return Ref(self.x - Ref._x(o))

    def __rsub__(self, o: float) -> Ref:
        return Ref(Ref._x(o) - self.x)

    def __mul__(self, o: Ref | float) -> Ref:
        return Ref(self.x * Ref._x(o))

    def __rmul__(self, o: float) -> Ref:
        return Ref(Ref._x(o) * self.x)

    def __truediv__(self, o: Ref | float) -> Ref:
        return Ref(self.x / Ref._x(o))

    def __rtruediv__(self, o: float) -> Ref:
        return Ref(Ref._x(o) / self.x)

    def __pow__(self, o: Ref | float) -> Ref:
        return Ref(math.pow(self.x, Ref._x(o)))

    def __rpow__(self, o: float) -> Ref:
        return Ref(math.pow(Ref._x(o), self.x))

    def __neg__(self) -> Ref:
        return Ref(-self.x)

    def exp(self) -> Ref:
        return Ref(math.exp(self.x))

    def log(self) -> Ref:
        return Ref(math.log(self.x))

    def tanh(self) -> Ref:
        return Ref(math.tanh(self.x))

    def relu(self) -> Ref:
        return Ref(max(self.x, 0.0))

    def sigmoid(self) -> Ref:
        return Ref(1.0 / (1.0 + math.exp(-self.x)))


def reference(case: MathCase, point: Sequence[float]) -> float:
    """``case.fn`` at ``point``, computed with plain floats and the ``math`` module."""
    return case.fn(*(Ref(x) for x in point)).x


def central_difference(case: MathCase, point: Sequence[float], h: float = 1e-6) -> list[float]:
    """d fn / d argument_i at ``point`` by ``(f(x + h) - f(x - h)) / 2h``, in float64."""
    grads = []
    for i in range(len(point)):
        up = [*point]
        down = [*point]
        up[i] += h
        down[i] -= h
        grads.append((reference(case, up) - reference(case, down)) / (2 * h))
    return grads


MATH_CASES: list[MathCase] = [
    # one per primitive and operator, each side of the operator
    MathCase("add", lambda a, b: a + b, (0.7, -1.3)),
    MathCase("radd", lambda a: 2.5 + a, (0.7,)),
    MathCase("sub", lambda a, b: a - b, (0.7, -1.3)),
    MathCase("rsub", lambda a: 3.0 - a, (0.7,)),
    MathCase("mul", lambda a, b: a * b, (0.7, -1.3)),
    MathCase("rmul", lambda a: -1.5 * a, (0.7,)),
    MathCase("div", lambda a, b: a / b, (0.7, 1.9), (0.5, 3.0)),
    MathCase("rdiv", lambda a: 2.0 / a, (0.7,), (0.5, 3.0)),
    MathCase("neg", lambda a: -a, (0.7,)),
    MathCase("pow_int", lambda a: a**3, (-1.2,)),
    MathCase("pow_float", lambda a: a**2.5, (1.4,), (0.5, 3.0)),
    MathCase("pow_negative", lambda a: a**-2, (1.4,), (0.5, 3.0)),
    MathCase("pow_engine_exponent", lambda a, b: a**b, (1.4, 0.6), (0.5, 2.0)),
    MathCase("rpow", lambda a: 2.0**a, (0.7,)),
    MathCase("exp", lambda a: a.exp(), (0.7,)),
    MathCase("log", lambda a: a.log(), (0.7,), (0.1, 5.0)),
    MathCase("tanh", lambda a: a.tanh(), (0.7,)),
    MathCase("sigmoid", lambda a: a.sigmoid(), (-1.3,), (-6.0, 6.0)),
    MathCase("relu_positive", lambda a: a.relu(), (0.7,), (0.1, 3.0)),
    MathCase("relu_negative", lambda a: a.relu(), (-0.7,), (-3.0, -0.1)),
    # compositions: reused inputs, chains, the shapes of real losses
    MathCase("reused_input", lambda a: (a + a) * a, (0.7,)),
    MathCase("reused_twice", lambda a, b: a * b + a / (b * b + 1.0) - b, (0.7, -1.3)),
    MathCase("tanh_of_mul_plus_exp", lambda a, b: (a * b + a.exp()).tanh(), (0.3, -0.8)),
    MathCase(
        "neuron_tanh",
        lambda w1, x1, w2, x2, b: (w1 * x1 + w2 * x2 + b).tanh(),
        (0.5, -1.1, 0.3, 0.9, 0.1),
    ),
    MathCase("softplus", lambda a: (1.0 + a.exp()).log(), (-0.4,)),
    MathCase("log_sigmoid_mix", lambda a, b: (a.sigmoid() * b + 2.0).log(), (0.6, -1.0)),
    MathCase("quotient", lambda a, b: (a - b) / (a * a + 1.0), (0.7, -1.3)),
    MathCase("half_squared_error", lambda a, b: (a - b) ** 2 / 2.0, (0.7, -1.3)),
    MathCase(
        "bce",
        lambda z: -(0.3 * z.sigmoid().log() + 0.7 * (1.0 - z.sigmoid()).log()),
        (0.4,),
        (-4.0, 4.0),
    ),
    MathCase("relu_mix", lambda a, b: (a * b).relu() + (-a).relu() * b, (0.7, 1.3), (0.2, 3.0)),
    MathCase(
        "exp_power_chain", lambda a, b: (a.exp() ** b + 2.0 ** (a * b)).tanh() * a, (0.4, -0.5)
    ),
]


#: ``a ** b`` where the smooth cases above don't go, as PyTorch computes it:
#: ``(a, b, a ** b, d/da, d/db)``. A negative base with an integer exponent is an ordinary
#: power, but its log is not real; at base 0 the power is flat in ``b`` for ``b >= 0``, and an
#: exponent of 0 makes it flat in ``a`` too.
POW_EDGES: list[tuple[float, float, float, float, float]] = [
    (-2.0, 2.0, 4.0, -4.0, math.nan),
    (-2.0, 3.0, -8.0, 12.0, math.nan),
    (0.0, 2.0, 0.0, 0.0, 0.0),
    (0.0, 0.0, 1.0, 0.0, 0.0),
    (0.0, 0.5, 0.0, math.inf, 0.0),
    (2.0, 0.0, 1.0, 0.0, math.log(2.0)),
]
