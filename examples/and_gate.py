"""A single sigmoid neuron learns the AND gate.

The neuron computes ``p = sigmoid(w1 * x1 + w2 * x2 + b)``; gradient descent on the binary
cross-entropy ``-(y log p + (1 - y) log(1 - p))``, averaged over the four rows of the truth
table, drives ``p`` towards 1 for (1, 1) and towards 0 elsewhere.

Run it with ``python examples/and_gate.py``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

# The repository is not an installed package: make `micrograd` importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from micrograd.engine import Value
from micrograd.nn import Neuron

TRUTH_TABLE = [((0.0, 0.0), 0.0), ((0.0, 1.0), 0.0), ((1.0, 0.0), 0.0), ((1.0, 1.0), 1.0)]


def binary_cross_entropy(p: Value, y: float) -> Value:
    """-(y log p + (1 - y) log(1 - p)) for a probability ``p`` in (0, 1) and a target ``y``."""
    return -(y * p.log() + (1.0 - y) * (1.0 - p).log())


def main(
    steps: int = 1000, learning_rate: float = 1.0, seed: int = 0, verbose: bool = True
) -> list[tuple[tuple[float, float], float]]:
    """Train the neuron; return the learned truth table as ``[((x1, x2), p), ...]``."""
    random.seed(seed)
    neuron = Neuron(2, nonlin=False)  # linear: the sigmoid is applied on top

    for step in range(steps):
        losses = [binary_cross_entropy(neuron(x).sigmoid(), y) for x, y in TRUTH_TABLE]
        loss = sum(losses) * (1.0 / len(losses))
        neuron.zero_grad()
        loss.backward()
        for p in neuron.parameters():
            p.data -= learning_rate * p.grad
        if verbose and (step % 100 == 0 or step == steps - 1):
            print(f"step {step} loss {loss.data:.6f}")

    table = [(x, neuron(x).sigmoid().data) for x, _ in TRUTH_TABLE]
    if verbose:
        print("x1 x2 | p(AND) | output")
        for (x1, x2), p in table:
            print(f" {x1:.0f}  {x2:.0f} | {p:.4f} | {round(p)}")
    return table


if __name__ == "__main__":
    main()
