"""The shipped models: files load safely, cards are complete and honest, verdicts are sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import models
from models.io import CONFIG_KEY
from tests.conftest import STRICT
from training.data import load_dataset, stratified_split
from training.metrics import summarize

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["hotdog_cnn", "hotdog_mlp"]
EXAMPLES = ROOT / "examples" / "images"
CARD_KEYS = {
    "name", "command", "architecture", "preprocess", "classes", "data", "augmentation",
    "training", "epochs_run", "best_epoch", "seed", "wall_seconds", "metrics", "history",
    "n_parameters",
}  # fmt: skip


@pytest.mark.parametrize("name", SHIPPED)
def test_weights_are_small_pickle_free_and_load(name: str) -> None:
    path = models.MODELS_DIR / f"{name}.npz"
    assert path.stat().st_size < 20 * 2**20
    with np.load(path, allow_pickle=False) as data:
        assert CONFIG_KEY in data.files
        assert all(data[k].dtype == np.float32 for k in data.files if k != CONFIG_KEY)
    clf = models.load(name)
    assert clf.name == name
    assert name in models.available()


@pytest.mark.parametrize("name", SHIPPED)
def test_model_card_is_complete(name: str) -> None:
    card = json.loads((models.MODELS_DIR / f"{name}.json").read_text())
    assert set(card) >= CARD_KEYS
    assert card["command"].startswith("python -m training train ")
    metrics = card["metrics"]
    assert {"accuracy", "balanced_accuracy", "confusion", "roc_auc"} <= set(metrics)
    (tn, fp), (fn, tp) = metrics["confusion"]
    assert tn + fp + fn + tp == metrics["n"] == card["data"]["val"]["n"]
    assert len(card["history"]) == card["epochs_run"]


def _shared_data(card: dict) -> list[Path]:
    roots = [(ROOT / r).resolve() for r in card["data"]["roots"]]
    if not all(r.is_dir() for r in roots):
        if STRICT:
            pytest.fail(f"training data {roots} is missing")
        pytest.skip("the training data (../shared/data) is not beside this checkout")
    return roots


@pytest.mark.parametrize("name", SHIPPED)
def test_card_metrics_reproduce_on_the_held_out_split(name: str) -> None:
    """Rebuild the held-out split the card describes and score it again: the card's
    numbers must be what the shipped weights really do."""
    clf = models.load(name)
    card = clf.card.raw
    size = clf.preprocess.size
    data = load_dataset(_shared_data(card), size=size, cache_size=size)
    _, val_idx = stratified_split(
        data.labels, card["data"]["val_fraction"], card["seed"], groups=data.sources
    )
    assert len(val_idx) == card["metrics"]["n"]
    p = clf.p_hotdog_uint8(data.eval_images[val_idx])
    again = summarize(data.labels[val_idx], p)
    # float sums may round differently with another BLAS thread count: allow one image to flip
    flips = np.abs(np.subtract(again["confusion"], card["metrics"]["confusion"])).sum()
    assert flips <= 2
    assert again["balanced_accuracy"] == pytest.approx(
        card["metrics"]["balanced_accuracy"], abs=0.01
    )


@pytest.mark.parametrize("example", ["coffee.jpg", "cat.jpg", "astronaut.jpg", "rocket.jpg"])
def test_cnn_says_not_hotdog_to_photos_of_other_things(example: str) -> None:
    prediction = models.load("hotdog_cnn").predict(EXAMPLES / example)
    assert prediction.label == "not_hotdog", prediction


def test_cnn_explains_with_a_saliency_map_and_leaves_the_model_untouched() -> None:
    clf = models.load("hotdog_cnn")
    explanation = clf.explain(EXAMPLES / "coffee.jpg")
    size = clf.preprocess.size
    assert explanation.image.shape == (size, size, 3)
    assert explanation.saliency.shape == (size, size)
    assert 0.0 <= explanation.saliency.min() <= explanation.saliency.max() <= 1.0
    assert all(p.grad is None for p in clf.model.parameters())
