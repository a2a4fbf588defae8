"""Hotdogs on the scalar engine: Karpathy's ``MLP`` on ``Value`` objects, fed tiny images.

    python examples/hotdogs_on_values.py --data ../shared/data [--size 8] [--epochs 10]


Every input pixel becomes a ``Value`` and every multiply-add a node of the graph, so one 8x8
grayscale image through ``MLP(64, [16, 1])`` builds about 2,000 nodes, and training runs at
hundreds of images per second rather than thousands. It is the original micrograd idea
applied to the hotdog problem, small enough to read node by node; the Tensor engine does
the same arithmetic on whole arrays.

Training follows micrograd's ``demo.ipynb``: labels are ``-1`` / ``+1``, the loss is the
hinge loss ``mean(relu(1 - y * score))`` plus L2 regularisation, and plain SGD with a
linearly decaying learning rate updates ``p.data`` in place. "Hotdog" means ``score > 0``;
``sigmoid(score)`` is reported as ``p_hotdog`` (a monotone score, not a calibrated
probability).

It reads the same folders, decodes through the same preprocessing and splits the same way as
``python -m training train``, and prints the held-out figures the training CLI prints.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from micrograd.engine import Value
from micrograd.nn import MLP
from models.preprocess import PreprocessConfig, normalize
from training.data import class_weights, load_dataset, stratified_split
from training.metrics import summarize


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector.

    A batch's graph is about 10**5 ``Value`` objects without reference cycles (see
    ``micrograd.engine``), so reference counting frees it. The cyclic collector would still
    scan those objects again and again while they are being allocated, which makes training
    several times slower and frees nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def features(images: np.ndarray, preprocess: PreprocessConfig) -> np.ndarray:
    """``uint8 (N, size, size, 3)`` -> ``float64 (N, C * size * size)``: normalised, flattened
    pixels (``models.preprocess.normalize``, so the scalar model sees what the others see)."""
    x = normalize(images, preprocess)
    return x.reshape(len(x), -1).astype(np.float64)


def scores(model: MLP, x: np.ndarray) -> np.ndarray:
    """Raw scores ``float64 (N,)`` for features ``(N, nin)``; positive means hotdog."""
    with _without_cyclic_gc():
        return np.array([model(row.tolist()).data for row in x], dtype=np.float64)


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * s))  # = 1 / (1 + exp(-s)), without overflow


def _hinge(s: np.ndarray, y01: np.ndarray) -> float:
    return float(np.maximum(0.0, 1.0 - (2 * y01 - 1) * s).mean())


def _sgd_step(
    model: MLP, xb: np.ndarray, yb: np.ndarray, wb: np.ndarray, lr: float, alpha: float
) -> tuple[float, int]:
    """One SGD step on a batch ``(B, nin)``, labels ``(B,)`` in {0, 1}, sample weights
    ``(B,)``: returns the batch's weighted mean hinge loss and how many it classified right
    (both before the update)."""
    params = model.parameters()
    with _without_cyclic_gc():
        targets = [2 * int(t) - 1 for t in yb]  # {0, 1} -> {-1, +1}
        outs = [model(row.tolist()) for row in xb]
        margins = [
            (1 + -t * s).relu() * float(w) for t, s, w in zip(targets, outs, wb, strict=True)
        ]
        data_loss = sum(margins, Value(0.0)) * (1.0 / len(xb))
        reg_loss = alpha * sum((p * p for p in params), Value(0.0))
        model.zero_grad()
        (data_loss + reg_loss).backward()
        for p in params:
            p.data -= lr * p.grad
    correct = sum((s.data > 0) == (t > 0) for s, t in zip(outs, targets, strict=True))
    return data_loss.data, int(correct)


def fit_scalar(
    model: MLP,
    x: np.ndarray,
    y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    *,
    epochs: int = 10,
    lr: float = 0.03,
    batch_size: int = 16,
    alpha: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """Train ``model`` in place with minibatch SGD on the class-weighted hinge loss, printing
    one line per epoch; return the last epoch's held-out ``summarize`` figures.

    x: ``float (N, nin)`` features; y: ``(N,)`` labels in {0, 1} (1 = hotdog).
    lr decays linearly from ``lr`` to ``lr / 10`` over the run; ``alpha`` weighs the L2 term.
    Each sample's loss is weighted by ``training.data.class_weights`` so that the rarer class
    (hotdogs, in most datasets) counts as much as the other.
    """
    y = np.asarray(y, dtype=np.int64)
    sample_weights = class_weights(y)[y]
    rng = np.random.default_rng(seed)
    steps = math.ceil(len(x) / batch_size)
    metrics: dict[str, float] = {}
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        perm = rng.permutation(len(x))
        loss_sum, correct = 0.0, 0
        for step in range(steps):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            step_lr = lr * (1.0 - 0.9 * ((epoch - 1) * steps + step) / (epochs * steps))
            batch_loss, batch_correct = _sgd_step(
                model, x[idx], y[idx], sample_weights[idx], step_lr, alpha
            )
            loss_sum += batch_loss * len(idx)
            correct += batch_correct
        speed = len(x) / (time.perf_counter() - started)
        metrics = summarize(val_y, p_hotdog(model, val_x))
        print(
            f"epoch {epoch}/{epochs}  train loss {loss_sum / len(x):.3f} "
            f"acc {correct / len(x):.3f}  held-out acc {metrics['accuracy']:.3f} "
            f"bal {metrics['balanced_accuracy']:.3f}  {speed:.0f} images/second"
        )
    return metrics


def p_hotdog(model: MLP, x: np.ndarray) -> np.ndarray:
    """``sigmoid(score)`` ``float64 (N,)`` for features ``(N, nin)``."""
    return _sigmoid(scores(model, x))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Hotdogs on micrograd's scalar Value engine.")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR")
    parser.add_argument("--size", type=int, default=8, help="image side (default 8)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden neurons (default 16)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=400, help="images to use (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pre = PreprocessConfig(size=args.size, grayscale=True)
    data = load_dataset(args.data, size=pre.size, cache_size=pre.size)
    if args.limit < len(data):
        _, keep = stratified_split(data.labels, args.limit / len(data), args.seed, data.sources)
        data = data.subset(keep)
    train_idx, val_idx = stratified_split(data.labels, 0.15, args.seed, groups=data.sources)
    train, val = data.subset(train_idx), data.subset(val_idx)
    random.seed(args.seed)  # micrograd's Neuron draws its initial weights from `random`
    model = MLP(pre.channels * pre.size**2, [args.hidden, 1])
    print(f"{model.__class__.__name__}({pre.channels * pre.size**2}, [{args.hidden}, 1]): "
          f"{len(model.parameters())} Value parameters; {len(train)} photos to train on, "
          f"{len(val)} held out")  # fmt: skip
    metrics = fit_scalar(
        model,
        features(train.eval_images, pre),
        train.labels,
        features(val.eval_images, pre),
        val.labels,
        epochs=args.epochs,
        seed=args.seed,
    )
    print(f"held out: accuracy {metrics['accuracy']:.3f}, "
          f"balanced accuracy {metrics['balanced_accuracy']:.3f}")  # fmt: skip
    return metrics


if __name__ == "__main__":
    main()
