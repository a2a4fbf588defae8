"""Karpathy's micrograd demo: a scalar MLP learns to separate two interleaving half moons.

``MLP(2, [16, 16, 1])`` is trained on 100 noisy moons points with the SVM max-margin loss plus L2
regularisation (alpha 1e-4) by plain SGD whose learning rate decays from 1.0 to 0.1 over 100
steps. It reaches 100% training accuracy.

Run it with ``python examples/moons.py``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

# The repository is not an installed package: make `micrograd` importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from micrograd.engine import Value
from micrograd.nn import MLP


def make_moons(
    n_samples: int = 100, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, like ``sklearn.datasets.make_moons``.

    Returns ``X`` of shape ``(n_samples, 2)`` and labels ``y`` of shape ``(n_samples,)`` in
    {0, 1}: the upper moon (label 0) is centred at (0, 0), the lower one (label 1) at (1, 0.5),
    and each point is moved by Gaussian noise of standard deviation ``noise``.
    """
    n_upper = n_samples // 2
    n_lower = n_samples - n_upper
    t_upper = np.linspace(0.0, np.pi, n_upper)
    t_lower = np.linspace(0.0, np.pi, n_lower)
    upper = np.stack([np.cos(t_upper), np.sin(t_upper)], axis=1)
    lower = np.stack([1.0 - np.cos(t_lower), 0.5 - np.sin(t_lower)], axis=1)
    X = np.concatenate([upper, lower])
    y = np.concatenate([np.zeros(n_upper, dtype=np.int64), np.ones(n_lower, dtype=np.int64)])
    rng = np.random.default_rng(seed)
    X = X + rng.normal(scale=noise, size=X.shape)
    order = rng.permutation(n_samples)
    return X[order], y[order]


def loss_and_accuracy(
    model: MLP, xs: list[list[float]], ys: list[float], alpha: float = 1e-4
) -> tuple[Value, float]:
    """SVM max-margin loss + ``alpha`` * L2 of the weights, and accuracy; labels ``ys`` are ±1."""
    scores = [model([Value(x) for x in row]) for row in xs]
    losses = [(1 + -y * score).relu() for y, score in zip(ys, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    correct = [(y > 0) == (score.data > 0) for y, score in zip(ys, scores, strict=True)]
    return data_loss + reg_loss, sum(correct) / len(correct)


def sgd_step(
    model: MLP, xs: list[list[float]], ys: list[float], learning_rate: float
) -> tuple[float, float]:
    """One step of gradient descent on the whole batch; returns the loss and accuracy before it.

    The graph lives only inside this call: returning numbers rather than the loss ``Value`` lets it
    be freed before the next forward pass builds a new one.
    """
    total_loss, accuracy = loss_and_accuracy(model, xs, ys)
    model.zero_grad()
    total_loss.backward()
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, accuracy


def main(n_samples: int = 100, steps: int = 100, seed: int = 1337, verbose: bool = True) -> float:
    """Train on ``n_samples`` moons points for ``steps`` SGD steps; return the final accuracy.

    The accuracy is measured on the training set after the last update.
    """
    random.seed(seed)  # the MLP draws its initial weights from Python's `random`
    X, y = make_moons(n_samples, noise=0.1, seed=seed)
    xs, ys = X.tolist(), (2.0 * y - 1.0).tolist()  # labels -1 / +1 for the max-margin loss
    model = MLP(2, [16, 16, 1])
    if verbose:
        print(model)
        print(f"number of parameters {len(model.parameters())}")

    for k in range(steps):
        learning_rate = 1.0 - 0.9 * k / steps
        loss, accuracy = sgd_step(model, xs, ys, learning_rate)
        if verbose:
            print(f"step {k} loss {loss:.6f}, accuracy {accuracy * 100:.1f}%")

    _, accuracy = loss_and_accuracy(model, xs, ys)
    if verbose:
        print(f"final training accuracy {accuracy * 100:.1f}%")
    return accuracy


if __name__ == "__main__":
    main()
