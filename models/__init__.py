"""Hotdog classifiers: shipped weights and the code that loads them.

>>> from models import load
>>> clf = load("hotdog_cnn")
>>> clf.predict("photo.jpg")            # doctest: +SKIP
Prediction(label='hotdog', p_hotdog=0.97)
"""

from __future__ import annotations

import os
from pathlib import Path

from models.card import ModelCard
from models.classifier import Classifier, Explanation, Prediction, from_file
from models.io import ModelFileError, load_model_file, read_json, source_name
from models.preprocess import ImageError

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "hotdog_effnet"

__all__ = [
    "DEFAULT_MODEL",
    "MODELS_DIR",
    "Classifier",
    "Explanation",
    "ImageError",
    "ModelCard",
    "ModelFileError",
    "Prediction",
    "available",
    "load",
    "load_bytes",
    "read_card",
]


def available(directory: str | os.PathLike[str] = MODELS_DIR) -> list[str]:
    """Names of the models in ``directory`` (default: the shipped ones in ``models/``): each a
    ``NAME.npz`` with its ``NAME.json`` card; the default model first."""
    names = sorted(p.stem for p in Path(directory).glob("*.npz") if p.with_suffix(".json").exists())
    return sorted(names, key=lambda n: n != DEFAULT_MODEL)


def read_card(weights: str | os.PathLike[str]) -> ModelCard:
    """The model card beside a weights file (``NAME.json`` next to ``NAME.npz``): empty when
    there is none; a damaged one keeps what is readable and lists its ``problems``."""
    path = Path(weights).with_suffix(".json")
    try:
        return ModelCard.from_json(read_json(path)) if path.exists() else ModelCard()
    except ModelFileError as exc:
        return ModelCard(problems=(str(exc),))


def load(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL) -> Classifier:
    """Load a shipped model by name (``"hotdog_cnn"``) or any weights file by path.

    The model card (``.json`` next to the weights) is attached as ``classifier.card``, a
    ``ModelCard`` (empty when there is none; a damaged one keeps what is readable and lists
    its ``problems``). Raises ``ModelFileError`` with a one-line message if the weights file
    is missing or bad.
    """
    path = Path(name_or_path)
    if path.suffix != ".npz" and not path.exists():
        path = MODELS_DIR / f"{name_or_path}.npz"
    return _classifier(path, path.stem, read_card(path))


def load_bytes(data: bytes, name: str = "model") -> Classifier:
    """A ``Classifier`` from a weights file's bytes (without its card): how a cluster's
    workers load the model they are sent, without any pickled object of ours."""
    return _classifier(data, name, ModelCard())


def _classifier(source: Path | bytes, name: str, card: ModelCard) -> Classifier:
    state, config = load_model_file(source)
    try:
        return from_file(state, config, name=name, card=card)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ModelFileError(
            f"{source_name(source)} does not match its architecture ({exc})"
        ) from None
