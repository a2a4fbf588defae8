"""Model cards: what a person wants to know about a model, read and checked in one place.

A card is the JSON written next to the weights (``NAME.json``) by ``python -m training train``.
``ModelCard.from_json`` reads any JSON value into typed fields, leaving out (and naming in
``problems``) every part that is missing or oddly shaped, so a damaged card can never take the
app down; the app only renders what is here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Per-epoch figures a card's history may hold, besides ``epoch``.
HISTORY_FIELDS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_roc_auc",
    "lr",
    "seconds",
)

#: What a model is, in a few plain words, by the architecture type its card records.
KINDS = {
    "efficientnet_lite": "ImageNet network, fine-tuned",
    "resnet": "CNN trained from scratch",
    "mlp": "baseline: MLP on gray pixels",
}

#: Plain names of the data folders the shipped models were trained on (``../shared/data``
#: and ``python -m training draw``); any other folder is shown by its own name.
SOURCE_NAMES = {
    "food-photos": "food photos: hotdogs and other dishes",
    "hotdog-photos": "everyday photos: hotdogs and other things",
    "everyday-photos": "photos of people, pets and rooms",
    "hotdog-nothotdog-train": "stock-style food photos",
    "seefood-hotdogs": "more hotdog photos",
    "food101-64": "Food-101 dishes, small 64-pixel crops",
    "synthetic-drawings": "cartoon drawings made by the training code",
}


@dataclass(frozen=True)
class SourceRow:
    """Images of one data source: training and held-out counts per class, held-out accuracy."""

    source: str
    train_hotdog: int = 0
    train_not_hotdog: int = 0
    val_hotdog: int = 0
    val_not_hotdog: int = 0
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None

    @property
    def plain_name(self) -> str:
        """The source in plain words (``SOURCE_NAMES``), else its folder name."""
        return SOURCE_NAMES.get(self.source, self.source)


@dataclass(frozen=True)
class ModelCard:
    """A model card's readable parts. Metrics are on the card's held-out split.

    confusion: ``[[tn, fp], [fn, tp]]``. history: one dict per epoch with an int ``epoch`` and
    the ``HISTORY_FIELDS`` it records (floats or None). calibration_error and
    calibration_error_before: the held-out calibration error of the probabilities shown, with
    and without the fitted ``temperature``. raw: the JSON as read.
    """

    raw: Any = None
    name: str | None = None
    n: int | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    roc_auc: float | None = None
    confusion: tuple[tuple[int, int], tuple[int, int]] | None = None
    temperature: float | None = None
    calibration_error: float | None = None
    calibration_error_before: float | None = None
    history: tuple[dict[str, Any], ...] = ()
    sources: tuple[SourceRow, ...] = ()
    command: str | None = None
    created: str | None = None
    wall_seconds: float | None = None
    cpu_count: int | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    architecture: dict[str, Any] | None = None
    pretrained: dict[str, Any] | None = None
    notes: str | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.raw

    @classmethod
    def from_json(cls, obj: Any) -> ModelCard:
        """Read a card (any JSON value); never raises."""
        if obj is None or obj == {}:
            return cls(raw=obj or {})
        if not isinstance(obj, dict):
            return cls(raw=obj, problems=(f"the card is a {type(obj).__name__}, not an object",))
        problems: list[str] = []
        metrics = _dict(obj.get("metrics"), "metrics", problems)
        calibration = _dict(metrics.get("calibration"), "metrics.calibration", problems)
        return cls(
            raw=obj,
            name=_str(obj.get("name")),
            n=_count(metrics.get("n")),
            accuracy=_fraction(metrics.get("accuracy")),
            balanced_accuracy=_fraction(metrics.get("balanced_accuracy")),
            roc_auc=_fraction(metrics.get("roc_auc")),
            confusion=_confusion(metrics.get("confusion"), problems),
            temperature=_number(calibration.get("temperature")),
            calibration_error=_fraction(calibration.get("ece")),
            calibration_error_before=_fraction(calibration.get("ece_uncalibrated")),
            history=_history(obj.get("history"), problems),
            sources=_sources(obj.get("data"), metrics.get("per_source"), problems),
            command=_str(obj.get("command")),
            created=_str(obj.get("created")),
            wall_seconds=_number(obj.get("wall_seconds")),
            cpu_count=_count(obj.get("cpu_count")),
            best_epoch=_count(obj.get("best_epoch")),
            epochs_run=_count(obj.get("epochs_run")),
            architecture=_dict(obj.get("architecture"), "architecture", problems) or None,
            pretrained=_dict(obj.get("pretrained"), "pretrained", problems) or None,
            notes=_str(obj.get("notes")),
            problems=tuple(problems),
        )

    @property
    def kind(self) -> str:
        """What the model is, in a few plain words (``KINDS``), by its architecture."""
        return KINDS.get(str((self.architecture or {}).get("type")), "a trained classifier")

    def training_summary(self) -> str:
        """One line on when and how long the model was trained ("" if the card doesn't say).
        The time is the training command's own run (``wall_seconds``)."""
        parts = []
        if self.created:
            parts.append(f"Trained on {self.created[:10]}.")
        if self.wall_seconds is not None:
            cores = f" on {self.cpu_count} CPU cores" if self.cpu_count else ""
            parts.append(f"The training run took {self.wall_seconds / 60:.0f} min{cores}.")
        if self.best_epoch and self.epochs_run:
            parts.append(
                f"The weights are those after pass {self.best_epoch} of {self.epochs_run} "
                "over the training photos."
            )
        return " ".join(parts)


# ------------------------------------------------------------------------------ readers


def _number(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _fraction(v: Any) -> float | None:
    x = _number(v)
    return x if x is not None and 0.0 <= x <= 1.0 else None


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _dict(v: Any, what: str, problems: list[str]) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        problems.append(f"{what} is not an object")
        return {}
    return v


def _confusion(v: Any, problems: list[str]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if v is None:
        return None
    ok = (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(r, list) and len(r) == 2 and all(_count(c) is not None for c in r)
                for r in v)
    )  # fmt: skip
    if not ok:
        problems.append("the confusion matrix is not 2x2 counts")
        return None
    return (v[0][0], v[0][1]), (v[1][0], v[1][1])


def _history(v: Any, problems: list[str]) -> tuple[dict[str, Any], ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        problems.append("history is not a list")
        return ()
    rows = []
    for row in v:
        if not isinstance(row, dict) or _count(row.get("epoch")) is None:
            problems.append("history rows without an epoch number were left out")
            continue
        rows.append({"epoch": row["epoch"], **{k: _number(row.get(k)) for k in HISTORY_FIELDS}})
    return tuple(rows)


def _sources(data: Any, per_source: Any, problems: list[str]) -> tuple[SourceRow, ...]:
    """Per-source counts from ``data.{train,val}.sources`` and accuracies from
    ``metrics.per_source``."""
    rows: dict[str, dict[str, Any]] = {}
    if isinstance(data, dict):
        for split in ("train", "val"):
            part = data.get(split)
            sources = part.get("sources") if isinstance(part, dict) else None
            if not isinstance(sources, dict):
                continue
            for source, counts in sources.items():
                if not isinstance(counts, dict):
                    problems.append(f"data.{split}.sources.{source} is not an object")
                    continue
                row = rows.setdefault(str(source), {})
                row[f"{split}_hotdog"] = _count(counts.get("hotdog")) or 0
                row[f"{split}_not_hotdog"] = _count(counts.get("not_hotdog")) or 0
    if isinstance(per_source, dict):
        for source, result in per_source.items():
            if not isinstance(result, dict):
                continue
            for key in ("accuracy", "balanced_accuracy"):
                if _fraction(result.get(key)) is not None:
                    rows.setdefault(str(source), {})[f"val_{key}"] = _fraction(result[key])
    return tuple(SourceRow(source, **fields) for source, fields in rows.items())
