"""The training loop: ``fit(model, train, val, config)``, and ``fit_rows`` beneath it.

``fit_rows`` trains on any ``Rows`` (labelled rows that know how to become model inputs);
``fit`` gives it ``ImageRows``, images of a ``Dataset``. Fine-tuning trains on rows of cached
backbone features instead (``training.finetune``), through the same loop.

One step: draw indices (balanced batches, or a shuffled permutation with a class-weighted
loss), cut random crops out of the uint8 training squares (``training.augment``), normalise
them with THE preprocessing function (``models.preprocess.normalize``), forward, cross-entropy,
backward, optional gradient clipping, optimizer step, learning-rate schedule step. After each
epoch the model is scored on ``val.eval_images`` (the exact pixels the app would feed it) and a
checkpoint is written.

Reproducibility: every random draw comes from one numpy ``Generator`` seeded by
``TrainConfig.seed`` (batches, augmentation) or from the model's own Dropout generators. The
checkpoint stores all of their states next to the weights and the optimizer and scheduler
state, so a run stopped after epoch k and resumed ends with the same weights, bit for bit, as
one that never stopped.

Progress reaches the caller through ``Callback`` objects; the loop itself prints nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from micrograd import Tensor, no_grad, optim
from micrograd import functional as F
from micrograd.nn import Module
from models.classifier import eval_batch_size, forward_in_batches
from models.io import ModelFileError, load_arrays, save_arrays
from models.preprocess import PreprocessConfig, normalize
from training.augment import Augmenter
from training.data import Dataset, balanced_batches, class_weights
from training.metrics import summarize

CHECKPOINT_VERSION = 1
OPTIMIZERS = ("sgd", "adam", "adamw")


class TrainingDiverged(ArithmeticError):
    """The loss or the weights stopped being finite numbers (one-line message)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or from a different run (one-line message)."""


@dataclass
class TrainConfig:
    """Everything that decides the result of ``fit`` (JSON-able with ``to_dict``).

    epochs: passes over the training set. batch_size: images per step.
    optimizer: "adamw", "adam" or "sgd" (with ``momentum``). lr: peak learning rate.
    weight_decay: decoupled for AdamW, L2 for Adam and SGD.
    warmup_epochs: linear warm-up length (may be fractional); then cosine decay to ``min_lr``.
    label_smoothing: cross-entropy target smoothing.
    balanced: half of every batch is hotdog (``balanced_batches``); otherwise shuffled epochs
        with a class-weighted loss (``class_weights``).
    source_power: with ``balanced``, each class draws from source ``s`` in proportion to
        ``count_s ** source_power``: 1 keeps the natural mix, 0 gives every source an equal
        share (``balanced_batches``' ``group_power``).
    augment: ``training.augment.AugmentConfig`` fields (``{}`` = defaults; ``out_size`` is
        always the preprocessing size); None trains on the serving pixels without augmentation.
    grad_clip: clip the global gradient norm to this (0 = off).
    seed: seeds batch order and augmentation (the model's own init is seeded by its config).
    patience: stop after this many epochs without a better validation balanced accuracy
        (ties broken by lower validation loss); 0 = never stop early.
    preprocess: ``PreprocessConfig.to_dict()``; the size must match the datasets' ``size``.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    balanced: bool = True
    source_power: float = 1.0
    augment: dict[str, Any] | None = field(default_factory=dict)
    grad_clip: float = 0.0
    seed: int = 0
    patience: int = 0
    preprocess: dict[str, Any] = field(default_factory=lambda: PreprocessConfig().to_dict())

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (BatchNorm), not {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, not {self.lr}, {self.min_lr}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs], not {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), not {self.label_smoothing}")
        if self.patience < 0 or self.grad_clip < 0 or self.source_power < 0:
            raise ValueError("patience, grad_clip and source_power must not be negative")
        # count ** power overflows long before 16: 0 is every source alike, 1 the natural mix
        if self.source_power > 4:
            raise ValueError(f"source_power must be at most 4, not {self.source_power}")
        PreprocessConfig.from_dict(self.preprocess)  # fail now, not after the first epoch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists, as after a JSON round trip)."""
        return json.loads(json.dumps(asdict(self)))


class Callback:
    """Hooks ``fit`` calls while it runs; subclass and override the ones you need.

    ``on_train_start(info)``: ``info`` has ``epochs``, ``start_epoch`` (epochs already done,
    > 0 when resuming), ``steps_per_epoch``, ``n_train``, ``n_val``, ``n_parameters``.
    ``on_epoch_start(epoch, steps)``: epochs count from 1.
    ``on_batch_end(step_in_epoch, steps, loss, acc)``: running means over the epoch so far.
    ``on_epoch_end(epoch, record)``: ``record`` is the epoch's history entry, after the
    checkpoint for it has been written.
    ``on_train_end(result)``: the ``FitResult``.
    """

    def on_train_start(self, info: dict[str, Any]) -> None:
        pass

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        pass

    def on_batch_end(self, step_in_epoch: int, steps: int, loss: float, acc: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        pass

    def on_train_end(self, result: FitResult) -> None:
        pass


@dataclass
class FitResult:
    """history: one record per epoch (all epochs, including those before a resume), with
    ``epoch, train_loss, train_accuracy, val_loss, val_accuracy, val_balanced_accuracy,
    val_roc_auc, lr, seconds`` (``val_*`` are None without a validation set).
    best_epoch: the epoch whose weights the model holds after ``fit`` (the last epoch without
    a validation set). best_metrics: ``training.metrics.summarize`` of that epoch on the
    validation set plus ``"loss"`` (empty without one). seconds: wall time of this call.
    stopped_early: patience ran out before ``config.epochs``.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_metrics: dict[str, Any]
    seconds: float
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history)


# ---------------------------------------------------------------------------- building blocks


def make_optimizer(config: TrainConfig, params: optim.ParamGroups) -> optim.Optimizer:
    """The optimizer ``config.optimizer`` names, at ``config.lr`` (tensors or groups)."""
    if config.optimizer == "sgd":
        return optim.SGD(
            params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = optim.AdamW if config.optimizer == "adamw" else optim.Adam
    return cls(params, config.lr, weight_decay=config.weight_decay)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_train`` images."""
    return math.ceil(n_train / batch_size)


def epoch_batches(
    labels: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    sources: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Index batches of one epoch (``steps_per_epoch`` of them), all drawn from ``rng`` now.

    Balanced: ``balanced_batches``, mixing ``sources`` by ``config.source_power``. Otherwise
    a permutation cut into ``batch_size`` pieces; a last piece of one image joins the one
    before it (BatchNorm needs two images per batch).
    """
    if config.balanced:
        return balanced_batches(
            labels, config.batch_size, rng, groups=sources, group_power=config.source_power
        )
    perm = rng.permutation(len(labels))
    batches = [perm[i : i + config.batch_size] for i in range(0, len(perm), config.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return iter(batches)


class Rows:
    """What ``fit`` trains on: labelled rows and how to turn them into model inputs.

    labels: ``int64 (N,)``, 1 = hotdog; sources: ``str (N,)``, each row's dataset source.
    ``train_inputs(idx, rng)``: the (augmented) model input of rows ``idx``, ``float32``.
    ``eval_inputs(start, stop)``: the serving-time input of rows ``start:stop``.
    ``fingerprint()``: identity of the rows, so a checkpoint is never resumed on other data.
    """

    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def train_inputs(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def eval_inputs(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError


class ImageRows(Rows):
    """A ``Dataset``'s images: random crops of the uint8 training squares (or the serving
    pixels without augmentation) for training, ``eval_images`` for scoring, both normalised
    by THE preprocessing function."""

    def __init__(
        self, data: Dataset, preprocess: PreprocessConfig, augmenter: Augmenter | None = None
    ) -> None:
        if data.size != preprocess.size:
            raise ValueError(
                f"the images are {data.size}px but the preprocessing expects {preprocess.size}px"
            )
        self.data, self.preprocess, self.augmenter = data, preprocess, augmenter
        self.labels, self.sources = data.labels, data.sources

    def train_inputs(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.augmenter is None:
            return normalize(self.data.eval_images[idx], self.preprocess)
        return normalize(self.augmenter(self.data.images[idx], rng), self.preprocess)

    def eval_inputs(self, start: int, stop: int) -> np.ndarray:
        return normalize(self.data.eval_images[start:stop], self.preprocess)

    def fingerprint(self) -> str:
        return self.data.fingerprint()


def rows_logits(model: Module, rows: Rows, batch_size: int | None = None) -> np.ndarray:
    """Serving-time logits ``float32 (N, 2)`` of every row, in eval mode, without a graph,
    ``batch_size`` rows at a time (default: as many as ``models.classifier.EVAL_PIXELS`` of
    input allow; memory, not results, depends on it). The model is left in eval mode.
    """
    model.eval()
    if batch_size is None:
        side = rows.eval_inputs(0, 1).shape[-1] if len(rows) else 1
        batch_size = eval_batch_size(side)
    return forward_in_batches(model, len(rows), batch_size, rows.eval_inputs)


def score_logits(labels: np.ndarray, logits: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """``summarize`` metrics of ``(N, 2)`` logits plus ``"loss"`` (mean cross-entropy) and
    ``"p_hotdog"`` (``float64 (N,)``, not JSON: pop it before saving)."""
    with no_grad():
        t = Tensor(logits)
        loss = float(F.cross_entropy(t, labels).item())
        p_hotdog = F.softmax(t, dim=1).numpy()[:, 1].astype(np.float64)
    return {**summarize(labels, p_hotdog, threshold), "loss": loss, "p_hotdog": p_hotdog}


def _module_rngs(model: Module) -> list[np.random.Generator]:
    """Every random generator a layer owns (Dropout's), in a fixed order."""
    return [
        m.rng for m in model.modules() if isinstance(getattr(m, "rng", None), np.random.Generator)
    ]


def _fingerprint(train: Rows, val: Rows | None) -> str:
    """Identity of the data a run trains on: both splits' own fingerprints."""
    parts = [train.fingerprint(), val.fingerprint() if val is not None else "<none>"]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _better(metrics: dict[str, Any], best: tuple[float, float] | None) -> bool:
    key = (metrics["balanced_accuracy"], -metrics["loss"])
    return best is None or key > best


# ---------------------------------------------------------------------------- checkpoints


@dataclass
class _RunState:
    """What a checkpoint holds besides arrays of the model and optimizer."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_key: tuple[float, float] | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_state: dict[str, np.ndarray] | None = None
    stopped_early: bool = False


@dataclass
class _Training:
    """One run's moving parts, handed around as one: the model and what steps it (optimizer,
    schedule, the loop's generator), the settings and the data's fingerprint they must match
    on resume, and the run's progress (``run``)."""

    model: Module
    optimizer: optim.Optimizer
    scheduler: optim.CosineWarmup
    rng: np.random.Generator
    config: TrainConfig
    fingerprint: str
    steps: int
    weights: np.ndarray | None = None
    run: _RunState = field(default_factory=_RunState)


def _save_checkpoint(path: Path, t: _Training) -> None:
    model, optimizer, scheduler, rng, run = t.model, t.optimizer, t.scheduler, t.rng, t.run
    arrays: dict[str, Any] = {f"model/{k}": v for k, v in model.state_dict().items()}
    if run.best_state is not None:
        arrays.update({f"best/{k}": v for k, v in run.best_state.items()})
    arrays.update({f"optimizer/{k}": v for k, v in optimizer.state_dict().items()})
    arrays.update({f"scheduler/{k}": v for k, v in scheduler.state_dict().items()})
    # Generator states hold 128-bit integers: JSON keeps them exact, a numpy array would not.
    arrays["rng"] = json.dumps(
        {
            "loop": rng.bit_generator.state,
            "modules": [g.bit_generator.state for g in _module_rngs(model)],
        }
    )
    arrays["meta"] = json.dumps(
        {
            "version": CHECKPOINT_VERSION,
            "epoch": run.epoch,
            "history": run.history,
            "best_epoch": run.best_epoch,
            "best_key": run.best_key,
            "best_metrics": run.best_metrics,
            "stopped_early": run.stopped_early,
            "config": t.config.to_dict(),
            "data": t.fingerprint,
        }
    )
    save_arrays(path, arrays)


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _load_checkpoint(path: Path, t: _Training) -> _RunState:
    """Put the checkpoint's state into ``t``'s model, optimizer, schedule and generators, and
    return the run's progress; ``CheckpointError`` if it belongs to another run."""
    model, optimizer, scheduler, rng = t.model, t.optimizer, t.scheduler, t.rng
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from at {path}")
    try:
        arrays = load_arrays(path)
        meta = json.loads(str(arrays["meta"]))
        rngs = json.loads(str(arrays["rng"]))
    except (ModelFileError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a usable checkpoint ({exc})") from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by another version of the training loop")
    saved, wanted = meta["config"], t.config.to_dict()
    if saved != wanted:
        diff = ", ".join(
            f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}"
            for k in sorted(set(saved) | set(wanted))
            if saved.get(k) != wanted.get(k)
        )
        raise CheckpointError(
            f"{path} belongs to a run with other settings ({diff}); resume with the same "
            "settings, or start afresh without resuming"
        )
    if meta["data"] != t.fingerprint:
        raise CheckpointError(
            f"{path} was trained on other images or another split; resume with the same data, "
            "--val-fraction, --seed and --limit, or start afresh without resuming"
        )
    module_rngs = _module_rngs(model)
    if len(rngs["modules"]) != len(module_rngs):
        raise CheckpointError(f"{path} does not match this model (its Dropout layers differ)")
    try:
        model.load_state_dict(_prefixed(arrays, "model/"))
        optimizer.load_state_dict(_prefixed(arrays, "optimizer/"))
        scheduler.load_state_dict(_prefixed(arrays, "scheduler/"))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path} does not match this model ({exc})") from None
    best = _prefixed(arrays, "best/")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if best and {k: v.shape for k, v in best.items()} != shapes:
        raise CheckpointError(f"{path} holds best weights of another model")
    rng.bit_generator.state = rngs["loop"]
    for g, state in zip(module_rngs, rngs["modules"], strict=True):
        g.bit_generator.state = state
    return _RunState(
        epoch=meta["epoch"],
        history=meta["history"],
        best_epoch=meta["best_epoch"],
        best_key=tuple(meta["best_key"]) if meta["best_key"] is not None else None,
        best_metrics=meta["best_metrics"],
        best_state=best or None,
        stopped_early=meta["stopped_early"],
    )


def checkpoint_epoch(path: str | os.PathLike[str]) -> int | None:
    """Epochs completed in the checkpoint at ``path``; None if it is missing or unreadable."""
    try:
        return int(json.loads(str(load_arrays(path)["meta"]))["epoch"])
    except (ModelFileError, KeyError, ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------- the loop


def fit(
    model: Module,
    train: Dataset,
    val: Dataset | None,
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> FitResult:
    """Train ``model`` in place on the images of ``train``; score it on ``val`` after every
    epoch (see ``fit_rows``, which this calls with augmented image rows).

    model: a ``Module`` mapping ``float32 (N, C, size, size)`` to ``(N, 2)`` logits.
    train, val: ``Dataset`` s at the preprocessing size (``val`` may be None).
    """
    preprocess = PreprocessConfig.from_dict(config.preprocess)
    augmenter = None
    if config.augment is not None:
        if config.augment.get("out_size", preprocess.size) != preprocess.size:
            raise ValueError("augment out_size must equal the preprocessing size")
        augmenter = Augmenter({**config.augment, "out_size": preprocess.size})
    train_rows = ImageRows(train, preprocess, augmenter)
    val_rows = ImageRows(val, preprocess) if val is not None else None
    return fit_rows(model, train_rows, val_rows, config, callbacks, checkpoint, resume)


def fit_rows(
    model: Module,
    train: Rows,
    val: Rows | None,
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    param_groups: list[dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` in place on ``train`` rows; score it on ``val`` after every epoch.

    val: may be None (no scoring, no early stopping, the last epoch's weights are kept).
    checkpoint: written (atomically) after every epoch when given. With ``resume`` it is read
        first and training continues after its last epoch; it must come from the same config
        and data (``CheckpointError`` otherwise).
    param_groups: optimizer parameter groups (``{"params": [...], "lr": ...}``); default:
        every parameter of ``model`` that requires a gradient, at ``config.lr``.

    At the end the model holds the best epoch's weights (see ``FitResult.best_epoch``) and is
    in eval mode. A ``KeyboardInterrupt`` propagates; the checkpoint then holds the last
    completed epoch.
    """
    started = time.perf_counter()
    if config.batch_size > len(train):  # a batch never holds more rows than there are
        config = replace(config, batch_size=len(train))
    weights = None if config.balanced else class_weights(train.labels)
    rng = np.random.default_rng(config.seed)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = make_optimizer(config, groups)
    steps = steps_per_epoch(len(train), config.batch_size)
    scheduler = optim.CosineWarmup(
        optimizer,
        total_steps=config.epochs * steps,
        warmup_steps=round(config.warmup_epochs * steps),
        min_lr=config.min_lr,
    )
    t = _Training(
        model, optimizer, scheduler, rng, config, _fingerprint(train, val), steps, weights
    )
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if ckpt is None:
            raise CheckpointError("resuming needs a checkpoint path")
        t.run = _load_checkpoint(ckpt, t)
    run = t.run

    info = {
        "epochs": config.epochs,
        "start_epoch": run.epoch,
        "steps_per_epoch": steps,
        "n_train": len(train),
        "n_val": len(val) if val is not None else 0,
        "n_parameters": sum(p.numel() for p in optimizer.params),
    }
    for cb in callbacks:
        cb.on_train_start(info)

    while run.epoch < config.epochs and not run.stopped_early:
        epoch = run.epoch + 1
        for cb in callbacks:
            cb.on_epoch_start(epoch, steps)
        epoch_start = time.perf_counter()
        batches = epoch_batches(train.labels, config, rng, train.sources)
        # a diverging run overflows on its way to inf and nan: the checks below report it once
        with np.errstate(over="ignore", invalid="ignore"):
            record = _train_epoch(t, train, batches, callbacks)
        record["epoch"] = epoch
        if val is not None:
            _score_epoch(model, val, record, run, epoch, config.patience)
        else:
            run.best_epoch = epoch
        record["seconds"] = time.perf_counter() - epoch_start
        run.epoch = epoch
        run.history.append(record)
        if not all(np.isfinite(p.numpy()).all() for p in optimizer.params):
            raise TrainingDiverged(
                f"the weights stopped being finite numbers in epoch {epoch}: training "
                "diverged. Lower the learning rate; the checkpoint keeps the last finished epoch"
            )
        if ckpt is not None:
            _save_checkpoint(ckpt, t)
        for cb in callbacks:
            cb.on_epoch_end(epoch, record)

    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    result = FitResult(
        history=run.history,
        best_epoch=run.best_epoch,
        best_metrics=run.best_metrics,
        seconds=time.perf_counter() - started,
        stopped_early=run.stopped_early,
    )
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def _train_epoch(
    t: _Training, train: Rows, batches: Iterator[np.ndarray], callbacks: Sequence[Callback]
) -> dict[str, Any]:
    """One pass of optimizer steps; returns the epoch's record without validation figures."""
    model, optimizer, scheduler, config, rng = t.model, t.optimizer, t.scheduler, t.config, t.rng
    weights, steps = t.weights, t.steps
    model.train()
    loss_sum, correct, seen, lr = 0.0, 0, 0, optimizer.lr
    for step, idx in enumerate(batches, start=1):
        x, y = train.train_inputs(idx, rng), train.labels[idx]
        logits = model(Tensor(x))
        loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=config.label_smoothing)
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {step}: training diverged. Lower the "
                "learning rate or keep gradient clipping on; the checkpoint keeps the last "
                "finished epoch"
            )
        optimizer.zero_grad()
        loss.backward()
        if config.grad_clip:
            optim.clip_grad_norm_(optimizer.params, config.grad_clip)
        lr = optimizer.lr
        optimizer.step()
        scheduler.step()

        loss_sum += float(loss.item()) * len(idx)
        correct += int((logits.numpy().argmax(axis=1) == y).sum())
        seen += len(idx)
        for cb in callbacks:
            cb.on_batch_end(step, steps, loss_sum / seen, correct / seen)
    return {
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "val_loss": None,
        "val_accuracy": None,
        "val_balanced_accuracy": None,
        "val_roc_auc": None,
        "lr": lr,
    }


def _score_epoch(
    model: Module, val: Rows, record: dict[str, Any], run: _RunState, epoch: int, patience: int
) -> None:
    """Score ``val`` into ``record``; keep the weights if they are the best so far."""
    metrics = score_logits(val.labels, rows_logits(model, val))
    metrics.pop("p_hotdog")
    record.update(
        val_loss=metrics["loss"],
        val_accuracy=metrics["accuracy"],
        val_balanced_accuracy=metrics["balanced_accuracy"],
        val_roc_auc=metrics["roc_auc"],
    )
    if _better(metrics, run.best_key):
        run.best_key = (metrics["balanced_accuracy"], -metrics["loss"])
        run.best_epoch, run.best_metrics = epoch, metrics
        run.best_state = model.state_dict()
    run.stopped_early = bool(patience) and epoch - run.best_epoch >= patience
