"""The one graph walk both engines share: a topological order of a computation graph."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

Node = TypeVar("Node")

_INPUTS_DONE = object()  # stack marker: the node below it has all its inputs in the order


def toposort(root: Node, inputs: Callable[[Node], Iterable[Node]]) -> list[Node]:
    """Every node reachable from ``root`` through ``inputs(node)``, each after all of its
    inputs (``root`` comes last); nodes are told apart by identity.

    Depth-first post-order with an explicit stack, so graph depth is limited by memory, not by
    Python's recursion limit. On its first visit a node goes back on the stack under a marker,
    with its inputs above it: by the time the marker is popped, every input is in the order.
    """
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if node is _INPUTS_DONE:
            order.append(stack.pop())
        elif id(node) not in visited:
            visited.add(id(node))
            stack += (node, _INPUTS_DONE, *inputs(node))
    return order
