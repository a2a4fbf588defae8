"""The scalar engine end to end: Karpathy's ``MLP`` on ``Value`` objects, fed tiny images.

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
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from micrograd.engine import Value
from micrograd.nn import MLP
from models.io import ModelFileError, load_model_file
from models.preprocess import PreprocessConfig, normalize
from training.data import class_weights
from training.loop import Callback, FitResult
from training.metrics import summarize

ARCHITECTURE_TYPE = "scalar-mlp"


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
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.05,
    batch_size: int = 32,
    alpha: float = 1e-4,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` in place with minibatch SGD on the class-weighted hinge loss.

    x: ``float (N, nin)`` features; y: ``(N,)`` labels in {0, 1} (1 = hotdog).
    val_x, val_y: scored after every epoch when given.
    lr decays linearly from ``lr`` to ``lr / 10`` over the run; ``alpha`` weighs the L2 term.
    Each sample's loss is weighted by ``training.data.class_weights`` so that the rarer class
    (hotdogs, in most datasets) counts as much as the other.

    History records have the keys of ``training.loop.fit``'s plus ``images_per_second``; the
    model keeps its last epoch's weights (``best_epoch`` is the last epoch).
    """
    started = time.perf_counter()
    y = np.asarray(y, dtype=np.int64)
    sample_weights = class_weights(y)[y]
    rng = np.random.default_rng(seed)
    steps = math.ceil(len(x) / batch_size)
    total_steps = epochs * steps
    info = {
        "epochs": epochs,
        "start_epoch": 0,
        "steps_per_epoch": steps,
        "n_train": len(x),
        "n_val": 0 if val_x is None else len(val_x),
        "n_parameters": len(model.parameters()),
    }
    for cb in callbacks:
        cb.on_train_start(info)
    history: list[dict[str, Any]] = []
    best_metrics: dict[str, Any] = {}
    for epoch in range(1, epochs + 1):
        for cb in callbacks:
            cb.on_epoch_start(epoch, steps)
        epoch_start = time.perf_counter()
        perm = rng.permutation(len(x))
        loss_sum, correct, step_lr = 0.0, 0, lr
        for step in range(steps):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            step_lr = lr * (1.0 - 0.9 * ((epoch - 1) * steps + step) / total_steps)
            batch_loss, batch_correct = _sgd_step(
                model, x[idx], y[idx], sample_weights[idx], step_lr, alpha
            )
            loss_sum += batch_loss * len(idx)
            correct += batch_correct
            seen = min((step + 1) * batch_size, len(x))
            for cb in callbacks:
                cb.on_batch_end(step + 1, steps, loss_sum / seen, correct / seen)
        train_seconds = time.perf_counter() - epoch_start

        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / len(x),
            "train_accuracy": correct / len(x),
            "val_loss": None,
            "val_accuracy": None,
            "val_balanced_accuracy": None,
            "val_roc_auc": None,
            "lr": step_lr,
        }
        if val_x is not None and val_y is not None:
            s = scores(model, val_x)
            best_metrics = {
                **summarize(val_y, _sigmoid(s)),
                "loss": _hinge(s, np.asarray(val_y)),
            }
            record.update(
                val_loss=best_metrics["loss"],
                val_accuracy=best_metrics["accuracy"],
                val_balanced_accuracy=best_metrics["balanced_accuracy"],
                val_roc_auc=best_metrics["roc_auc"],
            )
        record["seconds"] = time.perf_counter() - epoch_start
        record["images_per_second"] = len(x) / train_seconds
        history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(epoch, record)
    result = FitResult(history, epochs, best_metrics, time.perf_counter() - started)
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def p_hotdog(model: MLP, x: np.ndarray) -> np.ndarray:
    """``sigmoid(score)`` ``float64 (N,)`` for features ``(N, nin)``."""
    return _sigmoid(scores(model, x))


def state_arrays(model: MLP) -> dict[str, np.ndarray]:
    """The weights as arrays: ``layers.{i}.weight`` ``(nout, nin)`` and ``layers.{i}.bias``
    ``(nout,)``, one row per neuron."""
    state = {}
    for i, layer in enumerate(model.layers):
        state[f"layers.{i}.weight"] = np.array([[w.data for w in n.w] for n in layer.neurons])
        state[f"layers.{i}.bias"] = np.array([n.b.data for n in layer.neurons])
    return state


def load(path: str | os.PathLike[str]) -> tuple[MLP, PreprocessConfig]:
    """Rebuild a scalar MLP and its preprocessing from a weights file written by the
    ``scalar-mlp`` training preset (``models.load`` does not read these)."""
    state, config = load_model_file(path)
    arch = config.get("architecture", {})
    if arch.get("type") != ARCHITECTURE_TYPE:
        raise ModelFileError(f"{path} is not a scalar-mlp weights file")
    model = MLP(arch["nin"], arch["nouts"])
    for i, layer in enumerate(model.layers):
        weight, bias = state[f"layers.{i}.weight"], state[f"layers.{i}.bias"]
        if weight.shape != (len(layer.neurons), len(layer.neurons[0].w)):
            raise ModelFileError(f"{path}: layer {i} has shape {weight.shape}")
        for neuron, row, b in zip(layer.neurons, weight, bias, strict=True):
            for w, value in zip(neuron.w, row, strict=True):
                w.data = float(value)
            neuron.b.data = float(b)
    return model, PreprocessConfig.from_dict(config["preprocess"])
