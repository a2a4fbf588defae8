"""Graphviz DOT text for a computation graph, without the ``graphviz`` package.

``draw_dot(root)`` draws what Karpathy's micrograd draws: one record per node showing
``data | grad``, and for every node produced by an op a small ellipse with the op's name feeding
it. The result is plain DOT source, ready for ``st.graphviz_chart``, ``dot -Tsvg`` or any other
Graphviz renderer.
"""

from __future__ import annotations

from typing import Any

from micrograd.graph import toposort

RANKDIRS = ("LR", "RL", "TB", "BT")


def trace(root: Any) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """All nodes reachable from ``root`` through ``_prev`` (inputs before the nodes made from
    them, ``root`` last), and the edges ``(input, output)``, each once: a deterministic drawing
    of a graph of any depth."""
    nodes = toposort(root, lambda node: node._prev)
    edges = [(child, node) for node in nodes for child in dict.fromkeys(node._prev)]
    return nodes, edges


def draw_dot(root: Any, rankdir: str = "LR", fontsize: float = 14.0) -> str:
    """DOT source drawing the graph that ends at ``root`` (a ``Value`` or anything shaped like one).

    Each node is a record ``{ label | data 1.0000 | grad 0.5000 }`` (the label when the node has
    one, ``Value(2.0, label="x1")``); a node made by an op also gets an
    ellipse labelled with the op (``+``, ``×``, ``ReLU``, ``^2``...) with an edge into the record,
    and the op's inputs have edges into that ellipse. ``rankdir`` is Graphviz's layout direction:
    ``"LR"`` (left to right, the default), ``"RL"``, ``"TB"`` or ``"BT"``. ``fontsize`` is the
    records' text size in points; a larger one with tight spacing keeps the text readable when
    a viewer shrinks the drawing to a narrow screen.

    Raises:
        ValueError: if ``rankdir`` is not one of those four.
    """
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be one of {', '.join(RANKDIRS)}, not {rankdir!r}")
    nodes, edges = trace(root)
    names = {id(node): f"n{i}" for i, node in enumerate(nodes)}

    lines = [
        "digraph G {",
        f"  rankdir={rankdir};",
        "  nodesep=0.15; ranksep=0.25;",
        f'  node [fontname="Helvetica", fontsize={fontsize:g}, margin="0.06,0.03"];',
    ]
    for node in nodes:
        name = names[id(node)]
        fields = (f"data {_number(node.data)}", f"grad {_number(node.grad)}")
        if getattr(node, "label", ""):
            fields = (str(node.label), *fields)
        label = "{ " + " | ".join(_escape_field(field) for field in fields) + " }"
        lines.append(f'  {name} [shape=record, label="{label}"];')
        if node._op:
            op_label = _escape_string(_readable_op(str(node._op)))
            lines.append(
                f'  {name}_op [shape=ellipse, label="{op_label}", fontsize={fontsize:g}, '
                "width=0.3, height=0.3, margin=0.02];"
            )
            lines.append(f"  {name}_op -> {name};")
    for child, node in edges:
        target = names[id(node)] + ("_op" if node._op else "")
        lines.append(f"  {names[id(child)]} -> {target};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _readable_op(op: str) -> str:
    """An op's name as a person reads it: ``*`` is ×, ``**2`` is ^2."""
    return op.replace("**", "^").replace("*", "×")


def _number(x: Any) -> str:
    """``%.4f`` like Karpathy's labels, falling back to ``str`` for what isn't a real number."""
    try:
        return f"{x:.4f}"
    except (TypeError, ValueError):
        return str(x)


def _escape_string(text: str) -> str:
    """Escape text for a double-quoted DOT string."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_field(field: str) -> str:
    """Escape one field of a record label: a quoted string where ``{}|<>`` are also syntax."""
    escaped = _escape_string(field)
    for ch in "{}|<>":
        escaped = escaped.replace(ch, "\\" + ch)
    return escaped
