"""The scalar engine: Karpathy's README numbers, the shared math table, edge cases, draw_dot."""

from __future__ import annotations

import math
import random
import re
import sys

import pytest

from micrograd.engine import Value
from micrograd.nn import MLP, Layer, Neuron, ScalarModule
from micrograd.viz import draw_dot
from tests.conftest import optional_import
from tests.math_cases import (
    MATH_CASES,
    POW_EDGES,
    MathCase,
    central_difference,
    reference,
)

case_params = pytest.mark.parametrize("case", MATH_CASES, ids=[c.name for c in MATH_CASES])


def points(case: MathCase) -> list[tuple[float, ...]]:
    """The case's own point and a few drawn from its domain."""
    return [case.inputs, *case.sample(3)]


def karpathy_readme_example() -> tuple[Value, Value, Value]:
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    return a, b, g


# -- Karpathy's README ----------------------------------------------------------------------------


def test_karpathy_readme_example_prints_the_same_numbers():
    a, b, g = karpathy_readme_example()
    assert f"{g.data:.4f}" == "24.7041"
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


def test_karpathy_readme_example_matches_pytorch():
    torch = optional_import("torch")
    a = torch.tensor([-4.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    ours_a, ours_b, ours_g = karpathy_readme_example()
    assert ours_g.data == pytest.approx(g.item(), rel=1e-12)
    assert ours_a.grad == pytest.approx(a.grad.item(), rel=1e-12)
    assert ours_b.grad == pytest.approx(b.grad.item(), rel=1e-12)


# -- the shared math table ------------------------------------------------------------------------


@case_params
def test_forward_matches_plain_math(case: MathCase):
    for point in points(case):
        out = case.fn(*(Value(x) for x in point))
        assert isinstance(out, Value)
        assert out.data == pytest.approx(reference(case, point), rel=1e-12, abs=1e-12)


@case_params
def test_gradients_match_central_differences(case: MathCase):
    for point in points(case):
        args = [Value(x) for x in point]
        case.fn(*args).backward()
        expected = central_difference(case, point)
        for i, (arg, numeric) in enumerate(zip(args, expected, strict=True)):
            assert arg.grad == pytest.approx(numeric, rel=1e-5, abs=1e-7), (
                f"{case.name}: d/d arg{i} at {point}"
            )


@case_params
def test_forward_and_gradients_match_pytorch(case: MathCase):
    torch = optional_import("torch")
    for point in points(case):
        args = [Value(x) for x in point]
        out = case.fn(*args)
        out.backward()
        targs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in point]
        tout = case.fn(*targs)
        tout.backward()
        assert out.data == pytest.approx(tout.item(), rel=1e-12, abs=1e-12)
        for arg, targ in zip(args, targs, strict=True):
            assert arg.grad == pytest.approx(targ.grad.item(), rel=1e-10, abs=1e-12)


# -- graph edge cases -----------------------------------------------------------------------------


def test_input_used_twice_in_one_op_gets_both_gradients():
    x = Value(3.0)
    y = (x + x) * x  # 2x², dy/dx = 4x
    y.backward()
    assert y.data == 18.0
    assert x.grad == 12.0


def test_reused_intermediate_nodes_accumulate():
    a = Value(2.0)
    b = a * a  # reused below: both branches must reach a
    c = b + b
    d = c * a  # 2a³, dd/da = 6a²
    d.backward()
    assert d.data == 16.0
    assert b.grad == 4.0  # dd/db = 2a
    assert a.grad == 24.0


def test_backward_accumulates_until_zero_grad():
    w = Value(3.0)
    model = Neuron(1, nonlin=False)
    model.w[0] = w
    for _ in range(2):
        model([2.0]).backward()
    assert w.grad == 4.0  # two passes of d(2w)/dw
    model.zero_grad()
    assert w.grad == 0.0


def test_deep_chain_backward_under_the_default_recursion_limit():
    assert sys.getrecursionlimit() <= 10_000
    x = Value(0.5)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.25
    y.backward()
    assert y.data == pytest.approx(0.5 + 25_000.0)
    assert x.grad == 1.0


@pytest.mark.parametrize(("x", "expected"), [(1000.0, 1.0), (-1000.0, 0.0), (0.0, 0.5)])
def test_sigmoid_is_stable_at_extremes(x: float, expected: float):
    v = Value(x)
    s = v.sigmoid()
    s.backward()
    assert s.data == expected
    assert v.grad == expected * (1.0 - expected)


def test_value_exponent():
    a, b = Value(2.0), Value(3.0)
    c = a**b
    c.backward()
    assert c.data == 8.0
    assert a.grad == pytest.approx(12.0)  # b a^(b-1)
    assert b.grad == pytest.approx(8.0 * math.log(2.0))  # a^b ln a


def test_number_raised_to_value():
    x = Value(3.0)
    y = 2**x
    y.backward()
    assert y.data == 8.0
    assert x.grad == pytest.approx(8.0 * math.log(2.0))


def test_value_exponent_edge_cases_follow_pytorch():
    base, exponent = Value(0.0), Value(2.0)
    (base**exponent).backward()
    assert exponent.grad == 0.0  # 0**b is flat in b for b >= 0
    base, exponent = Value(-2.0), Value(2.0)
    (base**exponent).backward()
    assert base.grad == -4.0
    assert math.isnan(exponent.grad)  # no real log of a negative base


def test_unsupported_exponent_type_raises_type_error():
    with pytest.raises(TypeError):
        Value(2.0) ** "3"  # type: ignore[operator]


def test_values_hash_by_identity():
    a, b = Value(1.0), Value(1.0)
    assert a != b
    assert len({a, b}) == 2
    assert {a: 1}[a] == 1


def test_graph_bookkeeping_and_repr():
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    assert c._op == "*"
    assert set(c._prev) == {a, b}
    assert a._prev == () and a._op == ""
    assert repr(c) == "Value(data=-6.0, grad=0.0)"


# -- scalar networks ------------------------------------------------------------------------------


def test_mlp_structure_matches_karpathy():
    random.seed(0)
    model = MLP(2, [16, 16, 1])
    assert isinstance(model, ScalarModule)
    assert len(model.parameters()) == (2 * 16 + 16) + (16 * 16 + 16) + (16 + 1)
    assert repr(model.layers[-1]) == "Layer of [LinearNeuron(16)]"
    assert repr(model.layers[0].neurons[0]) == "ReLUNeuron(2)"
    assert all(-1.0 <= p.data <= 1.0 for p in model.parameters())
    assert isinstance(model([0.5, -0.5]), Value)  # one output: a Value, not a list
    assert len(Layer(3, 4)([1.0, 2.0, 3.0])) == 4


def test_mlp_gradients_match_pytorch():
    torch = optional_import("torch")
    random.seed(1)
    model = MLP(3, [4, 4, 2])
    x = [0.5, -1.5, 2.0]
    out1, out2 = model(x)
    (out1 * 0.7 - out2 * 1.3).backward()  # non-uniform weights on the two outputs

    tx = torch.tensor(x, dtype=torch.float64)
    h = tx
    tparams = []
    for i, layer in enumerate(model.layers):
        W = torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64)
        bias = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64)
        W.requires_grad_(True)
        bias.requires_grad_(True)
        tparams.append((W, bias))
        h = W @ h + bias
        if i < len(model.layers) - 1:
            h = h.relu()
    (h[0] * 0.7 - h[1] * 1.3).backward()
    assert out1.data == pytest.approx(h[0].item(), rel=1e-12)
    for layer, (W, bias) in zip(model.layers, tparams, strict=True):
        for j, neuron in enumerate(layer.neurons):
            assert [w.grad for w in neuron.w] == pytest.approx(W.grad[j].tolist(), rel=1e-10)
            assert neuron.b.grad == pytest.approx(bias.grad[j].item(), rel=1e-10)


# -- draw_dot -------------------------------------------------------------------------------------


def test_draw_dot_shows_every_node_and_edge():
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    d = (c + a).relu()
    d.backward()
    dot = draw_dot(d)

    assert dot.startswith("digraph G {") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert "rankdir=LR;" in dot
    records = re.findall(r'^\s*(n\d+) \[shape=record, label="([^"]*)"\];$', dot, re.M)
    labels = {label for _, label in records}
    assert labels == {
        "{ data 2.0000 | grad 0.0000 }",  # a: d = relu(-4) = 0, so nothing flows back
        "{ data -3.0000 | grad 0.0000 }",
        "{ data -6.0000 | grad 0.0000 }",
        "{ data -4.0000 | grad 0.0000 }",
        "{ data 0.0000 | grad 1.0000 }",
    }
    ops = re.findall(r'^\s*(n\d+)_op \[shape=ellipse, label="([^"]*)"', dot, re.M)
    assert sorted(label for _, label in ops) == ["+", "ReLU", "×"]
    edges = re.findall(r"^\s*(n\d+(?:_op)?) -> (n\d+(?:_op)?);$", dot, re.M)
    declared = {name for name, _ in records} | {f"{name}_op" for name, _ in ops}
    assert all(src in declared and dst in declared for src, dst in edges)
    # 3 op -> result edges, and inputs -> op: a, b -> *; c, a -> +; sum -> ReLU
    assert len(edges) == 3 + 5


def test_draw_dot_shows_node_labels_and_readable_operators():
    x = Value(3.0, label="x")
    y = x**2
    y.label = "y"
    dot = draw_dot(y)
    assert '"{ x | data 3.0000 | grad 6.0000 }"' not in dot  # no backward yet: grads are 0
    y.backward()
    dot = draw_dot(y)
    assert '"{ x | data 3.0000 | grad 6.0000 }"' in dot
    assert '"{ y | data 9.0000 | grad 1.0000 }"' in dot
    assert 'label="^2"' in dot


def test_draw_dot_escapes_labels_and_validates_rankdir():
    v = Value(1.0)
    w = Value(2.0, (v,), 'we"ird{op}|<x>\\')
    dot = draw_dot(w, rankdir="TB")
    assert "rankdir=TB;" in dot
    assert 'label="we\\"ird{op}|<x>\\\\"' in dot
    record = draw_dot(Value("a|{b}<c>"))  # type: ignore[arg-type]
    assert 'label="{ data a\\|\\{b\\}\\<c\\> | grad 0.0000 }"' in record
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(w, rankdir="LR; evil")


def test_draw_dot_walks_deep_graphs_iteratively():
    y = Value(1.0)
    for _ in range(5_000):
        y = y + 1.0
    dot = draw_dot(y)
    assert dot.count("shape=record") == 1 + 2 * 5_000


@pytest.mark.parametrize(("a", "b", "value", "da", "db"), POW_EDGES)
def test_pow_at_the_domain_edges(a: float, b: float, value: float, da: float, db: float) -> None:
    x, y = Value(a), Value(b)
    out = x**y
    out.backward()
    assert out.data == value
    assert same(x.grad, da) and same(y.grad, db), (x.grad, y.grad)
    z = Value(a)
    (z**b).backward()  # a constant exponent: the same value and base gradient
    assert same(z.grad, da)


def same(u: float, v: float) -> bool:
    """Equal, or both nan."""
    return u == v or (math.isnan(u) and math.isnan(v))
