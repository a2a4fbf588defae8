"""ModelCard: typed reading of model cards, and damaged cards that must not break anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import models
from models import ModelCard

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_card_reads_completely() -> None:
    raw = json.loads((ROOT / "models" / "hotdog_cnn.json").read_text())
    card = ModelCard.from_json(raw)
    assert card.problems == ()
    assert card.n == raw["metrics"]["n"] and card.balanced_accuracy is not None
    (tn, fp), (fn, tp) = card.confusion or ((0, 0), (0, 0))
    assert tn + fp + fn + tp == card.n
    assert len(card.history) == card.epochs_run and card.history[0]["epoch"] == 1
    rows = {row.source: row for row in card.sources}
    assert rows["food101-64"].val_hotdog == 150 and rows["food101-64"].val_accuracy is not None
    assert card.command and card.command.startswith("python -m training train")
    assert card.training_summary().startswith("Trained ")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([1, 2, 3], "not an object"),
        ("card", "not an object"),
        ({"history": [{"train_loss": 0.5}]}, "without an epoch"),
        ({"history": "many"}, "history is not a list"),
        ({"metrics": {"confusion": [[5]]}}, "not 2x2"),
        ({"metrics": {"confusion": [[1, 2], [3, -4]]}}, "not 2x2"),
        ({"metrics": [0.5]}, "metrics is not an object"),
        ({"data": {"train": {"sources": {"x": [1, 2]}}}}, "not an object"),
    ],
)
def test_oddly_shaped_cards_keep_what_is_readable(raw: Any, problem: str) -> None:
    card = ModelCard.from_json(raw)
    assert any(problem in p for p in card.problems), card.problems
    card.training_summary()  # never raises


def test_out_of_range_values_are_dropped_not_shown() -> None:
    card = ModelCard.from_json(
        {"metrics": {"accuracy": 1.7, "roc_auc": float("nan"), "n": -3, "balanced_accuracy": 0.9}}
    )
    assert card.accuracy is None and card.roc_auc is None and card.n is None
    assert card.balanced_accuracy == 0.9


def test_a_corrupt_card_file_does_not_stop_the_model_loading(tmp_path: Path) -> None:
    for suffix in (".npz", ".json"):
        (tmp_path / f"m{suffix}").write_bytes(
            (ROOT / "models" / f"hotdog_mlp{suffix}").read_bytes()
        )
    (tmp_path / "m.json").write_text("{not json")
    clf = models.load(tmp_path / "m.npz")
    assert clf.card.empty and "not valid JSON" in clf.card.problems[0]


def test_calibration_and_per_source_balanced_accuracy_are_read() -> None:
    card = ModelCard.from_json(
        {
            "metrics": {
                "calibration": {"temperature": 1.7, "ece": 0.03, "ece_uncalibrated": 0.09},
                "per_source": {"photos": {"accuracy": 0.9, "balanced_accuracy": 0.85}},
            },
            "data": {"val": {"sources": {"photos": {"hotdog": 4, "not_hotdog": 6}}}},
        }
    )
    assert (card.temperature, card.calibration_error, card.calibration_error_before) == (
        1.7, 0.03, 0.09,
    )  # fmt: skip
    assert card.sources[0].val_balanced_accuracy == 0.85
    odd = ModelCard.from_json({"metrics": {"calibration": {"ece": "low", "temperature": None}}})
    assert odd.calibration_error is None and odd.temperature is None and odd.problems == ()
    assert (
        "calibration is not an object"
        in ModelCard.from_json({"metrics": {"calibration": [1]}}).problems[0]
    )


def test_kind_source_names_and_summary_are_plain_words() -> None:
    card = ModelCard.from_json(
        {
            "architecture": {"type": "efficientnet_lite"},
            "created": "2026-12-04T01:11:28+00:00",
            "wall_seconds": 1092.2,
            "cpu_count": 2,
            "best_epoch": 3,
            "epochs_run": 3,
            "data": {"train": {"sources": {"food101-64": {"hotdog": 1}, "mine": {"hotdog": 2}}}},
        }
    )
    assert card.kind == "ImageNet network, fine-tuned"
    assert ModelCard.from_json({"architecture": {"type": "?"}}).kind == "a trained classifier"
    assert [row.plain_name for row in card.sources] == ["Food-101 dishes, small 64-pixel crops",
                                                        "mine"]  # fmt: skip
    assert card.training_summary() == (
        "Trained on 2026-12-04. The training run took 18 min on 2 CPU cores. The weights are "
        "those after pass 3 of 3 over the training photos."
    )


def test_a_huge_integer_drops_its_field_not_the_card(tmp_path) -> None:
    import models

    path = tmp_path / "m.json"
    path.write_text('{"metrics": {"n": ' + "9" * 5000 + ', "accuracy": 0.9}, "name": "m"}')
    card = models.read_card(tmp_path / "m.npz")
    assert card.accuracy == 0.9 and card.name == "m" and card.n is None
