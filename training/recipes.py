"""Training recipes: the presets, and train-then-save as one library call.

The command line (``python -m training train``) is a thin shell over this module; a notebook
can do the same in three lines::

    from training.recipes import TrainOptions, train_and_save
    outcome = train_and_save(TrainOptions(data=["../shared/data"], out="runs/my_cnn"))
    outcome.metrics["balanced_accuracy"]

``train_and_save`` loads and splits the data, trains (``fit`` from scratch, or
``training.finetune`` from pretrained weights), scores the held-out split through the serving
path, and writes ``NAME.npz`` plus its model card ``NAME.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from micrograd import Tensor
from micrograd.backend import cpu_count
from micrograd.nn import Module
from models.architectures import HOTDOG_CNN, build, check_config
from models.classifier import CLASS_NAMES, Classifier
from models.io import ModelFileError, save_model
from models.preprocess import PreprocessConfig
from training.augment import AugmentConfig
from training.calibration import cross_fitted, fit_temperature, p_hotdog
from training.cluster import Cluster, ClusterError, import_ray
from training.data import Dataset, default_cache_dir, load_dataset, stratified_split
from training.finetune import FinetuneSettings, finetune
from training.loop import Callback, FitResult, TrainConfig, checkpoint_epoch, fit, score_logits
from training.metrics import accuracy_by_group, calibration_error, summarize
from training.pretrained import VARIANTS, Variant

Progress = Callable[[int, int], None]


class RecipeError(ValueError):
    """Options or inputs that cannot make a model (one-line message)."""


# ------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """Defaults of one ``model`` choice; options given explicitly override them.

    finetune: ``FinetuneSettings`` defaults for a pretrained network (None: from scratch).
    pretrained: the ImageNet network it starts from (with ``finetune``).
    """

    preprocess: PreprocessConfig
    architecture: Callable[[PreprocessConfig], dict[str, Any]]
    augment: dict[str, Any] | None
    train: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    finetune: dict[str, Any] | None = None
    pretrained: Variant | None = None


def _mlp_architecture(pre: PreprocessConfig) -> dict[str, Any]:
    return {
        "type": "mlp",
        "in_features": pre.channels * pre.size * pre.size,
        "hidden": [256, 64],
        "dropout": 0.2,
    }


def _fine_tuned(variant: Variant, description: str) -> Preset:
    """The fine-tuning recipe, on the ImageNet network ``variant``."""
    return Preset(
        preprocess=variant.preprocess,
        architecture=lambda pre: {"type": "efficientnet_lite", "num_classes": 2},
        # milder than the CNN's: ImageNet features already know food; the crops only need to
        # look like other framings of the same photo
        augment={"scale": [0.4, 1.0], "rotation": 10.0, "hue": 0.03},
        # 3 epochs over 5 cached views per photo (the serving view and 4 augmented crops)
        train={
            "epochs": 3,
            "lr": 1e-3,
            "weight_decay": 0.05,
            "label_smoothing": 0.1,
            # 0.5 over 0.25 on the seven sources (Lite0): held out, 0.926 vs 0.920 balanced
            # accuracy, food photos 0.947 vs 0.945, Food-101 crops 0.886 vs 0.880, none worse
            "source_power": 0.5,
            "warmup_epochs": 0.5,
        },
        description=description,
        finetune={"trainable_blocks": 2, "views": 5, "backbone_lr_scale": 0.1, "dropout": 0.2},
        pretrained=variant,
    )


#: Settings a preset does not choose.
#: The settings a preset may choose; where it does not, ``TrainConfig``'s own default holds.
PRESET_SETTINGS = (
    "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing",
    "source_power",
)  # fmt: skip


def field_default(settings: type, name: str) -> Any:
    """The default a dataclass of settings gives ``name``: ``TrainConfig``'s is the one place a
    training default is written; ``TrainOptions`` and the command line read theirs from it."""
    return {f.name: f.default for f in fields(settings)}[name]


def config_default(name: str) -> Any:
    """``TrainConfig``'s default for ``name``."""
    return field_default(TrainConfig, name)


TRAIN_DEFAULTS: dict[str, Any] = {name: config_default(name) for name in PRESET_SETTINGS}

PRESETS: dict[str, Preset] = {
    "cnn": Preset(
        preprocess=PreprocessConfig(size=64),
        architecture=lambda pre: dict(HOTDOG_CNN),
        augment={},
        # source_power 0.25: the few hundred real-world and stock photos count for far more
        # than their share of the 7,000 images (Food-101 crops are 80%). Held out, 0.5 scored
        # 0.57 on the stock photos and 0.25 scored 0.73, for 0.01 less overall.
        train={
            "epochs": 50,
            "lr": 3e-3,
            "weight_decay": 0.05,
            "label_smoothing": 0.1,
            "source_power": 0.25,
        },
        description="residual CNN on 64x64 RGB with augmentation, trained from scratch",
    ),
    "effnet": _fine_tuned(
        VARIANTS["efficientnet-lite0"],
        "ImageNet EfficientNet-Lite0 fine-tuned at 224 px",
    ),
    "effnet-lite2": _fine_tuned(
        VARIANTS["efficientnet-lite2"],
        "ImageNet EfficientNet-Lite2 fine-tuned at 260 px (1.9x Lite0's compute)",
    ),
    "mlp": Preset(
        preprocess=PreprocessConfig(size=32, grayscale=True),
        architecture=_mlp_architecture,
        # Mild: the MLP sees pixels at fixed positions, so big crops and turns only blur it.
        augment={"scale": [0.7, 1.0], "rotation": 0.0, "hue": 0.0, "saturation": 0.0},
        train={"epochs": 30, "lr": 1e-3, "weight_decay": 0.01},
        description="the original approach: an MLP over 32x32 grayscale pixels",
    ),
}


# ------------------------------------------------------------------------------- options


@dataclass
class TrainOptions:
    """Everything ``train_and_save`` needs; ``None`` means the preset's value.

    data: dataset folders. out: ``models/NAME`` or ``models/NAME.npz``. model: a preset name.
    val_data: validate on these folders instead of a ``val_fraction`` split of ``data``.
    limit: use at most this many images (stratified), for quick runs. architecture: replaces
    the preset's network (from-scratch presets only). pretrained, views, trainable_blocks:
    the pretrained presets' ``FinetuneSettings``. force: write over an existing model.
    ray: run the pretrained presets' feature pass on a Ray cluster (``"local"``, ``"auto"``,
    ``"ray://host:port"``; ``training.cluster``); None: in this process.
    command: the command line recorded in the card (None: not recorded).
    """

    data: Sequence[str]
    out: str
    model: str = "cnn"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    source_power: float | None = None
    size: int | None = None
    optimizer: str = config_default("optimizer")
    min_lr: float = config_default("min_lr")
    grad_clip: float = 5.0
    class_weights: bool = False
    no_augment: bool = False
    seed: int = config_default("seed")
    val_fraction: float = 0.15
    val_data: Sequence[str] | None = None
    patience: int = config_default("patience")
    limit: int | None = None
    checkpoint: str | None = None
    resume: bool = False
    keep_checkpoint: bool = False
    workers: int | None = None
    architecture: dict[str, Any] | None = None
    notes: str = ""
    pretrained: str | None = None
    views: int | None = None
    trainable_blocks: int | None = None
    force: bool = False
    ray: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Plan:
    """Options resolved against their preset: what will be trained, before any work."""

    options: TrainOptions
    preset: Preset
    preprocess: PreprocessConfig
    architecture: dict[str, Any]
    config: TrainConfig
    out: Path
    checkpoint: Path
    finetune: FinetuneSettings | None

    @property
    def augmentation(self) -> dict[str, Any] | None:
        """The augmentation settings in full, for the card (None without augmentation)."""
        if self.config.augment is None:
            return None
        full = {**self.config.augment, "out_size": self.preprocess.size}
        return AugmentConfig.from_dict(full).to_dict()


def output_path(out: str, force: bool = False, resume: bool = False) -> Path:
    """``models/NAME`` or ``models/NAME.npz`` -> ``models/NAME.npz``, checked before any work:
    a usable name in a folder that exists or can be made, and writable; an existing model is
    only replaced with ``force`` (or when resuming the run that writes it)."""
    if not out.strip() or Path(out).name in ("", ".", ".."):
        raise RecipeError(f"out must name a model file, not {out!r}")
    path = Path(out)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    for target in (path, path.with_suffix(".json")):
        if target.is_dir():
            raise RecipeError(f"out: {target} is a folder, not a file")
    _check_writable("out", path)
    if path.exists() and not (force or resume):
        raise RecipeError(f"{path} exists: add --force to replace it")
    return path


#: The longest file name most file systems take, in bytes.
NAME_MAX = 255
#: What the run adds to a name at most: ``.ckpt.npz``, and ``atomic_write``'s ``.NAME.<12
#: hex digits>.tmp`` around it.
NAME_EXTRA = len(".ckpt.npz") + len("..123456789abc.tmp")


def _check_writable(what: str, path: Path) -> None:
    """``RecipeError`` before any work if ``path`` cannot be written: a name too long for the
    file system once the run's suffixes are added, or a folder it cannot write into (the
    nearest one that exists, as the missing ones will be made)."""
    if len(os.fsencode(path.name)) + NAME_EXTRA > NAME_MAX:
        raise RecipeError(f"{what}: the name {path.name[:40]}... is too long for a file name")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise RecipeError(f"{what}: cannot write into {folder}")


def checkpoint_path(given: str | None, out: Path) -> Path:
    """The run's checkpoint (default ``NAME.ckpt.npz`` beside ``out``), checked before any
    work: the run writes it every epoch and deletes it at the end, so it must not name the
    model being written, anything that is not a regular file, or a file that is not a
    training checkpoint (another model's weights, say)."""
    path = Path(given) if given else out.with_suffix(".ckpt.npz")
    _check_writable("--checkpoint", path)
    if path.resolve() in (out.resolve(), out.with_suffix(".json").resolve()):
        raise RecipeError(f"--checkpoint {path} is the model this run writes; choose another")
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not path.is_file():
            raise RecipeError(f"--checkpoint {path} exists and is not a regular file")
        if checkpoint_epoch(path) is None:
            raise RecipeError(
                f"--checkpoint {path} exists and is not a training checkpoint; "
                "delete it or choose another path (a run overwrites, then deletes, its checkpoint)"
            )
    return path


def plan(options: TrainOptions) -> Plan:
    """Resolve ``options`` against the preset and check them (``RecipeError`` if unusable)."""
    if options.model not in PRESETS:
        raise RecipeError(f"unknown model {options.model!r} (presets: {', '.join(PRESETS)})")
    preset = PRESETS[options.model]
    if options.ray is not None:
        if preset.finetune is None:
            raise RecipeError(
                f"--ray runs the pretrained presets' feature pass; {options.model} trains from "
                "scratch, in this process"
            )
        try:
            import_ray()  # said now, not after the photos are decoded
        except ClusterError as exc:
            raise RecipeError(str(exc)) from None
    settings = {**TRAIN_DEFAULTS, **preset.train}
    settings.update({k: getattr(options, k) for k in settings if getattr(options, k) is not None})
    try:
        pre = replace(preset.preprocess, size=options.size or preset.preprocess.size)
    except ValueError as exc:
        raise RecipeError(f"size: {exc}") from None
    if options.architecture is not None and preset.finetune is not None:
        raise RecipeError(f"the {options.model} preset's network is the pretrained one")
    architecture = dict(options.architecture or preset.architecture(pre))
    architecture.setdefault("seed", options.seed)
    try:
        check_config(architecture)
    except ValueError as exc:
        raise RecipeError(f"architecture: {exc}") from None
    inputs = pre.channels * pre.size * pre.size
    if architecture.get("type") == "mlp" and architecture.get("in_features") != inputs:
        raise RecipeError(
            f"architecture: an MLP on {pre.size}x{pre.size} with {pre.channels} channel(s) "
            f"takes in_features {inputs}, not {architecture.get('in_features')}"
        )
    augment = None if options.no_augment else preset.augment
    finetune_settings = _finetune_settings(options, preset, augment)
    try:
        config = TrainConfig(
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            optimizer=options.optimizer,
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            warmup_epochs=min(settings["warmup_epochs"], settings["epochs"]),
            min_lr=options.min_lr,
            label_smoothing=settings["label_smoothing"],
            balanced=not options.class_weights,
            source_power=settings["source_power"],
            augment=augment,
            grad_clip=options.grad_clip,
            seed=options.seed,
            patience=options.patience,
            preprocess=pre.to_dict(),
        )
        if augment is not None:
            AugmentConfig.from_dict({**augment, "out_size": pre.size})
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    out = output_path(options.out, options.force, options.resume)
    checkpoint = checkpoint_path(options.checkpoint, out)
    return Plan(options, preset, pre, architecture, config, out, checkpoint, finetune_settings)


def _finetune_settings(
    options: TrainOptions, preset: Preset, augment: dict[str, Any] | None
) -> FinetuneSettings | None:
    if preset.finetune is None:
        return None
    defaults = dict(preset.finetune)
    for key in ("views", "trainable_blocks"):
        if getattr(options, key) is not None:
            defaults[key] = getattr(options, key)
    if augment is None:
        defaults["views"] = 1  # only the serving view: nothing to augment
    assert preset.pretrained is not None, "a fine-tuning preset names its ImageNet network"
    pretrained = Path(options.pretrained or preset.pretrained.default_path)
    if not pretrained.is_file():
        raise RecipeError(
            f"no pretrained weights at {pretrained}: run "
            f"'python -m training import-weights {preset.pretrained.name}' first"
        )
    try:
        return FinetuneSettings(pretrained=str(pretrained), augment=augment or {}, **defaults)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None


# ------------------------------------------------------------------------------- data


def load_splits(p: Plan, progress: Progress | None = None) -> tuple[Dataset, Dataset | None]:
    """(train, val or None): ``val_data``, or a stratified ``val_fraction`` split of ``data``,
    decoded at the plan's size (and larger squares for augmentation)."""
    o = p.options
    size = p.preprocess.size
    # Without augmentation only the serving-size pixels are used: decode nothing larger.
    cache_size = size if p.config.augment is None else None

    def load(roots: Sequence[str]) -> Dataset:
        data = load_dataset(roots, size=size, cache_size=cache_size, workers=o.workers,
                            progress=progress)  # fmt: skip
        return _limit(data, o.limit, o.seed)

    data = load(o.data)
    if o.val_data:
        return data, load(o.val_data)
    train_idx, val_idx = stratified_split(data.labels, o.val_fraction, o.seed, groups=data.sources)
    return data.subset(train_idx), (data.subset(val_idx) if len(val_idx) else None)


def _limit(data: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` images, drawn stratified by (source, label)."""
    if limit is None or limit >= len(data):
        return data
    if limit < 2:
        raise RecipeError("limit must be at least 2")
    _, keep = stratified_split(data.labels, limit / len(data), seed, groups=data.sources)
    return data.subset(keep)


# ------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Outcome:
    """A finished run: the weights file, the held-out metrics (None without a held-out
    split), the loop's result and the model card as written."""

    path: Path
    metrics: dict[str, Any] | None
    result: FitResult
    card: dict[str, Any]


def train(
    p: Plan,
    train: Dataset,
    val: Dataset | None,
    callbacks: Sequence[Callback] = (),
    feature_progress: Progress | None = None,
) -> tuple[Module, dict[str, Any], FitResult]:
    """Train as planned: ``(model, its architecture config, the loop's result)``."""
    o = p.options
    if p.finetune is None:
        try:
            model = build(p.architecture)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"bad architecture {json.dumps(p.architecture)}: {exc}") from None
        result = fit(model, train, val, p.config, callbacks, p.checkpoint, resume=o.resume)
        return model, p.architecture, result
    cache = default_cache_dir() / "features"
    with contextlib.ExitStack() as stack:
        run = None
        if o.ray is not None:  # connects only if a view is not cached yet
            run = stack.enter_context(Cluster(None if o.ray == "local" else o.ray)).features
        try:
            return finetune(train, val, p.finetune, p.config, cache, list(callbacks),
                            p.checkpoint, o.resume, feature_progress, run)  # fmt: skip
        except ModelFileError as exc:
            raise RecipeError(str(exc)) from None


def held_out_metrics(
    model: Module, val: Dataset, preprocess: PreprocessConfig, seed: int = 0
) -> dict[str, Any]:
    """Metrics of ``model`` on ``val``, scored as the app scores photos (``Classifier`` on the
    serving pixels), with a per-source table and the fitted temperature.

    ``"calibration"``: ``temperature`` (fitted on all of ``val``; the weights file stores it),
    and the 10-bin calibration error of the probabilities without it (``ece_uncalibrated``)
    and with it (``ece``, each half of ``val`` scored with a temperature fitted on the other).
    """
    logits = Classifier(model, preprocess).logits_uint8(val.eval_images)
    margins = logits[:, 1].astype(np.float64) - logits[:, 0]
    temperature = round(fit_temperature(margins, val.labels), 4)  # as the weights file holds it
    p = Classifier(model, preprocess, temperature=temperature).p_hotdog_logits(Tensor(logits))
    honest = cross_fitted(margins, val.labels, val.sources, seed)
    return {
        **summarize(val.labels, p),
        "per_source": accuracy_by_group(val.labels, p, val.sources),
        "loss": score_logits(val.labels, logits)["loss"],
        "calibration": {
            "temperature": temperature,
            "ece_uncalibrated": calibration_error(val.labels, p_hotdog(margins)),
            "ece": calibration_error(val.labels, honest),
            "bins": 10,
        },
    }


def model_card(
    p: Plan,
    train: Dataset,
    val: Dataset | None,
    architecture: dict[str, Any],
    result: FitResult,
    metrics: dict[str, Any] | None,
    n_parameters: int,
    seconds: float,
) -> dict[str, Any]:
    """Everything a person wants to know about the model (``models.ModelCard`` reads it)."""
    o = p.options
    skipped = sorted(set(train.skipped) | set(val.skipped if val is not None else ()))
    card: dict[str, Any] = {
        "name": p.out.stem,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": o.command,
        "architecture": architecture,
        "preprocess": p.preprocess.to_dict(),
        "classes": list(CLASS_NAMES),
        "threshold": 0.5,
        "data": {
            "roots": list(o.data),
            "val_roots": list(o.val_data or []),
            "val_fraction": None if o.val_data else o.val_fraction,
            "limit": o.limit,
            "train": train.summary(),
            "val": val.summary() if val is not None else None,
            "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
            "n_skipped": len(skipped),
        },
        "augmentation": p.augmentation,
        "training": p.config.to_dict(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seed": o.seed,
        "wall_seconds": round(seconds, 1),
        "cpu_count": cpu_count(),
        "metrics": metrics,
        "history": result.history,
        "n_parameters": n_parameters,
        "notes": o.notes,
    }
    if p.finetune is not None and p.preset.pretrained is not None:
        card["pretrained"] = p.preset.pretrained.source
        card["finetune"] = {k: v for k, v in p.finetune.to_dict().items() if k != "pretrained"}
    return card


def train_and_save(
    options: TrainOptions | Plan,
    callbacks: Sequence[Callback] = (),
    decode_progress: Progress | None = None,
    feature_progress: Progress | None = None,
) -> Outcome:
    """Plan, load, train, score and write ``NAME.npz`` + ``NAME.json``; see the module doc.

    A ``KeyboardInterrupt`` propagates; the checkpoint then holds the last finished epoch.
    """
    started = time.perf_counter()
    p = options if isinstance(options, Plan) else plan(options)
    with output_lock(p.out):
        return _train_and_save(p, started, callbacks, decode_progress, feature_progress)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``NAME.lock`` beside ``out`` while a run writes it, so two runs on one output can't
    both claim it (the second is refused); then clear what killed writes left behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.with_suffix(".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise RecipeError(
            f"another run is writing {out} ({lock} exists); if none is, delete the lock file"
        ) from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        for stale in out.parent.glob(f".{out.stem}.*.tmp"):  # from writes that were killed
            stale.unlink(missing_ok=True)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _train_and_save(
    p: Plan,
    started: float,
    callbacks: Sequence[Callback],
    decode_progress: Progress | None,
    feature_progress: Progress | None,
) -> Outcome:
    train_set, val = load_splits(p, decode_progress)
    model, architecture, result = train(p, train_set, val, callbacks, feature_progress)
    metrics = None if val is None else held_out_metrics(model, val, p.preprocess, p.options.seed)
    card = model_card(p, train_set, val, architecture, result, metrics, model.num_parameters(),
                      time.perf_counter() - started)  # fmt: skip
    weights_config = {
        "architecture": architecture,
        "preprocess": p.preprocess.to_dict(),
        "classes": list(CLASS_NAMES),
        "threshold": 0.5,
        "temperature": metrics["calibration"]["temperature"] if metrics else 1.0,
    }
    path = save_model(p.out, model.state_dict(), weights_config, card)
    if not p.options.keep_checkpoint:
        p.checkpoint.unlink(missing_ok=True)
    return Outcome(path, metrics, result, card)


def command_line(argv: Sequence[str]) -> str:
    """``python -m training ARGS...`` as one shell-quoted line, for the card."""
    return shlex.join(["python", "-m", "training", *argv])


__all__ = [
    "PRESETS",
    "Outcome",
    "Plan",
    "Preset",
    "RecipeError",
    "TrainOptions",
    "command_line",
    "model_card",
    "plan",
    "train_and_save",
]
